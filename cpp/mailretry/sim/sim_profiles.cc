// Built-in receiver profiles, the default scenario and scenario validation.
// Reply wordings follow real provider replies (as published by the providers);
// see each profile.
#include <cmath>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
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
ReceiverProfile Base(std::string name) {
  ReceiverProfile p;
  p.name = std::move(name);
  SetReply(p, ReplyKind::kAccepted, "250 2.0.0 Ok: queued as 4Xq9Lw1bTz");
  SetReply(p, ReplyKind::kTooManyConnections, "421 4.7.0 Error: too many connections from 192.0.2.10");
  SetReply(p, ReplyKind::kRateLimited, "421 Rate limit reached. Please try again later");
  SetReply(p, ReplyKind::kReputationThrottled, "421 Reject due to policy violations");
  SetReply(p, ReplyKind::kStructuralDeferral,
           "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.10]");
  SetReply(p, ReplyKind::kStructuralReject, "554 5.7.1 Reverse DNS failed.");
  SetReply(p, ReplyKind::kMaintenance, "421 4.3.2 Service shutting down, closing transmission channel");
  SetReply(p, ReplyKind::kOverload, "421 4.4.5 Server busy, try again later.");
  SetReply(p, ReplyKind::kGreylisted,
           "450 4.2.0 <user@example.org>: Recipient address rejected: Greylisted for 300 seconds");
  SetReply(p, ReplyKind::kMailboxFull, "450 4.2.2 <user@example.org>... Mailbox Full");
  SetReply(p, ReplyKind::kUnknownUser,
           "550 5.1.1 <user@example.org>: Recipient address rejected: User unknown in virtual "
           "mailbox table");
  SetReply(p, ReplyKind::kRandomDeferral, "451 4.3.0 Temporary local problem - please try later");
  p.unknown_user_probability = 0.01;
  p.mailbox_full_probability = 0.002;
  return p;
}

ReceiverProfile GmailLike() {
  ReceiverProfile p = Base("gmail-like");
  p.max_connections_per_source = 20;
  p.max_per_hour = 1200;
  p.soft_block_below = 0.5;
  p.throttle_probability = 0.8;
  p.penalty = 0.001;
  p.recovery_per_hour = 0.02;
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
  SetReply(p, ReplyKind::kStructuralDeferral,
           "421 4.7.0 The IP address sending this message does not have a PTR record, or the "
           "corresponding forward DNS entry does not point to the sending IP. To protect our users "
           "from spam, email sent from your IP address has been temporarily rate limited. For more "
           "information, go to Email sender guidelines. - gsmtp");
  SetReply(p, ReplyKind::kStructuralReject,
           "550 5.7.26 This email has been blocked because the sender is unauthenticated. Gmail "
           "requires all senders to authenticate with either SPF or DKIM. - gsmtp");
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
  p.max_connections_per_source = 10;
  p.max_per_minute = 60;
  p.soft_block_below = 0.4;
  p.throttle_probability = 0.7;
  p.penalty = 0.001;
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
  SetReply(p, ReplyKind::kStructuralReject,
           "550 5.7.509 Access denied, sending domain [EXAMPLE.COM] does not pass DMARC "
           "verification and has a DMARC policy of reject.");
  return p;
}

ReceiverProfile YahooLike() {
  ReceiverProfile p = Base("yahoo-like");
  p.max_connections_per_source = 15;
  p.max_per_minute = 20;
  p.max_per_hour = 600;
  p.soft_block_below = 0.6;
  p.throttle_probability = 0.9;
  p.penalty = 0.002;
  p.recovery_per_hour = 0.02;
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
  SetReply(p, ReplyKind::kOverload,
           "451 mta283.mail.scd.yahoo.com Resources temporarily unavailable. Please try again "
           "later [#4.16.5].");
  SetReply(p, ReplyKind::kUnknownUser,
           "554 delivery error: dd This user doesn't have a yahoo.com account (***@yahoo.com) [-5] "
           "- mta1234.mail.bf1.yahoo.com");
  SetReply(p, ReplyKind::kStructuralReject,
           "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo "
           "requires all senders to authenticate with either SPF or DKIM.");
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
  p.max_connections_per_source = 10;
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
  p.max_connections_per_source = 10;
  p.overload_probability = 0.002;
  p.random_deferral_probability = 0.003;
  p.unknown_user_probability = 0.02;
  p.mailbox_full_probability = 0.005;
  return p;
}

