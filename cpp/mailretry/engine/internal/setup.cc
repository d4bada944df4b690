// File: engine/internal/setup.cc
// Building an engine's state from a validated config: built-in schedule
// overrides, compiled reaction rules, the full-cycle length, timer queues, and
// the per-destination caches of which policy, overrides and rules apply.
#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/core.h"
#include "mailretry/engine/internal/patterns.h"
#include "mailretry/engine/internal/state.h"
#include "re2/re2.h"

namespace mailretry {

Engine::Impl::Impl(EngineConfig cfg, uint64_t seed_value, Classifier cls)
    : config(std::move(cfg)),
      seed(seed_value),
      classifier(std::move(cls)),
      reply_cache(std::any_of(config.classifier_rules.begin(), config.classifier_rules.end(),
                              [](const UserRule& u) { return !u.destination.empty(); })),
      rng(seed_value),
      ids(0, internal::SlotHash{&msgs}, internal::SlotEq{&msgs}) {}

namespace internal {

absl::StatusOr<std::unique_ptr<Engine::Impl>> MakeImpl(EngineConfig config, uint64_t seed) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  absl::StatusOr<Classifier> cls = Classifier::Create(config.classifier_rules);
  if (!cls.ok()) return cls.status();
  auto impl = std::make_unique<Engine::Impl>(std::move(config), seed, *std::move(cls));
  EngineConfig& c = impl->config;

  impl->lease_timeout_ms = DurMs(c.lease_timeout);
  impl->warning_window_ms = std::max<int64_t>(1, DurMs(c.structural.warning_window));
  impl->schedules = c.overrides;
  if (c.builtin_overrides) {
    ScheduleOverride grey;
    grey.name = std::string(kBuiltinGreylisting);
    grey.categories = {Category::kGreylisting};
    grey.fixed_delay = absl::Minutes(5);
    grey.advance_backoff = false;
    grey.max_consecutive = 3;
    impl->schedules.push_back(grey);
    // A connection that failed (refused, timed out, lost mid-transaction)
    // says nothing about the receiver unless its neighbours fail too, and
    // those runs suspend the destination (connection_failures_to_suspend),
    // after which its messages wait for the release, not for this schedule.
    // So an isolated failure is retried soon, at Postfix's 5-min
    // minimal_backoff_time, twice without burning the backoff; on a flaky
    // path (9 % of connections lost) the default 15 min put the p95 at the
    // first retry (0.22 h against Postfix's 0.08 h).
    ScheduleOverride conn;
    conn.name = std::string(kBuiltinConnection);
    conn.transports = {Transport::kConnectionRefused, Transport::kConnectTimeout,
                       Transport::kConnectionDropped, Transport::kDnsFailure};
    conn.fixed_delay = std::min(c.retry.initial_delay, absl::Minutes(5));
    conn.advance_backoff = false;
    conn.max_consecutive = 2;
    impl->schedules.push_back(conn);
    // A full mailbox is one recipient's state and clears on a person's
    // timescale (hours), not the server's: retrying it at the default 15, 30,
    // 60 min spent ~1.3x KumoMTA's 4xx on it in every suite scenario (6-18 h
    // fills: 6 refusals before a 12-h fill clears, 4 with this schedule).
    ScheduleOverride full;
    full.name = std::string(kBuiltinMailboxFull);
    full.categories = {Category::kMailboxFull};
    RetryPolicy slow = c.retry;
    slow.initial_delay = std::max(slow.initial_delay, absl::Hours(1));
    slow.max_delay = std::max(slow.max_delay, slow.initial_delay);
    full.policy = slow;
    impl->schedules.push_back(full);
  }
  if (impl->schedules.size() > 60000)
    return absl::InvalidArgumentError("too many schedule overrides");

  impl->dest_policies.push_back(c.destination_defaults);
  for (const DestinationPolicy& d : c.destinations) impl->dest_policies.push_back(d);

