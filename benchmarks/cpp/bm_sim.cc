// Wall time of simulator runs: the default scenario's receiver mix scaled to
// 1M messages over 10k tail domains, arrivals over 24 h, each run until every
// message has an outcome (about 5 simulated days), once per policy preset
// (naive, postfix, exim, kumomta, powermta, adaptive). Counters report the
// simulated outcome too, so a fast but broken run shows. SIM_MESSAGES /
// SIM_DOMAINS override the size (environment variables).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "mailretry/engine/engine.h"
#include "mailretry/sim/sim.h"

namespace mailretry {
namespace {

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
