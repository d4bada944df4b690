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

namespace mailretry {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

constexpr char kOk[] = "250 2.0.0 OK queued";
constexpr char kTempFail[] = "451 4.3.0 Temporary failure";
constexpr char k421Generic[] = "421 4.3.0 Temporary local problem, please try again";
constexpr char kUnknownUser[] = "550 5.1.1 User unknown";
constexpr char kGreylisted[] = "451 4.7.1 Greylisted, please try again later";
constexpr char kTooMany[] = "421 4.7.0 Too many concurrent connections from your IP";
constexpr char kRateLimited[] = "421 4.7.28 Our system has detected an unusual rate of unsolicited mail";
constexpr char kBusy[] = "421 4.4.5 Server busy, try again later";
constexpr char kPtr[] = "451 4.7.25 PTR record does not match";
constexpr char kDnsbl[] = "450 4.7.1 Service unavailable; Client host blocked using zen.spamhaus.org";
constexpr char kYahoo[] = "421 4.7.0 [TSS04] Messages temporarily deferred due to user complaints";

std::unique_ptr<Engine> MakeEngine(EngineConfig c = {}, uint64_t seed = 1) {
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Create(std::move(c), seed);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

std::vector<Lease> Take(Engine& e, absl::Time now, size_t limit = 1000) {
  absl::StatusOr<std::vector<Lease>> l = e.TakeReady(now, limit);
  EXPECT_TRUE(l.ok()) << l.status();
  return l.ok() ? *l : std::vector<Lease>{};
}

Decision MustReport(Engine& e, uint64_t id, absl::Time now, std::string_view reply) {
  absl::StatusOr<Decision> d = e.ReportText(id, now, reply);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *d : Decision{};
}

std::vector<EventKind> Kinds(const std::vector<Event>& ev) {
  std::vector<EventKind> out;
  for (const Event& e : ev) out.push_back(e.kind);
  return out;
}

int Count(const std::vector<Event>& ev, EventKind k) {
  return static_cast<int>(std::count_if(ev.begin(), ev.end(), [&](const Event& e) { return e.kind == k; }));
}

std::string Render(const Event& e) {
  std::string s = absl::StrCat(std::string(EventKindName(e.kind)), "@", absl::FormatTime(e.time), " ", e.msg_id.value_or(0), " ",
                               std::string(e.destination), "/", std::string(e.source), " a", e.attempt, " ",
                               e.category ? std::string(CategoryName(*e.category)) : "-", " ", e.status, " ",
                               e.reply, " | ", e.detail, " | ", e.rule);
  if (e.next_attempt) absl::StrAppend(&s, " next=", absl::FormatTime(*e.next_attempt));
  if (e.until) absl::StrAppend(&s, " until=", absl::FormatTime(*e.until));
  return s;
}

void ExpectBalanced(const Engine& e) {
  EngineStats s = e.Stats();
  EXPECT_EQ(s.submitted, s.delivered + s.bounced + s.expired + s.pending);
  EXPECT_EQ(s.pending, s.scheduled + s.ready + s.leased);
  absl::Status inv = e.CheckInvariants();
  EXPECT_TRUE(inv.ok()) << inv;
}

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
  EngineConfig c;
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
  EXPECT_THAT(delays, ElementsAre(absl::Minutes(15), absl::Minutes(30), absl::Hours(1), absl::Hours(2),
                                  absl::Hours(4), absl::Hours(4), absl::Hours(4)));
  ExpectBalanced(*e);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, EngineBackends,
                         ::testing::Values(TimerBackend::kWheel, TimerBackend::kQuadHeap, TimerBackend::kBoostHeap),
                         [](const ::testing::TestParamInfo<TimerBackend>& i) {
                           return i.param == TimerBackend::kWheel       ? std::string("Wheel")
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
  EXPECT_EQ(e->TakeReady(kT0 - absl::Seconds(1), 10).status().code(), absl::StatusCode::kInvalidArgument);
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
  EngineConfig c;
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
  auto e = MakeEngine();
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  absl::Time now = kT0;
  std::vector<absl::Duration> delays;
  for (const char* reply : {kTempFail, kGreylisted, kGreylisted, kTempFail}) {
    ASSERT_EQ(Take(*e, now).size(), 1u);
    Decision d = MustReport(*e, 1, now, reply);
    delays.push_back(*d.next_attempt - now);
    now = *d.next_attempt;
  }
  EXPECT_THAT(delays, ElementsAre(absl::Minutes(15), absl::Minutes(5), absl::Minutes(5), absl::Minutes(30)));
}

TEST(Engine, GreylistingFallsBackToTheScheduleAfterThreeInARow) {
  auto e = MakeEngine();
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  absl::Time now = kT0;
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Take(*e, now).size(), 1u);
    Decision d = MustReport(*e, 1, now, kGreylisted);
    delays.push_back(*d.next_attempt - now);
    now = *d.next_attempt;
  }
  EXPECT_THAT(delays, ElementsAre(absl::Minutes(5), absl::Minutes(5), absl::Minutes(5), absl::Minutes(15),
                                  absl::Minutes(5)));
}

