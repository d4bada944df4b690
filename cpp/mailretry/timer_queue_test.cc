#include "mailretry/timer_queue.h"

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mailretry {
namespace {

using ::testing::ElementsAre;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

template <TimerBackend B>
struct Backend {
  static constexpr TimerBackend kBackend = B;
};

template <typename T>
class TimerQueueTest : public ::testing::Test {
 protected:
  std::unique_ptr<TimerQueue> Make(absl::Duration resolution = absl::Seconds(1)) {
    TimerOptions o;
    o.start = kT0;
    o.resolution = resolution;
    return MakeTimerQueue(T::kBackend, o);
  }
};

using Backends = ::testing::Types<Backend<TimerBackend::kWheel>, Backend<TimerBackend::kQuadHeap>,
                                  Backend<TimerBackend::kBoostHeap>>;
TYPED_TEST_SUITE(TimerQueueTest, Backends);

TYPED_TEST(TimerQueueTest, PopsInDueOrder) {
  auto q = this->Make();
  ASSERT_TRUE(q->Schedule(1, kT0 + absl::Seconds(30)).ok());
  ASSERT_TRUE(q->Schedule(2, kT0 + absl::Seconds(10)).ok());
  ASSERT_TRUE(q->Schedule(3, kT0 + absl::Seconds(20)).ok());
  EXPECT_EQ(q->size(), 3u);
  std::vector<Slot> out;
  ASSERT_TRUE(q->PopDue(kT0 + absl::Seconds(25), &out).ok());
  EXPECT_THAT(out, ElementsAre(2, 3));
  EXPECT_TRUE(q->Contains(1));
  EXPECT_FALSE(q->Contains(2));
  EXPECT_TRUE(q->CheckInvariants().ok());
}

TEST(TimerBackendName, RoundTrips) {
  for (TimerBackend b : {TimerBackend::kWheel, TimerBackend::kBoostHeap, TimerBackend::kQuadHeap}) {
    absl::StatusOr<TimerBackend> parsed = ParseTimerBackend(TimerBackendName(b));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, b);
  }
  EXPECT_EQ(ParseTimerBackend("fibonacci").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mailretry
