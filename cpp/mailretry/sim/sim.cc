// The simulator's event loop: arrivals, the Engine's leases, receiver replies
// after a latency, the Engine's decisions and events, all in virtual time.
#include "mailretry/sim/sim.h"

#include <algorithm>
#include <chrono>  // NOLINT(build/c++11): wall time of the run, reported only
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "mailretry/engine/engine.h"
#include "mailretry/sim/internal/sim_receiver.h"
#include "mailretry/reply/reply.h"
#include "mailretry/policy/retry_policy.h"

namespace mailretry::sim {
namespace {

using internal::kMsPerHour;
using internal::PairState;
using internal::RecipientState;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr size_t kTakeBatch = 1 << 16;

int64_t Ms(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

struct InFlight {
  int64_t end_ms;
  uint64_t seq;
  uint32_t msg;
  ReplyKind kind;
  bool holds_connection;
};
struct EndsLater {
  bool operator()(const InFlight& a, const InFlight& b) const {
    return a.end_ms != b.end_ms ? a.end_ms > b.end_ms : a.seq > b.seq;
  }
};

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

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return kNaN;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return v[k];
}

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

class Simulation {
 public:
  Simulation(const Scenario& s, const ProgressFn& progress) : s_(s), progress_(progress) {}

  absl::StatusOr<Result> Run(const EngineConfig& config);

 private:
  absl::Status Setup();
  uint32_t ProfileIndex(const std::string& name);
  void Finish(uint32_t msg, Outcome o, int64_t t_ms);
  size_t Bin(int64_t t_ms) const {
    return std::min(static_cast<size_t>(std::max<int64_t>(t_ms, 0) / kMsPerHour), bins_ - 1);
  }
  absl::Time T(int64_t ms) const { return s_.start + absl::Milliseconds(ms); }
  int64_t ToMs(absl::Time t) const { return absl::ToInt64Milliseconds(t - s_.start); }
  void Summarise();

  const Scenario& s_;
  const ProgressFn& progress_;
  Result r_;
  size_t bins_ = 1;
  uint64_t pending_ = 0;
  double receiver_ms_ = 0;

