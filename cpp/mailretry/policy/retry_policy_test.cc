#include "mailretry/policy/retry_policy.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mailretry {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

std::vector<double> Hours(const std::vector<absl::Duration>& v) {
  std::vector<double> out;
  for (absl::Duration d : v) out.push_back(absl::ToDoubleHours(d));
  return out;
}

TEST(RetryPolicy, DefaultDoublesFromFifteenMinutesToFourHourCap) {
  RetryPolicy p = RetryPolicy::Default();
  p.jitter = Jitter::kNone;  // the schedule before jitter
  SplitMix64 rng(1);
  std::vector<absl::Duration> delays;
  RetryState st;
  for (uint32_t i = 0; i < 7; ++i) {
    st.failures = i + 1;
    st.step = i;
    st.age = absl::Minutes(1);
    RetryDecision d = NextRetry(p, st, rng);
    ASSERT_FALSE(d.expire);
    delays.push_back(d.delay);
  }
  EXPECT_THAT(delays, ElementsAre(absl::Minutes(15), absl::Minutes(30), absl::Hours(1),
                                  absl::Hours(2), absl::Hours(4), absl::Hours(4), absl::Hours(4)));
}

TEST(RetryPolicy, DefaultTimelineLastAttemptAtFiveDays) {
  RetryPolicy p = RetryPolicy::Default();
  p.jitter = Jitter::kNone;  // the schedule before jitter
  std::vector<absl::Duration> t = Timeline(p);
  ASSERT_GE(t.size(), 3u);
  EXPECT_EQ(t.front(), absl::ZeroDuration());
  EXPECT_EQ(t[1], absl::Minutes(15));
  EXPECT_EQ(t[2], absl::Minutes(45));
  EXPECT_EQ(t.back(), absl::Hours(24 * 5));  // one last attempt exactly at the lifetime end
  // 15m+30m+1h+2h = 3h45m, then every 4 h up to 120 h: 5 + 30 + final.
  EXPECT_THAT(t, SizeIs(35));
}

TEST(RetryPolicy, PostfixPresetIsAgeAnchored) {
  std::vector<absl::Duration> t = Timeline(RetryPolicy::Postfix(), 0, 9);
  // 0, 5m, 10m, 20m, 40m, 80m, then +4000 s steps (Postfix's
  // minimal_backoff_time 300 s and maximal_backoff_time 4000 s defaults).
  EXPECT_THAT(
      t, ElementsAre(absl::ZeroDuration(), absl::Minutes(5), absl::Minutes(10), absl::Minutes(20),
                     absl::Minutes(40), absl::Minutes(80), absl::Minutes(80) + absl::Seconds(4000),
                     absl::Minutes(80) + absl::Seconds(8000),
                     absl::Minutes(80) + absl::Seconds(12000)));
  std::vector<absl::Duration> all = Timeline(RetryPolicy::Postfix());
  EXPECT_EQ(all.back(), absl::Hours(120));
  EXPECT_NEAR(static_cast<double>(all.size()), 112, 3);  // "about 112 attempts"
}

TEST(RetryPolicy, EximDefaultRule) {
  std::vector<absl::Duration> t = Timeline(RetryPolicy::Exim());
  // F,2h,15m: 0, 15m, ..., 2h (9 attempts); then G from 1 h × 1.5.
  ASSERT_GE(t.size(), 12u);
  EXPECT_EQ(t[8], absl::Hours(2));
  EXPECT_EQ(t[9], absl::Hours(2) + absl::Minutes(15));   // age 2h is still within F,2h
  EXPECT_EQ(t[10], absl::Hours(3) + absl::Minutes(15));  // G starts at p1 = 1h
  EXPECT_EQ(t[11] - t[10], absl::Minutes(90));           // then × 1.5
  EXPECT_EQ(t.back(), absl::Hours(96));
  EXPECT_NEAR(static_cast<double>(t.size()), 29, 3);  // "about 29 attempts"
}

TEST(RetryPolicy, KumoMtaExpiresEarlyAroundEightyFiveHours) {
  std::vector<double> h = Hours(Timeline(RetryPolicy::KumoMta(), 3));
  ASSERT_THAT(h, SizeIs(9));  // 0, 20m, 1h, 2.3h, 5h, 10.3h, 21h, 42.3h, 85h
  EXPECT_NEAR(h[1], 1.0 / 3, 0.01);
  EXPECT_NEAR(h.back(), 85.0, 0.2);
}

TEST(RetryPolicy, HarakaThirteenAttempts) {
  std::vector<absl::Duration> t = Timeline(RetryPolicy::Haraka());
  ASSERT_THAT(t, SizeIs(13));
  EXPECT_EQ(t[1], absl::Seconds(64));
  EXPECT_NEAR(absl::ToDoubleHours(t.back()), 72.8, 0.1);
}

