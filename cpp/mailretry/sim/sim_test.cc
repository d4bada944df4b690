#include "mailretry/sim/sim.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/engine/engine.h"
#include "mailretry/sim/internal/sim_receiver.h"
#include "mailretry/reply/reply.h"
#include "mailretry/policy/retry_policy.h"

namespace mailretry::sim {
namespace {

using internal::AttemptResult;
using internal::PairState;
using internal::RecipientState;

uint64_t Kind(const Result& r, ReplyKind k) { return r.reply_kinds[static_cast<int>(k)]; }

// One named destination with `profile`, no tail.
Scenario Single(const ReceiverProfile& profile, uint64_t messages, absl::Duration window) {
  Scenario s;
  s.messages = messages;
  s.seed = 11;
  s.duration = absl::Hours(48);
  s.arrival_window = window;
  s.sources = {{"ip-a", 0.95, 1.0}};
  s.named = {{"rcpt.example", 1.0, profile.name}};
  s.tail_domains = 0;
  s.profiles = {profile};
  return s;
}

ReceiverProfile Quiet(const std::string& name) {
  ReceiverProfile p = *BuiltinProfile("generic-host");
  p.name = name;
  p.max_connections_per_source = 0;
  p.overload_probability = 0;
  p.random_deferral_probability = 0;
  p.unknown_user_probability = 0;
  p.mailbox_full_probability = 0;
  return p;
}

// An engine config without destination state: a fixed concurrency, no rate
// cuts worth the name, 1 ms suspensions, no structural detection.
EngineConfig Stateless(uint32_t concurrency) {
  EngineConfig c;
  DestinationPolicy& d = c.destination_defaults;
  d.initial_concurrency = d.max_concurrency = d.min_concurrency = d.cut_concurrency_to = concurrency;
  d.unlimited_cut_to = {1'000'000, absl::Seconds(1)};
  d.min_rate = {1'000'000, absl::Seconds(1)};
  d.suspend_base = d.suspend_max = absl::Milliseconds(1);
  d.connection_failures_to_suspend = 0;
  c.structural.enabled = false;
  c.builtin_overrides = false;
  return c;
}

Scenario SmallMixed(uint64_t seed) {
  Scenario s = DefaultScenario();
  s.messages = 4000;
  s.tail_domains = 200;
  s.seed = seed;
  s.duration = absl::Hours(72);
  return s;
}

TEST(SimTest, SameSeedSameResults) {
  const Scenario s = SmallMixed(5);
  absl::StatusOr<Result> a = sim::Run(s, EngineConfig{});
  absl::StatusOr<Result> b = sim::Run(s, EngineConfig{});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->msg_outcome, b->msg_outcome);
  EXPECT_EQ(a->msg_attempts, b->msg_attempts);
  EXPECT_EQ(a->msg_4xx, b->msg_4xx);
  EXPECT_EQ(a->msg_domain, b->msg_domain);
  ASSERT_EQ(a->msg_end_s.size(), b->msg_end_s.size());
  for (size_t i = 0; i < a->msg_end_s.size(); ++i) {
    const double x = a->msg_end_s[i], y = b->msg_end_s[i];
    ASSERT_TRUE((std::isnan(x) && std::isnan(y)) || x == y) << "message " << i;
  }
  EXPECT_EQ(a->reply_kinds, b->reply_kinds);
  EXPECT_EQ(a->summary.attempts, b->summary.attempts);
  EXPECT_GT(a->summary.attempts, s.messages);  // retries happened: the check has teeth

