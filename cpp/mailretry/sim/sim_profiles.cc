// Built-in receiver profiles with the provenance of every parameter
// (ExplainProfiles), and the names of the simulator's enums. Reply wordings
// are our own words in the providers' documented style. The default scenario
// and scenario validation: sim_scenario.cc.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "mailretry/reply/reply.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim {
namespace {

void SetReply(ReceiverProfile& p, ReplyKind k, std::string text) {
  p.replies[static_cast<int>(k)] = std::move(text);
}

// Defaults shared by every profile; each profile overwrites what differs.
// The transport kinds carry a detail text, not an SMTP reply.
ReceiverProfile Base(std::string name) {
  ReceiverProfile p;
  p.name = std::move(name);
  SetReply(p, ReplyKind::kAccepted, "250 2.0.0 Ok: queued as 4Xq9Lw1bTz");
  SetReply(p, ReplyKind::kTooManyConnections,
           "421 4.7.0 Error: too many connections from 192.0.2.10");
  SetReply(p, ReplyKind::kRateLimited, "450 4.7.1 Error: too much mail from 192.0.2.10");
  SetReply(p, ReplyKind::kReputationThrottled, "421 Reject due to policy violations");
  SetReply(p, ReplyKind::kPtrDeferral,
           "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.10]");
  SetReply(p, ReplyKind::kPtrReject, "554 5.7.1 Reverse DNS failed.");
  SetReply(p, ReplyKind::kAuthDeferral,
           "451 4.7.26 Message deferred: the sending domain's DMARC check could not pass (no "
           "aligned SPF or DKIM result)");
  SetReply(p, ReplyKind::kAuthReject,
           "550 5.7.26 Message refused: the sending domain publishes a DMARC policy and neither "
           "SPF nor DKIM passed aligned");
  SetReply(p, ReplyKind::kMaintenance,
           "421 4.3.2 Service shutting down, closing transmission channel");
  SetReply(p, ReplyKind::kOverload, "421 4.4.5 Server busy, try again later.");
  SetReply(p, ReplyKind::kGreylisted,
           "450 4.2.0 <user@example.org>: Recipient address rejected: Greylisted for 300 seconds");
  SetReply(p, ReplyKind::kMailboxFull, "450 4.2.2 <user@example.org>... Mailbox Full");
  SetReply(p, ReplyKind::kUnknownUser,
           "550 5.1.1 <user@example.org>: Recipient address rejected: User unknown in virtual "
           "mailbox table");
  SetReply(p, ReplyKind::kRandomDeferral, "451 4.3.0 Temporary local problem - please try later");
  SetReply(p, ReplyKind::kConnectionRefused,
           "connect to mx.example.net[198.51.100.7]:25: Connection refused");
  SetReply(p, ReplyKind::kConnectTimeout,
           "connect to mx.example.net[198.51.100.7]:25: Connection timed out");
  SetReply(p, ReplyKind::kDroppedMidData,
           "lost connection with mx.example.net[198.51.100.7] while sending message body");
  p.unknown_user_probability = 0.01;
  p.mailbox_full_probability = 0.002;
  p.refuse_probability = 0.0005;
  p.timeout_probability = 0.0005;
  p.drop_probability = 0.0005;
  return p;
}

ReceiverProfile GmailLike() {
  ReceiverProfile p = Base("gmail-like");
  p.provider = "google";
  p.max_connections_per_source = 20;
  p.max_per_hour = 1200;
  p.soft_block_below = 0.5;
  p.throttle_probability = 0.8;
  p.retry_penalty = 0.001;
  p.recovery_per_hour = 0.02;
  p.checks_ptr = true;
  p.ptr_soft_attempts = 4;
  p.checks_auth = AuthCheck::kSpfOrDkim;
  p.auth_soft_attempts = 4;
  p.overload_probability = 0.001;
  p.random_deferral_probability = 0.005;
  p.latency_min = absl::Milliseconds(500);
  p.latency_max = absl::Seconds(2);
  SetReply(p, ReplyKind::kAccepted,
           "250 2.0.0 OK  1767225600 d2e1a72fcca58-6f0d1a2c3a4si1234567b3.123 - gsmtp");
  SetReply(p, ReplyKind::kTooManyConnections,
           "421 4.7.0 Try again later, closing connection. (EHLO) For more information, go to "
           "About SMTP error messages. - gsmtp");
  SetReply(p, ReplyKind::kRateLimited,
           "421 4.7.28 [192.0.2.10] Our system has detected an unusual rate of unsolicited mail "
           "originating from your IP address. To protect our users from spam, mail sent from your "
           "IP address has been temporarily rate limited. Please visit "
           "https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email "
           "Senders Guidelines. - gsmtp");
  SetReply(p, ReplyKind::kReputationThrottled,
           "421 4.7.0 This message is suspicious due to the very low reputation of the sending IP "
           "address. To protect our users from spam, email sent from your IP address has been "
           "temporarily rate limited. For more information, go to Why has Gmail blocked my "
           "messages?. - gsmtp");
  SetReply(p, ReplyKind::kPtrDeferral,
           "451 4.7.23 The sending IP has no PTR record, or its PTR name does not resolve back to "
           "it; mail from this IP is deferred until reverse DNS is fixed. - gsmtp");
  SetReply(p, ReplyKind::kPtrReject,
           "550 5.7.25 The sending IP has no PTR record that resolves back to it, so this message "
           "is refused. - gsmtp");
  SetReply(p, ReplyKind::kAuthDeferral,
           "421 4.7.26 Unauthenticated mail is rate limited: this message passed neither SPF nor "
           "DKIM. - gsmtp");
  SetReply(p, ReplyKind::kAuthReject,
           "550 5.7.26 Unauthenticated mail is refused: this message passed neither SPF nor DKIM. "
           "- gsmtp");
  SetReply(p, ReplyKind::kOverload,
           "421 4.7.0 Try again later, closing connection. (MAIL) For more information, go to "
           "About SMTP error messages. - gsmtp");
  SetReply(p, ReplyKind::kMailboxFull,
           "452 4.2.2 The email account that you tried to reach is over quota. Please direct the "
           "recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp");
  SetReply(p, ReplyKind::kUnknownUser,
           "550 5.1.1 The email account that you tried to reach does not exist. Please try "
           "double-checking the recipient's email address for typos or unnecessary spaces. For "
           "more information, go to https://support.google.com/mail/?p=NoSuchUser - gsmtp");
  SetReply(p, ReplyKind::kRandomDeferral,
           "451 4.3.0 Mail server temporarily rejected message. - gsmtp");
  return p;
}

ReceiverProfile OutlookLike() {
  ReceiverProfile p = Base("outlook-like");
  p.provider = "microsoft";
  p.max_connections_per_source = 5;
  p.max_per_minute = 60;
  p.soft_block_below = 0.4;
  p.throttle_probability = 0.7;
  p.retry_penalty = 0.001;
  p.recovery_per_hour = 0.02;
  p.maintenance_every = absl::Hours(24);
  p.maintenance_duration = absl::Minutes(20);
  p.maintenance_offset = absl::Hours(2);
  p.overload_probability = 0.002;
  p.random_deferral_probability = 0.003;
  p.latency_min = absl::Seconds(1);
  p.latency_max = absl::Seconds(3);
  SetReply(p, ReplyKind::kAccepted,
           "250 2.6.0 <msg@example.com> [InternalId=123456789, Hostname=DM6PR01MB1234.namprd01."
           "prod.outlook.com] Queued mail for delivery");
  SetReply(p, ReplyKind::kTooManyConnections,
           "451 4.7.652 The mail server [192.0.2.10] has exceeded the maximum number of "
           "connections. (S3115) [BN3PEPF0000B370.namprd21.prod.outlook.com]");
  SetReply(p, ReplyKind::kRateLimited,
           "421 RP-002 The mail server IP connecting to Outlook.com server has exceeded the rate "
           "limit allowed on this connection. Reason for rate limitation is related to IP/domain "
           "reputation.");
  SetReply(p, ReplyKind::kReputationThrottled,
           "451 4.7.650 The mail server [192.0.2.10] has been temporarily rate limited due to IP "
           "reputation. For e-mail delivery information, see https://postmaster.live.com (S3113) "
           "[5NY1SSJFSTZJRJBG.eurprd02.prod.outlook.com]");
  SetReply(p, ReplyKind::kMaintenance, "421 4.3.2 Service not active [outlook.com]");
  SetReply(p, ReplyKind::kOverload,
           "451 4.3.2 Temporary server error. Please try again later ATTR17 [outlook.com]");
  SetReply(p, ReplyKind::kUnknownUser,
           "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup");
  SetReply(p, ReplyKind::kAuthReject,
           "550 5.7.509 Access denied, sending domain [EXAMPLE.COM] does not pass DMARC "
           "verification and has a DMARC policy of reject.");
  return p;
}

ReceiverProfile YahooLike() {
  ReceiverProfile p = Base("yahoo-like");
  p.provider = "yahoo";
  p.max_connections_per_source = 8;
  p.max_per_minute = 20;
  p.max_per_hour = 600;
  p.soft_block_below = 0.6;
  p.throttle_probability = 0.9;
  p.retry_penalty = 0.002;
  p.recovery_per_hour = 0.02;
  p.checks_ptr = true;
  p.checks_auth = AuthCheck::kSpfOrDkim;
  p.auth_soft_attempts = 0;
  p.overload_probability = 0.003;
  p.random_deferral_probability = 0.002;
  p.latency_min = absl::Seconds(1);
  p.latency_max = absl::Seconds(3);
  SetReply(p, ReplyKind::kAccepted, "250 ok dirdel");
  const std::string tss04 =
      "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume "
      "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes";
  SetReply(p, ReplyKind::kRateLimited, tss04);
  SetReply(p, ReplyKind::kReputationThrottled, tss04);
  SetReply(p, ReplyKind::kTooManyConnections, tss04);
  SetReply(p, ReplyKind::kPtrDeferral,
           "421 4.7.0 [TSS04] Mail from 192.0.2.10 deferred: the IP has no valid reverse DNS "
           "name");
  SetReply(p, ReplyKind::kOverload,
           "451 mta283.mail.scd.yahoo.com Resources temporarily unavailable. Please try again "
           "later [#4.16.5].");
  SetReply(p, ReplyKind::kUnknownUser,
           "554 delivery error: dd This user doesn't have a yahoo.com account (***@yahoo.com) [-5] "
           "- mta1234.mail.bf1.yahoo.com");
  SetReply(p, ReplyKind::kAuthReject,
           "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo "
           "requires all senders to authenticate with either SPF or DKIM.");
  return p;
}

ReceiverProfile ComcastLike() {
  ReceiverProfile p = Base("comcast-like");
  p.provider = "comcast";
  p.max_connections_per_source = 25;
  p.checks_ptr = true;
  p.overload_probability = 0.002;
  p.random_deferral_probability = 0.002;
  SetReply(p, ReplyKind::kTooManyConnections,
           "421 mx.comcast.example comcast Too many sessions opened from 192.0.2.10");
  SetReply(p, ReplyKind::kPtrDeferral,
           "421 mx.comcast.example Reverse DNS failure : Try again later");
  return p;
}

ReceiverProfile EnterpriseGateway() {
  ReceiverProfile p = Base("enterprise-gateway");
  p.max_connections_per_source = 5;
  p.max_per_minute = 30;
  p.maintenance_every = absl::Hours(24);
  p.maintenance_duration = absl::Hours(1);
  p.maintenance_offset = absl::Hours(1);
  p.overload_probability = 0.002;
  p.random_deferral_probability = 0.002;
  p.latency_min = absl::Seconds(2);
  p.latency_max = absl::Seconds(8);  // content scanning
  return p;
}

ReceiverProfile SmallHostGreylisting() {
  ReceiverProfile p = Base("small-host-greylisting");
  p.max_connections_per_source = 50;
  p.greylist_probability = 1.0;
  p.greylist_delay = absl::Minutes(5);
  p.overload_probability = 0.005;
  p.mailbox_full_probability = 0.01;
  p.unknown_user_probability = 0.02;
  SetReply(p, ReplyKind::kGreylisted,
           "450 4.2.0 <user@example.org>: Recipient address rejected: Greylisted, see "
           "http://postgrey.schweikert.ch/help/example.org.html");
  return p;
}

ReceiverProfile GenericHost() {
  ReceiverProfile p = Base("generic-host");
  p.max_connections_per_source = 50;
  p.overload_probability = 0.002;
  p.random_deferral_probability = 0.003;
  p.unknown_user_probability = 0.02;
  p.mailbox_full_probability = 0.005;
  return p;
}

// A Postfix host with reject_unknown_client_hostname: 450 until the queue
// lifetime ends for a source without PTR.
ReceiverProfile PtrCheckingHost() {
  ReceiverProfile p = GenericHost();
  p.name = "ptr-checking-host";
  p.checks_ptr = true;
  p.ptr_soft_attempts = kSoftForever;
  return p;
}

// A host enforcing DMARC: a temporary failure first (a DNS hiccup is
// possible), then a rejection.
ReceiverProfile AuthCheckingHost() {
  ReceiverProfile p = GenericHost();
  p.name = "auth-checking-host";
  p.checks_auth = AuthCheck::kDmarc;
  p.auth_soft_attempts = 4;
  return p;
}

}  // namespace

