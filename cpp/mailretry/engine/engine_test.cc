#include "mailretry/engine/engine.h"

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
#include "mailretry/engine/internal/engine_test_util.h"

namespace mailretry {
namespace {

using namespace ::mailretry::engine_test;  // NOLINT: the shared test vocabulary
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class EngineBackends : public ::testing::TestWithParam<TimerBackend> {};

TEST_P(EngineBackends, SubmitTakeDeliver) {
  EngineConfig c;
  c.backend = GetParam();
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(42, "Example.COM", kT0, "10.0.0.1").ok());
  std::vector<Lease> l = Take(*e, kT0);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].msg_id, 42u);
  EXPECT_EQ(l[0].destination, "example.com");
  EXPECT_EQ(l[0].source, "10.0.0.1");
  EXPECT_EQ(l[0].attempt, 1u);
  EXPECT_EQ(l[0].deadline, kT0 + absl::Minutes(10));
  Decision d = MustReport(*e, 42, kT0 + absl::Seconds(2), kOk);
  EXPECT_EQ(d.action, DecisionAction::kDelivered);
  EXPECT_FALSE(d.next_attempt.has_value());
  std::vector<Event> ev = e->DrainEvents();
  ASSERT_THAT(Kinds(ev), ElementsAre(EventKind::kDelivered));
  EXPECT_EQ(*ev[0].msg_id, 42u);
  EXPECT_EQ(ev[0].destination, "example.com");
  EXPECT_EQ(ev[0].source, "10.0.0.1");
  EXPECT_THAT(ev[0].reply, HasSubstr("OK queued"));
  EngineStats s = e->Stats();
  EXPECT_EQ(s.submitted, 1u);
  EXPECT_EQ(s.delivered, 1u);
  EXPECT_EQ(s.pending, 0u);
  ExpectBalanced(*e);
}

TEST_P(EngineBackends, DefaultScheduleDoublesUpToTheCap) {
  EngineConfig c = Unjittered();
  c.backend = GetParam();
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  absl::Time now = kT0;
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 7; ++i) {
    std::vector<Lease> l = Take(*e, now);
    ASSERT_EQ(l.size(), 1u) << "attempt " << i + 1;
    EXPECT_EQ(l[0].attempt, static_cast<uint32_t>(i + 1));
    Decision d = MustReport(*e, 1, now, kTempFail);
    ASSERT_EQ(d.action, DecisionAction::kRetry);
    EXPECT_EQ(d.category, Category::kUnknownTransient);
    delays.push_back(*d.next_attempt - now);
    // Not due a second early.
    EXPECT_THAT(Take(*e, *d.next_attempt - absl::Seconds(1)), IsEmpty());
    now = *d.next_attempt;
  }
  EXPECT_THAT(delays, ElementsAre(absl::Minutes(15), absl::Minutes(30), absl::Hours(1),
                                  absl::Hours(2), absl::Hours(4), absl::Hours(4), absl::Hours(4)));
  ExpectBalanced(*e);
}

// Issue 14 item 8: with the defaults, 80 messages deferred together by one
// destination used to come back at the same instant, every time. Now each
// retry is the schedule's delay ±20 %, so they spread out.
TEST_P(EngineBackends, DefaultJitterSpreadsMessagesDeferredTogether) {
  EngineConfig c;
  c.backend = GetParam();
  DestinationPolicy wide;
  wide.destination = "example.com";
  wide.initial_concurrency = 100;
  wide.max_concurrency = 100;
  c.destinations.push_back(wide);
  auto e = MakeEngine(c);
  for (uint64_t id = 1; id <= 80; ++id) ASSERT_TRUE(e->Submit(id, "example.com", kT0).ok());
  ASSERT_EQ(Take(*e, kT0).size(), 80u);
  std::set<absl::Time> retries;
  absl::Time first = absl::InfiniteFuture(), last = absl::InfinitePast();
  for (uint64_t id = 1; id <= 80; ++id) {
    const absl::Time t = *MustReport(*e, id, kT0, kTempFail).next_attempt;
    EXPECT_GE(t, kT0 + absl::Minutes(12));  // 15 min − 20 %
    EXPECT_LE(t, kT0 + absl::Minutes(18));  // 15 min + 20 %
    retries.insert(t);
    first = std::min(first, t);
    last = std::max(last, t);
  }
  EXPECT_GT(retries.size(), 70u);
  EXPECT_GT(last - first, absl::Minutes(4));
  ExpectBalanced(*e);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, EngineBackends,
                         ::testing::Values(TimerBackend::kWheel, TimerBackend::kQuadHeap,
                                           TimerBackend::kBoostHeap),
                         [](const ::testing::TestParamInfo<TimerBackend>& i) {
                           return i.param == TimerBackend::kWheel      ? std::string("Wheel")
                                  : i.param == TimerBackend::kQuadHeap ? std::string("QuadHeap")
                                                                       : std::string("BoostHeap");
                         });

