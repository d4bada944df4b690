// File: engine/internal/patterns.cc
#include "mailretry/engine/internal/patterns.h"

#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "mailretry/common/internal/strings.h"

namespace mailretry::internal {

// Destination patterns: "" / "*" any, "*.example.com" subdomains, else exact.
bool MatchDestination(std::string_view pattern, std::string_view name) {
  if (pattern.empty() || pattern == "*") return true;
  if (absl::StartsWith(ToAbsl(pattern), "*.")) {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    return name.size() > suffix.size() && absl::EndsWithIgnoreCase(ToAbsl(name), ToAbsl(suffix));
  }
  return absl::EqualsIgnoreCase(ToAbsl(pattern), ToAbsl(name));
}

bool ValidDestinationPattern(std::string_view p) {
  if (p.empty() || p == "*") return true;
  std::string_view rest = absl::StartsWith(ToAbsl(p), "*.") ? p.substr(2) : p;
  return !rest.empty() && rest.find('*') == std::string_view::npos;
}

// "421", "4xx", "45x".
bool ValidCodePattern(std::string_view p) {
  if (p.empty()) return true;
  if (p.size() != 3) return false;
  for (char c : p) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != 'x' && c != 'X') return false;
  }
  return true;
}
bool MatchCode(std::string_view p, int code) {
  if (p.empty()) return true;
  if (code < 100 || code > 999) return false;
  const char digits[3] = {static_cast<char>('0' + code / 100), static_cast<char>('0' + (code / 10) % 10),
                          static_cast<char>('0' + code % 10)};
  for (int i = 0; i < 3; ++i) {
    if (p[i] != 'x' && p[i] != 'X' && p[i] != digits[i]) return false;
  }
  return true;
}

// "4.7.28", "4.7.*", "5.*.*".
bool ParseEnhancedPattern(std::string_view p, int out[3]) {
  std::vector<absl::string_view> parts = absl::StrSplit(ToAbsl(p), '.');
  if (parts.size() != 3) return false;
  for (int i = 0; i < 3; ++i) {
    if (parts[i] == "*") {
      out[i] = -1;
    } else if (!absl::SimpleAtoi(parts[i], &out[i]) || out[i] < 0 || out[i] > 999) {
      return false;
    }
  }
  return true;
}
bool MatchEnhanced(std::string_view p, const std::optional<EnhancedCode>& e) {
  if (p.empty()) return true;
  if (!e.has_value()) return false;
  int parts[3];
  if (!ParseEnhancedPattern(p, parts)) return false;
  const int have[3] = {e->klass, e->subject, e->detail};
  for (int i = 0; i < 3; ++i) {
    if (parts[i] >= 0 && parts[i] != have[i]) return false;
  }
  return true;
}

}  // namespace mailretry::internal
