// Golden durable directory: a snapshot and a journal written by the 0.1 engine
// (tests/golden/durable-0.1/), with the state they must restore to, and that
// state saved as a snapshot (state.mrs). Replaying
// them checks that a refactor of the command path or of the journal keeps
// reading what earlier versions wrote, and reaches the same decisions.
//
// To regenerate after a deliberate format change (never silently):
//   MAILRETRY_WRITE_GOLDEN=1 build/mailretry_tests --gtest_filter='GoldenJournal.*'
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mailretry/engine/durable/journal.h"
#include "mailretry/engine/engine.h"

namespace mailretry {
namespace {

namespace fs = std::filesystem;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);
const char* const kDomains[] = {"gmail.example", "outlook.example", "yahoo.example", "tiny.example",
                                "grey.example"};

// The 0.1 engine's configuration in this build's terms: the mechanisms added
// since (format 4: half-open probing, ...) are off, as files written before
// them load (snapshot.cc).
EngineConfig GoldenConfig() {
  EngineConfig c;
  // The fixtures were written when the default had no jitter, and a durable
  // directory reopens only with the configuration it saved.
  c.retry.jitter = Jitter::kNone;
  c.destination_defaults.suspend_probe_interval = absl::ZeroDuration();
  c.destination_defaults.capacity_window = 0;
  c.destination_defaults.learn_greylist_delay = false;
  c.destination_defaults.quick_connection_retry = false;
  c.destination_defaults.learn_full_mailbox = false;
  c.destination_defaults.partial_throttle_window = false;
  c.structural.strong_attempts = c.structural.sender_destinations = 0;
  c.structural.early_weak_evidence = true;
  c.structural.probe_backoff = 1.0;
  ReactionRule r;
  r.name = "yahoo-deferral";
  r.destination = "yahoo.example";
  r.enhanced_pattern = "4.7.*";
  r.suspend_for = absl::Minutes(20);
  c.reactions.push_back(r);
  DestinationPolicy d;
  d.destination = "outlook.example";
  d.suspend_probe_interval = absl::ZeroDuration();
  d.capacity_window = 0;
  d.learn_greylist_delay = false;
  d.quick_connection_retry = false;
  d.learn_full_mailbox = false;
  d.partial_throttle_window = false;
  d.initial_concurrency = 2;
  d.max_concurrency = 4;
  d.rate = RateLimit{30, absl::Minutes(1)};
  c.destinations.push_back(d);
  return c;
}

// Replies cycled over the leases, one per kind of reaction.
const char* const kReplies[] = {
    "250 2.0.0 OK queued",
    "421 4.7.0 Try again later, closing connection",
    "450 4.2.0 Recipient greylisted, come back in a few minutes",
    "550 5.1.1 The mailbox does not exist",
    "451 4.7.1 Temporarily deferred for unusual volume",
    "421 4.7.0 Too many concurrent connections from your host",
};

// The calls recorded in the golden journal, after the snapshot was taken.
void RunWorkload(Engine& e) {
  absl::Time now = kStart;
  for (uint64_t id = 1; id <= 40; ++id) {
    ASSERT_TRUE(e.Submit(id, kDomains[id % 5], now, id % 2 ? "ip-a" : "ip-b").ok());
  }
  std::vector<uint64_t> ids;
  std::vector<uint32_t> idx;
  for (uint64_t id = 41; id <= 60; ++id) {
    ids.push_back(id);
    idx.push_back(static_cast<uint32_t>(id % 3));
  }
  const std::vector<std::string> names = {"gmail.example", "Tiny.Example", "new.example"};
  ASSERT_TRUE(e.SubmitMany(ids, idx, names, now).ok());
  size_t k = 0;
  for (int round = 0; round < 6; ++round) {
    now += absl::Minutes(7);
    ASSERT_TRUE(e.Advance(now).ok());
    absl::StatusOr<std::vector<Lease>> leases = e.TakeReady(now, 25);
    ASSERT_TRUE(leases.ok());
    std::vector<uint64_t> many_ids;
    std::vector<std::string> many_texts;
    for (const Lease& l : *leases) {
      const char* text = kReplies[k++ % (sizeof kReplies / sizeof kReplies[0])];
      if (k % 3 == 0) {
        many_ids.push_back(l.msg_id);
        many_texts.emplace_back(text);
      } else if (k % 7 == 0) {
        e.Report(l.msg_id, now, TransportReply(Transport::kConnectTimeout, "timed out"))
            .IgnoreError();
      } else {
        e.ReportText(l.msg_id, now, text).IgnoreError();
      }
    }
    e.ReportManyText(many_ids, many_texts, now);
    if (round % 2 == 1) e.DrainEvents();
  }
  // A call that fails is journaled too (with its outcome).
  EXPECT_FALSE(e.Submit(999, "", now).ok());
}

// What a restored engine must look like: stats, destinations and the next
// leases, as text.
std::string Describe(Engine& e) {
  std::ostringstream out;
  const EngineStats s = e.Stats();
  out << "submitted " << s.submitted << " delivered " << s.delivered << " bounced " << s.bounced
      << " expired " << s.expired << " scheduled " << s.scheduled << " ready " << s.ready
      << " leased " << s.leased << " attempts " << s.attempts << " deferred " << s.deferred
      << " destinations " << s.destinations << " suspended " << s.suspended_destinations << "\n";
  for (const char* d : kDomains) {
    for (const char* src : {"ip-a", "ip-b"}) {
      absl::StatusOr<DestinationInfo> i = e.GetDestination(d, src);
      if (!i.ok()) continue;
      out << d << "/" << src << " conc " << i->concurrency_limit << " suspended "
          << (i->suspended_until ? absl::FormatTime(*i->suspended_until) : "-") << " ready "
          << i->ready << " scheduled " << i->scheduled << " delivered " << i->delivered
          << " deferred " << i->deferred << "\n";
    }
  }
  if (std::optional<absl::Time> w = e.NextWakeup()) out << "next " << absl::FormatTime(*w) << "\n";
  // Continue identically: the decisions after recovery are part of the contract.
  absl::Time now = kStart + absl::Hours(3);
  for (int round = 0; round < 3; ++round, now += absl::Minutes(30)) {
    absl::StatusOr<std::vector<Lease>> leases = e.TakeReady(now, 100);
    if (!leases.ok()) {
      out << "take_ready " << leases.status() << "\n";
      continue;
    }
    for (const Lease& l : *leases) {
      absl::StatusOr<Decision> d = e.ReportText(l.msg_id, now, "451 4.3.0 Temporary local problem");
      out << "lease " << l.msg_id << " " << l.destination << " attempt " << l.attempt << " -> "
          << (d.ok() ? std::string(DecisionActionName(d->action)) : d.status().ToString()) << "\n";
    }
  }
  return out.str();
}

fs::path GoldenDir() { return fs::path(MAILRETRY_SOURCE_DIR) / "tests" / "golden" / "durable-0.1"; }

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

fs::path TempCopy() {
  const fs::path dir = fs::path(::testing::TempDir()) / absl::StrCat("golden-", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"snapshot-1.mrs", "journal-1.mrj"}) fs::copy_file(GoldenDir() / f, dir / f);
  return dir;
}