TEST(Engine, ErrorsAreClearAndChangeNothing) {
  auto e = MakeEngine();
  ASSERT_TRUE(e->Submit(7, "example.com", kT0).ok());
  EXPECT_EQ(e->Submit(7, "other.com", kT0).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(e->Submit(8, "", kT0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->ReportText(99, kT0, kOk).status().code(), absl::StatusCode::kNotFound);
  // Not leased yet.
  EXPECT_EQ(e->ReportText(7, kT0, kOk).status().code(), absl::StatusCode::kFailedPrecondition);
  // Time going backwards.
  absl::Status back = e->Submit(9, "example.com", kT0 - absl::Seconds(1));
  EXPECT_EQ(back.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(back.message()), HasSubstr("backwards"));
  EXPECT_EQ(e->TakeReady(kT0 - absl::Seconds(1), 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_EQ(Take(*e, kT0).size(), 1u);
  // Unparseable reply leaves the lease alone.
  EXPECT_EQ(e->ReportText(7, kT0, "hello").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MustReport(*e, 7, kT0, kOk).action, DecisionAction::kDelivered);
  // Already reported.
  EXPECT_EQ(e->ReportText(7, kT0, kOk).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e->GetDestination("nowhere.example").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e->Stats().submitted, 1u);
  ExpectBalanced(*e);
}

// A schedule or reaction for `delivered` would never match: it is refused,
// naming the rule, instead of being silently ignored.
TEST(Engine, DeliveredCategoryInRulesIsRejected) {
  EngineConfig c;
  ReactionRule r;
  r.name = "on-success";
  r.categories = {Category::kDelivered};
  r.suspend_for = absl::Minutes(5);
  c.reactions = {r};
  absl::Status s = Engine::Create(c).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("reactions[0] 'on-success'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("'delivered' never matches"));
  c = EngineConfig{};
  ScheduleOverride o;
  o.name = "after-ok";
  o.categories = {Category::kMailboxFull, Category::kDelivered};
  o.fixed_delay = absl::Minutes(1);
  c.overrides = {o};
  s = Engine::Create(c).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("overrides[0] 'after-ok'"));
  c.overrides[0].categories = {Category::kMailboxFull};
  EXPECT_TRUE(Engine::Create(c).ok());
}

TEST(Engine, InvalidConfigIsRejected) {
  EngineConfig c;
  c.retry.multiplier = 0;
  EXPECT_EQ(Engine::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = EngineConfig{};
  c.destination_defaults.initial_concurrency = 50;  // above max 20
  EXPECT_EQ(Engine::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = EngineConfig{};
  ReactionRule r;
  r.name = "x";
  r.text_regex = "(unclosed";
  r.suspend_for = absl::Hours(1);
  c.reactions = {r};
  absl::Status s = Engine::Create(c).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("regex"));
  c = EngineConfig{};
  r.text_regex = "ok";
  r.suspend_for.reset();
  c.reactions = {r};
  EXPECT_THAT(std::string(Engine::Create(c).status().message()), HasSubstr("needs an action"));
  c = EngineConfig{};
  c.lease_timeout = absl::ZeroDuration();
  EXPECT_FALSE(Engine::Create(c).ok());
}

// Timer queues count ticks from the epoch up to 2^62: at 1 ns that ends in
// 2116, within a 100-year message lifetime of today, so wake-ups armed then
// would fall outside the queue. The finest resolution is 1 us (146,000 years).
TEST(Engine, TimerResolutionBelowOneMicrosecondIsRejected) {
  EngineConfig c;
  c.timer_resolution = absl::Nanoseconds(999);
  absl::Status s = Engine::Create(c).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("timer_resolution"));
  c.timer_resolution = absl::Microseconds(1);
  EXPECT_TRUE(Engine::Create(c).ok());
}

TEST(Engine, NotBeforeDelaysTheFirstAttempt) {
  auto e = MakeEngine();
  ASSERT_TRUE(e->Submit(1, "example.com", kT0, "", kT0 + absl::Hours(1)).ok());
  EXPECT_THAT(Take(*e, kT0 + absl::Minutes(59)), IsEmpty());
  EXPECT_EQ(e->NextWakeup(), kT0 + absl::Hours(1));
  EXPECT_EQ(Take(*e, kT0 + absl::Hours(1)).size(), 1u);
}

TEST(Engine, PermanentFailureBouncesWithCategory) {
  auto e = MakeEngine();
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  Take(*e, kT0);
  Decision d = MustReport(*e, 1, kT0, kUnknownUser);
  EXPECT_EQ(d.action, DecisionAction::kBounced);
  EXPECT_EQ(d.category, Category::kMailboxUnknown);
  std::vector<Event> ev = e->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, EventKind::kBounced);
  EXPECT_EQ(ev[0].status, "5.1.1");
  EXPECT_EQ(e->Stats().bounced, 1u);
  ExpectBalanced(*e);
}

EngineConfig ShortLifetime(bool last_attempt) {
  EngineConfig c = Unjittered();
  c.retry.initial_delay = absl::Hours(1);
  c.retry.lifetime = absl::Hours(3);
  c.retry.attempt_at_lifetime_end = last_attempt;
  return c;
}

TEST(Engine, ExpiresWithLastAttemptAtLifetimeEnd) {
  auto e = MakeEngine(ShortLifetime(true));
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  Take(*e, kT0);
  EXPECT_EQ(*MustReport(*e, 1, kT0, kTempFail).next_attempt, kT0 + absl::Hours(1));
  Take(*e, kT0 + absl::Hours(1));
  // 2 h would land at 3 h: exactly the end, so the last try is at the end.
  EXPECT_EQ(*MustReport(*e, 1, kT0 + absl::Hours(1), kTempFail).next_attempt, kT0 + absl::Hours(3));
  ASSERT_EQ(Take(*e, kT0 + absl::Hours(3)).size(), 1u);
  Decision d = MustReport(*e, 1, kT0 + absl::Hours(3), "452 4.2.2 Mailbox full");
  EXPECT_EQ(d.action, DecisionAction::kExpired);
  std::vector<Event> ev = e->DrainEvents();
  ASSERT_FALSE(ev.empty());
  const Event& x = ev.back();
  EXPECT_EQ(x.kind, EventKind::kExpired);
  EXPECT_EQ(x.status, "4.4.7");
  EXPECT_THAT(x.reply, HasSubstr("Mailbox full"));
  EXPECT_EQ(x.attempt, 3u);
  EXPECT_EQ(Count(ev, EventKind::kBounced), 0);
  EngineStats s = e->Stats();
  EXPECT_EQ(s.expired, 1u);
  EXPECT_EQ(s.bounced, 0u);
  ExpectBalanced(*e);
}

TEST(Engine, ExpiresEarlyWhenLastAttemptIsOff) {
  auto e = MakeEngine(ShortLifetime(false));
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  Take(*e, kT0);
  MustReport(*e, 1, kT0, kTempFail);
  Take(*e, kT0 + absl::Hours(1));
  EXPECT_EQ(MustReport(*e, 1, kT0 + absl::Hours(1), kTempFail).action, DecisionAction::kExpired);
}

TEST(Engine, LeaseTimeoutReturnsTheMessage) {
  auto e = MakeEngine();
  ASSERT_TRUE(e->Submit(5, "example.com", kT0).ok());
  ASSERT_EQ(Take(*e, kT0).size(), 1u);
  EXPECT_EQ(e->NextWakeup(), kT0 + absl::Minutes(10));
  std::vector<Lease> again = Take(*e, kT0 + absl::Minutes(10));
  ASSERT_EQ(again.size(), 1u);  // expired lease, due again at once
  EXPECT_EQ(again[0].attempt, 2u);
  std::vector<Event> ev = e->DrainEvents();
  ASSERT_THAT(Kinds(ev), ElementsAre(EventKind::kLeaseExpired));
  EXPECT_EQ(*ev[0].msg_id, 5u);
  EXPECT_EQ(e->Stats().lease_expirations, 1u);
  ExpectBalanced(*e);
}

TEST(Engine, LateReportAfterLeaseExpiryIsFailedPrecondition) {
  auto e = MakeEngine();
  ASSERT_TRUE(e->Submit(5, "example.com", kT0).ok());
  Take(*e, kT0);
  absl::StatusOr<Decision> d = e->ReportText(5, kT0 + absl::Minutes(11), kOk);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
  ExpectBalanced(*e);
}

TEST(Engine, ExpiryIsEnforcedWhileLeased) {
  EngineConfig c = ShortLifetime(true);
  c.lease_timeout = absl::Hours(5);
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  Take(*e, kT0);
  ASSERT_TRUE(e->Advance(kT0 + absl::Hours(5)).ok());
  std::vector<Event> ev = e->DrainEvents();
  ASSERT_THAT(Kinds(ev), ElementsAre(EventKind::kExpired));
  EXPECT_EQ(ev[0].status, "4.4.7");
  EXPECT_EQ(e->Stats().expired, 1u);
  ExpectBalanced(*e);
}

TEST(Engine, ExpiryIsEnforcedWhileTheDestinationIsSuspended) {
  EngineConfig c = ShortLifetime(true);
  ReactionRule r;
  r.name = "yahoo-tss04";
  r.text_regex = R"(\[TSS04\])";
  r.suspend_for = absl::Hours(10);
  c.reactions = {r};
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(1, "yahoo.com", kT0).ok());
  ASSERT_EQ(Take(*e, kT0, 1).size(), 1u);
  ASSERT_TRUE(e->Submit(2, "yahoo.com", kT0 + absl::Minutes(1)).ok());
  MustReport(*e, 1, kT0 + absl::Minutes(1), kYahoo);
  absl::StatusOr<DestinationInfo> info = e->GetDestination("yahoo.com");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->suspended_until, kT0 + absl::Minutes(1) + absl::Hours(10));
  // Message 2 is due but waits; nothing is attempted while suspended.
  EXPECT_THAT(Take(*e, kT0 + absl::Hours(2)), IsEmpty());
  ASSERT_TRUE(e->Advance(kT0 + absl::Hours(4)).ok());
  std::vector<Event> ev = e->DrainEvents();
  EXPECT_EQ(Count(ev, EventKind::kExpired), 2);
  for (const Event& x : ev) {
    if (x.kind == EventKind::kExpired) {
      EXPECT_EQ(x.status, "4.4.7");
      EXPECT_THAT(x.detail, HasSubstr("suspended"));
    }
  }
  ExpectBalanced(*e);
}

TEST(Engine, GreylistingRetriesSoonWithoutGrowingTheBackoff) {
  auto e = MakeEngine(Unjittered());
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  absl::Time now = kT0;
  std::vector<absl::Duration> delays;
  for (const char* reply : {kTempFail, kGreylisted, kGreylisted, kTempFail}) {
    ASSERT_EQ(Take(*e, now).size(), 1u);
    Decision d = MustReport(*e, 1, now, reply);
    delays.push_back(*d.next_attempt - now);
    now = *d.next_attempt;
  }
  EXPECT_THAT(delays, ElementsAre(absl::Minutes(15), absl::Minutes(5), absl::Minutes(5),
                                  absl::Minutes(30)));
}

TEST(Engine, GreylistingFallsBackToTheScheduleAfterThreeInARow) {
  EngineConfig c = Unjittered();
  c.destination_defaults.learn_greylist_delay = false;  // the fixed override alone
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  absl::Time now = kT0;
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Take(*e, now).size(), 1u);
    Decision d = MustReport(*e, 1, now, kGreylisted);
    delays.push_back(*d.next_attempt - now);
    now = *d.next_attempt;
  }
  EXPECT_THAT(delays, ElementsAre(absl::Minutes(5), absl::Minutes(5), absl::Minutes(5),
                                  absl::Minutes(15), absl::Minutes(5)));
}