// PTR/HELO: Postfix's reject_unknown_client_hostname answers 450 forever.
ReceiverProfile Misconfigured() {
  ReceiverProfile p = Base("misconfigured");
  p.max_connections_per_source = 10;
  p.structural = true;
  p.structural_soft_attempts = 0;
  return p;
}

// SPF/DKIM/DMARC: Gmail-style soft-fail as 421 4.7.26, then 550 5.7.26.
ReceiverProfile MisconfiguredAuth() {
  ReceiverProfile p = Base("misconfigured-auth");
  p.max_connections_per_source = 10;
  p.structural = true;
  p.structural_soft_attempts = 4;
  SetReply(p, ReplyKind::kStructuralDeferral,
           "421 4.7.26 This email has been rate limited because it is unauthenticated. Gmail "
           "requires all senders to authenticate with either SPF or DKIM. Authentication results: "
           "DKIM = did not pass SPF domain-name with ip: ip-address = did not pass. To resolve "
           "this issue, go to Email sender guidelines.");
  SetReply(p, ReplyKind::kStructuralReject,
           "550 5.7.26 This email has been blocked because the sender is unauthenticated. Gmail "
           "requires all senders to authenticate with either SPF or DKIM. Authentication results: "
           "DKIM = did not pass SPF [domain-name] with ip: [ip-address] = did not pass. For "
           "instructions on setting up authentication, go to Email sender guidelines.");
  return p;
}

bool Probability(double p) { return std::isfinite(p) && p >= 0.0 && p <= 1.0; }

absl::Status CheckProfile(const ReceiverProfile& p) {
  auto bad = [&](std::string_view field, std::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("profile \"", p.name, "\": ", std::string(field), " ", std::string(what)));
  };
  if (p.name.empty()) return absl::InvalidArgumentError("profile: empty name");
  const std::pair<const char*, double> probs[] = {
      {"throttle_probability", p.throttle_probability},
      {"overload_probability", p.overload_probability},
      {"random_deferral_probability", p.random_deferral_probability},
      {"greylist_probability", p.greylist_probability},
      {"mailbox_full_probability", p.mailbox_full_probability},
      {"unknown_user_probability", p.unknown_user_probability},
      {"soft_block_below", p.soft_block_below},
  };
  for (const auto& [field, v] : probs) {
    if (!Probability(v)) return bad(field, "must be in [0, 1]");
  }
  if (!std::isfinite(p.penalty) || p.penalty < 0) return bad("penalty", "must be >= 0");
  if (!std::isfinite(p.recovery_per_hour) || p.recovery_per_hour < 0) {
    return bad("recovery_per_hour", "must be >= 0");
  }
  if (p.maintenance_every < absl::ZeroDuration()) return bad("maintenance_every", "negative");
  if (p.maintenance_every > absl::ZeroDuration() &&
      (p.maintenance_duration <= absl::ZeroDuration() ||
       p.maintenance_duration >= p.maintenance_every)) {
    return bad("maintenance_duration", "must be in (0, maintenance_every)");
  }
  if (p.maintenance_offset < absl::ZeroDuration()) return bad("maintenance_offset", "negative");
  if (p.greylist_delay < absl::ZeroDuration()) return bad("greylist_delay", "negative");
  if (p.mailbox_full_duration < absl::ZeroDuration()) {
    return bad("mailbox_full_duration", "negative");
  }
  if (p.latency_min < absl::ZeroDuration() || p.latency_max < p.latency_min) {
    return bad("latency_min/latency_max", "need 0 <= latency_min <= latency_max");
  }
  if (p.refuse_latency < absl::ZeroDuration()) return bad("refuse_latency", "negative");
  for (int k = 0; k < kNumReplyKinds; ++k) {
    const std::string field =
        absl::StrCat("replies.", std::string(ReplyKindName(static_cast<ReplyKind>(k))));
    absl::StatusOr<Reply> r = ParseReply(p.replies[k]);
    if (!r.ok()) return bad(field, std::string(r.status().message()));
    const int klass = r->code / 100;
    const bool want_2xx = k == static_cast<int>(ReplyKind::kAccepted);
    const bool want_5xx = k == static_cast<int>(ReplyKind::kStructuralReject) ||
                          k == static_cast<int>(ReplyKind::kUnknownUser);
    if (want_2xx && klass != 2) return bad(field, "must be a 2xx reply");
    if (want_5xx && klass != 5) return bad(field, "must be a 5xx reply");
    if (!want_2xx && !want_5xx && klass != 4) return bad(field, "must be a 4xx reply");
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view ReplyKindName(ReplyKind k) {
  switch (k) {
    case ReplyKind::kAccepted: return "accepted";
    case ReplyKind::kTooManyConnections: return "too_many_connections";
    case ReplyKind::kRateLimited: return "rate_limited";
    case ReplyKind::kReputationThrottled: return "reputation_throttled";
    case ReplyKind::kStructuralDeferral: return "structural_deferral";
    case ReplyKind::kStructuralReject: return "structural_reject";
    case ReplyKind::kMaintenance: return "maintenance";
    case ReplyKind::kOverload: return "overload";
    case ReplyKind::kGreylisted: return "greylisted";
    case ReplyKind::kMailboxFull: return "mailbox_full";
    case ReplyKind::kUnknownUser: return "unknown_user";
    case ReplyKind::kRandomDeferral: return "random_deferral";
  }
  return "unknown";
}

std::string_view OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kPending: return "pending";
    case Outcome::kDelivered: return "delivered";
    case Outcome::kBounced: return "bounced";
    case Outcome::kExpired: return "expired";
  }
  return "unknown";
}

