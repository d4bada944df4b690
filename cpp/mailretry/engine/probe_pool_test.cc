// File: engine/probe_pool_test.cc
// Issue 12, round 3: half-open probes pooled over the sources of one
// destination domain (one probe per interval per domain; a probe that gets
// through wakes the other sources' probes), and the built-in schedule for
// full mailboxes.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/engine_test_util.h"

namespace mailretry {
namespace {

using namespace ::mailretry::engine_test;  // NOLINT: the shared test vocabulary
using ::testing::ElementsAre;
using ::testing::IsEmpty;

const std::vector<std::string> kSources = {"ip-a", "ip-b", "ip-c"};
constexpr char kDomain[] = "yahoo.example";

// 10 messages per source to one domain; every first attempt is refused with
// a reputation deferral, so each (domain, source) pair is half-open after it.
std::unique_ptr<Engine> ThreeSuspendedPairs(EngineConfig c = {}) {
  auto e = MakeEngine(std::move(c));
  uint64_t id = 0;
  for (const std::string& s : kSources) {
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(e->Submit(id++, kDomain, kT0, s).ok());
  }
  for (const Lease& l : Take(*e, kT0)) MustReport(*e, l.msg_id, kT0, kYahoo);
  for (const std::string& s : kSources) {
    absl::StatusOr<DestinationInfo> info = e->GetDestination(kDomain, s);
    EXPECT_TRUE(info.ok() && info->suspended_until.has_value()) << s;
  }
  return e;
}

// Polls every 30 s from kT0 + 30 s to `end`; every lease is refused with
// `reply` before `open_at` and accepted from then on. Returns the leases per
// source, and the time of each source's first delivery.
struct Poll {
  std::map<std::string, int> leases;
  std::map<std::string, absl::Time> first_delivery;
};
Poll PollUntil(Engine& e, absl::Time end, absl::Time open_at, const char* reply) {
  Poll out;
  for (absl::Time now = kT0 + absl::Seconds(30); now <= end; now += absl::Seconds(30)) {
    for (const Lease& l : Take(e, now)) {
      ++out.leases[std::string(l.source)];
      if (now < open_at) {
        MustReport(e, l.msg_id, now, reply);
      } else {
        MustReport(e, l.msg_id, now, kOk);
        out.first_delivery.emplace(std::string(l.source), now);
      }
    }
  }
  return out;
}

TEST(PooledProbes, OneProbePerIntervalForTheDomainNotOnePerSource) {
  auto e = ThreeSuspendedPairs();
  // One hour of a block that refuses every source.
  const Poll p = PollUntil(*e, kT0 + absl::Hours(1), absl::InfiniteFuture(), kYahoo);
  int total = 0;
  for (const auto& [src, n] : p.leases) total += n;
  // Unpooled, each of the three sources probed every 5 min: about 36 probes.
  // Pooled: one per 5-min interval for the domain (plus the polling step).
  EXPECT_GE(total, 10);
  EXPECT_LE(total, 60 / 5 + 1);
  ExpectBalanced(*e);
}

TEST(PooledProbes, ASingleSourceStillProbesEveryInterval) {
  // The gate is per domain and set by the pair that probes: alone, a pair
  // probes exactly as before pooling.
  auto e = MakeEngine();
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(e->Submit(i, kDomain, kT0, "ip-a").ok());
  for (const Lease& l : Take(*e, kT0)) MustReport(*e, l.msg_id, kT0, kYahoo);
  const Poll p = PollUntil(*e, kT0 + absl::Hours(1), absl::InfiniteFuture(), kYahoo);
  EXPECT_GE(p.leases.at("ip-a"), 11);
  EXPECT_LE(p.leases.at("ip-a"), 13);
}

TEST(PooledProbes, ADeliveredProbeWakesTheOtherSourcesAtOnce) {
  auto e = ThreeSuspendedPairs();
  const absl::Time open_at = kT0 + absl::Minutes(42);
  const Poll p = PollUntil(*e, kT0 + absl::Hours(2), open_at, kYahoo);
  ASSERT_EQ(p.first_delivery.size(), 3u);
  absl::Time first = absl::InfiniteFuture(), last = absl::InfinitePast();
  for (const auto& [src, t] : p.first_delivery) {
    first = std::min(first, t);
    last = std::max(last, t);
  }
  // The first probe after the block within one interval (plus the polling
  // step), and the other sources right after it, not on their own timers.
  EXPECT_LE(first, open_at + absl::Minutes(5) + absl::Seconds(30));
  EXPECT_LE(last, first + absl::Seconds(30));
  ExpectBalanced(*e);
}

TEST(PooledProbes, AProbeAnsweredForItsOwnReasonAlsoWakesTheOthers) {
  // A greylisted probe: the host answers past the point where it refused,
  // so the pair is released, and the domain's other sources probe at once.
  auto e = ThreeSuspendedPairs();
  std::vector<Lease> probe = Take(*e, kT0 + absl::Minutes(5));
  ASSERT_EQ(probe.size(), 1u);
  MustReport(*e, probe[0].msg_id, kT0 + absl::Minutes(5), kGreylisted);
  std::map<std::string, int> by_source;
  for (const Lease& l : Take(*e, kT0 + absl::Minutes(5) + absl::Seconds(1)))
    ++by_source[std::string(l.source)];
  for (const std::string& s : kSources) {
    if (s != probe[0].source) {
      EXPECT_EQ(by_source[s], 1) << s;
    }
  }
}

TEST(PooledProbes, TheDomainIndexIsRebuiltOnLoad) {
  auto e = ThreeSuspendedPairs();
  const std::string path = TempPath("probe_pool.snap");
  ASSERT_TRUE(e->Save(path).ok());
  absl::StatusOr<std::unique_ptr<Engine>> loaded = Engine::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const absl::Time open_at = kT0 + absl::Minutes(12);
  const Poll p = PollUntil(**loaded, kT0 + absl::Hours(1), open_at, kYahoo);
  ASSERT_EQ(p.first_delivery.size(), 3u);
  absl::Time first = absl::InfiniteFuture(), last = absl::InfinitePast();
  for (const auto& [src, t] : p.first_delivery) {
    first = std::min(first, t);
    last = std::max(last, t);
  }
  EXPECT_LE(last, first + absl::Seconds(30)) << "siblings found after the restore";
  ExpectBalanced(**loaded);
}

TEST(PooledProbes, OtherDomainsAreNotGated) {
  auto e = ThreeSuspendedPairs();
  ASSERT_TRUE(e->Submit(1000, "other.example", kT0 + absl::Minutes(5), "ip-a").ok());
  std::vector<Lease> l = Take(*e, kT0 + absl::Minutes(5));
  int other = 0;
  for (const Lease& x : l) other += x.destination == "other.example" ? 1 : 0;
  EXPECT_EQ(other, 1);
}

// --- the built-in schedule for full mailboxes ------------------------------------

constexpr char kFull[] = "452 4.2.2 Mailbox full, try again later";

TEST(MailboxFullSchedule, RetriesFromOneHourDoubling) {
  auto e = MakeEngine(Unjittered());
  ASSERT_TRUE(e->Submit(1, "full.example", kT0).ok());
  absl::Time now = kT0;
  const absl::Duration want[] = {absl::Hours(1), absl::Hours(2), absl::Hours(4), absl::Hours(4)};
  for (absl::Duration d : want) {
    std::vector<Lease> l = Take(*e, now);
    ASSERT_EQ(l.size(), 1u);
    const Decision dec = MustReport(*e, 1, now, kFull);
    EXPECT_EQ(dec.category, Category::kMailboxFull);
    EXPECT_EQ(dec.schedule, "builtin:mailbox-full");
    ASSERT_TRUE(dec.next_attempt.has_value());
    EXPECT_EQ(*dec.next_attempt - now, d);
    EXPECT_THAT(Take(*e, now + d - absl::Seconds(1)), IsEmpty());
    now += d;
  }
}

TEST(MailboxFullSchedule, OffWithTheBuiltinsAndAUserOverrideWins) {
  EngineConfig c = Unjittered();
  c.builtin_overrides = false;
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(1, "full.example", kT0).ok());
  ASSERT_EQ(Take(*e, kT0).size(), 1u);
  Decision d = MustReport(*e, 1, kT0, kFull);
  EXPECT_EQ(d.schedule, "default");
  EXPECT_EQ(*d.next_attempt - kT0, absl::Minutes(15));