TEST(Engine, ConnectionRefusedDoesNotBurnTheSchedule) {
  auto e = MakeEngine(Unjittered());
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  absl::Time now = kT0;
  std::vector<absl::Duration> delays;
  std::vector<std::string_view> schedules;
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Take(*e, now).size(), 1u) << i;
    absl::StatusOr<Decision> d =
        (i == 2 || i == 3) ? e->Report(1, now, TransportReply(Transport::kConnectionRefused))
                           : e->ReportText(1, now, kTempFail);
    ASSERT_TRUE(d.ok()) << d.status();
    delays.push_back(*d->next_attempt - now);
    schedules.push_back(d->schedule);
    now = *d->next_attempt;
  }
  // 15m, 30m, then two refusals retried at 5 min without advancing, then 1 h, not 4 h.
  EXPECT_THAT(delays, ElementsAre(absl::Minutes(15), absl::Minutes(30), absl::Minutes(5),
                                  absl::Minutes(5), absl::Hours(1)));
  EXPECT_EQ(schedules[2], "builtin:connection");
}

// An isolated lost connection (here mid-DATA) says nothing about the
// receiver: it is retried at 5 min twice; a third failure in a row waits the
// message's current step (15 min) and still does not advance the backoff.
TEST(Engine, TransportFailuresRetrySoonThenHoldTheirStep) {
  auto e = MakeEngine(Unjittered());
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  absl::Time now = kT0;
  std::vector<absl::Duration> delays;
  const Transport kinds[] = {Transport::kConnectionDropped, Transport::kConnectTimeout,
                             Transport::kConnectionDropped, Transport::kConnectionRefused};
  for (Transport t : kinds) {
    ASSERT_EQ(Take(*e, now).size(), 1u);
    absl::StatusOr<Decision> d = e->Report(1, now, TransportReply(t));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->schedule, "builtin:connection");
    delays.push_back(*d->next_attempt - now);
    now = *d->next_attempt;
  }
  ASSERT_EQ(Take(*e, now).size(), 1u);
  absl::StatusOr<Decision> d = e->ReportText(1, now, kTempFail);
  ASSERT_TRUE(d.ok()) << d.status();
  delays.push_back(*d->next_attempt - now);
  EXPECT_THAT(delays, ElementsAre(absl::Minutes(5), absl::Minutes(5), absl::Minutes(15),
                                  absl::Minutes(15), absl::Minutes(15)));
}