  absl::StatusOr<Result> c = sim::Run(SmallMixed(6), EngineConfig{});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NE(a->msg_domain, c->msg_domain);
}

TEST(SimTest, EveryMessageEndsOnceOrIsPending) {
  Scenario s = SmallMixed(7);
  s.duration = absl::Hours(30);  // short: some messages are still pending
  for (const EngineConfig& cfg : {EngineConfig{}, Stateless(20)}) {
    absl::StatusOr<Result> r = sim::Run(s, cfg);
    ASSERT_TRUE(r.ok()) << r.status();
    const Summary& m = r->summary;
    EXPECT_EQ(m.delivered + m.bounced + m.expired + m.pending, s.messages);
    EXPECT_GT(m.delivered, 0u);
    EXPECT_GT(m.pending, 0u);
    // The simulator's bookkeeping agrees with the engine's own counters.
    EXPECT_EQ(r->engine_stats.submitted, s.messages);
    EXPECT_EQ(r->engine_stats.delivered, m.delivered);
    EXPECT_EQ(r->engine_stats.bounced, m.bounced);
    EXPECT_EQ(r->engine_stats.expired, m.expired);
    EXPECT_EQ(r->engine_stats.pending, m.pending);
    EXPECT_EQ(r->engine_stats.attempts, m.attempts);
    uint64_t delivered = 0, attempts = 0;
    for (const HourBin& b : r->hours) {
      delivered += b.delivered;
      attempts += b.attempts;
    }
    EXPECT_EQ(delivered, m.delivered);
    EXPECT_EQ(attempts, m.attempts);
    uint64_t per_msg_attempts = 0;
    for (size_t i = 0; i < s.messages; ++i) {
      per_msg_attempts += r->msg_attempts[i];
      const bool ended = r->msg_outcome[i] != Outcome::kPending;
      EXPECT_EQ(ended, !std::isnan(r->msg_end_s[i])) << "message " << i;
      if (ended) {
        EXPECT_GE(r->msg_end_s[i], r->msg_submit_s[i]);
      }
    }
    EXPECT_EQ(per_msg_attempts, m.attempts);
  }
}

TEST(SimTest, ConnectionCapAnswersTooManyConnections) {
  ReceiverProfile p = Quiet("capped");
  p.max_connections_per_source = 3;
  const Scenario s = Single(p, 300, absl::Minutes(1));
  absl::StatusOr<Result> pushy = sim::Run(s, Stateless(10));
  ASSERT_TRUE(pushy.ok()) << pushy.status();
  EXPECT_GT(Kind(*pushy, ReplyKind::kTooManyConnections), 0u);
  absl::StatusOr<Result> polite = sim::Run(s, Stateless(3));
  ASSERT_TRUE(polite.ok()) << polite.status();
  EXPECT_EQ(Kind(*polite, ReplyKind::kTooManyConnections), 0u);
  EXPECT_EQ(polite->summary.delivered, 300u);
}

TEST(SimTest, RateCeilingAnswersRateLimited) {
  ReceiverProfile p = Quiet("ceiling");
  p.max_per_minute = 10;
  const Scenario s = Single(p, 200, absl::Minutes(2));
  absl::StatusOr<Result> r = sim::Run(s, Stateless(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(Kind(*r, ReplyKind::kRateLimited), 0u);
  EXPECT_EQ(r->summary.delivered, 200u);
  // At most 10 acceptances per minute: 200 messages need at least 20 minutes.
  double last = 0;
  for (double t : r->msg_end_s) last = std::max(last, t);
  EXPECT_GE(last, 19 * 60.0);
  // Without the ceiling the same traffic is through within the arrival window.
  ReceiverProfile open = p;
  open.max_per_minute = 0;
  absl::StatusOr<Result> fast = sim::Run(Single(open, 200, absl::Minutes(2)), Stateless(20));
  ASSERT_TRUE(fast.ok()) << fast.status();
  double fast_last = 0;
  for (double t : fast->msg_end_s) fast_last = std::max(fast_last, t);
  EXPECT_LT(fast_last, 3 * 60.0);
  EXPECT_EQ(Kind(*fast, ReplyKind::kRateLimited), 0u);
  EXPECT_EQ(r->summary.delivered, 200u);
}

TEST(SimTest, SoftBlockedSourceIsThrottledAndRecovers) {
  ReceiverProfile p = Quiet("picky");
  p.soft_block_below = 0.5;
  p.throttle_probability = 0.8;
  p.recovery_per_hour = 0.05;
  Scenario s = Single(p, 400, absl::Hours(12));
  s.sources = {{"ip-low", 0.2, 1.0}};
  absl::StatusOr<Result> r = sim::Run(s, EngineConfig{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(Kind(*r, ReplyKind::kReputationThrottled), 0u);
  // Behaving (no penalty configured) lets reputation climb past the block:
  // the last hours of arrivals are accepted at the first attempt.
  const HourBin& late = r->hours[11];
  EXPECT_GT(late.attempts, 0u);
  EXPECT_EQ(late.replies_4xx, 0u);
}

TEST(SimTest, StructuralReceiverSoftFailsThenRejects) {
  ReceiverProfile p = *BuiltinProfile("misconfigured-auth");
  const Scenario s = Single(p, 50, absl::Minutes(10));
  absl::StatusOr<Result> r = sim::Run(s, Stateless(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Kind(*r, ReplyKind::kStructuralDeferral), 50u * p.structural_soft_attempts);
  EXPECT_EQ(Kind(*r, ReplyKind::kStructuralReject), 50u);
  EXPECT_EQ(r->summary.bounced, 50u);
  EXPECT_EQ(Kind(*r, ReplyKind::kAccepted), 0u);
}

TEST(SimTest, MaintenanceOverloadAndRecipientReplies) {
  ReceiverProfile p = Quiet("busy");
  p.maintenance_every = absl::Hours(24);
  p.maintenance_duration = absl::Minutes(30);
  p.maintenance_offset = absl::ZeroDuration();
  p.overload_probability = 0.1;
  p.unknown_user_probability = 0.1;
  p.mailbox_full_probability = 0.1;
  p.mailbox_full_duration = absl::Hours(2);
  p.greylist_probability = 0.5;
  const Scenario s = Single(p, 2000, absl::Hours(2));
  absl::StatusOr<Result> r = sim::Run(s, EngineConfig{});
  ASSERT_TRUE(r.ok()) << r.status();
  for (ReplyKind k : {ReplyKind::kMaintenance, ReplyKind::kOverload, ReplyKind::kUnknownUser,
                      ReplyKind::kMailboxFull, ReplyKind::kGreylisted, ReplyKind::kAccepted}) {
    EXPECT_GT(Kind(*r, k), 0u) << ReplyKindName(k);
  }
  // Unknown users bounce; the rest get through within the 2-day run.
  EXPECT_EQ(r->summary.bounced, Kind(*r, ReplyKind::kUnknownUser));
  EXPECT_EQ(r->summary.delivered + r->summary.bounced, 2000u);
}

TEST(SimTest, StructuralReceiverIsDetected) {
  Scenario s;
  s.messages = 3000;
  s.seed = 3;
  s.duration = absl::Hours(48);
  s.arrival_window = absl::Hours(12);
  s.sources = {{"ip-a", 0.95, 1.0}, {"ip-b", 0.95, 1.0}};
  s.named = {{"broken.example", 0.1, "misconfigured"}, {"fine.example", 0.9, "generic-host"}};
  s.tail_domains = 0;
  absl::StatusOr<Result> r = sim::Run(s, EngineConfig{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(std::isnan(r->domain_structural_s[0]));
  EXPECT_TRUE(std::isnan(r->domain_structural_s[1]));
  EXPECT_EQ(r->summary.structural_true_positives, 1u);
  EXPECT_EQ(r->summary.structural_false_positives, 0u);
  EXPECT_EQ(r->summary.structural_false_negatives, 0u);
  // Without destination state there is no detection: the score says so.
  absl::StatusOr<Result> blind = sim::Run(s, Stateless(20));
  ASSERT_TRUE(blind.ok()) << blind.status();
  EXPECT_EQ(blind->summary.structural_false_negatives, 1u);
}

TEST(SimTest, HealthyReceiverWithRandomDeferralsIsNotFlagged) {
  ReceiverProfile p = Quiet("noisy");
  p.random_deferral_probability = 0.05;
  const Scenario s = Single(p, 5000, absl::Hours(24));
  absl::StatusOr<Result> r = sim::Run(s, EngineConfig{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(Kind(*r, ReplyKind::kRandomDeferral), 100u);
  EXPECT_TRUE(std::isnan(r->domain_structural_s[0]));
  EXPECT_TRUE(std::isnan(r->domain_warning_s[0]));
  EXPECT_EQ(r->summary.structural_false_positives, 0u);
  EXPECT_EQ(r->summary.structural_true_negatives, 1u);
  EXPECT_EQ(r->summary.delivered, 5000u);
}

TEST(SimTest, BuiltinWordingsClassifyAsTheirCause) {
  absl::StatusOr<Classifier> c = Classifier::Create({});
  ASSERT_TRUE(c.ok());
  struct Want {
    const char* profile;
    ReplyKind kind;
    Category category;
  };
  const Want wants[] = {
      {"generic-host", ReplyKind::kTooManyConnections, Category::kTooManyConnections},
      {"generic-host", ReplyKind::kOverload, Category::kServerBusyCapacity},
      {"generic-host", ReplyKind::kMaintenance, Category::kMaintenanceShutdown},
      {"small-host-greylisting", ReplyKind::kGreylisted, Category::kGreylisting},
      {"generic-host", ReplyKind::kMailboxFull, Category::kMailboxFull},
      {"generic-host", ReplyKind::kUnknownUser, Category::kMailboxUnknown},
      {"misconfigured", ReplyKind::kStructuralDeferral, Category::kPtrRdns},
      {"misconfigured", ReplyKind::kStructuralReject, Category::kPtrRdns},
      {"misconfigured-auth", ReplyKind::kStructuralDeferral, Category::kAuthSpfDkimDmarc},
      {"misconfigured-auth", ReplyKind::kStructuralReject, Category::kAuthSpfDkimDmarc},
      {"gmail-like", ReplyKind::kTooManyConnections, Category::kTooManyConnections},
      {"gmail-like", ReplyKind::kOverload, Category::kServerBusyCapacity},
      {"gmail-like", ReplyKind::kRateLimited, Category::kReputationThrottle},
      {"gmail-like", ReplyKind::kReputationThrottled, Category::kReputationThrottle},
      {"gmail-like", ReplyKind::kMailboxFull, Category::kMailboxFull},
      {"gmail-like", ReplyKind::kUnknownUser, Category::kMailboxUnknown},
      {"outlook-like", ReplyKind::kTooManyConnections, Category::kTooManyConnections},
      {"outlook-like", ReplyKind::kReputationThrottled, Category::kReputationThrottle},
      {"outlook-like", ReplyKind::kMaintenance, Category::kMaintenanceShutdown},
      {"yahoo-like", ReplyKind::kRateLimited, Category::kReputationThrottle},
      {"yahoo-like", ReplyKind::kUnknownUser, Category::kMailboxUnknown},
  };
  for (const Want& w : wants) {
    absl::StatusOr<ReceiverProfile> p = BuiltinProfile(w.profile);
    ASSERT_TRUE(p.ok()) << w.profile;
    const std::string& text = p->replies[static_cast<int>(w.kind)];
    absl::StatusOr<Classification> k = c->ClassifyText(text);
    ASSERT_TRUE(k.ok()) << text;
    EXPECT_EQ(CategoryName(k->category), CategoryName(w.category))
        << w.profile << " " << ReplyKindName(w.kind) << ": " << text;
  }
}

TEST(SimReceiverTest, GreylistingPassesAfterTheDelay) {
  ReceiverProfile p = Quiet("grey");
  p.greylist_probability = 1.0;
  PairState pair;
  RecipientState rcpt = internal::DrawRecipient(p, 1, 42, 0);
  SplitMix64 rng(1);
  const int64_t minute = internal::kMsPerMinute;
  AttemptResult a = internal::StartAttempt(p, pair, rcpt, 0, rng);
  EXPECT_EQ(a.kind, ReplyKind::kGreylisted);
  internal::EndAttempt(pair);
  a = internal::StartAttempt(p, pair, rcpt, 4 * minute, rng);
  EXPECT_EQ(a.kind, ReplyKind::kGreylisted);
  internal::EndAttempt(pair);
  a = internal::StartAttempt(p, pair, rcpt, 5 * minute, rng);
  EXPECT_EQ(a.kind, ReplyKind::kAccepted);
  EXPECT_GE(a.latency_ms, absl::ToInt64Milliseconds(p.latency_min));
  EXPECT_LE(a.latency_ms, absl::ToInt64Milliseconds(p.latency_max));
}

TEST(SimReceiverTest, ConnectionCapCountsOpenConnections) {
  ReceiverProfile p = Quiet("cap");
  p.max_connections_per_source = 2;
  PairState pair;
  RecipientState rcpt;
  SplitMix64 rng(1);
  EXPECT_EQ(internal::StartAttempt(p, pair, rcpt, 0, rng).kind, ReplyKind::kAccepted);
  EXPECT_EQ(internal::StartAttempt(p, pair, rcpt, 0, rng).kind, ReplyKind::kAccepted);
  AttemptResult third = internal::StartAttempt(p, pair, rcpt, 0, rng);
  EXPECT_EQ(third.kind, ReplyKind::kTooManyConnections);
  EXPECT_FALSE(third.holds_connection);
  internal::EndAttempt(pair);
  EXPECT_EQ(internal::StartAttempt(p, pair, rcpt, 0, rng).kind, ReplyKind::kAccepted);
  EXPECT_EQ(pair.peak_connections, 2u);
}

TEST(SimReceiverTest, RecipientDrawsFollowTheProfile) {
  ReceiverProfile p = Quiet("draws");
  p.unknown_user_probability = 0.2;
  int unknown = 0;
  for (uint64_t i = 0; i < 10000; ++i) {
    if (internal::DrawRecipient(p, 9, i, 0).flags & internal::kRecipientUnknown) ++unknown;
  }
  EXPECT_GT(unknown, 1800);
  EXPECT_LT(unknown, 2200);
}

TEST(SimTest, RejectsBadScenarios) {
  Scenario s = SmallMixed(1);
  s.named.push_back({"x.example", 0.01, "no-such-profile"});
  EXPECT_EQ(sim::Run(s, EngineConfig{}).status().code(), absl::StatusCode::kInvalidArgument);
  s = SmallMixed(1);
  s.sources.clear();
  EXPECT_EQ(sim::Run(s, EngineConfig{}).status().code(), absl::StatusCode::kInvalidArgument);
  ReceiverProfile p = Quiet("bad-reply");
  p.replies[static_cast<int>(ReplyKind::kAccepted)] = "550 5.1.1 nope";
  s = Single(p, 10, absl::Minutes(1));
  EXPECT_EQ(sim::Run(s, EngineConfig{}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SimTest, ProgressCanCancel) {
  int calls = 0;
  absl::StatusOr<Result> r = sim::Run(SmallMixed(2), EngineConfig{}, [&](double) { return ++calls < 3; });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace mailretry::sim