TEST(Engine, ConnectionRefusedDoesNotBurnTheSchedule) {
  auto e = MakeEngine();
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
  // 15m, 30m, then two refusals at the current step (1 h) without advancing, then 1 h, not 4 h.
  EXPECT_THAT(delays, ElementsAre(absl::Minutes(15), absl::Minutes(30), absl::Hours(1), absl::Hours(1),
                                  absl::Hours(1)));
  EXPECT_EQ(schedules[2], "builtin:connection");
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
  auto e = MakeEngine(c);
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
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(e->Submit(1000 + i, absl::StrCat("small", i, ".example"), kT0).ok());
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
  EXPECT_NEAR(*e->GetDestination("example.com")->rate_per_second, 1.0, 1e-9);  // unlimited_cut_to 60/min
  ASSERT_TRUE(e->Advance(kT0 + absl::Minutes(20)).ok());
  EXPECT_NEAR(*e->GetDestination("example.com")->rate_per_second, 4.0, 1e-9);
  ASSERT_TRUE(e->Advance(kT0 + absl::Minutes(30)).ok());
  EXPECT_FALSE(e->GetDestination("example.com")->rate_per_second.has_value());
}

TEST(Engine, SuspensionGrowsWithRepeatsAndResetsAfterSuccess) {
  EngineConfig c;
  c.lease_timeout = absl::Hours(1);
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
  EXPECT_EQ(e->GetDestination("example.com")->suspended_until, kT0 + absl::Minutes(21));  // back to 5 min
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
      EXPECT_FALSE(x.categories.empty());
      EXPECT_THAT(x.samples, Not(IsEmpty()));
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
  std::vector<Event> all;
  for (int round = 0; round < 200 && Count(all, EventKind::kStructuralFailure) == 0; ++round) {
    for (const Lease& l : Take(*e, now)) MustReport(*e, l.msg_id, now, kDnsbl);
    std::vector<Event> ev = e->DrainEvents();
    all.insert(all.end(), ev.begin(), ev.end());
    now += absl::Minutes(5);
  }
  ASSERT_EQ(Count(all, EventKind::kStructuralFailure), 1);
  const Event* sf = nullptr;
  for (const Event& x : all) {
    if (x.kind == EventKind::kStructuralFailure) sf = &x;
  }
  EXPECT_EQ(sf->destination, dest);
  ASSERT_FALSE(sf->categories.empty());
  EXPECT_EQ(sf->categories[0].count, 18u);  // 3 messages × 6 failures
  EXPECT_THAT(sf->samples, Not(IsEmpty()));
  EXPECT_EQ(sf->categories[0].category, Category::kDnsblListed);
  ASSERT_THAT(sf->remediation, Not(IsEmpty()));
  EXPECT_THAT(sf->remediation[0], HasSubstr("DNSBL"));
  EXPECT_THAT(sf->samples[0], HasSubstr("spamhaus"));
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
    ADD_FAILURE() << "no probe at " << probe_at << " now=" << now << " ready=" << i2->ready << " inflight=" << i2->in_flight
                  << " susp=" << (i2->suspended_until ? absl::FormatTime(*i2->suspended_until) : "none")
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
  EXPECT_EQ(Take(*e, probe_at + absl::Minutes(31)).size(), 2u);  // released: no longer one at a time
  ExpectBalanced(*e);
}

