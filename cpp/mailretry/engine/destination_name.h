// File: engine/destination_name.h
// -----------------------------------------------------------------------------
// The one spelling of a destination (a mail domain) and of a source name, so
// that limits apply per domain and names are safe to hand back.
//
// A destination is normalised once, where it enters the engine: ASCII letters
// are lowercased and one trailing dot is stripped, so "Example.COM." and
// "example.com" are one destination. Internationalised names must arrive as
// IDNA A-labels ("xn--bcher-kva.example"): the C++ core does no Unicode
// mapping (the Python bindings convert U-labels with Python's IDNA codec
// first). Rejected with InvalidArgument: empty names, names over 255 bytes,
// invalid UTF-8, NUL and other control characters, and non-ASCII text.
// Source names (IP addresses, pool names) are kept as given but must be valid
// UTF-8 without control characters.
#ifndef MAILRETRY_ENGINE_DESTINATION_NAME_H_
#define MAILRETRY_ENGINE_DESTINATION_NAME_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailretry {

// The normalised destination, or InvalidArgument naming the problem.
absl::StatusOr<std::string> NormalizeDestination(std::string_view name);
// True when `name` is already in normal form (NormalizeDestination(name) == name):
// the fast path, which allocates nothing.
bool IsNormalDestination(std::string_view name);
// OK, or InvalidArgument for invalid UTF-8 or a control character.
absl::Status ValidateSourceName(std::string_view name);

}  // namespace mailretry

#endif  // MAILRETRY_ENGINE_DESTINATION_NAME_H_
