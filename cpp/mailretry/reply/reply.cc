#include "mailretry/reply/reply.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "mailretry/common/internal/strings.h"

namespace mailretry {
namespace {

constexpr std::array<std::string_view, kNumTransports> kTransportNames = {
    "reply",       "connection_refused", "connect_timeout",
    "tls_failure", "connection_dropped", "dns_failure",
};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Validates UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF) and
// rejects NUL. Returns an error message, or empty on success. Replies are
// nearly always ASCII, so the ASCII path is kept tight.
std::string_view CheckBytes(std::string_view s, size_t* bad_offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      // Eight bytes at a time while they are ASCII and not NUL (any 0x80 bit,
      // or a zero byte by the usual borrow test); anything else is checked
      // byte by byte below, which also finds the offset to report.
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      constexpr uint64_t kHigh = 0x8080808080808080ULL, kOnes = 0x0101010101010101ULL;
      if (((w & kHigh) | ((w - kOnes) & ~w & kHigh)) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c == 0) {
        *bad_offset = i;
        return "embedded NUL byte";
      }
      ++i;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      *bad_offset = i;
      return "invalid UTF-8";
    }
    if (i + len > n) {
      *bad_offset = i;
      return "invalid UTF-8";
    }
    if (p[i + 1] < lo || p[i + 1] > hi) {
      *bad_offset = i;
      return "invalid UTF-8";
    }
    for (size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) {
        *bad_offset = i;
        return "invalid UTF-8";
      }
    }
    i += len;
  }
  return {};
}

// Reads "ddd" at the start of `line` when followed by ' ', '-', or the end.
// Returns the code or -1, and the separator in *sep (0 at end of line).
int LeadingCode(std::string_view line, char* sep) {
  if (line.size() < 3 || !IsDigit(line[0]) || !IsDigit(line[1]) || !IsDigit(line[2])) return -1;
  if (line.size() > 3) {
    const char c = line[3];
    if (c != ' ' && c != '-' && c != '\t') return -1;
    *sep = c == '-' ? '-' : ' ';
  } else {
    *sep = 0;
  }
  return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

// Parses "c.sss.ddd" (class one digit 2/4/5, subject and detail 1..3 digits)
// at the start of `s`, followed by whitespace or the end. Returns the length
// consumed, or 0 when `s` does not start with an enhanced code.
size_t LeadingEnhanced(std::string_view s, EnhancedCode* out) {
  if (s.size() < 5) return 0;
  const char k = s[0];
  if ((k != '2' && k != '4' && k != '5') || s[1] != '.') return 0;
  size_t i = 2;
  uint16_t parts[2] = {0, 0};
  for (int part = 0; part < 2; ++part) {
    const size_t start = i;
    uint16_t v = 0;
    while (i < s.size() && IsDigit(s[i]) && i - start < 3) {
      v = static_cast<uint16_t>(v * 10 + (s[i] - '0'));
      ++i;
    }
    if (i == start) return 0;
    parts[part] = v;
    if (part == 0) {
      if (i >= s.size() || s[i] != '.') return 0;
      ++i;
    }
  }
  // A fourth digit or any other glued character ("5.7.606-649", "4.16.55.1")
  // means this is not a plain enhanced code; leave it in the text.
  if (i < s.size() && !IsSpace(s[i])) return 0;
  out->klass = static_cast<uint8_t>(k - '0');
  out->subject = parts[0];
  out->detail = parts[1];
  return i;
}

std::string_view SkipBlanks(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  return s;
}

}  // namespace

std::string EnhancedCode::ToString() const {
  return internal::Cat(klass, ".", subject, ".", detail);
}

std::string_view TransportName(Transport t) {
  const auto i = static_cast<size_t>(t);
  return i < kTransportNames.size() ? kTransportNames[i] : std::string_view("unknown");
}

