// File: engine/randomized_test.cc
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
#include "absl/strings/str_join.h"
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

TEST(Engine, RandomizedRunNeverLosesAMessage) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    auto e = MakeEngine(RandomizedConfig(), seed);
    Driver drv(seed);
    for (int i = 0; i < 3000; ++i) {
      drv.Step(*e, /*check=*/true);
      if (::testing::Test::HasFatalFailure() || ::testing::Test::HasNonfatalFailure()) {
        FAIL() << "seed " << seed << " step " << i;
      }
    }
    EngineStats s = e->Stats();
    EXPECT_GT(s.delivered, 100u);
    EXPECT_GT(s.deferred, 10u);
    EXPECT_GT(s.bounced, 0u);
  }
}

TEST(Engine, SameSeedAndInputsGiveTheSameEvents) {
  auto a = MakeEngine(RandomizedConfig(), 77);
  auto b = MakeEngine(RandomizedConfig(), 77);
  Driver da(5), db(5);
  for (int i = 0; i < 1500; ++i) {
    da.Step(*a, false);
    db.Step(*b, false);
  }
  ASSERT_GT(da.rendered.size(), 200u);
  EXPECT_EQ(da.rendered, db.rendered);
  // A different engine seed changes the jittered schedule.
  auto c = MakeEngine(RandomizedConfig(), 78);
  Driver dc(5);
  for (int i = 0; i < 1500; ++i) dc.Step(*c, false);
  EXPECT_NE(da.rendered, dc.rendered);
}

// Every field of an event, lists included (Render leaves those out).
std::string RenderAll(const Event& e) {
  std::string s = Render(e);
  const DestinationEventInfo& info = e.info();
  absl::StrAppend(&s, " limit=", info.concurrency_limit,
                  " rate=", info.rate_per_second ? absl::StrCat(*info.rate_per_second) : "-",
                  " cats=");
  for (const CategoryCount& c : info.categories)
    absl::StrAppend(&s, std::string(CategoryName(c.category)), ":", c.count, ",");
  absl::StrAppend(&s, " samples=", absl::StrJoin(info.samples, "|"),
                  " remediation=", absl::StrJoin(info.remediation, "|"));
  return s;
}

// DrainEvents(vector&) hands the previous drain's vector back to the engine,
// whose text arena is reused too: the events must equal freshly built ones,
// with nothing left over from the event that used the storage before (a
// bounce's rule and detail on a later delivery, a warning's samples...).
TEST(Engine, RecycledEventsEqualFreshOnes) {
  for (uint64_t seed : {3u, 4u}) {
    EngineConfig c = RandomizedConfig();
    c.max_buffered_events = 7;  // also drops the oldest, on both paths
    auto a = MakeEngine(c, seed);
    auto b = MakeEngine(c, seed);
    Driver fresh(seed), reused(seed);
    reused.recycle = true;
    std::vector<std::string> all_fresh, all_reused;
    int with_lists = 0;
    fresh.on_event = [&](const Event& e) {
      all_fresh.push_back(RenderAll(e));
      if (!e.info().categories.empty() || !e.info().samples.empty()) ++with_lists;
    };
    reused.on_event = [&](const Event& e) { all_reused.push_back(RenderAll(e)); };
    for (int i = 0; i < 3000; ++i) {
      fresh.Step(*a, false);
      reused.Step(*b, false);
    }
    ASSERT_GT(all_fresh.size(), 500u);
    EXPECT_EQ(all_fresh, all_reused);
    EXPECT_EQ(a->Stats().events_dropped, b->Stats().events_dropped);
    // Events with lists (warnings, structural) came between plain ones.
    EXPECT_GT(with_lists, 0);
    EXPECT_LT(with_lists, static_cast<int>(all_fresh.size()));
  }
}

