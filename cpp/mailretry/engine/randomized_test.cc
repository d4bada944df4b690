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
