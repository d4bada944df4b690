// File: internal/sim_summary.h
// -----------------------------------------------------------------------------
// The simulator's end-of-run accounting: from the per-message outcomes and the
// hourly bins of a finished run, the Summary (outcome shares, percentiles over
// all messages and over delivered ones, replies per delivered, receiver
// connection time, structural precision and recall) and each hour's pending
// count. Pure functions over the Result, apart from the event loop (sim.cc).
#ifndef MAILRETRY_SIM_INTERNAL_SIM_SUMMARY_H_
#define MAILRETRY_SIM_INTERNAL_SIM_SUMMARY_H_

#include <cstdint>
#include <vector>

#include "mailretry/sim/internal/sim_receiver.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim::internal {

// Fills r.summary (end_s and local_deferrals, set by the loop, are kept).
// `pair_cap[i]`: the receiver's connection cap for pair i (0 = none).
void Summarise(uint64_t messages, double receiver_ms, const std::vector<PairState>& pairs,
               const std::vector<uint32_t>& pair_cap, Result& r);

// HourBin::pending of every hour: submitted and not yet ended at its end.
void CountPendingPerHour(Result& r);

}  // namespace mailretry::sim::internal

#endif  // MAILRETRY_SIM_INTERNAL_SIM_SUMMARY_H_