std::vector<std::string> BuiltinProfileNames() {
  return {"gmail-like",         "outlook-like",  "yahoo-like",    "enterprise-gateway",
          "small-host-greylisting", "generic-host", "misconfigured", "misconfigured-auth"};
}

absl::StatusOr<ReceiverProfile> BuiltinProfile(std::string_view name) {
  if (name == "gmail-like") return GmailLike();
  if (name == "outlook-like") return OutlookLike();
  if (name == "yahoo-like") return YahooLike();
  if (name == "enterprise-gateway") return EnterpriseGateway();
  if (name == "small-host-greylisting") return SmallHostGreylisting();
  if (name == "generic-host") return GenericHost();
  if (name == "misconfigured") return Misconfigured();
  if (name == "misconfigured-auth") return MisconfiguredAuth();
  return absl::NotFoundError(absl::StrCat("unknown receiver profile \"", std::string(name), "\""));
}

Scenario DefaultScenario() {
  Scenario s;
  s.messages = 100000;
  s.seed = 1;
  s.duration = absl::Hours(24 * 5);
  s.arrival_window = absl::Hours(24);
  // A working day: quiet night, morning campaign peak, afternoon shoulder.
  // Transactional mail follows the working day; at 09:00 a newsletter goes
  // out (about a quarter of the day's volume within that hour).
  s.hourly_weights = {0.3, 0.2, 0.2, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 12.0, 2.5, 2.0,
                      1.5, 1.5, 2.0, 2.0, 1.5, 1.2, 1.0, 0.8, 0.6, 0.5, 0.4, 0.3};
  s.sources = {{"ip-a", 0.95, 1.0}, {"ip-b", 0.9, 1.0}, {"ip-c", 0.85, 1.0}, {"ip-d", 0.45, 1.0}};
  s.named = {{"gmail.com", 0.30, "gmail-like"},
             {"outlook.com", 0.12, "outlook-like"},
             {"hotmail.com", 0.05, "outlook-like"},
             {"yahoo.com", 0.10, "yahoo-like"},
             {"corp-gateway.example", 0.03, "enterprise-gateway"}};
  s.tail_domains = 2000;
  s.zipf_exponent = 1.0;
  s.tail_profiles = {{"generic-host", 0.55},
                     {"small-host-greylisting", 0.2},
                     {"enterprise-gateway", 0.2},
                     {"misconfigured", 0.03},
                     {"misconfigured-auth", 0.02}};
  return s;
}

