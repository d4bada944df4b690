#include "mailretry/classify/classifier.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <iterator>
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
#include "absl/strings/str_split.h"
#include "mailretry/classify/internal/classifier_matcher.h"
#include "mailretry/classify/internal/code_pattern.h"
#include "mailretry/classify/internal/default_rules.h"
#include "mailretry/common/internal/strings.h"
#include "mailretry/reply/reply.h"
#include "re2/re2.h"

namespace mailretry {
namespace {

constexpr std::array<std::string_view, kNumCategoriesWithDelivered> kCategoryNames = {
    "rate_limit",
    "too_many_connections",
    "server_busy_capacity",
    "reputation_block",
    "reputation_throttle",
    "greylisting",
    "auth_spf_dkim_dmarc",
    "ptr_rdns",
    "policy_content_spam",
    "mailbox_full",
    "mailbox_unknown",
    "mailbox_disabled",
    "domain_unknown",
    "message_too_large",
    "relay_denied",
    "dnsbl_listed",
    "maintenance_shutdown",
    "tls_required",
    "unknown_transient",
    "unknown_permanent",
    "delivered",
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

// Eight bytes at a time: replies are short and nearly always ASCII.
bool HasNonAscii(std::string_view s) {
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    if ((w & 0x8080808080808080ULL) != 0) return true;
  }
  for (; i < s.size(); ++i) {
    if (static_cast<unsigned char>(s[i]) >= 0x80) return true;
  }
  return false;
}

// Drops a phrase when a shorter phrase of the same group, without word-boundary
// marks, occurs inside it ("mailbox is full" beside "is full"): the group is
// found either way, and the automaton (whose size costs cache misses on every
// reply) gets smaller.
std::vector<internal::Phrase> RemoveImpliedPhrases(const std::vector<internal::Phrase>& phrases) {
  auto body = [](std::string_view t) {
    if (!t.empty() && t.front() == '^') t.remove_prefix(1);
    if (!t.empty() && t.back() == '$') t.remove_suffix(1);
    return t;
  };
  std::vector<internal::Phrase> out;
  out.reserve(phrases.size());
  // A group's phrases are contiguous (Create adds them list by list).
  size_t begin = 0;
  for (size_t i = 0; i < phrases.size(); ++i) {
    if (phrases[i].group != phrases[begin].group) begin = i;
    size_t end = i;
    while (end < phrases.size() && phrases[end].group == phrases[i].group) ++end;
    const std::string_view long_body = body(phrases[i].text);
    bool implied = false;
    for (size_t j = begin; j < end && !implied; ++j) {
      if (i == j) continue;
      const std::string_view t = phrases[j].text;
      if (t.empty() || t.front() == '^' || t.back() == '$') continue;
      // Equal phrases: keep the first.
      if (t.size() < long_body.size() || (t == long_body && j < i)) {
        implied = long_body.find(t) != std::string_view::npos;
      }
    }
    if (!implied) out.push_back(phrases[i]);
  }
  return out;
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
      return {"default:transport/connection_refused", Category::kUnknownTransient, Action::kRetry};
    case Transport::kConnectTimeout:
      return {"default:transport/connect_timeout", Category::kUnknownTransient, Action::kRetry};
    case Transport::kTlsFailure:
      return {"default:transport/tls_failure", Category::kTlsRequired, Action::kRemediate};
    case Transport::kConnectionDropped:
      return {"default:transport/connection_dropped", Category::kUnknownTransient, Action::kRetry};
    case Transport::kDnsFailure:
      return {"default:transport/dns_failure", Category::kUnknownTransient, Action::kRetry};
    case Transport::kReply:
      break;
  }
  return {"default:transport/unknown", Category::kUnknownTransient, Action::kRetry};
}

constexpr std::string_view kTransportRuleNames[] = {
    "default:transport/connection_refused", "default:transport/connect_timeout",
    "default:transport/tls_failure",        "default:transport/connection_dropped",
    "default:transport/dns_failure",
};
constexpr std::string_view kCode2xx = "default:code/2xx";
constexpr std::string_view kCode4xx = "default:code/4xx";
constexpr std::string_view kCode5xx = "default:code/5xx";
constexpr std::string_view kNoCode = "default:code/none";

constexpr size_t kMaxGroupWords = 8;  // up to 512 phrase groups

// Code/text precedence for the reaction: a 4yz whose text says the server will
// not accept the message on a later attempt either ("451 4.1.1 Recipient
// unknown, will not retry") gets the reaction of a 5yz for the category the
// rules found (bounce a mailbox_unknown rather than retry it for days). Only
// explicit wording counts; "permanently deferred" and the like stay with the
// reputation phrases, which fix their own action.
constexpr std::string_view kFinalPhrases[] = {
    "will not retry",     "do not retry",      "don't retry",          "should not retry",
    "not be retried",     "permanent failure", "permanent error",      "permanently rejected",
    "permanently failed", "giving up",         "no point in retrying",
};

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
    internal::BasicCodePattern code;
    internal::EnhancedCodePattern enhanced;
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
    internal::BasicCodePattern code;
    internal::EnhancedCodePattern enhanced;
  };

  std::vector<CompiledUserRule> user_rules;
  std::vector<CompiledDefaultRule> default_rules;
  int32_t final_group = -1;  // phrase group of kFinalPhrases
  // Two automata over the same phrase groups: ASCII phrases, run on every
  // reply, and phrases with non-ASCII bytes (non-English stock wordings), run
  // only on replies that have such bytes. Kept apart because each distinct
  // UTF-8 byte of a phrase widens every DFA row: one automaton for both would
  // be several times larger and slower on the (mostly ASCII) replies.
  std::unique_ptr<internal::PhraseMatcher> matcher;
  std::unique_ptr<internal::PhraseMatcher> matcher_non_ascii;  // null when no such phrase
  size_t rule_words = 0;
  // For group g: the default rules whose first required phrase group is g.
  std::vector<uint64_t> rules_by_group;     // num_groups * rule_words
  std::vector<uint64_t> always_candidates;  // rules without phrase conditions
  // Filters on the rules' code conditions, rule_words words per row, so the
  // rule loop visits (and mispredicts on) only rules that can still match:
  // row kCodeRows[code - 200] = rules whose basic-code pattern matches code
  // (exact), rows for code 0 by the enhanced class; kEnhancedRows = rules
  // whose enhanced pattern matches the reply's enhanced class and subject for
  // some detail (a superset: the loop still checks every condition). Keys
  // outside the tables use all_rules.
  std::vector<uint64_t> code_masks;
  std::vector<uint64_t> enhanced_masks;
  std::vector<uint64_t> all_rules;

  const uint64_t* CodeMask(const Reply& r) const;
  const uint64_t* EnhancedMask(const Reply& r) const;

  bool UserRuleMatches(const CompiledUserRule& u, const Reply& r, std::string_view dest) const;
  // `says_final`: the text of a 4yz says the failure is final ("will not
  // retry"); the reaction then follows the 5yz class (see kFinalPhrases).
  Classification Finish(const Reply& r, std::string_view rule, Category c,
                        std::optional<Category> c4, std::optional<Action> a,
                        std::optional<bool> transient, bool says_final = false) const;
  Classification ClassifyDefault(const Reply& r) const;
};

