// File: common/internal/unix_ms.h
// -----------------------------------------------------------------------------
// absl::Time <-> Unix milliseconds, inline. The engine keeps times as Unix
// milliseconds and converts at every call (and the simulator at every event),
// but absl's conversions are out of line (a shared library on this platform):
// about 5 % of a simulator run's instructions went to ToUnixMillis, Duration
// addition and IsTimeValid's bound. These read absl::Time's representation
// (whole seconds, quarter-nanosecond ticks) through absl's own constexpr
// accessors and give exactly what absl's functions give; anything outside the
// fast range goes to absl.
#ifndef MAILRETRY_COMMON_INTERNAL_UNIX_MS_H_
#define MAILRETRY_COMMON_INTERNAL_UNIX_MS_H_

#include <cstdint>

#include "absl/time/time.h"

namespace mailretry::internal {

// Quarter-nanosecond ticks per millisecond in absl::Duration's low word.
inline constexpr uint32_t kAbslTicksPerMs = 4'000'000;

// absl::ToUnixMillis(t) (rounded down).
inline int64_t UnixMillis(absl::Time t) {
  const absl::Duration d = absl::time_internal::ToUnixDuration(t);
  const int64_t hi = absl::time_internal::GetRepHi(d);
  const uint32_t lo = absl::time_internal::GetRepLo(d);
  // Infinite times have lo == ~0; |hi| < 2^53 s keeps hi * 1000 in range.
  if (lo == ~uint32_t{0} || hi >= (int64_t{1} << 53) || hi <= -(int64_t{1} << 53)) {
    return absl::ToUnixMillis(t);
  }
  return hi * 1000 + static_cast<int64_t>(lo / kAbslTicksPerMs);
}

// True when t is finite and a whole number of milliseconds after the epoch
// (then UnixMillis(t) is exact and absl::FromUnixMillis gives t back).
inline bool IsWholeUnixMillis(absl::Time t) {
  const uint32_t lo = absl::time_internal::GetRepLo(absl::time_internal::ToUnixDuration(t));
  return lo != ~uint32_t{0} && lo % kAbslTicksPerMs == 0;
}

// UnixEpoch() <= t < UnixEpoch() + `seconds` s, for 0 < seconds.
inline bool InUnixRange(absl::Time t, int64_t seconds) {
  const absl::Duration d = absl::time_internal::ToUnixDuration(t);
  const int64_t hi = absl::time_internal::GetRepHi(d);
  // t >= epoch iff hi >= 0 (ticks are never negative; infinite past has
  // hi < 0); t < epoch + seconds iff hi < seconds (infinite future has hi max).
  return hi >= 0 && hi < seconds;
}

}  // namespace mailretry::internal

#endif  // MAILRETRY_COMMON_INTERNAL_UNIX_MS_H_
