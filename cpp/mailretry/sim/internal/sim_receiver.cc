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

void Penalise(const ReceiverProfile& p, bool on, PairState& pair) {
  if (on) pair.reputation = std::max(0.0, pair.reputation - p.retry_penalty);
}

bool InWindow(int64_t now, int64_t offset, int64_t duration) {
  return duration > 0 && now >= offset && now - offset < duration;
}

// Continuous refill: `max` tokens per `window`, never above `max`.
void Refill(const ReceiverProfile& p, PairState& pair, int64_t now) {
  if (!pair.buckets_started) {
    pair.buckets_started = true;
    pair.minute_tokens = p.max_per_minute;
    pair.hour_tokens = p.max_per_hour;
    pair.bucket_ms = now;
    return;
  }
  if (now <= pair.bucket_ms) return;
  const double dt = static_cast<double>(now - pair.bucket_ms);
  pair.bucket_ms = now;
  if (p.max_per_minute > 0) {
    pair.minute_tokens = std::min<double>(
        p.max_per_minute,
        pair.minute_tokens + dt * p.max_per_minute / static_cast<double>(kMsPerMinute));
  }
  if (p.max_per_hour > 0) {
    pair.hour_tokens = std::min<double>(
        p.max_per_hour, pair.hour_tokens + dt * p.max_per_hour / static_cast<double>(kMsPerHour));
  }
}

void Take(const ReceiverProfile& p, PairState& pair) {
  if (p.max_per_minute > 0)
    pair.minute_tokens = std::max<double>(pair.minute_tokens - 1, -1.0 * p.max_per_minute);
  if (p.max_per_hour > 0)
    pair.hour_tokens = std::max<double>(pair.hour_tokens - 1, -1.0 * p.max_per_hour);
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
    r.full_until_ms =
        submit_ms + static_cast<int64_t>(f * static_cast<double>(Ms(p.mailbox_full_duration)));
  }
  return r;
}

bool PtrFails(const ReceiverProfile& p, const Source& src) { return p.checks_ptr && !src.ptr; }

bool AuthFails(const ReceiverProfile& p, const Source& src) {
  switch (p.checks_auth) {
    case AuthCheck::kNone:
      return false;
    case AuthCheck::kSpfOrDkim:
      return !(src.spf || src.dkim);
    case AuthCheck::kSpfAndDkim:
      return !(src.spf && src.dkim);
    case AuthCheck::kDmarc:
      return !(src.dmarc && (src.spf || src.dkim));
  }
  return false;
}

ProfileMs::ProfileMs(const ReceiverProfile& p)
    : refuse_latency(Ms(p.refuse_latency)),
      latency_min(Ms(p.latency_min)),
      latency_max(Ms(p.latency_max)),
      connect_timeout(Ms(p.connect_timeout)),
      outage_offset(Ms(p.outage_offset)),
      outage_duration(Ms(p.outage_duration)),
      incident_offset(Ms(p.incident_offset)),
      incident_duration(Ms(p.incident_duration)),
      maintenance_every(Ms(p.maintenance_every)),
      maintenance_duration(Ms(p.maintenance_duration)),
      maintenance_offset(Ms(p.maintenance_offset)),
      greylist_delay(Ms(p.greylist_delay)) {}

AttemptResult StartAttempt(const ReceiverProfile& p, const Source& src, bool reputation_effect,
                           PairState& pair, RecipientState& rcpt, int64_t now_ms, SplitMix64& rng) {
  return StartAttempt(p, ProfileMs(p), src, reputation_effect, pair, rcpt, now_ms, rng);
}

