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

}  // namespace mailretry