TEST(Engine, UnambiguousEvidenceIsStructuralBeforeAFullCycle) {
  auto e = MakeEngine();
  absl::Time now = kT0;
  uint64_t id = 1;
  std::vector<Event> all;
  // 12 new messages an hour, all rejected for PTR, for 3 hours.
  for (int step = 0; step < 36 && Count(all, EventKind::kStructuralFailure) == 0; ++step) {
    ASSERT_TRUE(e->Submit(id++, "strict.example", now).ok());
    for (const Lease& l : Take(*e, now)) MustReport(*e, l.msg_id, now, kPtr);
    std::vector<Event> ev = e->DrainEvents();
    all.insert(all.end(), ev.begin(), ev.end());
    now += absl::Minutes(5);
  }
  ASSERT_EQ(Count(all, EventKind::kStructuralFailure), 1);
  for (const Event& x : all) {
    if (x.kind != EventKind::kStructuralFailure) continue;
    EXPECT_EQ(x.categories[0].category, Category::kPtrRdns);
    EXPECT_THAT(x.remediation[0], HasSubstr("PTR"));
    EXPECT_LT(x.time, kT0 + absl::Hours(3));
    EXPECT_GE(x.time, kT0 + absl::Hours(2));
  }
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
struct Driver {
  std::mt19937_64 rng;
  absl::Time now = kT0;
  uint64_t next_id = 1;
  std::vector<uint64_t> leased;
  std::vector<std::string> rendered;
  explicit Driver(uint64_t seed) : rng(seed) {}

  void Step(Engine& e, bool check) {
    static const char* kReplies[] = {kOk,      kOk,     kOk,        kOk,  kOk,    kTempFail, k421Generic,
                                     kUnknownUser, kGreylisted, kTooMany, kBusy, kPtr, kRateLimited};
    std::uniform_int_distribution<int> op(0, 9);
    const int o = op(rng);
    if (o <= 2) {
      const int n = static_cast<int>(rng() % 5);
      for (int i = 0; i < n; ++i) {
        const std::string dest = absl::StrCat("d", rng() % 7, ".example");
        const std::string src = (rng() % 3 == 0) ? "ip1" : "";
        std::optional<absl::Time> nb;
        if (rng() % 5 == 0) nb = now + absl::Minutes(static_cast<int64_t>(rng() % 60));
        ASSERT_TRUE(e.Submit(next_id++, dest, now, src, nb).ok());
      }
    } else if (o <= 5) {
      for (const Lease& l : Take(e, now, rng() % 8)) leased.push_back(l.msg_id);
    } else if (o <= 8 && !leased.empty()) {
      // Mostly recent leases, like a sender that reports promptly; older
      // ones may have expired.
      const size_t k = leased.size() - 1 - rng() % std::min<size_t>(leased.size(), 4);
      const uint64_t id = leased[k];
      leased.erase(leased.begin() + static_cast<long>(k));
      absl::StatusOr<Decision> d = e.ReportText(id, now, kReplies[rng() % (sizeof kReplies / sizeof *kReplies)]);
      // A lease may have expired meanwhile (the message is then due again,
      // or finished after a newer lease): the only errors allowed.
      if (!d.ok()) {
        ASSERT_TRUE(d.status().code() == absl::StatusCode::kFailedPrecondition ||
                    d.status().code() == absl::StatusCode::kNotFound)
            << d.status();
      }
    } else if (rng() % 3 == 0) {
      now += absl::Seconds(static_cast<int64_t>(rng() % 3600));
      ASSERT_TRUE(e.Advance(now).ok());
    }
    now += absl::Seconds(static_cast<int64_t>(rng() % 60));
    for (const Event& ev : e.DrainEvents()) rendered.push_back(Render(ev));
    if (check) ExpectBalanced(e);
  }
};

EngineConfig RandomizedConfig() {
  EngineConfig c;
  c.retry.jitter = Jitter::kDecorrelated;
  c.retry.lifetime = absl::Hours(30);
  c.lease_timeout = absl::Minutes(20);
  c.destination_defaults.rate = {30, absl::Minutes(1)};
  ReactionRule r;
  r.name = "busy";
  r.text_regex = "busy";
  r.threshold = 3;
  r.window = absl::Hours(1);
  r.set_rate = RateLimit{5, absl::Minutes(1)};
  r.duration = absl::Minutes(30);
  c.reactions = {r};
  c.structural.cycle_messages = 2;
  return c;
}

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

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/", name, ".", ::getpid());
}

