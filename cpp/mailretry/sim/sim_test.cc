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
#include "mailretry/policy/retry_policy.h"
#include "mailretry/reply/reply.h"
#include "mailretry/sim/internal/sim_receiver.h"

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
  p.refuse_probability = p.timeout_probability = p.drop_probability = 0;
  return p;
}

// An engine config without destination state: a fixed concurrency, no rate
// cuts worth the name, 1 ms suspensions, no structural detection.
EngineConfig Stateless(uint32_t concurrency) {
  EngineConfig c;
  DestinationPolicy& d = c.destination_defaults;
  d.initial_concurrency = d.max_concurrency = d.min_concurrency = d.cut_concurrency_to =
      concurrency;
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
  return s;
}

double Last(const Result& r) {
  double last = 0;
  for (double t : r.msg_end_s) {
    if (!std::isnan(t)) last = std::max(last, t);
  }
  return last;
}

TEST(SimTest, SameSeedSameResults) {
  const Scenario s = SmallMixed(5);
  for (const std::string& name : PresetPolicyNames()) {
    absl::StatusOr<Policy> p = PresetPolicy(name);
    ASSERT_TRUE(p.ok()) << name;
    absl::StatusOr<Result> a = sim::Run(s, *p);
    absl::StatusOr<Result> b = sim::Run(s, *p);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(a->msg_outcome, b->msg_outcome) << name;
    EXPECT_EQ(a->msg_attempts, b->msg_attempts) << name;
    EXPECT_EQ(a->msg_4xx, b->msg_4xx) << name;
    ASSERT_EQ(a->msg_end_s.size(), b->msg_end_s.size());
    for (size_t i = 0; i < a->msg_end_s.size(); ++i) {
      const double x = a->msg_end_s[i], y = b->msg_end_s[i];
      ASSERT_TRUE((std::isnan(x) && std::isnan(y)) || x == y) << name << " message " << i;
    }
    EXPECT_EQ(a->reply_kinds, b->reply_kinds) << name;
    EXPECT_GT(a->summary.attempts, s.messages) << name;  // retries happened: the check has teeth
  }
  absl::StatusOr<Result> a = sim::Run(SmallMixed(5), EngineConfig{});
  absl::StatusOr<Result> c = sim::Run(SmallMixed(6), EngineConfig{});
  ASSERT_TRUE(a.ok() && c.ok());
  EXPECT_NE(a->msg_domain, c->msg_domain);
}

TEST(SimTest, EveryMessageHasAnOutcomeUnderEveryPolicy) {
  const Scenario s = SmallMixed(7);
  for (const std::string& name : PresetPolicyNames()) {
    absl::StatusOr<Result> r = sim::Run(s, *PresetPolicy(name));
    ASSERT_TRUE(r.ok()) << r.status();
    const Summary& m = r->summary;
    EXPECT_EQ(m.delivered + m.bounced + m.expired, s.messages) << name;
    EXPECT_EQ(m.held, 0u) << name;
    EXPECT_GT(m.delivered, 0u);
    EXPECT_GT(m.expired, 0u) << name;  // ip-d without PTR at hosts that defer forever
    // The simulator's bookkeeping agrees with the engine's own counters.
    EXPECT_EQ(r->engine_stats.submitted, s.messages);
    EXPECT_EQ(r->engine_stats.delivered, m.delivered) << name;
    EXPECT_EQ(r->engine_stats.bounced, m.bounced) << name;
    uint64_t delivered = 0, attempts = 0, per_msg = 0;
    for (const HourBin& b : r->hours) {
      delivered += b.delivered;
      attempts += b.attempts;
    }
    EXPECT_EQ(delivered, m.delivered);
    EXPECT_EQ(attempts, m.attempts);
    for (size_t i = 0; i < s.messages; ++i) {
      per_msg += r->msg_attempts[i];
      ASSERT_FALSE(std::isnan(r->msg_end_s[i])) << name << " message " << i;
      EXPECT_GE(r->msg_end_s[i], r->msg_submit_s[i]);
    }
    EXPECT_EQ(per_msg, m.attempts);
    EXPECT_EQ(r->hours.back().pending, 0u) << name;
    // Nothing ends long after the last arrival's lifetime (the final attempt
    // at its end may wait for a connection slot).
    EXPECT_LE(m.end_s, absl::ToDoubleSeconds(s.arrival_window + absl::Hours(24 * 5 + 2))) << name;
  }
}

