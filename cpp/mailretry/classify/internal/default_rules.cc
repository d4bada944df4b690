#include "mailretry/classify/internal/default_rules.h"

#include <vector>

#include "mailretry/classify/classifier.h"

namespace mailretry::internal {
namespace {

using C = Category;
using A = Action;

// Phrase lists shared by more than one rule.

// The receiver's own verdict on the sending IP or domain.
const std::vector<std::string_view>& ReputationPhrases() {
  static const auto* p = new std::vector<std::string_view>{
      "reputation",
      "banned sending ip",
      "banned sender",
      "unsolicited mail originating",
      "unsolicited email originating",
      "user complaints",
      "complaints concerning",
      "complaints we received",
      "temporarily deferred",
      "permanently deferred",
      "blocked for abuse",
      "not accepting connections",
      "traffic not accepted",
      "access denied, please try again later",
      "policy restrictions",
      "policy violations",
      "on our block list",
      "customer block list",
      "blacklisted by recipient",
      "block has been placed",
      "open relay",
      "has exceeded threshold",
      "ip has been blocked",
      "ip has been temporarily blocked",
      "access from ip address",
      "ip address has been blocked",
      "your ip address has been blocked",
      "sending ip has been blocked",
      "characteristic of spam",
      "spam-like characteristics",
      "^ip blocked",
      "client host rejected",
  };
  return *p;
}

}  // namespace

Action DefaultAction(Category category, int klass) {
  const bool temp = klass == 4;
  switch (category) {
    case C::kRateLimit:
    case C::kTooManyConnections:
    case C::kReputationThrottle:
      return A::kThrottle;
    case C::kReputationBlock:
      return A::kSuspendDomain;
    case C::kServerBusyCapacity:
    case C::kGreylisting:
    case C::kMaintenanceShutdown:
    case C::kUnknownTransient:
      return A::kRetry;
    case C::kAuthSpfDkimDmarc:
    case C::kPtrRdns:
    case C::kDnsblListed:
    case C::kTlsRequired:
      return A::kRemediate;
    case C::kRelayDenied:
      return A::kBounce;
    case C::kPolicyContentSpam:
    case C::kMailboxFull:
    case C::kMailboxUnknown:
    case C::kMailboxDisabled:
    case C::kDomainUnknown:
    case C::kMessageTooLarge:
    case C::kUnknownPermanent:
      return temp ? A::kRetry : A::kBounce;
  }
  return temp ? A::kRetry : A::kBounce;
}

bool DefaultTransient(Action action, int klass) {
  switch (action) {
    case A::kRetry:
    case A::kThrottle:
    case A::kSuspendDomain:
      return true;
    case A::kBounce:
      return false;
    case A::kRemediate:
      return klass == 4;
  }
  return klass == 4;
}

const std::vector<DefaultRuleSpec>& DefaultRuleSpecs() {
  static const auto* specs = new std::vector<DefaultRuleSpec>{
      // --- Provider markers: tokens whose meaning the provider documents. ---
      // Yahoo/AOL TS codes: Yahoo asks senders to stop, not slow down.
      {.name = "default:yahoo-tss09",
       .category = C::kReputationBlock,
       .any = {"[tss09]", "^tss09$"},
       .action = A::kSuspendDomain},
      {.name = "default:yahoo-ts",
       .category = C::kReputationThrottle,
       .any = {"[ts01]", "[ts02]", "[ts03]", "[tss01]", "[tss02]", "[tss03]", "[tss04]", "[tss05]",
               "[ipts01]", "[ipts02]", "[ipts03]", "[ipts04]", "[ipts05]", "^tss04$"},
       .action = A::kSuspendDomain},
      {.name = "default:apple-hcm1",
       .category = C::kReputationThrottle,
       .any = {"[hcm1]", "^hcm1$"},
       .action = A::kSuspendDomain},
      {.name = "default:apple-bs02",
       .category = C::kServerBusyCapacity,
       .any = {"[bs02]"}},
      {.name = "default:yahoo-bl",
       .category = C::kDnsblListed,
       .any = {"[bl21]", "[bl22]", "[bl23]"}},
      // Comcast block codes: BL000000 is Comcast's own spam-pattern verdict, the
      // others name third-party lists (Spamhaus, SenderScore, Cloudmark).
      {.name = "default:comcast-bl000000",
       .category = C::kReputationBlock,
       .any = {"^bl000000$"}},
      {.name = "default:comcast-bl",
       .category = C::kDnsblListed,
       .any = {"^bl000001$", "^bl000010$", "^bl000011$", "^bl000100$", "^bl000101$", "^bl000110$",
               "^bl000111$"}},
      {.name = "default:comcast-rl",
       .category = C::kRateLimit,
       .any = {"^rl000001$", "^rl000010$", "^rl000100$"}},
      {.name = "default:comcast-es-dynamic",
       .category = C::kPtrRdns,
       .any = {"^es000001$"}},
      // Outlook.com postmaster codes.
      {.name = "default:outlook-rp-connections",
       .category = C::kTooManyConnections,
       .any = {"^rp-003$"}},
      {.name = "default:outlook-rp",
       .category = C::kReputationThrottle,
       .any = {"^rp-001$", "^rp-002$"}},
      {.name = "default:outlook-dy-001",
       .category = C::kPtrRdns,
       .any = {"^dy-001$"}},
      {.name = "default:outlook-block",
       .category = C::kReputationBlock,
       .any = {"^sc-001$", "^sc-002$", "^sc-003$", "^sc-004$", "^dy-002$", "^ou-001$", "^ou-002$",
               "(s3140)", "(s3150)"}},
      {.name = "default:microsoft-s-throttle",
       .category = C::kReputationThrottle,
       .any = {"(s843)", "(s775)", "(s3113)", "(s3114)"}},
      // Microsoft documents 4.7.500-699 as IP throttling of new or spiking senders.
      {.name = "default:microsoft-connections",
       .category = C::kTooManyConnections,
       .enhanced = "4.7.652"},
      {.name = "default:microsoft-4.7.5xx-6xx",
       .category = C::kReputationThrottle,
       .enhanced = "4.7.500-699"},
      // Microsoft's own enhanced codes (Exchange Online NDR reference).
      {.name = "default:microsoft-tls", .category = C::kTlsRequired, .enhanced = "*.7.321-325"},
      {.name = "default:microsoft-relay",
       .category = C::kRelayDenied,
       .enhanced = "5.7.501-503,5.7.57,5.7.64",
       .action = A::kRemediate},
      {.name = "default:microsoft-5.7.506", .category = C::kPtrRdns, .enhanced = "5.7.506"},
      {.name = "default:microsoft-5.7.509", .category = C::kAuthSpfDkimDmarc, .enhanced = "5.7.509,5.7.515"},
      {.name = "default:microsoft-5.7.512",
       .category = C::kPolicyContentSpam,
       .enhanced = "5.7.512",
       .action = A::kRemediate},
      {.name = "default:microsoft-block",
       .category = C::kReputationBlock,
       .enhanced = "5.7.507-508,5.7.511,5.7.513,5.7.606-649,5.7.700-749"},
      // Orange "Service refusé": KumoMTA and the labels suspend the path.
      {.name = "default:orange-service-refuse",
       .category = C::kReputationBlock,
       .any = {"service refuse"},
       .category_4xx = C::kReputationThrottle,
       .action = A::kSuspendDomain},
      // Yahoo 5.7.9 "not accepted for policy reasons" is its DMARC/authentication
      // rejection (Yahoo KB SLN7253).
      {.name = "default:yahoo-5.7.9",
       .category = C::kAuthSpfDkimDmarc,
       .any = {"policy reasons"},
       .enhanced = "5.7.9"},
      // Microsoft recipient restrictions (group accepts only authenticated or
      // listed senders): a policy on the recipient side.
      {.name = "default:microsoft-5.7.13x",
       .category = C::kPolicyContentSpam,
       .enhanced = "5.7.133-136"},

      // --- Text cues naming the cause; the most specific causes first. ---
      {.name = "default:text-protocol",
       .category = C::kUnknownPermanent,
       .any = {"syntax error", "out of sequence", "unrecognized command", "unimplemented command",
               "command not implemented", "command unrecognized", "improper sequence",
               "bad sequence of commands", "protocol violation", "helo first", "ehlo first",
               "send helo", "send ehlo", "pipelining", "to pipeline", "line limit", "line too long",
               "line length"},
       .action = A::kRemediate},
      {.name = "default:text-expired",
       .category = C::kUnknownPermanent,
       .any = {"message expired", "queue.expired", "queue too long", "delivery time expired",
               "message has expired", "expired after", "retry timeout exceeded",
               "not going to try again"},
       .action = A::kBounce},
      {.name = "default:text-mail-loop",
       .category = C::kUnknownPermanent,
       .any = {"hop count", "too many hops", "mail loop", "loop detected", "loops back",
               "routing loop", "mail for domain loops"},
       .action = A::kBounce},
      {.name = "default:text-greylisting",
       .category = C::kGreylisting,
       .any = {"greylist", "graylist", "grey list", "gray list", "grey-list", "gray-list",
               "postgrey", "greylisted", "greylisting"}},
      {.name = "default:text-maintenance-window",
       .category = C::kMaintenanceShutdown,
       .any = {"maintenance", "shutting down", "going down", "restarting",
               "system is being upgraded"}},
      {.name = "default:text-auth",
       .category = C::kAuthSpfDkimDmarc,
       .any = {"^spf", "dkim", "dmarc", "sender policy framework", "domainkeys", "unauthenticated email",
               "unauthenticated mail", "unauthenticated senders", "sender is unauthenticated",
               "it is unauthenticated", "authentication results", "authenticate with",
               "purported responsible address"}},
      {.name = "default:text-tls",
       .category = C::kTlsRequired,
       .any = {"starttls", "^tls", "^ssl$", "tls/ssl", "^dane", "certificate", "dnssec",
               "encryption required", "must use encryption", "secure connection required",
               "requires encryption", "encrypted connection"}},
      {.name = "default:text-ptr",
       .category = C::kPtrRdns,
       .any = {"reverse dns", "reverse-dns", "rdns", "reverse lookup", "reverse hostname",
               "reverse dns lookup", "^ptr$", "ptr record", "ptr resource", "cannot find your hostname",
               "can't find your hostname", "ip name lookup failed", "hostname lookup failed",
               "name lookup failed for", "cannot resolve your address", "bad helo", "empty helo",
               "helo/ehlo argument", "invalid helo", "helo name", "helo command rejected",
               "helo hostname", "dynamic ip", "dynamic/residential", "residential ip",
               "dynamic address", "dial-up", "dialup", "smtp server of your isp",
               "without a valid sender domain", "fcrdns", "forward dns"}},
      {.name = "default:text-reputation-own-list",
       .category = C::kReputationBlock,
       .any = {"on our block list", "customer block list", "blacklisted by recipient",
               "blocked by recipient", "our blacklist", "our blocklist", "local blacklist",
               "local blocklist"},
       .category_4xx = C::kReputationThrottle},
      {.name = "default:text-dnsbl",
       .category = C::kDnsblListed,
       .any = {"dnsbl", "^rbl", "^dnsrbl", "spamhaus", "sorbs", "spamcop", "barracuda",
               "cloudmark", "senderscore", "sender score", "blocked using", "listed in",
               "listed on", "listed at", "listed by", "is listed", "block listed", "blocklist",
               "block list", "blacklist", "black list", "^xbl$", "^pbl$", "^sbl$",
               "^dbl$", "uceprotect", "psbl", "surbl", "spamrats", "abuseat", "mailspike",
               "dynablock", "blackholes", "^rbls"},
       .unless = {"not listed"}},
      {.name = "default:text-sender-address",
       .category = C::kAuthSpfDkimDmarc,
       .any = {"sender address rejected", "sender domain", "sender's domain", "domain of sender",
               "unroutable sender", "unrouteable sender", "sender verify failed",
               "sender verification failed", "verify mailfrom failed", "sender address is not",
               "invalid sender", "emetteur invalide", "blank from", "from: addresses are not allowed",
               "invalid ip for sending mail", "doesn't allow sending", "not permitted by the domain owner",
               "invalid dns mx or a/aaaa", "sender mx", "sender's mx", "the sender address",
               "mail from address"},
       .unless = {"bad outbound sender"}},
      // RFC 3463 X.1.7/X.1.8: the sender's mailbox or system is bad.
      {.name = "default:enhanced-x.1.7",
       .category = C::kAuthSpfDkimDmarc,
       .unless = {"bad outbound sender"},
       .enhanced = "*.1.7,*.1.8"},
      {.name = "default:text-connections",
       .category = C::kTooManyConnections,
       .any = {"too many connections", "too many concurrent", "concurrent connections",
               "connection limit", "maximum number of connections", "max number of connections",
               "too many sessions", "sessions opened", "connection frequency",
               "connection rate limit", "trop de connexions", "too many simultaneous",
               "messages per session", "messages per connection", "message per connection",
               "mails per session", "per session", "number of connections"}},
      {.name = "default:text-frequency-limited",
       .category = C::kRateLimit,
       .any = {"frequency limited", "frequency limit"}},
      {.name = "default:text-too-many-recipients",
       .category = C::kRateLimit,
       .any = {"too many recipients", "limit for message recipients", "recipients per message",
               "per transaction exceeded", "separate transaction", "recipient limit",
               "number of recipients"},
       .action = A::kRetry},
      // Receiver verdicts on the sending IP/domain: slow down when deferred,
      // pause the path when rejected.
      {.name = "default:text-reputation",
       .category = C::kReputationBlock,
       .any = ReputationPhrases(),
       .category_4xx = C::kReputationThrottle},
      {.name = "default:text-unsolicited-rate",
       .category = C::kReputationBlock,
       .any = {"users from spam", "unusual rate of unsolicited", "unusual amount of unsolicited"},
       .also = {"rate limited", "unusual rate", "unusual amount", "ip address"},
       .category_4xx = C::kReputationThrottle},
      {.name = "default:text-rate-limit",
       .category = C::kRateLimit,
       .any = {"rate limit", "rate-limit", "ratelimit", "rate limited", "too quickly", "too fast",
               "at a rate that", "excessive volume", "unusual rate", "sending limit",
               "relay limit", "submission quota",
               "sending quota", "relay quota", "quota for sending", "sender throttled", "throttled",
               "throttling", "too many messages", "too many emails", "too many mails",
               "exceeded the maximum number of messages", "per second",
               "slow down", "reduce the sending rate", "short period of time", "unexpected volume",
               "mail flood", "sending rate", "message rate", "rate exceeded", "too many requests"}},
      {.name = "default:text-relay-smtp-auth",
       .category = C::kRelayDenied,
       .any = {"authentication required", "authentification requise", "auth required",
               "authrequired", "smtp authentication", "authentication not allowed", "auth failed",
               "authentication failed", "authentication mechanism", "authentication type",
               "cannot authenticate", "password", "log in with", "sign in", "not authenticated to send",
               "must authenticate", "please authenticate", "authentification invalide",
               "code d\"authentification", "d'authentification", "bad outbound sender",
               "not owned by user", "sender email is not in my domain", "not verified",
               "email relay denied", "email sending denied", "sending account has been",
               "tenantattribution", "local user only", "not allowed to send as",
               "send as denied", "sender not allowed", "authentication is required",
               "must be authenticated", "auth is required"},
       .action = A::kRemediate},
      {.name = "default:text-relay-denied",
       .category = C::kRelayDenied,
       .any = {"relay access denied", "relaying denied", "relay denied", "unable to relay",
               "not permitted to relay", "relay not permitted", "relaying disallowed",
               "relay not allowed", "relaying not allowed", "unauthorized relay",
               "configured to relay", "insecure mail relay", "relaying to", "we do not relay",
               "no relaying", "relay prohibited", "not a gateway", "not local host",
               "rcpthosts", "specified domain is not allowed", "relay attempt", "not authorized to relay",
               "relay not authorized", "relaying not permitted"}},
      {.name = "default:text-mailbox-disabled",
       .category = C::kMailboxDisabled,
       .any = {"disabled", "inactive", "inactivity", "deactivated", "not activated",
               "account closed", "account has been closed", "account is blocked",
               "account isblocked", "compte du destinataire est bloque", "^locked",
               "discontinued", "no longer valid", "no longer active", "account expired",
               "account suspended", "account has been suspended", "mailbox suspended",
               "user suspended", "is suspended", "account is unavailable", "mailbox is frozen",
               "account frozen", "account is not active", "mailbox is not active", "has been deactivated", "blocked account"},
       .unless = {"journaling"}},
      {.name = "default:text-mailbox-full",
       .category = C::kMailboxFull,
       .any = {"mailbox full", "mailbox is full", "is full", "box full", "inbox is full",
               "over quota", "overquota", "quota exceeded", "quota limit", "quota usage",
               "exceeded storage", "storage allocation", "storage full", "out of storage",
               "disk quota", "mailbox size limit", "mailbox exceeds", "exceeds allowed size",
               "quota violation", "full mailbox", "mailbox has exceeded", "exceeded its quota",
               "exceeds its quota", "insufficient storage", "not enough space", "mailfolder is full",
               "^quota", "mailbox quota", "exceeded quota", "quota reached", "over its quota",
               "storage quota", "exceeds quota", "out of space", "postfach voll", "boite pleine",
               "mail box full"},
       .unless = {"system storage"}},
      {.name = "default:text-domain-unknown",
       .category = C::kDomainUnknown,
       .any = {"domain not found", "domain does not exist", "no such domain", "invalid domain",
               "unknown domain", "domain is not reachable", "domain name not found", "host not found",
               "host unknown", "unknown host", "invalid host name", "unrouteable address",
               "unroutable address", "does not accept mail", "blank mailhost", "null mx",
               "no mx record", "nxdomain", "domain doesn't exist", "domain could not be found",
               "no valid mx", "no such host"}},
      {.name = "default:text-mailbox-unknown",
       .category = C::kMailboxUnknown,
       .any = {"user unknown", "unknown user", "no such user", "no such address",
               "no such recipient", "no such mailbox", "user not found", "recipient not found",
               "address not found", "mailbox not found", "mailbox unavailable",
               "mailbox not available", "mailbox is unavailable", "does not exist", "doesn't exist",
               "not exist", "^no exist", "no existe", "user doesn't have", "invalid recipient", "invalid user",
               "invalid mailbox", "invalid address", "bad address", "bad destination mailbox",
               "addressee unknown", "unknown recipient", "recipient unknown", "unknown or illegal alias",
               "no mailbox", "not a registered", "not our customer", "not our user",
               "not a valid rfc", "could not be found", "no longer on server", "not a member",
               "unallocated", "recipients are invalid", "destinatario desconocido",
               "inexistente", "destinataire invalide", "recipient invalid", "unknown address",
               "mailbox unknown", "account does not exist", "no account", "user invalid",
               "unknown local part", "no mailbox here", "invalid email address", "no such person",
               "unknown mailbox", "address unknown", "unknown account", "not a valid mailbox",
               "bad recipient", "unknown email address", "undeliverable address",
               "mailbox name not allowed", "no valid recipients", "user is unknown"}},
      {.name = "default:text-too-large",
       .category = C::kMessageTooLarge,
       .any = {"too large", "too big", "size limit", "message size", "size exceeds",
               "exceeds the maximum size", "exceeds maximum", "exceeded the maximum size",
               "recipsizelimit", "header size", "size of your message", "size of one of the",
               "size of the header", "message length exceeds", "larger than", "message exceeds",
               "maximum message size"}},
      // Generic limit wording, after the mailbox-quota and size rules that say
      // which limit.
      {.name = "default:text-limit-exceeded",
       .category = C::kRateLimit,
       .any = {"limit exceeded", "limit reached", "daily limit", "per hour", "per day", "per minute",
               "exceeded the limit", "limit has been reached", "limit was reached"}},
      {.name = "default:text-format",
       .category = C::kPolicyContentSpam,
       .any = {"rfc 5322", "rfc5322", "rfc 822", "rfc822", "rfc 2822", "message-id", "malformed",
               "invalid header", "not rfc compliant", "rfc compliant", "invalid characters",
               "invalid data in message", "^mime", "invalid structure", "unicode character",
               "multiple addresses in from", "from: header", "missing a valid", "bare lf",
               "8-bit", "8bit", "non-ascii", "header syntax"},
       .action = A::kRemediate},
      {.name = "default:text-spam-content",
       .category = C::kPolicyContentSpam,
       .any = {"spam detected", "as spam", "spam message", "spam filter", "spam content",
               "considered spam", "spam scale", "suspicion of spam", "the spam", "spam or virus",
               "likely spam", "junk", "virus", "malware", "infected", "attachment",
               "content rejected", "content reject", "content denied", "message content",
               "nature of the content", "likely unsolicited", "unsolicited", "policy violation",
               "local policy", "denied by policy", "by policy", "policy reasons", "for policy",
               "policy error", "security policies", "security policy", "message filtered",
               "filtered", "^ube$", "mail data refused", "matches a profile", "not in whitelist",
               "not in allowlist", "is restricted", "delivery restricted", "rejected by destination",
               "- spam", "spam signature", "spamsignature", "phishing", "blocked by", "antispam",
               "anti-spam", "suspicious", "content presents", "message rejected", "message not allowed"}},
      {.name = "default:text-spam",
       .category = C::kPolicyContentSpam,
       .any = {"spam"},
       .unless = {"users from spam"}},
      // Postfix-style "Recipient address rejected: <reason>" whose reason named
      // nothing above: the recipient is refused.
      {.name = "default:text-address-rejected",
       .category = C::kMailboxUnknown,
       .any = {"address rejected"}},
      {.name = "default:text-maintenance",
       .category = C::kMaintenanceShutdown,
       .any = {"shutdown", "service not available", "service not active"}},
      {.name = "default:text-busy",
       .category = C::kServerBusyCapacity,
       .any = {"busy", "overloaded", "too many processes", "load average", "insufficient system",
               "system resources", "resources temporarily unavailable", "temporarily unavailable",
               "temporary server error", "temporary local problem", "local problem",
               "try again later", "try later", "out of memory", "server error", "service unavailable",
               "system storage", "congestion", "too many tasks", "queue full", "temporarily unable",
               "system overload", "resources unavailable"},
       .unless = {"recipient"},
       .code = "4xx"},

      // --- RFC 3463 enhanced codes (and provider-specific details). ---
      {.name = "default:gmail-4.7.28", .category = C::kRateLimit, .code = "4xx", .enhanced = "4.7.28"},
      {.name = "default:gmail-5.7.28", .category = C::kReputationBlock, .enhanced = "5.7.28"},
      {.name = "default:gmail-auth",
       .category = C::kAuthSpfDkimDmarc,
       .enhanced = "*.7.20-24,*.7.26,*.7.27,*.7.30,*.7.32"},
      {.name = "default:gmail-tls", .category = C::kTlsRequired, .enhanced = "*.7.29,*.7.10,*.7.11"},
      {.name = "default:enhanced-x.7.25", .category = C::kPtrRdns, .enhanced = "*.7.25"},
      {.name = "default:enhanced-x.7.13", .category = C::kMailboxDisabled, .enhanced = "*.7.13"},
      {.name = "default:enhanced-x.7.8",
       .category = C::kRelayDenied,
       .enhanced = "*.7.8,*.7.12,*.7.80",
       .action = A::kRemediate},
      {.name = "default:enhanced-x.1.1",
       .category = C::kMailboxUnknown,
       .enhanced = "*.1.1,*.1.3,*.1.6,*.1.10,5.4.1"},
      {.name = "default:enhanced-x.1.2", .category = C::kDomainUnknown, .enhanced = "*.1.2,5.4.4"},
      {.name = "default:enhanced-x.2.1", .category = C::kMailboxDisabled, .enhanced = "*.2.1"},
      {.name = "default:enhanced-x.2.2", .category = C::kMailboxFull, .enhanced = "*.2.2"},
      {.name = "default:enhanced-x.3.4", .category = C::kMessageTooLarge, .enhanced = "*.2.3,*.3.4"},
      {.name = "default:enhanced-4.3.1", .category = C::kServerBusyCapacity, .enhanced = "4.3.1,4.4.5"},
      {.name = "default:enhanced-4.3.2", .category = C::kMaintenanceShutdown, .enhanced = "4.3.2"},
      {.name = "default:enhanced-x.4.7",
       .category = C::kUnknownPermanent,
       .enhanced = "*.4.7,*.4.6",
       .action = A::kBounce},
      {.name = "default:enhanced-x.5.3",
       .category = C::kRateLimit,
       .enhanced = "*.5.3",
       .action = A::kRetry},
      {.name = "default:enhanced-x.5.x",
       .category = C::kUnknownPermanent,
       .enhanced = "5.5.1,5.5.2,5.5.4",
       .action = A::kRemediate},
      {.name = "default:enhanced-x.6.x",
       .category = C::kPolicyContentSpam,
       .enhanced = "5.6.*",
       .action = A::kRemediate},
      {.name = "default:enhanced-5.7.x", .category = C::kPolicyContentSpam, .enhanced = "5.7.0,5.7.1,5.7.7"},

      // --- Basic code. ---
      {.name = "default:code-521", .category = C::kDomainUnknown, .code = "521"},
      {.name = "default:code-556", .category = C::kDomainUnknown, .code = "556"},
  };
  return *specs;
}

}  // namespace mailretry::internal
