// Correctness under faults and misuse (issue 10): fencing of stale reports,
// clock skew between threads, destination names, reply sizes and rates. Each
// test here failed before its fix.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

std::unique_ptr<Engine> Make(EngineConfig c = {}) { return *Engine::Create(std::move(c), 3); }

Reply Parse(const char* text) { return *ParseReply(text); }

bool IsStale(const absl::Status& s) {
  return s.code() == absl::StatusCode::kFailedPrecondition &&
         s.GetPayload(kStaleLeasePayload).has_value();
}

// Item 4: attempt 1's report arrives after its lease timed out and attempt 2
// was leased. Unfenced, it was applied to attempt 2, whose real 250 was then
// refused and the delivered message retried.
TEST(ReliabilityTest, LateReportOfAnExpiredLeaseIsStaleAndChangesNothing) {
  EngineConfig c;
  c.lease_timeout = absl::Minutes(2);
  std::unique_ptr<Engine> e = Make(c);
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  std::vector<Lease> first = *e->TakeReady(kT0, 10);
  ASSERT_EQ(first.size(), 1u);
  const Lease one = first[0];
  // The lease times out; the message is due again at once and leased again.
  absl::Time t = kT0 + absl::Minutes(3);
  std::vector<Lease> second = *e->TakeReady(t, 10);
  ASSERT_EQ(second.size(), 1u);
  ASSERT_EQ(second[0].attempt, 2u);
  const EngineStats before = e->Stats();

  absl::StatusOr<Decision> late = e->ReportText(one, t, "451 4.3.0 try later");
  EXPECT_TRUE(IsStale(late.status())) << late.status();
  EXPECT_THAT(late.status().message(), HasSubstr("attempt 2 was leased since"));
  EngineStats after = e->Stats();
  EXPECT_EQ(after.stale_reports, before.stale_reports + 1);
  EXPECT_EQ(after.leased, 1u);
  EXPECT_EQ(after.deferred, before.deferred);

  absl::StatusOr<Decision> real = e->ReportText(second[0], t, "250 2.0.0 OK");
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_EQ(real->action, DecisionAction::kDelivered);
  EXPECT_EQ(e->Stats().delivered, 1u);
  // A second report of the delivered attempt: the message is gone.
  EXPECT_EQ(e->ReportText(second[0], t, "250 ok").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(e->CheckInvariants().ok());
}

TEST(ReliabilityTest, ReportOfALeaseThatExpiredAndWaitsIsStale) {
  EngineConfig c;
  c.lease_timeout = absl::Minutes(2);
  c.destination_defaults.suspend_base = absl::Hours(1);
  c.destination_defaults.suspend_max = absl::Hours(1);
  std::unique_ptr<Engine> e = Make(c);
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  ASSERT_TRUE(e->Submit(2, "a.example", kT0).ok());
  std::vector<Lease> leases = *e->TakeReady(kT0, 10);
  ASSERT_EQ(leases.size(), 2u);
  // Message 2's report suspends the destination; message 1's lease then
  // times out and it waits, not leased.
  ASSERT_TRUE(e->ReportText(leases[1], kT0, "421 4.7.0 server busy, try later").ok());
  ASSERT_TRUE(e->Advance(kT0 + absl::Minutes(3)).ok());
  absl::StatusOr<Decision> late = e->ReportText(leases[0], kT0 + absl::Minutes(3), "250 ok");
  EXPECT_TRUE(IsStale(late.status())) << late.status();
  EXPECT_EQ(e->Stats().delivered, 0u);
  absl::Status never = e->ReportText(1, 7, kT0 + absl::Minutes(3), "250 ok").status();
  EXPECT_EQ(never.code(), absl::StatusCode::kFailedPrecondition);  // never handed out: not stale
  EXPECT_FALSE(IsStale(never));
  EXPECT_EQ(e->ReportText(1, 0, kT0 + absl::Minutes(3), "250 ok").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReliabilityTest, ReportManyIsFencedPerEntry) {
  EngineConfig c;
  c.lease_timeout = absl::Minutes(2);
  std::unique_ptr<Engine> e = Make(c);
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  ASSERT_TRUE(e->Submit(2, "b.example", kT0).ok());
  ASSERT_EQ(e->TakeReady(kT0, 10)->size(), 2u);
  const absl::Time t = kT0 + absl::Minutes(3);
  std::vector<Lease> again = *e->TakeReady(t, 10);
  ASSERT_EQ(again.size(), 2u);
  const std::vector<uint64_t> ids = {1, 2};
  const std::vector<uint32_t> attempts = {1, 2};  // 1 is stale, 2 is current
  std::vector<absl::StatusOr<Decision>> out =
      e->ReportManyText(ids, attempts, std::vector<std::string>{"250 ok", "250 ok"}, t);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(IsStale(out[0].status()));
  ASSERT_TRUE(out[1].ok());
  EXPECT_EQ(e->Stats().delivered, 1u);
  EXPECT_EQ(e->Stats().stale_reports, 1u);
}

// Fenced reports are journaled with their attempt and replay the same way.
TEST(ReliabilityTest, FencedReportsReplayFromTheJournal) {
  std::string tmpl = ::testing::TempDir() + "/fenced_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  EngineConfig c;
  c.lease_timeout = absl::Minutes(2);
  JournalOptions o;
  o.fsync = JournalOptions::Fsync::kNever;
  {
    std::unique_ptr<Engine> e = *Engine::OpenDurable(tmpl, c, 3, o);
    ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
    const Lease one = (*e->TakeReady(kT0, 10))[0];
    const absl::Time t = kT0 + absl::Minutes(3);
    const Lease two = (*e->TakeReady(t, 10))[0];
    EXPECT_TRUE(IsStale(e->ReportText(one, t, "250 ok").status()));
    EXPECT_TRUE(e->ReportMany(std::vector<uint64_t>{1}, std::vector<uint32_t>{1},
                              std::vector<Reply>{Parse("250 ok")}, t)[0]
                    .status()
                    .GetPayload(kStaleLeasePayload)
                    .has_value());
    ASSERT_TRUE(e->ReportText(two, t, "451 4.3.0 later").ok());
  }
  absl::StatusOr<std::unique_ptr<Engine>> back = Engine::OpenDurable(tmpl, c, 3, o);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->Stats().stale_reports, 2u);
  EXPECT_EQ((*back)->Stats().deferred, 1u);
  EXPECT_EQ((*back)->Stats().scheduled, 1u);
  std::filesystem::remove_all(tmpl);
}

// Item 10: threads reading a wall clock reach the engine slightly out of
// order. Less than 1 s behind is taken as the engine's clock; more is refused.
TEST(ReliabilityTest, SlightlyEarlierTimesAreClampedAndCountedRealRegressionsRefused) {
  std::unique_ptr<Engine> e = Make();
  ASSERT_TRUE(e->Submit(1, "a.example", kT0 + absl::Seconds(10)).ok());
  EXPECT_TRUE(e->Submit(2, "a.example", kT0 + absl::Seconds(10) - absl::Milliseconds(300)).ok());
  EXPECT_TRUE(e->Advance(kT0 + absl::Milliseconds(9'001)).ok());
  EXPECT_EQ(e->Stats().clamped_times, 2u);
  absl::Status back = e->Advance(kT0 + absl::Seconds(9));  // 1 s behind: a real regression
  EXPECT_EQ(back.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(back.message(), HasSubstr("backwards"));
  EXPECT_EQ(e->Stats().clamped_times, 2u);
  // The clamped submit got the engine's time, not its own.
  std::vector<Lease> l = *e->TakeReady(kT0 + absl::Seconds(10), 10);
  EXPECT_EQ(l.size(), 2u);
}

// Item 5: one destination per domain, however it is spelled; names that
// cannot be a domain are refused before anything changes.
TEST(ReliabilityTest, DestinationSpellingsShareOneDestinationAndBadNamesAreRefused) {
  EngineConfig c;
  c.destination_defaults.initial_concurrency = 1;
  c.destination_defaults.max_concurrency = 1;
  std::unique_ptr<Engine> e = Make(c);
  ASSERT_TRUE(e->Submit(1, "example.com", kT0).ok());
  ASSERT_TRUE(e->Submit(2, "Example.COM.", kT0).ok());
  ASSERT_TRUE(e->SubmitMany(std::vector<uint64_t>{3}, std::vector<uint32_t>{0},
                            std::vector<std::string>{"EXAMPLE.com"}, kT0)
                  .ok());
  EXPECT_EQ(e->Stats().destinations, 1u);
  EXPECT_EQ(e->TakeReady(kT0, 10)->size(), 1u);  // one slot, shared
  EXPECT_TRUE(e->GetDestination("example.COM.").ok());
  for (const std::string& bad : {std::string("a\0b.example", 11), std::string("\xff.example"),
                                 std::string("b\xc3\xbc"
                                             "cher.example"),
                                 std::string(".")}) {
    EXPECT_EQ(e->Submit(9, bad, kT0).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(e->SubmitMany(std::vector<uint64_t>{9}, std::vector<uint32_t>{0},
                            std::vector<std::string>{bad}, kT0)
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(e->Submit(9, "ok.example", kT0, std::string("src\0x", 5)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Stats().submitted, 3u);
}

// Item 11: a transport reply's detail was kept whole (10 MB) in events.
TEST(ReliabilityTest, TransportDetailIsCappedLikeReplies) {
  std::unique_ptr<Engine> e = Make();
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  const Lease l = (*e->TakeReady(kT0, 1))[0];
  const std::string huge(10 << 20, 'x');
  ASSERT_TRUE(e->Report(l, kT0, TransportReply(Transport::kConnectionRefused, huge)).ok());
  for (const Event& ev : e->DrainEvents()) {
    EXPECT_LE(ev.reply.size(), kMaxReplyBytes + 64);
    EXPECT_LE(ev.detail.size(), kMaxReplyBytes + 64);
    for (const std::string& s : ev.info().samples) EXPECT_LE(s.size(), kMaxReplyBytes + 64);
  }
  EXPECT_LE(e->Stats().memory_bytes, size_t{4} << 20);
}

// Item 3: with the default wheel (1 s steps) a destination limited to 600/min
// delivered about 1 message per second: its wake-up was rounded up to the
// next wheel step.
TEST(ReliabilityTest, DefaultWheelDeliversAtTheConfiguredRate) {
  for (TimerBackend backend :
       {TimerBackend::kWheel, TimerBackend::kQuadHeap, TimerBackend::kBoostHeap}) {
    EngineConfig c;
    c.backend = backend;
    c.destination_defaults.rate = RateLimit{600, absl::Minutes(1)};
    std::unique_ptr<Engine> e = Make(c);
    std::vector<uint64_t> ids(2000);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = i + 1;
    ASSERT_TRUE(e->SubmitMany(ids, std::vector<uint32_t>(ids.size(), 0),
                              std::vector<std::string>{"a.example"}, kT0)
                    .ok());
    absl::Time now = kT0;
    uint64_t sent = 0;
    const absl::Time end = kT0 + absl::Minutes(1);
    while (now < end) {
      absl::StatusOr<std::vector<Lease>> got = e->TakeReady(now, 1000);
      ASSERT_TRUE(got.ok()) << got.status();
      // A driver sleeps until the wake-up it read after taking leases; the
      // replies arrive while it sleeps.
      std::optional<absl::Time> next = e->NextWakeup();
      for (const Lease& l : *got) {
        ASSERT_TRUE(e->ReportText(l, now, "250 ok").ok());
        ++sent;
      }
      ASSERT_TRUE(next.has_value());
      ASSERT_GT(*next, now) << TimerBackendName(backend);
      now = *next;
    }
    // R = 600/min over one minute: at least 95 % of it, and never more.
    EXPECT_GE(sent, 570u) << TimerBackendName(backend);
    EXPECT_LE(sent, 600u) << TimerBackendName(backend);
  }
}

}  // namespace
}  // namespace mailretry
