// The receiver model of the simulator; see sim_receiver.h.
#include "mailretry/sim/internal/sim_receiver.h"

#include <algorithm>
#include <cstdint>

#include "absl/time/time.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim::internal {
namespace {

int64_t Ms(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

int64_t UniformMs(int64_t lo, int64_t hi, SplitMix64& rng) {
  if (hi <= lo) return lo;
  return lo + static_cast<int64_t>(rng.Uniform() * static_cast<double>(hi - lo + 1));
}

void Penalise(const ReceiverProfile& p, PairState& pair) {
  pair.reputation = std::max(0.0, pair.reputation - p.penalty);
}

}  // namespace

RecipientState DrawRecipient(const ReceiverProfile& p, uint64_t seed, uint64_t msg_id,
                             int64_t submit_ms) {
  SplitMix64 rng(seed ^ (msg_id * 0xd1b54a32d192ed03ULL) ^ 0x5bd1e9955bd1e995ULL);
  RecipientState r;
  if (rng.Uniform() < p.greylist_probability) r.flags |= kRecipientGreylisted;
  if (rng.Uniform() < p.unknown_user_probability) r.flags |= kRecipientUnknown;
  if (rng.Uniform() < p.mailbox_full_probability) {
    r.flags |= kRecipientFull;
    // Space is freed somewhere between half and one and a half of the typical time.
    const double f = 0.5 + rng.Uniform();
    r.full_until_ms = submit_ms + static_cast<int64_t>(f * static_cast<double>(Ms(p.mailbox_full_duration)));
  }
  return r;
}

AttemptResult StartAttempt(const ReceiverProfile& p, PairState& pair, RecipientState& rcpt,
                           int64_t now_ms, SplitMix64& rng) {
  AttemptResult out;
  const int64_t refuse = Ms(p.refuse_latency);
  const int64_t quick = Ms(p.latency_min);

  // Reputation recovers with time since it was last brought up to date.
  if (now_ms > pair.reputation_ms) {
    pair.reputation = std::min(
        1.0, pair.reputation + p.recovery_per_hour * static_cast<double>(now_ms - pair.reputation_ms) /
                                   static_cast<double>(kMsPerHour));
    pair.reputation_ms = now_ms;
  }

  // Connection level: maintenance, overload, connection cap.
  if (p.maintenance_every > absl::ZeroDuration()) {
    const int64_t offset = Ms(p.maintenance_offset);
    if (now_ms >= offset && (now_ms - offset) % Ms(p.maintenance_every) < Ms(p.maintenance_duration)) {
      out.kind = ReplyKind::kMaintenance;
      out.latency_ms = refuse;
      return out;
    }
  }
  if (p.overload_probability > 0 && rng.Uniform() < p.overload_probability) {
    out.kind = ReplyKind::kOverload;
    out.latency_ms = refuse;
    return out;
  }
  if (p.max_connections_per_source > 0 && pair.connections >= p.max_connections_per_source) {
    Penalise(p, pair);
    out.kind = ReplyKind::kTooManyConnections;
    out.latency_ms = refuse;
    return out;
  }
  ++pair.connections;
  pair.peak_connections = std::max(pair.peak_connections, pair.connections);
  out.holds_connection = true;
  out.latency_ms = quick;

  // Sender level: structural misconfiguration, reputation, rate ceilings.
  if (p.structural) {
    if (p.structural_soft_attempts > 0 && rcpt.structural_replies >= p.structural_soft_attempts) {
      out.kind = ReplyKind::kStructuralReject;
      return out;
    }
    if (rcpt.structural_replies < 255) ++rcpt.structural_replies;
    out.kind = ReplyKind::kStructuralDeferral;
    return out;
  }
  if (pair.reputation < p.soft_block_below && p.throttle_probability > 0) {
    const double depth = (p.soft_block_below - pair.reputation) / p.soft_block_below;
    const double prob = p.throttle_probability * std::max(0.5, depth);
    if (rng.Uniform() < prob) {
      Penalise(p, pair);
      out.kind = ReplyKind::kReputationThrottled;
      return out;
    }
  }
  const int64_t minute = now_ms / kMsPerMinute;
  const int64_t hour = now_ms / kMsPerHour;
  if (minute != pair.minute) {
    pair.minute = minute;
    pair.minute_count = 0;
  }
  if (hour != pair.hour) {
    pair.hour = hour;
    pair.hour_count = 0;
  }
  if ((p.max_per_minute > 0 && pair.minute_count >= p.max_per_minute) ||
      (p.max_per_hour > 0 && pair.hour_count >= p.max_per_hour)) {
    Penalise(p, pair);
    out.kind = ReplyKind::kRateLimited;
    return out;
  }
  if (p.random_deferral_probability > 0 && rng.Uniform() < p.random_deferral_probability) {
    out.kind = ReplyKind::kRandomDeferral;
    return out;
  }

  // Recipient level.
  if (rcpt.flags & kRecipientUnknown) {
    out.kind = ReplyKind::kUnknownUser;
    return out;
  }
  if (rcpt.flags & kRecipientGreylisted) {
    if (rcpt.greylist_first_ms < 0) rcpt.greylist_first_ms = now_ms;
    if (now_ms - rcpt.greylist_first_ms < Ms(p.greylist_delay)) {
      out.kind = ReplyKind::kGreylisted;
      return out;
    }
  }
  if ((rcpt.flags & kRecipientFull) && now_ms < rcpt.full_until_ms) {
    out.kind = ReplyKind::kMailboxFull;
    return out;
  }

  ++pair.minute_count;
  ++pair.hour_count;
  out.kind = ReplyKind::kAccepted;
  out.latency_ms = UniformMs(quick, Ms(p.latency_max), rng);
  return out;
}

void EndAttempt(PairState& pair) {
  if (pair.connections > 0) --pair.connections;
}

}  // namespace mailretry::sim::internal
