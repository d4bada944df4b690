#include "mailretry/engine/durable/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/journal_test_XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

EngineConfig SmallConfig() {
  EngineConfig c;
  c.destination_defaults.initial_concurrency = 3;
  c.lease_timeout = absl::Minutes(2);
  return c;
}

// kNever unless a test is about fsync: an fsync costs milliseconds here.
std::unique_ptr<Engine> MustOpen(const std::string& dir,
                                 JournalOptions o = {JournalOptions::Fsync::kNever}) {
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::OpenDurable(dir, SmallConfig(), 7, o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

// Reopens with whatever config the directory holds.
absl::StatusOr<std::unique_ptr<Engine>> ReopenSaved(const std::string& dir) {
  JournalOptions o{JournalOptions::Fsync::kNever};
  o.reopen = JournalOptions::Reopen::kUseSaved;
  return Engine::OpenDurable(dir, {}, 0, o);
}

std::unique_ptr<Engine> Reference() { return *Engine::Create(SmallConfig(), 7); }

// Everything Stats reports except memory (a loaded engine lays out its heap
// differently).
std::string StatsKey(const Engine& e) {
  const EngineStats s = e.Stats();
  return absl::StrCat(s.submitted, "/", s.delivered, "/", s.bounced, "/", s.expired, "/", s.pending,
                      "/", s.scheduled, "/", s.ready, "/", s.leased, "/", s.attempts, "/",
                      s.deferred, "/", s.lease_expirations, "/", s.destinations, "/",
                      s.suspended_destinations, "/", s.held_destinations, "/", s.events_buffered,
                      "/", s.events_dropped);
}

std::string EventsKey(const std::vector<Event>& events) {
  std::string out;
  for (const Event& e : events) {
    absl::StrAppend(&out, std::string(EventKindName(e.kind)), "@", absl::ToUnixMillis(e.time), ":",
                    e.msg_id.value_or(0), ":", std::string(e.destination), ":", e.attempt, ":",
                    std::string(e.detail), ";");
  }
  return out;
}

// A deterministic mix of every journaled call, failing ones included. Two
// workloads with the same seed drive two engines through the same calls as
// long as the engines answer the same.
class Workload {
 public:
  explicit Workload(uint64_t seed) : rng_(seed) {}

  void Step(Engine& e) {
    now_ += absl::Seconds(Uniform(0, 40));
    const int op = Uniform(0, 99);
    if (op < 35) {
      e.Submit(next_id_++, absl::StrCat("d", Uniform(0, 9), ".example"), now_,
               Uniform(0, 3) == 0 ? "src" : "")
          .IgnoreError();
    } else if (op < 38) {
      e.Submit(1, "d1.example", now_).IgnoreError();  // AlreadyExists while 1 is pending
    } else if (op < 43) {
      const std::vector<uint64_t> ids = {next_id_, next_id_ + 1, next_id_ + 2};
      next_id_ += 3;
      const std::vector<std::string> names = {"d2.example", "many.example"};
      e.SubmitMany(ids, std::vector<uint32_t>{0, 1, 1}, names, now_).IgnoreError();
    } else if (op < 70) {
      absl::StatusOr<std::vector<Lease>> l = e.TakeReady(now_, static_cast<size_t>(Uniform(1, 8)));
      if (l.ok()) {
        for (const Lease& x : *l) leased_.push_back(x.msg_id);
      }
    } else if (op < 85 && !leased_.empty()) {
      const size_t i = static_cast<size_t>(Uniform(0, static_cast<int>(leased_.size()) - 1));
      const uint64_t id = leased_[i];
      leased_.erase(leased_.begin() + static_cast<std::ptrdiff_t>(i));
      static constexpr const char* kReplies[] = {"250 2.0.0 OK", "250 ok", "451 4.3.0 Try later",
                                                 "550 5.1.1 User unknown",
                                                 "421 4.7.0 Too many connections"};
      if (Uniform(0, 4) == 0) {
        e.Report(id, now_, TransportReply(Transport::kConnectionRefused)).IgnoreError();
      } else {
        e.ReportText(id, now_, kReplies[Uniform(0, 4)]).IgnoreError();
      }
    } else if (op < 88 && leased_.size() >= 2) {
      const std::vector<uint64_t> ids = {leased_.back(), leased_[0], 999'999'999};
      leased_.pop_back();
      leased_.erase(leased_.begin());
      if (Uniform(0, 1) == 0) {
        e.ReportManyText(ids, std::vector<std::string>{"250 ok", "not a reply", "250 ok"}, now_);
      } else {
        e.ReportMany(ids,
                     std::vector<Reply>{*ParseReply("451 4.7.1 greylisted"), *ParseReply("250 ok")},
                     now_);
      }
    } else if (op < 93) {
      e.Advance(now_).IgnoreError();
    } else if (op < 96) {
      events_ += EventsKey(e.DrainEvents());
    } else if (op < 98) {
      e.ReportText(888'888'888, now_, "250 ok").IgnoreError();  // NotFound, but time advanced
    } else {
      e.Advance(now_ - absl::Minutes(5)).IgnoreError();  // time going backwards: rejected
    }
  }
  void Run(Engine& e, int steps) {
    for (int i = 0; i < steps; ++i) Step(e);
  }
  const std::string& events() const { return events_; }
  absl::Time now() const { return now_; }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  std::mt19937_64 rng_;
  absl::Time now_ = kT0;
  uint64_t next_id_ = 1;
  std::vector<uint64_t> leased_;
  std::string events_;
};

uint64_t FileSize(const std::string& path) { return fs::file_size(path); }

void Truncate(const std::string& path, uint64_t size) { fs::resize_file(path, size); }

void FlipByte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x5a));
}

