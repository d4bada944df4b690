// File: engine/adaptive_test.cc
// The adaptive mechanisms of issue 12, one block per mechanism: half-open
// probing of a suspended destination, the capacity-reply window, learned
// greylist delays, greylisting told by its first-contact pattern, pooled
// structural evidence, and the hold counters.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/engine_test_util.h"

namespace mailretry {
namespace {

using namespace ::mailretry::engine_test;  // NOLINT: the shared test vocabulary
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// --- 1. half-open probing -----------------------------------------------------

struct BlockRun {
  std::optional<absl::Time> first_delivery;
  int attempts_during_block = 0;
  std::vector<size_t> leases_after_release;  // leases per minute after the first delivery
};

// 40 messages to a destination that answers every attempt with a
// reputation deferral until `block_end`, then accepts everything; the sender
// polls every 30 s and answers each lease at once.
BlockRun RunBlock(EngineConfig c, absl::Time block_end) {
  auto e = MakeEngine(std::move(c));
  BlockRun out;
  for (uint64_t i = 0; i < 40; ++i) EXPECT_TRUE(e->Submit(i, "yahoo.example", kT0).ok());
  for (absl::Time now = kT0; now < block_end + absl::Hours(8); now += absl::Seconds(30)) {
    std::vector<Lease> l = Take(*e, now);
    if (out.first_delivery && out.leases_after_release.size() < 6)
      out.leases_after_release.push_back(l.size());
    for (const Lease& lease : l) {
      if (now < block_end) {
        ++out.attempts_during_block;
        MustReport(*e, lease.msg_id, now, kYahoo);
      } else {
        MustReport(*e, lease.msg_id, now, kOk);
        if (!out.first_delivery) out.first_delivery = now;
      }
    }
  }
  EXPECT_EQ(e->Stats().delivered, 40u);
  ExpectBalanced(*e);
  return out;
}

TEST(HalfOpenProbing, FirstDeliveryComesWithinOneProbeIntervalOfTheBlockEnding) {
  const absl::Time block_end = kT0 + absl::Hours(3) + absl::Seconds(10);
  EngineConfig c;
  c.destination_defaults.suspend_probe_interval = absl::Minutes(5);
  const BlockRun probed = RunBlock(c, block_end);
  ASSERT_TRUE(probed.first_delivery.has_value());
  // One probe interval, plus the sender's 30 s polling step.
  EXPECT_LE(*probed.first_delivery, block_end + absl::Minutes(5) + absl::Seconds(30));
  // During the block: the first cohort, then about one probe per interval.
  EXPECT_LE(probed.attempts_during_block, 5 + 3 * 60 / 5 + 1);
  // The backlog comes back with a ramp (1, then growing), not all at once.
  ASSERT_FALSE(probed.leases_after_release.empty());
  EXPECT_LE(probed.leases_after_release.front(), 2u);

  // Without probing the suspension runs its exponential course (5, 10, 20,
  // 40, 80 min ...) and overshoots the block's end by far more.
  c.destination_defaults.suspend_probe_interval = absl::ZeroDuration();
  const BlockRun plain = RunBlock(c, block_end);
  ASSERT_TRUE(plain.first_delivery.has_value());
  EXPECT_GT(*plain.first_delivery, block_end + absl::Minutes(15));
}

// A suspension shorter than the probe interval is probed when it ends, not
// one interval later (found by the real-Postfix anvil test: suspend_base 2 s
// held the destination for the default 5-min interval).
TEST(HalfOpenProbing, AShortSuspensionIsProbedWhenItEnds) {
  EngineConfig c;
  c.destination_defaults.suspend_base = absl::Seconds(2);
  c.destination_defaults.suspend_max = absl::Seconds(10);
  c.destination_defaults.suspend_probe_interval = absl::Minutes(5);
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(e->Submit(i, "rated.example", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0, 1);
  ASSERT_EQ(l.size(), 1u);
  MustReport(*e, l[0].msg_id, kT0, kRateLimited);
  EXPECT_THAT(Take(*e, kT0 + absl::Seconds(1)), IsEmpty());
  // Well before the 5-min interval (the cut rate may pace it a little).
  std::vector<Lease> probe = Take(*e, kT0 + absl::Seconds(30));
  ASSERT_EQ(probe.size(), 1u) << "one probe once the 2 s suspension is over";
  // A failed probe extends the suspension (4 s, at most suspend_max 10 s);
  // the next probe comes when that ends, not one 5-min interval later.
  MustReport(*e, probe[0].msg_id, kT0 + absl::Seconds(30), kRateLimited);
  EXPECT_THAT(Take(*e, kT0 + absl::Seconds(31)), IsEmpty());
  std::vector<Lease> again = Take(*e, kT0 + absl::Seconds(60));
  ASSERT_EQ(again.size(), 1u) << "the next probe within suspend_max, not 5 min";
  MustReport(*e, again[0].msg_id, kT0 + absl::Seconds(60), kOk);
  ExpectBalanced(*e);
}

TEST(HalfOpenProbing, OneProbePerIntervalAndAFailedProbeExtendsTheSuspension) {
  auto e = MakeEngine();
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(e->Submit(i, "yahoo.example", kT0).ok());
  std::vector<Lease> first = Take(*e, kT0);
  ASSERT_EQ(first.size(), 5u);
  for (const Lease& l : first) MustReport(*e, l.msg_id, kT0, kYahoo);
  DestinationInfo info = *e->GetDestination("yahoo.example");
  ASSERT_TRUE(info.suspended_until.has_value());
  const absl::Time until1 = *info.suspended_until;
  EXPECT_EQ(info.suspensions, 1u);
  e->DrainEvents();
  // Nothing before the probe time, then exactly one message.
  EXPECT_THAT(Take(*e, kT0 + absl::Minutes(4)), IsEmpty());
  std::vector<Lease> probe = Take(*e, kT0 + absl::Minutes(5));
  ASSERT_EQ(probe.size(), 1u);
  EXPECT_THAT(Take(*e, kT0 + absl::Minutes(5) + absl::Seconds(20)), IsEmpty());  // probe in flight
  MustReport(*e, probe[0].msg_id, kT0 + absl::Minutes(5) + absl::Seconds(20), kYahoo);
  info = *e->GetDestination("yahoo.example");
  EXPECT_EQ(info.suspensions, 2u);
  EXPECT_GT(*info.suspended_until, until1);
  std::vector<Event> ev = e->DrainEvents();
  bool extended = false;
  for (const Event& x : ev)
    extended |= x.kind == EventKind::kDestinationSuspended && x.rule == "builtin:probe-failed";
  EXPECT_TRUE(extended);
  // The next probe one interval after the last one, not at the suspension's end.
  EXPECT_THAT(Take(*e, kT0 + absl::Minutes(9)), IsEmpty());
  EXPECT_EQ(Take(*e, kT0 + absl::Minutes(10)).size(), 1u);
}

TEST(HalfOpenProbing, MessagesRefusedWhileSuspendedWaitForTheReleaseNotTheirBackoff) {
  auto e = MakeEngine();
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(e->Submit(i, "yahoo.example", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0);
  ASSERT_EQ(l.size(), 3u);
  for (const Lease& x : l) {
    const Decision d = MustReport(*e, x.msg_id, kT0 + absl::Seconds(1), kYahoo);
    EXPECT_EQ(d.schedule, "builtin:wait-for-release");
    ASSERT_TRUE(d.next_attempt.has_value());
    EXPECT_EQ(*d.next_attempt, kT0 + absl::Seconds(1));
  }
  // A delivered probe releases them all at once (ramp permitting), hours
  // before the 15-minute-then-longer backoff would have.
  std::vector<Lease> probe = Take(*e, kT0 + absl::Minutes(6));
  ASSERT_EQ(probe.size(), 1u);
  MustReport(*e, probe[0].msg_id, kT0 + absl::Minutes(6), kOk);
  std::vector<Event> ev = e->DrainEvents();
  ASSERT_GE(Count(ev, EventKind::kDestinationResumed), 1);
  size_t delivered = 1;
  for (absl::Time t = kT0 + absl::Minutes(6); t < kT0 + absl::Minutes(7); t += absl::Seconds(5)) {
    for (const Lease& x : Take(*e, t)) {
      MustReport(*e, x.msg_id, t, kOk);
      ++delivered;
    }
  }
  EXPECT_EQ(delivered, 3u);
}

// A greylisting host refuses every first attempt: a probe refused for its own
// reasons shows the destination answering again and releases it.
TEST(HalfOpenProbing, AProbeRefusedForItsOwnReasonsReleasesTheDestination) {
  auto e = MakeEngine();
  for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(e->Submit(i, "grey.example", kT0).ok());
  for (const Lease& x : Take(*e, kT0)) MustReport(*e, x.msg_id, kT0, kYahoo);
  ASSERT_TRUE(e->GetDestination("grey.example")->suspended_until.has_value());
  std::vector<Lease> probe = Take(*e, kT0 + absl::Minutes(5));
  ASSERT_EQ(probe.size(), 1u);
  MustReport(*e, probe[0].msg_id, kT0 + absl::Minutes(5), kGreylisted);
  EXPECT_FALSE(e->GetDestination("grey.example")->suspended_until.has_value());
  // Released, with a ramp: one at a time (the rate cut of the first cohort stays).
  EXPECT_EQ(Take(*e, kT0 + absl::Minutes(6)).size(), 1u);
}

// A failed probe walks its own backoff: a destination with one message is
// not re-probed every interval all day.
TEST(HalfOpenProbing, AOneMessageDestinationIsNotHammeredByProbes) {
  EngineConfig c;
  c.retry.lifetime = absl::Hours(24);
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(1, "lonely.example", kT0).ok());
  int attempts = 0;
  for (absl::Time t = kT0; t < kT0 + absl::Hours(25); t += absl::Minutes(1)) {
    for (const Lease& x : Take(*e, t)) {
      ++attempts;
      MustReport(*e, x.msg_id, t, kYahoo);
    }
  }
  EXPECT_EQ(e->Stats().expired, 1u);
  EXPECT_LE(attempts, 15);  // its schedule (15 min doubling to 4 h), not 288 probes
}

TEST(HalfOpenProbing, AUserRulesFixedSuspensionIsNotProbed) {
  EngineConfig c;
  ReactionRule r;
  r.name = "pause";
  r.text_regex = "TSS04";
  r.suspend_for = absl::Hours(2);
  c.reactions.push_back(r);
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(e->Submit(i, "yahoo.example", kT0).ok());
  for (const Lease& x : Take(*e, kT0)) MustReport(*e, x.msg_id, kT0, kYahoo);
  for (absl::Time t = kT0; t < kT0 + absl::Hours(2); t += absl::Minutes(1)) {
    ASSERT_THAT(Take(*e, t), IsEmpty()) << t;
  }
}

// --- 2. the capacity-reply window ---------------------------------------------

// `busy_at` lists which of 40 consecutive attempts (one at a time) get
// "server busy"; the rest are delivered. Returns the suspensions raised.
int SuspensionsFor(EngineConfig c, const std::vector<int>& busy_at) {
  c.destination_defaults.initial_concurrency = 1;
  c.destination_defaults.max_concurrency = 1;
  auto e = MakeEngine(std::move(c));
  for (uint64_t i = 0; i < 40; ++i) EXPECT_TRUE(e->Submit(i, "busy.example", kT0).ok());
  absl::Time now = kT0;
  for (int k = 0; k < 40; ++k, now += absl::Seconds(3)) {
    std::vector<Lease> l = Take(*e, now, 1);
    if (l.empty()) break;  // suspended
    const bool busy = std::find(busy_at.begin(), busy_at.end(), k) != busy_at.end();
    MustReport(*e, l[0].msg_id, now + absl::Seconds(1), busy ? kBusy : kOk);
  }
  return Count(e->DrainEvents(), EventKind::kDestinationSuspended);
}

TEST(CapacityWindow, AnIsolatedServerBusyDoesNotSuspend) {
  EXPECT_EQ(SuspensionsFor(EngineConfig{}, {7}), 0);
  EXPECT_EQ(SuspensionsFor(EngineConfig{}, {3, 30}), 0);  // two, far apart
  // Window off (the old behaviour): one reply suspends.
  EngineConfig old;
  old.destination_defaults.capacity_window = 0;
  EXPECT_EQ(SuspensionsFor(old, {7}), 1);
}

TEST(CapacityWindow, ARunOfCapacityRepliesWithinTheWindowSuspends) {
  EXPECT_EQ(SuspensionsFor(EngineConfig{}, {5, 9, 14}), 1);
  // Three replies spread wider than the 20-attempt window do not.
  EXPECT_EQ(SuspensionsFor(EngineConfig{}, {0, 21, 39}), 0);
  EngineConfig c;
  c.destination_defaults.capacity_suspend_min = 2;
  EXPECT_EQ(SuspensionsFor(c, {5, 9}), 1);
}

TEST(CapacityWindow, BadWindowSettingsAreRefused) {
  EngineConfig c;
  c.destination_defaults.capacity_window = 65;
  EXPECT_FALSE(c.Validate().ok());
  c.destination_defaults.capacity_window = 4;
  c.destination_defaults.capacity_suspend_min = 5;
  EXPECT_FALSE(c.Validate().ok());
}

// --- 3. learned greylist delays -------------------------------------------------

// A greylisting receiver: refuses a message until `delay` has passed since its
// first attempt there. Drives `n` messages, submitted `spacing` apart, to one
// domain from `sources`, polling every 10 s; returns the greylist refusals
// per message, in submission order.
std::vector<int> RunGreylist(absl::Duration delay, int n, absl::Duration spacing,
                             std::vector<std::string> sources = {""},
                             std::vector<absl::Time>* delivered_at = nullptr) {
  auto e = MakeEngine(Unjittered());
  std::vector<std::optional<absl::Time>> first(n);
  std::vector<int> refusals(n, 0);
  if (delivered_at) delivered_at->assign(n, absl::InfinitePast());
  int submitted = 0;
  for (absl::Time now = kT0; now < kT0 + absl::Hours(30); now += absl::Seconds(10)) {
    while (submitted < n && kT0 + spacing * submitted <= now) {
      EXPECT_TRUE(
          e->Submit(submitted, "grey.example", now, sources[submitted % sources.size()]).ok());
      ++submitted;
    }
    for (const Lease& l : Take(*e, now)) {
      const size_t i = l.msg_id;
      if (!first[i]) first[i] = now;
      if (now - *first[i] < delay) {
        ++refusals[i];
        MustReport(*e, l.msg_id, now, kGreylisted);
      } else {
        MustReport(*e, l.msg_id, now, kOk);
        if (delivered_at) (*delivered_at)[i] = now;
      }
    }
  }
  EXPECT_EQ(e->Stats().delivered, static_cast<uint64_t>(n));
  ExpectBalanced(*e);
  return refusals;
}

TEST(LearnedGreylist, OnceLearnedAMessageIsRefusedOnce) {
  // A 20-min window: the fixed 5-min retry is refused four times per message.
  std::vector<absl::Time> at;
  const std::vector<int> r = RunGreylist(absl::Minutes(20), 30, absl::Minutes(30), {""}, &at);
  // The first message learns (5, 10, 15 refused, then 30 works), a few
  // bisect the gap, the rest are refused exactly once.
  EXPECT_EQ(r[0], 4);
  int once = 0, total = 0;
  for (int k : r) {
    once += k == 1;
    total += k;
  }
  EXPECT_GE(once, 26);
  EXPECT_LE(total, 30 + 3 + 4);  // <= 1.25 refusals per message over all 30
  // And the learned wait is close to the window: delivered within 25 min.
  for (int i = 10; i < 30; ++i) {
    EXPECT_LE(at[i] - (kT0 + absl::Minutes(30) * i), absl::Minutes(25)) << i;
  }
}

TEST(LearnedGreylist, ALongWindowIsNotHitEveryFiveMinutes) {
  // 60 min: learning costs the first message a doubling walk (5, 10, 15,
  // 30, 60 refused ...), not twelve 5-min retries, and later ones once.
  const std::vector<int> r = RunGreylist(absl::Minutes(60), 10, absl::Hours(2));
  EXPECT_LE(r[0], 6);
  for (int i = 3; i < 10; ++i) EXPECT_EQ(r[i], 1) << i;
}

TEST(LearnedGreylist, TheDelayIsPooledOverSources) {
  // Alternating sources: what one source's messages learned serves the other's.
  const std::vector<int> r =
      RunGreylist(absl::Minutes(20), 12, absl::Minutes(30), {"ip-a", "ip-b"});
  EXPECT_EQ(r[0], 4);
  EXPECT_LE(r[1], 2);  // the other source's first message already knows a lower bound
  for (int i = 4; i < 12; ++i) EXPECT_EQ(r[i], 1) << i;
}

TEST(LearnedGreylist, AShortWindowKeepsTheFiveMinuteStart) {
  // Unlearned and learned alike, a 5-min window is one refusal per message.
  const std::vector<int> r = RunGreylist(absl::Minutes(4), 10, absl::Minutes(20));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(r[i], 1) << i;
}

TEST(LearnedGreylist, AChangedDelayIsLearnedAgain) {
  auto e = MakeEngine(Unjittered());
  // Learn a 5-min window.
  ASSERT_TRUE(e->Submit(1, "grey.example", kT0).ok());
  ASSERT_EQ(Take(*e, kT0).size(), 1u);
  Decision d = MustReport(*e, 1, kT0, kGreylisted);
  EXPECT_EQ(*d.next_attempt - kT0, absl::Minutes(5));
  ASSERT_EQ(Take(*e, *d.next_attempt).size(), 1u);
  MustReport(*e, 1, *d.next_attempt, kOk);
  // The host now greylists for longer. A refusal at the learned 5 min may
  // be seconds of timing: one more try a minute later; refused again, the
  // bound is dropped and the message walks on (10 min) instead of retrying
  // every 5 min.
  const absl::Time t1 = kT0 + absl::Hours(1);
  ASSERT_TRUE(e->Submit(2, "grey.example", t1).ok());
  ASSERT_EQ(Take(*e, t1).size(), 1u);
  d = MustReport(*e, 2, t1, kGreylisted);
  EXPECT_EQ(d.schedule, "builtin:greylisting (learned)");
  absl::Time now = *d.next_attempt;
  EXPECT_EQ(now - t1, absl::Minutes(5));
  ASSERT_EQ(Take(*e, now).size(), 1u);
  d = MustReport(*e, 2, now, kGreylisted);
  EXPECT_EQ(*d.next_attempt - t1, absl::Minutes(6));
  now = *d.next_attempt;
  ASSERT_EQ(Take(*e, now).size(), 1u);
  d = MustReport(*e, 2, now, kGreylisted);
  EXPECT_EQ(d.schedule, "builtin:greylisting (learning)");
  EXPECT_EQ(*d.next_attempt - t1, absl::Minutes(10));
}

// The learned bounds and each message's first deferral survive Save/Load.
TEST(LearnedGreylist, WhatWasLearnedSurvivesASnapshot) {
  auto e = MakeEngine(Unjittered());
  ASSERT_TRUE(e->Submit(1, "grey.example", kT0).ok());
  absl::Time now = kT0;
  for (int i = 0; i < 3; ++i) {  // refused at 0, 5 and 10 min
    ASSERT_EQ(Take(*e, now).size(), 1u);
    now = *MustReport(*e, 1, now, kGreylisted).next_attempt;
  }
  ASSERT_EQ(Take(*e, now).size(), 1u);
  MustReport(*e, 1, now, kOk);  // delivered at 15 min
  ASSERT_TRUE(e->Submit(2, "grey.example", now).ok());
  ASSERT_EQ(Take(*e, now).size(), 1u);
  const Decision before = MustReport(*e, 2, now, kGreylisted);
  const std::string path = TempPath("greylist.snap");
  ASSERT_TRUE(e->Save(path).ok());
  absl::StatusOr<std::unique_ptr<Engine>> b = Engine::Load(path);
  ASSERT_TRUE(b.ok()) << b.status();
  // Refused again after the bisected wait: both engines now go to the 15 min that worked.
  const absl::Time t = *before.next_attempt;
  ASSERT_EQ(Take(*e, t).size(), 1u);
  ASSERT_EQ(Take(**b, t).size(), 1u);
  const Decision x = MustReport(*e, 2, t, kGreylisted);
  const Decision y = MustReport(**b, 2, t, kGreylisted);
  EXPECT_EQ(x.next_attempt, y.next_attempt);
  EXPECT_EQ(*y.next_attempt - now, absl::Minutes(15));
  EXPECT_EQ(y.schedule, "builtin:greylisting (learned)");
}

TEST(LearnedGreylist, OffGivesTheFixedOverride) {
  EngineConfig c = Unjittered();
  c.destination_defaults.learn_greylist_delay = false;
  auto e = MakeEngine(c);
  ASSERT_TRUE(e->Submit(1, "grey.example", kT0).ok());
  absl::Time now = kT0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Take(*e, now).size(), 1u);
    Decision d = MustReport(*e, 1, now, kGreylisted);
    EXPECT_EQ(d.schedule, "builtin:greylisting");
    EXPECT_EQ(*d.next_attempt - now, absl::Minutes(5));
    now = *d.next_attempt;
  }
}

struct GreyMsg {
  std::string domain;
  absl::Duration delay;  // the domain's greylist delay
  absl::Time submit;
};

// Several greylisting domains in one engine (the learned delays of some
// serve the others as a prior). Returns, per message, its refusals and the
// time from submission to delivery.
std::vector<std::pair<int, absl::Duration>> RunGreyDomains(const std::vector<GreyMsg>& msgs) {
  auto e = MakeEngine(Unjittered());
  const size_t n = msgs.size();
  std::vector<std::pair<int, absl::Duration>> out(n, {0, absl::InfiniteDuration()});
  std::vector<std::optional<absl::Time>> first(n);
  size_t submitted = 0;
  const absl::Time end = msgs.back().submit + absl::Hours(12);
  for (absl::Time now = kT0; now < end; now += absl::Seconds(10)) {
    while (submitted < n && msgs[submitted].submit <= now) {
      EXPECT_TRUE(e->Submit(submitted, msgs[submitted].domain, now).ok());
      ++submitted;
    }
    for (const Lease& l : Take(*e, now)) {
      const size_t i = l.msg_id;
      if (!first[i]) first[i] = now;
      if (now - *first[i] < msgs[i].delay) {
        ++out[i].first;
        MustReport(*e, l.msg_id, now, kGreylisted);
      } else {
        MustReport(*e, l.msg_id, now, kOk);
        out[i].second = now - msgs[i].submit;
      }
    }
  }
  EXPECT_EQ(e->Stats().delivered, n);
  ExpectBalanced(*e);
  return out;
}

// Five domains learn a 4-min host's 5 min, then five a 40-min host's 60 min
// (one message each); the caller's messages come from kT0 + 10 h on.
std::vector<GreyMsg> LearnedShortAndLong() {
  std::vector<GreyMsg> m;
  for (int i = 0; i < 5; ++i) {
    m.push_back({absl::StrCat("short", i, ".example"), absl::Minutes(4), kT0 + absl::Minutes(i)});
  }
  for (int i = 0; i < 5; ++i) {
    m.push_back({absl::StrCat("long", i, ".example"), absl::Minutes(40),
                 kT0 + absl::Hours(1) + absl::Minutes(i)});
  }
  return m;
}

TEST(LearnedGreylist, AnUnlearnedDomainWalksTheOtherDomainsDelays) {
  // Learned so far: five domains at 5 min and five at 60 min. A new domain
  // retries at their median, then at their 90th percentile: a 3-min host is
  // delivered at 5 min (one step to the 80th percentile, before, made it
  // wait 60), a 20-min host at 60 min after the median's refusal.
  std::vector<GreyMsg> m = LearnedShortAndLong();
  const size_t k = m.size();
  m.push_back({"new-short.example", absl::Minutes(3), kT0 + absl::Hours(10)});
  m.push_back({"new-mid.example", absl::Minutes(20), kT0 + absl::Hours(11)});
  const auto r = RunGreyDomains(m);
  EXPECT_EQ(r[k].first, 1);
  EXPECT_LE(r[k].second, absl::Minutes(6));
  EXPECT_EQ(r[k + 1].first, 2);
  EXPECT_LE(r[k + 1].second, absl::Minutes(61));
}

TEST(LearnedGreylist, AWaitNeverUndercutIsHalvedUntilRefused) {
  // A 2-min host whose first message waited the other domains' 60 min (the
  // walk's median here): later messages try half the wait that worked, at
  // no extra refusal while it keeps working, down to the 5-min start.
  std::vector<GreyMsg> m;
  for (int i = 0; i < 6; ++i)
    m.push_back({absl::StrCat("long", i, ".example"), absl::Minutes(40), kT0 + absl::Minutes(i)});
  const size_t k = m.size();
  for (int i = 0; i < 6; ++i)
    m.push_back({"quick.example", absl::Minutes(2), kT0 + absl::Hours(5) + absl::Hours(2) * i});
  const auto r = RunGreyDomains(m);
  EXPECT_GE(r[k].second, absl::Minutes(55));  // the first one waits the prior
  for (size_t i = k; i < k + 6; ++i) EXPECT_EQ(r[i].first, 1) << i;
  for (size_t i = k + 1; i < k + 6; ++i)
    EXPECT_LT(r[i].second, r[i - 1].second + absl::Seconds(11)) << i;
  EXPECT_LE(r[k + 5].second, absl::Minutes(6));
}

// --- 3b. greylisting told by its first-contact pattern --------------------------

struct FirstContactRun {
  std::vector<int> refusals;         // per message, in submission order
  std::vector<absl::Duration> took;  // submission to delivery
  std::vector<std::string> rules;    // the rule of each message's last deferral
};

// `n` messages, one per `spacing`, to one domain whose deferrals are worded
// as `text`. `refuse(i, since_first)` says whether message i's attempt is
// refused, given the time since its first attempt. Polls every 10 s.
template <typename Refuse>
FirstContactRun RunFirstContact(const char* text, int n, absl::Duration spacing, Refuse refuse,
                                EngineConfig c = Unjittered()) {
  auto e = MakeEngine(std::move(c));
  FirstContactRun out;
  out.refusals.assign(n, 0);
  out.took.assign(n, absl::InfiniteDuration());
  out.rules.assign(n, "");
  std::vector<std::optional<absl::Time>> first(n);
  int submitted = 0;
  for (absl::Time now = kT0; now < kT0 + spacing * n + absl::Hours(12); now += absl::Seconds(10)) {
    while (submitted < n && kT0 + spacing * submitted <= now) {
      EXPECT_TRUE(e->Submit(submitted, "quiet-grey.example", now).ok());
      ++submitted;
    }
    for (const Lease& l : Take(*e, now)) {
      const size_t i = l.msg_id;
      if (!first[i]) first[i] = now;
      if (refuse(static_cast<int>(i), now - *first[i])) {
        ++out.refusals[i];
        out.rules[i] = std::string(MustReport(*e, l.msg_id, now, text).rule);
      } else {
        MustReport(*e, l.msg_id, now, kOk);
        out.took[i] = now - (kT0 + spacing * static_cast<int64_t>(i));
      }
    }
  }
  EXPECT_EQ(e->Stats().delivered, static_cast<uint64_t>(n));
  ExpectBalanced(*e);
  return out;
}

TEST(FirstContactGreylisting, AGreylistingHostInOtherWordsGetsTheLearnedDelay) {
  // A 60-min greylist whose wording the classifier reads as an unknown
  // transient failure: the default backoff (15, 30, 60 min) delivers each
  // message at 105 min after three refusals.
  const FirstContactRun r =
      RunFirstContact(kTempFail, 14, absl::Hours(3),
                      [](int, absl::Duration since) { return since < absl::Minutes(60); });
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r.refusals[i], 3) << i;
    EXPECT_EQ(r.took[i], absl::Minutes(105)) << i;
    EXPECT_NE(r.rules[i], "builtin:first-contact-greylisting") << i;
  }
  // From the fourth message on, the domain shows the pattern: its deferrals
  // are greylisting, the delay is learned, and once learned a message is
  // refused at most twice (one bisecting retry) and delivered near 60 min.
  for (int i = 3; i < 14; ++i) EXPECT_EQ(r.rules[i], "builtin:first-contact-greylisting") << i;
  for (int i = 6; i < 14; ++i) {
    EXPECT_LE(r.refusals[i], 2) << i;
    EXPECT_LE(r.took[i], absl::Minutes(75)) << i;
  }
}

