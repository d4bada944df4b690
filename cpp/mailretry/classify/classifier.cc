#include "mailretry/classify/classifier.h"

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "mailretry/common/internal/strings.h"
#include "absl/strings/str_split.h"
#include "mailretry/classify/internal/classifier_matcher.h"
#include "mailretry/classify/internal/default_rules.h"
#include "mailretry/reply/reply.h"
#include "re2/re2.h"

namespace mailretry {
namespace {

constexpr std::array<std::string_view, kNumCategories> kCategoryNames = {
    "rate_limit",          "too_many_connections", "server_busy_capacity", "reputation_block",
    "reputation_throttle", "greylisting",          "auth_spf_dkim_dmarc",  "ptr_rdns",
    "policy_content_spam", "mailbox_full",         "mailbox_unknown",      "mailbox_disabled",
    "domain_unknown",      "message_too_large",    "relay_denied",         "dnsbl_listed",
    "maintenance_shutdown", "tls_required",        "unknown_transient",    "unknown_permanent",
};
constexpr std::array<std::string_view, kNumActions> kActionNames = {
    "retry", "throttle", "suspend_domain", "bounce", "remediate",
};

// The reply's class for decisions: the basic code's first digit, or the
// enhanced class when a caller built a Reply without a basic code (DSN
// Status-only diagnostics); 0 when neither is known.
int ReplyClass(const Reply& r) {
  if (r.code >= 200 && r.code <= 599) return r.code / 100;
  if (r.enhanced.has_value()) return r.enhanced->klass;
  return 0;
}

// "421", "4xx", "45x": digits or x/X/* per position.
struct CodePattern {
  std::array<int8_t, 3> digit = {-1, -1, -1};

  bool Matches(const Reply& r) const {
    if (r.code >= 200 && r.code <= 599) {
      const int d[3] = {r.code / 100, r.code / 10 % 10, r.code % 10};
      for (int i = 0; i < 3; ++i) {
        if (digit[i] >= 0 && digit[i] != d[i]) return false;
      }
      return true;
    }
    // Without a basic code only a class pattern ("4xx") can be decided.
    if (digit[1] >= 0 || digit[2] >= 0) return false;
    return digit[0] < 0 || digit[0] == ReplyClass(r);
  }
};

absl::StatusOr<CodePattern> ParseCodePattern(std::string_view s) {
  CodePattern p;
  if (s.size() != 3) {
    return absl::InvalidArgumentError(
        internal::Cat("code pattern \"", s, "\" must be 3 characters like 421, 4xx or 45x"));
  }
  for (int i = 0; i < 3; ++i) {
    const char c = s[i];
    if (c == 'x' || c == 'X' || c == '*') continue;
    if (c < '0' || c > '9') {
      return absl::InvalidArgumentError(
          internal::Cat("code pattern \"", s, "\": '", std::string(1, c), "' is not a digit or x"));
    }
    p.digit[i] = static_cast<int8_t>(c - '0');
  }
  if (p.digit[0] >= 0 && (p.digit[0] < 2 || p.digit[0] > 5)) {
    return absl::InvalidArgumentError(
        internal::Cat("code pattern \"", s, "\": class must be 2, 4 or 5"));
  }
  return p;
}

// "4.7.28", "4.7.*", "*.7.28", "5.7.606-649": class digit or *, subject and
// detail numbers, * or lo-hi ranges.
struct EnhancedPattern {
  int klass = -1;
  int subject_lo = -1, subject_hi = -1;
  int detail_lo = -1, detail_hi = -1;