class JournalPolicyTest : public ::testing::TestWithParam<JournalOptions::Fsync> {};

TEST_P(JournalPolicyTest, CrashAndReopenContinuesLikeAnEngineThatNeverCrashed) {
  TempDir dir;
  JournalOptions o;
  o.fsync = GetParam();
  o.group_interval = absl::Minutes(10);  // workload steps are up to 40 s apart
  // Fewer steps when every call fsyncs (milliseconds each).
  const int steps = o.fsync == JournalOptions::Fsync::kEveryOp ? 100 : 400;
  Workload ref_load(42), dur_load(42);
  std::unique_ptr<Engine> ref = Reference();
  std::unique_ptr<Engine> dur = MustOpen(dir.path(), o);
  ASSERT_NE(dur, nullptr);
  EXPECT_TRUE(dur->journal_info()->created);
  for (int round = 0; round < 3; ++round) {
    ref_load.Run(*ref, steps);
    dur_load.Run(*dur, steps);
    const uint64_t records = dur->journal_info()->records;
    dur.reset();  // a crash: no compaction, nothing but what each call wrote
    dur = MustOpen(dir.path(), o);
    ASSERT_NE(dur, nullptr);
    const JournalInfo info = *dur->journal_info();
    EXPECT_FALSE(info.created);
    EXPECT_FALSE(info.torn_tail_dropped);
    EXPECT_EQ(info.records_replayed, records);
    EXPECT_EQ(StatsKey(*dur), StatsKey(*ref)) << "round " << round;
    ASSERT_TRUE(dur->CheckInvariants().ok()) << dur->CheckInvariants();
  }
  EXPECT_GT(ref->Stats().delivered, 0u);
  EXPECT_GT(ref->Stats().leased, 0u);  // leases outstanding across the crashes
  ref_load.Run(*ref, 300);
  dur_load.Run(*dur, 300);
  EXPECT_EQ(StatsKey(*dur), StatsKey(*ref));
  EXPECT_EQ(dur_load.events(), ref_load.events());
  EXPECT_EQ(EventsKey(dur->DrainEvents()), EventsKey(ref->DrainEvents()));
}