  // A user's override for the category comes before the built-in one.
  EngineConfig u = Unjittered();
  ScheduleOverride o;
  o.name = "mine";
  o.categories = {Category::kMailboxFull};
  o.fixed_delay = absl::Minutes(7);
  u.overrides.push_back(o);
  auto e2 = MakeEngine(u);
  ASSERT_TRUE(e2->Submit(1, "full.example", kT0).ok());
  ASSERT_EQ(Take(*e2, kT0).size(), 1u);
  d = MustReport(*e2, 1, kT0, kFull);
  EXPECT_EQ(d.schedule, "mine");
  EXPECT_EQ(*d.next_attempt - kT0, absl::Minutes(7));
}

// Learned spacing (mailbox_full.cc): a domain whose full mailboxes clear
// within an hour is retried a third of that apart; other domains, and a
// domain with fewer than three such deliveries, keep 1 h, 2 h, 4 h.
void FullThenDelivered(Engine& e, uint64_t id, const std::string& domain, absl::Time t0,
                       absl::Duration clears_after) {
  ASSERT_TRUE(e.Submit(id, domain, t0).ok());
  ASSERT_EQ(Take(e, t0).size(), 1u);
  const Decision first = MustReport(e, id, t0, kFull);
  ASSERT_TRUE(first.next_attempt.has_value());
  ASSERT_EQ(*first.next_attempt - t0, absl::Hours(1));
  const absl::Time t = t0 + clears_after;
  ASSERT_EQ(Take(e, t).size(), 1u);
  EXPECT_EQ(MustReport(e, id, t, "250 2.0.0 ok").action, DecisionAction::kDelivered);
}

TEST(MailboxFullSchedule, LearnsHowLongTheDomainsFullMailboxesLast) {
  auto e = MakeEngine(Unjittered());
  absl::Time t = kT0;
  for (uint64_t id = 1; id <= 2; ++id) {
    FullThenDelivered(*e, id, "quick.example", t, absl::Hours(1));
    t += absl::Hours(1);
  }
  // Two samples are not enough: still the built-in 1 h.
  ASSERT_TRUE(e->Submit(10, "quick.example", t).ok());
  ASSERT_EQ(Take(*e, t).size(), 1u);
  EXPECT_EQ(*MustReport(*e, 10, t, kFull).next_attempt - t, absl::Hours(1));
  t += absl::Hours(1);
  ASSERT_EQ(Take(*e, t).size(), 1u);
  EXPECT_EQ(MustReport(*e, 10, t, "250 2.0.0 ok").action, DecisionAction::kDelivered);

  // Third delivery at 1 h: retries 20 min apart until the message is 2 h old,
  // then the built-in schedule from where its backoff has got to (4 h cap).
  ASSERT_TRUE(e->Submit(4, "quick.example", t).ok());
  const absl::Time submitted = t;
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 7; ++i) {
    ASSERT_EQ(Take(*e, t).size(), 1u) << i;
    const Decision d = MustReport(*e, 4, t, kFull);
    EXPECT_EQ(d.schedule, "builtin:mailbox-full");
    delays.push_back(*d.next_attempt - t);
    t = *d.next_attempt;
  }
  EXPECT_THAT(delays,
              ElementsAre(absl::Minutes(20), absl::Minutes(20), absl::Minutes(20),
                          absl::Minutes(20), absl::Minutes(20), absl::Minutes(20), absl::Hours(4)));
  EXPECT_EQ(t - submitted, absl::Hours(6));