namespace {

// Keys of Classifier::Impl::code_masks: basic codes 200..599, then code 0 with
// no enhanced code or an enhanced class 2, 4, 5.
constexpr size_t kCodeRows = 400 + 4;
// Keys of Classifier::Impl::enhanced_masks: no enhanced code, then class 2, 4
// or 5 with subject 0..9.
constexpr size_t kEnhancedRows = 1 + 3 * 10;

int ClassIndex(int klass) { return klass == 2 ? 0 : klass == 4 ? 1 : klass == 5 ? 2 : -1; }

// The code_masks row of a reply; -1 when outside the table.
int CodeRow(const Reply& r) {
  if (r.code >= 200 && r.code <= 599) return r.code - 200;
  if (r.code != 0) return -1;
  if (!r.enhanced.has_value()) return 400;
  const int k = ClassIndex(r.enhanced->klass);
  return k < 0 ? -1 : 401 + k;
}

int EnhancedRow(const std::optional<EnhancedCode>& e) {
  if (!e.has_value()) return 0;
  const int k = ClassIndex(e->klass);
  return k < 0 || e->subject > 9 ? -1 : 1 + k * 10 + e->subject;
}

}  // namespace

const uint64_t* Classifier::Impl::CodeMask(const Reply& r) const {
  const int row = CodeRow(r);
  return row < 0 ? all_rules.data() : &code_masks[static_cast<size_t>(row) * rule_words];
}

