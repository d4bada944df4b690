// ParseReplyLenient: replies as found in logs and bounces, where the basic
// code is often missing. It reuses ParseReply for every check (UTF-8, NUL,
// size, multi-line shape) by parsing the text behind a synthetic basic code,
// then clears that code again.
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool StartsWithBasicCode(std::string_view s) {
  return s.size() >= 3 && IsDigit(s[0]) && IsDigit(s[1]) && IsDigit(s[2]) &&
         (s.size() == 3 || s[3] == ' ' || s[3] == '-' || s[3] == '\r' || s[3] == '\n');
}

// "5.1.1 ...": class digit, '.', digit.
bool StartsWithEnhancedCode(std::string_view s) {
  return s.size() >= 3 && (s[0] == '2' || s[0] == '4' || s[0] == '5') && s[1] == '.' &&
         IsDigit(s[2]);
}

}  // namespace

absl::StatusOr<Reply> ParseReplyLenient(std::string_view raw) {
  absl::StatusOr<Reply> strict = ParseReply(raw);
  if (strict.ok()) return strict;
  std::string_view s = raw;
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  if (s.empty() || StartsWithBasicCode(s)) return strict;
  // The synthetic code's class matches the enhanced class, so ParseReply keeps
  // the enhanced code; without one, any class does.
  std::string synthetic = StartsWithEnhancedCode(s) ? std::string(1, s[0]) + "00 " : "400 ";
  synthetic.append(s);
  absl::StatusOr<Reply> parsed = ParseReply(synthetic);
  if (!parsed.ok()) return strict;
  parsed->code = 0;
  return parsed;
}

namespace {

// Log and bounce wrappers around a reply: "Diagnostic-Code: smtp; 550 ..."
// (RFC 3464) and Postfix's "host mx.example[192.0.2.1] said: 550 ...". Returns
// the reply inside, or empty when there is no such wrapper.
std::string_view UnwrapLogReply(std::string_view s) {
  auto starts_with_nocase = [](std::string_view t, std::string_view prefix) {
    if (t.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i) {
      char c = t[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != prefix[i]) return false;
    }
    return true;
  };
  auto skip_space = [](std::string_view t) {
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    return t;
  };
  std::string_view t = skip_space(s);
  bool unwrapped = false;
  if (starts_with_nocase(t, "diagnostic-code:")) {
    t = skip_space(t.substr(16));
    unwrapped = true;
  }
  if (starts_with_nocase(t, "smtp;")) {
    t = skip_space(t.substr(5));
    unwrapped = true;
  }
  if (!unwrapped) {
    const size_t said = t.find(" said: ");
    if (said == std::string_view::npos || !starts_with_nocase(t, "host ")) return {};
    t = skip_space(t.substr(said + 7));
  }
  return t.size() >= 3 && IsDigit(t[0]) && IsDigit(t[1]) && IsDigit(t[2]) ? t : std::string_view();
}

}  // namespace

absl::StatusOr<Reply> ParseReplyInferringCode(std::string_view raw, bool* basic_code_inferred) {
  *basic_code_inferred = false;
  absl::StatusOr<Reply> strict = ParseReply(raw);
  if (strict.ok()) return strict;
  if (std::string_view inner = UnwrapLogReply(raw); !inner.empty()) {
    absl::StatusOr<Reply> unwrapped = ParseReply(inner);
    if (unwrapped.ok()) return unwrapped;
  }
  std::string_view s = raw;
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  if (!StartsWithEnhancedCode(s)) return strict;
  // The inferred code is the class's x00: it says transient or permanent and
  // nothing more, so no rule keyed on a specific basic code fires on it.
  std::string synthetic = std::string(1, s[0]) + "00 ";
  synthetic.append(s);
  absl::StatusOr<Reply> parsed = ParseReply(synthetic);
  if (!parsed.ok()) return strict;
  *basic_code_inferred = true;
  return parsed;
}

}  // namespace mailretry
