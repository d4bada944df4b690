// File: engine/internal/lease_deadlines.cc
// When a lease deadline fires: the timer queues' rounding, in milliseconds.
#include "mailretry/engine/internal/lease_deadlines.h"

#include <cstdint>

#include "absl/time/time.h"

namespace mailretry::internal {

void LeaseDeadlines::Configure(TimerBackend backend, absl::Duration resolution) {
  rounds_ = backend == TimerBackend::kWheel;
  // As TimerClock: a non-positive or infinite resolution means 1 s.
  resolution_ = resolution > absl::ZeroDuration() && resolution != absl::InfiniteDuration()
                    ? resolution
                    : absl::Seconds(1);
  const int64_t ns = absl::ToInt64Nanoseconds(resolution_);
  // The integer path needs whole nanoseconds well inside int64.
  res_ns_ = absl::Nanoseconds(ns) == resolution_ && ns < (int64_t{1} << 50) ? ns : 0;
}

int64_t LeaseDeadlines::FireMs(int64_t due_ms) const {
  // The heaps pop a timer at its (millisecond) due time.
  if (!rounds_ || due_ms <= 0) return due_ms;
  // The wheel (started at the Unix epoch) puts it in tick ceil(due / res)
  // and pops it at the first `now` whose tick floor(now / res) reaches that:
  // the tick's start, rounded up to the engine's whole milliseconds.
  constexpr int64_t kFastMs = (int64_t{1} << 62) / 1'000'000;
  if (res_ns_ > 0 && due_ms < kFastMs) {
    const int64_t due_ns = due_ms * 1'000'000;
    int64_t tick = due_ns / res_ns_;
    if (tick * res_ns_ < due_ns) ++tick;
    const int64_t at_ns = tick * res_ns_;
    return at_ns / 1'000'000 + (at_ns % 1'000'000 != 0);
  }
  absl::Duration rem;
  int64_t tick = absl::IDivDuration(absl::Milliseconds(due_ms), resolution_, &rem);
  if (rem > absl::ZeroDuration()) ++tick;
  const absl::Time at = absl::UnixEpoch() + resolution_ * tick;
  const int64_t ms = absl::ToUnixMillis(at);
  return absl::FromUnixMillis(ms) < at ? ms + 1 : ms;
}

}  // namespace mailretry::internal