  bool Matches(const EnhancedCode& e) const {
    if (klass >= 0 && klass != e.klass) return false;
    if (subject_lo >= 0 && (e.subject < subject_lo || e.subject > subject_hi)) return false;
    if (detail_lo >= 0 && (e.detail < detail_lo || e.detail > detail_hi)) return false;
    return true;
  }
};

absl::Status ParseNumberOrRange(std::string_view whole, std::string_view part, int* lo, int* hi) {
  if (part == "*") return absl::OkStatus();
  const size_t dash = part.find('-');
  const bool has_hi = dash != std::string_view::npos;
  const std::string_view first = part.substr(0, dash);
  const std::string_view second = has_hi ? part.substr(dash + 1) : std::string_view();
  int a = 0, b = 0;
  if (first.empty() || first.size() > 3 || !absl::SimpleAtoi(internal::ToAbsl(first), &a) ||
      (has_hi && (second.empty() || second.size() > 3 ||
                  !absl::SimpleAtoi(internal::ToAbsl(second), &b) || b < a))) {
    return absl::InvalidArgumentError(internal::Cat(
        "enhanced pattern \"", whole, "\": \"", part, "\" is not a number 0..999, a range or *"));
  }
  *lo = a;
  *hi = has_hi ? b : a;
  return absl::OkStatus();
}

absl::StatusOr<EnhancedPattern> ParseEnhancedPattern(std::string_view s) {
  std::vector<absl::string_view> parts = absl::StrSplit(internal::ToAbsl(s), '.');
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(
        internal::Cat("enhanced pattern \"", s, "\" must look like 4.7.28, 4.7.* or 5.*.*"));
  }
  EnhancedPattern p;
  if (parts[0] != "*") {
    if (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
      return absl::InvalidArgumentError(
          internal::Cat("enhanced pattern \"", s, "\": class must be 2, 4, 5 or *"));
    }
    p.klass = parts[0][0] - '0';
  }
  if (absl::Status st =
          ParseNumberOrRange(s, internal::ToStd(parts[1]), &p.subject_lo, &p.subject_hi);
      !st.ok()) {
    return st;
  }
  if (absl::Status st =
          ParseNumberOrRange(s, internal::ToStd(parts[2]), &p.detail_lo, &p.detail_hi);
      !st.ok()) {
    return st;
  }
  return p;
}

absl::StatusOr<std::vector<EnhancedPattern>> ParseEnhancedList(std::string_view s) {
  std::vector<EnhancedPattern> out;
  for (absl::string_view one : absl::StrSplit(internal::ToAbsl(s), ',', absl::SkipWhitespace())) {
    absl::StatusOr<EnhancedPattern> p =
        ParseEnhancedPattern(internal::ToStd(absl::StripAsciiWhitespace(one)));
    if (!p.ok()) return p.status();
    out.push_back(*p);
  }
  return out;
}

bool AnyEnhancedMatches(const std::vector<EnhancedPattern>& patterns, const Reply& r) {
  if (patterns.empty()) return true;
  if (!r.enhanced.has_value()) return false;
  for (const EnhancedPattern& p : patterns) {
    if (p.Matches(*r.enhanced)) return true;
  }
  return false;
}

std::string_view StripTrailingDot(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return s;
}

struct TransportDecision {
  std::string_view rule;
  Category category;
  Action action;
};

// Transport outcomes carry no server verdict: network trouble is retried;
// a failed TLS handshake will fail again until someone fixes TLS.
TransportDecision DecideTransport(Transport t) {
  switch (t) {
    case Transport::kConnectionRefused:
      return {"default:transport-connection_refused", Category::kUnknownTransient, Action::kRetry};
    case Transport::kConnectTimeout:
      return {"default:transport-connect_timeout", Category::kUnknownTransient, Action::kRetry};
    case Transport::kTlsFailure:
      return {"default:transport-tls_failure", Category::kTlsRequired, Action::kRemediate};
    case Transport::kConnectionDropped:
      return {"default:transport-connection_dropped", Category::kUnknownTransient, Action::kRetry};
    case Transport::kDnsFailure:
      return {"default:transport-dns_failure", Category::kUnknownTransient, Action::kRetry};
    case Transport::kReply:
      break;
  }
  return {"default:transport-unknown", Category::kUnknownTransient, Action::kRetry};
}

constexpr std::string_view kTransportRuleNames[] = {
    "default:transport-connection_refused", "default:transport-connect_timeout",
    "default:transport-tls_failure",        "default:transport-connection_dropped",
    "default:transport-dns_failure",
};
constexpr std::string_view kCode2xx = "default:code-2xx";
constexpr std::string_view kCode4xx = "default:code-4xx";
constexpr std::string_view kCode5xx = "default:code-5xx";
constexpr std::string_view kNoCode = "default:no-code";

constexpr size_t kMaxGroupWords = 8;  // up to 512 phrase groups

}  // namespace

std::string_view CategoryName(Category c) {
  const auto i = static_cast<size_t>(c);
  return i < kCategoryNames.size() ? kCategoryNames[i] : std::string_view("unknown");
}

