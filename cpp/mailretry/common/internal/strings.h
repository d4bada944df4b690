// File: common/internal/strings.h
// -----------------------------------------------------------------------------
// Bridges std::string_view to Abseil string helpers. Debian's Abseil is built
// with ABSL_OPTION_USE_STD_STRING_VIEW=0, so absl::string_view is its own type
// and StrCat/StrSplit/... do not accept std::string_view directly.
#ifndef MAILRETRY_COMMON_INTERNAL_STRINGS_H_
#define MAILRETRY_COMMON_INTERNAL_STRINGS_H_

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace mailretry::internal {

inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

inline absl::string_view CatArg(std::string_view s) { return ToAbsl(s); }
template <typename T>
const T& CatArg(const T& v) {
  return v;
}

// absl::StrCat that also takes std::string_view arguments.
template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(CatArg(args)...);
}

}  // namespace mailretry::internal

#endif  // MAILRETRY_COMMON_INTERNAL_STRINGS_H_
