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

}  // namespace
}  // namespace mailretry