std::string_view ActionName(Action a) {
  const auto i = static_cast<size_t>(a);
  return i < kActionNames.size() ? kActionNames[i] : std::string_view("unknown");
}

absl::StatusOr<Category> ParseCategory(std::string_view name) {
  for (size_t i = 0; i < kCategoryNames.size(); ++i) {
    if (kCategoryNames[i] == name) return static_cast<Category>(i);
  }
  return absl::InvalidArgumentError(internal::Cat("unknown category name \"", name, "\""));
}

absl::StatusOr<Action> ParseAction(std::string_view name) {
  for (size_t i = 0; i < kActionNames.size(); ++i) {
    if (kActionNames[i] == name) return static_cast<Action>(i);
  }
  return absl::InvalidArgumentError(internal::Cat("unknown action name \"", name, "\""));
}

struct Classifier::Impl {
  struct CompiledUserRule {
    std::string rule_name;  // "user:<name>"
    std::unique_ptr<RE2> regex;
    std::optional<CodePattern> code;
    std::vector<EnhancedPattern> enhanced;
    std::string destination;  // lowercase, no trailing dot; for suffix: ".example.com"
    bool destination_suffix = false;
    Category category;
    Action action;
    std::optional<bool> transient;
  };
  struct CompiledDefaultRule {
    const internal::DefaultRuleSpec* spec;
    std::array<int32_t, 2> required_groups = {-1, -1};  // any, also
    int32_t unless_group = -1;
    std::optional<CodePattern> code;
    std::vector<EnhancedPattern> enhanced;
  };

  std::vector<CompiledUserRule> user_rules;
  std::vector<CompiledDefaultRule> default_rules;
  std::unique_ptr<internal::PhraseMatcher> matcher;
  size_t rule_words = 0;
  // For group g: the default rules whose first required phrase group is g.
  std::vector<uint64_t> rules_by_group;  // num_groups * rule_words
  std::vector<uint64_t> always_candidates;  // rules without phrase conditions

  bool UserRuleMatches(const CompiledUserRule& u, const Reply& r, std::string_view dest) const;
  Classification Finish(const Reply& r, std::string_view rule, Category c,
                        std::optional<Category> c4, std::optional<Action> a,
                        std::optional<bool> transient) const;
  Classification ClassifyDefault(const Reply& r) const;
};

bool Classifier::Impl::UserRuleMatches(const CompiledUserRule& u, const Reply& r,
                                       std::string_view dest) const {
  if (!u.destination.empty()) {
    dest = StripTrailingDot(dest);
    if (u.destination_suffix) {
      if (dest.size() <= u.destination.size() || !absl::EndsWithIgnoreCase(internal::ToAbsl(dest), u.destination)) {
        return false;
      }
    } else if (!absl::EqualsIgnoreCase(internal::ToAbsl(dest), u.destination)) {
      return false;
    }
  }
  if (u.code.has_value() && !u.code->Matches(r)) return false;
  if (!AnyEnhancedMatches(u.enhanced, r)) return false;
  if (u.regex != nullptr && !RE2::PartialMatch(r.text, *u.regex)) return false;
  return true;
}

Classification Classifier::Impl::Finish(const Reply& r, std::string_view rule, Category c,
                                        std::optional<Category> c4, std::optional<Action> a,
                                        std::optional<bool> transient) const {
  const int klass = ReplyClass(r);
  Classification k;
  k.category = klass == 4 && c4.has_value() ? *c4 : c;
  k.action = a.has_value() ? *a : internal::DefaultAction(k.category, klass);
  k.transient = transient.has_value() ? *transient : internal::DefaultTransient(k.action, klass);
  k.rule = rule;
  return k;
}