// quick_connection_retry = false (and files saved before format 6): every
// connection failure waits the message's current step, as before.
TEST(Engine, QuickConnectionRetryOff) {
  EngineConfig c = Unjittered();
  c.destination_defaults.quick_connection_retry = false;
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  absl::Time now = kT0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Take(*e, now).size(), 1u);
    absl::StatusOr<Decision> d = e->Report(1, now, TransportReply(Transport::kConnectionDropped));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->schedule, "builtin:connection");
    EXPECT_EQ(*d->next_attempt - now, absl::Minutes(15));
    now = *d->next_attempt;
  }
}

TEST(Engine, PerDestinationAndPerCategoryOverrides) {
  EngineConfig c;
  ScheduleOverride gmail;
  gmail.name = "gmail";
  gmail.destination = "*.gmail.example";
  gmail.policy = RetryPolicy::Default();
  gmail.policy->initial_delay = absl::Minutes(2);
  gmail.policy->lifetime = absl::Hours(1);
  ScheduleOverride mailbox_full;
  mailbox_full.name = "mailbox-full-slow";
  mailbox_full.categories = {Category::kMailboxFull};
  mailbox_full.policy = RetryPolicy::Default();
  mailbox_full.policy->initial_delay = absl::Hours(6);
  mailbox_full.policy->max_delay = absl::Hours(24);
  c.overrides = {gmail, mailbox_full};
  auto e = MakeEngine(Unjittered(c));
  ASSERT_TRUE(e->Submit(1, "mx.gmail.example", kT0).ok());
  ASSERT_TRUE(e->Submit(2, "other.example", kT0).ok());
  ASSERT_EQ(Take(*e, kT0).size(), 2u);
  Decision d1 = MustReport(*e, 1, kT0, kTempFail);
  EXPECT_EQ(*d1.next_attempt, kT0 + absl::Minutes(2));
  EXPECT_EQ(d1.schedule, "gmail");
  Decision d2 = MustReport(*e, 2, kT0, "452 4.2.2 Mailbox full");
  EXPECT_EQ(*d2.next_attempt, kT0 + absl::Hours(6));
  EXPECT_EQ(d2.schedule, "mailbox-full-slow");
  // The destination override also sets the lifetime (1 h).
  ASSERT_TRUE(e->Advance(kT0 + absl::Hours(2)).ok());
  Take(*e, kT0 + absl::Hours(2));
  EXPECT_EQ(e->Stats().expired, 1u);
}