TEST(FirstContactGreylisting, RandomDeferralsWithTheSameWordingAreNotThePattern) {
  // A host that defers one first attempt in four (load, not greylisting)
  // with the same wording: most messages go through at once, so every
  // deferral keeps the default schedule (first retry after 15 min).
  const FirstContactRun r = RunFirstContact(
      kTempFail, 40, absl::Minutes(20),
      [](int i, absl::Duration since) { return i % 4 == 0 && since < absl::Seconds(1); });
  for (int i = 0; i < 40; ++i) {
    if (i % 4 != 0) {
      EXPECT_EQ(r.refusals[i], 0) << i;
      continue;
    }
    EXPECT_EQ(r.refusals[i], 1) << i;
    EXPECT_NE(r.rules[i], "builtin:first-contact-greylisting") << i;
    EXPECT_EQ(r.took[i], absl::Minutes(15)) << i;
  }
}

TEST(FirstContactGreylisting, AMisreadGreylistIsNotSuspendedAsCapacity) {
  // The same pattern worded as "server busy": before it is recognised the
  // capacity window may suspend the destination; after, first-contact
  // refusals are greylisting and suspend nothing.
  auto e = MakeEngine(Unjittered());
  std::vector<std::optional<absl::Time>> first(30);
  int submitted = 0;
  size_t suspended_late = 0;
  for (absl::Time now = kT0; now < kT0 + absl::Hours(40); now += absl::Seconds(10)) {
    while (submitted < 30 && kT0 + absl::Hours(1) * submitted <= now) {
      ASSERT_TRUE(e->Submit(submitted, "busy-grey.example", now).ok());
      ++submitted;
    }
    for (const Lease& l : Take(*e, now)) {
      const size_t i = l.msg_id;
      if (!first[i]) first[i] = now;
      MustReport(*e, l.msg_id, now, now - *first[i] < absl::Minutes(20) ? kBusy : kOk);
    }
    for (const Event& ev : e->DrainEvents()) {
      if (ev.kind == EventKind::kDestinationSuspended && ev.time > kT0 + absl::Hours(12))
        ++suspended_late;
    }
  }
  EXPECT_EQ(e->Stats().delivered, 30u);
  EXPECT_EQ(suspended_late, 0u);
  ExpectBalanced(*e);
}