  // Learned per domain: another domain's first retry is still 1 h away.
  // (A minute before message 4's next retry is due, so that only this one is.)
  const absl::Time u = t - absl::Minutes(1);
  ASSERT_TRUE(e->Submit(20, "other.example", u).ok());
  ASSERT_EQ(Take(*e, u).size(), 1u);
  EXPECT_EQ(*MustReport(*e, 20, u, kFull).next_attempt - u, absl::Hours(1));
}

TEST(MailboxFullSchedule, LearningOffKeepsTheFixedSchedule) {
  EngineConfig c = Unjittered();
  c.destination_defaults.learn_full_mailbox = false;
  auto e = MakeEngine(c);
  absl::Time t = kT0;
  for (uint64_t id = 1; id <= 3; ++id) {
    FullThenDelivered(*e, id, "quick.example", t, absl::Hours(1));
    t += absl::Hours(1);
  }
  ASSERT_TRUE(e->Submit(4, "quick.example", t).ok());
  ASSERT_EQ(Take(*e, t).size(), 1u);
  EXPECT_EQ(*MustReport(*e, 4, t, kFull).next_attempt - t, absl::Hours(1));
}

TEST(MailboxFullSchedule, LongFillsKeepTheSparseSchedule) {
  auto e = MakeEngine(Unjittered());
  absl::Time t = kT0;
  for (uint64_t id = 1; id <= 3; ++id) {
    // 1 h, 2 h, 4 h, 4 h, then delivered at age 15 h.
    ASSERT_TRUE(e->Submit(id, "slow.example", t).ok());
    absl::Time now = t;
    for (absl::Duration d :
         {absl::Hours(1), absl::Hours(2), absl::Hours(4), absl::Hours(4), absl::Hours(4)}) {
      ASSERT_EQ(Take(*e, now).size(), 1u);
      ASSERT_EQ(*MustReport(*e, id, now, kFull).next_attempt - now, d);
      now += d;
    }
    ASSERT_EQ(Take(*e, now).size(), 1u);
    EXPECT_EQ(MustReport(*e, id, now, "250 2.0.0 ok").action, DecisionAction::kDelivered);
    t = now;
  }
  // A third of 15 h is past the 4 h cap: every retry 4 h apart, never denser.
  ASSERT_TRUE(e->Submit(4, "slow.example", t).ok());
  ASSERT_EQ(Take(*e, t).size(), 1u);
  EXPECT_EQ(*MustReport(*e, 4, t, kFull).next_attempt - t, absl::Hours(4));
}

}  // namespace
}  // namespace mailretry
