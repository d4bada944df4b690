// File: sim.h
// -----------------------------------------------------------------------------
// A discrete-event simulator of retry policies against modelled receivers. It
// drives the real Engine in virtual time at millisecond resolution: messages
// arrive, the engine hands out leases, a sending-MTA model (for the presets:
// Postfix's qmgr, Exim's host hints, KumoMTA's shaping, PowerMTA's backoff
// mode) decides when each leased message is really tried, simulated receivers
// answer each attempt (after a latency) with provider-style wording, and the
// engine's decisions are recorded. Every message ends with an outcome:
// delivered, bounced, expired, or (only when a finite horizon stops the run
// early) held. Nothing reads a clock; the same Scenario, Policy and seed give
// the same results.
//
//   sim::Scenario s = sim::DefaultScenario();
//   s.messages = 50000;
//   absl::StatusOr<sim::Policy> p = sim::PresetPolicy("postfix");
//   absl::StatusOr<sim::Result> r = sim::Run(s, *p);
//   // r->summary.delivered_pct, r->summary.all_p95_s, ...
#ifndef MAILRETRY_SIM_SIM_H_
#define MAILRETRY_SIM_SIM_H_

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailretry/engine/engine.h"

namespace mailretry::sim {

// What a simulated receiver did with one attempt, by the model that decided.
enum class ReplyKind : uint8_t {
  kAccepted,             // 250
  kTooManyConnections,   // connection cap per source IP exceeded (421 at the banner)
  kRateLimited,          // per-source rate ceiling exceeded
  kReputationThrottled,  // soft-blocked source, throttled
  kPtrDeferral,          // the source IP has no valid PTR; the receiver checks it (4xx)
  kPtrReject,            // the same, now a 5xx
  kAuthDeferral,         // the sending domain fails the receiver's SPF/DKIM/DMARC check (4xx)
  kAuthReject,           // the same, now a 5xx
  kMaintenance,          // maintenance window: 421 at the banner
  kOverload,             // server busy: 421 at the banner / EHLO
  kGreylisted,           // first attempts per (source, sender, recipient) within the delay
  kMailboxFull,          // 452 4.2.2 until the recipient clears space
  kUnknownUser,          // 550 5.1.1
  kRandomDeferral,       // background transient noise after MAIL FROM
  kConnectionRefused,    // TCP RST (transport outcome, no SMTP reply)
  kConnectTimeout,       // no TCP connection within the sender's connect timeout
  kDroppedMidData,       // the connection was lost in the middle of DATA
};
inline constexpr int kNumReplyKinds = 17;
// "accepted", "too_many_connections", "rate_limited", ...
std::string_view ReplyKindName(ReplyKind k);
// True for outcomes a sending MTA sees before the SMTP transaction starts
// (connect or greeting/EHLO): these are what Postfix's concurrency feedback,
// Exim's host retry records and KumoMTA's connection-failure counter count.
bool IsConnectionLevel(ReplyKind k);

// Which of the sending domain's authentication results a receiver demands.
enum class AuthCheck : uint8_t {
  kNone,
  kSpfOrDkim,   // all senders at Gmail / Yahoo since Feb 2024
  kSpfAndDkim,  // bulk senders at Gmail / Yahoo
  kDmarc,       // a DMARC record that passes (aligned SPF or DKIM)
};
std::string_view AuthCheckName(AuthCheck a);  // "none", "spf_or_dkim", "spf_and_dkim", "dmarc"
absl::StatusOr<AuthCheck> ParseAuthCheck(std::string_view name);

// ReceiverProfile::*_soft_attempts at or above this: never a 5xx.
inline constexpr uint32_t kSoftForever = 65535;

// One receiving domain's behaviour. Probabilities are in [0, 1]; a zero cap or
// ceiling means none. State is kept per (receiving domain, source IP). Where
// each built-in value comes from: ExplainProfiles().
struct ReceiverProfile {
  std::string name;
  // The provider behind the MX (KumoMTA rolls queues up by it; the presets'
  // provider rules key on it): "google", "microsoft", "yahoo", "" = none.
  std::string provider;