TEST(SimTest, AFiniteHorizonCountsTheRestAsHeld) {
  Scenario s = SmallMixed(7);
  s.horizon = absl::Hours(30);
  absl::StatusOr<Result> r = sim::Run(s, EngineConfig{});
  ASSERT_TRUE(r.ok()) << r.status();
  const Summary& m = r->summary;
  EXPECT_GT(m.held, 0u);
  EXPECT_EQ(m.delivered + m.bounced + m.expired + m.held, s.messages);
  EXPECT_NEAR(m.held_pct, 100.0 * static_cast<double>(m.held) / s.messages, 1e-9);
  EXPECT_EQ(m.end_s, 30 * 3600.0);
  for (size_t i = 0; i < s.messages; ++i) {
    EXPECT_EQ(r->msg_outcome[i] == Outcome::kHeld, std::isnan(r->msg_end_s[i])) << i;
  }
}

TEST(SimTest, PercentilesCountUndeliveredAsNever) {
  ReceiverProfile p = Quiet("some-unknown");
  p.unknown_user_probability = 0.1;  // about 10 % bounce
  const Scenario s = Single(p, 2000, absl::Hours(2));
  absl::StatusOr<Result> r = sim::Run(s, EngineConfig{});
  ASSERT_TRUE(r.ok()) << r.status();
  const Summary& m = r->summary;
  EXPECT_GT(m.bounced, 100u);
  EXPECT_TRUE(std::isinf(m.all_p95_s));  // more than 5 % never delivered
  EXPECT_TRUE(std::isinf(m.all_p99_s));
  EXPECT_TRUE(std::isfinite(m.ttd_p95_s));  // the delivered-only figure beside it
  EXPECT_LT(m.ttd_p95_s, 60);
  EXPECT_TRUE(std::isfinite(m.all_p50_s));
  EXPECT_GE(m.all_p50_s, m.ttd_p50_s);
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
  // About 10 acceptances per minute (plus the initial bucket of 10).
  EXPECT_GE(Last(*r), 18 * 60.0);
  ReceiverProfile open = p;
  open.max_per_minute = 0;
  absl::StatusOr<Result> fast = sim::Run(Single(open, 200, absl::Minutes(2)), Stateless(20));
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_LT(Last(*fast), 3 * 60.0);
  EXPECT_EQ(Kind(*fast, ReplyKind::kRateLimited), 0u);
}

TEST(SimTest, ConnectionFailuresOutagesAndIncidents) {
  ReceiverProfile p = Quiet("flaky");
  p.refuse_probability = 0.05;
  p.timeout_probability = 0.05;
  p.drop_probability = 0.05;
  p.outage_offset = absl::Hours(1);
  p.outage_duration = absl::Minutes(30);
  p.outage_kind = ReplyKind::kMaintenance;
  p.incident_offset = absl::Hours(2);
  p.incident_duration = absl::Minutes(30);
  p.incident_probability = 1.0;
  const Scenario s = Single(p, 3000, absl::Hours(3));
  absl::StatusOr<Result> r = sim::Run(s, *PresetPolicy("naive"));
  ASSERT_TRUE(r.ok()) << r.status();
  for (ReplyKind k :
       {ReplyKind::kConnectionRefused, ReplyKind::kConnectTimeout, ReplyKind::kDroppedMidData,
        ReplyKind::kMaintenance, ReplyKind::kReputationThrottled}) {
    EXPECT_GT(Kind(*r, k), 0u) << ReplyKindName(k);
  }
  // Transport outcomes are not SMTP replies: counted apart from 4xx.
  EXPECT_EQ(r->summary.transport_failures, Kind(*r, ReplyKind::kConnectionRefused) +
                                               Kind(*r, ReplyKind::kConnectTimeout) +
                                               Kind(*r, ReplyKind::kDroppedMidData));
  EXPECT_EQ(r->summary.delivered, 3000u);
}