TEST(RetryPolicy, PresetByName) {
  EXPECT_TRUE(RetryPolicy::Preset("postfix").ok());
  EXPECT_TRUE(RetryPolicy::Preset("KumoMTA").ok());
  absl::StatusOr<RetryPolicy> bad = RetryPolicy::Preset("sendmail");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RetryPolicy, JitterStaysInItsRange) {
  for (Jitter j : {Jitter::kFull, Jitter::kEqual, Jitter::kDecorrelated, Jitter::kKumo,
                   Jitter::kProportional}) {
    RetryPolicy p;
    p.jitter = j;
    SplitMix64 rng(99);
    RetryState st;
    st.step = 2;  // base 1 h
    st.last_delay = absl::Minutes(30);
    double lo = 1e18, hi = 0;
    for (int i = 0; i < 2000; ++i) {
      const double s = absl::ToDoubleSeconds(NextDelay(p, st, rng));
      lo = std::min(lo, s);
      hi = std::max(hi, s);
    }
    SCOPED_TRACE(std::string(JitterName(j)));
    switch (j) {
      case Jitter::kFull:
        EXPECT_GE(lo, 0);
        EXPECT_LE(hi, 3600);
        EXPECT_LT(lo, 400);
        break;
      case Jitter::kEqual:
        EXPECT_GE(lo, 1800);
        EXPECT_LE(hi, 3600);
        break;
      case Jitter::kDecorrelated:
        EXPECT_GE(lo, 900);
        EXPECT_LE(hi, 3 * 1800);
        EXPECT_GT(hi, 4000);
        break;
      case Jitter::kKumo:
        EXPECT_GE(lo, 3600 - 22.5);
        EXPECT_LE(hi, 3600 + 22.5);
        break;
      case Jitter::kProportional:
        EXPECT_GE(lo, 0.8 * 3600);
        EXPECT_LE(hi, 1.2 * 3600);
        EXPECT_LT(lo, 0.85 * 3600);
        EXPECT_GT(hi, 1.15 * 3600);
        break;
      case Jitter::kNone:
        break;
    }
    EXPECT_LT(lo, hi) << "jitter must actually vary";
  }
}

// Issue 14 item 8: messages deferred together must not come back in
// lock-step under the defaults, and the presets keep their MTA's own jitter.
TEST(RetryPolicy, DefaultJittersPresetsKeepTheirOwn) {
  EXPECT_EQ(RetryPolicy::Default().jitter, Jitter::kProportional);
  EXPECT_EQ(RetryPolicy::Postfix().jitter, Jitter::kNone);
  EXPECT_EQ(RetryPolicy::Exim().jitter, Jitter::kNone);
  EXPECT_EQ(RetryPolicy::KumoMta().jitter, Jitter::kKumo);
  EXPECT_EQ(RetryPolicy::Haraka().jitter, Jitter::kNone);
  EXPECT_EQ(ParseJitter("proportional").value(), Jitter::kProportional);
}

TEST(RetryPolicy, JitterIsDeterministicForASeed) {
  RetryPolicy p;
  p.jitter = Jitter::kFull;
  EXPECT_EQ(Timeline(p, 5, 20), Timeline(p, 5, 20));
  EXPECT_NE(Timeline(p, 5, 20), Timeline(p, 6, 20));
}

TEST(RetryPolicy, RandomizedStageDrawsInUpperHalf) {
  RetryPolicy p;
  p.backoff = Backoff::kStages;
  p.stages = {{RetryStage::Kind::kRandomized, absl::Hours(100), absl::Minutes(10), 2.0}};
  p.jitter = Jitter::kNone;  // the stage's own draw only
  SplitMix64 rng(3);
  RetryState st;
  st.last_delay = absl::Minutes(60);  // next gap 120 min: draw in [65, 120)
  for (int i = 0; i < 500; ++i) {
    const double m = absl::ToDoubleMinutes(NextDelay(p, st, rng));
    EXPECT_GE(m, 65);
    EXPECT_LT(m, 120);
  }
}

TEST(RetryPolicy, MaxAttemptsExpires) {
  RetryPolicy p;
  p.max_attempts = 3;
  SplitMix64 rng;
  RetryState st;
  st.failures = 2;
  EXPECT_FALSE(NextRetry(p, st, rng).expire);
  st.failures = 3;
  EXPECT_TRUE(NextRetry(p, st, rng).expire);
}

TEST(RetryPolicy, LifetimeEndFinalAttemptOrEarlyExpiry) {
  RetryPolicy p;
  p.lifetime = absl::Hours(1);
  SplitMix64 rng;
  RetryState st;
  st.step = 2;  // 1 h
  st.age = absl::Minutes(40);
  RetryDecision d = NextRetry(p, st, rng);
  EXPECT_FALSE(d.expire);
  EXPECT_TRUE(d.final_attempt);
  EXPECT_EQ(d.delay, absl::Minutes(20));
  p.attempt_at_lifetime_end = false;
  EXPECT_TRUE(NextRetry(p, st, rng).expire);
  st.age = absl::Hours(1);
  p.attempt_at_lifetime_end = true;
  EXPECT_TRUE(NextRetry(p, st, rng).expire);
}

TEST(RetryPolicy, ValidateRejectsBadFields) {
  RetryPolicy p;
  p.multiplier = 0.5;
  EXPECT_EQ(p.Validate().code(), absl::StatusCode::kInvalidArgument);
  p = RetryPolicy{};
  p.lifetime = absl::ZeroDuration();
  EXPECT_FALSE(p.Validate().ok());
  p = RetryPolicy{};
  p.backoff = Backoff::kIntervals;
  EXPECT_FALSE(p.Validate().ok());
  p = RetryPolicy{};
  p.backoff = Backoff::kStages;
  p.stages = {{RetryStage::Kind::kFixed, absl::Hours(2), absl::Minutes(5), 1},
              {RetryStage::Kind::kFixed, absl::Hours(1), absl::Minutes(5), 1}};
  EXPECT_THAT(std::string(p.Validate().message()), ::testing::HasSubstr("cutoff"));
  EXPECT_TRUE(RetryPolicy::Exim().Validate().ok());
  EXPECT_TRUE(RetryPolicy::Haraka().Validate().ok());
  EXPECT_TRUE(RetryPolicy::KumoMta().Validate().ok());
  EXPECT_TRUE(RetryPolicy::Postfix().Validate().ok());
}

}  // namespace
}  // namespace mailretry