  // Concurrent connections per source IP; above it: too many connections.
  uint32_t max_connections_per_source = 0;
  // Accepted messages per source: token buckets holding max_per_minute /
  // max_per_hour tokens, refilled continuously at that rate (no clock
  // windows, so nothing lines up with the hour). `ceiling_strict`: refused
  // attempts also take a token (down to minus the bucket size), so a sender
  // that keeps retrying into a ceiling keeps itself locked out (Exim's
  // ratelimit/strict; GMX's reported behaviour).
  uint32_t max_per_minute = 0;
  uint32_t max_per_hour = 0;
  bool ceiling_strict = false;

  // Reputation in [0, 1] per source, starting at the source's reputation.
  // Below `soft_block_below` an attempt is throttled with probability
  // throttle_probability × max(½, (soft_block_below − r) / soft_block_below).
  double soft_block_below = 0.0;
  double throttle_probability = 0.0;
  // The reputation-from-retries effect (applies only when the scenario turns
  // it on, Scenario::reputation_from_retries): every attempt refused for
  // connections, rate or reputation costs `retry_penalty`; reputation
  // recovers by `recovery_per_hour`. No published source sizes it; see
  // ExplainProfiles().
  double retry_penalty = 0.0;
  double recovery_per_hour = 0.0;

  // A reputation incident: from `incident_offset` for `incident_duration`
  // (zero = none) attempts from every source are throttled with
  // `incident_probability`.
  absl::Duration incident_offset = absl::ZeroDuration();
  absl::Duration incident_duration = absl::ZeroDuration();
  double incident_probability = 0.0;

  // Sender-side faults shown here: a source without a valid PTR record is
  // deferred `ptr_soft_attempts` times per message, then rejected (0 = a 5xx
  // at once; kSoftForever = always 4xx, Postfix's 450 default); a sending
  // domain that fails `checks_auth` likewise with `auth_soft_attempts`.
  bool checks_ptr = false;
  uint32_t ptr_soft_attempts = kSoftForever;
  AuthCheck checks_auth = AuthCheck::kNone;
  uint32_t auth_soft_attempts = kSoftForever;

  // A maintenance window of `maintenance_duration` every `maintenance_every`
  // (zero = none), starting `maintenance_offset` after the scenario start.
  absl::Duration maintenance_every = absl::ZeroDuration();
  absl::Duration maintenance_duration = absl::Minutes(30);
  absl::Duration maintenance_offset = absl::Hours(3);
  // One outage: from `outage_offset` for `outage_duration` (zero = none)
  // every attempt gets `outage_kind` (connection_refused, connect_timeout
  // or maintenance).
  absl::Duration outage_offset = absl::ZeroDuration();
  absl::Duration outage_duration = absl::ZeroDuration();
  ReplyKind outage_kind = ReplyKind::kConnectionRefused;

  double overload_probability = 0.0;         // per attempt: server busy
  double random_deferral_probability = 0.0;  // per attempt: background 4xx
  // Connection-level failures per attempt.
  double refuse_probability = 0.0;
  double timeout_probability = 0.0;
  double drop_probability = 0.0;  // lost mid-DATA (not delivered)

  // Per recipient (drawn once per message).
  double greylist_probability = 0.0;  // recipients behind greylisting
  absl::Duration greylist_delay = absl::Minutes(5);
  double mailbox_full_probability = 0.0;
  absl::Duration mailbox_full_duration = absl::Hours(12);  // until space is freed
  double unknown_user_probability = 0.0;

  // Attempt latency: accepted and content-level replies take uniform
  // [latency_min, latency_max]; refusals at the banner take `refuse_latency`;
  // a connect timeout takes `connect_timeout` (the sender's setting).
  absl::Duration latency_min = absl::Seconds(1);
  absl::Duration latency_max = absl::Seconds(4);
  absl::Duration refuse_latency = absl::Milliseconds(300);
  absl::Duration connect_timeout = absl::Seconds(30);

