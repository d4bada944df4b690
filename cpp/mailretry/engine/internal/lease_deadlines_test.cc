// The lease-deadline FIFO (lease_deadlines.h): it fires when the timer queue
// it replaces would have, leases expire in deadline order, NextWakeup names
// the earliest current deadline exactly, and an infinite lease_timeout keeps
// no deadline at all.
#include "mailretry/engine/internal/lease_deadlines.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"
#include "mailretry/reply/reply.h"
#include "mailretry/timers/timer_queue.h"

namespace mailretry {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// FireMs is the first whole millisecond at which the wheel (and the heaps)
// pop a timer: nothing one millisecond before, the timer at FireMs.
TEST(LeaseDeadlinesTest, FiresWhenTheTimerQueueWould) {
  for (TimerBackend backend : {TimerBackend::kWheel, TimerBackend::kQuadHeap}) {
    for (absl::Duration res : {absl::Milliseconds(1), absl::Milliseconds(7), absl::Seconds(1),
                               absl::Milliseconds(1500), absl::Nanoseconds(333'333)}) {
      internal::LeaseDeadlines fifo;
      fifo.Configure(backend, res);
      const int64_t base = absl::ToUnixMillis(kT0);
      for (int64_t off : {1, 2, 999, 1000, 1001, 1499, 1500, 1501, 123'457}) {
        const int64_t due = base + off;
        const int64_t fire = fifo.FireMs(due);
        EXPECT_GE(fire, due);
        EXPECT_LT(fire, due + absl::ToInt64Milliseconds(res) + 2);
        TimerOptions o;
        o.resolution = res;
        o.start = absl::UnixEpoch();
        std::unique_ptr<TimerQueue> q = MakeTimerQueue(backend, o);
        // The engine's queue has seen `now` (base) before a lease is taken.
        std::vector<Slot> out;
        ASSERT_TRUE(q->PopDue(absl::FromUnixMillis(base), &out).ok());
        ASSERT_TRUE(q->ScheduleUnixMs(1, due).ok());
        ASSERT_TRUE(q->PopDue(absl::FromUnixMillis(fire - 1), &out).ok());
        EXPECT_THAT(out, IsEmpty()) << TimerBackendName(backend) << " " << res << " +" << off;
        ASSERT_TRUE(q->PopDue(absl::FromUnixMillis(fire), &out).ok());
        EXPECT_THAT(out, ElementsAre(1u)) << TimerBackendName(backend) << " " << res << " +" << off;
      }
    }
  }
}

std::unique_ptr<Engine> Make(absl::Duration lease_timeout, absl::Duration resolution) {
  EngineConfig c;
  c.lease_timeout = lease_timeout;
  c.timer_resolution = resolution;
  c.destination_defaults.initial_concurrency = 50;
  c.destination_defaults.max_concurrency = 50;
  return *Engine::Create(std::move(c), 5);
}

// Leases taken at three times, the oldest reported: NextWakeup is the
// earliest unreported deadline (rounded up to the resolution), nothing
// expires a millisecond before it, and at it exactly that lease expires.
TEST(LeaseDeadlinesTest, NextWakeupIsTheEarliestCurrentDeadline) {
  std::unique_ptr<Engine> e = Make(absl::Minutes(10), absl::Seconds(1));
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(e->Submit(id, "a.example", kT0).ok());
  const absl::Time t1 = kT0 + absl::Milliseconds(200);
  const absl::Time t2 = kT0 + absl::Milliseconds(2300);
  std::vector<Lease> a = *e->TakeReady(kT0, 1);
  std::vector<Lease> b = *e->TakeReady(t1, 1);
  std::vector<Lease> c = *e->TakeReady(t2, 1);
  ASSERT_THAT(a, SizeIs(1));
  ASSERT_THAT(b, SizeIs(1));
  ASSERT_THAT(c, SizeIs(1));
  EXPECT_EQ(b[0].deadline, t1 + absl::Minutes(10));
  ASSERT_TRUE(e->ReportText(a[0], t2, "250 2.0.0 ok").ok());
  // b's deadline (kT0 + 10 min + 200 ms) rounded up to the next second.
  const absl::Time want = kT0 + absl::Minutes(10) + absl::Seconds(1);
  EXPECT_EQ(e->NextWakeup(), want);
  ASSERT_TRUE(e->Advance(want - absl::Milliseconds(1)).ok());
  EXPECT_THAT(e->DrainEvents(), SizeIs(1));  // a's delivery only
  EXPECT_EQ(e->Stats().lease_expirations, 0u);
  ASSERT_TRUE(e->Advance(want).ok());
  std::vector<Event> ev = e->DrainEvents();
  ASSERT_THAT(ev, SizeIs(1));
  EXPECT_EQ(ev[0].kind, EventKind::kLeaseExpired);
  EXPECT_EQ(ev[0].msg_id, b[0].msg_id);
  EXPECT_EQ(ev[0].time, b[0].deadline);  // stamped with the deadline, as before
  // b is due again at once; c's deadline is next once b is leased again.
  EXPECT_EQ(e->NextWakeup(), want);
  std::vector<Lease> b2 = *e->TakeReady(want, 1);
  ASSERT_THAT(b2, SizeIs(1));
  EXPECT_EQ(b2[0].msg_id, b[0].msg_id);
  EXPECT_EQ(b2[0].attempt, 2u);
  EXPECT_EQ(e->NextWakeup(), kT0 + absl::Minutes(10) + absl::Seconds(3));  // c: +2.3 s
  // The stale report of b's first lease changes nothing; b2's deadline stands.
  EXPECT_FALSE(e->ReportText(b[0], want, "250 2.0.0 ok").ok());
  ASSERT_TRUE(e->ReportText(c[0], want, "250 2.0.0 ok").ok());
  EXPECT_EQ(e->NextWakeup(), want + absl::Minutes(10));
  EXPECT_TRUE(e->CheckInvariants().ok()) << e->CheckInvariants();
}

// Reports in any order leave stale entries behind; the invariants (one
// current entry per leased message, deadlines in order) hold throughout,
// and a snapshot restores the same deadlines.
TEST(LeaseDeadlinesTest, StaleEntriesAndSnapshotRestore) {
  std::unique_ptr<Engine> e = Make(absl::Minutes(5), absl::Milliseconds(10));
  absl::Time now = kT0;
  for (uint64_t id = 1; id <= 40; ++id) ASSERT_TRUE(e->Submit(id, "b.example", now).ok());
  std::vector<Lease> held;
  for (int step = 0; step < 8; ++step) {
    now += absl::Milliseconds(37);
    absl::StatusOr<std::vector<Lease>> taken = e->TakeReady(now, 5);
    ASSERT_TRUE(taken.ok()) << taken.status();
    held.insert(held.end(), taken->begin(), taken->end());
    // Report every other lease, newest first: entries go stale out of order.
    for (size_t i = held.size(); i-- > 0;) {
      if (i % 2 == 0) continue;
      ASSERT_TRUE(e->ReportText(held[i], now, "451 4.3.0 try later").ok());
      held.erase(held.begin() + static_cast<long>(i));
    }
    ASSERT_TRUE(e->CheckInvariants().ok()) << e->CheckInvariants();
  }
  const std::string path = ::testing::TempDir() + "/lease_fifo.snap";
  ASSERT_TRUE(e->Save(path).ok());
  std::unique_ptr<Engine> r = *Engine::Load(path);
  ASSERT_TRUE(r->CheckInvariants().ok()) << r->CheckInvariants();
  EXPECT_EQ(r->NextWakeup(), e->NextWakeup());
  const absl::Time later = now + absl::Minutes(5) + absl::Seconds(1);
  ASSERT_TRUE(e->Advance(later).ok());
  ASSERT_TRUE(r->Advance(later).ok());
  EXPECT_EQ(e->Stats().lease_expirations, held.size());
  EXPECT_EQ(r->Stats().lease_expirations, held.size());
  std::vector<uint64_t> ea, ra;
  for (const Event& x : e->DrainEvents()) {
    if (x.kind == EventKind::kLeaseExpired) ea.push_back(*x.msg_id);
  }
  for (const Event& x : r->DrainEvents()) {
    if (x.kind == EventKind::kLeaseExpired) ra.push_back(*x.msg_id);
  }
  EXPECT_EQ(ea, ra);
  EXPECT_THAT(ea, SizeIs(held.size()));
}

// lease_timeout = infinite: a lease never expires, and with every message
// leased the engine has nothing to wake up for (but the messages' lifetime
// end is kept by their retries, not by the lease).
TEST(LeaseDeadlinesTest, InfiniteLeaseTimeoutKeepsNoDeadline) {
  std::unique_ptr<Engine> e = Make(absl::InfiniteDuration(), absl::Seconds(1));
  ASSERT_TRUE(e->Submit(1, "c.example", kT0).ok());
  std::vector<Lease> l = *e->TakeReady(kT0, 1);
  ASSERT_THAT(l, SizeIs(1));
  EXPECT_EQ(e->NextWakeup(), std::nullopt);
  ASSERT_TRUE(e->Advance(kT0 + absl::Hours(24 * 365)).ok());
  EXPECT_EQ(e->Stats().lease_expirations, 0u);
  EXPECT_EQ(e->Stats().leased, 1u);
  EXPECT_TRUE(e->CheckInvariants().ok()) << e->CheckInvariants();
  absl::StatusOr<Decision> d = e->ReportText(l[0], kT0 + absl::Hours(24 * 365), "250 2.0.0 ok");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->action, DecisionAction::kDelivered);
  EngineConfig bad;
  bad.lease_timeout = absl::Hours(24 * 31);
  EXPECT_FALSE(bad.Validate().ok());
}

}  // namespace
}  // namespace mailretry
