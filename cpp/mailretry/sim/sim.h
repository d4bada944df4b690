// File: sim/sim.h
// -----------------------------------------------------------------------------
// A discrete-event simulator of retry policies against modelled receivers. It
// drives the real Engine in virtual time: messages arrive, the engine hands
// out leases, simulated receivers answer each attempt (after a latency) with
// real provider wording, and the engine's decisions are recorded. Nothing
// reads a clock; the same Scenario, EngineConfig and seed give the same
// results.
//
//   sim::Scenario s = sim::DefaultScenario();
//   s.messages = 50000;
//   absl::StatusOr<sim::Result> r = sim::Run(s, EngineConfig{});
//   // r->summary.delivered_pct, r->summary.replies_4xx_per_delivered, ...
#ifndef MAILRETRY_SIM_SIM_H_
#define MAILRETRY_SIM_SIM_H_

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailretry/engine/engine.h"

namespace mailretry::sim {

// What a simulated receiver did with one attempt, by the model that decided.
enum class ReplyKind : uint8_t {
  kAccepted,            // 250
  kTooManyConnections,  // connection cap per source IP exceeded
  kRateLimited,         // per-source rate ceiling (per minute / per hour) exceeded
  kReputationThrottled, // soft-blocked source, throttled
  kStructuralDeferral,  // PTR/HELO or SPF/DKIM/DMARC problem, soft-failing as 4xx
  kStructuralReject,    // the same problem, now a 5xx
  kMaintenance,         // maintenance window: 421 4.3.2
  kOverload,            // server busy: 421 4.4.5
  kGreylisted,          // first attempt per (sender, recipient, IP): 450 4.2.0
  kMailboxFull,         // 452 4.2.2 until the recipient clears space
  kUnknownUser,         // 550 5.1.1
  kRandomDeferral,      // background transient noise
};
inline constexpr int kNumReplyKinds = 12;
// "accepted", "too_many_connections", "rate_limited", ...
std::string_view ReplyKindName(ReplyKind k);

// One receiving domain's behaviour. Probabilities are in [0, 1]; a zero cap or
// ceiling means none. State is kept per (receiving domain, source IP).
struct ReceiverProfile {
  std::string name;

  // Concurrent connections per source IP; above it: too many connections.
  uint32_t max_connections_per_source = 0;
  // Accepted messages per source per minute / per hour (fixed windows).
  uint32_t max_per_minute = 0;
  uint32_t max_per_hour = 0;

  // Reputation in [0, 1] per source, starting at the source's reputation.
  // Below `soft_block_below` an attempt is throttled with probability
  // throttle_probability × (soft_block_below − r) / soft_block_below (at
  // least half of throttle_probability). Every attempt refused for
  // connections, rate or reputation costs `penalty`; r recovers by
  // `recovery_per_hour` while the sender stays clean.
  double soft_block_below = 0.0;
  double throttle_probability = 0.0;
  double penalty = 0.0;
  double recovery_per_hour = 0.0;

  // Structural misconfiguration (ground truth for detection): every attempt
  // is deferred; after `structural_soft_attempts` deferrals of one message it
  // is rejected with a 5xx (0 = deferred forever).
  bool structural = false;
  uint32_t structural_soft_attempts = 0;

  // A maintenance window of `maintenance_duration` every `maintenance_every`
  // (zero = none), starting `maintenance_offset` after the scenario start.
  absl::Duration maintenance_every = absl::ZeroDuration();
  absl::Duration maintenance_duration = absl::Minutes(30);
  absl::Duration maintenance_offset = absl::Hours(3);

  double overload_probability = 0.0;         // per attempt: server busy
  double random_deferral_probability = 0.0;  // per attempt: background 4xx

  // Per recipient (drawn once per message).
  double greylist_probability = 0.0;           // recipients behind greylisting
  absl::Duration greylist_delay = absl::Minutes(5);
  double mailbox_full_probability = 0.0;
  absl::Duration mailbox_full_duration = absl::Hours(12);  // until space is freed
  double unknown_user_probability = 0.0;

  // Attempt latency: accepted and content-level replies take uniform
  // [latency_min, latency_max]; connection-level refusals take `refuse_latency`.
  absl::Duration latency_min = absl::Seconds(1);
  absl::Duration latency_max = absl::Seconds(4);
  absl::Duration refuse_latency = absl::Milliseconds(300);

