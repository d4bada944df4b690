// Layers 4a, 3d, 4b and 5 of the built-in rule table (see default_rules.h): RFC 3463
// details that name a cause, generic phrases, RFC 3463 subjects, RFC 5321 basic
// codes. In this order: generic phrases outrank only the subject-level codes.
#include <utility>
#include <vector>

#include "mailretry/classify/classifier.h"
#include "mailretry/classify/internal/default_rules.h"

namespace mailretry::internal {
namespace {

using C = Category;
using A = Action;

}  // namespace

void AppendCodeRules(std::vector<DefaultRuleSpec>* out) {
  std::vector<DefaultRuleSpec> rules{
      // --- Layer 4a: RFC 3463 enhanced codes whose detail names the cause (and
      // the providers' documented details: Gmail X.7.2x, Microsoft 5.7.5xx). ---
      {.name = "default:enhanced/4.7.28",
       .category = C::kRateLimit,
       .code = "4xx",
       .enhanced = "4.7.28"},
      {.name = "default:enhanced/5.7.28", .category = C::kReputationBlock, .enhanced = "5.7.28"},
      {.name = "default:enhanced/x.7.20-32-auth",
       .category = C::kAuthSpfDkimDmarc,
       .enhanced = "*.7.20-24,*.7.26,*.7.27,*.7.30,*.7.32"},
      {.name = "default:enhanced/x.7.10-11-29-tls",
       .category = C::kTlsRequired,
       .enhanced = "*.7.29,*.7.10,*.7.11"},
      {.name = "default:enhanced/x.7.25", .category = C::kPtrRdns, .enhanced = "*.7.25"},
      {.name = "default:enhanced/x.7.13", .category = C::kMailboxDisabled, .enhanced = "*.7.13"},
      {.name = "default:enhanced/x.7.8",
       .category = C::kRelayDenied,
       .enhanced = "*.7.8,*.7.12,*.7.80",
       .action = A::kRemediate},
      {.name = "default:enhanced/x.1.1",
       .category = C::kMailboxUnknown,
       .enhanced = "*.1.1,*.1.3,*.1.6,*.1.10,5.4.1"},
      {.name = "default:enhanced/x.1.2", .category = C::kDomainUnknown, .enhanced = "*.1.2,5.4.4"},
      {.name = "default:enhanced/5.2.1", .category = C::kMailboxDisabled, .enhanced = "5.2.1"},
      {.name = "default:enhanced/x.2.2", .category = C::kMailboxFull, .enhanced = "*.2.2"},
      {.name = "default:enhanced/x.3.4",
       .category = C::kMessageTooLarge,
       .enhanced = "*.2.3,*.3.4"},
      {.name = "default:enhanced/4.3.1",
       .category = C::kServerBusyCapacity,
       .enhanced = "4.3.1,4.4.5"},
      {.name = "default:enhanced/x.4.7",
       .category = C::kUnknownPermanent,
       .enhanced = "*.4.7,*.4.6",
       .action = A::kBounce},
      {.name = "default:enhanced/x.5.3",
       .category = C::kRateLimit,
       .enhanced = "*.5.3",
       .action = A::kRetry},
      {.name = "default:enhanced/x.5.x",
       .category = C::kUnknownPermanent,
       .enhanced = "5.5.1,5.5.2,5.5.4",
       .action = A::kRemediate},
      {.name = "default:enhanced/x.6.x",
       .category = C::kPolicyContentSpam,
       .enhanced = "5.6.*",
       .action = A::kRemediate},

      // Microsoft: recipient address rejected / banned recipient; per-hour
      // receive limits of the recipient.
      {.name = "default:enhanced/5.7.504-505",
       .category = C::kMailboxUnknown,
       .enhanced = "5.7.504-505"},
      {.name = "default:enhanced/5.2.121-122",
       .category = C::kRateLimit,
       .enhanced = "*.2.121-122"},

      // --- Layer 3d: generic phrases. They say little (a refusal, a busy
      // server), so a specific enhanced code above beats them; they still
      // beat the enhanced subject and the basic code below. ---
      // Postfix-style "Recipient address rejected: <reason>" whose reason named
      // nothing above: the recipient is refused.
      // ... unless the enhanced code says the refusal is policy (X.7): then
      // the unnamed reason is the receiver's policy, not a missing mailbox.
      {.name = "default:generic/address-rejected-policy",
       .category = C::kPolicyContentSpam,
       .any = {"address rejected"},
       .enhanced = "*.7.*",
       .category_4xx = C::kUnknownTransient},
      {.name = "default:phrase/address-rejected",
       .category = C::kMailboxUnknown,
       .any = {"address rejected"}},
      // A 4yz that names a fault of the server or of the path (its own error, a
      // timeout, a failed DNS lookup) rather than its load: retried as such,
      // before the busy phrases, whose "try again later" such replies often add.
      {.name = "default:generic/transient-fault",
       .category = C::kUnknownTransient,
       .any = {"internal error",   "internal failure",     "system problem", "temporary problem",
               "local error",      "error in processing",  "dns error",      "dns failure",
               "lookup failed",    "temporarily failed",   "timed out",      "timeout",
               "no answer",        "did not answer",       "not responding", "went wrong",
               "unexpected error", "unexpected condition", "write error",    "i/o error"},
       .unless = {"busy", "overload", "load"},
       .code = "4xx"},
      {.name = "default:phrase/busy",
       .category = C::kServerBusyCapacity,
       .any = {"busy", "overloaded", "too many processes", "load average", "insufficient system",
               "system resources", "resources temporarily unavailable", "temporarily unavailable",
               "temporary server error", "temporary local problem", "local problem",
               "try again later",
               // Not inside "retry later", which says nothing about load.
               "^try later", "out of memory", "server error", "service unavailable",
               "system storage", "congestion", "too many tasks", "queue full", "temporarily unable",
               "system overload", "resources unavailable", "at capacity", "over capacity",
               "maximum load", "load exceeded", "high load", "heavy load", "backlog",
               // Capacity in other words: queues, slots, resources running out.
               "capacity", "queued", "slots", "resource shortage", "resources low",
               "low on resources", "under load", "worker process", "not enough free"},
       .unless = {"recipient"},
       .code = "4xx"},
      // Code/text precedence: a 5yz whose text says the server is busy or the
      // failure is temporary ("554 5.3.2 System busy, try again later",
      // "550 Temporary problem, please retry") is transient, whatever the
      // class. Only after every rule naming a cause: a cause's own phrase
      // ("temporarily blocked" reputation, "quota exceeded ... try later")
      // decides first.
      {.name = "default:phrase/busy-5xx",
       .category = C::kServerBusyCapacity,
       .any = {"busy", "overloaded", "system overload", "load average", "at capacity",
               "over capacity", "maximum load", "load exceeded", "high load", "heavy load",
               "too many processes", "resources temporarily unavailable"},
       .unless = {"recipient", "permanent"},
       .code = "5xx",
       .action = A::kRetry,
       .transient = true},
      {.name = "default:phrase/transient-5xx",
       .category = C::kUnknownTransient,
       .any = {"temporary problem", "temporary failure", "temporary error", "temporarily unable",
               "try again later", "try again in", "please retry", "retry later", "try later",
               "temporarily unavailable"},
       .unless = {"permanent", "not temporary", "do not retry", "don't retry"},
       .code = "5xx",
       .action = A::kRetry,
       .transient = true},
      {.name = "default:phrase/maintenance",
       .category = C::kMaintenanceShutdown,
       .any = {"shutdown", "service not available", "service not active", "offline",
               "scheduled work", "scheduled update", "scheduled downtime", "planned outage",
               "planned upgrade", "migration in progress", "nightly backup", "backup window"}},
      // Postfix's "Client host rejected: <reason>" framing whose reason named
      // nothing above: the receiver refuses the sending host.
      {.name = "default:generic/client-host-rejected",
       .category = C::kReputationBlock,
       .any = {"client host rejected"},
       .category_4xx = C::kReputationThrottle},
      {.name = "default:generic/policy",
       .category = C::kPolicyContentSpam,
       .any = {"policy", "not allowed", "not permitted", "prohibited", "prohibition", "forbidden"},
       .code = "5xx"},

      // --- Layer 4b: RFC 3463 subjects, when neither the detail nor the text
      // said more (RFC 3463 section 2: report the subject's generic meaning). ---
      {.name = "default:enhanced/x.1.x-recipient-address",
       .category = C::kMailboxUnknown,
       .enhanced = "*.1.1-6,*.1.9-999"},
      // qmail and its descendants put the enhanced code in the text, "(#5.1.1)":
      // read like an enhanced code, after the text has had its say.
      {.name = "default:mta/qmail-5.1.1",
       .category = C::kMailboxUnknown,
       .any = {"#5.1.1", "#5.1.0", "#5.1.3"}},
      {.name = "default:mta/qmail-x.2.2", .category = C::kMailboxFull, .any = {"#5.2.2", "#4.2.2"}},
      {.name = "default:mta/qmail-5.2.1", .category = C::kMailboxDisabled, .any = {"#5.2.1"}},
      {.name = "default:mta/qmail-5.1.2",
       .category = C::kDomainUnknown,
       .any = {"#5.1.2", "#5.4.4"}},
      {.name = "default:mta/qmail-5.3.4",
       .category = C::kMessageTooLarge,
       .any = {"#5.3.4", "#5.2.3"}},
      // 4.2.1: the registry's "mailbox disabled" is temporary, and Gmail uses
      // it for "receiving too fast"; only the class is sure.
      {.name = "default:enhanced/4.2.1",
       .category = C::kMailboxDisabled,
       .enhanced = "4.2.1",
       .category_4xx = C::kUnknownTransient},
      {.name = "default:enhanced/4.3.2", .category = C::kMaintenanceShutdown, .enhanced = "4.3.2"},
      {.name = "default:enhanced/5.4.4-routing",
       .category = C::kDomainUnknown,
       .enhanced = "5.4.4"},
      {.name = "default:enhanced/5.5.x-protocol",
       .category = C::kUnknownPermanent,
       .enhanced = "5.5.*",
       .action = A::kRemediate},
      // X.7.2-19 are registered details that are not policy (AUTH, crypto, RRVS).
      // X.7.0 is "other or undefined security status": with a text that named
      // no cause, nothing says the content was judged.
      {.name = "default:enhanced/5.7.0-undefined",
       .category = C::kUnknownPermanent,
       .enhanced = "5.7.0"},
      {.name = "default:enhanced/5.7.x-policy",
       .category = C::kPolicyContentSpam,
       .enhanced = "5.7.1,5.7.7,5.7.20-999"},

      // --- Layer 5: RFC 5321 basic codes, and codes MTAs use with one meaning. ---
      {.name = "default:code/521", .category = C::kDomainUnknown, .code = "521"},
      {.name = "default:code/556", .category = C::kDomainUnknown, .code = "556"},
      // 422 (non-standard, several MTAs) and 552 (RFC 5321: storage allocation
      // exceeded) speak of the recipient's storage.
      {.name = "default:code/422-552-storage", .category = C::kMailboxFull, .code = "422,552"},
      // RFC 4954: 530 authentication required, 535 credentials invalid, 534
      // mechanism too weak: the sender's own configuration.
      {.name = "default:code/530-535-auth",
       .category = C::kRelayDenied,
       .code = "530,534,535",
       .action = A::kRemediate},
      // RFC 4954 538 / RFC 3207 454: encryption required first.
      {.name = "default:code/538-tls", .category = C::kTlsRequired, .code = "538"},
  };
  for (DefaultRuleSpec& r : rules) out->push_back(std::move(r));
}

}  // namespace mailretry::internal