  if (c.reactions.size() > 60000) return absl::InvalidArgumentError("too many reaction rules");
  for (const ReactionRule& r : c.reactions) {
    CompiledReaction cr;
    cr.rule = r;
    // Validate() accepted both patterns, so these parse.
    if (absl::StatusOr<BasicCodePattern> p = BasicCodePattern::Parse(r.code_pattern); p.ok())
      cr.code = *p;
    if (absl::StatusOr<EnhancedCodePattern> p = EnhancedCodePattern::Parse(r.enhanced_pattern);
        p.ok()) {
      cr.enhanced = *p;
    }
    if (!r.text_regex.empty()) {
      RE2::Options opts;
      opts.set_case_sensitive(false);
      opts.set_log_errors(false);
      cr.regex = std::make_unique<RE2>(r.text_regex, opts);
      if (!cr.regex->ok()) {
        return absl::InvalidArgumentError(absl::StrCat("reaction '", r.name, "': bad regex '",
                                                       r.text_regex, "': ", cr.regex->error()));
      }
    }
    impl->reactions.push_back(std::move(cr));
  }

  // One "full retry cycle": the schedule grew to its cap and the attempt after
  // the capped wait failed too (15m, 30m, 1h, 2h, 4h → the 6th failure).
  if (c.structural.cycle_failures != 0) {
    impl->cycle_failures = c.structural.cycle_failures;
  } else {
    impl->cycle_failures = 6;
    if (c.retry.backoff == Backoff::kExponential && c.retry.multiplier > 1.0 &&
        c.retry.max_delay != absl::InfiniteDuration()) {
      double d = absl::ToDoubleSeconds(c.retry.initial_delay);
      const double cap = absl::ToDoubleSeconds(c.retry.max_delay);
      uint32_t waits = 1;
      while (d < cap && waits < 20) {
        d *= c.retry.multiplier;
        ++waits;
      }
      impl->cycle_failures = waits + 1;
    }
  }

  TimerOptions topts;
  topts.resolution = c.timer_resolution;
  topts.start = absl::UnixEpoch();
  impl->msg_timers = MakeTimerQueue(c.backend, topts);
  impl->leases.Configure(c.backend, c.timer_resolution);
  impl->lease_deadlines_on = c.lease_timeout != absl::InfiniteDuration();
  // Destination wake-ups (rate spacing, suspension ends, probes) need
  // millisecond precision whatever the message backend: on a 1 s wheel a
  // destination limited to 600/min woke once per step and sent one message
  // per second. There is one per destination, not per message, so a heap's
  // log n is cheap here.
  impl->dest_timers = MakeTimerQueue(TimerBackend::kQuadHeap, topts);
  if (impl->msg_timers == nullptr || impl->dest_timers == nullptr) {
    return absl::InvalidArgumentError("unknown timer backend");
  }
  // The empty source gets id 0 so that "no source" is cheap.
  impl->names.emplace_back();
  impl->name_ids.emplace(std::string_view(impl->names.back()), 0);
  return impl;
}

void InitDestination(Engine::Impl& impl, DestState& d) {
  const std::string_view dom = impl.names[d.domain_id];
  const std::string_view src = impl.names[d.source_id];
  d.policy = 0;
  for (size_t i = 1; i < impl.dest_policies.size(); ++i) {
    const DestinationPolicy& p = impl.dest_policies[i];
    if (MatchDestination(p.destination, dom) &&
        (p.source.empty() || p.source == "*" || p.source == src)) {
      d.policy = static_cast<uint32_t>(i);
    }
  }
  d.schedule_candidates.clear();
  d.lifetime_schedule = -1;
  for (size_t i = 0; i < impl.schedules.size(); ++i) {
    const ScheduleOverride& o = impl.schedules[i];
    if (!MatchDestination(o.destination, dom)) continue;
    d.schedule_candidates.push_back(static_cast<uint16_t>(i));
    if (d.lifetime_schedule < 0 && o.policy && o.categories.empty() && o.transports.empty() &&
        !o.destination.empty() && o.destination != "*") {
      d.lifetime_schedule = static_cast<int32_t>(i);
    }
  }
  d.lifetime_ms =
      DurMs(d.lifetime_schedule >= 0 ? impl.schedules[d.lifetime_schedule].policy->lifetime
                                     : impl.config.retry.lifetime);
  d.reaction_candidates.clear();
  for (size_t i = 0; i < impl.reactions.size(); ++i) {
    if (MatchDestination(impl.reactions[i].rule.destination, dom)) {
      d.reaction_candidates.push_back(static_cast<uint16_t>(i));
    }
  }
}

}  // namespace internal

}  // namespace mailretry
