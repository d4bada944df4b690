// File: engine/structural_test.cc
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

struct Sim {
  Engine& e;
  std::mt19937_64 rng{12345};
  absl::Time now = kT0;
  void Run(absl::Duration total, absl::Duration step, double fail_rate, const char* fail_reply,
           uint64_t* next_id, int submit_per_step, const std::string& dest) {
    const absl::Time end = now + total;
    std::uniform_real_distribution<double> u(0, 1);
    while (now < end) {
      for (int i = 0; i < submit_per_step; ++i) ASSERT_TRUE(e.Submit((*next_id)++, dest, now).ok());
      for (const Lease& l : Take(e, now)) {
        MustReport(e, l.msg_id, now, u(rng) < fail_rate ? fail_reply : kOk);
      }
      now += step;
    }
  }
};

TEST(Engine, HealthyDestinationWithFivePercentDeferralsIsNeverFlagged) {
  for (const char* noise : {kTempFail, k421Generic, kPtr}) {
    auto e = MakeEngine();
    Sim sim{*e};
    uint64_t id = 1;
    sim.Run(absl::Hours(24 * 6), absl::Minutes(5), 0.05, noise, &id, 3, "healthy.example");
    std::vector<Event> ev = e->DrainEvents();
    SCOPED_TRACE(noise);
    EXPECT_EQ(Count(ev, EventKind::kDestinationWarning), 0);
    EXPECT_EQ(Count(ev, EventKind::kStructuralFailure), 0);
    EXPECT_GT(Count(ev, EventKind::kDeferred), 50);  // the noise was really there
    EXPECT_EQ(e->GetDestination("healthy.example")->health, Health::kHealthy);
    ExpectBalanced(*e);
  }
}

TEST(Engine, RepeatedFourTwentyOnesRaiseAWarning) {
  auto e = MakeEngine();
  Sim sim{*e};
  uint64_t id = 1;
  sim.Run(absl::Hours(2), absl::Minutes(1), 0.9, k421Generic, &id, 2, "flaky.example");
  std::vector<Event> ev = e->DrainEvents();
  ASSERT_EQ(Count(ev, EventKind::kDestinationWarning), 1);
  for (const Event& x : ev) {
    if (x.kind == EventKind::kDestinationWarning) {
      EXPECT_FALSE(x.info().categories.empty());
      EXPECT_THAT(x.info().samples, Not(IsEmpty()));
    }
  }
  EXPECT_EQ(e->GetDestination("flaky.example")->health, Health::kWarning);
}

