// The inline conversions of unix_ms.h against absl's own, on edge values and
// on random times at every resolution.
#include "mailretry/common/internal/unix_ms.h"

#include <cstdint>
#include <random>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace mailretry::internal {
namespace {

std::vector<absl::Time> Samples() {
  std::vector<absl::Time> v = {
      absl::UnixEpoch(),
      absl::InfiniteFuture(),
      absl::InfinitePast(),
      absl::FromUnixMillis(-1),
      absl::FromUnixNanos(-1),
      absl::FromUnixNanos(1),
      absl::FromUnixNanos(999'999),
      absl::FromUnixMillis(1'700'000'000'123),
      absl::FromUnixSeconds((int64_t{1} << 53) - 1),
      absl::FromUnixSeconds(int64_t{1} << 53),
      absl::FromUnixSeconds(-(int64_t{1} << 53)),
      absl::FromUnixSeconds(int64_t{24} * 3600 * 365 * 10000),
      absl::FromUnixSeconds(int64_t{24} * 3600 * 365 * 10000) - absl::Nanoseconds(1)};
  std::mt19937_64 rng(42);
  for (int i = 0; i < 20000; ++i) {
    const int64_t s = static_cast<int64_t>(rng() >> (i % 40)) * (i % 3 == 0 ? -1 : 1);
    v.push_back(absl::FromUnixSeconds(s) +
                absl::Nanoseconds(static_cast<int64_t>(rng() % 1'000'000'000)));
    v.push_back(absl::FromUnixMillis(s / 1000));
  }
  return v;
}

TEST(UnixMs, UnixMillisIsAbslToUnixMillis) {
  for (absl::Time t : Samples()) EXPECT_EQ(UnixMillis(t), absl::ToUnixMillis(t)) << t;
}

TEST(UnixMs, WholeMillisRoundTrip) {
  for (absl::Time t : Samples()) {
    const bool finite = t != absl::InfiniteFuture() && t != absl::InfinitePast();
    const bool whole = finite && absl::FromUnixMillis(absl::ToUnixMillis(t)) == t;
    EXPECT_EQ(IsWholeUnixMillis(t), whole) << t;
  }
}

TEST(UnixMs, InUnixRangeIsTheComparison) {
  const int64_t kSeconds = int64_t{24} * 3600 * 365 * 10000;
  for (absl::Time t : Samples()) {
    EXPECT_EQ(InUnixRange(t, kSeconds),
              t >= absl::UnixEpoch() && t < absl::UnixEpoch() + absl::Seconds(kSeconds))
        << t;
  }
}

TEST(UnixMs, DoubleSecondsIsAbslToDoubleSeconds) {
  std::vector<absl::Duration> v = {
      absl::ZeroDuration(),
      absl::InfiniteDuration(),
      -absl::InfiniteDuration(),
      absl::Nanoseconds(1),
      absl::Nanoseconds(-1),
      absl::Milliseconds(1500),
      absl::Minutes(15),
      absl::Hours(24 * 5),
      absl::Seconds((int64_t{1} << 21) - 1) + absl::Nanoseconds(999'999'999),
      absl::Seconds(int64_t{1} << 21),
      absl::Seconds(-(int64_t{1} << 21)),
      -absl::Seconds((int64_t{1} << 21) - 1),
      absl::Seconds(int64_t{1} << 40) + absl::Nanoseconds(3)};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    const int64_t s = static_cast<int64_t>(rng() >> (20 + i % 44)) * (i % 3 == 0 ? -1 : 1);
    v.push_back(absl::Seconds(s) + absl::Nanoseconds(static_cast<int64_t>(rng() % 1'000'000'000)));
    v.push_back(absl::Milliseconds(s) / 7);
  }
  for (absl::Duration d : v) {
    const double want = absl::ToDoubleSeconds(d);
    // Bit for bit (EXPECT_EQ on doubles is exact; infinities compare equal).
    EXPECT_EQ(DoubleSeconds(d), want) << d;
  }
}

}  // namespace
}  // namespace mailretry::internal