TEST(SimTest, SenderSideFaultsShowOnlyWhereChecked) {
  Scenario s;
  s.messages = 2000;
  s.seed = 3;
  s.arrival_window = absl::Hours(12);
  s.sources = {{"good", 0.95, 1.0}, {"no-ptr", 0.95, 1.0}, {"no-auth", 0.95, 1.0}};
  s.sources[1].ptr = false;
  s.sources[2].spf = s.sources[2].dkim = false;
  s.named = {{"ptr.example", 0.3, "ptr-checking-host"},
             {"auth.example", 0.3, "auth-checking-host"},
             {"plain.example", 0.4, "generic-host"}};
  s.tail_domains = 0;
  absl::StatusOr<Result> r = sim::Run(s, *PresetPolicy("naive"));
  ASSERT_TRUE(r.ok()) << r.status();
  // Ground truth per (domain, source): only the failing source where checked.
  const std::vector<bool> want = {false, true,  false,   // ptr.example
                                  false, false, true,    // auth.example
                                  false, false, false};  // plain.example
  EXPECT_EQ(r->pair_structural, want);
  size_t on_pair5 = 0, five_attempts = 0;
  for (size_t i = 0; i < s.messages; ++i) {
    const uint32_t pair = r->msg_domain[i] * 3 + r->msg_source[i];
    if (pair == 1) {
      EXPECT_EQ(r->msg_outcome[i], Outcome::kExpired) << i;  // 450 forever
    } else if (pair == 5) {
      // DMARC: 4 deferrals then 5xx (a few are unknown users, bounced at once,
      // or met other noise on the way).
      EXPECT_EQ(r->msg_outcome[i], Outcome::kBounced) << i;
      ++on_pair5;
      if (r->msg_attempts[i] == 5) ++five_attempts;
    }
  }
  EXPECT_GT(five_attempts, on_pair5 * 9 / 10);
  EXPECT_GT(Kind(*r, ReplyKind::kPtrDeferral), 0u);
  EXPECT_GT(Kind(*r, ReplyKind::kAuthReject), 0u);
  EXPECT_EQ(Kind(*r, ReplyKind::kPtrReject), 0u);
  // Adaptive flags exactly the two broken pairs.
  absl::StatusOr<Result> a = sim::Run(s, EngineConfig{});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->summary.structural_true_positives, 2u);
  EXPECT_EQ(a->summary.structural_false_positives, 0u);
  EXPECT_DOUBLE_EQ(a->summary.structural_precision, 1.0);
  EXPECT_DOUBLE_EQ(a->summary.structural_recall, 1.0);
  // The presets have no structural detection: recall 0, precision undefined.
  EXPECT_EQ(r->summary.structural_false_negatives, 2u);
  EXPECT_TRUE(std::isnan(r->summary.structural_precision));
  EXPECT_DOUBLE_EQ(r->summary.structural_recall, 0.0);
}