absl::StatusOr<Transport> ParseTransport(std::string_view name) {
  for (size_t i = 0; i < kTransportNames.size(); ++i) {
    if (kTransportNames[i] == name) return static_cast<Transport>(i);
  }
  return absl::InvalidArgumentError(internal::Cat("unknown transport name \"", name, "\""));
}

bool Reply::transient() const {
  if (transport != Transport::kReply) return true;
  if (code == 0) return !enhanced || enhanced->klass != 5;
  return code >= 400 && code < 500;
}

std::string Reply::ToString() const {
  if (transport != Transport::kReply) {
    std::string out = internal::Cat("<", TransportName(transport), ">");
    if (!text.empty()) absl::StrAppend(&out, " ", text);
    return out;
  }
  std::string out = internal::Cat(code);
  if (enhanced.has_value()) absl::StrAppend(&out, " ", enhanced->ToString());
  if (!text.empty()) {
    const size_t start = out.size() + 1;
    absl::StrAppend(&out, " ", text);
    for (size_t i = start; i < out.size(); ++i) {
      if (out[i] == '\n' || out[i] == '\r') out[i] = ' ';
    }
  }
  return out;
}

absl::StatusOr<Reply> ParseReply(std::string_view raw) {
  if (raw.size() > kMaxReplyBytes) {
    return absl::InvalidArgumentError(
        internal::Cat("reply is ", raw.size(), " bytes, more than the limit of ", kMaxReplyBytes));
  }
  size_t bad = 0;
  if (std::string_view err = CheckBytes(raw, &bad); !err.empty()) {
    return absl::InvalidArgumentError(internal::Cat("reply has ", err, " at byte ", bad));
  }
  std::string_view rest = TrimSpace(raw);
  if (rest.empty()) return absl::InvalidArgumentError("reply is empty");

  Reply reply;
  reply.text.reserve(rest.size());
  int code = -1;
  std::string_view enhanced_token;  // as sent on the first line, for stripping repeats
  bool first = true;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    line = TrimSpace(line);
    if (line.empty()) continue;

    char sep = 0;
    const int line_code = LeadingCode(line, &sep);
    if (first) {
      if (line_code < 0) {
        return absl::InvalidArgumentError(internal::Cat(
            "reply does not start with a 3-digit code: \"", line.substr(0, 40), "\""));
      }
      if (line_code < 200 || line_code > 599) {
        return absl::InvalidArgumentError(
            internal::Cat("reply code ", line.substr(0, 3), " is outside 200..599"));
      }
      code = line_code;
      line = SkipBlanks(line.substr(sep == 0 ? 3 : 4));
      first = false;
    } else if (line_code >= 0) {
      if (line_code != code) {
        return absl::InvalidArgumentError(internal::Cat(
            "continuation line has code ", line.substr(0, 3), ", first line has ", code));
      }
      line = SkipBlanks(line.substr(sep == 0 ? 3 : 4));
      if (!enhanced_token.empty() && line.substr(0, enhanced_token.size()) == enhanced_token &&
          (line.size() == enhanced_token.size() || IsSpace(line[enhanced_token.size()]))) {
        line = SkipBlanks(line.substr(enhanced_token.size()));
      }
    }
    // The enhanced code leads the first line with content ("550-\r\n550 5.1.1
    // ..." has it on the second), so ToString() output parses back the same.
    if (enhanced_token.empty() && reply.text.empty()) {
      EnhancedCode ec;
      if (const size_t n = LeadingEnhanced(line, &ec); n > 0) {
        reply.enhanced = ec;
        enhanced_token = line.substr(0, n);
        line = SkipBlanks(line.substr(n));
      }
    }
    if (line.empty()) continue;
    if (!reply.text.empty()) reply.text.push_back('\n');
    reply.text.append(line);
  }
  reply.code = code;
  return reply;
}

Reply TransportReply(Transport t, std::string_view detail) {
  Reply r;
  r.transport = t;
  r.code = 0;
  r.text = std::string(detail);
  return r;
}

}  // namespace mailretry