  // Raw SMTP reply text for each ReplyKind (index = kind).
  std::array<std::string, kNumReplyKinds> replies;
};

// Built-in profiles: "gmail-like", "outlook-like", "yahoo-like",
// "enterprise-gateway", "small-host-greylisting", "misconfigured",
// "generic-host". NotFound for any other name.
absl::StatusOr<ReceiverProfile> BuiltinProfile(std::string_view name);
std::vector<std::string> BuiltinProfileNames();

// A sending IP.
struct Source {
  std::string name;          // also the Engine source name
  double reputation = 0.9;   // starting reputation at every receiver
  double weight = 1.0;       // share of messages sent from it
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
  absl::Duration duration = absl::Hours(24 * 5);   // simulated time
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
  // Virtual-time step: events are processed at multiples of it.
  absl::Duration tick = absl::Seconds(1);
};

// The built-in default scenario (mixed providers, a Zipf tail, one
// misconfigured slice); `messages` is the only thing callers usually change.
Scenario DefaultScenario();
// InvalidArgument naming the first bad field (including unknown profiles).
absl::Status ValidateScenario(const Scenario& s);

enum class Outcome : uint8_t { kPending, kDelivered, kBounced, kExpired };
std::string_view OutcomeName(Outcome o);  // "pending", "delivered", ...

// One simulated hour.
struct HourBin {
  uint64_t attempts = 0, delivered = 0, bounced = 0, expired = 0;
  uint64_t replies_4xx = 0, replies_5xx = 0;
  uint64_t in_flight = 0;  // at the end of the hour
  uint64_t pending = 0;    // submitted and not finished, at the end of the hour
};

struct Summary {
  uint64_t messages = 0, delivered = 0, bounced = 0, expired = 0, pending = 0;
  double delivered_pct = 0, bounced_pct = 0, expired_pct = 0, pending_pct = 0;
  // Seconds from submission to delivery (NaN when nothing was delivered).
  double ttd_p50_s = 0, ttd_p95_s = 0, ttd_p99_s = 0;
  uint64_t attempts = 0, replies_4xx = 0, replies_5xx = 0;
  double attempts_per_delivered = 0, replies_4xx_per_delivered = 0;
  // Connection time the sender cost the receivers, and the busiest
  // (receiver, source) pair's peak concurrency over its cap (0 without caps).
  double receiver_seconds = 0, receiver_seconds_per_delivered = 0;
  double peak_connection_utilisation = 0;
  // Structural detection per receiving domain with traffic, against the
  // profiles' ground truth.
  uint64_t structural_true_positives = 0, structural_false_positives = 0;
  uint64_t structural_false_negatives = 0, structural_true_negatives = 0;
  uint64_t warning_destinations = 0;
  double wall_seconds = 0;  // informational; not part of determinism
};

struct Result {
  // Per message; the message id is the index.
  std::vector<uint32_t> msg_domain;
  std::vector<uint16_t> msg_source;
  std::vector<Outcome> msg_outcome;
  std::vector<double> msg_submit_s;  // seconds from the scenario start
  std::vector<double> msg_end_s;     // NaN while pending
  std::vector<uint16_t> msg_attempts;
  std::vector<uint16_t> msg_4xx;

  // Per receiving domain.
  std::vector<std::string> domains;
  std::vector<std::string> domain_profile;
  std::vector<bool> domain_misconfigured;    // ground truth
  std::vector<uint64_t> domain_messages;
  std::vector<double> domain_structural_s;   // first structural_failure, NaN = never
  std::vector<double> domain_warning_s;      // first destination_warning, NaN = never

  std::vector<std::string> sources;
  std::vector<HourBin> hours;
  std::array<uint64_t, kNumReplyKinds> reply_kinds{};
  EngineStats engine_stats;
  Summary summary;
};

// Called about once per simulated hour with the fraction of simulated time
// done; returning false stops the run (Cancelled).
using ProgressFn = std::function<bool(double fraction)>;

// Runs `scenario` against an Engine built from `config` (seeded with
// scenario.seed). InvalidArgument for a bad scenario or config.
absl::StatusOr<Result> Run(const Scenario& scenario, const EngineConfig& config,
                           const ProgressFn& progress = nullptr);

}  // namespace mailretry::sim

#endif  // MAILRETRY_SIM_SIM_H_