  // Raw SMTP reply text for each ReplyKind (index = kind); the transport
  // kinds (refused, timeout, dropped) carry a short detail instead.
  std::array<std::string, kNumReplyKinds> replies;
};

// Built-in profiles, see BuiltinProfileNames(). NotFound for any other name.
absl::StatusOr<ReceiverProfile> BuiltinProfile(std::string_view name);
std::vector<std::string> BuiltinProfileNames();

// Provenance of a built-in receiver parameter.
struct ParamSource {
  std::string profile;  // "*" = every built-in profile unless it says otherwise
  std::string field;
  std::string value;
  std::string source;      // the public source, or "assumption: ..." with the reason
  std::string confidence;  // "H", "M", "L" (see docs) or "assumption"
};
std::vector<ParamSource> ExplainProfiles();

// A sending IP together with the domain it sends for. The PTR record belongs
// to the IP; SPF, DKIM and DMARC to the domain. Receivers that check them
// (ReceiverProfile::checks_ptr / checks_auth) refuse the pair.
struct Source {
  std::string name;         // also the Engine source name
  double reputation = 0.9;  // starting reputation at every receiver
  double weight = 1.0;      // share of messages sent from it
  bool ptr = true;
  bool spf = true;
  bool dkim = true;
  bool dmarc = true;
};

// A named destination domain with a fixed share of all messages.
struct NamedDestination {
  std::string domain;
  double share = 0.0;
  std::string profile;
};

struct Scenario {
  uint64_t messages = 100000;
  uint64_t seed = 1;
  absl::Time start = absl::FromUnixSeconds(1767225600);  // 2026-01-01T00:00Z
  // Stop here and count unfinished messages as held; zero (the default) =
  // run until every message has an outcome.
  absl::Duration horizon = absl::ZeroDuration();
  absl::Duration arrival_window = absl::Hours(24);  // arrivals in [0, window)
  // Relative arrival rate per hour of the window, repeating (empty = uniform).
  std::vector<double> hourly_weights;
  std::vector<Source> sources;
  std::vector<NamedDestination> named;
  // The rest of the messages go to a Zipf tail: domain k (1-based) ∝ 1/k^s.
  uint32_t tail_domains = 1000;
  double zipf_exponent = 1.0;
  // Profiles for tail domains, by weight.
  std::vector<std::pair<std::string, double>> tail_profiles;
  // Profiles by name; these replace built-ins of the same name.
  std::vector<ReceiverProfile> profiles;
  // Turns on every profile's retry_penalty (the reputation-from-retries effect).
  bool reputation_from_retries = false;
};

// The built-in default scenario (mixed providers, a Zipf tail, one source
// without PTR); `messages` is the only thing callers usually change.
Scenario DefaultScenario();
// InvalidArgument naming the first bad field (including unknown profiles).
absl::Status ValidateScenario(const Scenario& s);

// The sending-MTA model around the engine's schedule.
enum class SenderModel : uint8_t {
  kEngine,    // the engine alone decides (adaptive, or any custom config)
  kPostfix,   // qmgr concurrency feedback, dead destinations
  kExim,      // host retry records ("retry time not reached")
  kKumoMta,   // egress-path shaping and traffic-shaping automation
  kPowerMta,  // queue retry mode and pattern-triggered backoff mode
};
std::string_view SenderModelName(SenderModel m);

// A policy: the engine config that schedules each message, and the MTA model
// that gates when a leased message is really tried.
struct Policy {
  std::string name;
  EngineConfig engine;
  SenderModel sender = SenderModel::kEngine;
};
// "adaptive", "naive", "postfix", "exim", "kumomta", "powermta"; NotFound otherwise.
absl::StatusOr<Policy> PresetPolicy(std::string_view name);
std::vector<std::string> PresetPolicyNames();
// What each preset reproduces and where its defaults come from, one line per item.
std::vector<ParamSource> ExplainPresets();

enum class Outcome : uint8_t { kPending, kDelivered, kBounced, kExpired, kHeld };
inline constexpr int kNumOutcomes = 5;
std::string_view OutcomeName(Outcome o);  // "pending", "delivered", ..., "held"

// One simulated hour.
struct HourBin {
  uint64_t attempts = 0, delivered = 0, bounced = 0, expired = 0;
  uint64_t replies_4xx = 0, replies_5xx = 0;
  uint64_t in_flight = 0;  // at the end of the hour
  uint64_t pending = 0;    // submitted and not finished, at the end of the hour
};

struct Summary {
  uint64_t messages = 0, delivered = 0, bounced = 0, expired = 0, held = 0;
  double delivered_pct = 0, bounced_pct = 0, expired_pct = 0, held_pct = 0;
  // Seconds from submission to delivery over ALL messages, an undelivered
  // one counting as never (+inf): a policy that never delivers its hardest
  // 10 % has an infinite p95.
  double all_p50_s = 0, all_p95_s = 0, all_p99_s = 0;
  // The same over delivered messages only (NaN when nothing was delivered).
  double ttd_p50_s = 0, ttd_p95_s = 0, ttd_p99_s = 0;
  // Attempts that reached a receiver, and the replies they provoked.
  uint64_t attempts = 0, replies_4xx = 0, replies_5xx = 0, transport_failures = 0;
  // Deferrals the sending MTA made without contacting the receiver
  // (suspended or dead destination, host retry time not reached).
  uint64_t local_deferrals = 0;
  double attempts_per_delivered = 0, replies_4xx_per_delivered = 0;
  // Connection time the sender cost the receivers, and the busiest
  // (receiver, source) pair's peak concurrency over its cap (0 without caps).
  double receiver_seconds = 0, receiver_seconds_per_delivered = 0;
  double peak_connection_utilisation = 0;
  // Structural detection per (receiving domain, source) pair with traffic,
  // against the scenario's ground truth (the source fails a check the
  // receiver makes). Precision/recall NaN when undefined.
  uint64_t structural_true_positives = 0, structural_false_positives = 0;
  uint64_t structural_false_negatives = 0, structural_true_negatives = 0;
  double structural_precision = 0, structural_recall = 0;
  uint64_t warning_destinations = 0;
  double end_s = 0;         // simulated seconds until the last outcome (or the horizon)
  double wall_seconds = 0;  // informational; not part of determinism
};

struct Result {
  // Per message; the message id is the index.
  std::vector<uint32_t> msg_domain;
  std::vector<uint16_t> msg_source;
  std::vector<Outcome> msg_outcome;
  std::vector<double> msg_submit_s;  // seconds from the scenario start
  std::vector<double> msg_end_s;     // NaN while pending / held
  std::vector<uint16_t> msg_attempts;
  std::vector<uint16_t> msg_4xx;

