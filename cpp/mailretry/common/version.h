// File: common/version.h
// The library's version, as set in the top-level CMakeLists.txt.
#ifndef MAILRETRY_COMMON_VERSION_H_
#define MAILRETRY_COMMON_VERSION_H_

#include <string_view>

namespace mailretry {

// "MAJOR.MINOR.PATCH" of the compiled library.
std::string_view Version();

}  // namespace mailretry

#endif  // MAILRETRY_COMMON_VERSION_H_