AttemptResult StartAttempt(const ReceiverProfile& p, const ProfileMs& ms, const Source& src,
                           bool reputation_effect, PairState& pair, RecipientState& rcpt,
                           int64_t now_ms, SplitMix64& rng) {
  AttemptResult out;
  const int64_t refuse = ms.refuse_latency;
  const int64_t quick = ms.latency_min;

  // Reputation recovers with time since it was last brought up to date.
  if (reputation_effect && now_ms > pair.reputation_ms) {
    pair.reputation =
        std::min(1.0, pair.reputation + p.recovery_per_hour *
                                            static_cast<double>(now_ms - pair.reputation_ms) /
                                            static_cast<double>(kMsPerHour));
    pair.reputation_ms = now_ms;
  }
  auto refused = [&](ReplyKind k) {
    out.kind = k;
    out.latency_ms = k == ReplyKind::kConnectTimeout ? ms.connect_timeout : refuse;
    return out;
  };

  // Connection level: outage, maintenance, refused, timeout, overload, cap.
  if (InWindow(now_ms, ms.outage_offset, ms.outage_duration)) return refused(p.outage_kind);
  if (ms.maintenance_every > 0) {
    const int64_t offset = ms.maintenance_offset;
    if (now_ms >= offset && (now_ms - offset) % ms.maintenance_every < ms.maintenance_duration) {
      return refused(ReplyKind::kMaintenance);
    }
  }
  if (p.refuse_probability > 0 && rng.Uniform() < p.refuse_probability) {
    return refused(ReplyKind::kConnectionRefused);
  }
  if (p.timeout_probability > 0 && rng.Uniform() < p.timeout_probability) {
    return refused(ReplyKind::kConnectTimeout);
  }
  if (p.overload_probability > 0 && rng.Uniform() < p.overload_probability) {
    return refused(ReplyKind::kOverload);
  }
  if (p.max_connections_per_source > 0 && pair.connections >= p.max_connections_per_source) {
    Penalise(p, reputation_effect, pair);
    return refused(ReplyKind::kTooManyConnections);
  }
  ++pair.connections;
  pair.peak_connections = std::max(pair.peak_connections, pair.connections);
  out.holds_connection = true;
  out.latency_ms = quick;

  // Client identity (PTR) at the start of the transaction.
  if (PtrFails(p, src)) {
    if (p.ptr_soft_attempts < kSoftForever && rcpt.ptr_replies >= p.ptr_soft_attempts) {
      out.kind = ReplyKind::kPtrReject;
      return out;
    }
    if (rcpt.ptr_replies < UINT16_MAX) ++rcpt.ptr_replies;
    out.kind = ReplyKind::kPtrDeferral;
    return out;
  }
  // Reputation at MAIL FROM: an incident, or a low standing.
  if (InWindow(now_ms, ms.incident_offset, ms.incident_duration) &&
      rng.Uniform() < p.incident_probability) {
    Penalise(p, reputation_effect, pair);
    out.kind = ReplyKind::kReputationThrottled;
    return out;
  }
  if (pair.reputation < p.soft_block_below && p.throttle_probability > 0) {
    const double depth = (p.soft_block_below - pair.reputation) / p.soft_block_below;
    const double prob = p.throttle_probability * std::max(0.5, depth);
    if (rng.Uniform() < prob) {
      Penalise(p, reputation_effect, pair);
      out.kind = ReplyKind::kReputationThrottled;
      return out;
    }
  }
  if (p.max_per_minute > 0 || p.max_per_hour > 0) {
    Refill(p, pair, now_ms);
    if ((p.max_per_minute > 0 && pair.minute_tokens < 1.0) ||
        (p.max_per_hour > 0 && pair.hour_tokens < 1.0)) {
      if (p.ceiling_strict) Take(p, pair);
      Penalise(p, reputation_effect, pair);
      out.kind = ReplyKind::kRateLimited;
      return out;
    }
  }
  if (p.random_deferral_probability > 0 && rng.Uniform() < p.random_deferral_probability) {
    out.kind = ReplyKind::kRandomDeferral;
    return out;
  }

  // Recipient level (RCPT TO).
  if (rcpt.flags & kRecipientUnknown) {
    out.kind = ReplyKind::kUnknownUser;
    return out;
  }
  if (rcpt.flags & kRecipientGreylisted) {
    if (rcpt.greylist_first_ms < 0) rcpt.greylist_first_ms = now_ms;
    if (now_ms - rcpt.greylist_first_ms < ms.greylist_delay) {
      out.kind = ReplyKind::kGreylisted;
      return out;
    }
  }
  if ((rcpt.flags & kRecipientFull) && now_ms < rcpt.full_until_ms) {
    out.kind = ReplyKind::kMailboxFull;
    return out;
  }

  // After DATA: authentication (DKIM needs the message), a dropped connection.
  out.latency_ms = UniformMs(quick, ms.latency_max, rng);
  if (AuthFails(p, src)) {
    if (p.auth_soft_attempts < kSoftForever && rcpt.auth_replies >= p.auth_soft_attempts) {
      out.kind = ReplyKind::kAuthReject;
      return out;
    }
    if (rcpt.auth_replies < UINT16_MAX) ++rcpt.auth_replies;
    out.kind = ReplyKind::kAuthDeferral;
    return out;
  }
  if (p.drop_probability > 0 && rng.Uniform() < p.drop_probability) {
    out.kind = ReplyKind::kDroppedMidData;
    return out;
  }
  if (p.max_per_minute > 0 || p.max_per_hour > 0) Take(p, pair);
  out.kind = ReplyKind::kAccepted;
  return out;
}

void EndAttempt(PairState& pair) {
  if (pair.connections > 0) --pair.connections;
}

}  // namespace mailretry::sim::internal
