// File: classify/classifier.h
// -----------------------------------------------------------------------------
// Maps a Reply to the cause a sender should react to (Category), the reaction
// (Action) and transient/permanent, and names the rule that decided.
// Rules look at provider markers (Gmail 4.7.28, Yahoo [TSS04], Microsoft S3150),
// the enhanced code, the text, and the basic code as the last resort. User rules
// (RE2 on the text, enhanced-code pattern, optional destination scope) take
// precedence over the built-in defaults.
//
//   absl::StatusOr<Classifier> c = Classifier::Create({});
//   Classification k = c->Classify(*ParseReply("421 4.7.28 unusual rate"), "gmail.com");
//   // k.category == Category::kRateLimit, k.action == Action::kThrottle
#ifndef MAILRETRY_CLASSIFY_CLASSIFIER_H_
#define MAILRETRY_CLASSIFY_CLASSIFIER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "mailretry/reply/reply.h"

namespace mailretry {

// The causes a reply can name, in the order of the labelled corpus's label set.
enum class Category : uint8_t {
  kRateLimit,
  kTooManyConnections,
  kServerBusyCapacity,
  kReputationBlock,
  kReputationThrottle,
  kGreylisting,
  kAuthSpfDkimDmarc,
  kPtrRdns,
  kPolicyContentSpam,
  kMailboxFull,
  kMailboxUnknown,
  kMailboxDisabled,
  kDomainUnknown,
  kMessageTooLarge,
  kRelayDenied,
  kDnsblListed,
  kMaintenanceShutdown,
  kTlsRequired,
  kUnknownTransient,
  kUnknownPermanent,
  // A 2xx reply: not a failure. Outside kNumCategories, so that per-category
  // failure counters (the engine's, its snapshots) keep their size; the
  // engine never classifies a 2xx, and no user rule may produce it.
  kDelivered,
};
// The failure categories, kRateLimit .. kUnknownPermanent.
inline constexpr int kNumCategories = 20;
// Every category, kDelivered included (for names and for classify results).
inline constexpr int kNumCategoriesWithDelivered = 21;

// What the sender should do about it.
enum class Action : uint8_t {
  kRetry,          // requeue with normal backoff
  kThrottle,       // keep retrying, lower rate/concurrency for the destination
  kSuspendDomain,  // pause the destination (from this source) for a while
  kBounce,         // fail the message permanently
  kRemediate,      // the sender must fix something; retrying unchanged won't help
};
inline constexpr int kNumActions = 5;

// snake_case names as in the labelled corpus ("rate_limit", "suspend_domain").
std::string_view CategoryName(Category c);
std::string_view ActionName(Action a);
absl::StatusOr<Category> ParseCategory(std::string_view name);
absl::StatusOr<Action> ParseAction(std::string_view name);

// The decision for one reply. `rule` names the rule that decided, e.g.
// "default:gmail-4.7.28" or "user:my-rule"; it points into storage owned by the
// Classifier (or static storage) and lives as long as the Classifier.
//
// `transient` says whether the message may still be delivered later without a
// change: true for retry/throttle/suspend_domain (even on a 5yz, e.g. QQ's
// "550 ... frequency limited" or a reputation block the sender waits out),
// false for bounce, and the reply's class for remediate (a 4yz "fix your SPF"
// keeps the message queued). User rules default to the reply's class instead.
//
// A 2xx reply is Category::kDelivered with Action::kRetry (no action applies)
// and transient false (nothing remains to be done).
struct Classification {
  Category category = Category::kUnknownTransient;
  Action action = Action::kRetry;
  bool transient = true;
  std::string_view rule;
  // Set by ClassifyText when the text had only an enhanced code and the basic
  // code's class was taken from it (see ParseReplyInferringCode).
  bool basic_code_inferred = false;
};

// A user rule. Every non-empty matcher must match for the rule to apply.
struct UserRule {
  std::string name = {};        // required, unique among user rules
  std::string text_regex = {};  // RE2 syntax, searched (unanchored) in the text; case-insensitive
  std::string enhanced_pattern = {};  // "4.7.28", "4.7.*", "5.*.*"; empty = any
  std::string code_pattern = {};      // "421", "4xx", "45x"; empty = any
  std::string destination = {};       // exact domain, or "*.example.com" (subdomains only, not
                                      // example.com itself); case-insensitive; empty = any
  Category category = Category::kUnknownTransient;
  Action action = Action::kRetry;
  std::optional<bool> transient = {};  // default: 4yz and transport outcomes true, else false
};

class Classifier {
 public:
  // Builds a classifier with the built-in default rules plus `user_rules`
  // (checked first, in order). InvalidArgument for a bad regex, a bad
  // enhanced/code pattern, an empty or duplicate name.
  static absl::StatusOr<Classifier> Create(std::vector<UserRule> user_rules = {});

  // Classifies a parsed reply. `destination` scopes user rules (may be empty).
  // Never fails: an unmatched reply falls back to the basic code's class. A
  // caller-built Reply with code 0 uses its enhanced class instead (DSN
  // "Status: 5.1.1" without a reply code). Transport outcomes are retried
  // (unknown_transient), except kTlsFailure: tls_required/remediate.
  // Cost: one pass over the text for all built-in phrases, ~0.3-0.5 us.
  Classification Classify(const Reply& reply, std::string_view destination = {}) const;

  // ParseReplyInferringCode + Classify: also accepts text that starts with an
  // enhanced code and has no basic code (logs, NDR tables), and then marks the
  // result basic_code_inferred. Errors are ParseReply's.
  absl::StatusOr<Classification> ClassifyText(std::string_view raw,
                                              std::string_view destination = {}) const;

  // Names of all rules in evaluation order, as Classification::rule reports
  // them: "user:<name>" first, then the built-in "default:..." rules (transport
  // outcomes, provider markers, text cues, enhanced codes, basic code).
  std::vector<std::string> RuleNames() const;

  // Cheap to copy: copies share the immutable compiled rules. Thread-safe for
  // concurrent Classify calls.
 private:
  struct Impl;
  explicit Classifier(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace mailretry

#endif  // MAILRETRY_CLASSIFY_CLASSIFIER_H_
