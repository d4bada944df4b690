#include "mailretry/sim/internal/sim_sender.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim::internal {
namespace {

constexpr int64_t kMin = 60'000;

// Records what the gate asks for.
class FakeHost : public GateHost {
 public:
  void StartAttempt(uint32_t msg, int64_t now) override { started.emplace_back(msg, now); }
  void Defer(uint32_t msg, int64_t now, LocalDeferral why) override {
    deferred.push_back({msg, now, why});
  }
  bool Finished(uint32_t msg) override { return msg < finished.size() && finished[msg]; }

  struct Deferral {
    uint32_t msg;
    int64_t now;
    LocalDeferral why;
  };
  std::vector<std::pair<uint32_t, int64_t>> started;
  std::vector<Deferral> deferred;
  std::vector<bool> finished;
};

SenderGate Gate(SenderModel m, const char* profile = "generic-host") {
  return SenderGate(m, {*BuiltinProfile(profile)}, {0}, 1);
}

TEST(SenderGateTest, PostfixStartsAtFiveAndGrowsByOnePerDelivery) {
  SenderGate g = Gate(SenderModel::kPostfix);
  FakeHost h;
  for (uint32_t m = 0; m < 30; ++m) g.Offer(h, 0, m, 0);
  EXPECT_EQ(h.started.size(), 5u);  // initial_destination_concurrency
  g.OnResult(h, 0, ReplyKind::kAccepted, 1000);
  EXPECT_EQ(h.started.size(), 7u);  // a slot freed and the window grew to 6
  // A 4xx after the handshake (Gmail's 4.7.28 comes at MAIL FROM) is not a
  // site failure: positive feedback too.
  g.OnResult(h, 0, ReplyKind::kRateLimited, 1000);
  EXPECT_EQ(h.started.size(), 9u);
  EXPECT_EQ(g.waiting(), 21u);
  EXPECT_TRUE(h.deferred.empty());
}

TEST(SenderGateTest, PostfixFailedCohortMakesTheDestinationDead) {
  SenderGate g = Gate(SenderModel::kPostfix);
  FakeHost h;
  for (uint32_t m = 0; m < 20; ++m) g.Offer(h, 0, m, 0);
  ASSERT_EQ(h.started.size(), 5u);
  // Connect failures: -1 each and 1/N to the failed-cohort count; dead at 1.
  int failures = 0;
  while (h.deferred.empty() && failures < 10) {
    g.OnResult(h, 0, ReplyKind::kConnectionRefused, 2000);
    ++failures;
  }
  EXPECT_GE(failures, 2);
  EXPECT_LE(failures, 5);
  ASSERT_FALSE(h.deferred.empty());
  EXPECT_EQ(h.deferred.front().why, LocalDeferral::kDeadDestination);
  EXPECT_EQ(g.waiting(), 0u);  // queued mail is deferred, not kept
  EXPECT_TRUE(g.Blocked(0, 2000));
  const size_t started = h.started.size();
  g.Offer(h, 0, 100, 60'000);  // while dead: deferred at once
  EXPECT_EQ(h.deferred.back().msg, 100u);
  EXPECT_EQ(h.started.size(), started);
  // minimal_backoff_time later it is alive again, with concurrency 5.
  EXPECT_EQ(g.NextWake(), 2000 + 300'000);
  g.Advance(h, 302'000);
  EXPECT_FALSE(g.Blocked(0, 302'000));
  for (uint32_t m = 200; m < 210; ++m) g.Offer(h, 0, m, 302'000);
  // Window 5 again, minus the attempts of before that are still out.
  EXPECT_EQ(h.started.size() - started, 5u - (5u - static_cast<uint32_t>(failures)));
}

TEST(SenderGateTest, EximHostRecordDefersUntilItsRetryTime) {
  SenderGate g = Gate(SenderModel::kExim);
  FakeHost h;
  g.Offer(h, 0, 1, 0);
  g.Offer(h, 0, 2, 0);
  EXPECT_EQ(h.started.size(), 2u);  // no per-destination limit
  g.OnResult(h, 0, ReplyKind::kConnectTimeout, 30'000);
  g.Offer(h, 0, 3, 10 * kMin);
  ASSERT_EQ(h.deferred.size(), 1u);
  EXPECT_EQ(h.deferred[0].why, LocalDeferral::kHostRetryTime);
  // F,2h,15m: the host is retried 15 min after its failure.
  g.Offer(h, 0, 4, 30'000 + 15 * kMin);
  EXPECT_EQ(h.started.back().first, 4u);
  // A message-level 4xx does not create a host record; success clears it.
  g.OnResult(h, 0, ReplyKind::kGreylisted, 16 * kMin);
  g.OnResult(h, 0, ReplyKind::kAccepted, 16 * kMin);
  g.Offer(h, 0, 5, 16 * kMin);
  EXPECT_EQ(h.started.back().first, 5u);
  EXPECT_EQ(h.deferred.size(), 1u);
}

TEST(SenderGateTest, KumoSuspendsYahooOnTss04AndDefersWithAStep) {
  SenderGate g = Gate(SenderModel::kKumoMta, "yahoo-like");
  FakeHost h;
  for (uint32_t m = 0; m < 15; ++m) g.Offer(h, 0, m, 0);
  EXPECT_EQ(h.started.size(), 1u);  // max_message_rate 100/s: 10 ms apart
  for (int64_t t = 10; t <= 1000; t += 10) g.Advance(h, t);
  EXPECT_EQ(h.started.size(), 10u);                         // shaping.toml default connection_limit
  g.OnResult(h, 0, ReplyKind::kReputationThrottled, 1000);  // [TSS04]
  EXPECT_EQ(h.deferred.size(), 5u);                         // the waiting ones: suspended
  EXPECT_EQ(h.deferred[0].why, LocalDeferral::kSuspended);
  g.Offer(h, 0, 50, 60 * kMin);
  EXPECT_EQ(h.deferred.back().msg, 50u);
  g.Offer(h, 0, 51, 1000 + 120 * kMin);  // 2 hours later
  EXPECT_EQ(h.started.back().first, 51u);
}

TEST(SenderGateTest, KumoCutsGmailToTenPerMinuteAfterTwo4728s) {
  SenderGate g = Gate(SenderModel::kKumoMta, "gmail-like");
  FakeHost h;
  for (uint32_t m = 0; m < 10; ++m) g.Offer(h, 0, m, 0);
  for (int64_t t = 10; t <= 500; t += 10) g.Advance(h, t);
  EXPECT_EQ(h.started.size(), 5u);                  // provider "google": 5 connections
  g.OnResult(h, 0, ReplyKind::kRateLimited, 1000);  // one 4.7.28: below threshold
  g.OnResult(h, 0, ReplyKind::kRateLimited, 2000);  // two within an hour: 10/min
  const size_t before = h.started.size();
  for (int64_t t = 2000; t <= 30'000; t += 100) {
    if (t % 5000 == 0) g.OnResult(h, 0, ReplyKind::kAccepted, t);
    g.Advance(h, t);
  }
  // Paced 6 s apart now.
  ASSERT_GT(h.started.size(), before);
  for (size_t i = before + 1; i < h.started.size(); ++i) {
    EXPECT_GE(h.started[i].second - h.started[i - 1].second, 6000);
  }
}

TEST(SenderGateTest, PowerMtaQueueWaitsInRetryModeAndBacksOff) {
  SenderGate g = Gate(SenderModel::kPowerMta, "yahoo-like");
  FakeHost h;
  g.Offer(h, 0, 1, 0);
  g.OnResult(h, 0, ReplyKind::kConnectionRefused, 1000);
  g.Offer(h, 0, 2, 2000);
  EXPECT_EQ(h.started.size(), 1u);  // waits, not deferred
  EXPECT_TRUE(h.deferred.empty());
  EXPECT_EQ(g.NextWake(), 1000 + 10 * kMin);
  g.Advance(h, 1000 + 10 * kMin);
  EXPECT_EQ(h.started.back().first, 2u);
  // A backoff pattern ([TSS04]) pauses the queue for backoff-retry-after.
  g.OnResult(h, 0, ReplyKind::kRateLimited, 11 * kMin);
  g.Offer(h, 0, 3, 12 * kMin);
  EXPECT_EQ(h.started.size(), 2u);
  EXPECT_EQ(g.NextWake(), 71 * kMin);
  g.Advance(h, 71 * kMin);
  EXPECT_EQ(h.started.back().first, 3u);
  g.OnResult(h, 0, ReplyKind::kAccepted, 72 * kMin);  // back to normal
  g.Offer(h, 0, 4, 72 * kMin);
  g.OnResult(h, 0, ReplyKind::kGreylisted, 73 * kMin);  // a plain deferral: no pause
  g.Offer(h, 0, 5, 73 * kMin);
  EXPECT_EQ(h.started.back().first, 5u);
}

TEST(SenderGateTest, ExpiredMessagesAreDroppedNotTried) {
  SenderGate g = Gate(SenderModel::kPostfix);
  FakeHost h;
  h.finished.assign(20, false);
  for (uint32_t m = 0; m < 10; ++m) g.Offer(h, 0, m, 0);
  h.finished[5] = h.finished[6] = true;
  g.OnResult(h, 0, ReplyKind::kAccepted, 1000);
  for (const auto& [m, t] : h.started) {
    EXPECT_NE(m, 5u);
    EXPECT_NE(m, 6u);
  }
}

}  // namespace
}  // namespace mailretry::sim::internal