Classification Classifier::Impl::ClassifyDefault(const Reply& r) const {
  std::array<uint64_t, kMaxGroupWords> groups{};
  std::array<uint64_t, kMaxGroupWords> candidates{};
  for (size_t w = 0; w < rule_words; ++w) candidates[w] = always_candidates[w];
  if (!r.text.empty()) {
    thread_local std::string scratch;
    matcher->Match(r.text, &scratch, groups.data());
    const size_t group_words = matcher->num_words();
    for (size_t w = 0; w < group_words; ++w) {
      uint64_t bits = groups[w];
      while (bits != 0) {
        const size_t g = w * 64 + static_cast<size_t>(__builtin_ctzll(bits));
        bits &= bits - 1;
        const uint64_t* mask = &rules_by_group[g * rule_words];
        for (size_t k = 0; k < rule_words; ++k) candidates[k] |= mask[k];
      }
    }
  }
  auto has = [&groups](int32_t g) {
    return (groups[static_cast<size_t>(g) >> 6] >> (static_cast<size_t>(g) & 63)) & 1;
  };
  for (size_t w = 0; w < rule_words; ++w) {
    uint64_t bits = candidates[w];
    while (bits != 0) {
      const size_t i = w * 64 + static_cast<size_t>(__builtin_ctzll(bits));
      bits &= bits - 1;
      const CompiledDefaultRule& d = default_rules[i];
      if (d.required_groups[1] >= 0 && !has(d.required_groups[1])) continue;
      if (d.unless_group >= 0 && has(d.unless_group)) continue;
      if (d.code.has_value() && !d.code->Matches(r)) continue;
      if (!AnyEnhancedMatches(d.enhanced, r)) continue;
      const internal::DefaultRuleSpec& s = *d.spec;
      return Finish(r, s.name, s.category, s.category_4xx, s.action, s.transient);
    }
  }
  switch (ReplyClass(r)) {
    case 2:
      // Not a failure; callers should not need to classify it, but the
      // answer must still be total.
      return Finish(r, kCode2xx, Category::kUnknownTransient, std::nullopt, Action::kRetry, false);
    case 4:
      return Finish(r, kCode4xx, Category::kUnknownTransient, std::nullopt, Action::kRetry,
                    std::nullopt);
    case 5:
      return Finish(r, kCode5xx, Category::kUnknownPermanent, std::nullopt, Action::kBounce,
                    std::nullopt);
    default:
      // A caller-built Reply without any code: nothing says it is final.
      return Finish(r, kNoCode, Category::kUnknownTransient, std::nullopt, Action::kRetry, true);
  }
}

