// The simulator's event loop: arrivals, the Engine's leases, the sending-MTA
// model's gate, receiver replies after a latency, the Engine's decisions and
// events, all in virtual time at millisecond resolution. There is no tick:
// the loop jumps to the next moment anything can happen (an arrival, the end
// of an attempt, an engine or gate timer). The run's state and its setup are
// in internal/simulation.h and internal/sim_setup.cc.
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
#include "mailretry/policy/retry_policy.h"
#include "mailretry/reply/reply.h"
#include "mailretry/sim/internal/sim_receiver.h"
#include "mailretry/sim/internal/sim_sender.h"
#include "mailretry/sim/internal/sim_summary.h"
#include "mailretry/sim/internal/sim_workload.h"
#include "mailretry/sim/internal/simulation.h"

namespace mailretry::sim {
namespace {

// Small: TakeReady reserves room for min(limit, ready) leases on every call,
// and the loop calls it at every event time (ready can be large when a
// destination is throttled).
constexpr size_t kTakeBatch = 256;

int64_t Ms(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

}  // namespace

namespace internal {

void Simulation::Finish(uint32_t msg, Outcome o, int64_t t_ms) {
  if (msgs_[msg].outcome != Outcome::kPending) return;
  msgs_[msg].outcome = o;
  r_.msg_end_s[msg] = static_cast<double>(t_ms) / 1000.0;
  ++finished_;
  HourBin& b = Bin(t_ms);
  switch (o) {
    case Outcome::kDelivered:
      ++b.delivered;
      break;
    case Outcome::kBounced:
      ++b.bounced;
      break;
    case Outcome::kExpired:
      ++b.expired;
      break;
    default:
      break;
  }
}

absl::Status Simulation::Decide(uint32_t m, int64_t now, ReplyHandle reply) {
  absl::StatusOr<Decision> dec = engine_->Report(m, T(now), reply, SlotHint{msgs_[m].slot});
  if (!dec.ok()) {
    // The engine expired the message while its attempt was out (its
    // lifetime ended): the expired event says so.
    if (absl::IsNotFound(dec.status()) || absl::IsFailedPrecondition(dec.status())) {
      if (infer_expiry_) Finish(m, Outcome::kExpired, std::min(now, msgs_[m].expiry_ms));
      return absl::OkStatus();
    }
    return absl::InternalError(
        absl::StrCat("engine rejected a report for message ", m, ": ", dec.status().ToString()));
  }
  switch (dec->action) {
    case DecisionAction::kDelivered:
      Finish(m, Outcome::kDelivered, now);
      break;
    case DecisionAction::kBounced:
      Finish(m, Outcome::kBounced, now);
      break;
    case DecisionAction::kExpired:
      Finish(m, Outcome::kExpired, now);
      break;
    case DecisionAction::kRetry:
      // The engine keeps a lease for the last attempt at the end of the
      // lifetime alive past it (Postfix tries once more after expiry).
      if (infer_expiry_ && dec->next_attempt.has_value() &&
          ToMs(*dec->next_attempt) >= msgs_[m].expiry_ms) {
        msgs_[m].final_attempt = true;
      }
      break;
  }
  return absl::OkStatus();
}

void Simulation::StartAttempt(uint32_t m, int64_t now) {
  Msg& x = msgs_[m];
  const uint32_t d = x.domain;
  const uint32_t src = x.source;
  const uint32_t prof = domain_profile_[d];
  const internal::AttemptResult a = internal::StartAttempt(
      profiles_[prof], profile_ms_[prof], s_.sources[src], s_.reputation_from_retries,
      pairs_[d * nsources_ + src], x.rcpt, now, rng_);
  if (x.attempts < UINT16_MAX) ++x.attempts;
  ++r_.reply_kinds[static_cast<int>(a.kind)];
  ++Bin(now).attempts;
  receiver_ms_ += static_cast<double>(a.latency_ms);
  in_flight_.push({now + a.latency_ms, seq_++, m, a.kind, a.holds_connection});
}

void Simulation::Defer(uint32_t m, int64_t now, internal::LocalDeferral why) {
  ++r_.summary.local_deferrals;
  absl::Status st = Decide(m, now, local_handles_[static_cast<int>(why)]);
  if (!st.ok() && error_.ok()) error_ = st;
}

void Simulation::DrainEvents() {
  for (const Event& e : engine_->DrainEvents()) {
    switch (e.kind) {
      case EventKind::kExpired:
        if (e.msg_id.has_value() && *e.msg_id < s_.messages) {
          Finish(static_cast<uint32_t>(*e.msg_id), Outcome::kExpired, ToMs(e.time));
        }
        break;
      case EventKind::kStructuralFailure:
      case EventKind::kDestinationWarning: {
        auto dom = domain_ids_.find(std::string(e.destination));
        auto src = source_ids_.find(std::string(e.source));
        if (dom == domain_ids_.end() || src == source_ids_.end()) break;
        std::vector<double>& first =
            e.kind == EventKind::kStructuralFailure ? r_.pair_structural_s : r_.pair_warning_s;
        double& slot = first[dom->second * nsources_ + src->second];
        if (std::isnan(slot)) slot = static_cast<double>(ToMs(e.time)) / 1000.0;
        break;
      }
      default:
        break;
    }
  }
}

absl::StatusOr<Result> Simulation::Run(const Policy& policy) {
  const auto wall_start = std::chrono::steady_clock::now();
  if (absl::Status st = ValidateScenario(s_); !st.ok()) return st;
  if (absl::Status st = Setup(); !st.ok()) return st;
  start_whole_ms_ = ::mailretry::internal::IsWholeUnixMillis(s_.start) &&
                    ::mailretry::internal::InUnixRange(s_.start, int64_t{1} << 40);
  start_ms_ = start_whole_ms_ ? ::mailretry::internal::UnixMillis(s_.start) : 0;

  EngineConfig cfg = policy.engine;
  // Expiries without a report: with no schedule overrides every message
  // expires exactly at submission + retry.lifetime, so the simulation infers
  // them and spares the engine a per-message event stream (a large share of
  // the run time); otherwise it reads the expired events.
  infer_expiry_ = cfg.overrides.empty();
  cfg.message_events = !infer_expiry_;
  lifetime_ms_ = Ms(cfg.retry.lifetime);
  absl::StatusOr<std::unique_ptr<Engine>> created = Engine::Create(cfg, s_.seed);
  if (!created.ok()) return created.status();
  engine_ = std::move(*created);
  Engine& engine = *engine_;
  // Every reply the run reports, registered once: a report by handle costs
  // the engine no hashing of the reply.
  reply_handles_.assign(replies_.size(), {});
  for (size_t p = 0; p < replies_.size(); ++p) {
    for (const Reply& r : replies_[p]) {
      absl::StatusOr<ReplyHandle> h = engine.InternReply(r);
      if (!h.ok()) return h.status();
      reply_handles_[p].push_back(*h);
    }
  }
  local_handles_.clear();
  for (const Reply& r : local_replies_) {
    absl::StatusOr<ReplyHandle> h = engine.InternReply(r);
    if (!h.ok()) return h.status();
    local_handles_.push_back(*h);
  }
  if (policy.sender != SenderModel::kEngine) {
    std::vector<uint32_t> pair_profile(pairs_.size());
    for (size_t i = 0; i < pairs_.size(); ++i) pair_profile[i] = domain_profile_[i / nsources_];
    gate_ = std::make_unique<internal::SenderGate>(policy.sender, profiles_,
                                                   std::move(pair_profile), s_.seed);
  }

  const uint64_t n = s_.messages;
  const int64_t horizon = Ms(s_.horizon);
  if (infer_expiry_) {
  }
  // Every message has an outcome by then (the last arrival's lifetime, plus a
  // day for attempts in flight at its end); without inference, a safety stop.
  const int64_t all_done = (n > 0 ? arrival_ms_[n - 1] : 0) +
                           (infer_expiry_ ? lifetime_ms_ : Ms(absl::Hours(24 * 60))) +
                           kMsPerHour * 24;
  // For progress only: arrivals plus the schedule's lifetime.
  const double expected_end =
      static_cast<double>(Ms(s_.arrival_window) + Ms(cfg.retry.lifetime)) + 1.0;
  rng_ = SplitMix64(s_.seed ^ 0x13198a2e03707344ULL);
  uint64_t next_arrival = 0;
  int64_t next_hour = kMsPerHour;
  std::vector<uint64_t> batch_ids;
  std::vector<uint32_t> batch_domains;
  std::vector<uint32_t> batch_sources;
  int64_t now = n > 0 ? arrival_ms_[0] : 0;
  int64_t last_event = now;
  uint64_t finished_seen = 0;
  int64_t next_drain = now;
  bool stopped_at_horizon = false;

  while (true) {
    while (now >= next_hour) {
      Bin(next_hour - 1).in_flight = in_flight_.size();
      next_hour += kMsPerHour;
      if (progress_ && !progress_(std::min(0.99, static_cast<double>(now) / expected_end))) {
        return absl::CancelledError("simulation cancelled");
      }
    }
    if (horizon > 0 && now > horizon) {
      stopped_at_horizon = true;
      break;
    }
    if (now > all_done) break;
    now_ = now;
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
      if (infer_expiry_) msgs_[m].expiry_ms = now + lifetime_ms_;
      msgs_[m].rcpt =
          internal::DrawRecipient(profiles_[domain_profile_[r_.msg_domain[m]]], s_.seed, m, now);
    }
    // SubmitMany checks every name in the table it is given, so a batch of a
    // few arrivals (the usual case at millisecond resolution) goes one by one.
    if (batch_ids.size() >= 64) {
      absl::Status st =
          engine.SubmitMany(batch_ids, batch_domains, r_.domains, now_t, batch_sources, r_.sources);
      if (!st.ok())
        return absl::InternalError(absl::StrCat("engine rejected a submit: ", st.ToString()));
    } else {
      for (size_t i = 0; i < batch_ids.size(); ++i) {
        absl::Status st = engine.Submit(batch_ids[i], r_.domains[batch_domains[i]], now_t,
                                        r_.sources[batch_sources[i]]);
        if (!st.ok())
          return absl::InternalError(absl::StrCat("engine rejected a submit: ", st.ToString()));
      }
    }
    if (!infer_expiry_) {
      // Expiries first, so that nothing expired is tried.
      if (absl::Status st = engine.Advance(now_t); !st.ok()) return st;
      DrainEvents();
    }

    // Attempts that end now.
    while (!in_flight_.empty() && in_flight_.top().end_ms <= now) {
      const InFlight f = in_flight_.top();
      in_flight_.pop();
      // The next attempt to end, if it ends now too: its record loads while
      // this one's report runs.
      if (!in_flight_.empty() && in_flight_.top().end_ms <= now) PrefetchMsg(in_flight_.top().msg);
      const uint32_t m = f.msg;
      Msg& x = msgs_[m];
      const uint32_t d = x.domain;
      const uint32_t pair = Pair(m);
      if (f.holds_connection) internal::EndAttempt(pairs_[pair]);
      const uint32_t prof = domain_profile_[d];
      const Reply& reply = replies_[prof][static_cast<int>(f.kind)];
      HourBin& b = Bin(now);
      if (reply.transport != Transport::kReply) {
        ++r_.summary.transport_failures;
      } else if (reply.code / 100 == 4) {
        ++b.replies_4xx;
        if (x.replies_4xx < UINT16_MAX) ++x.replies_4xx;
      } else if (reply.code / 100 == 5) {
        ++b.replies_5xx;
      }
      if (x.outcome == Outcome::kPending) {
        if (absl::Status st = Decide(m, now, reply_handles_[prof][static_cast<int>(f.kind)]);
            !st.ok())
          return st;
      }
      if (gate_) gate_->OnResult(*this, pair, f.kind, now);
    }
    if (gate_) gate_->Advance(*this, now);

    // New attempts (or offers to the MTA model).
    while (true) {
      absl::StatusOr<std::vector<Lease>> leases = engine.TakeReady(now_t, kTakeBatch);
      if (!leases.ok()) return leases.status();
      // A leased message's record was last touched a retry interval ago (a
      // cache miss at 1M messages): ask for all of the batch's first.
      for (const Lease& l : *leases) PrefetchMsg(static_cast<uint32_t>(l.msg_id));
      for (const Lease& l : *leases) {
        const uint32_t m = static_cast<uint32_t>(l.msg_id);
        msgs_[m].slot = l.slot.slot;
        if (gate_) {
          gate_->Offer(*this, Pair(m), m, now);
        } else {
          StartAttempt(m, now);
        }
      }
      if (leases->size() < kTakeBatch) break;
    }
    if (!error_.ok()) return error_;
    // Without message events only destination events remain, which carry
    // their own time: reading them once per simulated minute is exact and
    // spares a lock per event time.
    if (!infer_expiry_ || now >= next_drain) {
      DrainEvents();
      next_drain = now + internal::kMsPerMinute;
    }
    // The run ends at the last outcome, not at an engine wake-up after it
    // (a suspension of a destination with nothing left to send).
    if (finished_ != finished_seen) {
      finished_seen = finished_;
      last_event = now;
    }
    if (finished_ == n) break;

    // The next moment anything can happen.
    int64_t next = std::numeric_limits<int64_t>::max();
    if (next_arrival < n) next = std::min(next, arrival_ms_[next_arrival]);
    if (!in_flight_.empty()) {
      next = std::min(next, in_flight_.top().end_ms);
      PrefetchMsg(in_flight_.top().msg);  // loads during the engine's NextWakeup
    }
    if (gate_) next = std::min(next, gate_->NextWake());
    if (std::optional<absl::Time> wake = engine.NextWakeup(); wake.has_value()) {
      const int64_t w = ToMs(*wake);
      next = std::min(next, w <= now ? now + 1 : w);
    }
    if (next == std::numeric_limits<int64_t>::max()) break;  // idle
    now = std::max(now + 1, next);
  }
  DrainEvents();
  int64_t end = stopped_at_horizon ? horizon : last_event;
  if (!stopped_at_horizon && infer_expiry_) {
    for (uint64_t i = 0; i < n; ++i) {
      if (msgs_[i].outcome == Outcome::kPending) end = std::max(end, msgs_[i].expiry_ms);
    }
  }
  Bin(end);
  // Whatever has no outcome at the end is expired if its lifetime is over
  // (the engine expired it silently), else held: still queued, in flight, or
  // behind a suspended or held destination when the horizon stopped the run.
  for (uint64_t i = 0; i < n; ++i) {
    if (msgs_[i].outcome != Outcome::kPending) continue;
    if (infer_expiry_ && msgs_[i].expiry_ms <= end) {
      Finish(static_cast<uint32_t>(i), Outcome::kExpired, msgs_[i].expiry_ms);
    } else {
      msgs_[i].outcome = Outcome::kHeld;
    }
  }
  r_.msg_outcome.resize(n);
  r_.msg_attempts.resize(n);
  r_.msg_4xx.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    r_.msg_outcome[i] = msgs_[i].outcome;
    r_.msg_attempts[i] = msgs_[i].attempts;
    r_.msg_4xx[i] = msgs_[i].replies_4xx;
  }
  internal::CountPendingPerHour(r_);
  if (progress_) progress_(1.0);
  r_.engine_stats = engine.Stats();
  r_.summary.end_s = static_cast<double>(end) / 1000.0;
  std::vector<uint32_t> pair_cap(pairs_.size());
  for (size_t i = 0; i < pairs_.size(); ++i)
    pair_cap[i] = profiles_[domain_profile_[i / nsources_]].max_connections_per_source;
  internal::Summarise(s_.messages, receiver_ms_, pairs_, pair_cap, r_);
  r_.summary.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return std::move(r_);
}

}  // namespace internal

absl::StatusOr<Result> Run(const Scenario& scenario, const Policy& policy,
                           const ProgressFn& progress) {
  internal::Simulation sim(scenario, progress);
  return sim.Run(policy);
}

absl::StatusOr<Result> Run(const Scenario& scenario, const EngineConfig& config,
                           const ProgressFn& progress) {
  Policy p;
  p.name = "custom";
  p.engine = config;
  p.sender = SenderModel::kEngine;
  return Run(scenario, p, progress);
}

}  // namespace mailretry::sim