const uint64_t* Classifier::Impl::EnhancedMask(const Reply& r) const {
  const int row = EnhancedRow(r.enhanced);
  return row < 0 ? all_rules.data() : &enhanced_masks[static_cast<size_t>(row) * rule_words];
}

bool Classifier::Impl::UserRuleMatches(const CompiledUserRule& u, const Reply& r,
                                       std::string_view dest) const {
  if (!u.destination.empty()) {
    dest = StripTrailingDot(dest);
    if (u.destination_suffix) {
      if (dest.size() <= u.destination.size() ||
          !absl::EndsWithIgnoreCase(internal::ToAbsl(dest), u.destination)) {
        return false;
      }
    } else if (!absl::EqualsIgnoreCase(internal::ToAbsl(dest), u.destination)) {
      return false;
    }
  }
  if (!u.code.Matches(r)) return false;
  if (!u.enhanced.Matches(r.enhanced)) return false;
  if (u.regex != nullptr && !RE2::PartialMatch(r.text, *u.regex)) return false;
  return true;
}

Classification Classifier::Impl::Finish(const Reply& r, std::string_view rule, Category c,
                                        std::optional<Category> c4, std::optional<Action> a,
                                        std::optional<bool> transient, bool says_final) const {
  const int klass = says_final && ReplyClass(r) == 4 ? 5 : ReplyClass(r);
  Classification k;
  k.category = klass == 4 && c4.has_value() ? *c4 : c;
  k.action = a.has_value() ? *a : internal::DefaultAction(k.category, klass);
  k.transient = transient.has_value() ? *transient : internal::DefaultTransient(k.action, klass);
  k.rule = rule;
  return k;
}