INSTANTIATE_TEST_SUITE_P(Policies, JournalPolicyTest,
                         ::testing::Values(JournalOptions::Fsync::kNever,
                                           JournalOptions::Fsync::kEveryOp,
                                           JournalOptions::Fsync::kGrouped));

TEST(EngineJournalTest, EveryOpSyncsEachRecordAndNeverSyncsNone) {
  TempDir a, b;
  Workload la(1), lb(1);
  std::unique_ptr<Engine> every = MustOpen(a.path(), {JournalOptions::Fsync::kEveryOp});
  std::unique_ptr<Engine> never = MustOpen(b.path(), {JournalOptions::Fsync::kNever});
  la.Run(*every, 100);
  lb.Run(*never, 100);
  EXPECT_EQ(every->journal_info()->fsyncs, every->journal_info()->records);
  EXPECT_EQ(never->journal_info()->fsyncs, 0u);
  EXPECT_TRUE(never->Sync().ok());
  EXPECT_EQ(never->journal_info()->fsyncs, 1u);
  EXPECT_TRUE(never->Sync().ok());  // nothing new written: no fsync
  EXPECT_EQ(never->journal_info()->fsyncs, 1u);
}

TEST(EngineJournalTest, GroupedLeavesFsyncToTheBackgroundAndSyncForcesIt) {
  TempDir dir;
  // An hour: the background thread stays asleep for the whole test.
  JournalOptions o{JournalOptions::Fsync::kGrouped, absl::Hours(1)};
  std::unique_ptr<Engine> e = MustOpen(dir.path(), o);
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(e->Submit(i, "a.example", kT0 + absl::Seconds(i)).ok());
  EXPECT_EQ(e->journal_info()->fsyncs, 0u);  // no call waited for the disk
  ASSERT_TRUE(e->Sync().ok());
  EXPECT_EQ(e->journal_info()->fsyncs, 1u);
  ASSERT_TRUE(e->Sync().ok());  // nothing new
  EXPECT_EQ(e->journal_info()->fsyncs, 1u);
  ASSERT_TRUE(e->Compact().ok());  // the background thread follows the new file
  ASSERT_TRUE(e->Submit(11, "a.example", kT0 + absl::Seconds(11)).ok());
  ASSERT_TRUE(e->Sync().ok());
  EXPECT_EQ(e->journal_info()->fsyncs, 2u);
}

TEST(EngineJournalTest, GroupedFsyncsFromTheBackgroundThread) {
  TempDir dir;
  JournalOptions o{JournalOptions::Fsync::kGrouped, absl::Milliseconds(1)};
  std::unique_ptr<Engine> e = MustOpen(dir.path(), o);
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  // Waits for an asynchronous effect (no timing assumption): normally ~1 ms.
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (e->journal_info()->fsyncs == 0 && absl::Now() < give_up)
    absl::SleepFor(absl::Milliseconds(1));
  EXPECT_GE(e->journal_info()->fsyncs, 1u);
  ASSERT_TRUE(e->Compact().ok());
  ASSERT_TRUE(e->Submit(2, "a.example", kT0).ok());
  e.reset();  // joins the thread, fsyncs what is left
  e = MustOpen(dir.path());
  EXPECT_EQ(e->Stats().submitted, 2u);
}

