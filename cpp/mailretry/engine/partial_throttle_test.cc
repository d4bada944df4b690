// File: engine/partial_throttle_test.cc
// Chronic partial throttling (DestinationPolicy::partial_throttle_window): a
// path whose standing gets a share of its attempts refused all day keeps its
// rate and is not suspended, while a block still is.
#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/engine_test_util.h"

namespace mailretry {
namespace {

using namespace ::mailretry::engine_test;  // NOLINT: the shared test vocabulary

struct PartialRun {
  int suspended_late = 0;   // destination_suspended after the first 2 h
  int rate_cuts_late = 0;   // destination_throttled after the first 2 h
  int quick_retries = 0;    // refusals after 2 h retried at 5 min (partial-throttle schedule)
  int refused_late = 0;     // refusals after 2 h
  int suspended_block = 0;  // destination_suspended once every attempt is refused
};

// One message every 30 s to one destination for 4 h; every third attempt is
// refused with a reputation deferral, the rest are delivered. Then, for an
// hour, every attempt is refused (a block).
PartialRun RunPartial(bool window) {
  EngineConfig c;
  c.destination_defaults.partial_throttle_window = window;
  auto e = MakeEngine(c);
  PartialRun out;
  uint64_t next_id = 0;
  uint64_t answered = 0;
  const absl::Time block_start = kT0 + absl::Hours(4);
  for (absl::Time now = kT0; now < block_start + absl::Hours(1); now += absl::Seconds(10)) {
    if (now < block_start && (now - kT0) / absl::Seconds(30) >= static_cast<double>(next_id)) {
      EXPECT_TRUE(e->Submit(next_id++, "outlook.example", now).ok());
    }
    const bool late = now >= kT0 + absl::Hours(2);
    for (const Lease& l : Take(*e, now)) {
      const bool refuse = now >= block_start || ++answered % 3 == 0;
      const Decision d = MustReport(*e, l.msg_id, now, refuse ? kYahoo : kOk);
      if (refuse && late && now < block_start) {
        ++out.refused_late;
        if (d.schedule == "builtin:partial-throttle" && d.next_attempt &&
            *d.next_attempt == now + absl::Minutes(5)) {
          ++out.quick_retries;
        }
      }
    }
    for (const Event& ev : e->DrainEvents()) {
      if (ev.time >= block_start) {
        if (ev.kind == EventKind::kDestinationSuspended) ++out.suspended_block;
      } else if (ev.time >= kT0 + absl::Hours(2)) {
        if (ev.kind == EventKind::kDestinationSuspended) ++out.suspended_late;
        if (ev.kind == EventKind::kDestinationThrottled) ++out.rate_cuts_late;
      }
    }
  }
  ExpectBalanced(*e);
  return out;
}

TEST(PartialThrottle, AChronicPartialThrottleNeitherSuspendsNorCutsTheRate) {
  const PartialRun on = RunPartial(true);
  EXPECT_GT(on.refused_late, 50);
  EXPECT_EQ(on.suspended_late, 0);
  EXPECT_EQ(on.rate_cuts_late, 0);
  // Each refused message retries at 5 min, twice without burning its backoff.
  EXPECT_GE(on.quick_retries, on.refused_late / 2);
}

TEST(PartialThrottle, WithoutTheWindowEveryThrottleReplySuspends) {
  // The behaviour the window replaces (and the test's control): the same
  // traffic suspends the destination over and over (its rate sits at the
  // floor by then, so no further cut is reported).
  const PartialRun off = RunPartial(false);
  EXPECT_GT(off.suspended_late, 5);
  EXPECT_EQ(off.quick_retries, 0);
}

TEST(PartialThrottle, ABlockAfterAPartialSpellStillSuspends) {
  // A run of refusals (three in four of the last 64 attempts or more) ends
  // the spell: the full reaction applies again.
  EXPECT_GT(RunPartial(true).suspended_block, 0);
}

}  // namespace
}  // namespace mailretry
