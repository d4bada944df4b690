// The sending-MTA models of the simulator's presets; see sim_sender.h and
// ExplainPresets() in sim_presets.cc for where every constant comes from.
#include "mailretry/sim/internal/sim_sender.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/sim/sim.h"
#include "re2/re2.h"

namespace mailretry::sim::internal {
namespace {

constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

int64_t Ms(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

// Postfix defaults (postconf.proto; SCHEDULER_README).
constexpr double kPostfixInitialConcurrency = 5;  // initial_destination_concurrency
constexpr double kPostfixConcurrencyLimit = 20;   // default_destination_concurrency_limit
constexpr double kPostfixFailedCohortLimit = 1;   // ..._concurrency_failed_cohort_limit
constexpr int64_t kPostfixMinBackoffMs =
    300'000;  // minimal_backoff_time: dead-destination suspension

// KumoMTA shaping.toml "default" block and provider blocks.
constexpr uint32_t kKumoConnectionLimit = 10;
constexpr int64_t kKumoMessageIntervalMs = 10;     // max_message_rate = 100/s
constexpr uint32_t kKumoConnectionFailures = 100;  // consecutive_connection_failures_before_delay

// PowerMTA directive defaults.
constexpr uint32_t kPmtaMaxSmtpOut = 20;                 // max-smtp-out = backoff-max-smtp-out
constexpr int64_t kPmtaRetryAfterMs = 600'000;           // retry-after 10m
constexpr int64_t kPmtaBackoffRetryAfterMs = 3'600'000;  // backoff-retry-after 1h

}  // namespace

std::string_view LocalDeferralText(LocalDeferral d) {
  switch (d) {
    case LocalDeferral::kDeadDestination:
      return "451 4.4.1 delivery temporarily suspended: the destination failed a whole cohort of "
             "connection attempts";
    case LocalDeferral::kHostRetryTime:
      return "451 4.4.1 retry time not reached for any host";
    case LocalDeferral::kSuspended:
      return "451 4.4.4 KumoMTA internal: ready queue suspended by traffic-shaping automation";
    case LocalDeferral::kNoAnswerFromHosts:
      return "451 4.4.1 No answer from any hosts listed in MX";
  }
  return "451 4.4.1 deferred";
}

std::vector<AutomationRule> KumoAutomationRules() {
  std::vector<AutomationRule> out;
  {
    // policy-extras shaping.toml ["default".automation]: Microsoft-style IP
    // reputation deferrals -> 1 message/minute over 1 connection for 90 min.
    AutomationRule r;
    r.name = "default: IP-reputation deferral";
    r.regex =
        R"(temporarily rate limited due to IP reputation|Server busy\. Please try again later from|Messages from \S+ temporarily deferred|will be permanently deferred)";
    r.rate_messages = 1;
    r.rate_per = absl::Minutes(1);
    r.connection_limit = 1;
    r.duration = absl::Minutes(90);
    out.push_back(r);
  }
  {
    // policy-extras shaping.toml provider "yahoo": [TSS04] -> Suspend 2 h.
    AutomationRule r;
    r.name = "yahoo: [TSS04] suspend";
    r.provider = "yahoo";
    r.regex = R"(\[TS?S04\])";
    r.suspend = absl::Hours(2);
    r.duration = absl::Hours(2);
    out.push_back(r);
  }
  {
    // community shaping.toml "gmail": the 4.7.28 wording at 2/hr ->
    // max_message_rate 10/minute for 30 min.
    AutomationRule r;
    r.name = "google: unusual rate (4.7.28)";
    r.provider = "google";
    r.regex = R"(Our system has detected an unusual rate)";
    r.threshold = 2;
    r.rate_messages = 10;
    r.rate_per = absl::Minutes(1);
    r.duration = absl::Minutes(30);
    out.push_back(r);
  }
  return out;
}

std::vector<AutomationRule> PowerMtaBackoffPatterns() {
  // smtp-pattern-list ... mode=backoff, in the style of the published sample
  // configs (which list "421 .* SERVICE NOT AVAILABLE" and Yahoo's "[TS01]").
  AutomationRule r;
  r.name = "backoff patterns";
  r.regex =
      R"(421 .*SERVICE NOT AVAILABLE|\[TSS?0\d\]|unusual rate|temporarily rate limited|temporarily deferred)";
  r.suspend = absl::Milliseconds(kPmtaBackoffRetryAfterMs);
  return {r};
}

struct SenderGate::PairGate {
  uint32_t head = kNone, tail = kNone, waiting = 0;
  uint32_t in_flight = 0;
  int64_t wake = kNever;  // armed gate timer
  // Postfix.
  double window = kPostfixInitialConcurrency;
  double success = 0, failure = 0, fail_cohorts = 0;
  int64_t dead_until = 0;
  // Exim.
  int64_t host_first_failed = -1;
  int64_t host_next_try = 0;
  absl::Duration host_last_gap;
  uint32_t host_failures = 0;
  // KumoMTA.
  int64_t suspended_until = 0;
  int64_t override_until = 0;
  int64_t override_interval_ms = 0;
  uint32_t override_connections = 0;
  int64_t tat = 0;
  uint32_t connection_failures = 0;
  std::vector<std::pair<uint16_t, int64_t>> recent;  // (rule, time) for thresholds
  // PowerMTA.
  bool backoff = false;
  int64_t queue_retry_at = 0;
};

SenderGate::SenderGate(SenderModel model, const std::vector<ReceiverProfile>& profiles,
                       std::vector<uint32_t> pair_profile, uint64_t rng_seed)
    : model_(model),
      pair_profile_(std::move(pair_profile)),
      pairs_(pair_profile_.size()),
      exim_hosts_(RetryPolicy::Exim()),
      rng_(rng_seed ^ 0x452821e638d01377ULL) {
  if (model_ == SenderModel::kKumoMta) rules_ = KumoAutomationRules();
  if (model_ == SenderModel::kPowerMta) rules_ = PowerMtaBackoffPatterns();
  std::vector<std::unique_ptr<RE2>> res;
  RE2::Options opts;
  opts.set_case_sensitive(false);
  opts.set_log_errors(false);
  for (const AutomationRule& r : rules_) res.push_back(std::make_unique<RE2>(r.regex, opts));
  for (const ReceiverProfile& p : profiles) {
    const bool google = p.provider == "google", microsoft = p.provider == "microsoft";
    base_connections_.push_back(google || microsoft ? 5 : kKumoConnectionLimit);
    base_interval_ms_.push_back(kKumoMessageIntervalMs);
    connection_failure_limit_.push_back(google ? 5 : kKumoConnectionFailures);
    std::vector<std::vector<uint16_t>> kinds(kNumReplyKinds);
    for (int k = 0; k < kNumReplyKinds; ++k) {
      for (size_t i = 0; i < rules_.size(); ++i) {
        if (!rules_[i].provider.empty() && rules_[i].provider != p.provider) continue;
        if (res[i]->ok() && RE2::PartialMatch(p.replies[k], *res[i])) {
          kinds[k].push_back(static_cast<uint16_t>(i));
        }
      }
    }
    matches_.push_back(std::move(kinds));
  }
}

SenderGate::~SenderGate() = default;

void SenderGate::Push(uint32_t pair, uint32_t msg) {
  if (msg >= next_.size()) next_.resize(std::max<size_t>(msg + 1, next_.size() * 2), kNone);
  PairGate& g = pairs_[pair];
  next_[msg] = kNone;
  if (g.tail == kNone) {
    g.head = msg;
  } else {
    next_[g.tail] = msg;
  }
  g.tail = msg;
  ++g.waiting;
  ++waiting_total_;
}

uint32_t SenderGate::Pop(uint32_t pair) {
  PairGate& g = pairs_[pair];
  const uint32_t m = g.head;
  g.head = next_[m];
  if (g.head == kNone) g.tail = kNone;
  --g.waiting;
  --waiting_total_;
  return m;
}

void SenderGate::Wake(uint32_t pair, int64_t at) {
  PairGate& g = pairs_[pair];
  if (g.wake <= at) return;
  g.wake = at;
  wakes_.emplace(at, pair);
}

int64_t SenderGate::NextWake() const { return wakes_.empty() ? kNever : wakes_.top().first; }

void SenderGate::Advance(GateHost& host, int64_t now) {
  while (!wakes_.empty() && wakes_.top().first <= now) {
    const auto [at, pair] = wakes_.top();
    wakes_.pop();
    if (pairs_[pair].wake != at) continue;  // superseded
    pairs_[pair].wake = kNever;
    Pump(host, pair, now);
  }
}

bool SenderGate::Blocked(uint32_t pair, int64_t now) const {
  const PairGate& g = pairs_[pair];
  switch (model_) {
    case SenderModel::kPostfix:
      return g.dead_until > now;
    case SenderModel::kExim:
      return g.host_next_try > now;
    case SenderModel::kKumoMta:
      return g.suspended_until > now;
    case SenderModel::kPowerMta:
      return g.queue_retry_at > now;
    case SenderModel::kEngine:
      return false;
  }
  return false;
}

void SenderGate::Flush(GateHost& host, uint32_t pair, int64_t now, LocalDeferral why) {
  while (pairs_[pair].waiting > 0) {
    const uint32_t m = Pop(pair);
    if (!host.Finished(m)) host.Defer(m, now, why);
  }
}

void SenderGate::Offer(GateHost& host, uint32_t pair, uint32_t msg, int64_t now) {
  Push(pair, msg);
  Pump(host, pair, now);
}

void SenderGate::Pump(GateHost& host, uint32_t pair, int64_t now) {
  PairGate& g = pairs_[pair];
  const uint32_t prof = pair_profile_[pair];
  while (g.waiting > 0) {
    if (host.Finished(g.head)) {
      Pop(pair);
      continue;
    }
    switch (model_) {
      case SenderModel::kPostfix:
        if (g.dead_until > now) return Flush(host, pair, now, LocalDeferral::kDeadDestination);
        if (g.dead_until > 0) {
          // Back from the dead: "best concurrency is anyone's guess".
          g.dead_until = 0;
          g.window = kPostfixInitialConcurrency;
        }
        if (g.in_flight >= static_cast<uint32_t>(g.window))
          return;  // an ending attempt pumps again
        break;
      case SenderModel::kExim:
        if (g.host_next_try > now) return Flush(host, pair, now, LocalDeferral::kHostRetryTime);
        break;
      case SenderModel::kKumoMta: {
        if (g.suspended_until > now) return Flush(host, pair, now, LocalDeferral::kSuspended);
        const bool over = g.override_until > now;
        uint32_t conns = base_connections_[prof];
        int64_t interval = base_interval_ms_[prof];
        if (over && g.override_connections > 0) conns = std::min(conns, g.override_connections);
        if (over) interval = std::max(interval, g.override_interval_ms);
        if (g.in_flight >= conns) {
          if (over) Wake(pair, g.override_until);
          return;
        }
        if (g.tat > now) {
          Wake(pair, over ? std::min(g.tat, g.override_until) : g.tat);
          return;
        }
        g.tat = std::max(g.tat, now) + interval;
        break;
      }
      case SenderModel::kPowerMta:
        if (g.queue_retry_at > now) {
          Wake(pair, g.queue_retry_at);
          return;
        }
        if (g.in_flight >= kPmtaMaxSmtpOut) return;
        break;
      case SenderModel::kEngine:
        break;
    }
    const uint32_t m = Pop(pair);
    ++g.in_flight;
    host.StartAttempt(m, now);
  }
}

void SenderGate::OnResult(GateHost& host, uint32_t pair, ReplyKind kind, int64_t now) {
  PairGate& g = pairs_[pair];
  if (g.in_flight > 0) --g.in_flight;
  const bool conn_fail = IsConnectionLevel(kind);
  const uint32_t prof = pair_profile_[pair];
  switch (model_) {
    case SenderModel::kPostfix:
      if (g.dead_until > 0 && g.dead_until <= now) {
        // Back from the dead: "best concurrency is anyone's guess".
        g.dead_until = 0;
        g.window = kPostfixInitialConcurrency;
      }
      if (g.dead_until > now) break;  // late results of a dead queue change nothing
      if (!conn_fail) {
        // Positive feedback 1 per delivery: the window doubles per pseudo-cohort.
        g.fail_cohorts = 0;
        g.success += 1;
        while (g.success >= 1) {
          g.window += 1;
          g.failure = 0;
          g.success -= 1;
        }
        g.window = std::min(g.window, kPostfixConcurrencyLimit);
      } else {
        g.fail_cohorts += 1.0 / std::max(1.0, g.window);
        if (g.fail_cohorts >= kPostfixFailedCohortLimit) {
          // Dead: throttled until minimal_backoff_time has passed; queued
          // mail for it is deferred ("delivery temporarily suspended").
          g.dead_until = now + kPostfixMinBackoffMs;
          g.fail_cohorts = 0;
          g.success = g.failure = 0;
          Wake(pair, g.dead_until);
          Flush(host, pair, now, LocalDeferral::kDeadDestination);
          return;
        }
        g.failure -= 1;
        while (g.failure < 0) {
          g.window -= 1;
          g.failure += 1;
          g.success = 0;
        }
        g.window = std::max(g.window, 1.0);
      }
      break;
    case SenderModel::kExim:
      if (!conn_fail) {
        g.host_first_failed = -1;
        g.host_failures = 0;
        g.host_next_try = 0;
      } else {
        if (g.host_first_failed < 0) {
          g.host_first_failed = now;
          g.host_last_gap = absl::ZeroDuration();
        }
        ++g.host_failures;
        RetryState st;
        st.failures = g.host_failures;
        st.step = g.host_failures - 1;
        st.age = absl::Milliseconds(now - g.host_first_failed);
        st.last_delay = g.host_last_gap;
        const absl::Duration gap = NextDelay(exim_hosts_, st, rng_);
        g.host_last_gap = gap;
        g.host_next_try = std::max(g.host_next_try, now + Ms(gap));
        Flush(host, pair, now, LocalDeferral::kHostRetryTime);
        return;
      }
      break;
    case SenderModel::kKumoMta: {
      if (conn_fail) {
        if (++g.connection_failures >= connection_failure_limit_[prof]) {
          Flush(host, pair, now, LocalDeferral::kNoAnswerFromHosts);
        }
      } else {
        g.connection_failures = 0;
      }
      for (uint16_t ri : matches_[prof][static_cast<int>(kind)]) {
        const AutomationRule& r = rules_[ri];
        if (r.threshold > 1) {
          // N matches within an hour.
          const int64_t since = now - 3'600'000;
          std::erase_if(g.recent, [&](const auto& e) { return e.second < since; });
          g.recent.emplace_back(ri, now);
          const auto n = std::count_if(g.recent.begin(), g.recent.end(),
                                       [&](const auto& e) { return e.first == ri; });
          if (static_cast<uint32_t>(n) < r.threshold) continue;
        }
        if (r.suspend > absl::ZeroDuration()) {
          g.suspended_until = std::max(g.suspended_until, now + Ms(r.suspend));
          Wake(pair, g.suspended_until);
        }
        if (r.rate_messages > 0 || r.connection_limit > 0) {
          g.override_until = std::max(g.override_until, now + Ms(r.duration));
          if (r.rate_messages > 0) g.override_interval_ms = Ms(r.rate_per) / r.rate_messages;
          if (r.connection_limit > 0) g.override_connections = r.connection_limit;
        }
      }
      if (g.suspended_until > now) {
        Flush(host, pair, now, LocalDeferral::kSuspended);
        return;
      }
      break;
    }
    case SenderModel::kPowerMta: {
      const bool matched = !matches_[prof][static_cast<int>(kind)].empty();
      if (matched) g.backoff = true;
      if (kind == ReplyKind::kAccepted) g.backoff = false;  // backoff-to-normal-after-delivery
      const int64_t retry = g.backoff ? kPmtaBackoffRetryAfterMs : kPmtaRetryAfterMs;
      // A connection that cannot be made puts the queue in retry mode; in
      // backoff mode every deferral does.
      const bool deferral = kind != ReplyKind::kAccepted && kind != ReplyKind::kUnknownUser &&
                            kind != ReplyKind::kPtrReject && kind != ReplyKind::kAuthReject;
      if (conn_fail || (g.backoff && deferral)) {
        g.queue_retry_at = std::max(g.queue_retry_at, now + retry);
        Wake(pair, g.queue_retry_at);
      }
      break;
    }
    case SenderModel::kEngine:
      break;
  }
  Pump(host, pair, now);
}

}  // namespace mailretry::sim::internal