TEST(Engine, SnapshotMidRunReplaysIdentically) {
  auto a = MakeEngine(RandomizedConfig(), 9);
  Driver da(11);
  for (int i = 0; i < 1200; ++i) da.Step(*a, false);
  const std::string path = TempPath("mid.snap");
  ASSERT_TRUE(a->Save(path).ok());
  absl::StatusOr<std::unique_ptr<Engine>> b = Engine::Load(path);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE((*b)->CheckInvariants().ok());
  EXPECT_EQ((*b)->seed(), 9u);
  EngineStats sa = a->Stats(), sb = (*b)->Stats();
  EXPECT_EQ(sa.submitted, sb.submitted);
  EXPECT_EQ(sa.pending, sb.pending);
  EXPECT_GT(sa.pending, 10u);
  Driver db = da;  // same driver state from here on
  da.rendered.clear();
  db.rendered.clear();
  for (int i = 0; i < 1500; ++i) {
    da.Step(*a, false);
    db.Step(**b, false);
  }
  ASSERT_GT(da.rendered.size(), 200u);
  EXPECT_EQ(da.rendered, db.rendered);
  std::remove(path.c_str());
}

TEST(Engine, SnapshotKeepsUndrainedEventsAndDestinationState) {
  auto a = MakeEngine();
  ASSERT_TRUE(a->Submit(1, "example.com", kT0, "ip9").ok());
  Take(*a, kT0);
  MustReport(*a, 1, kT0, kBusy);
  const std::string path = TempPath("events.snap");
  ASSERT_TRUE(a->Save(path).ok());
  absl::StatusOr<std::unique_ptr<Engine>> b = Engine::Load(path);
  ASSERT_TRUE(b.ok()) << b.status();
  std::vector<Event> ea = a->DrainEvents(), eb = (*b)->DrainEvents();
  ASSERT_EQ(ea.size(), eb.size());
  for (size_t i = 0; i < ea.size(); ++i) EXPECT_EQ(Render(ea[i]), Render(eb[i]));
  EXPECT_EQ((*b)->GetDestination("example.com", "ip9")->suspended_until, kT0 + absl::Minutes(5));
  std::remove(path.c_str());
}

TEST(Engine, CorruptOrTruncatedSnapshotIsAClearError) {
  auto a = MakeEngine();
  for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(a->Submit(i, "example.com", kT0).ok());
  const std::string path = TempPath("good.snap");
  ASSERT_TRUE(a->Save(path).ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 100u);
  auto write = [](const std::string& p, const std::string& b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << b;
  };
  const std::string bad = TempPath("bad.snap");
  write(bad, bytes.substr(0, bytes.size() / 2));
  absl::Status s = Engine::Load(bad).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("truncated"));
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x40;
  write(bad, flipped);
  s = Engine::Load(bad).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("checksum"));
  write(bad, "not a snapshot at all, just text");
  EXPECT_EQ(Engine::Load(bad).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Engine::Load(TempPath("missing.snap")).status().code(), absl::StatusCode::kNotFound);
  // A failed save leaves the previous snapshot intact.
  EXPECT_FALSE(a->Save("/nonexistent-dir/x.snap").ok());
  ASSERT_TRUE(a->Submit(100, "example.com", kT0).ok());
  absl::StatusOr<std::unique_ptr<Engine>> still = Engine::Load(path);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ((*still)->Stats().submitted, 20u);
  std::remove(path.c_str());
  std::remove(bad.c_str());
}

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
  EXPECT_EQ(e->GetDestination("example.com", "other-ip").status().code(), absl::StatusCode::kNotFound);
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
          if (!e->ReportText(x.msg_id, kT0, (x.msg_id % 4 == 0) ? kTempFail : kOk).ok()) ++time_errors;
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

TEST(Engine, NextWakeupTracksTheEarliestWork) {
  auto e = MakeEngine();
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
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(e->Submit(i, absl::StrCat("d", i, ".example"), kT0).ok());
  for (const Lease& l : Take(*e, kT0)) MustReport(*e, l.msg_id, kT0, kOk);
  EXPECT_EQ(e->DrainEvents().size(), 3u);
  EXPECT_EQ(e->Stats().events_dropped, 2u);
}

}  // namespace
}  // namespace mailretry