  // Per receiving domain.
  std::vector<std::string> domains;
  std::vector<std::string> domain_profile;
  std::vector<uint64_t> domain_messages;
  // Per (domain, source) pair: index domain × sources + source.
  std::vector<bool> pair_structural;      // ground truth
  std::vector<double> pair_structural_s;  // first structural_failure, NaN = never
  std::vector<double> pair_warning_s;     // first destination_warning, NaN = never
  std::vector<uint64_t> pair_messages;

  std::vector<std::string> sources;
  std::vector<HourBin> hours;
  std::array<uint64_t, kNumReplyKinds> reply_kinds{};
  EngineStats engine_stats;
  Summary summary;
};

// Called about once per simulated hour with the fraction of the expected
// simulated time done; returning false stops the run (Cancelled).
using ProgressFn = std::function<bool(double fraction)>;

// Runs `scenario` under `policy` (engine seeded with scenario.seed).
// InvalidArgument for a bad scenario or config.
absl::StatusOr<Result> Run(const Scenario& scenario, const Policy& policy,
                           const ProgressFn& progress = nullptr);
// The engine alone with `config` (SenderModel::kEngine).
absl::StatusOr<Result> Run(const Scenario& scenario, const EngineConfig& config,
                           const ProgressFn& progress = nullptr);

}  // namespace mailretry::sim

#endif  // MAILRETRY_SIM_SIM_H_