// --- 4. structural detection: strong, pooled, sender-side evidence ------------

std::vector<Event> Structural(const std::vector<Event>& ev) {
  std::vector<Event> out;
  for (const Event& x : ev) {
    if (x.kind == EventKind::kStructuralFailure) out.push_back(x);
  }
  return out;
}

TEST(StructuralPooling, ASourceWithoutPtrIsFoundAtOneMessageDestinations) {
  auto e = MakeEngine();
  // One message per destination from the broken source, one from a good
  // source that every destination accepts.
  const std::vector<std::string> doms = {"a.example", "b.example", "c.example"};
  uint64_t id = 1;
  std::vector<Event> all;
  for (const std::string& d : doms) {
    ASSERT_TRUE(e->Submit(id++, d, kT0, "ip-d").ok());
    ASSERT_TRUE(e->Submit(id++, d, kT0, "ip-a").ok());
  }
  for (const Lease& l : Take(*e, kT0))
    MustReport(*e, l.msg_id, kT0, l.source == "ip-d" ? kPtr : kOk);
  std::vector<Event> ev = Structural(e->DrainEvents());
  // The first PTR reply is confirmed by the second destination for ip-d:
  // all but the first pair are flagged at once, the first at its next reply.
  ASSERT_GE(ev.size(), 2u);
  for (const Event& x : ev) {
    EXPECT_EQ(x.source, "ip-d");
    EXPECT_EQ(x.rule, "structural:sender/ptr");
    EXPECT_THAT(x.detail, HasSubstr("sender-side: PTR"));
    EXPECT_THAT(x.detail, HasSubstr("source ip-d"));
  }
  const absl::Time retry = kT0 + absl::Hours(1);
  for (const Lease& l : Take(*e, retry)) MustReport(*e, l.msg_id, retry, kPtr);
  for (const Event& x : Structural(e->DrainEvents())) ev.push_back(x);
  EXPECT_EQ(ev.size(), 3u);
  for (const std::string& d : doms) {
    EXPECT_EQ(e->GetDestination(d, "ip-d")->health, Health::kStructural) << d;
    EXPECT_EQ(e->GetDestination(d, "ip-a")->health, Health::kHealthy) << d;
  }

  // Without pooling and the strong rule (0.1's rules) none of them is found.
  EngineConfig old;
  old.structural.strong_attempts = old.structural.sender_destinations = 0;
  auto o = MakeEngine(old);
  id = 1;
  for (const std::string& d : doms) ASSERT_TRUE(o->Submit(id++, d, kT0, "ip-d").ok());
  for (absl::Time t = kT0; t < kT0 + absl::Hours(6); t += absl::Minutes(5)) {
    for (const Lease& l : Take(*o, t)) MustReport(*o, l.msg_id, t, kPtr);
  }
  EXPECT_THAT(Structural(o->DrainEvents()), IsEmpty());
}