TEST(EngineJournalTest, TornLastRecordIsDroppedAndTheFileTruncated) {
  TempDir dir;
  Workload load(3);
  std::unique_ptr<Engine> e = MustOpen(dir.path());
  load.Run(*e, 200);
  ASSERT_TRUE(e->Submit(77'777, "last.example", load.now()).ok());
  const EngineStats before = e->Stats();
  const JournalInfo info = *e->journal_info();
  e.reset();
  const std::string journal = dir.Sub("journal-1.mrj");
  ASSERT_EQ(FileSize(journal), info.bytes);
  Truncate(journal, info.bytes - 3);

  e = MustOpen(dir.path());
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->journal_info()->torn_tail_dropped);
  EXPECT_EQ(e->journal_info()->records_replayed, info.records - 1);
  EXPECT_EQ(e->Stats().submitted, before.submitted - 1);  // the torn submit is gone
  EXPECT_LT(FileSize(journal), info.bytes - 3);           // cut back to the last whole record
  // Appending after the cut works, and the next open sees a clean journal.
  ASSERT_TRUE(e->Submit(77'777, "last.example", load.now()).ok());
  e.reset();
  e = MustOpen(dir.path());
  EXPECT_FALSE(e->journal_info()->torn_tail_dropped);
  EXPECT_EQ(e->Stats().submitted, before.submitted);
}

TEST(EngineJournalTest, GarbageAfterTheLastRecordIsATornWrite) {
  TempDir dir;
  std::unique_ptr<Engine> e = MustOpen(dir.path());
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  e.reset();
  {
    std::ofstream f(dir.Sub("journal-1.mrj"), std::ios::app | std::ios::binary);
    f << std::string(100, '\0');  // a power loss can extend the file with zeros
  }
  e = MustOpen(dir.path());
  EXPECT_TRUE(e->journal_info()->torn_tail_dropped);
  EXPECT_EQ(e->Stats().submitted, 1u);
}

TEST(EngineJournalTest, CorruptedMiddleIsDataLossWithTheOffset) {
  TempDir dir;
  Workload load(4);
  std::unique_ptr<Engine> e = MustOpen(dir.path());
  load.Run(*e, 50);
  e.reset();
  FlipByte(dir.Sub("journal-1.mrj"), 24 + 10);  // inside the first record (the header is 24 bytes)
  absl::StatusOr<std::unique_ptr<Engine>> r = Engine::OpenDurable(dir.path(), SmallConfig(), 7);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("journal-1.mrj"));
  EXPECT_THAT(r.status().message(), HasSubstr("record 1 at byte 24"));
  EXPECT_THAT(r.status().message(), HasSubstr("valid records follow"));
}

TEST(EngineJournalTest, CorruptedHeaderIsDataLoss) {
  TempDir dir;
  MustOpen(dir.path()).reset();
  FlipByte(dir.Sub("journal-1.mrj"), 2);
  absl::StatusOr<std::unique_ptr<Engine>> r = ReopenSaved(dir.path());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("bad magic"));
}

TEST(EngineJournalTest, JournalOfAnotherSnapshotIsDataLoss) {
  TempDir dir;
  std::unique_ptr<Engine> e = MustOpen(dir.path());
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  e.reset();
  // Replace the snapshot with one where message 1 is already pending.
  std::unique_ptr<Engine> other = Reference();
  ASSERT_TRUE(other->Submit(1, "a.example", kT0).ok());
  ASSERT_TRUE(other->Save(dir.Sub("snapshot-1.mrs")).ok());
  absl::StatusOr<std::unique_ptr<Engine>> r = ReopenSaved(dir.path());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(),
              HasSubstr("submit replayed as ALREADY_EXISTS, journal says OK"));
}

TEST(EngineJournalTest, CompactionStartsANewGenerationAndRemovesTheOld) {
  TempDir dir;
  Workload ref_load(5), dur_load(5);
  std::unique_ptr<Engine> ref = Reference();
  std::unique_ptr<Engine> dur = MustOpen(dir.path());
  ref_load.Run(*ref, 300);
  dur_load.Run(*dur, 300);
  ASSERT_TRUE(dur->Compact().ok());
  EXPECT_EQ(dur->journal_info()->generation, 2u);
  EXPECT_EQ(dur->journal_info()->records, 0u);
  EXPECT_FALSE(fs::exists(dir.Sub("snapshot-1.mrs")));
  EXPECT_FALSE(fs::exists(dir.Sub("journal-1.mrj")));
  EXPECT_TRUE(fs::exists(dir.Sub("snapshot-2.mrs")));
  EXPECT_TRUE(fs::exists(dir.Sub("journal-2.mrj")));
  ref_load.Run(*ref, 300);
  dur_load.Run(*dur, 300);
  ASSERT_TRUE(dur->Compact().ok());
  ref_load.Run(*ref, 100);
  dur_load.Run(*dur, 100);
  const uint64_t records = dur->journal_info()->records;
  dur.reset();
  dur = MustOpen(dir.path());
  EXPECT_EQ(dur->journal_info()->generation, 3u);
  EXPECT_EQ(dur->journal_info()->records_replayed, records);
  EXPECT_EQ(StatsKey(*dur), StatsKey(*ref));
  ref_load.Run(*ref, 200);
  dur_load.Run(*dur, 200);
  EXPECT_EQ(StatsKey(*dur), StatsKey(*ref));
  EXPECT_EQ(dur_load.events(), ref_load.events());
}

