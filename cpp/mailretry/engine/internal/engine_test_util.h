// File: engine/internal/engine_test_util.h
// -----------------------------------------------------------------------------
// What the engine's test files share: sample replies in our own wording,
// small helpers that fail the test on an unexpected error, the balance check,
// and a seeded random driver for randomised workloads. Test support only.
#ifndef MAILRETRY_ENGINE_INTERNAL_ENGINE_TEST_UTIL_H_
#define MAILRETRY_ENGINE_INTERNAL_ENGINE_TEST_UTIL_H_

#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"

namespace mailretry::engine_test {

inline const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

inline constexpr char kOk[] = "250 2.0.0 OK queued";
inline constexpr char kTempFail[] = "451 4.3.0 Temporary failure";
inline constexpr char k421Generic[] = "421 4.3.0 Temporary local problem, please try again";
inline constexpr char kUnknownUser[] = "550 5.1.1 User unknown";
inline constexpr char kGreylisted[] = "451 4.7.1 Greylisted, please try again later";
inline constexpr char kTooMany[] = "421 4.7.0 Too many concurrent connections from your IP";
inline constexpr char kRateLimited[] =
    "421 4.7.28 Our system has detected an unusual rate of unsolicited mail";
inline constexpr char kBusy[] = "421 4.4.5 Server busy, try again later";
inline constexpr char kPtr[] = "451 4.7.25 PTR record does not match";
inline constexpr char kDnsbl[] =
    "450 4.7.1 Service unavailable; Client host blocked using zen.spamhaus.org";
inline constexpr char kYahoo[] =
    "421 4.7.0 [TSS04] Messages temporarily deferred due to user complaints";

// The default config with jitter off, for tests that check exact retry times
// (the default schedule is jittered by ±20 %; see RetryPolicy::Default()).
inline EngineConfig Unjittered(EngineConfig c = {}) {
  c.retry.jitter = Jitter::kNone;
  for (ScheduleOverride& o : c.overrides) {
    if (o.policy.has_value()) o.policy->jitter = Jitter::kNone;
  }
  return c;
}

inline std::unique_ptr<Engine> MakeEngine(EngineConfig c = {}, uint64_t seed = 1) {
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Create(std::move(c), seed);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

inline std::vector<Lease> Take(Engine& e, absl::Time now, size_t limit = 1000) {
  absl::StatusOr<std::vector<Lease>> l = e.TakeReady(now, limit);
  EXPECT_TRUE(l.ok()) << l.status();
  return l.ok() ? *l : std::vector<Lease>{};
}

inline Decision MustReport(Engine& e, uint64_t id, absl::Time now, std::string_view reply) {
  absl::StatusOr<Decision> d = e.ReportText(id, now, reply);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *d : Decision{};
}

template <class E>  // Event or OwnedEvent
std::vector<EventKind> Kinds(const std::vector<E>& ev) {
  std::vector<EventKind> out;
  for (const E& e : ev) out.push_back(e.kind);
  return out;
}

template <class E>
int Count(const std::vector<E>& ev, EventKind k) {
  return static_cast<int>(
      std::count_if(ev.begin(), ev.end(), [&](const E& e) { return e.kind == k; }));
}

inline std::string Render(const Event& e) {
  std::string s = absl::StrCat(
      std::string(EventKindName(e.kind)), "@", absl::FormatTime(e.time), " ", e.msg_id.value_or(0),
      " ", std::string(e.destination), "/", std::string(e.source), " a", e.attempt, " ",
      e.category ? std::string(CategoryName(*e.category)) : "-", " ", std::string(e.status), " ",
      std::string(e.reply), " | ", std::string(e.detail), " | ", std::string(e.rule));
  if (e.next_attempt) absl::StrAppend(&s, " next=", absl::FormatTime(*e.next_attempt));
  if (e.info().until) absl::StrAppend(&s, " until=", absl::FormatTime(*e.info().until));
  return s;
}

inline void ExpectBalanced(const Engine& e) {
  EngineStats s = e.Stats();
  EXPECT_EQ(s.submitted, s.delivered + s.bounced + s.expired + s.pending);
  EXPECT_EQ(s.pending, s.scheduled + s.ready + s.leased);
  absl::Status inv = e.CheckInvariants();
  EXPECT_TRUE(inv.ok()) << inv;
}

struct Driver {
  std::mt19937_64 rng;
  absl::Time now = kT0;
  uint64_t next_id = 1;
  std::vector<uint64_t> leased;
  std::vector<std::string> rendered;
  // Drain with DrainEvents(drained), reusing the previous drain's events.
  bool recycle = false;
  std::vector<Event> drained;
  // Optional: called on every drained event (e.g. to render more fields).
  std::function<void(const Event&)> on_event;
  explicit Driver(uint64_t seed) : rng(seed) {}

  void Step(Engine& e, bool check) {
    static const char* kReplies[] = {kOk,       kOk,         kOk,          kOk,         kOk,
                                     kTempFail, k421Generic, kUnknownUser, kGreylisted, kTooMany,
                                     kBusy,     kPtr,        kRateLimited};
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
      absl::StatusOr<Decision> d =
          e.ReportText(id, now, kReplies[rng() % (sizeof kReplies / sizeof *kReplies)]);
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
    if (recycle) {
      e.DrainEvents(drained);
    } else {
      drained = e.DrainEvents();
    }
    for (const Event& ev : drained) {
      rendered.push_back(Render(ev));
      if (on_event) on_event(ev);
    }
    if (check) ExpectBalanced(e);
  }
};

inline EngineConfig RandomizedConfig() {
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

inline std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/", name, ".", ::getpid());
}

}  // namespace mailretry::engine_test

#endif  // MAILRETRY_ENGINE_INTERNAL_ENGINE_TEST_UTIL_H_