// A held destination's probes back off: 30 min, 1 h, 2 h ... up to 12 h,
// not one every 30 min for the messages' whole lifetime.
int HeldProbes(EngineConfig c) {
  c.retry.lifetime = absl::Hours(120);
  auto e = MakeEngine(c);
  for (uint64_t i = 1; i <= 4; ++i) EXPECT_TRUE(e->Submit(i, "a.example", kT0, "ip-d").ok());
  EXPECT_TRUE(e->Submit(9, "b.example", kT0, "ip-d").ok());
  int after_hold = 0;
  for (absl::Time t = kT0; t < kT0 + absl::Hours(121); t += absl::Minutes(1)) {
    const bool held = e->GetDestination("a.example", "ip-d")->health == Health::kStructural;
    for (const Lease& l : Take(*e, t)) {
      if (held && l.destination == "a.example") ++after_hold;
      MustReport(*e, l.msg_id, t, kPtr);
    }
  }
  EXPECT_EQ(e->Stats().expired, 5u);
  ExpectBalanced(*e);
  return after_hold;
}

TEST(StructuralHold, ProbesOfAHeldDestinationBackOff) {
  // 30m + 1h + 2h + 4h + 8h, then every 12 h: about 14 in 120 h.
  EXPECT_LE(HeldProbes(EngineConfig{}), 16);
  EngineConfig fixed;
  // A fixed 30-min interval: a probe whenever one of the messages is due
  // (their own backoff) and 30 min have passed, over 100 in 120 h.
  fixed.structural.probe_backoff = 1.0;
  EXPECT_GE(HeldProbes(fixed), 100);
}