TEST(EngineJournalTest, AutomaticCompactionKeepsTheJournalShort) {
  TempDir dir;
  JournalOptions o{JournalOptions::Fsync::kNever};
  o.compact_after_records = 100;
  Workload ref_load(9), dur_load(9);
  std::unique_ptr<Engine> ref = Reference();
  std::unique_ptr<Engine> dur = MustOpen(dir.path(), o);
  ref_load.Run(*ref, 1000);
  dur_load.Run(*dur, 1000);
  const JournalInfo info = *dur->journal_info();
  EXPECT_GE(info.compactions, 9u);
  EXPECT_EQ(info.failed_compactions, 0u);
  EXPECT_LT(info.records, 100u);
  EXPECT_EQ(info.generation, 1 + info.compactions);
  dur.reset();
  dur = MustOpen(dir.path(), o);
  EXPECT_EQ(dur->journal_info()->records_replayed, info.records);
  EXPECT_EQ(StatsKey(*dur), StatsKey(*ref));
  ref_load.Run(*ref, 200);
  dur_load.Run(*dur, 200);
  EXPECT_EQ(StatsKey(*dur), StatsKey(*ref));
  EXPECT_EQ(dur_load.events(), ref_load.events());
}

TEST(EngineJournalTest, CrashAfterTheNewSnapshotBeforeItsJournal) {
  TempDir dir;
  Workload ref_load(6), dur_load(6);
  std::unique_ptr<Engine> ref = Reference();
  std::unique_ptr<Engine> dur = MustOpen(dir.path());
  ref_load.Run(*ref, 300);
  dur_load.Run(*dur, 300);
  // Compaction's first step, then a crash: snapshot-2 and no journal-2.
  ASSERT_TRUE(dur->Save(dir.Sub("snapshot-2.mrs")).ok());
  dur.reset();
  dur = MustOpen(dir.path());
  EXPECT_EQ(dur->journal_info()->generation, 2u);
  EXPECT_EQ(dur->journal_info()->records_replayed, 0u);
  EXPECT_FALSE(fs::exists(dir.Sub("journal-1.mrj")));
  EXPECT_EQ(StatsKey(*dur), StatsKey(*ref));
  ref_load.Run(*ref, 200);
  dur_load.Run(*dur, 200);
  EXPECT_EQ(StatsKey(*dur), StatsKey(*ref));
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Issue 10 item 1: a directory whose snapshot is gone but whose journal holds
// acknowledged calls must not be re-initialised (that overwrote the journal
// with an empty one: total silent loss).
TEST(EngineJournalTest, MissingSnapshotWithAJournalIsDataLossAndNothingIsOverwritten) {
  TempDir dir;
  Workload load(11);
  std::unique_ptr<Engine> dur = MustOpen(dir.path());
  load.Run(*dur, 300);
  ASSERT_GT(dur->Stats().submitted, 0u);
  dur.reset();
  ASSERT_TRUE(fs::remove(dir.Sub("snapshot-1.mrs")));
  const std::string before = ReadAll(dir.Sub("journal-1.mrj"));
  absl::StatusOr<std::unique_ptr<Engine>> r = Engine::OpenDurable(dir.path(), SmallConfig(), 7);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("snapshot"));
  EXPECT_TRUE(ReadAll(dir.Sub("journal-1.mrj")) == before) << "the journal was rewritten";
  EXPECT_FALSE(fs::exists(dir.Sub("snapshot-1.mrs")));
}

