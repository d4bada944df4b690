#include "mailretry/timers/timer_queue.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/timers/internal/quad_heap.h"
#include "mailretry/timers/internal/timing_wheel.h"

namespace mailretry {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

template <TimerBackend B>
struct Backend {
  static constexpr TimerBackend kBackend = B;
  // The tick each backend rounds to (heaps: 1 ms whatever the option says).
  static absl::Duration Tick(absl::Duration resolution) {
    return B == TimerBackend::kWheel ? resolution : absl::Milliseconds(1);
  }
};

template <typename T>
class TimerQueueTest : public ::testing::Test {
 protected:
  static std::unique_ptr<TimerQueue> Make(absl::Duration resolution = absl::Seconds(1)) {
    TimerOptions o;
    o.start = kT0;
    o.resolution = resolution;
    return MakeTimerQueue(T::kBackend, o);
  }
  static std::vector<Slot> Pop(TimerQueue& q, absl::Time now,
                               size_t max_items = std::numeric_limits<size_t>::max()) {
    std::vector<Slot> out;
    absl::Status s = q.PopDue(now, &out, max_items);
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_TRUE(q.CheckInvariants().ok()) << q.CheckInvariants();
    return out;
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
  EXPECT_THAT(this->Pop(*q, kT0 + absl::Seconds(25)), ElementsAre(2, 3));
  EXPECT_TRUE(q->Contains(1));
  EXPECT_FALSE(q->Contains(2));
  EXPECT_EQ(q->size(), 1u);
}

TYPED_TEST(TimerQueueTest, EqualDueTimesPopInInsertionOrder) {
  auto q = this->Make();
  const absl::Time due = kT0 + absl::Minutes(5);
  for (Slot s : {9u, 3u, 7u, 1u}) ASSERT_TRUE(q->Schedule(s, due).ok());
  // A reschedule to the same time counts as a fresh insertion: 3 goes last.
  ASSERT_TRUE(q->Reschedule(3, due).ok());
  EXPECT_THAT(this->Pop(*q, due), ElementsAre(9, 7, 1, 3));
}

TYPED_TEST(TimerQueueTest, DueInThePastOrExactlyNowIsDueAtNextPop) {
  auto q = this->Make();
  const absl::Time now = kT0 + absl::Hours(1);
  EXPECT_THAT(this->Pop(*q, now), IsEmpty());
  ASSERT_TRUE(q->Schedule(1, now - absl::Hours(2)).ok());  // also before start
  ASSERT_TRUE(q->Schedule(2, now).ok());
  ASSERT_TRUE(q->Schedule(3, now - absl::Seconds(1)).ok());
  ASSERT_TRUE(q->Schedule(4, now + absl::Seconds(1)).ok());
  // Due times at or before now are reported as now and keep insertion order.
  EXPECT_EQ(*q->DueTime(1), now);
  EXPECT_EQ(*q->NextDeadline(), now);
  EXPECT_THAT(this->Pop(*q, now), ElementsAre(1, 2, 3));  // same `now` again
  EXPECT_THAT(this->Pop(*q, now + absl::Seconds(1)), ElementsAre(4));
}

TYPED_TEST(TimerQueueTest, FarFutureBeyondTheWheelRange) {
  auto q = this->Make();
  const absl::Time d30 = kT0 + absl::Hours(24 * 30);
  const absl::Time y1 = kT0 + absl::Hours(24 * 365);
  const absl::Time y10 = kT0 + absl::Hours(24 * 3653);
  ASSERT_TRUE(q->Schedule(1, y10).ok());
  ASSERT_TRUE(q->Schedule(2, d30).ok());
  ASSERT_TRUE(q->Schedule(3, y1).ok());
  ASSERT_TRUE(q->Schedule(4, y1).ok());
  EXPECT_EQ(*q->DueTime(1), y10);
  EXPECT_EQ(*q->NextDeadline(), d30);
  EXPECT_THAT(this->Pop(*q, d30 - absl::Seconds(1)), IsEmpty());
  EXPECT_THAT(this->Pop(*q, d30), ElementsAre(2));
  EXPECT_EQ(*q->NextDeadline(), y1);
  // One jump over years: in due order, FIFO for the equal pair.
  EXPECT_THAT(this->Pop(*q, y10 + absl::Hours(1)), ElementsAre(3, 4, 1));
  EXPECT_EQ(q->NextDeadline(), std::nullopt);
}

TYPED_TEST(TimerQueueTest, InfiniteFutureIsOutOfRangeAndChangesNothing) {
  auto q = this->Make();
  ASSERT_TRUE(q->Schedule(1, kT0 + absl::Seconds(5)).ok());
  EXPECT_EQ(q->Schedule(2, absl::InfiniteFuture()).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(q->Reschedule(1, absl::InfiniteFuture()).code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(q->Contains(2));
  EXPECT_EQ(*q->DueTime(1), kT0 + absl::Seconds(5));
  EXPECT_TRUE(q->CheckInvariants().ok());
}

TYPED_TEST(TimerQueueTest, RescheduleAcrossLevelsEarlierAndLater) {
  auto q = this->Make();
  const absl::Time near = kT0 + absl::Seconds(10);
  const absl::Time mid = kT0 + absl::Hours(5);
  const absl::Time far = kT0 + absl::Hours(24 * 400);
  ASSERT_TRUE(q->Schedule(1, far).ok());
  ASSERT_TRUE(q->Schedule(2, near).ok());
  ASSERT_TRUE(q->Schedule(3, mid).ok());
  ASSERT_TRUE(q->Reschedule(1, near).ok());                     // overflow -> level 0, behind 2
  ASSERT_TRUE(q->Reschedule(2, far).ok());                      // level 0 -> overflow
  ASSERT_TRUE(q->Reschedule(3, near + absl::Seconds(1)).ok());  // level 1 -> level 0
  ASSERT_TRUE(q->CheckInvariants().ok());
  EXPECT_EQ(*q->DueTime(2), far);
  EXPECT_THAT(this->Pop(*q, mid), ElementsAre(1, 3));
  ASSERT_TRUE(q->Reschedule(2, mid + absl::Hours(2)).ok());  // overflow -> level 1
  EXPECT_THAT(this->Pop(*q, mid + absl::Hours(2) - absl::Seconds(1)), IsEmpty());
  EXPECT_THAT(this->Pop(*q, mid + absl::Hours(2)), ElementsAre(2));
}

TYPED_TEST(TimerQueueTest, CancelDuringAPartialDrain) {
  auto q = this->Make();
  for (Slot s = 0; s < 10; ++s) ASSERT_TRUE(q->Schedule(s, kT0 + absl::Seconds(1 + s % 2)).ok());
  const absl::Time now = kT0 + absl::Seconds(2);
  EXPECT_THAT(this->Pop(*q, now, 3), ElementsAre(0, 2, 4));
  // 6 and 1 are due but not popped yet: cancel one, reschedule the other.
  ASSERT_TRUE(q->Cancel(6).ok());
  ASSERT_TRUE(q->Reschedule(1, now).ok());                      // due now, behind everything due
  EXPECT_EQ(q->Cancel(0).code(), absl::StatusCode::kNotFound);  // already popped
  EXPECT_THAT(this->Pop(*q, now, 2), ElementsAre(8, 3));
  EXPECT_THAT(this->Pop(*q, now), ElementsAre(5, 7, 9, 1));
  EXPECT_TRUE(q->empty());
}

TYPED_TEST(TimerQueueTest, MaxItemsZeroPopsNothing) {
  auto q = this->Make();
  ASSERT_TRUE(q->Schedule(1, kT0).ok());
  EXPECT_THAT(this->Pop(*q, kT0 + absl::Hours(1), 0), IsEmpty());
  EXPECT_THAT(this->Pop(*q, kT0 + absl::Hours(1)), ElementsAre(1));
}

TYPED_TEST(TimerQueueTest, ErrorsLeaveStateIntact) {
  auto q = this->Make();
  const absl::Time later = kT0 + absl::Minutes(3);
  ASSERT_TRUE(q->Schedule(5, later).ok());
  EXPECT_EQ(q->Schedule(5, kT0).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(q->Cancel(6).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(q->Cancel(4000000000u).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(q->Reschedule(6, kT0).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(q->DueTime(6).status().code(), absl::StatusCode::kNotFound);
  std::vector<Slot> out;
  ASSERT_TRUE(q->PopDue(kT0 + absl::Minutes(1), &out).ok());
  // Time going backwards.
  EXPECT_EQ(q->PopDue(kT0 + absl::Seconds(59), &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out, IsEmpty());
  EXPECT_EQ(q->size(), 1u);
  EXPECT_EQ(*q->DueTime(5), later);
  EXPECT_TRUE(q->CheckInvariants().ok());
  EXPECT_THAT(this->Pop(*q, later), ElementsAre(5));
  EXPECT_EQ(q->Cancel(5).code(), absl::StatusCode::kNotFound);  // popped
  EXPECT_TRUE(q->Schedule(5, later).ok());                      // and may be scheduled again
}

TYPED_TEST(TimerQueueTest, VeryLargeSlotIdsAreOutOfRangeAboveKMaxSlot) {
  auto q = this->Make();
  EXPECT_EQ(q->Schedule(4000000000u, kT0).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(q->Schedule(kMaxSlot + 1, kT0).code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(q->Contains(4000000000u));
  EXPECT_TRUE(q->empty());
  // A large but valid slot works; per-slot arrays grow to it (16 MiB here).
  const Slot big = Slot{1} << 20;
  ASSERT_TRUE(q->Schedule(big, kT0 + absl::Seconds(1)).ok());
  EXPECT_GE(q->MemoryBytes(), size_t{big} * 4);
  EXPECT_THAT(this->Pop(*q, kT0 + absl::Seconds(1)), ElementsAre(big));
}

TYPED_TEST(TimerQueueTest, NextDeadlineIsTheEarliestDueTimeWithoutCancels) {
  auto q = this->Make();
  EXPECT_EQ(q->NextDeadline(), std::nullopt);
  const std::vector<absl::Duration> offsets = {absl::Hours(50), absl::Seconds(7), absl::Hours(3),
                                               absl::Hours(24 * 300)};
  for (Slot s = 0; s < offsets.size(); ++s) ASSERT_TRUE(q->Schedule(s, kT0 + offsets[s]).ok());
  std::vector<absl::Duration> sorted = offsets;
  std::sort(sorted.begin(), sorted.end());
  absl::Time prev = kT0;
  for (absl::Duration d : sorted) {
    ASSERT_EQ(q->NextDeadline(), kT0 + d);
    // Nothing is due a moment before, and exactly the one timer is due then.
    EXPECT_THAT(this->Pop(*q, std::max(prev, kT0 + d - absl::Milliseconds(1))), IsEmpty());
    EXPECT_EQ(this->Pop(*q, kT0 + d).size(), 1u);
    prev = kT0 + d;
  }
  EXPECT_EQ(q->NextDeadline(), std::nullopt);
}

TYPED_TEST(TimerQueueTest, NextDeadlineIsNeverLateAfterCancels) {
  auto q = this->Make();
  // Both in one level-1 bucket of the wheel (ticks 4096..8191 at 1 s).
  ASSERT_TRUE(q->Schedule(1, kT0 + absl::Hours(2)).ok());
  ASSERT_TRUE(q->Schedule(2, kT0 + absl::Hours(2) + absl::Minutes(10)).ok());
  ASSERT_TRUE(q->Cancel(1).ok());
  const absl::Time truth = kT0 + absl::Hours(2) + absl::Minutes(10);
  std::optional<absl::Time> nd = q->NextDeadline();
  ASSERT_TRUE(nd.has_value());
  EXPECT_LE(*nd, truth);
  // Popping at the reported deadline makes progress: either the timer pops or
  // the deadline becomes exact.
  std::vector<Slot> got = this->Pop(*q, *nd);
  if (got.empty()) {
    EXPECT_EQ(q->NextDeadline(), truth);
    EXPECT_THAT(this->Pop(*q, truth), ElementsAre(2));
  } else {
    EXPECT_EQ(*nd, truth);
    EXPECT_THAT(got, ElementsAre(2));
  }
}

TYPED_TEST(TimerQueueTest, NeverEarlyAtMostOneTickLateWithOddResolution) {
  const absl::Duration res = absl::Milliseconds(700);
  const absl::Duration tick = TypeParam::Tick(res);
  auto q = this->Make(res);
  std::mt19937_64 rng(7);
  std::vector<absl::Time> due(500);
  for (Slot s = 0; s < due.size(); ++s) {
    due[s] = kT0 + absl::Microseconds(static_cast<int64_t>(rng() % 3600000000));
    ASSERT_TRUE(q->Schedule(s, due[s]).ok());
    absl::Time rounded = *q->DueTime(s);
    EXPECT_GE(rounded, due[s]);
    EXPECT_LT(rounded, due[s] + tick);
  }
  absl::Time now = kT0;
  size_t seen = 0;
  while (seen < due.size()) {
    absl::Time next = now + absl::Milliseconds(static_cast<int64_t>(1 + rng() % 900));
    for (Slot s : this->Pop(*q, next)) {
      ++seen;
      EXPECT_LE(due[s], next) << "early: slot " << s;
      // It was not yet due at the previous pop unless that was within a tick.
      EXPECT_GT(due[s] + tick, now) << "late: slot " << s;
    }
    now = next;
  }
}

TYPED_TEST(TimerQueueTest, NonPositiveResolutionFallsBackToOneSecond) {
  auto q = this->Make(absl::ZeroDuration());
  ASSERT_TRUE(q->Schedule(1, kT0 + absl::Milliseconds(1500)).ok());
  EXPECT_EQ(*q->DueTime(1),
            kT0 + absl::Milliseconds(TypeParam::kBackend == TimerBackend::kWheel ? 2000 : 1500));
}

// ---------------------------------------------------------------------------
// Differential test against a std::multimap model that implements the contract
// directly: effective tick = ceil((due - start) / tick), or now's tick for a due
// time at or before now; pop order (tick, insertion seq).

class Model {
 public:
  Model(absl::Time start, absl::Duration tick) : start_(start), tick_(tick), now_(start) {}

  int64_t FloorTick(absl::Time t) const {
    absl::Duration exact_zero;
    return absl::IDivDuration(absl::Floor(t - start_, tick_), tick_, &exact_zero);
  }
  int64_t EffectiveTick(absl::Time due) const {
    if (due <= now_) return FloorTick(now_);
    absl::Duration exact_zero;
    return absl::IDivDuration(absl::Ceil(due - start_, tick_), tick_, &exact_zero);
  }
  absl::Time TickTime(int64_t t) const { return start_ + tick_ * t; }

  absl::StatusCode Schedule(Slot s, absl::Time due) {
    if (s > kMaxSlot) return absl::StatusCode::kOutOfRange;
    if (where_.count(s)) return absl::StatusCode::kAlreadyExists;
    Insert(s, due);
    return absl::StatusCode::kOk;
  }
  absl::StatusCode Cancel(Slot s) {
    auto it = where_.find(s);
    if (it == where_.end()) return absl::StatusCode::kNotFound;
    order_.erase(it->second);
    where_.erase(it);
    return absl::StatusCode::kOk;
  }
  absl::StatusCode Reschedule(Slot s, absl::Time due) {
    if (Cancel(s) != absl::StatusCode::kOk) return absl::StatusCode::kNotFound;
    Insert(s, due);
    return absl::StatusCode::kOk;
  }
  absl::StatusCode PopDue(absl::Time now, std::vector<Slot>* out, size_t max_items) {
    if (now < now_) return absl::StatusCode::kInvalidArgument;
    now_ = now;
    const int64_t limit = FloorTick(now);
    while (max_items-- > 0 && !order_.empty() && order_.begin()->first.first <= limit) {
      out->push_back(order_.begin()->second);
      where_.erase(order_.begin()->second);
      order_.erase(order_.begin());
    }
    return absl::StatusCode::kOk;
  }
  std::optional<absl::Time> NextDeadline() const {
    if (order_.empty()) return std::nullopt;
    return TickTime(order_.begin()->first.first);
  }
  std::optional<absl::Time> DueTime(Slot s) const {
    auto it = where_.find(s);
    if (it == where_.end()) return std::nullopt;
    return TickTime(it->second->first.first);
  }
  size_t size() const { return where_.size(); }
  absl::Time now() const { return now_; }

 private:
  using Order = std::multimap<std::pair<int64_t, uint64_t>, Slot>;
  void Insert(Slot s, absl::Time due) {
    where_[s] = order_.emplace(std::make_pair(EffectiveTick(due), seq_++), s);
  }
  absl::Time start_;
  absl::Duration tick_;
  absl::Time now_;
  uint64_t seq_ = 0;
  Order order_;
  std::map<Slot, Order::iterator> where_;
};

// Release: ~2M ops over all backends in about 6 s, CheckInvariants() after
// every one; the wheel's check sweeps its 8192 bucket headers (~12 us), so it
// gets fewer steps than the heaps. Debug (the ASan+UBSan CI job): a twentieth.
#ifdef NDEBUG
constexpr int kStepScale = 20;
#else
constexpr int kStepScale = 1;
#endif
constexpr int kWheelSteps = 7500 * kStepScale;
constexpr int kHeapSteps = 50000 * kStepScale;

absl::Duration RandomOffset(std::mt19937_64& rng) {
  auto uniform = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
  };
  switch (rng() % 10) {
    case 0:
      return -absl::Milliseconds(uniform(0, 86400000));  // past
    case 1:
      return absl::ZeroDuration();  // exactly now
    case 2:
      return absl::Microseconds(uniform(1, 999999));  // sub-second
    case 3:
    case 4:
      return absl::Milliseconds(uniform(1, 120000));  // seconds
    case 5:
    case 6:
      return absl::Seconds(uniform(60, 6 * 3600));  // minutes to hours
    case 7:
    case 8:
      return absl::Seconds(uniform(3600, 10 * 86400));  // hours to days
    default:
      return absl::Seconds(uniform(30 * 86400, 3653 * 86400));  // months to 10 years
  }
}

absl::Duration RandomStep(std::mt19937_64& rng) {
  switch (rng() % 8) {
    case 0:
      return absl::ZeroDuration();
    case 1:
    case 2:
      return absl::Milliseconds(static_cast<int64_t>(rng() % 1000));  // sub-second
    case 3:
      return absl::Seconds(1);
    case 4:
      return absl::Seconds(static_cast<int64_t>(rng() % 600));  // minutes
    case 5:
      return absl::Seconds(static_cast<int64_t>(rng() % (6 * 3600)));  // hours
    case 6:
      return absl::Seconds(static_cast<int64_t>(rng() % (3 * 86400)));  // days
    default:
      return absl::Seconds(static_cast<int64_t>(rng() % (400 * 86400)));  // months
  }
}

void RunDifferential(TimerBackend backend, absl::Duration resolution, absl::Duration tick,
                     uint64_t seed, int steps) {
  SCOPED_TRACE(absl::StrCat(std::string(TimerBackendName(backend)), " resolution ",
                            absl::FormatDuration(resolution), " seed ", seed));
  std::mt19937_64 rng(seed);
  TimerOptions options;
  options.start = kT0;
  options.resolution = resolution;
  std::unique_ptr<TimerQueue> q;
  std::optional<Model> model;
  // Slot-space sizes vary per episode: small ones force reuse and collisions
  // in one bucket, larger ones keep hundreds pending.
  uint32_t slots = 0;
  size_t popped = 0;
  for (int step = 0; step < steps; ++step) {
    if (step % 5000 == 0) {
      q = MakeTimerQueue(backend, options);
      model.emplace(kT0, tick);
      slots = std::array<uint32_t, 4>{8, 64, 256, 1024}[rng() % 4];
    }
    const Slot slot = rng() % 50 == 0 ? kMaxSlot + 1 + static_cast<Slot>(rng() % 1000)
                                      : static_cast<Slot>(rng() % slots);
    std::string what;
    const uint64_t op = rng() % 100;
    if (op < 35) {
      absl::Time due = model->now() + RandomOffset(rng);
      what = absl::StrCat("Schedule(", slot, ", ", absl::FormatTime(due), ")");
      ASSERT_EQ(q->Schedule(slot, due).code(), model->Schedule(slot, due)) << step << " " << what;
    } else if (op < 45) {
      what = absl::StrCat("Cancel(", slot, ")");
      ASSERT_EQ(q->Cancel(slot).code(), model->Cancel(slot)) << step << " " << what;
    } else if (op < 70) {
      absl::Time due = model->now() + RandomOffset(rng);
      what = absl::StrCat("Reschedule(", slot, ", ", absl::FormatTime(due), ")");
      ASSERT_EQ(q->Reschedule(slot, due).code(), model->Reschedule(slot, due))
          << step << " " << what;
    } else {
      absl::Time now = model->now() + RandomStep(rng);
      if (rng() % 20 == 0) now = model->now() - absl::Milliseconds(1);  // backwards
      size_t max_items = rng() % 4 == 0 ? rng() % 4 : std::numeric_limits<size_t>::max();
      what = absl::StrCat("PopDue(", absl::FormatTime(now), ", ", max_items, ")");
      std::vector<Slot> got, want;
      ASSERT_EQ(q->PopDue(now, &got, max_items).code(), model->PopDue(now, &want, max_items))
          << step << " " << what;
      ASSERT_EQ(got, want) << step << " " << what;
      popped += got.size();
    }
    absl::Status inv = q->CheckInvariants();
    ASSERT_TRUE(inv.ok()) << step << " after " << what << ": " << inv;
    ASSERT_EQ(q->size(), model->size()) << step << " after " << what;
    const Slot probe = static_cast<Slot>(rng() % slots);
    std::optional<absl::Time> want_due = model->DueTime(probe);
    ASSERT_EQ(q->Contains(probe), want_due.has_value()) << step;
    if (want_due) {
      ASSERT_EQ(*q->DueTime(probe), *want_due) << step << " slot " << probe;
    }
    std::optional<absl::Time> nd = q->NextDeadline(), want_nd = model->NextDeadline();
    ASSERT_EQ(nd.has_value(), want_nd.has_value()) << step;
    if (nd) {
      if (backend == TimerBackend::kWheel) {
        ASSERT_LE(*nd, *want_nd) << step << " NextDeadline late";  // see timing_wheel.h
      } else {
        ASSERT_EQ(*nd, *want_nd) << step;
      }
    }
  }
  // Guards the generator itself: a run that pops little compares little.
  EXPECT_GT(popped, static_cast<size_t>(steps) / 10);
}

TEST(TimerQueueDifferential, WheelOneSecond) {
  RunDifferential(TimerBackend::kWheel, absl::Seconds(1), absl::Seconds(1), 1, kWheelSteps);
}
TEST(TimerQueueDifferential, WheelTenMilliseconds) {
  // Range 2^24 ticks = 46 h: days-away timers go through overflow and migrate.
  RunDifferential(TimerBackend::kWheel, absl::Milliseconds(10), absl::Milliseconds(10), 2,
                  kWheelSteps);
}
TEST(TimerQueueDifferential, WheelOddResolution) {
  RunDifferential(TimerBackend::kWheel, absl::Milliseconds(1300), absl::Milliseconds(1300), 3,
                  kWheelSteps / 2);
}
TEST(TimerQueueDifferential, QuadHeap) {
  RunDifferential(TimerBackend::kQuadHeap, absl::Seconds(1), absl::Milliseconds(1), 4, kHeapSteps);
}
TEST(TimerQueueDifferential, BoostHeap) {
  RunDifferential(TimerBackend::kBoostHeap, absl::Seconds(1), absl::Milliseconds(1), 5,
                  kHeapSteps / 2);
}

// ---------------------------------------------------------------------------
// Backend-specific paths the contract tests cannot reach.

TEST(QuadHeap, SequenceWraparoundKeepsFifo) {
  internal::QuadHeap q(TimerOptions{absl::Seconds(1), kT0});
  q.SetNextSeqForTesting(std::numeric_limits<uint32_t>::max() - 3);
  const absl::Time due = kT0 + absl::Seconds(10);
  for (Slot s = 0; s < 8; ++s) ASSERT_TRUE(q.Schedule(s, due + absl::Seconds(s % 2)).ok());
  ASSERT_TRUE(q.CheckInvariants().ok()) << q.CheckInvariants();
  std::vector<Slot> out;
  ASSERT_TRUE(q.PopDue(due + absl::Seconds(1), &out).ok());
  EXPECT_THAT(out, ElementsAre(0, 2, 4, 6, 1, 3, 5, 7));
}

TEST(TimingWheel, CancelsCompactAndFreeBuckets) {
  internal::TimingWheel q(TimerOptions{absl::Seconds(1), kT0});
  const absl::Time due = kT0 + absl::Hours(3);  // one level-1 bucket
  for (Slot s = 0; s < 1000; ++s) ASSERT_TRUE(q.Schedule(s, due).ok());
  const size_t full = q.MemoryBytes();
  for (Slot s = 0; s < 1000; s += 3) ASSERT_TRUE(q.Cancel(s).ok());  // tombstones
  ASSERT_TRUE(q.CheckInvariants().ok()) << q.CheckInvariants();
  for (Slot s = 0; s < 1000; ++s) {
    if (s % 3 == 1) {
      ASSERT_TRUE(q.Cancel(s).ok());  // triggers compaction
    }
  }
  ASSERT_TRUE(q.CheckInvariants().ok()) << q.CheckInvariants();
  std::vector<Slot> out;
  ASSERT_TRUE(q.PopDue(due, &out).ok());
  ASSERT_EQ(out.size(), 333u);
  for (size_t k = 0; k < out.size(); ++k) EXPECT_EQ(out[k], 3 * k + 2);
  EXPECT_LT(q.MemoryBytes(), full);  // the cascaded level-1 bucket gave its memory back
}

// Cancel and Reschedule leave the old bucket entry in place; it must never
// fire, even when the slot comes back at the same position of another bucket
// or later in the same bucket (the record's position then matches a stale
// entry's only in the wrong bucket).
TEST(TimingWheel, StaleEntriesNeverFire) {
  internal::TimingWheel q(TimerOptions{absl::Seconds(1), kT0});
  const absl::Time soon = kT0 + absl::Seconds(5);  // level 0
  const absl::Time later = kT0 + absl::Hours(3);   // level 1
  // Slot 0 at position 0 of a level-1 bucket, then at position 0 of a level-0
  // bucket; slot 1 at position 1 of the level-1 bucket.
  ASSERT_TRUE(q.Schedule(0, later).ok());
  ASSERT_TRUE(q.Schedule(1, later).ok());
  ASSERT_TRUE(q.Reschedule(0, soon).ok());
  // Slot 2 goes round the same level-1 bucket twice: its live entry is last.
  ASSERT_TRUE(q.Schedule(2, later).ok());
  ASSERT_TRUE(q.Cancel(2).ok());
  ASSERT_TRUE(q.Schedule(2, later).ok());
  // Slot 3 is cancelled from level 0 and comes back at the same tick.
  ASSERT_TRUE(q.Schedule(3, soon).ok());
  ASSERT_TRUE(q.Cancel(3).ok());
  ASSERT_TRUE(q.Schedule(3, soon).ok());
  ASSERT_TRUE(q.CheckInvariants().ok()) << q.CheckInvariants();
  std::vector<Slot> out;
  ASSERT_TRUE(q.PopDue(soon, &out).ok());
  EXPECT_THAT(out, ElementsAre(0, 3));
  out.clear();
  // Slot 0 returns to the level-1 bucket, behind its own stale entry.
  ASSERT_TRUE(q.Schedule(0, later).ok());
  ASSERT_TRUE(q.CheckInvariants().ok()) << q.CheckInvariants();
  ASSERT_TRUE(q.PopDue(later, &out).ok());
  EXPECT_THAT(out, ElementsAre(1, 2, 0));
  EXPECT_TRUE(q.empty());
  ASSERT_TRUE(q.CheckInvariants().ok()) << q.CheckInvariants();
}

}  // namespace
}  // namespace mailretry