TEST(StructuralHold, BadProbeBackoffIsRefused) {
  EngineConfig c;
  c.structural.probe_backoff = 0.5;
  EXPECT_FALSE(Engine::Create(c, 1).ok());
  c.structural.probe_backoff = 2.0;
  c.structural.probe_interval_max = absl::Minutes(1);
  EXPECT_FALSE(Engine::Create(c, 1).ok());
}

TEST(StructuralPooling, OneStrongReplyAloneIsNotEnough) {
  auto e = MakeEngine();
  ASSERT_TRUE(e->Submit(1, "solo.example", kT0, "ip-x").ok());
  ASSERT_TRUE(e->Submit(2, "solo.example", kT0, "ip-x").ok());
  std::vector<Lease> l = Take(*e, kT0);
  ASSERT_EQ(l.size(), 2u);
  MustReport(*e, l[0].msg_id, kT0, kPtr);
  MustReport(*e, l[1].msg_id, kT0, kPtr);  // a second reply, but not strong_span later
  EXPECT_THAT(Structural(e->DrainEvents()), IsEmpty());
}

TEST(StructuralPooling, ATemporaryDnsblListingThatClearsIsNotStructural) {
  auto run = [](EngineConfig c) -> size_t {
    auto e = MakeEngine(std::move(c));
    absl::Time now = kT0;
    uint64_t id = 1;
    // 12 messages an hour, all deferred as DNSBL-listed for 3 hours, then
    // the listing clears and everything is accepted.
    for (; now < kT0 + absl::Hours(6); now += absl::Minutes(5)) {
      EXPECT_TRUE(e->Submit(id++, "outlook.example", now).ok());
      for (const Lease& l : Take(*e, now)) {
        MustReport(*e, l.msg_id, now, now < kT0 + absl::Hours(3) ? kDnsbl : kOk);
      }
    }
    return Structural(e->DrainEvents()).size();
  };
  EXPECT_EQ(run(EngineConfig{}), 0u);
  EngineConfig old;
  old.structural.early_weak_evidence = true;  // 0.1: DNSBL replies counted early
  EXPECT_EQ(run(old), 1u);
}

