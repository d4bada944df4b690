// File: internal/sim_receiver.h
// -----------------------------------------------------------------------------
// The simulator's receiver model: given a profile, the sending source, the
// state of one (receiving domain, source IP) pair and one recipient, decides
// what the receiver answers to an attempt and how long the attempt takes.
// Pure logic over explicit state and a caller-owned PRNG, so it is testable
// alone. Time is in milliseconds since the scenario start; nothing is
// quantised to a window or tick (ceilings are token buckets).
#ifndef MAILRETRY_SIM_INTERNAL_SIM_RECEIVER_H_
#define MAILRETRY_SIM_INTERNAL_SIM_RECEIVER_H_

#include <cstdint>

#include "mailretry/policy/retry_policy.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim::internal {

inline constexpr int64_t kMsPerMinute = 60'000;
inline constexpr int64_t kMsPerHour = 3'600'000;

// Per (receiving domain, source IP).
struct PairState {
  uint32_t connections = 0;  // attempts holding a connection now
  uint32_t peak_connections = 0;
  bool buckets_started = false;
  double minute_tokens = 0;  // token buckets of the rate ceilings
  double hour_tokens = 0;
  int64_t bucket_ms = 0;  // when the buckets were last refilled
  double reputation = 1.0;
  int64_t reputation_ms = 0;  // when `reputation` was last brought up to date
};

// Per message (one recipient).
enum RecipientFlags : uint8_t {
  kRecipientGreylisted = 1,
  kRecipientUnknown = 2,
  kRecipientFull = 4,
};

struct RecipientState {
  int64_t greylist_first_ms = -1;  // first attempt seen by the greylister
  int64_t full_until_ms = 0;       // mailbox full until then
  uint8_t flags = 0;
  uint16_t ptr_replies = 0;   // PTR deferrals so far (saturating)
  uint16_t auth_replies = 0;  // authentication deferrals so far (saturating)
};

// Draws one recipient's fixed attributes from the profile, using a PRNG
// seeded from (seed, msg_id) so that it does not depend on event order.
RecipientState DrawRecipient(const ReceiverProfile& p, uint64_t seed, uint64_t msg_id,
                             int64_t submit_ms);

// True when `src` fails a check `p` makes (the ground truth of structural
// failure for the pair).
bool PtrFails(const ReceiverProfile& p, const Source& src);
bool AuthFails(const ReceiverProfile& p, const Source& src);

// A profile's durations in milliseconds, converted once per run instead of
// on every attempt (absl::Duration conversions were ~4 % of a naive run's
// instructions).
struct ProfileMs {
  explicit ProfileMs(const ReceiverProfile& p);
  int64_t refuse_latency, latency_min, latency_max, connect_timeout;
  int64_t outage_offset, outage_duration, incident_offset, incident_duration;
  int64_t maintenance_every, maintenance_duration, maintenance_offset;
  int64_t greylist_delay;
};

struct AttemptResult {
  ReplyKind kind = ReplyKind::kAccepted;
  int64_t latency_ms = 0;
  bool holds_connection = false;  // the attempt occupies a connection until it ends
};

// The receiver's answer to an attempt starting at `now_ms`. Updates `pair`
// (connections, buckets, reputation) and `rcpt`. If `holds_connection`, call
// EndAttempt when the attempt ends. `reputation_effect` applies the profile's
// retry_penalty (Scenario::reputation_from_retries).
AttemptResult StartAttempt(const ReceiverProfile& p, const ProfileMs& ms, const Source& src,
                           bool reputation_effect, PairState& pair, RecipientState& rcpt,
                           int64_t now_ms, SplitMix64& rng);
// The same, converting the profile's durations on the call (tests).
AttemptResult StartAttempt(const ReceiverProfile& p, const Source& src, bool reputation_effect,
                           PairState& pair, RecipientState& rcpt, int64_t now_ms, SplitMix64& rng);
void EndAttempt(PairState& pair);

}  // namespace mailretry::sim::internal

#endif  // MAILRETRY_SIM_INTERNAL_SIM_RECEIVER_H_
