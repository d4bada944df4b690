#include "mailretry/common/version.h"

namespace mailretry {

std::string_view Version() { return MAILRETRY_VERSION; }

}  // namespace mailretry
