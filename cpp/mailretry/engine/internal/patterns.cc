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

}  // namespace mailretry::internal
