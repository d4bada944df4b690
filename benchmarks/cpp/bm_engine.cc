// End-to-end engine benchmark: 1M messages over 10k destinations, full
// submit → take → report cycles in simulated time with a realistic mix of
// outcomes, until every message has finished. Reports engine operations per
// second (one op = one submitted message, one lease handed out, or one
// report) and engine-owned bytes per pending message.
//
//   bm_engine --benchmark_filter=BM_EngineCycle
//
// Counters: ops_per_s (wall), ops_per_cpu_s (process CPU time, which
// includes the unpaused Stats() call), bytes_per_pending (measured with all 1M pending),
// messages, attempts, delivered, bounced, expired, sim_hours.

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "mailretry/engine/engine.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

constexpr size_t kMessages = 1'000'000;
constexpr size_t kDestinations = 10'000;

// Outcome mix, per attempt (percent): mostly delivered, some generic
// deferrals, greylisting, hard bounces, throttling and connection failures.
struct Outcome {
  int percent;
  const char* text;  // nullptr = connection refused
};
constexpr Outcome kMix[] = {
    {86, "250 2.0.0 OK queued as 12345"},
    {6, "451 4.3.0 Temporary failure, please try again later"},
    {2, "451 4.7.1 Greylisted, please try again later"},
    {3, "550 5.1.1 The email account that you tried to reach does not exist"},
    {1, "421 4.7.0 Too many concurrent connections from your IP"},
    {1, "452 4.2.2 The email account that you tried to reach is over quota"},
    {1, nullptr},
};

std::vector<Reply> ParsedMix() {
  std::vector<Reply> out;
  for (const Outcome& o : kMix) {
    Reply r = o.text ? *ParseReply(o.text) : TransportReply(Transport::kConnectionRefused);
    for (int i = 0; i < o.percent; ++i) out.push_back(r);
  }
  return out;  // 100 entries
}

