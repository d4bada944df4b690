// The batch calls that fill a caller's vector (TakeReady(now, limit, out),
// ReportMany / ReportManyText(..., out)): the same answers as the calls that
// return a new vector, in the caller's storage, and journaled like them.
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/engine_test_util.h"

namespace mailretry {
namespace {

using namespace ::mailretry::engine_test;  // NOLINT: the shared test vocabulary

using Decisions = std::vector<absl::StatusOr<Decision>>;

std::string Describe(const absl::StatusOr<Decision>& d) {
  if (!d.ok()) return absl::StrCat("error ", d.status().ToString());
  return absl::StrCat(std::string(DecisionActionName(d->action)), " ",
                      d->next_attempt ? absl::FormatTime(*d->next_attempt) : "-", " ",
                      d->category ? static_cast<int>(*d->category) : -1, " ", std::string(d->rule),
                      " ", std::string(d->schedule), " ", d->attempt);
}
std::vector<std::string> Describe(const Decisions& ds) {
  std::vector<std::string> out;
  for (const auto& d : ds) out.push_back(Describe(d));
  return out;
}
std::vector<std::string> Describe(const std::vector<Lease>& ls) {
  std::vector<std::string> out;
  for (const Lease& l : ls) {
    out.push_back(absl::StrCat(l.msg_id, " ", std::string(l.destination), " ", l.attempt, " ",
                               absl::FormatTime(l.deadline), " ", l.slot.slot));
  }
  return out;
}

// What the engine counted (not memory: a reopened engine lays out its heap
// differently).
std::string StatsKey(const Engine& e) {
  const EngineStats s = e.Stats();
  return absl::StrCat(s.submitted, " ", s.pending, " ", s.ready, " ", s.leased, " ", s.scheduled,
                      " ", s.attempts, " ", s.delivered, " ", s.deferred, " ", s.bounced, " ",
                      s.expired);
}
std::string EventsKey(const std::vector<Event>& events) {
  std::string out;
  for (const Event& e : events) {
    absl::StrAppend(&out, std::string(EventKindName(e.kind)), " ", e.msg_id.value_or(0), " ",
                    e.attempt, " ", absl::FormatTime(e.time), " ", std::string(e.reply), "\n");
  }
  return out;
}

// The reply texts of a round, picked per message and round.
const char* const kMix[] = {kOk, kTempFail, kUnknownUser, kGreylisted, kOk, kTooMany, kOk};

// One round's reports for `leases`; `fenced` names each lease's attempt.
struct Round {
  std::vector<uint64_t> ids;
  std::vector<uint32_t> attempts;
  std::vector<std::string> texts;
  std::vector<Reply> replies;
};
Round MakeRound(const std::vector<Lease>& leases, int round) {
  Round r;
  for (const Lease& l : leases) {
    r.ids.push_back(l.msg_id);
    r.attempts.push_back(l.attempt);
    r.texts.emplace_back(kMix[(l.msg_id * 3 + static_cast<uint64_t>(round)) % std::size(kMix)]);
    r.replies.push_back(*ParseReply(r.texts.back()));
  }
  // An unknown id and a stale attempt: errors are answered in place too.
  r.ids.push_back(999'999);
  r.attempts.push_back(1);
  r.texts.emplace_back(kOk);
  r.replies.push_back(*ParseReply(kOk));
  return r;
}

void Submit(Engine& e) {
  for (uint64_t id = 1; id <= 300; ++id) {
    ASSERT_TRUE(e.Submit(id, absl::StrCat("d", id % 7, ".example"), kT0).ok());
  }
}

// Drives `a` with the returning calls and `b` with the filling ones, through
// each report flavour in turn, and compares every answer.
void CompareRuns(Engine& a, Engine& b) {
  std::vector<Lease> leases;
  Decisions decisions;
  absl::Time now = kT0;
  for (int round = 0; round < 24; ++round) {
    absl::StatusOr<std::vector<Lease>> la = a.TakeReady(now, 40);
    ASSERT_TRUE(la.ok()) << la.status();
    ASSERT_TRUE(b.TakeReady(now, 40, leases).ok());
    ASSERT_EQ(Describe(*la), Describe(leases)) << "round " << round;
    const Round r = MakeRound(leases, round);
    Decisions da;
    switch (round % 4) {
      case 0:
        da = a.ReportManyText(r.ids, r.texts, now);
        b.ReportManyText(r.ids, r.texts, now, decisions);
        break;
      case 1:
        da = a.ReportManyText(r.ids, r.attempts, r.texts, now);
        b.ReportManyText(r.ids, r.attempts, r.texts, now, decisions);
        break;
      case 2:
        da = a.ReportMany(r.ids, r.replies, now);
        b.ReportMany(r.ids, r.replies, now, decisions);
        break;
      default:
        da = a.ReportMany(r.ids, r.attempts, r.replies, now);
        b.ReportMany(r.ids, r.attempts, r.replies, now, decisions);
        break;
    }
    ASSERT_EQ(Describe(da), Describe(decisions)) << "round " << round;
    EXPECT_FALSE(decisions.back().ok());  // the unknown id
    now += absl::Minutes(20);
  }
  EXPECT_EQ(EventsKey(a.DrainEvents()), EventsKey(b.DrainEvents()));
  EXPECT_EQ(StatsKey(a), StatsKey(b));
  EXPECT_GT(a.Stats().delivered, 0u);
  EXPECT_GT(a.Stats().deferred, 0u);
  EXPECT_GT(a.Stats().bounced, 0u);
}

TEST(BatchInto, SameAnswersAsTheReturningCalls) {
  std::unique_ptr<Engine> a = MakeEngine();
  std::unique_ptr<Engine> b = MakeEngine();
  Submit(*a);
  Submit(*b);
  CompareRuns(*a, *b);
  ASSERT_TRUE(b->CheckInvariants().ok()) << b->CheckInvariants();
}

TEST(BatchInto, ResultsAreBuiltInTheCallersStorage) {
  std::unique_ptr<Engine> e = MakeEngine();
  Submit(*e);
  std::vector<Lease> leases;
  leases.reserve(100);
  const Lease* const lease_storage = leases.data();
  ASSERT_TRUE(e->TakeReady(kT0, 30, leases).ok());
  ASSERT_EQ(leases.size(), 30u);
  EXPECT_EQ(leases.data(), lease_storage);

  Decisions decisions;
  decisions.reserve(100);
  const absl::StatusOr<Decision>* const decision_storage = decisions.data();
  std::vector<uint64_t> ids;
  std::vector<std::string> texts;
  for (const Lease& l : leases) {
    ids.push_back(l.msg_id);
    texts.emplace_back(kOk);
  }
  e->ReportManyText(ids, texts, kT0, decisions);
  ASSERT_EQ(decisions.size(), 30u);
  EXPECT_EQ(decisions.data(), decision_storage);
  for (const auto& d : decisions) {
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->action, DecisionAction::kDelivered);
  }

  // A smaller round replaces the contents, in the same storage.
  ASSERT_TRUE(e->TakeReady(kT0, 5, leases).ok());
  EXPECT_EQ(leases.size(), 5u);
  EXPECT_EQ(leases.data(), lease_storage);
  e->ReportManyText(absl::MakeConstSpan(ids).first(2), texts, kT0, decisions);
  EXPECT_EQ(decisions.size(), 2u);
  EXPECT_EQ(decisions.data(), decision_storage);
}

TEST(BatchInto, ErrorsEmptyTheLeasesAndAnswerEachReport) {
  std::unique_ptr<Engine> e = MakeEngine();
  Submit(*e);
  std::vector<Lease> leases;
  ASSERT_TRUE(e->TakeReady(kT0 + absl::Hours(1), 10, leases).ok());
  ASSERT_EQ(leases.size(), 10u);
  // Far behind the engine's clock: refused, and nothing is leased.
  const absl::Status s = e->TakeReady(kT0, 10, leases);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(leases.empty());
  EXPECT_EQ(e->Stats().leased, 10u);

  Decisions decisions(7, absl::InternalError("left over"));
  const std::vector<uint64_t> ids = {1, 2};
  e->ReportManyText(ids, std::vector<uint32_t>{1}, std::vector<std::string>{kOk, kOk},
                    kT0 + absl::Hours(1), decisions);
  ASSERT_EQ(decisions.size(), 2u);
  for (const auto& d : decisions) EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
}

// A durable engine driven by the filling calls journals them like the
// returning ones: reopened, it is where an engine that never closed is.
TEST(BatchInto, JournaledAndReplayed) {
  std::string dir = ::testing::TempDir() + "/batch_into_XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  {
    std::unique_ptr<Engine> a = MakeEngine(Unjittered(), 7);
    JournalOptions o{JournalOptions::Fsync::kNever};
    absl::StatusOr<std::unique_ptr<Engine>> b = Engine::OpenDurable(dir, Unjittered(), 7, o);
    ASSERT_TRUE(b.ok()) << b.status();
    Submit(*a);
    Submit(**b);
    CompareRuns(*a, **b);
    const std::string want = StatsKey(**b);
    b->reset();
    absl::StatusOr<std::unique_ptr<Engine>> r = Engine::OpenDurable(dir, Unjittered(), 7, o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_GT((*r)->journal_info()->records_replayed, 0u);
    EXPECT_EQ(StatsKey(**r), want);
    ASSERT_TRUE((*r)->CheckInvariants().ok()) << (*r)->CheckInvariants();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace mailretry