std::string_view ReplyKindName(ReplyKind k) {
  switch (k) {
    case ReplyKind::kAccepted:
      return "accepted";
    case ReplyKind::kTooManyConnections:
      return "too_many_connections";
    case ReplyKind::kRateLimited:
      return "rate_limited";
    case ReplyKind::kReputationThrottled:
      return "reputation_throttled";
    case ReplyKind::kPtrDeferral:
      return "ptr_deferral";
    case ReplyKind::kPtrReject:
      return "ptr_reject";
    case ReplyKind::kAuthDeferral:
      return "auth_deferral";
    case ReplyKind::kAuthReject:
      return "auth_reject";
    case ReplyKind::kMaintenance:
      return "maintenance";
    case ReplyKind::kOverload:
      return "overload";
    case ReplyKind::kGreylisted:
      return "greylisted";
    case ReplyKind::kMailboxFull:
      return "mailbox_full";
    case ReplyKind::kUnknownUser:
      return "unknown_user";
    case ReplyKind::kRandomDeferral:
      return "random_deferral";
    case ReplyKind::kConnectionRefused:
      return "connection_refused";
    case ReplyKind::kConnectTimeout:
      return "connect_timeout";
    case ReplyKind::kDroppedMidData:
      return "dropped_mid_data";
  }
  return "unknown";
}