TEST(SimTest, ReputationFromRetriesIsASwitch) {
  ReceiverProfile p = Quiet("picky");
  p.max_connections_per_source = 2;
  p.soft_block_below = 0.5;
  p.throttle_probability = 0.8;
  p.retry_penalty = 0.01;
  p.recovery_per_hour = 0.0;
  Scenario s = Single(p, 1000, absl::Minutes(30));
  s.sources = {{"ip", 0.6, 1.0}};
  absl::StatusOr<Result> off = sim::Run(s, *PresetPolicy("naive"));
  s.reputation_from_retries = true;
  absl::StatusOr<Result> on = sim::Run(s, *PresetPolicy("naive"));
  ASSERT_TRUE(off.ok() && on.ok());
  // Off: reputation never moves, so 0.6 stays above the block.
  EXPECT_EQ(Kind(*off, ReplyKind::kReputationThrottled), 0u);
  EXPECT_GT(Kind(*off, ReplyKind::kTooManyConnections), 0u);
  // On: refusals for too many connections push it below.
  EXPECT_GT(Kind(*on, ReplyKind::kReputationThrottled), 0u);
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
  EXPECT_EQ(r->summary.bounced, Kind(*r, ReplyKind::kUnknownUser));
  EXPECT_EQ(r->summary.delivered + r->summary.bounced, 2000u);
}