Classifier::Classifier(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<Classifier> Classifier::Create(std::vector<UserRule> user_rules) {
  auto impl = std::make_shared<Impl>();

  absl::flat_hash_set<std::string> seen;
  for (UserRule& u : user_rules) {
    if (u.name.empty()) return absl::InvalidArgumentError("user rule with an empty name");
    if (!seen.insert(u.name).second) {
      return absl::InvalidArgumentError(internal::Cat("duplicate user rule name \"", u.name, "\""));
    }
    auto fail = [&u](absl::string_view what) {
      return absl::InvalidArgumentError(internal::Cat("user rule \"", u.name, "\": ", what));
    };
    Impl::CompiledUserRule c;
    c.rule_name = internal::Cat("user:", u.name);
    if (!u.text_regex.empty()) {
      RE2::Options opts;
      opts.set_case_sensitive(false);
      opts.set_log_errors(false);
      opts.set_never_capture(true);
      c.regex = std::make_unique<RE2>(u.text_regex, opts);
      if (!c.regex->ok()) {
        return fail(internal::Cat("bad text_regex \"", u.text_regex, "\": ", c.regex->error()));
      }
    }
    if (!u.code_pattern.empty()) {
      absl::StatusOr<CodePattern> p = ParseCodePattern(u.code_pattern);
      if (!p.ok()) return fail(p.status().message());
      c.code = *p;
    }
    if (!u.enhanced_pattern.empty()) {
      if (u.enhanced_pattern.find(',') != std::string::npos) {
        return fail(internal::Cat("enhanced pattern \"", u.enhanced_pattern,
                                 "\" must be a single pattern"));
      }
      absl::StatusOr<EnhancedPattern> p = ParseEnhancedPattern(u.enhanced_pattern);
      if (!p.ok()) return fail(p.status().message());
      c.enhanced.push_back(*p);
    }
    if (!u.destination.empty()) {
      std::string_view d = StripTrailingDot(u.destination);
      if (d.starts_with("*.")) {
        c.destination_suffix = true;
        d.remove_prefix(1);  // keep the dot: ".example.com"
      }
      if (d.empty() || d == "." || d.find_first_of("* \t\r\n@/") != std::string_view::npos) {
        return fail(internal::Cat("destination \"", u.destination,
                                 "\" must be a domain or *.domain"));
      }
      c.destination = absl::AsciiStrToLower(internal::ToAbsl(d));
    }
    if (static_cast<size_t>(u.category) >= kNumCategories) return fail("category out of range");
    if (static_cast<size_t>(u.action) >= kNumActions) return fail("action out of range");
    c.category = u.category;
    c.action = u.action;
    c.transient = u.transient;
    impl->user_rules.push_back(std::move(c));
  }

  // Default rules: one phrase group per any/also/unless list.
  const std::vector<internal::DefaultRuleSpec>& specs = internal::DefaultRuleSpecs();
  std::vector<internal::Phrase> phrases;
  uint32_t num_groups = 0;
  auto add_group = [&](const std::vector<std::string_view>& list) -> int32_t {
    if (list.empty()) return -1;
    const uint32_t g = num_groups++;
    for (std::string_view p : list) phrases.push_back({p, g});
    return static_cast<int32_t>(g);
  };
  impl->default_rules.reserve(specs.size());
  for (const internal::DefaultRuleSpec& s : specs) {
    Impl::CompiledDefaultRule d;
    d.spec = &s;
    d.required_groups[0] = add_group(s.any);
    d.required_groups[1] = add_group(s.also);
    d.unless_group = add_group(s.unless);
    if (!s.code.empty()) {
      absl::StatusOr<CodePattern> p = ParseCodePattern(s.code);
      if (!p.ok()) return absl::InternalError(internal::Cat(s.name, ": ", p.status().message()));
      d.code = *p;
    }
    absl::StatusOr<std::vector<EnhancedPattern>> e = ParseEnhancedList(s.enhanced);
    if (!e.ok()) return absl::InternalError(internal::Cat(s.name, ": ", e.status().message()));
    d.enhanced = std::move(*e);
    impl->default_rules.push_back(std::move(d));
  }
  if (num_groups > kMaxGroupWords * 64 || impl->default_rules.size() > kMaxGroupWords * 64) {
    return absl::InternalError("default rule table exceeds the matcher's fixed limits");
  }
  impl->matcher = std::make_unique<internal::PhraseMatcher>(phrases, num_groups);
  impl->rule_words = (impl->default_rules.size() + 63) / 64;
  impl->rules_by_group.assign(static_cast<size_t>(num_groups) * impl->rule_words, 0);
  impl->always_candidates.assign(impl->rule_words, 0);
  for (size_t i = 0; i < impl->default_rules.size(); ++i) {
    const int32_t g = impl->default_rules[i].required_groups[0];
    uint64_t* mask = g >= 0 ? &impl->rules_by_group[static_cast<size_t>(g) * impl->rule_words]
                            : impl->always_candidates.data();
    mask[i / 64] |= uint64_t{1} << (i % 64);
  }
  return Classifier(std::move(impl));
}

Classification Classifier::Classify(const Reply& reply, std::string_view destination) const {
  const Impl& impl = *impl_;
  for (const Impl::CompiledUserRule& u : impl.user_rules) {
    if (!impl.UserRuleMatches(u, reply, destination)) continue;
    Classification k;
    k.category = u.category;
    k.action = u.action;
    k.transient = u.transient.has_value() ? *u.transient
                  : reply.transport != Transport::kReply ? true
                                                          : ReplyClass(reply) == 4;
    k.rule = u.rule_name;
    return k;
  }
  if (reply.transport != Transport::kReply) {
    const TransportDecision d = DecideTransport(reply.transport);
    Classification k;
    k.category = d.category;
    k.action = d.action;
    k.transient = true;
    k.rule = d.rule;
    return k;
  }
  return impl.ClassifyDefault(reply);
}

absl::StatusOr<Classification> Classifier::ClassifyText(std::string_view raw,
                                                        std::string_view destination) const {
  absl::StatusOr<Reply> r = ParseReply(raw);
  if (!r.ok()) return r.status();
  return Classify(*r, destination);
}

std::vector<std::string> Classifier::RuleNames() const {
  std::vector<std::string> out;
  out.reserve(impl_->user_rules.size() + impl_->default_rules.size() + 10);
  for (const auto& u : impl_->user_rules) out.push_back(u.rule_name);
  for (std::string_view t : kTransportRuleNames) out.emplace_back(t);
  for (const auto& d : impl_->default_rules) out.emplace_back(d.spec->name);
  for (std::string_view n : {kCode2xx, kCode4xx, kCode5xx, kNoCode}) out.emplace_back(n);
  return out;
}

}  // namespace mailretry