TEST(Engine, RoundRobinDoesNotLetABigDestinationStarveSmallOnes) {
  EngineConfig c;
  c.destination_defaults.initial_concurrency = 1000;
  c.destination_defaults.max_concurrency = 1000;
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 500; ++i) ASSERT_TRUE(e->Submit(i, "big.example", kT0).ok());
  for (uint64_t i = 0; i < 10; ++i)
    ASSERT_TRUE(e->Submit(1000 + i, absl::StrCat("small", i, ".example"), kT0).ok());
  std::vector<Lease> l = Take(*e, kT0, 20);
  ASSERT_EQ(l.size(), 20u);
  std::set<std::string> small;
  for (const Lease& x : l) {
    if (x.destination != "big.example") small.insert(std::string(x.destination));
  }
  EXPECT_EQ(small.size(), 10u);
}

TEST(Engine, FirstAttemptsAreNotStarvedBehindRetries) {
  EngineConfig c;
  c.destination_defaults.initial_concurrency = 100;
  c.destination_defaults.max_concurrency = 100;
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 40; ++i) ASSERT_TRUE(e->Submit(i, "example.com", kT0).ok());
  for (const Lease& l : Take(*e, kT0, 40)) MustReport(*e, l.msg_id, kT0, kTempFail);
  // 40 retries due at +15 min; 10 new messages arrive then.
  const absl::Time t1 = kT0 + absl::Minutes(15);
  for (uint64_t i = 100; i < 110; ++i) ASSERT_TRUE(e->Submit(i, "example.com", t1).ok());
  std::vector<Lease> l = Take(*e, t1, 10);
  ASSERT_EQ(l.size(), 10u);
  int first = 0;
  for (const Lease& x : l) first += x.attempt == 1;
  EXPECT_EQ(first, 5);
}

