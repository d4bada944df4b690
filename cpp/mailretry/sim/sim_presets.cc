// The simulator's policy presets: an engine config for the schedule plus the
// sending-MTA model (internal/sim_sender.h) that the real MTA puts around it.
// ExplainPresets() says what each reproduces and where each default comes
// from; the sources are the MTAs' own documentation and source code.
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "mailretry/engine/engine.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim {
namespace {

// The engine as a plain scheduler: the retry schedule and the lifetime, no
// destination state (the MTA model owns concurrency, rates and suspensions),
// no structural detection, no greylisting override.
EngineConfig Scheduler(RetryPolicy retry, uint32_t concurrency) {
  EngineConfig c;
  c.retry = std::move(retry);
  c.builtin_overrides = false;
  c.structural.enabled = false;
  DestinationPolicy& d = c.destination_defaults;
  d.initial_concurrency = d.max_concurrency = d.min_concurrency = d.cut_concurrency_to =
      concurrency;
  // No reaction of the engine's own: a rate-limit or reputation reply
  // neither cuts the rate nor suspends, as in the real MTAs (whose
  // suspensions and pacing the MTA model does). The smallest values allowed
  // before (1 ms suspensions, a cut to 1 message per ms for 15 min) were
  // reactions none of the modelled MTAs has, and made the engine record,
  // format and wake for millions of them.
  d.unlimited_cut_to = RateLimit{};
  d.min_rate = {1'000'000, absl::Seconds(1)};
  d.suspend_base = d.suspend_max = absl::ZeroDuration();
  d.connection_failures_to_suspend = 0;
  d.suspend_probe_interval = absl::ZeroDuration();
  // Messages wait in the MTA model's queue while leased (a Postfix active
  // queue, a PowerMTA queue in retry mode): the lease must outlive that, and
  // the model reports every lease, so no lease deadline is kept at all.
  c.lease_timeout = absl::InfiniteDuration();
  return c;
}

constexpr uint32_t kUnbounded = 1'000'000;

}  // namespace

std::string_view SenderModelName(SenderModel m) {
  switch (m) {
    case SenderModel::kEngine:
      return "engine";
    case SenderModel::kPostfix:
      return "postfix";
    case SenderModel::kExim:
      return "exim";
    case SenderModel::kKumoMta:
      return "kumomta";
    case SenderModel::kPowerMta:
      return "powermta";
  }
  return "engine";
}

std::vector<std::string> PresetPolicyNames() {
  return {"naive", "postfix", "exim", "kumomta", "powermta", "adaptive"};
}

absl::StatusOr<Policy> PresetPolicy(std::string_view name) {
  Policy p;
  p.name = std::string(name);
  if (name == "adaptive") {
    p.engine = EngineConfig{};
    p.sender = SenderModel::kEngine;
  } else if (name == "naive") {
    RetryPolicy r;
    r.backoff = Backoff::kIntervals;
    r.intervals = {absl::Minutes(15)};
    r.lifetime = absl::Hours(24 * 5);
    p.engine = Scheduler(r, 20);
    p.sender = SenderModel::kEngine;
  } else if (name == "postfix") {
    p.engine = Scheduler(RetryPolicy::Postfix(), kUnbounded);
    p.sender = SenderModel::kPostfix;
  } else if (name == "exim") {
    p.engine = Scheduler(RetryPolicy::Exim(), kUnbounded);
    p.sender = SenderModel::kExim;
  } else if (name == "kumomta") {
    p.engine = Scheduler(RetryPolicy::KumoMta(), kUnbounded);
    p.sender = SenderModel::kKumoMta;
  } else if (name == "powermta") {
    RetryPolicy r;
    r.backoff = Backoff::kIntervals;
    r.intervals = {absl::Minutes(10)};
    r.lifetime = absl::Hours(24 * 4 + 12);
    p.engine = Scheduler(r, kUnbounded);
    p.sender = SenderModel::kPowerMta;
  } else {
    return absl::NotFoundError(
        absl::StrCat("unknown policy \"", std::string(name),
                     "\" (expected naive, postfix, exim, kumomta, powermta or adaptive)"));
  }
  return p;
}

