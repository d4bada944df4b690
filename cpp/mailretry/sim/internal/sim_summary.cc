// End-of-run accounting of the simulator; see sim_summary.h.
#include "mailretry/sim/internal/sim_summary.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "mailretry/sim/internal/sim_receiver.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim::internal {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return kNaN;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return v[k];
}

double Ratio(uint64_t a, uint64_t b) {
  return b == 0 ? kNaN : static_cast<double>(a) / static_cast<double>(b);
}

}  // namespace

void Summarise(uint64_t messages, double receiver_ms, const std::vector<PairState>& pairs,
               const std::vector<uint32_t>& pair_cap, Result& r_) {
  Summary& s = r_.summary;
  s.messages = messages;
  std::vector<double> ttd, all;
  all.reserve(messages);
  for (uint64_t i = 0; i < messages; ++i) {
    switch (r_.msg_outcome[i]) {
      case Outcome::kDelivered: {
        ++s.delivered;
        const double t = r_.msg_end_s[i] - r_.msg_submit_s[i];
        ttd.push_back(t);
        all.push_back(t);
        continue;
      }
      case Outcome::kBounced:
        ++s.bounced;
        break;
      case Outcome::kExpired:
        ++s.expired;
        break;
      case Outcome::kHeld:
      case Outcome::kPending:
        ++s.held;
        break;
    }
    all.push_back(kInf);
  }
  const double m = static_cast<double>(s.messages);
  s.delivered_pct = 100.0 * static_cast<double>(s.delivered) / m;
  s.bounced_pct = 100.0 * static_cast<double>(s.bounced) / m;
  s.expired_pct = 100.0 * static_cast<double>(s.expired) / m;
  s.held_pct = 100.0 * static_cast<double>(s.held) / m;
  s.ttd_p50_s = Percentile(ttd, 0.50);
  s.ttd_p95_s = Percentile(ttd, 0.95);
  s.ttd_p99_s = Percentile(ttd, 0.99);
  s.all_p50_s = Percentile(all, 0.50);
  s.all_p95_s = Percentile(all, 0.95);
  s.all_p99_s = Percentile(all, 0.99);
  for (const HourBin& b : r_.hours) {
    s.attempts += b.attempts;
    s.replies_4xx += b.replies_4xx;
    s.replies_5xx += b.replies_5xx;
  }
  const double delivered = static_cast<double>(s.delivered);
  s.attempts_per_delivered = s.delivered ? static_cast<double>(s.attempts) / delivered : kNaN;
  s.replies_4xx_per_delivered = s.delivered ? static_cast<double>(s.replies_4xx) / delivered : kNaN;
  s.receiver_seconds = receiver_ms / 1000.0;
  s.receiver_seconds_per_delivered = s.delivered ? s.receiver_seconds / delivered : kNaN;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const uint32_t cap = pair_cap[i];
    if (cap > 0) {
      s.peak_connection_utilisation = std::max(
          s.peak_connection_utilisation, static_cast<double>(pairs[i].peak_connections) / cap);
    }
  }
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (r_.pair_messages[i] == 0) continue;
    const bool flagged = !std::isnan(r_.pair_structural_s[i]);
    const bool truth = r_.pair_structural[i];
    if (flagged && truth) ++s.structural_true_positives;
    if (flagged && !truth) ++s.structural_false_positives;
    if (!flagged && truth) ++s.structural_false_negatives;
    if (!flagged && !truth) ++s.structural_true_negatives;
    if (!std::isnan(r_.pair_warning_s[i])) ++s.warning_destinations;
  }
  s.structural_precision = Ratio(s.structural_true_positives,
                                 s.structural_true_positives + s.structural_false_positives);
  s.structural_recall = Ratio(s.structural_true_positives,
                              s.structural_true_positives + s.structural_false_negatives);
}

void CountPendingPerHour(Result& r) {
  // Pending at the end of each hour: submitted and not yet ended.
  const uint64_t n = r.msg_submit_s.size();
  std::vector<int64_t> delta(r.hours.size() + 1, 0);
  for (uint64_t i = 0; i < n; ++i) {
    if (std::isnan(r.msg_submit_s[i])) continue;
    ++delta[std::min(r.hours.size() - 1,
                     static_cast<size_t>(r.msg_submit_s[i] * 1000) / kMsPerHour)];
    if (!std::isnan(r.msg_end_s[i])) {
      --delta[std::min(r.hours.size() - 1,
                       static_cast<size_t>(r.msg_end_s[i] * 1000) / kMsPerHour)];
    }
  }
  int64_t acc = 0;
  for (size_t h = 0; h < r.hours.size(); ++h) {
    acc += delta[h];
    r.hours[h].pending = static_cast<uint64_t>(std::max<int64_t>(acc, 0));
  }
}

}  // namespace mailretry::sim::internal