TEST(Engine, FullRetryCycleWithoutDeliveryIsStructuralThenHeldAndProbed) {
  auto e = MakeEngine();
  const std::string dest = "blocked.example";
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(e->Submit(i, dest, kT0).ok());
  absl::Time now = kT0;
  // Fail everything until the structural event: 6 failures each (waits of
  // 15m, 30m, 1h, 2h, then the capped 4h also failed), about 7.75 h.
  std::vector<OwnedEvent> all;  // kept across drains: owned copies
  for (int round = 0; round < 200 && Count(all, EventKind::kStructuralFailure) == 0; ++round) {
    for (const Lease& l : Take(*e, now)) MustReport(*e, l.msg_id, now, kDnsbl);
    for (const Event& ev : e->DrainEvents()) all.emplace_back(ev);
    now += absl::Minutes(5);
  }
  ASSERT_EQ(Count(all, EventKind::kStructuralFailure), 1);
  const OwnedEvent* sf = nullptr;
  for (const OwnedEvent& x : all) {
    if (x.kind == EventKind::kStructuralFailure) sf = &x;
  }
  EXPECT_EQ(sf->destination, dest);
  ASSERT_FALSE(sf->info.categories.empty());
  EXPECT_EQ(sf->info.categories[0].count, 18u);  // 3 messages × 6 failures
  EXPECT_THAT(sf->info.samples, Not(IsEmpty()));
  EXPECT_EQ(sf->info.categories[0].category, Category::kDnsblListed);
  ASSERT_THAT(sf->info.remediation, Not(IsEmpty()));
  EXPECT_THAT(sf->info.remediation[0], HasSubstr("DNSBL"));
  EXPECT_THAT(sf->info.samples[0], HasSubstr("spamhaus"));
  EXPECT_THAT(sf->detail, HasSubstr("full retry cycle"));
  EXPECT_GE(sf->time, kT0 + absl::Hours(7));  // 15m+30m+1h+2h+... after ~7.75 h
  absl::StatusOr<DestinationInfo> info = e->GetDestination(dest);
  EXPECT_EQ(info->health, Health::kStructural);
  EXPECT_TRUE(info->held);
  // Held: a new message waits; one probe per probe interval (30 min).
  ASSERT_TRUE(e->Submit(50, dest, now).ok());
  EXPECT_THAT(Take(*e, now), IsEmpty());
  const absl::Time probe_at = *info->next_probe;
  std::vector<Lease> probe = Take(*e, probe_at);
  if (probe.empty()) {
    absl::StatusOr<DestinationInfo> i2 = e->GetDestination(dest);
    ADD_FAILURE() << "no probe at " << probe_at << " now=" << now << " ready=" << i2->ready
                  << " inflight=" << i2->in_flight << " susp="
                  << (i2->suspended_until ? absl::FormatTime(*i2->suspended_until) : "none")
                  << " limit=" << i2->concurrency_limit;
  }
  ASSERT_EQ(probe.size(), 1u);
  EXPECT_THAT(Take(*e, probe_at + absl::Minutes(1)), IsEmpty());
  MustReport(*e, probe[0].msg_id, probe_at + absl::Minutes(1), kDnsbl);
  EXPECT_THAT(Take(*e, probe_at + absl::Minutes(29)), IsEmpty());
  std::vector<Lease> probe2 = Take(*e, probe_at + absl::Minutes(31));
  ASSERT_EQ(probe2.size(), 1u);
  MustReport(*e, probe2[0].msg_id, probe_at + absl::Minutes(31), kOk);
  std::vector<Event> ev = e->DrainEvents();
  EXPECT_EQ(Count(ev, EventKind::kStructuralCleared), 1);
  EXPECT_EQ(e->GetDestination(dest)->health, Health::kHealthy);
  EXPECT_FALSE(e->GetDestination(dest)->held);
  ASSERT_TRUE(e->Submit(51, dest, probe_at + absl::Minutes(31)).ok());
  ASSERT_TRUE(e->Submit(52, dest, probe_at + absl::Minutes(31)).ok());
  EXPECT_EQ(Take(*e, probe_at + absl::Minutes(31)).size(),
            2u);  // released: no longer one at a time
  ExpectBalanced(*e);
}

TEST(Engine, UnambiguousEvidenceIsStructuralBeforeAFullCycle) {
  auto e = MakeEngine();
  absl::Time now = kT0;
  uint64_t id = 1;
  std::vector<OwnedEvent> all;  // kept across drains: owned copies
  // 12 new messages an hour, all rejected for PTR, for 3 hours.
  for (int step = 0; step < 36 && Count(all, EventKind::kStructuralFailure) == 0; ++step) {
    ASSERT_TRUE(e->Submit(id++, "strict.example", now).ok());
    for (const Lease& l : Take(*e, now)) MustReport(*e, l.msg_id, now, kPtr);
    for (const Event& ev : e->DrainEvents()) all.emplace_back(ev);
    now += absl::Minutes(5);
  }
  ASSERT_EQ(Count(all, EventKind::kStructuralFailure), 1);
  for (const OwnedEvent& x : all) {
    if (x.kind != EventKind::kStructuralFailure) continue;
    EXPECT_EQ(x.info.categories[0].category, Category::kPtrRdns);
    EXPECT_THAT(x.info.remediation[0], HasSubstr("PTR"));
    // Issue 12: a PTR reply is strong evidence, confirmed by a second attempt
    // at least strong_span (10 min) later with no delivery between; the
    // 20-messages-over-2-hours early rule of 0.1 flagged this at 2-3 h.
    EXPECT_EQ(x.rule, "structural:sender/ptr");
    EXPECT_THAT(x.detail, HasSubstr("sender-side: PTR"));
    EXPECT_GE(x.time, kT0 + absl::Minutes(10));
    EXPECT_LE(x.time, kT0 + absl::Minutes(20));
  }
}

}  // namespace
}  // namespace mailretry