void BM_EngineCycle(benchmark::State& state) {
  const auto backend = static_cast<TimerBackend>(state.range(0));
  const bool text_replies = state.range(1) != 0;
  const std::vector<Reply> mix = ParsedMix();
  std::vector<std::string> mix_text;
  for (const Reply& r : mix) {
    mix_text.push_back(r.transport == Transport::kReply
                           ? r.ToString()
                           : std::string("421 4.4.1 connection refused"));
  }

  // Destination popularity is skewed (a few big providers, a long tail).
  std::mt19937_64 rng(42);
  std::vector<std::string> names;
  for (size_t i = 0; i < kDestinations; ++i) names.push_back(absl::StrCat("d", i, ".example"));
  std::vector<uint64_t> ids(kMessages);
  std::vector<uint32_t> dest(kMessages);
  std::geometric_distribution<uint32_t> big(0.2);
  std::uniform_int_distribution<uint32_t> tail(0, kDestinations - 1);
  for (size_t i = 0; i < kMessages; ++i) {
    ids[i] = i + 1;
    dest[i] = (i % 4 == 0) ? std::min<uint32_t>(big(rng), kDestinations - 1) : tail(rng);
  }

  for (auto _ : state) {
    EngineConfig cfg;
    cfg.backend = backend;
    cfg.destination_defaults.initial_concurrency = 20;
    cfg.destination_defaults.max_concurrency = 50;
    cfg.lease_timeout = absl::Minutes(30);
    absl::StatusOr<std::unique_ptr<Engine>> made = Engine::Create(cfg, 7);
    if (!made.ok()) {
      state.SkipWithError(std::string(made.status().message()).c_str());
      return;
    }
    Engine& e = **made;
    absl::Time now = absl::FromUnixSeconds(1'700'000'000);
    uint64_t ops = 0;

    const absl::Time wall0 = absl::Now();
    const std::clock_t cpu0 = std::clock();
    if (!e.SubmitMany(ids, dest, names, now).ok()) {
      state.SkipWithError("SubmitMany failed");
      return;
    }
    ops += kMessages;
    // Memory with everything pending (not timed: Stats walks destinations).
    state.PauseTiming();
    const absl::Duration paused0 = absl::Now() - wall0;
    const absl::Time pause_start = absl::Now();
    EngineStats s0 = e.Stats();
    const double bytes_per_pending =
        static_cast<double>(s0.memory_bytes) / static_cast<double>(s0.pending);
    const absl::Duration paused = absl::Now() - pause_start;
    state.ResumeTiming();
    (void)paused0;

    size_t k = 0;
    std::vector<uint64_t> rep_ids;
    std::vector<Reply> rep;
    std::vector<std::string> rep_text;
    // Drained into the same vector each round: the engine reuses the
    // previous round's events for new ones (no allocation per event).
    std::vector<Event> events;
    // Leases and decisions too: the engine builds each round's results in
    // the previous round's vectors (no allocation per round).
    std::vector<Lease> leases;
    std::vector<absl::StatusOr<Decision>> d;
    int rounds = 0;
    for (;; ++rounds) {
      if (!e.TakeReady(now, 200'000, leases).ok()) {
        state.SkipWithError("TakeReady failed");
        return;
      }
      ops += leases.size();
      rep_ids.clear();
      rep.clear();
      // The text buffers are reused (assign keeps their capacity), as a
      // sender reading replies into buffers would: a fresh std::string per
      // reply measured the harness's allocator, not the engine.
      size_t n_text = 0;
      for (const Lease& l : leases) {
        rep_ids.push_back(l.msg_id);
        const size_t pick = (k++ * 7919 + l.msg_id) % mix.size();
        if (text_replies) {
          if (n_text == rep_text.size()) rep_text.emplace_back();
          rep_text[n_text++].assign(mix_text[pick]);
        } else {
          rep.push_back(mix[pick]);
        }
      }
      if (text_replies) {
        e.ReportManyText(rep_ids, absl::MakeConstSpan(rep_text).first(n_text), now, d);
      } else {
        e.ReportMany(rep_ids, rep, now, d);
      }
      ops += d.size();
      benchmark::DoNotOptimize(d.data());
      e.DrainEvents(events);
      benchmark::DoNotOptimize(events.data());
      std::optional<absl::Time> wake = e.NextWakeup();
      if (!wake) break;
      now = std::max(now + absl::Seconds(1), *wake);
    }
    const double secs = absl::ToDoubleSeconds(absl::Now() - wall0 - paused);
    // CPU seconds too: on a shared machine wall time mostly measures the neighbours.
    const double cpu_secs = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
    state.counters["ops_per_cpu_s"] = static_cast<double>(ops) / cpu_secs;
    EngineStats s = e.Stats();
    state.counters["ops_per_s"] = static_cast<double>(ops) / secs;
    state.counters["ops"] = static_cast<double>(ops);
    state.counters["bytes_per_pending"] = bytes_per_pending;
    state.counters["messages"] = static_cast<double>(s.submitted);
    state.counters["attempts"] = static_cast<double>(s.attempts);
    state.counters["delivered"] = static_cast<double>(s.delivered);
    state.counters["bounced"] = static_cast<double>(s.bounced);
    state.counters["expired"] = static_cast<double>(s.expired);
    state.counters["pending_left"] = static_cast<double>(s.pending);
    state.counters["rounds"] = rounds;
    state.counters["sim_hours"] = absl::ToDoubleHours(now - absl::FromUnixSeconds(1'700'000'000));
  }
}

BENCHMARK(BM_EngineCycle)
    ->ArgNames({"backend", "text"})
    ->Args({static_cast<int>(TimerBackend::kWheel), 0})
    ->Args({static_cast<int>(TimerBackend::kQuadHeap), 0})
    ->Args({static_cast<int>(TimerBackend::kWheel), 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mailretry

BENCHMARK_MAIN();