TEST(Engine, ConcurrencyLimitMatchesTheDestinationInfo) {
  EngineConfig c;
  c.destination_defaults.initial_concurrency = 3;
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(1, "Mx.Example", kT0).ok());
  ASSERT_TRUE(e->Submit(2, "mx.example", kT0, "ip1").ok());
  for (const Lease& l : Take(*e, kT0)) MustReport(*e, l.msg_id, kT0, kTooMany);
  for (const auto& [dest, src] : std::vector<std::pair<std::string, std::string>>{
           {"mx.example", ""}, {"MX.EXAMPLE.", ""}, {"mx.example", "ip1"}}) {
    absl::StatusOr<DestinationInfo> info = e->GetDestination(dest, src);
    ASSERT_TRUE(info.ok()) << info.status();
    absl::StatusOr<uint32_t> limit = e->ConcurrencyLimit(dest, src);
    ASSERT_TRUE(limit.ok()) << limit.status();
    EXPECT_EQ(*limit, info->concurrency_limit) << dest << "/" << src;
  }
  // A 421 "too many connections" cut the limit below the initial 3.
  EXPECT_LT(*e->ConcurrencyLimit("mx.example"), 3u);
  EXPECT_EQ(e->ConcurrencyLimit("other.example").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e->ConcurrencyLimit("mx.example", "ip2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e->ConcurrencyLimit("bad name!").status().code(),
            e->GetDestination("bad name!").status().code());
}

// A pool that caches ConcurrencyLimit answers and re-reads them only when
// LimitsGeneration changes must never hold a stale limit: whatever changed a
// limit (a 421 cut, a raise after deliveries, a probe's ramp, a rule's
// override starting or running out with time) changed the generation too.
TEST(Engine, LimitsGenerationChangesWheneverALimitDoes) {
  for (uint64_t seed : {11u, 12u, 13u}) {
    EngineConfig c = RandomizedConfig();
    c.destination_defaults.initial_concurrency = 4;
    c.destination_defaults.max_concurrency = 8;
    c.destination_defaults.raise_concurrency_after = 2;
    ReactionRule cap;
    cap.name = "temp-cap";
    cap.text_regex = "temporary failure";
    cap.set_concurrency = 1;
    cap.duration = absl::Minutes(10);
    c.reactions.push_back(cap);
    auto e = MakeEngine(c, seed);
    Driver drv(seed);
    std::map<std::pair<std::string, std::string>, uint32_t> cached;
    uint64_t gen = e->LimitsGeneration();
    int changes = 0, rises = 0, drops = 0;
    for (int i = 0; i < 3000; ++i) {
      drv.Step(*e, /*check=*/false);
      const uint64_t g = e->LimitsGeneration();
      for (int k = 0; k < 7; ++k) {
        for (const std::string src : {"", "ip1"}) {
          const std::pair<std::string, std::string> key{absl::StrCat("d", k, ".example"), src};
          absl::StatusOr<uint32_t> limit = e->ConcurrencyLimit(key.first, key.second);
          if (!limit.ok()) continue;  // not seen yet
          auto it = cached.find(key);
          if (it == cached.end()) {
            cached.emplace(key, *limit);
            continue;
          }
          if (g == gen) {
            ASSERT_EQ(*limit, it->second)
                << "seed " << seed << " step " << i << " " << key.first << "/" << src
                << ": the limit changed, the generation not";
          } else if (*limit != it->second) {
            ++changes;
            (*limit > it->second ? rises : drops) += 1;
          }
          it->second = *limit;
        }
      }
      gen = g;
    }
    // The run went through limits going both ways.
    EXPECT_GT(changes, 20) << seed;
    EXPECT_GT(rises, 5) << seed;
    EXPECT_GT(drops, 5) << seed;
  }
}

TEST(Engine, SafeUnderConcurrentCallers) {
  EngineConfig c;
  c.destination_defaults.initial_concurrency = 20;
  auto e = MakeEngine(c);
  std::atomic<int> time_errors{0};
  std::vector<std::thread> threads;
  // Every thread uses the same fixed time so no call sees time go backwards.
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        const uint64_t id = static_cast<uint64_t>(t) * 100000 + static_cast<uint64_t>(i);
        if (!e->Submit(id, absl::StrCat("d", i % 13, ".example"), kT0).ok()) ++time_errors;
        absl::StatusOr<std::vector<Lease>> l = e->TakeReady(kT0, 4);
        if (!l.ok()) {
          ++time_errors;
          continue;
        }
        for (const Lease& x : *l) {
          if (!e->ReportText(x.msg_id, kT0, (x.msg_id % 4 == 0) ? kTempFail : kOk).ok())
            ++time_errors;
        }
        e->DrainEvents();
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(time_errors.load(), 0);
  EXPECT_EQ(e->Stats().submitted, 2000u);
  ExpectBalanced(*e);
}

}  // namespace
}  // namespace mailretry