absl::Status ValidateScenario(const Scenario& s) {
  if (s.messages == 0 || s.messages > (uint64_t{1} << 31)) {
    return absl::InvalidArgumentError("scenario.messages must be in [1, 2^31]");
  }
  if (s.duration <= absl::ZeroDuration() || s.duration > absl::Hours(24 * 366)) {
    return absl::InvalidArgumentError("scenario.duration must be in (0, 366d]");
  }
  if (s.arrival_window < absl::ZeroDuration() || s.arrival_window > s.duration) {
    return absl::InvalidArgumentError("scenario.arrival_window must be in [0, duration]");
  }
  if (s.tick < absl::Milliseconds(1) || s.tick > absl::Minutes(10)) {
    return absl::InvalidArgumentError("scenario.tick must be in [1ms, 10m]");
  }
  double hw = 0;
  for (double w : s.hourly_weights) {
    if (!std::isfinite(w) || w < 0) {
      return absl::InvalidArgumentError("scenario.hourly_weights must be finite and >= 0");
    }
    hw += w;
  }
  if (!s.hourly_weights.empty() && hw <= 0) {
    return absl::InvalidArgumentError("scenario.hourly_weights must not all be zero");
  }
  if (s.sources.empty() || s.sources.size() > 1024) {
    return absl::InvalidArgumentError("scenario.sources: need 1 to 1024 sources");
  }
  absl::flat_hash_set<std::string> seen;
  double sw = 0;
  for (const Source& src : s.sources) {
    if (src.name.empty()) return absl::InvalidArgumentError("scenario.sources: empty name");
    if (!seen.insert(src.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("scenario.sources: duplicate \"", src.name, "\""));
    }
    if (!Probability(src.reputation)) {
      return absl::InvalidArgumentError(absl::StrCat("source \"", src.name, "\": reputation must be in [0, 1]"));
    }
    if (!std::isfinite(src.weight) || src.weight < 0) {
      return absl::InvalidArgumentError(absl::StrCat("source \"", src.name, "\": weight must be >= 0"));
    }
    sw += src.weight;
  }
  if (sw <= 0) return absl::InvalidArgumentError("scenario.sources: weights must not all be zero");

  absl::flat_hash_set<std::string> profiles;
  for (const ReceiverProfile& p : s.profiles) {
    if (absl::Status st = CheckProfile(p); !st.ok()) return st;
    if (!profiles.insert(p.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("scenario.profiles: duplicate \"", p.name, "\""));
    }
  }
  for (const std::string& n : BuiltinProfileNames()) profiles.insert(n);
  auto known = [&](const std::string& name) { return profiles.contains(name); };

  seen.clear();
  double named = 0;
  for (const NamedDestination& d : s.named) {
    if (d.domain.empty()) return absl::InvalidArgumentError("scenario.destinations: empty domain");
    if (!seen.insert(d.domain).second) {
      return absl::InvalidArgumentError(absl::StrCat("scenario.destinations: duplicate \"", d.domain, "\""));
    }
    if (!std::isfinite(d.share) || d.share < 0) {
      return absl::InvalidArgumentError(absl::StrCat("destination \"", d.domain, "\": share must be >= 0"));
    }
    if (!known(d.profile)) {
      return absl::InvalidArgumentError(
          absl::StrCat("destination \"", d.domain, "\": unknown profile \"", d.profile, "\""));
    }
    named += d.share;
  }
  if (named > 1.0 + 1e-9) {
    return absl::InvalidArgumentError("scenario.destinations: shares add up to more than 1");
  }
  if (s.tail_domains > 10'000'000) {
    return absl::InvalidArgumentError("scenario.tail_domains must be <= 10000000");
  }
  if (named < 1.0 - 1e-9 && s.tail_domains == 0) {
    return absl::InvalidArgumentError(
        "scenario: named shares add up to less than 1 and there is no tail (tail_domains = 0)");
  }
  if (!std::isfinite(s.zipf_exponent) || s.zipf_exponent < 0) {
    return absl::InvalidArgumentError("scenario.zipf_exponent must be >= 0");
  }
  double tw = 0;
  for (const auto& [name, w] : s.tail_profiles) {
    if (!known(name)) {
      return absl::InvalidArgumentError(absl::StrCat("scenario.tail_profiles: unknown profile \"", name, "\""));
    }
    if (!std::isfinite(w) || w < 0) {
      return absl::InvalidArgumentError("scenario.tail_profiles: weights must be >= 0");
    }
    tw += w;
  }
  if (s.tail_domains > 0 && tw <= 0) {
    return absl::InvalidArgumentError("scenario.tail_profiles: need a profile with weight > 0");
  }
  // Built-ins are valid by construction; checking them also guards edits.
  for (const std::string& n : BuiltinProfileNames()) {
    absl::StatusOr<ReceiverProfile> p = BuiltinProfile(n);
    if (!p.ok()) return p.status();
    if (absl::Status st = CheckProfile(*p); !st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace mailretry::sim
