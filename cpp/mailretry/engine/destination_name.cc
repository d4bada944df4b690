#include "mailretry/engine/destination_name.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace mailretry {
namespace {

constexpr size_t kMaxName = 255;

// Length of the valid UTF-8 sequence at s[i], or 0 if it is not valid
// (truncated, overlong, a surrogate, or beyond U+10FFFF).
size_t Utf8Length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;  // lone surrogates (CESU, Python's surrogateescape)
  if (cp >= 0x80 && cp <= 0x9F) return 0;      // C1 controls
  return n;
}

// Shared checks; `ascii_only` for destinations. Describes the first problem.
absl::Status Check(std::string_view name, const char* what, bool ascii_only) {
  if (name.size() > kMaxName) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is longer than ", kMaxName, " bytes"));
  }
  for (size_t i = 0; i < name.size();) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7F) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " contains a control character (byte ", i, ")"));
    }
    const size_t n = Utf8Length(name, i);
    if (n == 0)
      return absl::InvalidArgumentError(absl::StrCat(what, " is not valid UTF-8 (byte ", i, ")"));
    if (n > 1 && ascii_only) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " is not ASCII: pass internationalised names as IDNA A-labels (xn--...)"));
    }
    i += n;
  }
  return absl::OkStatus();
}

}  // namespace

bool IsNormalDestination(std::string_view name) {
  if (name.empty() || name.size() > kMaxName || name.back() == '.') return false;
  for (char ch : name) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7F || (c >= 'A' && c <= 'Z')) return false;
  }
  return true;
}

absl::StatusOr<std::string> NormalizeDestination(std::string_view name) {
  if (IsNormalDestination(name)) return std::string(name);
  if (absl::Status s = Check(name, "destination", /*ascii_only=*/true); !s.ok()) return s;
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (!out.empty() && out.back() == '.')
    out.pop_back();  // the root label: "example.com." is example.com
  if (out.empty()) return absl::InvalidArgumentError("destination is empty");
  return out;
}

absl::Status ValidateSourceName(std::string_view name) {
  return Check(name, "source", /*ascii_only=*/false);
}

}  // namespace mailretry