  std::vector<ReceiverProfile> profiles_;
  std::vector<std::vector<Reply>> replies_;  // [profile][kind]
  absl::flat_hash_map<std::string, uint32_t> profile_ids_;
  std::vector<uint32_t> domain_profile_;     // profile index per domain
  absl::flat_hash_map<std::string, uint32_t> domain_ids_;
  std::vector<int64_t> arrival_ms_;
  std::vector<RecipientState> rcpt_;
  std::vector<PairState> pairs_;
};

uint32_t Simulation::ProfileIndex(const std::string& name) {
  auto it = profile_ids_.find(name);
  if (it != profile_ids_.end()) return it->second;
  ReceiverProfile p;
  bool found = false;
  for (const ReceiverProfile& custom : s_.profiles) {
    if (custom.name == name) {
      p = custom;
      found = true;
      break;
    }
  }
  if (!found) p = *BuiltinProfile(name);  // ValidateScenario checked the name
  std::vector<Reply> parsed;
  parsed.reserve(kNumReplyKinds);
  for (int k = 0; k < kNumReplyKinds; ++k) parsed.push_back(*ParseReply(p.replies[k]));
  const uint32_t id = static_cast<uint32_t>(profiles_.size());
  profiles_.push_back(std::move(p));
  replies_.push_back(std::move(parsed));
  profile_ids_.emplace(name, id);
  return id;
}

absl::Status Simulation::Setup() {
  const uint64_t n = s_.messages;
  SplitMix64 rng(s_.seed ^ 0x243f6a8885a308d3ULL);

  // Domains: the named ones, then the Zipf tail.
  for (const NamedDestination& d : s_.named) {
    domain_ids_.emplace(d.domain, static_cast<uint32_t>(r_.domains.size()));
    r_.domains.push_back(d.domain);
    domain_profile_.push_back(ProfileIndex(d.profile));
  }
  const size_t named = r_.domains.size();
  std::vector<double> tail_weights;
  std::vector<double> tail_profile_weights;
  for (const auto& entry : s_.tail_profiles) tail_profile_weights.push_back(entry.second);
  if (s_.tail_domains > 0) {
    Cdf tail_profiles(tail_profile_weights);
    tail_weights.reserve(s_.tail_domains);
    for (uint32_t k = 1; k <= s_.tail_domains; ++k) {
      std::string name = absl::StrCat("d", k, ".example.net");
      if (domain_ids_.contains(name)) {
        return absl::InvalidArgumentError(absl::StrCat("destination \"", name, "\" clashes with the tail's names"));
      }
      domain_ids_.emplace(name, static_cast<uint32_t>(r_.domains.size()));
      r_.domains.push_back(std::move(name));
      const std::string& profile = s_.tail_profiles[tail_profiles.Pick(rng.Uniform())].first;
      domain_profile_.push_back(ProfileIndex(profile));
      tail_weights.push_back(1.0 / std::pow(static_cast<double>(k), s_.zipf_exponent));
    }
  }
  const size_t domains = r_.domains.size();
  for (size_t d = 0; d < domains; ++d) {
    const ReceiverProfile& p = profiles_[domain_profile_[d]];
    r_.domain_profile.push_back(p.name);
    r_.domain_misconfigured.push_back(p.structural);
  }
  r_.domain_messages.assign(domains, 0);
  r_.domain_structural_s.assign(domains, kNaN);
  r_.domain_warning_s.assign(domains, kNaN);

  // Sources.
  std::vector<double> source_weights;
  for (const Source& src : s_.sources) {
    r_.sources.push_back(src.name);
    source_weights.push_back(src.weight);
  }
  const size_t sources = s_.sources.size();
  pairs_.assign(domains * sources, PairState{});
  for (size_t d = 0; d < domains; ++d) {
    for (size_t i = 0; i < sources; ++i) pairs_[d * sources + i].reputation = s_.sources[i].reputation;
  }

  // Messages: arrival time, domain, source, recipient.
  arrival_ms_ = Arrivals(s_, rng);
  double named_total = 0;
  std::vector<double> named_weights;
  for (const NamedDestination& d : s_.named) {
    named_total += d.share;
    named_weights.push_back(d.share);
  }
  std::unique_ptr<Cdf> named_cdf = named_total > 0 ? std::make_unique<Cdf>(named_weights) : nullptr;
  std::unique_ptr<Cdf> tail_cdf = tail_weights.empty() ? nullptr : std::make_unique<Cdf>(tail_weights);
  Cdf source_cdf(source_weights);
  r_.msg_domain.resize(n);
  r_.msg_source.resize(n);
  r_.msg_outcome.assign(n, Outcome::kPending);
  r_.msg_submit_s.assign(n, kNaN);
  r_.msg_end_s.assign(n, kNaN);
  r_.msg_attempts.assign(n, 0);
  r_.msg_4xx.assign(n, 0);
  rcpt_.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    const double u = rng.Uniform();
    uint32_t d;
    if (named_cdf != nullptr && (u < named_total || tail_cdf == nullptr)) {
      d = named_cdf->Pick(std::min(u / named_total, 0.999999999));
    } else {
      d = static_cast<uint32_t>(named) + tail_cdf->Pick(rng.Uniform());
    }
    r_.msg_domain[i] = d;
    r_.msg_source[i] = static_cast<uint16_t>(source_cdf.Pick(rng.Uniform()));
    ++r_.domain_messages[d];
  }
  bins_ = static_cast<size_t>((Ms(s_.duration) + kMsPerHour - 1) / kMsPerHour);
  r_.hours.assign(bins_, HourBin{});
  return absl::OkStatus();
}

void Simulation::Finish(uint32_t msg, Outcome o, int64_t t_ms) {
  if (r_.msg_outcome[msg] != Outcome::kPending) return;
  r_.msg_outcome[msg] = o;
  r_.msg_end_s[msg] = static_cast<double>(t_ms) / 1000.0;
  --pending_;
  HourBin& b = r_.hours[Bin(t_ms)];
  switch (o) {
    case Outcome::kDelivered: ++b.delivered; break;
    case Outcome::kBounced: ++b.bounced; break;
    case Outcome::kExpired: ++b.expired; break;
    case Outcome::kPending: break;
  }
}

absl::StatusOr<Result> Simulation::Run(const EngineConfig& config) {
  const auto wall_start = std::chrono::steady_clock::now();
  if (absl::Status st = ValidateScenario(s_); !st.ok()) return st;
  if (absl::Status st = Setup(); !st.ok()) return st;

  EngineConfig cfg = config;
  cfg.message_events = true;  // expiries without a report arrive as events
  absl::StatusOr<std::unique_ptr<Engine>> created = Engine::Create(cfg, s_.seed);
  if (!created.ok()) return created.status();
  Engine& engine = **created;

  const uint64_t n = s_.messages;
  const size_t sources = s_.sources.size();
  const int64_t end_ms = Ms(s_.duration);
  const int64_t tick = std::max<int64_t>(1, Ms(s_.tick));
  SplitMix64 rng(s_.seed ^ 0x13198a2e03707344ULL);
  std::priority_queue<InFlight, std::vector<InFlight>, EndsLater> in_flight;
  uint64_t seq = 0;
  uint64_t next_arrival = 0;
  size_t next_bin = 0;
  std::vector<uint64_t> batch_ids;
  std::vector<uint32_t> batch_domains;
  std::vector<uint32_t> batch_sources;

  int64_t now = n > 0 ? (arrival_ms_[0] + tick - 1) / tick * tick : 0;
  while (true) {
    // Close the hours that ended before `now`.
    while (next_bin < bins_ && static_cast<int64_t>(next_bin + 1) * kMsPerHour <= now) {
      r_.hours[next_bin].in_flight = in_flight.size();
      r_.hours[next_bin].pending = pending_;
      ++next_bin;
      if (progress_ && !progress_(static_cast<double>(next_bin) / static_cast<double>(bins_))) {
        return absl::CancelledError("simulation cancelled");
      }
    }
    if (now > end_ms) break;
    const absl::Time now_t = T(now);

    // Arrivals.
    batch_ids.clear();
    batch_domains.clear();
    batch_sources.clear();
    while (next_arrival < n && arrival_ms_[next_arrival] <= now) {
      const uint32_t m = static_cast<uint32_t>(next_arrival++);
      batch_ids.push_back(m);
      batch_domains.push_back(r_.msg_domain[m]);
      batch_sources.push_back(r_.msg_source[m]);
      r_.msg_submit_s[m] = static_cast<double>(now) / 1000.0;
      rcpt_[m] = internal::DrawRecipient(profiles_[domain_profile_[r_.msg_domain[m]]], s_.seed, m, now);
    }
    if (!batch_ids.empty()) {
      absl::Status st = engine.SubmitMany(batch_ids, batch_domains, r_.domains, now_t,
                                          batch_sources, r_.sources);
      if (!st.ok()) return absl::InternalError(absl::StrCat("engine rejected a submit: ", st.ToString()));
      pending_ += batch_ids.size();
    }

    // Attempts that end now.
    while (!in_flight.empty() && in_flight.top().end_ms <= now) {
      const InFlight f = in_flight.top();
      in_flight.pop();
      const uint32_t m = f.msg;
      const uint32_t d = r_.msg_domain[m];
      if (f.holds_connection) internal::EndAttempt(pairs_[d * sources + r_.msg_source[m]]);
      const Reply& reply = replies_[domain_profile_[d]][static_cast<int>(f.kind)];
      absl::StatusOr<Decision> dec = engine.Report(m, now_t, reply);
      if (!dec.ok()) {
        return absl::InternalError(absl::StrCat("engine rejected a report for message ", m, ": ",
                                                dec.status().ToString()));
      }
      HourBin& b = r_.hours[Bin(now)];
      if (reply.code / 100 == 4) {
        ++b.replies_4xx;
        if (r_.msg_4xx[m] < UINT16_MAX) ++r_.msg_4xx[m];
      } else if (reply.code / 100 == 5) {
        ++b.replies_5xx;
      }
      switch (dec->action) {
        case DecisionAction::kDelivered: Finish(m, Outcome::kDelivered, now); break;
        case DecisionAction::kBounced: Finish(m, Outcome::kBounced, now); break;
        case DecisionAction::kExpired: Finish(m, Outcome::kExpired, now); break;
        case DecisionAction::kRetry: break;
      }
    }

    // New attempts.
    while (true) {
      absl::StatusOr<std::vector<Lease>> leases = engine.TakeReady(now_t, kTakeBatch);
      if (!leases.ok()) return leases.status();
      for (const Lease& l : *leases) {
        const uint32_t m = static_cast<uint32_t>(l.msg_id);
        const uint32_t d = r_.msg_domain[m];
        const uint32_t p = domain_profile_[d];
        const internal::AttemptResult a = internal::StartAttempt(
            profiles_[p], pairs_[d * sources + r_.msg_source[m]], rcpt_[m], now, rng);
        if (r_.msg_attempts[m] < UINT16_MAX) ++r_.msg_attempts[m];
        ++r_.reply_kinds[static_cast<int>(a.kind)];
        ++r_.hours[Bin(now)].attempts;
        receiver_ms_ += static_cast<double>(a.latency_ms);
        in_flight.push({now + a.latency_ms, seq++, m, a.kind, a.holds_connection});
      }
      if (leases->size() < kTakeBatch) break;
    }

    // Engine events: expiries without a report, structural detections.
    for (const Event& e : engine.DrainEvents()) {
      switch (e.kind) {
        case EventKind::kExpired:
          if (e.msg_id.has_value() && *e.msg_id < n) {
            Finish(static_cast<uint32_t>(*e.msg_id), Outcome::kExpired, ToMs(e.time));
          }
          break;
        case EventKind::kStructuralFailure:
        case EventKind::kDestinationWarning: {
          auto it = domain_ids_.find(std::string(e.destination));
          if (it == domain_ids_.end()) break;
          std::vector<double>& first = e.kind == EventKind::kStructuralFailure
                                           ? r_.domain_structural_s
                                           : r_.domain_warning_s;
          if (std::isnan(first[it->second])) first[it->second] = static_cast<double>(ToMs(e.time)) / 1000.0;
          break;
        }
        default:
          break;
      }
    }

    // The next moment anything can happen.
    int64_t next = std::numeric_limits<int64_t>::max();
    if (next_arrival < n) next = std::min(next, arrival_ms_[next_arrival]);
    if (!in_flight.empty()) next = std::min(next, in_flight.top().end_ms);
    if (std::optional<absl::Time> wake = engine.NextWakeup(); wake.has_value()) {
      const int64_t w = ToMs(*wake);
      next = std::min(next, w <= now ? now + tick : w);
    }
    if (next == std::numeric_limits<int64_t>::max()) break;  // idle: everything finished
    now = std::max(now + tick, (next + tick - 1) / tick * tick);
  }
  for (; next_bin < bins_; ++next_bin) {
    r_.hours[next_bin].in_flight = in_flight.size();
    r_.hours[next_bin].pending = pending_;
  }
  if (progress_) progress_(1.0);
  r_.engine_stats = engine.Stats();
  Summarise();
  r_.summary.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return std::move(r_);
}

void Simulation::Summarise() {
  Summary& s = r_.summary;
  s.messages = s_.messages;
  std::vector<double> ttd;
  for (uint64_t i = 0; i < s_.messages; ++i) {
    switch (r_.msg_outcome[i]) {
      case Outcome::kDelivered:
        ++s.delivered;
        ttd.push_back(r_.msg_end_s[i] - r_.msg_submit_s[i]);
        break;
      case Outcome::kBounced: ++s.bounced; break;
      case Outcome::kExpired: ++s.expired; break;
      case Outcome::kPending: ++s.pending; break;
    }
  }
  const double m = static_cast<double>(s.messages);
  s.delivered_pct = 100.0 * static_cast<double>(s.delivered) / m;
  s.bounced_pct = 100.0 * static_cast<double>(s.bounced) / m;
  s.expired_pct = 100.0 * static_cast<double>(s.expired) / m;
  s.pending_pct = 100.0 * static_cast<double>(s.pending) / m;
  s.ttd_p50_s = Percentile(ttd, 0.50);
  s.ttd_p95_s = Percentile(ttd, 0.95);
  s.ttd_p99_s = Percentile(ttd, 0.99);
  for (const HourBin& b : r_.hours) {
    s.attempts += b.attempts;
    s.replies_4xx += b.replies_4xx;
    s.replies_5xx += b.replies_5xx;
  }
  const double delivered = static_cast<double>(s.delivered);
  s.attempts_per_delivered = s.delivered ? static_cast<double>(s.attempts) / delivered : kNaN;
  s.replies_4xx_per_delivered = s.delivered ? static_cast<double>(s.replies_4xx) / delivered : kNaN;
  s.receiver_seconds = receiver_ms_ / 1000.0;
  s.receiver_seconds_per_delivered = s.delivered ? s.receiver_seconds / delivered : kNaN;
  const size_t sources = s_.sources.size();
  for (size_t i = 0; i < pairs_.size(); ++i) {
    const uint32_t cap = profiles_[domain_profile_[i / sources]].max_connections_per_source;
    if (cap > 0) {
      s.peak_connection_utilisation = std::max(
          s.peak_connection_utilisation, static_cast<double>(pairs_[i].peak_connections) / cap);
    }
  }
  for (size_t d = 0; d < r_.domains.size(); ++d) {
    if (r_.domain_messages[d] == 0) continue;
    const bool flagged = !std::isnan(r_.domain_structural_s[d]);
    const bool truth = r_.domain_misconfigured[d];
    if (flagged && truth) ++s.structural_true_positives;
    if (flagged && !truth) ++s.structural_false_positives;
    if (!flagged && truth) ++s.structural_false_negatives;
    if (!flagged && !truth) ++s.structural_true_negatives;
    if (!std::isnan(r_.domain_warning_s[d])) ++s.warning_destinations;
  }
}

}  // namespace

absl::StatusOr<Result> Run(const Scenario& scenario, const EngineConfig& config,
                           const ProgressFn& progress) {
  Simulation sim(scenario, progress);
  return sim.Run(config);
}

}  // namespace mailretry::sim