Classification Classifier::Impl::ClassifyDefault(const Reply& r) const {
  if (r.code >= 200 && r.code <= 299) {
    // Not a failure, whatever the text says; the engine never asks, but
    // `mailretry classify` on a log line may.
    return Finish(r, kCode2xx, Category::kDelivered, std::nullopt, Action::kRetry, false);
  }
  std::array<uint64_t, kMaxGroupWords> groups{};
  std::array<uint64_t, kMaxGroupWords> candidates{};
  for (size_t w = 0; w < rule_words; ++w) candidates[w] = always_candidates[w];
  if (!r.text.empty()) {
    matcher->Match(r.text, groups.data());
    if (matcher_non_ascii != nullptr && HasNonAscii(r.text)) {
      matcher_non_ascii->Match(r.text, groups.data());
    }
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
  const uint64_t* code_mask = CodeMask(r);
  const uint64_t* enhanced_mask = EnhancedMask(r);
  for (size_t w = 0; w < rule_words; ++w) candidates[w] &= code_mask[w] & enhanced_mask[w];
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
      if (!d.code.Matches(r)) continue;
      if (!d.enhanced.Matches(r.enhanced)) continue;
      const internal::DefaultRuleSpec& s = *d.spec;
      return Finish(r, s.name, s.category, s.category_4xx, s.action, s.transient,
                    final_group >= 0 && has(final_group));
    }
  }
  switch (ReplyClass(r)) {
    case 4:
      return Finish(r, kCode4xx, Category::kUnknownTransient, std::nullopt, Action::kRetry,
                    std::nullopt);
    case 5:
      return Finish(r, kCode5xx, Category::kUnknownPermanent, std::nullopt, Action::kBounce,
                    std::nullopt);
    default:
      // A caller-built Reply without a basic code and with no or a 2.x.x
      // enhanced code: nothing says it is final (and kDelivered is kept for
      // real 2xx replies, which the engine handles before classifying).
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
    absl::StatusOr<internal::BasicCodePattern> code =
        internal::BasicCodePattern::Parse(u.code_pattern);
    if (!code.ok()) return fail(code.status().message());
    c.code = *std::move(code);
    absl::StatusOr<internal::EnhancedCodePattern> enhanced =
        internal::EnhancedCodePattern::Parse(u.enhanced_pattern);
    if (!enhanced.ok()) return fail(enhanced.status().message());
    c.enhanced = *std::move(enhanced);
    if (!u.destination.empty()) {
      std::string_view d = StripTrailingDot(u.destination);
      if (d.starts_with("*.")) {
        c.destination_suffix = true;
        d.remove_prefix(1);  // keep the dot: ".example.com"
      }
      if (d.empty() || d == "." || d.find_first_of("* \t\r\n@/") != std::string_view::npos) {
        return fail(
            internal::Cat("destination \"", u.destination, "\" must be a domain or *.domain"));
      }
      c.destination = absl::AsciiStrToLower(internal::ToAbsl(d));
    }
    if (u.category == Category::kDelivered) {
      return fail("category \"delivered\" is what a 2xx reply gets; a rule cannot give it");
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
    absl::StatusOr<internal::BasicCodePattern> code = internal::BasicCodePattern::Parse(s.code);
    if (!code.ok())
      return absl::InternalError(internal::Cat(s.name, ": ", code.status().message()));
    d.code = *std::move(code);
    absl::StatusOr<internal::EnhancedCodePattern> e =
        internal::EnhancedCodePattern::Parse(s.enhanced);
    if (!e.ok()) return absl::InternalError(internal::Cat(s.name, ": ", e.status().message()));
    d.enhanced = *std::move(e);
    impl->default_rules.push_back(std::move(d));
  }
  impl->final_group =
      add_group(std::vector<std::string_view>(std::begin(kFinalPhrases), std::end(kFinalPhrases)));
  if (num_groups > kMaxGroupWords * 64 || impl->default_rules.size() > kMaxGroupWords * 64) {
    return absl::InternalError("default rule table exceeds the matcher's fixed limits");
  }
  std::vector<internal::Phrase> ascii, non_ascii;
  for (const internal::Phrase& p : RemoveImpliedPhrases(phrases)) {
    (HasNonAscii(p.text) ? non_ascii : ascii).push_back(p);
  }
  impl->matcher = std::make_unique<internal::PhraseMatcher>(ascii, num_groups);
  if (!non_ascii.empty()) {
    impl->matcher_non_ascii = std::make_unique<internal::PhraseMatcher>(non_ascii, num_groups);
  }
  impl->rule_words = (impl->default_rules.size() + 63) / 64;
  impl->rules_by_group.assign(static_cast<size_t>(num_groups) * impl->rule_words, 0);
  impl->always_candidates.assign(impl->rule_words, 0);
  for (size_t i = 0; i < impl->default_rules.size(); ++i) {
    const int32_t g = impl->default_rules[i].required_groups[0];
    uint64_t* mask = g >= 0 ? &impl->rules_by_group[static_cast<size_t>(g) * impl->rule_words]
                            : impl->always_candidates.data();
    mask[i / 64] |= uint64_t{1} << (i % 64);
  }
  const size_t words = impl->rule_words;
  impl->all_rules.assign(words, ~uint64_t{0});
  impl->code_masks.assign(kCodeRows * words, 0);
  impl->enhanced_masks.assign(kEnhancedRows * words, 0);
  for (size_t i = 0; i < impl->default_rules.size(); ++i) {
    const Impl::CompiledDefaultRule& d = impl->default_rules[i];
    const uint64_t bit = uint64_t{1} << (i % 64);
    Reply probe;
    for (size_t row = 0; row < kCodeRows; ++row) {
      probe.code = row < 400 ? static_cast<int>(row) + 200 : 0;
      probe.enhanced.reset();
      if (row > 400)
        probe.enhanced = EnhancedCode{static_cast<uint8_t>(row == 401   ? 2
                                                           : row == 402 ? 4
                                                                        : 5),
                                      0, 0};
      if (d.code.Matches(probe)) impl->code_masks[row * words + i / 64] |= bit;
    }
    if (d.enhanced.Matches(std::optional<EnhancedCode>())) impl->enhanced_masks[i / 64] |= bit;
    for (size_t row = 1; row < kEnhancedRows; ++row) {
      const int klass = (row - 1) / 10 == 0 ? 2 : (row - 1) / 10 == 1 ? 4 : 5;
      if (d.enhanced.MayMatch(klass, static_cast<int>((row - 1) % 10))) {
        impl->enhanced_masks[row * words + i / 64] |= bit;
      }
    }
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
    k.transient = u.transient.has_value()                ? *u.transient
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
  bool inferred = false;
  absl::StatusOr<Reply> r = ParseReplyInferringCode(raw, &inferred);
  if (!r.ok()) return r.status();
  Classification k = Classify(*r, destination);
  k.basic_code_inferred = inferred;
  return k;
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