// --- 6. what a hold cost ---------------------------------------------------------

TEST(HoldCounters, HeldReleasedAndExpiredAreCountedAndSaid) {
  EngineConfig c;
  c.structural.strong_attempts = 1;
  c.structural.strong_span = absl::ZeroDuration();
  auto e = MakeEngine(c);
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(e->Submit(i, "x.example", kT0).ok());
  std::vector<Lease> l = Take(*e, kT0);
  ASSERT_EQ(l.size(), 5u);
  for (const Lease& x : l) MustReport(*e, x.msg_id, kT0 + absl::Seconds(1), kPtr);
  std::vector<Event> ev = Structural(e->DrainEvents());
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_THAT(ev[0].detail, HasSubstr("4 message(s) pending"));  // the other four, in flight
  ASSERT_TRUE(e->Submit(10, "x.example", kT0 + absl::Minutes(1)).ok());
  ASSERT_TRUE(e->Submit(11, "x.example", kT0 + absl::Minutes(1)).ok());
  EXPECT_EQ(e->Stats().held_messages, 6u);
  // The hold's probe is delivered: the rest is released.
  absl::Time t = kT0 + absl::Minutes(31);
  std::vector<Lease> probe = Take(*e, t);
  ASSERT_EQ(probe.size(), 1u);
  MustReport(*e, probe[0].msg_id, t, kOk);
  std::vector<Event> cleared = e->DrainEvents();
  bool said = false;
  for (const Event& x : cleared) {
    if (x.kind == EventKind::kStructuralCleared)
      said = x.detail.find("6 held message(s) released") != std::string::npos;
  }
  EXPECT_TRUE(said);
  EXPECT_EQ(e->Stats().released_messages, 6u);
  EXPECT_EQ(e->Stats().expired_held, 0u);

  // A hold that never clears: its messages expire held.
  c.retry.lifetime = absl::Hours(2);
  auto h = MakeEngine(c);
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(h->Submit(i, "y.example", kT0).ok());
  for (absl::Time now = kT0; now < kT0 + absl::Hours(3); now += absl::Minutes(1)) {
    for (const Lease& x : Take(*h, now)) MustReport(*h, x.msg_id, now, kPtr);
  }
  const EngineStats s = h->Stats();
  EXPECT_EQ(s.expired, 3u);
  EXPECT_GE(s.held_messages, 2u);
  EXPECT_EQ(s.released_messages, 0u);
  EXPECT_GE(s.expired_held, 2u);  // all but a probe that may have expired in flight
}

}  // namespace
}  // namespace mailretry