bool IsConnectionLevel(ReplyKind k) {
  switch (k) {
    case ReplyKind::kTooManyConnections:
    case ReplyKind::kMaintenance:
    case ReplyKind::kOverload:
    case ReplyKind::kConnectionRefused:
    case ReplyKind::kConnectTimeout:
      return true;
    default:
      return false;
  }
}

std::string_view AuthCheckName(AuthCheck a) {
  switch (a) {
    case AuthCheck::kNone:
      return "none";
    case AuthCheck::kSpfOrDkim:
      return "spf_or_dkim";
    case AuthCheck::kSpfAndDkim:
      return "spf_and_dkim";
    case AuthCheck::kDmarc:
      return "dmarc";
  }
  return "none";
}

absl::StatusOr<AuthCheck> ParseAuthCheck(std::string_view name) {
  for (AuthCheck a :
       {AuthCheck::kNone, AuthCheck::kSpfOrDkim, AuthCheck::kSpfAndDkim, AuthCheck::kDmarc}) {
    if (AuthCheckName(a) == name) return a;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown auth check \"", std::string(name),
                   "\" (expected none, spf_or_dkim, spf_and_dkim or dmarc)"));
}

std::string_view OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kPending:
      return "pending";
    case Outcome::kDelivered:
      return "delivered";
    case Outcome::kBounced:
      return "bounced";
    case Outcome::kExpired:
      return "expired";
    case Outcome::kHeld:
      return "held";
  }
  return "unknown";
}

