// The simulator's workload draws; see sim_workload.h.
#include "mailretry/sim/internal/sim_workload.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/sim/internal/sim_receiver.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim::internal {
namespace {

int64_t Ms(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

}  // namespace

// Sorted arrival offsets (ms): stratified inverse-CDF sampling over the
// hourly weights, so arrival i is non-decreasing in i without a sort.
std::vector<int64_t> Arrivals(const Scenario& s, SplitMix64& rng) {
  const uint64_t n = s.messages;
  std::vector<int64_t> out(n, 0);
  const int64_t window = Ms(s.arrival_window);
  if (window <= 0) return out;
  const int64_t hours = (window + kMsPerHour - 1) / kMsPerHour;
  std::vector<double> cdf(static_cast<size_t>(hours) + 1, 0.0);
  for (int64_t h = 0; h < hours; ++h) {
    const double w = s.hourly_weights.empty()
                         ? 1.0
                         : s.hourly_weights[static_cast<size_t>(h) % s.hourly_weights.size()];
    const int64_t len = std::min(kMsPerHour, window - h * kMsPerHour);
    cdf[h + 1] = cdf[h] + w * static_cast<double>(len) / static_cast<double>(kMsPerHour);
  }
  const double total = cdf.back();
  for (double& c : cdf) c /= total;
  cdf.back() = 1.0;
  int64_t h = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const double u = (static_cast<double>(i) + rng.Uniform()) / static_cast<double>(n);
    while (h + 1 < hours && cdf[h + 1] <= u) ++h;
    const double width = cdf[h + 1] - cdf[h];
    const int64_t len = std::min(kMsPerHour, window - h * kMsPerHour);
    const double frac = width > 0 ? std::clamp((u - cdf[h]) / width, 0.0, 1.0) : 0.0;
    int64_t t = h * kMsPerHour + static_cast<int64_t>(frac * static_cast<double>(len));
    t = std::min(t, window - 1);
    out[i] = std::max(t, i > 0 ? out[i - 1] : int64_t{0});
  }
  return out;
}

}  // namespace mailretry::sim::internal
