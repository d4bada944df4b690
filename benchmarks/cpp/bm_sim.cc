// Wall time of simulator runs: the default scenario's receiver mix scaled to
// 1M messages over 10k tail domains, arrivals over 24 h, each run until every
// message has an outcome (about 5 simulated days), once per policy preset
// (naive, postfix, exim, kumomta, powermta, adaptive), and then all six at
// once over every core (BM_SimAllPolicies: what `mailretry.sim.run_many`
// does). Counters report the simulated outcome too, so a fast but broken run
// shows. SIM_MESSAGES / SIM_DOMAINS override the size (environment variables).
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "mailretry/engine/engine.h"
#include "mailretry/sim/sim.h"

namespace mailretry {
namespace {

// User + system CPU seconds of the whole process (every thread): Google
// Benchmark's cpu_time is the main thread's only, which for the all-six run
// (workers do the work) is next to nothing.
double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

void BM_Sim(benchmark::State& state, const std::string& policy) {
  sim::Scenario s = sim::DefaultScenario();
  s.messages = EnvOr("SIM_MESSAGES", 1'000'000);
  s.tail_domains = static_cast<uint32_t>(EnvOr("SIM_DOMAINS", 10'000));
  absl::StatusOr<sim::Policy> p = sim::PresetPolicy(policy);
  if (!p.ok()) {
    state.SkipWithError(std::string(p.status().message()).c_str());
    return;
  }
  sim::Summary last;
  for (auto _ : state) {
    absl::StatusOr<sim::Result> r = sim::Run(s, *p);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    last = r->summary;
    benchmark::DoNotOptimize(r->msg_outcome.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * s.messages));
  state.counters["messages"] = static_cast<double>(s.messages);
  state.counters["destinations"] = static_cast<double>(s.tail_domains + s.named.size());
  state.counters["sim_days"] = last.end_s / 86400.0;
  state.counters["attempts"] = static_cast<double>(last.attempts);
  state.counters["delivered_pct"] = last.delivered_pct;
  state.counters["expired_pct"] = last.expired_pct;
  state.counters["held_pct"] = last.held_pct;
  state.counters["4xx_per_delivered"] = last.replies_4xx_per_delivered;
  state.counters["all_p95_s"] = last.all_p95_s;
}

// The six presets at once, on as many threads as there are cores.
void BM_SimAllPolicies(benchmark::State& state) {
  sim::Scenario s = sim::DefaultScenario();
  s.messages = EnvOr("SIM_MESSAGES", 1'000'000);
  s.tail_domains = static_cast<uint32_t>(EnvOr("SIM_DOMAINS", 10'000));
  // Longest first (by their CPU time at 100k messages), so that the thread
  // that takes naive is not also left with the tail: the order only moves
  // the wall time.
  std::vector<std::string> names = {"naive", "powermta", "postfix", "exim", "kumomta", "adaptive"};
  for (const std::string& n : sim::PresetPolicyNames()) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  uint64_t attempts = 0;
  double cpu = 0;
  for (auto _ : state) {
    const double cpu_start = ProcessCpuSeconds();
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> total{0};
    std::atomic<bool> failed{false};
    std::vector<std::thread> workers;
    const unsigned n = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned w = 0; w < n; ++w) {
      workers.emplace_back([&] {
        for (size_t i = next++; i < names.size(); i = next++) {
          absl::StatusOr<sim::Result> r = sim::Run(s, *sim::PresetPolicy(names[i]));
          if (!r.ok()) {
            failed = true;
            return;
          }
          total += r->summary.attempts;
        }
      });
    }
    for (std::thread& t : workers) t.join();
    if (failed) {
      state.SkipWithError("a run failed");
      return;
    }
    attempts = total;
    cpu = ProcessCpuSeconds() - cpu_start;
  }
  state.counters["messages"] = static_cast<double>(s.messages);
  state.counters["destinations"] = static_cast<double>(s.tail_domains + s.named.size());
  state.counters["attempts"] = static_cast<double>(attempts);
  state.counters["process_cpu_s"] = cpu;
  state.counters["threads"] =
      static_cast<double>(std::max(1u, std::thread::hardware_concurrency()));
}
BENCHMARK(BM_SimAllPolicies)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

const int kRegistered = [] {
  for (const std::string& name : sim::PresetPolicyNames()) {
    benchmark::RegisterBenchmark(("BM_Sim/" + name).c_str(),
                                 [name](benchmark::State& st) { BM_Sim(st, name); })
        ->Iterations(1)
        ->Unit(benchmark::kSecond)
        ->UseRealTime();
  }
  return 0;
}();

}  // namespace
}  // namespace mailretry

BENCHMARK_MAIN();
