// Layers 2a and 2b of the built-in rule table (see default_rules.h): provider markers,
// tokens and codes whose meaning the provider documents, then MTA and gateway
// stock wordings.
#include <utility>
#include <vector>

#include "mailretry/classify/classifier.h"
#include "mailretry/classify/internal/default_rules.h"

namespace mailretry::internal {
namespace {

using C = Category;
using A = Action;

}  // namespace

void AppendStockRules(std::vector<DefaultRuleSpec>* out) {
  std::vector<DefaultRuleSpec> rules{
      // --- Layer 2a: provider markers, tokens and codes whose meaning the provider documents. ---
      // Yahoo/AOL TS codes: Yahoo asks senders to stop, not slow down.
      {.name = "default:provider/yahoo-tss09",
       .category = C::kReputationBlock,
       .any = {"[tss09]", "^tss09$"},
       .action = A::kSuspendDomain},
      {.name = "default:provider/yahoo-ts",
       .category = C::kReputationThrottle,
       .any = {"[ts01]", "[ts02]", "[ts03]", "[tss01]", "[tss02]", "[tss03]", "[tss04]", "[tss05]",
               "[ipts01]", "[ipts02]", "[ipts03]", "[ipts04]", "[ipts05]", "^tss04$"},
       // The marker also comes with a stated reason; a missing reverse DNS
       // name is the sender's PTR fault (the phrase layer's ptr_rdns), not a
       // volume deferral to wait out.
       .unless = {"reverse dns", "ptr record"},
       .action = A::kSuspendDomain},
      {.name = "default:provider/apple-hcm1",
       .category = C::kReputationThrottle,
       .any = {"[hcm1]", "^hcm1$"},
       .action = A::kSuspendDomain},
      {.name = "default:provider/apple-bs02",
       .category = C::kServerBusyCapacity,
       .any = {"[bs02]"}},
      {.name = "default:provider/yahoo-bl",
       .category = C::kDnsblListed,
       .any = {"[bl21]", "[bl22]", "[bl23]"}},
      // Comcast block codes: BL000000 is Comcast's own spam-pattern verdict, the
      // others name third-party lists (Spamhaus, SenderScore, Cloudmark).
      {.name = "default:provider/comcast-bl000000",
       .category = C::kReputationBlock,
       .any = {"^bl000000$"}},
      {.name = "default:provider/comcast-bl",
       .category = C::kDnsblListed,
       .any = {"^bl000001$", "^bl000010$", "^bl000011$", "^bl000100$", "^bl000101$", "^bl000110$",
               "^bl000111$"}},
      {.name = "default:provider/comcast-rl",
       .category = C::kRateLimit,
       .any = {"^rl000001$", "^rl000010$", "^rl000100$"}},
      {.name = "default:provider/comcast-es-dynamic",
       .category = C::kPtrRdns,
       .any = {"^es000001$"}},
      // Outlook.com postmaster codes.
      {.name = "default:provider/outlook-rp-connections",
       .category = C::kTooManyConnections,
       .any = {"^rp-003$"}},
      {.name = "default:provider/outlook-rp",
       .category = C::kReputationThrottle,
       .any = {"^rp-001$", "^rp-002$"}},
      {.name = "default:provider/outlook-dy-001", .category = C::kPtrRdns, .any = {"^dy-001$"}},
      {.name = "default:provider/outlook-block",
       .category = C::kReputationBlock,
       .any = {"^sc-001$", "^sc-002$", "^sc-003$", "^sc-004$", "^dy-002$", "^ou-001$", "^ou-002$",
               "(s3140)", "(s3150)"}},
      {.name = "default:provider/microsoft-s-throttle",
       .category = C::kReputationThrottle,
       .any = {"(s843)", "(s775)", "(s3113)", "(s3114)"}},
      // Microsoft documents 4.7.500-699 as IP throttling of new or spiking senders.
      {.name = "default:provider/microsoft-4.7.652",
       .category = C::kTooManyConnections,
       .enhanced = "4.7.652"},
      {.name = "default:provider/microsoft-4.7.500-699",
       .category = C::kReputationThrottle,
       .enhanced = "4.7.500-699"},
      // Microsoft's own enhanced codes (Exchange Online NDR reference).
      {.name = "default:provider/microsoft-tls",
       .category = C::kTlsRequired,
       .enhanced = "*.7.321-325"},
      {.name = "default:provider/microsoft-relay",
       .category = C::kRelayDenied,
       .enhanced = "5.7.501-503,5.7.57,5.7.64",
       .action = A::kRemediate},
      {.name = "default:provider/microsoft-5.7.506",
       .category = C::kPtrRdns,
       .enhanced = "5.7.506"},
      {.name = "default:provider/microsoft-5.7.509",
       .category = C::kAuthSpfDkimDmarc,
       .enhanced = "5.7.509,5.7.515"},
      {.name = "default:provider/microsoft-5.7.512",
       .category = C::kPolicyContentSpam,
       .enhanced = "5.7.512",
       .action = A::kRemediate},
      {.name = "default:provider/microsoft-block",
       .category = C::kReputationBlock,
       .enhanced = "5.7.507-508,5.7.511,5.7.513,5.7.606-649,5.7.700-749"},
      // Gmail answers EHLO with "421 4.7.0 Try again later, closing connection.
      // (EHLO)" when a sender holds more connections than it allows; the same
      // text after MAIL is a reputation deferral and stays with the phrases.
      {.name = "default:provider/gmail-ehlo-connections",
       .category = C::kTooManyConnections,
       .any = {"(ehlo)"},
       .also = {"closing connection"},
       .code = "421"},
      // Orange "Service refusé": KumoMTA and the labels suspend the path.
      {.name = "default:provider/orange-service-refuse",
       .category = C::kReputationBlock,
       .any = {"service refuse"},
       .category_4xx = C::kReputationThrottle,
       .action = A::kSuspendDomain},
      // Yahoo 5.7.9 "not accepted for policy reasons" is its DMARC/authentication
      // rejection (Yahoo KB SLN7253).
      {.name = "default:provider/yahoo-5.7.9",
       .category = C::kAuthSpfDkimDmarc,
       .any = {"policy reasons"},
       .enhanced = "5.7.9"},
      // Microsoft recipient restrictions (group accepts only authenticated or
      // listed senders): a policy on the recipient side.
      {.name = "default:provider/microsoft-5.7.133-136",
       .category = C::kPolicyContentSpam,
       .enhanced = "5.7.133-136"},

      // --- Layer 2b: MTA and gateway stock wordings (Postfix, Exim, Sendmail,
      // qmail, Exchange, Haraka, greylisting daemons, Mimecast, Proofpoint,
      // Cisco, Barracuda). Each names what the software says for one cause. ---
      // Postfix anvil: smtpd_client_message_rate_limit / recipient rate limit.
      {.name = "default:mta/postfix-anvil-rate",
       .category = C::kRateLimit,
       .any = {"too much mail from", "too many recipients from", "too many messages from"},
       .action = A::kThrottle},
      // Postfix anvil / postscreen and the big providers' connection caps:
      // "too many connections from <ip>", "... from your IP".
      {.name = "default:mta/connections-from",
       .category = C::kTooManyConnections,
       .any = {"too many connections from", "too many concurrent connections",
               "too many simultaneous connections", "too many open connections",
               "too many smtp connections", "too many sessions from", "connection count limit",
               "connection rate limit exceeded", "max connections", "maximum connections"}},
      // Greylisting daemons and gateways: postgrey ("Greylisted, see ..."),
      // greylistd ("is not yet authorized to deliver mail from"),
      // milter-greylist ("Greylisting in action"), Mimecast's greylisting
      // deferral ("Internal resource temporarily unavailable"), and the
      // deferrals that say it is the first attempt for this sender and
      // recipient (read as a reputation deferral before, which suspended a
      // greylisting host).
      {.name = "default:mta/greylisting-daemons",
       .category = C::kGreylisting,
       .any = {"not yet authorized to deliver", "internal resource temporarily unavailable",
               "please come back in", "triplet", "delayed by greylist", "greylisting in action",
               "first delivery attempt", "first attempt from this", "not yet whitelisted",
               "not yet allowlisted", "first time seen", "seen for the first time",
               "new sender/recipient"},
       .code = "4xx"},
      // Greylisting by what it says rather than by a daemon's words: a 4yz that
      // calls the sender (or the sender/recipient pair) new or not yet known
      // and asks for a retry soon, from the same host. Before the sender-address
      // and domain word classes, which would read "unknown sender" or "unknown
      // sending host" as a DNS failure.
      {.name = "default:mta/greylisting-by-meaning",
       .category = C::kGreylisting,
       .any = {"new sender", "unknown sender", "unknown sending host", "first attempt",
               "first message from", "first contact", "first time we see", "same ip", "same server",
               "same host", "same sending", "sender/recipient", "not seen before", "never seen",
               "new triplet", "unknown triplet", "sender not yet known", "not yet known"},
       .also = {"retry", "try again", "come back", "resend", "later", "minute", "second"},
       .code = "4xx"},
      // Exchange / Microsoft 365 enhanced-status names in NDR text.
      {.name = "default:mta/exchange-recipient",
       .category = C::kMailboxUnknown,
       .any = {"recipnotfound", "recipientnotfound", "mailboxnotfound"}},
      // Exchange's mailbox database refusing a recipient that receives too fast.
      {.name = "default:mta/exchange-thread-limit",
       .category = C::kRateLimit,
       .any = {"thread limit exceeded"},
       .action = A::kRetry},
      {.name = "default:mta/exchange-quota",
       .category = C::kMailboxFull,
       .any = {"quotaexceeded", "mailboxfull"}},
      // Mimecast: the envelope matched a block entry (a policy of the receiver).
      {.name = "default:mta/mimecast-envelope-blocked",
       .category = C::kPolicyContentSpam,
       .any = {"envelope blocked"}},
  };
  for (DefaultRuleSpec& r : rules) out->push_back(std::move(r));
}

}  // namespace mailretry::internal
