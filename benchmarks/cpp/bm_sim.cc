// Wall time of one simulator run: the default scenario's receiver mix scaled
// to 1M messages over 10k tail domains and 5 simulated days, against the
// engine's adaptive default. Counters report the simulated outcome too, so a
// fast but broken run shows. SIM_MESSAGES / SIM_DOMAINS / SIM_DAYS override
// the size (environment variables).
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

void BM_SimDefaultPolicy(benchmark::State& state) {
  sim::Scenario s = sim::DefaultScenario();
  s.messages = EnvOr("SIM_MESSAGES", 1'000'000);
  s.tail_domains = static_cast<uint32_t>(EnvOr("SIM_DOMAINS", 10'000));
  s.duration = absl::Hours(24 * static_cast<int64_t>(EnvOr("SIM_DAYS", 5)));
  sim::Summary last;
  uint64_t events = 0;
  for (auto _ : state) {
    absl::StatusOr<sim::Result> r = sim::Run(s, EngineConfig{});
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    last = r->summary;
    events = r->summary.attempts;
    benchmark::DoNotOptimize(r->msg_outcome.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * s.messages));
  state.counters["messages"] = static_cast<double>(s.messages);
  state.counters["destinations"] = static_cast<double>(s.tail_domains + s.named.size());
  state.counters["sim_days"] = absl::ToDoubleHours(s.duration) / 24;
  state.counters["attempts"] = static_cast<double>(events);
  state.counters["delivered_pct"] = last.delivered_pct;
  state.counters["expired_pct"] = last.expired_pct;
  state.counters["pending_pct"] = last.pending_pct;
  state.counters["4xx_per_delivered"] = last.replies_4xx_per_delivered;
  state.counters["ttd_p95_s"] = last.ttd_p95_s;
}
BENCHMARK(BM_SimDefaultPolicy)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
}  // namespace mailretry

BENCHMARK_MAIN();
