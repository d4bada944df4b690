// File: internal/sim_workload.h
// -----------------------------------------------------------------------------
// How the simulator draws its workload: weighted picks (destinations, sources,
// tail profiles) through a cumulative distribution, and the messages' arrival
// times over the scenario's arrival window and hourly weights.
#ifndef MAILRETRY_SIM_INTERNAL_SIM_WORKLOAD_H_
#define MAILRETRY_SIM_INTERNAL_SIM_WORKLOAD_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "mailretry/policy/retry_policy.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim::internal {

// Cumulative distribution over weights; Pick maps u in [0, 1) to an index.
class Cdf {
 public:
  explicit Cdf(const std::vector<double>& weights) {
    double total = 0;
    for (double w : weights) total += w;
    double acc = 0;
    cum_.reserve(weights.size());
    for (double w : weights) {
      acc += w / total;
      cum_.push_back(acc);
    }
    if (!cum_.empty()) cum_.back() = 1.0;
  }
  uint32_t Pick(double u) const {
    auto it = std::upper_bound(cum_.begin(), cum_.end(), u);
    if (it == cum_.end()) --it;
    return static_cast<uint32_t>(it - cum_.begin());
  }

 private:
  std::vector<double> cum_;
};

// Sorted arrival offsets (ms) of the scenario's messages: stratified
// inverse-CDF sampling over the hourly weights, so arrival i is
// non-decreasing in i without a sort.
std::vector<int64_t> Arrivals(const Scenario& s, SplitMix64& rng);

}  // namespace mailretry::sim::internal

#endif  // MAILRETRY_SIM_INTERNAL_SIM_WORKLOAD_H_