TEST(GoldenJournal, WriteWhenAsked) {
  if (std::getenv("MAILRETRY_WRITE_GOLDEN") == nullptr)
    GTEST_SKIP() << "MAILRETRY_WRITE_GOLDEN not set";
  const fs::path tmp = fs::path(::testing::TempDir()) / "golden-write";
  fs::remove_all(tmp);
  JournalOptions o;
  o.fsync = JournalOptions::Fsync::kNever;
  {
    absl::StatusOr<std::unique_ptr<Engine>> e =
        Engine::OpenDurable(tmp.string(), GoldenConfig(), 11, o);
    ASSERT_TRUE(e.ok()) << e.status();
    RunWorkload(**e);
  }
  fs::create_directories(GoldenDir());
  for (const char* f : {"snapshot-1.mrs", "journal-1.mrj"}) {
    fs::copy_file(tmp / f, GoldenDir() / f, fs::copy_options::overwrite_existing);
  }
  absl::StatusOr<std::unique_ptr<Engine>> e =
      Engine::OpenDurable(tmp.string(), GoldenConfig(), 11, o);
  ASSERT_TRUE(e.ok()) << e.status();
  // The same state as a snapshot, before Describe moves it on.
  ASSERT_TRUE((*e)->Save((GoldenDir() / "state.mrs").string()).ok());
  std::ofstream(GoldenDir() / "expected.txt") << Describe(**e);
}

TEST(GoldenJournal, ReplaysToTheRecordedState) {
  if (!fs::exists(GoldenDir() / "journal-1.mrj")) GTEST_SKIP() << "no golden fixture";
  const fs::path dir = TempCopy();
  JournalOptions o;
  o.fsync = JournalOptions::Fsync::kNever;
  absl::StatusOr<std::unique_ptr<Engine>> e =
      Engine::OpenDurable(dir.string(), GoldenConfig(), 11, o);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE((*e)->journal_info().has_value());
  EXPECT_GT((*e)->journal_info()->records_replayed, 50u);
  EXPECT_FALSE((*e)->journal_info()->torn_tail_dropped);
  EXPECT_TRUE((*e)->CheckInvariants().ok());
  EXPECT_EQ(Describe(**e), ReadAll(GoldenDir() / "expected.txt"));
  fs::remove_all(dir);
}

TEST(GoldenJournal, SnapshotOfTheReplayedStateLoadsToTheSameState) {
  if (!fs::exists(GoldenDir() / "state.mrs")) GTEST_SKIP() << "no golden fixture";
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Load((GoldenDir() / "state.mrs").string());
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE((*e)->CheckInvariants().ok());
  EXPECT_EQ(Describe(**e), ReadAll(GoldenDir() / "expected.txt"));
}

TEST(GoldenJournal, SnapshotAloneLoadsTheEmptyStartingEngine) {
  if (!fs::exists(GoldenDir() / "snapshot-1.mrs")) GTEST_SKIP() << "no golden fixture";
  absl::StatusOr<std::unique_ptr<Engine>> e =
      Engine::Load((GoldenDir() / "snapshot-1.mrs").string());
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->Stats().submitted, 0u);
  EXPECT_EQ((*e)->seed(), 11u);
  ASSERT_EQ((*e)->config().reactions.size(), 1u);
  EXPECT_EQ((*e)->config().reactions[0].name, "yahoo-deferral");
}

}  // namespace
}  // namespace mailretry
