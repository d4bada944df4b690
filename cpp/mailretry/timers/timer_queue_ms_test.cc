// ScheduleUnixMs / RescheduleUnixMs, the engine's entry points into a
// TimerQueue: they must round exactly as Schedule / Reschedule with
// absl::FromUnixMillis, on every backend.
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mailretry/timers/timer_queue.h"

namespace mailretry {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

// Due times before, at and after a `now` that is not a whole millisecond,
// across tick boundaries, at several resolutions.
TEST(TimerQueueUnixMs, EntryPointsMatchTimeOnes) {
  for (TimerBackend backend :
       {TimerBackend::kWheel, TimerBackend::kQuadHeap, TimerBackend::kBoostHeap}) {
    for (absl::Duration res : {absl::Seconds(1), absl::Milliseconds(100), absl::Milliseconds(7),
                               absl::Milliseconds(1), absl::Microseconds(300)}) {
      SCOPED_TRACE(testing::Message() << TimerBackendName(backend) << " resolution " << res);
      TimerOptions o;
      o.start = kT0;
      o.resolution = res;
      std::unique_ptr<TimerQueue> a = MakeTimerQueue(backend, o);
      std::unique_ptr<TimerQueue> b = MakeTimerQueue(backend, o);
      std::mt19937_64 rng(11);
      const int64_t t0 = absl::ToUnixMillis(kT0);
      const absl::Time now = kT0 + absl::Milliseconds(2500) + absl::Microseconds(250);
      std::vector<Slot> out;
      ASSERT_TRUE(a->PopDue(now, &out).ok());
      ASSERT_TRUE(b->PopDue(now, &out).ok());
      std::uniform_int_distribution<int64_t> off(-5'000, 20'000'000);
      for (Slot s = 0; s < 400; ++s) {
        const int64_t due = t0 + (s < 20 ? 2490 + s : off(rng));
        ASSERT_TRUE(a->Schedule(s, absl::FromUnixMillis(due)).ok());
        ASSERT_TRUE(b->ScheduleUnixMs(s, due).ok());
        ASSERT_EQ(*a->DueTime(s), *b->DueTime(s)) << "due " << due;
      }
      for (Slot s = 0; s < 400; s += 3) {
        const int64_t due = t0 + off(rng);
        ASSERT_TRUE(a->Reschedule(s, absl::FromUnixMillis(due)).ok());
        ASSERT_TRUE(b->RescheduleUnixMs(s, due).ok());
        ASSERT_EQ(*a->DueTime(s), *b->DueTime(s)) << "due " << due;
      }
      EXPECT_TRUE(absl::IsAlreadyExists(b->ScheduleUnixMs(0, t0)));
      EXPECT_TRUE(absl::IsNotFound(b->RescheduleUnixMs(1000, t0)));
      std::vector<Slot> pa, pb;
      ASSERT_TRUE(a->PopDue(kT0 + absl::Hours(6), &pa).ok());
      ASSERT_TRUE(b->PopDue(kT0 + absl::Hours(6), &pb).ok());
      EXPECT_EQ(pa, pb);
      EXPECT_TRUE(b->CheckInvariants().ok()) << b->CheckInvariants();
    }
  }
}

}  // namespace
}  // namespace mailretry