std::vector<ParamSource> ExplainPresets() {
  const std::string pf = "Postfix postconf.proto / SCHEDULER_README (vdukhovni/postfix)";
  const std::string ex = "Exim spec chapter 'Retry configuration' and src/src/retry.c (Exim/exim)";
  const std::string ku =
      "KumoMTA assets/policy-extras/shaping.toml and crates/kumod/src/queue (KumoCorp/kumomta)";
  const std::string ku_c = "KumoMTA assets/community/shaping.toml (KumoCorp/kumomta)";
  const std::string pm =
      "PowerMTA directive reference (public directive data file, secondary: Port25 docs not "
      "available)";
  return {
      {"naive", "schedule", "every 15 min, 5 d lifetime, 20 connections per destination",
       "a straw man on purpose: no reaction to any reply", "-"},
      {"*", "engine reactions",
       "none in naive, postfix, exim, kumomta, powermta: the engine only schedules (no rate "
       "cut, no suspension on a reply; the MTA model does what the real MTA does)",
       "their own pacing and suspensions are in the MTA model (Postfix destination_rate_delay "
       "0 by default; KumoMTA shaping and automation, PowerMTA backoff mode); none of them "
       "suspends a destination for 1 ms or paces it at 1 per ms after a rate-limit reply, which "
       "the engine's smallest settings did before",
       "H"},
      {"postfix", "schedule", "delay = time in queue clamped to [300 s, 4000 s], 5 d lifetime",
       pf + ": minimal_backoff_time, maximal_backoff_time, maximal_queue_lifetime; qmgr_active.c",
       "H"},
      {"postfix", "concurrency",
       "initial 5, limit 20, +1 per delivery, -1 per connect/handshake "
       "failure",
       pf + ": initial_destination_concurrency, default_destination_concurrency_limit, "
            "..._positive_feedback, ..._negative_feedback",
       "H"},
      {"postfix", "dead destination",
       "failed cohort (sum of 1/N per failure) >= 1 -> suspended "
       "300 s, queued mail deferred 'delivery temporarily suspended', window back to 5",
       pf + ": default_destination_concurrency_failed_cohort_limit = 1; qmgr_queue.c", "H"},
      {"postfix", "what counts",
       "only connect/banner/EHLO failures; a 4xx at MAIL/RCPT/DATA "
       "(e.g. 4.7.28) does not throttle",
       "Postfix smtp_trouble.c (site vs message failures)", "H"},
      {"exim", "schedule", "F,2h,15m; G,16h,1h,1.5; F,4d,6h by message age, 4 d",
       ex + "; configure.default", "H"},
      {"exim", "host retry hints",
       "a connection-level failure starts a host record; until its "
       "retry time every message for it is deferred 'retry time not reached for any host'; "
       "success clears it",
       ex + " (retry database, per host and IP)", "H"},
      {"exim", "concurrency", "no per-destination limit (deliveries start on arrival)",
       ex + "; remote_max_parallel is per message", "H"},
      {"kumomta", "schedule",
       "20 min x 2^n, +-30 s jitter, expires when the next retry would "
       "pass max_age 7 d (about 85 h)",
       ku + " (queue/config.rs)", "H"},
      {"kumomta", "shaping",
       "connection_limit 10, max_message_rate 100/s, 100 consecutive "
       "connection failures -> delay ready queue; google/microsoft: 5 connections; google: 5 "
       "failures",
       ku, "H"},
      {"kumomta", "automation",
       "Microsoft-style IP-reputation deferral -> 1/min over 1 "
       "connection for 90 min (default block); Yahoo [TSS04] -> suspend 2 h",
       ku, "H"},
      {"kumomta", "automation",
       "Gmail 'unusual rate' (4.7.28) twice in an hour -> 10/min for 30 "
       "min",
       ku_c, "M"},
      {"kumomta", "suspension", "due messages are requeued and consume a backoff step",
       ku + " (queue.rs: IncrementAttempts::Yes on a suspended queue)", "H"},
      {"powermta", "schedule", "retry-after 10m, bounce-after 4d12h", pm, "M"},
      {"powermta", "queue",
       "max-smtp-out 20; a connection failure puts the queue in retry mode "
       "for retry-after (10m)",
       pm, "M"},
      {"powermta", "backoff mode",
       "reply patterns ([TSxx]/[TSSxx], 421 SERVICE NOT AVAILABLE, "
       "'unusual rate', 'temporarily rate limited', 'temporarily deferred') -> backoff: every "
       "deferral pauses the queue for backoff-retry-after 1h; backoff-max-msg-rate stays "
       "unlimited (its default)",
       pm + "; pattern list in the style of published sample configs", "M"},
      {"powermta", "back to normal", "on the first delivery (backoff-to-normal-after-delivery)",
       "our choice: the default 'never' would keep a queue in backoff for the rest of the run",
       "assumption"},
      {"adaptive", "everything", "mailretry's engine defaults (EngineConfig{})",
       "this project (README, engine.h)", "-"},
  };
}

}  // namespace mailretry::sim