// Issue 10 item 9: a missing journal was read as an empty one, dropping every
// call made since the snapshot.
TEST(EngineJournalTest, MissingJournalIsDataLossUnlessACompactionWasInterrupted) {
  TempDir dir;
  Workload load(12);
  std::unique_ptr<Engine> dur = MustOpen(dir.path());
  load.Run(*dur, 300);
  dur.reset();
  ASSERT_TRUE(fs::remove(dir.Sub("journal-1.mrj")));
  absl::StatusOr<std::unique_ptr<Engine>> r = Engine::OpenDurable(dir.path(), SmallConfig(), 7);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("journal-1.mrj"));
  EXPECT_FALSE(fs::exists(dir.Sub("journal-1.mrj")));
}

// A journal newer than every snapshot cannot come from a crash (a compaction
// writes its snapshot first): refusing it keeps it from being overwritten.
TEST(EngineJournalTest, JournalNewerThanTheLatestSnapshotIsDataLoss) {
  TempDir dir;
  Workload load(13);
  std::unique_ptr<Engine> dur = MustOpen(dir.path());
  load.Run(*dur, 200);
  const std::string old_snapshot = ReadAll(dir.Sub("snapshot-1.mrs"));
  ASSERT_TRUE(dur->Compact().ok());
  load.Run(*dur, 200);
  dur.reset();
  // The newest snapshot is lost and an old one is back: replaying from it
  // would silently drop journal-2 (and a later compaction would overwrite it).
  ASSERT_TRUE(fs::remove(dir.Sub("snapshot-2.mrs")));
  { std::ofstream(dir.Sub("snapshot-1.mrs"), std::ios::binary) << old_snapshot; }
  const std::string before = ReadAll(dir.Sub("journal-2.mrj"));
  absl::StatusOr<std::unique_ptr<Engine>> r = Engine::OpenDurable(dir.path(), SmallConfig(), 7);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_TRUE(ReadAll(dir.Sub("journal-2.mrj")) == before) << "the journal was rewritten";
}

// A crash while creating the directory leaves at most a journal without
// records: nothing was acknowledged, so creating the engine is recovery.
TEST(EngineJournalTest, CrashWhileCreatingLeavesAnEmptyJournalThatReopens) {
  TempDir dir;
  { std::unique_ptr<Engine> dur = MustOpen(dir.path()); }
  ASSERT_TRUE(fs::remove(dir.Sub("snapshot-1.mrs")));
  std::unique_ptr<Engine> dur = MustOpen(dir.path());
  ASSERT_NE(dur, nullptr);
  EXPECT_TRUE(dur->journal_info()->created);
  EXPECT_TRUE(fs::exists(dir.Sub("snapshot-1.mrs")));
}

TEST(EngineJournalTest, LeftoverTemporaryFilesFromAnInterruptedCompactionAreIgnoredAndRemoved) {
  TempDir dir;
  Workload ref_load(8), dur_load(8);
  std::unique_ptr<Engine> ref = Reference();
  std::unique_ptr<Engine> dur = MustOpen(dir.path());
  ref_load.Run(*ref, 200);
  dur_load.Run(*dur, 200);
  dur.reset();
  { std::ofstream(dir.Sub("snapshot-2.mrs.tmp.12345")) << "half a snapshot"; }
  { std::ofstream(dir.Sub("journal-2.mrj.tmp")) << "MRJ"; }
  dur = MustOpen(dir.path());
  EXPECT_EQ(dur->journal_info()->generation, 1u);
  EXPECT_EQ(StatsKey(*dur), StatsKey(*ref));
  EXPECT_FALSE(fs::exists(dir.Sub("snapshot-2.mrs.tmp.12345")));
  EXPECT_FALSE(fs::exists(dir.Sub("journal-2.mrj.tmp")));
}

