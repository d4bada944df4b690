// The cost of the engine's durable mode: a submit → take → report cycle with
// the journal off, on without fsync (write() only), on with grouped fsync
// (every 5 ms) and on with an fsync per call.
//
//   bm_journal --benchmark_min_time=1
//
// BM_JournalCycle: one message per call (3 journaled calls per iteration).
// BM_JournalBatchCycle: SubmitMany / TakeReady / ReportMany of 100 messages
// (3 journaled calls per 100 messages). Counters: ops_per_s (engine calls per
// wall second; one op = one submitted message, one lease or one report, as in
// bm_engine), calls_per_s (journaled calls), fsyncs, journal_bytes_per_op.
// The engine is given the wall clock as `now`, as a driver would. Grouped
// fsyncs run on the journal's background thread.
// Journals go to $MAILRETRY_BENCH_DIR (default /tmp); the disk decides the
// fsync figures.

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "mailretry/engine/durable/journal.h"
#include "mailretry/engine/engine.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

constexpr int kDestinations = 100;

// mode: 0 = no journal, 1 = kNever, 2 = kGrouped (5 ms), 3 = kEveryOp.
std::unique_ptr<Engine> MakeEngine(int mode, std::string* dir) {
  if (mode == 0) return *Engine::Create({}, 1);
  const char* base = std::getenv("MAILRETRY_BENCH_DIR");
  *dir = absl::StrCat(base != nullptr ? base : "/tmp", "/bm_journal_", ::getpid(), "_", mode);
  std::filesystem::remove_all(*dir);
  JournalOptions o;
  o.fsync = mode == 1
                ? JournalOptions::Fsync::kNever
                : (mode == 2 ? JournalOptions::Fsync::kGrouped : JournalOptions::Fsync::kEveryOp);
  o.group_interval = absl::Milliseconds(5);
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::OpenDurable(*dir, {}, 1, o);
  if (!e.ok()) std::abort();
  return *std::move(e);
}

const char* ModeName(int mode) {
  static constexpr const char* kNames[] = {"off", "write_only", "grouped_5ms", "fsync_every_op"};
  return kNames[mode];
}

void Finish(benchmark::State& state, Engine& e, const std::string& dir, int mode, uint64_t ops,
            uint64_t calls) {
  state.counters["ops_per_s"] =
      benchmark::Counter(static_cast<double>(ops), benchmark::Counter::kIsRate);
  state.counters["calls_per_s"] =
      benchmark::Counter(static_cast<double>(calls), benchmark::Counter::kIsRate);
  if (std::optional<JournalInfo> info = e.journal_info()) {
    state.counters["fsyncs"] = static_cast<double>(info->fsyncs);
    state.counters["journal_bytes_per_op"] =
        static_cast<double>(info->bytes) / static_cast<double>(ops);
  }
  state.SetLabel(ModeName(mode));
  if (!dir.empty()) std::filesystem::remove_all(dir);
}

void BM_JournalCycle(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  std::string dir;
  std::unique_ptr<Engine> e = MakeEngine(mode, &dir);
  std::vector<std::string> names;
  for (int i = 0; i < kDestinations; ++i) names.push_back(absl::StrCat("d", i, ".example"));
  const Reply ok = *ParseReply("250 2.0.0 OK queued as 12345");
  uint64_t id = 0, ops = 0;
  for (auto _ : state) {
    const absl::Time now = absl::Now();
    ++id;
    if (!e->Submit(id, names[id % kDestinations], now).ok()) std::abort();
    absl::StatusOr<std::vector<Lease>> leases = e->TakeReady(now, 1);
    if (!leases.ok() || leases->size() != 1) std::abort();
    absl::StatusOr<Decision> d = e->Report((*leases)[0].msg_id, now, ok);
    if (!d.ok()) std::abort();
    ops += 3;
  }
  Finish(state, *e, dir, mode, ops, ops);
}
BENCHMARK(BM_JournalCycle)->DenseRange(0, 3)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_JournalBatchCycle(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  constexpr size_t kBatch = 100;
  std::string dir;
  std::unique_ptr<Engine> e = MakeEngine(mode, &dir);
  std::vector<std::string> names;
  for (int i = 0; i < kDestinations; ++i) names.push_back(absl::StrCat("d", i, ".example"));
  std::vector<uint32_t> dest(kBatch);
  for (size_t i = 0; i < kBatch; ++i) dest[i] = static_cast<uint32_t>(i % kDestinations);
  const std::vector<Reply> replies(kBatch, *ParseReply("250 2.0.0 OK queued as 12345"));
  std::vector<uint64_t> ids(kBatch), leased;
  uint64_t next = 0, ops = 0, calls = 0;
  for (auto _ : state) {
    const absl::Time now = absl::Now();
    for (uint64_t& x : ids) x = ++next;
    if (!e->SubmitMany(ids, dest, names, now).ok()) std::abort();
    absl::StatusOr<std::vector<Lease>> leases = e->TakeReady(now, kBatch);
    if (!leases.ok()) std::abort();
    leased.clear();
    for (const Lease& l : *leases) leased.push_back(l.msg_id);
    e->ReportMany(leased, absl::MakeConstSpan(replies).subspan(0, leased.size()), now);
    ops += kBatch + 2 * leased.size();
    calls += 3;
  }
  Finish(state, *e, dir, mode, ops, calls);
}
BENCHMARK(BM_JournalBatchCycle)->DenseRange(0, 3)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace mailretry

BENCHMARK_MAIN();