TEST(SimTest, HealthyReceiverWithRandomDeferralsIsNotFlagged) {
  ReceiverProfile p = Quiet("noisy");
  p.random_deferral_probability = 0.05;
  const Scenario s = Single(p, 5000, absl::Hours(24));
  absl::StatusOr<Result> r = sim::Run(s, EngineConfig{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(Kind(*r, ReplyKind::kRandomDeferral), 100u);
  EXPECT_TRUE(std::isnan(r->pair_structural_s[0]));
  EXPECT_TRUE(std::isnan(r->pair_warning_s[0]));
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
      {"ptr-checking-host", ReplyKind::kPtrDeferral, Category::kPtrRdns},
      {"ptr-checking-host", ReplyKind::kPtrReject, Category::kPtrRdns},
      {"auth-checking-host", ReplyKind::kAuthDeferral, Category::kAuthSpfDkimDmarc},
      {"auth-checking-host", ReplyKind::kAuthReject, Category::kAuthSpfDkimDmarc},
      {"gmail-like", ReplyKind::kTooManyConnections, Category::kTooManyConnections},
      {"gmail-like", ReplyKind::kOverload, Category::kServerBusyCapacity},
      {"gmail-like", ReplyKind::kRateLimited, Category::kReputationThrottle},
      {"gmail-like", ReplyKind::kReputationThrottled, Category::kReputationThrottle},
      {"gmail-like", ReplyKind::kPtrDeferral, Category::kPtrRdns},
      {"gmail-like", ReplyKind::kPtrReject, Category::kPtrRdns},
      {"gmail-like", ReplyKind::kAuthDeferral, Category::kAuthSpfDkimDmarc},
      {"gmail-like", ReplyKind::kAuthReject, Category::kAuthSpfDkimDmarc},
      {"gmail-like", ReplyKind::kMailboxFull, Category::kMailboxFull},
      {"gmail-like", ReplyKind::kUnknownUser, Category::kMailboxUnknown},
      {"outlook-like", ReplyKind::kTooManyConnections, Category::kTooManyConnections},
      {"outlook-like", ReplyKind::kReputationThrottled, Category::kReputationThrottle},
      {"outlook-like", ReplyKind::kMaintenance, Category::kMaintenanceShutdown},
      {"yahoo-like", ReplyKind::kRateLimited, Category::kReputationThrottle},
      {"yahoo-like", ReplyKind::kUnknownUser, Category::kMailboxUnknown},
      {"comcast-like", ReplyKind::kTooManyConnections, Category::kTooManyConnections},
      {"comcast-like", ReplyKind::kPtrDeferral, Category::kPtrRdns},
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

TEST(SimTest, EveryBuiltinProfileHasProvenance) {
  const std::vector<ParamSource> rows = ExplainProfiles();
  for (const std::string& name : BuiltinProfileNames()) {
    const bool named = std::any_of(rows.begin(), rows.end(), [&](const ParamSource& r) {
      return r.profile.find(name) != std::string::npos;
    });
    EXPECT_TRUE(named) << name << " has no provenance row";
  }
  for (const ParamSource& r : rows) {
    EXPECT_FALSE(r.source.empty()) << r.profile << " " << r.field;
    EXPECT_THAT(r.confidence, testing::AnyOf("H", "M", "L", "assumption")) << r.field;
  }
  const std::vector<ParamSource> presets = ExplainPresets();
  for (const std::string& name : PresetPolicyNames()) {
    EXPECT_TRUE(std::any_of(presets.begin(), presets.end(), [&](const ParamSource& r) {
      return r.profile == name;
    })) << name;
  }
}

TEST(SimReceiverTest, GreylistingPassesAfterTheDelay) {
  ReceiverProfile p = Quiet("grey");
  p.greylist_probability = 1.0;
  const Source src;
  PairState pair;
  RecipientState rcpt = internal::DrawRecipient(p, 1, 42, 0);
  SplitMix64 rng(1);
  const int64_t minute = internal::kMsPerMinute;
  AttemptResult a = internal::StartAttempt(p, src, false, pair, rcpt, 0, rng);
  EXPECT_EQ(a.kind, ReplyKind::kGreylisted);
  internal::EndAttempt(pair);
  a = internal::StartAttempt(p, src, false, pair, rcpt, 5 * minute - 1, rng);
  EXPECT_EQ(a.kind, ReplyKind::kGreylisted);  // one millisecond early is early
  internal::EndAttempt(pair);
  a = internal::StartAttempt(p, src, false, pair, rcpt, 5 * minute, rng);
  EXPECT_EQ(a.kind, ReplyKind::kAccepted);
  EXPECT_GE(a.latency_ms, absl::ToInt64Milliseconds(p.latency_min));
  EXPECT_LE(a.latency_ms, absl::ToInt64Milliseconds(p.latency_max));
}

TEST(SimReceiverTest, ConnectionCapCountsOpenConnections) {
  ReceiverProfile p = Quiet("cap");
  p.max_connections_per_source = 2;
  const Source src;
  PairState pair;
  RecipientState rcpt;
  SplitMix64 rng(1);
  EXPECT_EQ(internal::StartAttempt(p, src, false, pair, rcpt, 0, rng).kind, ReplyKind::kAccepted);
  EXPECT_EQ(internal::StartAttempt(p, src, false, pair, rcpt, 0, rng).kind, ReplyKind::kAccepted);
  AttemptResult third = internal::StartAttempt(p, src, false, pair, rcpt, 0, rng);
  EXPECT_EQ(third.kind, ReplyKind::kTooManyConnections);
  EXPECT_FALSE(third.holds_connection);
  internal::EndAttempt(pair);
  EXPECT_EQ(internal::StartAttempt(p, src, false, pair, rcpt, 0, rng).kind, ReplyKind::kAccepted);
  EXPECT_EQ(pair.peak_connections, 2u);
}

TEST(SimReceiverTest, CeilingsAreTokenBucketsNotClockWindows) {
  ReceiverProfile p = Quiet("bucket");
  p.max_per_minute = 60;
  const Source src;
  PairState pair;
  SplitMix64 rng(1);
  auto attempt = [&](int64_t t) {
    RecipientState rcpt;
    AttemptResult a = internal::StartAttempt(p, src, false, pair, rcpt, t, rng);
    if (a.holds_connection) internal::EndAttempt(pair);
    return a.kind;
  };
  // 60 at once drain the bucket; a fixed minute window would refuse until
  // t = 60 s, a bucket refills one token per second.
  const int64_t t0 = 10'000;
  for (int i = 0; i < 60; ++i) EXPECT_EQ(attempt(t0), ReplyKind::kAccepted) << i;
  EXPECT_EQ(attempt(t0), ReplyKind::kRateLimited);
  EXPECT_EQ(attempt(t0 + 999), ReplyKind::kRateLimited);
  EXPECT_EQ(attempt(t0 + 1000), ReplyKind::kAccepted);
  // Strict: refused attempts take tokens too, so hammering keeps it closed.
  p.ceiling_strict = true;
  EXPECT_EQ(attempt(t0 + 2000), ReplyKind::kAccepted);  // the token of the second second
  for (int i = 0; i < 30; ++i) EXPECT_EQ(attempt(t0 + 2000), ReplyKind::kRateLimited);
  EXPECT_EQ(attempt(t0 + 12'000), ReplyKind::kRateLimited);  // 10 tokens back, 30 owed
  EXPECT_EQ(attempt(t0 + 34'000), ReplyKind::kAccepted);
}

TEST(SimReceiverTest, PenaltyOnlyWithTheSwitch) {
  ReceiverProfile p = Quiet("penalty");
  p.max_connections_per_source = 1;
  p.retry_penalty = 0.1;
  const Source src;
  SplitMix64 rng(1);
  for (bool on : {false, true}) {
    PairState pair;
    pair.reputation = 0.9;
    RecipientState rcpt;
    internal::StartAttempt(p, src, on, pair, rcpt, 0, rng);
    EXPECT_EQ(internal::StartAttempt(p, src, on, pair, rcpt, 0, rng).kind,
              ReplyKind::kTooManyConnections);
    EXPECT_DOUBLE_EQ(pair.reputation, on ? 0.8 : 0.9);
  }
}

TEST(SimReceiverTest, SourceFaultsAtCheckingReceivers) {
  ReceiverProfile gmail = *BuiltinProfile("gmail-like");
  ReceiverProfile plain = Quiet("plain");
  Source no_ptr;
  no_ptr.ptr = false;
  Source no_auth;
  no_auth.spf = no_auth.dkim = false;
  EXPECT_TRUE(internal::PtrFails(gmail, no_ptr));
  EXPECT_FALSE(internal::PtrFails(plain, no_ptr));
  EXPECT_TRUE(internal::AuthFails(gmail, no_auth));
  EXPECT_FALSE(internal::AuthFails(gmail, no_ptr));
  Source spf_only = no_auth;
  spf_only.spf = true;
  EXPECT_FALSE(internal::AuthFails(gmail, spf_only));  // SPF or DKIM is enough
  gmail.checks_auth = AuthCheck::kSpfAndDkim;
  EXPECT_TRUE(internal::AuthFails(gmail, spf_only));
  // Gmail: 4 deferrals of one message, then the 5xx.
  gmail = *BuiltinProfile("gmail-like");
  gmail.overload_probability = gmail.random_deferral_probability = 0;
  gmail.refuse_probability = gmail.timeout_probability = gmail.drop_probability = 0;
  gmail.unknown_user_probability = gmail.mailbox_full_probability = 0;
  PairState pair;
  RecipientState rcpt;
  SplitMix64 rng(1);
  for (int i = 0; i < 4; ++i) {
    AttemptResult a = internal::StartAttempt(gmail, no_ptr, false, pair, rcpt, i * 1000, rng);
    EXPECT_EQ(a.kind, ReplyKind::kPtrDeferral);
    internal::EndAttempt(pair);
  }
  EXPECT_EQ(internal::StartAttempt(gmail, no_ptr, false, pair, rcpt, 9000, rng).kind,
            ReplyKind::kPtrReject);
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
  p = Quiet("bad-outage");
  p.outage_kind = ReplyKind::kAccepted;
  s = Single(p, 10, absl::Minutes(1));
  EXPECT_EQ(sim::Run(s, EngineConfig{}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PresetPolicy("sendmail").status().code(), absl::StatusCode::kNotFound);
}

TEST(SimTest, ProgressCanCancel) {
  int calls = 0;
  absl::StatusOr<Result> r =
      sim::Run(SmallMixed(2), EngineConfig{}, [&](double) { return ++calls < 3; });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace mailretry::sim
