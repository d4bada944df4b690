// File: common/internal/unix_ms.h
// -----------------------------------------------------------------------------
// absl::Time <-> Unix milliseconds (and Duration -> double seconds), inline.
// The engine keeps times as Unix milliseconds and converts at every call (and
// the simulator at every event), but absl's conversions are out of line (a
// shared library on this platform): about 5 % of a simulator run's
// instructions went to ToUnixMillis, Duration addition and IsTimeValid's
// bound. These read absl::Time's representation (whole seconds,
// quarter-nanosecond ticks) through absl's own constexpr accessors and give
// exactly what absl's functions give; anything outside the fast range goes to
// absl.
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

// absl::ToDoubleSeconds(d), bit for bit. absl's is out of line and the retry
// policy's NextDelay calls it up to three times per retry (~2 % of a
// simulator run's instructions). Same formula as absl's FDivDuration:
// (hi * 4e9 + lo) / 4e9 over the representation; below 2^21 s the product is
// exact in a double, so the sum is rounded once whether or not the compiler
// fuses it into a multiply-add. Infinite and larger durations go to absl.
inline double DoubleSeconds(absl::Duration d) {
  const int64_t hi = absl::time_internal::GetRepHi(d);
  const uint32_t lo = absl::time_internal::GetRepLo(d);
  constexpr int64_t kFastSeconds = int64_t{1} << 21;
  if (lo == ~uint32_t{0} || hi >= kFastSeconds || hi <= -kFastSeconds) {
    return absl::ToDoubleSeconds(d);
  }
  constexpr double kTicksPerSecond = 4'000'000'000.0;
  return (static_cast<double>(hi) * kTicksPerSecond + static_cast<double>(lo)) / kTicksPerSecond;
}

}  // namespace mailretry::internal

#endif  // MAILRETRY_COMMON_INTERNAL_UNIX_MS_H_