std::vector<std::string> BuiltinProfileNames() {
  return {"gmail-like",   "outlook-like",       "yahoo-like",
          "comcast-like", "enterprise-gateway", "small-host-greylisting",
          "generic-host", "ptr-checking-host",  "auth-checking-host"};
}

absl::StatusOr<ReceiverProfile> BuiltinProfile(std::string_view name) {
  if (name == "gmail-like") return GmailLike();
  if (name == "outlook-like") return OutlookLike();
  if (name == "yahoo-like") return YahooLike();
  if (name == "comcast-like") return ComcastLike();
  if (name == "enterprise-gateway") return EnterpriseGateway();
  if (name == "small-host-greylisting") return SmallHostGreylisting();
  if (name == "generic-host") return GenericHost();
  if (name == "ptr-checking-host") return PtrCheckingHost();
  if (name == "auth-checking-host") return AuthCheckingHost();
  return absl::NotFoundError(absl::StrCat("unknown receiver profile \"", std::string(name), "\""));
}

std::vector<ParamSource> ExplainProfiles() {
  // Sources are public documents; "assumption" marks a number nobody
  // publishes, with the reason for the value chosen.
  const std::string kGmailReq =
      "Gmail sender guidelines, support.google.com/mail/answer/81126 (all senders: SPF or DKIM, "
      "valid PTR; 4xx first, 5xx later)";
  const std::string kGmailCodes = "Gmail SMTP error reference, support.google.com/a/answer/3726730";
  return {
      {"*", "unknown_user_probability", "0.01 (0.02 small hosts)",
       "assumption: list hygiene of a sender with regular bounce processing", "assumption"},
      {"*", "mailbox_full_probability", "0.002 (0.005-0.01 small hosts)",
       "assumption: rare over-quota mailboxes, more at small hosts", "assumption"},
      {"*", "refuse/timeout/drop_probability", "0.0005 each",
       "assumption: occasional network faults; no receiver publishes a rate", "assumption"},
      {"*", "connect_timeout", "30s", "Postfix smtp_connect_timeout default (postconf.proto)", "H"},
      {"*", "retry_penalty / recovery_per_hour",
       "0.001-0.002 / 0.02 per h, OFF unless "
       "reputation_from_retries",
       "assumption: providers say they weigh retry volume (Gmail guidelines: reduce volume when "
       "deferrals start; a vendor report of GMX's limit tripping while old retries keep arriving, "
       "suped.com) but no source gives a size, so the effect is off by default and the suite "
       "reports results with it on and off",
       "assumption"},
      {"gmail-like", "max_connections_per_source", "20",
       "suped.com baseline Google connection settings (20 per IP); Google publishes none", "L"},
      {"gmail-like", "max_per_hour", "1200",
       "assumption: Gmail documents per-IP quotas (support.google.com/mail/answer/81126) but no "
       "number; 1200/h per IP is passed by the default volume except in its 09:00 peak",
       "assumption"},
      {"gmail-like", "soft_block_below / throttle_probability", "0.5 / 0.8",
       "assumption: Gmail rate-limits low-reputation IPs (421 4.7.0, " + kGmailCodes +
           "); the threshold is not published",
       "assumption"},
      {"gmail-like", "checks_ptr, ptr_soft_attempts", "yes, 4",
       kGmailReq + "; " + kGmailCodes +
           " (451 4.7.23 then 550 5.7.25); the count of 4xx before the 5xx is an assumption",
       "H"},
      {"gmail-like", "checks_auth, auth_soft_attempts", "spf_or_dkim, 4",
       kGmailReq + " (421 4.7.26 then 550 5.7.26)", "H"},
      {"gmail-like", "overload / random_deferral", "0.001 / 0.005",
       "assumption: rare background 4xx on healthy traffic", "assumption"},
      {"outlook-like", "max_connections_per_source", "5",
       "KumoMTA stock shaping.toml (5 per provider); a postfix-users report of 451 4.7.652 at 6 "
       "processes (go.mail-archive.com msg87906); Microsoft's only number is a 500 ceiling",
       "L"},
      {"outlook-like", "max_per_minute", "60",
       "assumption: Outlook.com names rate limits (421 RP-001/RP-002) without numbers",
       "assumption"},
      {"outlook-like", "maintenance 20 min daily", "24h / 20m",
       "assumption: stands for Microsoft's transient 4.3.2 'Temporary server error' replies",
       "assumption"},
      {"yahoo-like", "max_connections_per_source", "8",
       "sender folklore says 5-8; "
       "Yahoo publishes no number (senders.yahooinc.com/best-practices)",
       "L"},
      {"yahoo-like", "max_per_minute / max_per_hour", "20 / 600",
       "assumption: Yahoo defers with [TSS04] on 'unexpected volume' without numbers",
       "assumption"},
      {"yahoo-like", "checks_ptr / checks_auth", "yes (4xx) / spf_or_dkim (5xx at once)",
       "Yahoo sender requirements (senders.yahooinc.com/best-practices): valid reverse DNS, SPF or "
       "DKIM for all; auth failures get 550 5.7.9, reputation problems 4xx",
       "H"},
      {"comcast-like", "max_connections_per_source", "25",
       "postmaster.comcast.net block-removal page: 25 simultaneous connections per IP", "H"},
      {"comcast-like", "checks_ptr", "yes, 421 'Reverse DNS failure' (retryable)",
       "postmaster.comcast.net SMTP error codes", "H"},
      {"enterprise-gateway", "max_connections_per_source / max_per_minute", "5 / 30",
       "assumption: a gateway tuned conservatively (Exim smtp_accept_max 20 shared by all clients)",
       "assumption"},
      {"enterprise-gateway", "maintenance 1 h daily, latency 2-8 s", "24h / 1h",
       "assumption: a nightly maintenance window; content scanning makes DATA slow", "assumption"},
      {"small-host-greylisting", "greylist_delay", "5 min",
       "postgrey --delay default 300 s (schweikert/postgrey)", "H"},
      {"small-host-greylisting, generic-host", "max_connections_per_source", "50",
       "Postfix smtpd_client_connection_count_limit default 50 (postconf.proto)", "H"},
      {"ptr-checking-host", "checks_ptr, never 5xx", "450 4.7.25",
       "Postfix reject_unknown_client_hostname with unknown_client_reject_code 450 "
       "(postconf.proto)",
       "H"},
      {"auth-checking-host", "checks_auth dmarc, 4 deferrals then 5xx", "451/550 5.7.26",
       "assumption: a DMARC-enforcing host; Gmail documents 451 4.7.26 on a DNS tempfail and "
       "550 5.7.26 on failure (" +
           kGmailCodes + ")",
       "M"},
      {"*", "latency_min / latency_max",
       "1-4 s (Gmail 0.5-2 s, Outlook and Yahoo 1-3 s, "
       "gateway 2-8 s)",
       "assumption: an SMTP transaction of a small message over a warm path; "
       "content scanning makes gateways slower",
       "assumption"},
      {"*", "refuse_latency", "300 ms", "assumption: TCP connect plus a banner-time refusal",
       "assumption"},
      {"*", "mailbox_full_duration", "12 h (drawn 6-18 h per recipient)",
       "assumption: an over-quota user clears space within a day", "assumption"},
      {"outlook-like, yahoo-like", "soft_block_below / throttle_probability",
       "0.4 / 0.7 and 0.6 / 0.9",
       "assumption: Outlook.com (421 RP-001, 451 4.7.650) and Yahoo "
       "([TSS04]) throttle on reputation without publishing thresholds; Yahoo is described as "
       "the stricter one by senders' reports",
       "assumption"},
      {"outlook-like, yahoo-like, comcast-like", "overload / random_deferral",
       "0.002-0.003 / 0.002-0.003", "assumption: rare background 4xx on healthy traffic",
       "assumption"},
      {"small-host-greylisting", "greylist_probability", "1.0",
       "postgrey greylists every new (client /24, sender, recipient) triplet", "H"},
      {"*", "ceilings", "token buckets (continuous refill)",
       "rspamd ratelimit (leaky buckets) and Exim ratelimit (smoothed); Postfix anvil uses a "
       "fixed 60 s window per client, which a bucket of the same size approximates",
       "H"},
  };
}

}  // namespace mailretry::sim