TEST(Engine, SubmitManyAndReportMany) {
  auto e = MakeEngine();
  std::vector<uint64_t> ids = {1, 2, 3, 4};
  std::vector<uint32_t> idx = {0, 1, 0, 1};
  std::vector<std::string> names = {"a.example", "b.example"};
  ASSERT_TRUE(e->SubmitMany(ids, idx, names, kT0).ok());
  // All-or-nothing.
  std::vector<uint64_t> dup = {5, 1};
  std::vector<uint32_t> idx2 = {0, 0};
  EXPECT_EQ(e->SubmitMany(dup, idx2, names, kT0).code(), absl::StatusCode::kAlreadyExists);
  std::vector<uint32_t> bad = {0, 7};
  std::vector<uint64_t> fresh = {5, 6};
  EXPECT_EQ(e->SubmitMany(fresh, bad, names, kT0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Stats().submitted, 4u);
  std::vector<Lease> l = Take(*e, kT0);
  ASSERT_EQ(l.size(), 4u);
  std::vector<uint64_t> rids = {1, 2, 3, 999};
  std::vector<std::string> replies = {kOk, kTempFail, kUnknownUser, kOk};
  std::vector<absl::StatusOr<Decision>> d = e->ReportManyText(rids, replies, kT0);
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d[0]->action, DecisionAction::kDelivered);
  EXPECT_EQ(d[1]->action, DecisionAction::kRetry);
  EXPECT_EQ(d[2]->action, DecisionAction::kBounced);
  EXPECT_EQ(d[3].status().code(), absl::StatusCode::kNotFound);
  ExpectBalanced(*e);
}

// Drives an engine with a seeded mix of everything; returns the event stream.
TEST(Engine, NextWakeupTracksTheEarliestWork) {
  auto e = MakeEngine(Unjittered());
  EXPECT_FALSE(e->NextWakeup().has_value());
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  EXPECT_EQ(e->NextWakeup(), kT0);  // dispatchable now
  Take(*e, kT0);
  MustReport(*e, 1, kT0, kTempFail);
  EXPECT_EQ(e->NextWakeup(), kT0 + absl::Minutes(15));
}

TEST(Engine, EventBufferIsBounded) {
  EngineConfig c;
  c.max_buffered_events = 3;
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 5; ++i)
    ASSERT_TRUE(e->Submit(i, absl::StrCat("d", i, ".example"), kT0).ok());
  for (const Lease& l : Take(*e, kT0)) MustReport(*e, l.msg_id, kT0, kOk);
  EXPECT_EQ(e->DrainEvents().size(), 3u);
  EXPECT_EQ(e->Stats().events_dropped, 2u);
}

}  // namespace
}  // namespace mailretry
