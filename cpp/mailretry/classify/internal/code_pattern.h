// File: classify/internal/code_pattern.h
// -----------------------------------------------------------------------------
// The one grammar for reply-code patterns, shared by the classifier's user
// rules and the engine's reaction rules: a pattern is compiled once, when the
// rules are loaded, and matching a reply then allocates nothing and parses
// nothing.
//
// Basic codes (RFC 5321), a comma-separated list of alternatives:
//   "421"            exactly 421
//   "4xx", "5*x"     'x', 'X' or '*' matches any digit at that position
//   "450-452"        an inclusive range of codes
//   "421,450-452"    any of the alternatives
// Enhanced codes (RFC 3463), a comma-separated list of class.subject.detail:
//   "4.7.28", "4.7.*", "*.7.28"     '*' matches any value of that part
//   "5.7.606-649"                   subject or detail as an inclusive range
//   "5.7.1,5.7.606-649"             any of the alternatives
// An empty pattern matches everything (the condition is absent).
//
//   absl::StatusOr<EnhancedCodePattern> p = EnhancedCodePattern::Parse("5.7.606-649");
//   if (p.ok() && p->Matches(reply.enhanced)) { ... }
#ifndef MAILRETRY_CLASSIFY_INTERNAL_CODE_PATTERN_H_
#define MAILRETRY_CLASSIFY_INTERNAL_CODE_PATTERN_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "mailretry/reply/reply.h"

namespace mailretry::internal {

class BasicCodePattern {
 public:
  // InvalidArgument names the pattern and the offending part. Classes other
  // than 2, 4 and 5 are refused: no server reply has them.
  static absl::StatusOr<BasicCodePattern> Parse(std::string_view pattern);

  bool empty() const { return alternatives_.empty(); }

  // Whether `code` (200..599) matches; false for anything else unless empty().
  bool MatchesCode(int code) const;

  // Whether a reply matches. A transport outcome (no SMTP reply) matches only
  // an empty pattern. A reply without a basic code (code 0, as in logs) can
  // match only class-wide alternatives ("4xx"), through its enhanced class:
  // nothing else about its basic code is known.
  bool Matches(const Reply& reply) const;

 private:
  struct Alternative {
    // Inclusive code range; digit wildcards become per-position checks.
    int16_t lo = 0, hi = 0;
    std::array<int8_t, 3> digit = {-1, -1, -1};  // -1 = any
    bool is_range = false;
  };
  std::vector<Alternative> alternatives_;  // filled once by Parse
};

class EnhancedCodePattern {
 public:
  static absl::StatusOr<EnhancedCodePattern> Parse(std::string_view pattern);

  bool empty() const { return alternatives_.empty(); }

  // An empty pattern matches anything, including no enhanced code; any other
  // pattern needs an enhanced code that one alternative matches.
  bool Matches(const std::optional<EnhancedCode>& code) const;
  bool Matches(const EnhancedCode& code) const;
  // Whether some detail makes klass.subject.detail match: true for every
  // code that Matches, so a precomputed filter on it never drops a match.
  bool MayMatch(int klass, int subject) const;

 private:
  struct Alternative {
    int8_t klass = -1;  // -1 = any
    uint16_t subject_lo = 0, subject_hi = 999;
    uint16_t detail_lo = 0, detail_hi = 999;
  };
  std::vector<Alternative> alternatives_;  // filled once by Parse
};

// Inline: the classifier checks these for every candidate rule of every reply.
inline bool BasicCodePattern::MatchesCode(int code) const {
  if (alternatives_.empty()) return true;
  if (code < 200 || code > 599) return false;
  const int d[3] = {code / 100, code / 10 % 10, code % 10};
  for (const Alternative& a : alternatives_) {
    if (a.is_range) {
      if (code >= a.lo && code <= a.hi) return true;
      continue;
    }
    if ((a.digit[0] < 0 || a.digit[0] == d[0]) && (a.digit[1] < 0 || a.digit[1] == d[1]) &&
        (a.digit[2] < 0 || a.digit[2] == d[2])) {
      return true;
    }
  }
  return false;
}

inline bool BasicCodePattern::Matches(const Reply& reply) const {
  if (alternatives_.empty()) return true;
  if (reply.transport != Transport::kReply) return false;
  if (reply.code != 0) return MatchesCode(reply.code);
  if (!reply.enhanced.has_value()) return false;
  const int klass = reply.enhanced->klass;
  for (const Alternative& a : alternatives_) {
    if (!a.is_range && a.digit[1] < 0 && a.digit[2] < 0 &&
        (a.digit[0] < 0 || a.digit[0] == klass)) {
      return true;
    }
  }
  return false;
}

inline bool EnhancedCodePattern::Matches(const EnhancedCode& e) const {
  if (alternatives_.empty()) return true;
  for (const Alternative& a : alternatives_) {
    if ((a.klass < 0 || a.klass == e.klass) && e.subject >= a.subject_lo &&
        e.subject <= a.subject_hi && e.detail >= a.detail_lo && e.detail <= a.detail_hi) {
      return true;
    }
  }
  return false;
}

inline bool EnhancedCodePattern::MayMatch(int klass, int subject) const {
  if (alternatives_.empty()) return true;
  for (const Alternative& a : alternatives_) {
    if ((a.klass < 0 || a.klass == klass) && subject >= a.subject_lo && subject <= a.subject_hi &&
        a.detail_lo <= a.detail_hi) {
      return true;
    }
  }
  return false;
}

inline bool EnhancedCodePattern::Matches(const std::optional<EnhancedCode>& e) const {
  if (alternatives_.empty()) return true;
  return e.has_value() && Matches(*e);
}

}  // namespace mailretry::internal

#endif  // MAILRETRY_CLASSIFY_INTERNAL_CODE_PATTERN_H_