TEST(EngineJournalTest, SecondOpenOfTheSameDirectoryIsRefused) {
  TempDir dir;
  std::unique_ptr<Engine> e = MustOpen(dir.path());
  absl::StatusOr<std::unique_ptr<Engine>> again = Engine::OpenDurable(dir.path());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr("open by another engine"));
  e.reset();
  EXPECT_TRUE(ReopenSaved(dir.path()).ok());
}

// Issue 10 item 8: a reopen with another config or seed silently used the
// saved ones. The saved ones still win, but only when the caller asks for
// them or passes the same.
TEST(EngineJournalTest, ReopenWithAnotherConfigOrSeedIsRefusedUnlessTheSavedOneIsAskedFor) {
  TempDir dir;
  std::unique_ptr<Engine> e = MustOpen(dir.path());
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  e.reset();
  JournalOptions o{JournalOptions::Fsync::kNever};
  absl::StatusOr<std::unique_ptr<Engine>> r = Engine::OpenDurable(dir.path(), SmallConfig(), 8, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("seed 7 (not 8)"));
  EngineConfig other = SmallConfig();
  other.lease_timeout = absl::Minutes(3);
  r = Engine::OpenDurable(dir.path(), other, 7, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("another configuration"));
  r = ReopenSaved(dir.path());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->seed(), 7u);
  EXPECT_EQ((*r)->config().lease_timeout, absl::Minutes(2));
  EXPECT_EQ((*r)->Stats().pending, 1u);
  r->reset();
  EXPECT_TRUE(Engine::OpenDurable(dir.path(), SmallConfig(), 7, o).ok());
}

TEST(EngineJournalTest, UnusableDirectoryIsAClearError) {
  TempDir dir;
  { std::ofstream(dir.Sub("file")) << "x"; }
  absl::StatusOr<std::unique_ptr<Engine>> r = Engine::OpenDurable(dir.Sub("file/sub"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("file/sub"));
  r = Engine::OpenDurable(dir.Sub("file"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  r = Engine::OpenDurable(dir.Sub("missing/parent"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Engine::OpenDurable("").status().code(), absl::StatusCode::kInvalidArgument);
  JournalOptions bad;
  bad.group_interval = absl::Milliseconds(-1);
  EXPECT_EQ(Engine::OpenDurable(dir.Sub("x"), {}, 0, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  EngineConfig bad_config;
  bad_config.lease_timeout = absl::ZeroDuration();
  EXPECT_EQ(Engine::OpenDurable(dir.Sub("y"), bad_config).status().code(),
            absl::StatusCode::kInvalidArgument);
  if (::geteuid() != 0) {  // root ignores permissions
    ASSERT_EQ(::mkdir(dir.Sub("ro").c_str(), 0500), 0);
    r = Engine::OpenDurable(dir.Sub("ro"));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(), HasSubstr("ro/"));
    ::chmod(dir.Sub("ro").c_str(), 0700);
  }
}

TEST(EngineJournalTest, NonDurableEngineHasNoJournal) {
  std::unique_ptr<Engine> e = Reference();
  EXPECT_FALSE(e->journal_info().has_value());
  EXPECT_EQ(e->Compact().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(e->Sync().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(EngineJournalTest, EmptyDrainIsNotJournaledAndReadsAreNot) {
  TempDir dir;
  std::unique_ptr<Engine> e = MustOpen(dir.path());
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  const uint64_t records = e->journal_info()->records;
  e->Stats();
  e->NextWakeup();
  e->GetDestination("a.example").IgnoreError();
  EXPECT_TRUE(e->DrainEvents().empty());
  EXPECT_EQ(e->journal_info()->records, records);
  // A reply that does not parse never reaches the engine.
  EXPECT_FALSE(e->ReportText(1, kT0, "garbage").ok());
  EXPECT_EQ(e->journal_info()->records, records);
}

}  // namespace
}  // namespace mailretry
