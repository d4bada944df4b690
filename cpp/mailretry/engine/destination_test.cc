// File: engine/destination_test.cc
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/engine_test_util.h"

namespace mailretry {
namespace {

using namespace ::mailretry::engine_test;  // NOLINT: the shared test vocabulary
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

TEST(Engine, ConcurrencyIsEnforcedCutAndRaisedSlowly) {
  EngineConfig c;
  c.destination_defaults.initial_concurrency = 5;
  c.destination_defaults.max_concurrency = 6;
  c.destination_defaults.raise_concurrency_after = 3;
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 100; ++i) ASSERT_TRUE(e->Submit(i, "example.com", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0);
  ASSERT_EQ(l.size(), 5u);
  EXPECT_THAT(Take(*e, kT0), IsEmpty());
  MustReport(*e, l[0].msg_id, kT0, kTooMany);
  absl::StatusOr<DestinationInfo> info = e->GetDestination("example.com");
  EXPECT_EQ(info->concurrency_limit, 2u);
  EXPECT_EQ(info->in_flight, 4u);
  std::vector<Event> ev = e->DrainEvents();
  ASSERT_EQ(Count(ev, EventKind::kDestinationThrottled), 1);
  for (size_t i = 1; i < 5; ++i) MustReport(*e, l[i].msg_id, kT0, kOk);
  // 4 deliveries with raise_after 3: +1.
  EXPECT_EQ(e->GetDestination("example.com")->concurrency_limit, 3u);
  EXPECT_EQ(Take(*e, kT0).size(), 3u);
  ExpectBalanced(*e);
}

// A cohort of simultaneous refusals is one piece of evidence: Postfix's
// "too many connections" to three connections opened together cuts once
// (5 -> 2), not once per reply (5 -> 2 -> 1).
TEST(Engine, OneCohortOfConnectionRefusalsCutsConcurrencyOnce) {
  EngineConfig c;
  c.destination_defaults.initial_concurrency = 5;
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(e->Submit(i, "capped.example", kT0).ok());
  std::vector<Lease> cohort = Take(*e, kT0, 10);
  ASSERT_EQ(cohort.size(), 5u);
  const absl::Time t1 = kT0 + absl::Seconds(2);
  for (int i = 0; i < 3; ++i) MustReport(*e, cohort[i].msg_id, t1, kTooMany);
  EXPECT_EQ(e->GetDestination("capped.example")->concurrency_limit, 2u);
  std::vector<Event> ev = e->DrainEvents();
  EXPECT_EQ(Count(ev, EventKind::kDestinationThrottled), 1);
  // A refusal of a connection opened after the cut is new evidence.
  for (int i = 3; i < 5; ++i) MustReport(*e, cohort[i].msg_id, t1, kOk);
  std::vector<Lease> next = Take(*e, t1 + absl::Seconds(1), 10);
  ASSERT_FALSE(next.empty());
  MustReport(*e, next[0].msg_id, t1 + absl::Seconds(3), kTooMany);
  EXPECT_EQ(e->GetDestination("capped.example")->concurrency_limit, 1u);
}

TEST(Engine, RaisesStopBelowARefusedLevelForAWhile) {
  EngineConfig c;
  c.destination_defaults.initial_concurrency = 3;
  c.destination_defaults.max_concurrency = 10;
  c.destination_defaults.raise_concurrency_after = 2;
  c.destination_defaults.concurrency_ceiling_hold = absl::Hours(1);
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 100; ++i) ASSERT_TRUE(e->Submit(i, "example.com", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0);
  ASSERT_EQ(l.size(), 3u);
  // Refused at 3 in flight: cut to 1, and 3 is remembered as too many.
  MustReport(*e, l[0].msg_id, kT0, kTooMany);
  MustReport(*e, l[1].msg_id, kT0, kTooMany);  // same cohort: no second cut
  EXPECT_EQ(e->GetDestination("example.com")->concurrency_limit, 1u);
  MustReport(*e, l[2].msg_id, kT0, kOk);
  absl::Time t = kT0;
  auto deliver = [&](int n) {
    for (int i = 0; i < n; ++i) {
      std::vector<Lease> one = Take(*e, t, 1);
      ASSERT_EQ(one.size(), 1u);
      MustReport(*e, one[0].msg_id, t, kOk);
    }
  };
  deliver(1);  // 2 deliveries since the cut: +1
  EXPECT_EQ(e->GetDestination("example.com")->concurrency_limit, 2u);
  deliver(6);  // held at 2, one below the refused level
  EXPECT_EQ(e->GetDestination("example.com")->concurrency_limit, 2u);
  t = kT0 + absl::Minutes(61);  // the memory has expired: probing upward resumes
  deliver(2);
  EXPECT_EQ(e->GetDestination("example.com")->concurrency_limit, 3u);
  ExpectBalanced(*e);
}

TEST(Engine, RateIsEnforcedCutAndRampedBack) {
  EngineConfig c;
  c.destination_defaults.rate = {60, absl::Minutes(1)};  // 1/s
  c.destination_defaults.initial_concurrency = 20;
  c.destination_defaults.suspend_base = absl::Seconds(1);
  c.destination_defaults.rate_quiet_period = absl::Minutes(10);
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 50; ++i) ASSERT_TRUE(e->Submit(i, "example.com", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(e->NextWakeup(), kT0 + absl::Seconds(1));
  EXPECT_THAT(Take(*e, kT0 + absl::Milliseconds(999)), IsEmpty());
  EXPECT_EQ(Take(*e, kT0 + absl::Seconds(1)).size(), 1u);
  MustReport(*e, l[0].msg_id, kT0 + absl::Seconds(1), kRateLimited);
  std::vector<Event> ev = e->DrainEvents();
  EXPECT_EQ(Count(ev, EventKind::kDestinationThrottled), 1);
  EXPECT_EQ(Count(ev, EventKind::kDestinationSuspended), 1);
  EXPECT_NEAR(*e->GetDestination("example.com")->rate_per_second, 0.5, 1e-9);
  // After one quiet period: back to 1/s (the configured ceiling).
  EXPECT_NEAR(*e->GetDestination("example.com")->rate_per_second, 0.5, 1e-9);
  ASSERT_TRUE(e->Advance(kT0 + absl::Minutes(11)).ok());
  EXPECT_NEAR(*e->GetDestination("example.com")->rate_per_second, 1.0, 1e-9);
}

TEST(Engine, OneCohortOfRateLimitRepliesCutsTheRateOnce) {
  EngineConfig c;
  c.destination_defaults.initial_concurrency = 6;
  c.destination_defaults.suspend_base = absl::Seconds(1);
  c.destination_defaults.suspend_probe_interval =
      absl::ZeroDuration();  // a suspension that runs out
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(e->Submit(i, "example.com", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0);
  ASSERT_EQ(l.size(), 6u);
  // Six attempts sent together, all refused: one cut (unlimited -> 1/s), not six.
  for (const Lease& lease : l) MustReport(*e, lease.msg_id, kT0 + absl::Seconds(1), kRateLimited);
  EXPECT_NEAR(*e->GetDestination("example.com")->rate_per_second, 1.0, 1e-9);
  EXPECT_EQ(Count(e->DrainEvents(), EventKind::kDestinationThrottled), 1);
  // An attempt that started after the cut and is still refused cuts again.
  std::vector<Lease> later = Take(*e, kT0 + absl::Seconds(5), 1);
  ASSERT_EQ(later.size(), 1u);
  MustReport(*e, later[0].msg_id, kT0 + absl::Seconds(6), kRateLimited);
  EXPECT_NEAR(*e->GetDestination("example.com")->rate_per_second, 0.5, 1e-9);
  ExpectBalanced(*e);
}

TEST(Engine, UnlimitedRateIsCutThenLiftedAfterQuietPeriods) {
  EngineConfig c;
  c.destination_defaults.rate_quiet_period = absl::Minutes(10);
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  Take(*e, kT0);
  EXPECT_FALSE(e->GetDestination("example.com")->rate_per_second.has_value());
  MustReport(*e, 1, kT0, kRateLimited);
  EXPECT_NEAR(*e->GetDestination("example.com")->rate_per_second, 1.0,
              1e-9);  // unlimited_cut_to 60/min
  ASSERT_TRUE(e->Advance(kT0 + absl::Minutes(20)).ok());
  EXPECT_NEAR(*e->GetDestination("example.com")->rate_per_second, 4.0, 1e-9);
  ASSERT_TRUE(e->Advance(kT0 + absl::Minutes(30)).ok());
  EXPECT_FALSE(e->GetDestination("example.com")->rate_per_second.has_value());
}

// A caller that paces and suspends by itself (the simulator's MTA presets)
// turns both reactions off: suspend_base 0 never suspends, an unlimited
// unlimited_cut_to never cuts an unlimited rate. Before, the smallest values
// allowed (1 ms, 1000/s) still suspended for 1 ms and paced at 1 per ms.
TEST(Engine, SuspendBaseZeroAndUnlimitedCutToTurnTheReactionsOff) {
  EngineConfig c;
  c.destination_defaults.suspend_base = absl::ZeroDuration();
  c.destination_defaults.unlimited_cut_to = RateLimit{};  // unlimited
  c.destination_defaults.capacity_window = 0;              // every capacity reply would suspend
  c.destination_defaults.initial_concurrency = 10;
  c.destination_defaults.max_concurrency = 10;
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(e->Submit(i, "example.com", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0, 4);
  ASSERT_EQ(l.size(), 4u);
  MustReport(*e, l[0].msg_id, kT0, kRateLimited);
  MustReport(*e, l[1].msg_id, kT0, kBusy);
  const absl::StatusOr<DestinationInfo> info = e->GetDestination("example.com");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->suspended_until.has_value());
  EXPECT_FALSE(info->rate_per_second.has_value());
  std::vector<Event> ev = e->DrainEvents();
  EXPECT_EQ(Count(ev, EventKind::kDestinationSuspended), 0);
  EXPECT_EQ(Count(ev, EventKind::kDestinationThrottled), 0);
  // Nothing holds the remaining messages back: all six go at once.
  EXPECT_EQ(Take(*e, kT0).size(), 6u);
  // A negative suspend_base is still an error, and so is an unlimited floor.
  EngineConfig bad = c;
  bad.destination_defaults.suspend_base = absl::Milliseconds(-1);
  EXPECT_FALSE(bad.Validate().ok());
  bad = c;
  bad.destination_defaults.min_rate = RateLimit{};
  EXPECT_FALSE(bad.Validate().ok());
}

// The suspension's own course, without probes and with every capacity reply
// suspending (both are on by default; adaptive_test.cc tests them).
TEST(Engine, SuspensionGrowsWithRepeatsAndResetsAfterSuccess) {
  EngineConfig c;
  c.lease_timeout = absl::Hours(1);
  c.destination_defaults.suspend_probe_interval = absl::ZeroDuration();
  c.destination_defaults.capacity_window = 0;
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(e->Submit(i, "example.com", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0, 3);
  ASSERT_EQ(l.size(), 3u);
  MustReport(*e, l[0].msg_id, kT0, kBusy);
  EXPECT_EQ(e->GetDestination("example.com")->suspended_until, kT0 + absl::Minutes(5));
  // A reply from a message already in flight is not a repeat.
  MustReport(*e, l[1].msg_id, kT0 + absl::Seconds(1), kBusy);
  EXPECT_EQ(e->GetDestination("example.com")->suspended_until, kT0 + absl::Minutes(5));
  EXPECT_THAT(Take(*e, kT0 + absl::Minutes(4)), IsEmpty());
  std::vector<Lease> l2 = Take(*e, kT0 + absl::Minutes(5), 1);
  ASSERT_EQ(l2.size(), 1u);
  std::vector<Event> ev = e->DrainEvents();
  EXPECT_EQ(Count(ev, EventKind::kDestinationSuspended), 1);
  EXPECT_EQ(Count(ev, EventKind::kDestinationResumed), 1);
  MustReport(*e, l2[0].msg_id, kT0 + absl::Minutes(5), kBusy);
  EXPECT_EQ(e->GetDestination("example.com")->suspended_until, kT0 + absl::Minutes(15));  // 10 min
  std::vector<Lease> l3 = Take(*e, kT0 + absl::Minutes(15), 1);
  ASSERT_EQ(l3.size(), 1u);
  MustReport(*e, l3[0].msg_id, kT0 + absl::Minutes(15), kOk);
  MustReport(*e, l[2].msg_id, kT0 + absl::Minutes(15), kOk);
  std::vector<Lease> l4 = Take(*e, kT0 + absl::Minutes(15), 1);
  ASSERT_EQ(l4.size(), 1u);
  MustReport(*e, l4[0].msg_id, kT0 + absl::Minutes(16), kBusy);
  EXPECT_EQ(e->GetDestination("example.com")->suspended_until,
            kT0 + absl::Minutes(21));  // back to 5 min
  ExpectBalanced(*e);
}

// Reactions and user rules share one pattern grammar: ranges, lists and
// wildcards that only user rules accepted in 0.1 work for reactions too.

TEST(Engine, ReactionPatternsTakeRangesListsAndWildcards) {
  EngineConfig c;
  ReactionRule r;
  r.name = "auth-range";
  r.enhanced_pattern = "4.7.26-28,4.7.32";
  r.code_pattern = "421,45x";
  r.suspend_for = absl::Minutes(30);
  c.reactions = {r};
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(e->Submit(i, "range.example", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0, 3);
  ASSERT_EQ(l.size(), 3u);
  // 4.7.25 is outside the range: no suspension (and no built-in one for this text).
  MustReport(*e, l[0].msg_id, kT0, "451 4.7.25 Sender address checks are pending, try again");
  EXPECT_FALSE(e->GetDestination("range.example")->suspended_until.has_value());
  // 4.7.27 is inside the range and 451 matches 45x.
  MustReport(*e, l[1].msg_id, kT0, "451 4.7.27 Sender address checks are pending, try again");
  EXPECT_EQ(e->GetDestination("range.example")->suspended_until, kT0 + absl::Minutes(30));

  for (const char* bad : {"4.7", "4.x.1", "4.7.30-20"}) {
    EngineConfig b;
    ReactionRule x = r;
    x.enhanced_pattern = bad;
    b.reactions = {x};
    EXPECT_EQ(Engine::Create(b).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  for (const char* bad : {"4yy", "42", "600"}) {
    EngineConfig b;
    ReactionRule x = r;
    x.code_pattern = bad;
    b.reactions = {x};
    EXPECT_EQ(Engine::Create(b).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EngineConfig ok;
  ReactionRule y = r;
  y.code_pattern = "5*x";
  y.enhanced_pattern = "5.7.606-649";
  ok.reactions = {y};
  EXPECT_TRUE(Engine::Create(ok).ok());
}

TEST(Engine, ReactionRuleFiresAfterThresholdWithinWindow) {
  EngineConfig c;
  ReactionRule r;
  r.name = "tss04";
  r.text_regex = R"(\[TSS04\])";
  r.destination = "yahoo.com";
  r.threshold = 2;
  r.window = absl::Hours(1);
  r.suspend_for = absl::Hours(2);
  r.set_concurrency = 1;
  r.duration = absl::Hours(3);
  c.reactions = {r};
  c.lease_timeout = absl::Hours(2);
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(e->Submit(i, "yahoo.com", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0, 3);
  ASSERT_EQ(l.size(), 3u);
  ASSERT_TRUE(e->Submit(100, "other.com", kT0).ok());
  MustReport(*e, l[0].msg_id, kT0, kYahoo);
  EXPECT_FALSE(e->GetDestination("yahoo.com")->suspended_until.has_value());
  // A second match after the window has passed does not fire either.
  MustReport(*e, l[1].msg_id, kT0 + absl::Minutes(61), kYahoo);
  EXPECT_FALSE(e->GetDestination("yahoo.com")->suspended_until.has_value());
  MustReport(*e, l[2].msg_id, kT0 + absl::Minutes(62), kYahoo);
  absl::StatusOr<DestinationInfo> info = e->GetDestination("yahoo.com");
  EXPECT_EQ(info->suspended_until, kT0 + absl::Minutes(62) + absl::Hours(2));
  EXPECT_EQ(info->concurrency_limit, 1u);
  std::vector<Event> ev = e->DrainEvents();
  ASSERT_EQ(Count(ev, EventKind::kDestinationSuspended), 1);
  for (const Event& x : ev) {
    if (x.kind == EventKind::kDestinationSuspended) {
      EXPECT_EQ(x.rule, "reaction:tss04");
    }
  }
  // The rule is scoped: other.com is unaffected.
  Take(*e, kT0 + absl::Minutes(62));
  EXPECT_EQ(e->GetDestination("other.com")->attempts, 1u);
  // The concurrency ceiling lapses after `duration`.
  ASSERT_TRUE(e->Advance(kT0 + absl::Minutes(62) + absl::Hours(3)).ok());
  EXPECT_EQ(e->GetDestination("yahoo.com")->concurrency_limit, 5u);
}

// A fake destination that fails a fraction of attempts at random.

TEST(Engine, DestinationInfoReportsStateAndCounters) {
  auto e = MakeEngine();
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(e->Submit(i, "example.com", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0);
  ASSERT_EQ(l.size(), 5u);
  MustReport(*e, l[0].msg_id, kT0, kOk);
  MustReport(*e, l[1].msg_id, kT0, kTempFail);
  MustReport(*e, l[2].msg_id, kT0, kUnknownUser);
  absl::StatusOr<DestinationInfo> d = e->GetDestination("EXAMPLE.com");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->in_flight, 2u);
  EXPECT_EQ(d->ready, 3u);
  EXPECT_EQ(d->scheduled, 1u);
  EXPECT_EQ(d->attempts, 5u);
  EXPECT_EQ(d->delivered, 1u);
  EXPECT_EQ(d->deferred, 1u);
  EXPECT_EQ(d->bounced, 1u);
  EXPECT_EQ(d->last_delivery, kT0);
  EXPECT_THAT(d->last_reply, HasSubstr("User unknown"));
  EXPECT_EQ(d->health, Health::kHealthy);
  EXPECT_EQ(e->GetDestination("example.com", "other-ip").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace mailretry
