// File: timers/internal/timer_clock.h
// -----------------------------------------------------------------------------
// The time arithmetic every TimerQueue backend shares: converting absl::Time to
// integer ticks of a fixed resolution, the monotone "now" of the last PopDue,
// and the rule for due times in the past. Keeping it in one place is what makes
// the backends agree to the tick in the differential test.
#ifndef MAILRETRY_TIMERS_INTERNAL_TIMER_CLOCK_H_
#define MAILRETRY_TIMERS_INTERNAL_TIMER_CLOCK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mailretry::internal {

// Ticks are counted from TimerOptions::start. Beyond this a due time is
// OutOfRange: it keeps every tick arithmetic below far from int64 overflow
// (2^62 s is ~1.5e11 years; 2^62 ms is ~1.5e8 years).
inline constexpr int64_t kMaxTick = int64_t{1} << 62;

class TimerClock {
 public:
  // A non-positive or infinite resolution falls back to 1 s: MakeTimerQueue
  // has no error channel, and 1 s is the documented default.
  TimerClock(absl::Time start, absl::Duration resolution)
      : start_(start),
        resolution_(resolution > absl::ZeroDuration() && resolution != absl::InfiniteDuration()
                        ? resolution
                        : absl::Seconds(1)),
        now_(start) {
    // Integer fast path (absl::IDivDuration is general and ~4x slower): valid
    // when the resolution is whole nanoseconds and start and due are within
    // +-146 years of 1970, so that their nanosecond difference fits in int64.
    const int64_t res_ns = absl::ToInt64Nanoseconds(resolution_);
    fast_ = absl::Nanoseconds(res_ns) == resolution_ && start > kFastLow && start < kFastHigh;
    res_ns_ = res_ns;
    start_ns_ = fast_ ? absl::ToUnixNanos(start) : 0;
    now_fast_ = fast_;
    now_ns_ = start_ns_;
  }

  absl::Duration resolution() const { return resolution_; }
  absl::Time now() const { return now_; }
  // Last tick whose timers are due: floor((now - start) / resolution).
  int64_t now_tick() const { return now_tick_; }

  // Validates and commits a PopDue's `now`; returns its tick.
  absl::StatusOr<int64_t> Advance(absl::Time now) {
    if (now < now_) {
      return absl::InvalidArgumentError("PopDue: time went backwards");
    }
    if (now == absl::InfiniteFuture()) {
      return absl::InvalidArgumentError("PopDue: now is infinite");
    }
    int64_t q;
    if (fast_ && now < kFastHigh) {
      // now >= now_ >= start_, so the division rounds toward zero = down.
      // (PopDue runs on every engine call; IDivDuration was most of an empty one.)
      q = (absl::ToUnixNanos(now) - start_ns_) / res_ns_;
    } else {
      absl::Duration rem;
      q = absl::IDivDuration(now - start_, resolution_, &rem);
      if (rem < absl::ZeroDuration()) --q;
    }
    if (q >= kMaxTick) return absl::OutOfRangeError("PopDue: now too far after start");
    now_ = now;
    now_tick_ = q;
    now_fast_ = fast_ && now < kFastHigh;
    if (now_fast_) now_ns_ = absl::ToUnixNanos(now);
    return q;
  }

  // The tick a timer due at `due` belongs to. In the future: rounded UP, so it
  // never fires early. At or before now: now's tick, so it is due at the next
  // PopDue and, among timers made due this way, pops in insertion order.
  absl::StatusOr<int64_t> DueTick(absl::Time due) const {
    if (due <= now_) return now_tick_;
    if (fast_ && due < kFastHigh) {
      return TicksUpFromStart(absl::ToUnixNanos(due));
    }
    if (due == absl::InfiniteFuture()) return absl::OutOfRangeError("due time is infinite");
    absl::Duration rem;
    int64_t q = absl::IDivDuration(due - start_, resolution_, &rem);
    if (rem > absl::ZeroDuration()) ++q;
    if (q >= kMaxTick) return absl::OutOfRangeError("due time too far in the future");
    return q;
  }

  // DueTick(absl::FromUnixMillis(due_ms)), in integers when the fast path
  // applies (the same arithmetic as DueTick's, on the same nanoseconds).
  absl::StatusOr<int64_t> DueTickUnixMs(int64_t due_ms) const {
    if (now_fast_ && due_ms > -kFastMs && due_ms < kFastMs) {
      const int64_t due_ns = due_ms * 1'000'000;
      if (due_ns <= now_ns_) return now_tick_;
      return TicksUpFromStart(due_ns);
    }
    return DueTick(absl::FromUnixMillis(due_ms));
  }

  absl::Time TickTime(int64_t tick) const { return start_ + resolution_ * tick; }

 private:
  static inline const absl::Time kFastLow = absl::FromUnixNanos(-(int64_t{1} << 62));
  static inline const absl::Time kFastHigh = absl::FromUnixNanos(int64_t{1} << 62);
  // Ticks from start to `due_ns` (Unix ns, after now_ >= start), rounded up:
  // d > 0, so the division rounds toward zero = down.
  int64_t TicksUpFromStart(int64_t due_ns) const {
    const int64_t d = due_ns - start_ns_;
    const int64_t q = d / res_ns_;
    return q + (q * res_ns_ < d);
  }

  // Milliseconds whose nanoseconds are strictly inside (kFastLow, kFastHigh).
  static constexpr int64_t kFastMs = (int64_t{1} << 62) / 1'000'000;

  absl::Time start_;
  absl::Duration resolution_;
  bool fast_ = false;
  int64_t res_ns_ = 1;
  int64_t start_ns_ = 0;
  absl::Time now_;
  int64_t now_tick_ = 0;
  // now_ in Unix nanoseconds, valid when now_fast_ (fast_ and now_ < kFastHigh).
  bool now_fast_ = false;
  int64_t now_ns_ = 0;
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_TIMERS_INTERNAL_TIMER_CLOCK_H_
