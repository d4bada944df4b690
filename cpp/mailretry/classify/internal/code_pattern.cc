#include "mailretry/classify/internal/code_pattern.h"

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailretry/common/internal/strings.h"
#include "mailretry/reply/reply.h"

namespace mailretry::internal {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsWild(char c) { return c == 'x' || c == 'X' || c == '*'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls `f` on each comma-separated, trimmed item; an empty item is an error.
template <typename F>
absl::Status ForEachItem(std::string_view pattern, std::string_view what, F f) {
  std::string_view rest = pattern;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = Trim(rest.substr(0, comma));
    if (item.empty()) {
      return absl::InvalidArgumentError(Cat(what, " pattern \"", pattern, "\" has an empty item"));
    }
    if (absl::Status st = f(item); !st.ok()) return st;
    if (comma == std::string_view::npos) return absl::OkStatus();
    rest.remove_prefix(comma + 1);
  }
}

// 1-3 decimal digits, or -1.
int Number(std::string_view s) {
  if (s.empty() || s.size() > 3) return -1;
  int v = 0;
  for (char c : s) {
    if (!IsDigit(c)) return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

bool ValidClass(int klass) { return klass == 2 || klass == 4 || klass == 5; }

}  // namespace

absl::StatusOr<BasicCodePattern> BasicCodePattern::Parse(std::string_view pattern) {
  BasicCodePattern out;
  if (Trim(pattern).empty()) return out;
  auto bad = [&](std::string_view item, std::string_view why) {
    return absl::InvalidArgumentError(Cat("code pattern \"", pattern, "\": \"", item, "\" ", why));
  };
  absl::Status st = ForEachItem(pattern, "code", [&](std::string_view item) -> absl::Status {
    Alternative a;
    const size_t dash = item.find('-');
    if (dash != std::string_view::npos) {
      const std::string_view lo = item.substr(0, dash), hi = item.substr(dash + 1);
      const int l = lo.size() == 3 ? Number(lo) : -1;
      const int h = hi.size() == 3 ? Number(hi) : -1;
      if (l < 0 || h < l) return bad(item, "is not a range of codes like 450-452");
      if (!ValidClass(l / 100) || !ValidClass(h / 100)) {
        return bad(item, "leaves the classes 2, 4 and 5");
      }
      a.is_range = true;
      a.lo = static_cast<int16_t>(l);
      a.hi = static_cast<int16_t>(h);
    } else {
      if (item.size() != 3) return bad(item, "must be 3 characters like 421, 4xx or 5*x");
      for (size_t i = 0; i < 3; ++i) {
        if (IsWild(item[i])) continue;
        if (!IsDigit(item[i])) return bad(item, "has a character that is not a digit, x or *");
        a.digit[i] = static_cast<int8_t>(item[i] - '0');
      }
      if (a.digit[0] >= 0 && !ValidClass(a.digit[0]))
        return bad(item, "has a class other than 2, 4, 5");
    }
    out.alternatives_.push_back(a);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return out;
}

absl::StatusOr<EnhancedCodePattern> EnhancedCodePattern::Parse(std::string_view pattern) {
  EnhancedCodePattern out;
  if (Trim(pattern).empty()) return out;
  auto bad = [&](std::string_view item, std::string_view why) {
    return absl::InvalidArgumentError(
        Cat("enhanced pattern \"", pattern, "\": \"", item, "\" ", why));
  };
  // "*", "28" or "606-649" into [lo, hi].
  auto part = [](std::string_view s, uint16_t* lo, uint16_t* hi) {
    if (s == "*") return true;
    const size_t dash = s.find('-');
    const int l = Number(s.substr(0, dash));
    const int h = dash == std::string_view::npos ? l : Number(s.substr(dash + 1));
    if (l < 0 || h < l) return false;
    *lo = static_cast<uint16_t>(l);
    *hi = static_cast<uint16_t>(h);
    return true;
  };
  absl::Status st = ForEachItem(pattern, "enhanced", [&](std::string_view item) -> absl::Status {
    const size_t dot1 = item.find('.');
    const size_t dot2 = dot1 == std::string_view::npos ? dot1 : item.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || item.find('.', dot2 + 1) != std::string_view::npos) {
      return bad(item, "must look like 4.7.28, 4.7.*, *.7.28 or 5.7.606-649");
    }
    Alternative a;
    const std::string_view k = item.substr(0, dot1);
    if (k != "*") {
      if (k.size() != 1 || !ValidClass(k[0] - '0'))
        return bad(item, "needs a class of 2, 4, 5 or *");
      a.klass = static_cast<int8_t>(k[0] - '0');
    }
    if (!part(item.substr(dot1 + 1, dot2 - dot1 - 1), &a.subject_lo, &a.subject_hi) ||
        !part(item.substr(dot2 + 1), &a.detail_lo, &a.detail_hi)) {
      return bad(item, "needs subject and detail as a number 0..999, a range lo-hi or *");
    }
    out.alternatives_.push_back(a);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return out;
}

}  // namespace mailretry::internal
