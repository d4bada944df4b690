// File: engine/durable/internal/snapshot_fields.h
// -----------------------------------------------------------------------------
// The snapshot format's field lists: for each saved struct, one Fields(v, x)
// naming its fields in file order, which serves both Save (a FieldWriter) and
// Load (a FieldReader), so that the two can never disagree about the layout.
// The readers also bound every count by the bytes left, so a corrupt file
// cannot make Load allocate much more than its own size. Used by snapshot.cc
// only; a header of its own to keep that file about the framing and state.
#ifndef MAILRETRY_ENGINE_DURABLE_INTERNAL_SNAPSHOT_FIELDS_H_
#define MAILRETRY_ENGINE_DURABLE_INTERNAL_SNAPSHOT_FIELDS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mailretry/common/internal/binary_io.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/state.h"

namespace mailretry::internal::snapshot {

// The snapshot format version.
// 2: concurrency ceiling memory. 3: stale-report and clamped-time counters,
// and each destination's last concurrency cut (version 2 files load with the
// counters at 0 and no cut remembered). 4: issue 12's adaptive state (probing,
// capacity window, greylist delays, sender evidence, hold counters); older
// files load with this build's defaults for the new config fields and empty
// new state. 5: learned greylist delays (the policy switch, each message's
// first greylist deferral, each domain's bounds); older files load with
// learning off, so that their journals replay as recorded. 6: quick
// connection retries and learned full-mailbox spacing (two policy switches);
// older files load with both off, for the same reason. 7: the partial-throttle
// window (a policy switch and each destination's recent throttle replies);
// older files load with the switch off.
inline constexpr uint32_t kVersion = 7;
inline constexpr uint32_t kOldestVersion = 2;

using Writer = internal::BinaryWriter;
using Reader = internal::BinaryReader;

// --- one field list per saved struct ----------------------------------------------
// Each Fields(v, x) names the struct's saved fields once, in file order; the
// same list serves Save (v writes) and Load (v reads). Integers keep their
// width except uint16_t, stored as u32; enums are stored as u8; an optional
// is a bool then the value when present; a vector is a u64 count then its
// elements; an array is its elements.

template <class S, class T>
concept Of = std::is_same_v<std::remove_const_t<S>, T>;

template <class V, Of<RateLimit> S>
void Fields(V& v, S& x) {
  v(x.messages), v(x.per);
}

template <class V, Of<RetryStage> S>
void Fields(V& v, S& x) {
  v(x.kind), v(x.cutoff), v(x.interval), v(x.multiplier);
}

template <class V, Of<RetryPolicy> S>
void Fields(V& v, S& x) {
  v(x.backoff), v(x.initial_delay), v(x.multiplier), v(x.max_delay), v(x.min_delay), v(x.intervals),
      v(x.stages), v(x.jitter), v(x.lifetime), v(x.max_attempts), v(x.attempt_at_lifetime_end);
}

template <class V, Of<DestinationPolicy> S>
void Fields(V& v, S& x) {
  v(x.destination), v(x.source), v(x.initial_concurrency), v(x.max_concurrency),
      v(x.min_concurrency), v(x.cut_concurrency_to), v(x.raise_concurrency_after),
      v(x.concurrency_ceiling_hold), v(x.rate), v(x.unlimited_cut_to), v(x.min_rate),
      v(x.rate_quiet_period), v(x.suspend_base), v(x.suspend_multiplier), v(x.suspend_max),
      v(x.connection_failures_to_suspend);
  if (v.version >= 4) {
    v(x.suspend_probe_interval), v(x.capacity_window), v(x.capacity_suspend_min);
  } else if constexpr (!std::is_const_v<S>) {
    // An engine saved before format 4 did not probe and suspended on every
    // capacity reply: its journal must replay to the state it recorded, so
    // it keeps that behaviour.
    x.suspend_probe_interval = absl::ZeroDuration();
    x.capacity_window = 0;
  }
  if (v.version >= 5) {
    v(x.learn_greylist_delay);
  } else if constexpr (!std::is_const_v<S>) {
    x.learn_greylist_delay = false;
  }
  if (v.version >= 6) {
    v(x.quick_connection_retry), v(x.learn_full_mailbox);
  } else if constexpr (!std::is_const_v<S>) {
    x.quick_connection_retry = false;
    x.learn_full_mailbox = false;
  }
  if (v.version >= 7) {
    v(x.partial_throttle_window);
  } else if constexpr (!std::is_const_v<S>) {
    x.partial_throttle_window = false;
  }
}

template <class V, Of<ScheduleOverride> S>
void Fields(V& v, S& x) {
  v(x.name), v(x.destination), v(x.categories), v(x.transports), v(x.policy), v(x.fixed_delay),
      v(x.advance_backoff), v(x.max_consecutive);
}

template <class V, Of<ReactionRule> S>
void Fields(V& v, S& x) {
  v(x.name), v(x.text_regex), v(x.enhanced_pattern), v(x.code_pattern), v(x.destination),
      v(x.categories), v(x.threshold), v(x.window), v(x.suspend_for), v(x.set_concurrency),
      v(x.set_rate), v(x.duration);
}

template <class V, Of<StructuralConfig> S>
void Fields(V& v, S& x) {
  v(x.enabled), v(x.warning_421s), v(x.warning_ratio), v(x.warning_window), v(x.cycle_messages),
      v(x.cycle_failures), v(x.evidence_messages), v(x.evidence_span), v(x.hold),
      v(x.probe_interval);
  if (v.version >= 4) {
    v(x.strong_attempts), v(x.strong_span), v(x.sender_destinations), v(x.early_weak_evidence);
  } else if constexpr (!std::is_const_v<S>) {
    // Before format 4: no strong rule, weak evidence counted early.
    x.strong_attempts = x.sender_destinations = 0;
    x.early_weak_evidence = true;
  }
  if (v.version >= 5) {
    v(x.probe_backoff), v(x.probe_interval_max);
  } else if constexpr (!std::is_const_v<S>) {
    x.probe_backoff = 1.0;  // a fixed probe interval
  }
}

// `transient` is a tri-state byte: 0 unset, 1 false, 2 true.
template <class V, Of<UserRule> S>
void Fields(V& v, S& x) {
  v(x.name), v(x.text_regex), v(x.enhanced_pattern), v(x.code_pattern), v(x.destination),
      v(x.category), v(x.action);
  v.TriStateByte(x.transient);
}

template <class V, Of<EngineConfig> S>
void Fields(V& v, S& x) {
  v(x.retry), v(x.overrides), v(x.builtin_overrides), v(x.destination_defaults), v(x.destinations),
      v(x.reactions), v(x.structural), v(x.classifier_rules), v(x.lease_timeout), v(x.backend),
      v(x.timer_resolution), v(x.message_events), v(x.max_buffered_events);
}

template <class V, Of<DestState> S>
void Fields(V& v, S& d) {
  v(d.domain_id), v(d.source_id), v(d.first_head), v(d.first_tail), v(d.retry_head),
      v(d.retry_tail), v(d.first_count), v(d.retry_count), v(d.scheduled_count),
      v(d.take_retry_next), v(d.in_ring);
  v(d.in_flight), v(d.concurrency), v(d.success_streak), v(d.conc_override),
      v(d.conc_override_until), v(d.conc_ceiling), v(d.conc_ceiling_until);
  v(d.tat), v(d.cut_interval_ms), v(d.last_cut), v(d.rate_override_ms), v(d.rate_override_until);
  v(d.suspended_until), v(d.suspended), v(d.suspensions), v(d.conn_failures),
      v(d.consecutive_failures), v(d.wake);
  v(d.health), v(d.held), v(d.probe_in_flight), v(d.next_probe), v(d.last_delivery), v(d.win_start),
      v(d.cur_attempts), v(d.cur_421), v(d.prev_attempts), v(d.prev_421), v(d.cat_counts),
      v(d.cycle_msgs), v(d.evidence_msgs), v(d.evidence_first);
  v(d.attempts), v(d.delivered), v(d.deferred), v(d.bounced), v(d.expired);
  v(d.samples), v(d.sample_gen), v(d.sample_next), v(d.sample_count);
  if (v.version >= 3) v(d.last_conc_cut);
  if (v.version >= 4)
    v(d.ramp_to), v(d.half_open), v(d.capacity_bits), v(d.strong_ptr), v(d.strong_auth),
        v(d.strong_first);
  if (v.version >= 5) v(d.held_probes);
  if (v.version >= 7) v(d.throttle_bits), v(d.partial_since);
}

// A live message (its slot is written before it).
template <class V, Of<MsgRec> S>
void Fields(V& v, S& x) {
  v(x.id), v(x.submitted_ms), v(x.timer_ms), v(x.dest), v(x.prev), v(x.next), v(x.last_delay_s),
      v(x.last_enhanced), v(x.last_code), v(x.attempts), v(x.state), v(x.flags), v(x.step),
      v(x.last_category), v(x.fixed_uses), v(x.sample);
  if (v.version >= 5) v(x.grey_s);
}

// Every int64_t a saved DestState or MsgRec holds is a Unix-ms time, a
// kNoTime/kNever sentinel, or a millisecond interval. The engine never holds
// one more than kMaxStoredMs from the epoch (its clock stops at 10,000 years
// and its durations at 100), so a larger value is damage: loaded, it would
// reach a timer queue out of range at the next wake-up it arms.
inline constexpr int64_t kMaxStoredMs = int64_t{20'000} * 365 * 24 * 3600 * 1000;

inline bool StoredTimeInRange(int64_t t) {
  return t == kNoTime || t == kNever || (t >= -kMaxStoredMs && t <= kMaxStoredMs);
}

// A visitor for Fields() that checks every int64_t field with
// StoredTimeInRange and ignores the others.
struct TimeRangeCheck {
  uint32_t version = kVersion;
  bool ok = true;
  void operator()(const int64_t& t) { ok = ok && StoredTimeInRange(t); }
  template <class T>
  void operator()(const T&) {}
};

template <class T>
bool TimesInRange(const T& x) {
  TimeRangeCheck check;
  Fields(check, x);
  return check.ok;
}

// The least bytes one element takes in the file: a corrupt count can then
// never make Load allocate more than a small multiple of the file's size.
template <class T>
constexpr size_t MinBytes() {
  if constexpr (std::is_same_v<T, RetryStage>) return 25;
  if constexpr (std::is_same_v<T, ReactionRule> || std::is_same_v<T, UserRule>) return 20;
  if constexpr (std::is_same_v<T, absl::Duration> || std::is_same_v<T, ScheduleOverride> ||
                std::is_same_v<T, DestinationPolicy>) {
    return 8;
  }
  if constexpr (std::is_enum_v<T>) return 1;
  if constexpr (std::is_arithmetic_v<T>) return sizeof(T);
  return 4;
}

template <class T>
struct IsVector : std::false_type {};
template <class T, class A>
struct IsVector<std::vector<T, A>> : std::true_type {};
template <class T>
struct IsArray : std::false_type {};
template <class T, size_t N>
struct IsArray<std::array<T, N>> : std::true_type {};
template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

// Save's visitor.
class FieldWriter : public Writer {
 public:
  using Writer::Writer;
  uint32_t version = kVersion;  // Save writes the current format
  template <class T>
  void operator()(const T& x) {
    if constexpr (std::is_same_v<T, bool>) {
      Bool(x);
    } else if constexpr (std::is_enum_v<T>) {
      U8(static_cast<uint8_t>(x));
    } else if constexpr (std::is_same_v<T, uint8_t>) {
      U8(x);
    } else if constexpr (std::is_same_v<T, uint16_t> || std::is_same_v<T, uint32_t>) {
      U32(x);
    } else if constexpr (std::is_same_v<T, uint64_t>) {
      U64(x);
    } else if constexpr (std::is_same_v<T, int64_t>) {
      I64(x);
    } else if constexpr (std::is_same_v<T, double>) {
      F64(x);
    } else if constexpr (std::is_same_v<T, absl::Duration>) {
      Dur(x);
    } else if constexpr (std::is_same_v<T, std::string>) {
      Str(x);
    } else if constexpr (IsOptional<T>::value) {
      Bool(x.has_value());
      if (x) (*this)(*x);
    } else if constexpr (IsVector<T>::value) {
      U64(x.size());
      for (const auto& e : x) (*this)(e);
    } else if constexpr (IsArray<T>::value) {
      for (const auto& e : x) (*this)(e);
    } else {
      Fields(*this, x);
    }
  }
  void TriStateByte(const std::optional<bool>& t) { U8(t.has_value() ? (*t ? 2 : 1) : 0); }
};

// Load's visitor. Values are taken as stored; Load checks them afterwards.
class FieldReader : public Reader {
 public:
  using Reader::Reader;
  uint32_t version = kVersion;  // of the file being read: older files lack later fields
  template <class T>
  void operator()(T& x) {
    if constexpr (std::is_same_v<T, bool>) {
      x = Bool();
    } else if constexpr (std::is_enum_v<T>) {
      x = static_cast<T>(U8());
    } else if constexpr (std::is_same_v<T, uint8_t>) {
      x = U8();
    } else if constexpr (std::is_same_v<T, uint16_t>) {
      x = static_cast<uint16_t>(U32());
    } else if constexpr (std::is_same_v<T, uint32_t>) {
      x = U32();
    } else if constexpr (std::is_same_v<T, uint64_t>) {
      x = U64();
    } else if constexpr (std::is_same_v<T, int64_t>) {
      x = I64();
    } else if constexpr (std::is_same_v<T, double>) {
      x = F64();
    } else if constexpr (std::is_same_v<T, absl::Duration>) {
      x = Dur();
    } else if constexpr (std::is_same_v<T, std::string>) {
      x = Str();
    } else if constexpr (IsOptional<T>::value) {
      if (Bool()) {
        typename T::value_type v{};
        (*this)(v);
        x = std::move(v);
      } else {
        x.reset();
      }
    } else if constexpr (IsVector<T>::value) {
      x.resize(Count(MinBytes<typename T::value_type>()));
      for (auto& e : x) (*this)(e);
    } else if constexpr (IsArray<T>::value) {
      for (auto& e : x) (*this)(e);
    } else {
      Fields(*this, x);
    }
  }
  void TriStateByte(std::optional<bool>& t) {
    const uint8_t b = U8();
    if (b != 0) t = (b == 2);
  }
};

}  // namespace mailretry::internal::snapshot

#endif  // MAILRETRY_ENGINE_DURABLE_INTERNAL_SNAPSHOT_FIELDS_H_
