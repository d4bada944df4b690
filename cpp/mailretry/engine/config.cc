// File: engine/config.cc
// Validation of EngineConfig: every field checked once, here, with an error
// that names the field.
#include <cmath>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "mailretry/classify/internal/code_pattern.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/patterns.h"

namespace mailretry {

using internal::BasicCodePattern;
using internal::EnhancedCodePattern;
using internal::ValidDestinationPattern;

namespace {

// `delivered` names the outcome of a 2xx reply. Schedules and reactions only
// ever see failures, so a rule listing it would silently never match.
absl::Status NoDeliveredCategory(const std::vector<Category>& categories,
                                 const std::string& where) {
  for (Category c : categories) {
    if (c == Category::kDelivered) {
      return absl::InvalidArgumentError(absl::StrCat(
          where,
          ": category 'delivered' never matches (only failed attempts are retried or reacted to)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EngineConfig::Validate() const {
  if (absl::Status s = retry.Validate(); !s.ok()) return s;
  for (size_t i = 0; i < overrides.size(); ++i) {
    const ScheduleOverride& o = overrides[i];
    const std::string where = absl::StrCat("overrides[", i, "] '", o.name, "'");
    if (o.name.empty())
      return absl::InvalidArgumentError(absl::StrCat("overrides[", i, "].name is empty"));
    if (!ValidDestinationPattern(o.destination)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": bad destination pattern '", o.destination, "'"));
    }
    if (absl::Status s = NoDeliveredCategory(o.categories, where); !s.ok()) return s;
    if (o.policy) {
      if (absl::Status s = o.policy->Validate(); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
      }
      if (o.fixed_delay) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": set either policy or fixed_delay, not both"));
      }
    } else if (!o.fixed_delay && o.advance_backoff) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": needs a policy, a fixed_delay or advance_backoff = false"));
    }
    if (o.fixed_delay && *o.fixed_delay <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": fixed_delay must be positive"));
    }
  }
  std::vector<const DestinationPolicy*> policies = {&destination_defaults};
  for (const DestinationPolicy& d : destinations) policies.push_back(&d);
  for (size_t i = 0; i < policies.size(); ++i) {
    const DestinationPolicy& d = *policies[i];
    const std::string where =
        i == 0 ? std::string("destination_defaults") : absl::StrCat("destinations[", i - 1, "]");
    if (!ValidDestinationPattern(d.destination)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": bad destination pattern '", d.destination, "'"));
    }
    if (d.min_concurrency < 1 || d.initial_concurrency < d.min_concurrency ||
        d.max_concurrency < d.initial_concurrency) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": need 1 <= min_concurrency <= initial_concurrency <= max_concurrency"));
    }
    if (d.cut_concurrency_to < 1 || d.raise_concurrency_after < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": cut_concurrency_to and raise_concurrency_after must be >= 1"));
    }
    if (d.concurrency_ceiling_hold < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": concurrency_ceiling_hold must not be negative"));
    }
    for (const RateLimit* r : {&d.rate, &d.unlimited_cut_to, &d.min_rate}) {
      if (r->per <= absl::ZeroDuration() || r->per == absl::InfiniteDuration()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": rate intervals must be positive and finite"));
      }
    }
    // unlimited_cut_to may be unlimited (an unlimited rate is never cut);
    // min_rate is the floor of every cut, so it needs a real rate.
    if (d.min_rate.unlimited()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": min_rate needs messages >= 1"));
    }
    if (d.rate_quiet_period <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": rate_quiet_period must be positive"));
    }
    // suspend_base 0 = never suspend on a reply (see engine.h).
    if (d.suspend_base < absl::ZeroDuration() || d.suspend_max < d.suspend_base ||
        !(d.suspend_multiplier >= 1.0) || !std::isfinite(d.suspend_multiplier)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": need 0 <= suspend_base <= suspend_max and suspend_multiplier >= 1"));
    }
    if (d.capacity_window > 64 ||
        (d.capacity_window > 0 &&
         (d.capacity_suspend_min < 1 || d.capacity_suspend_min > d.capacity_window))) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": need capacity_window <= 64 and 1 <= capacity_suspend_min <= capacity_window"));
    }
    if (d.suspend_probe_interval < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": suspend_probe_interval must not be negative"));
    }
  }
  absl::flat_hash_set<std::string> names;
  for (size_t i = 0; i < reactions.size(); ++i) {
    const ReactionRule& r = reactions[i];
    const std::string where = absl::StrCat("reactions[", i, "] '", r.name, "'");
    if (r.name.empty())
      return absl::InvalidArgumentError(absl::StrCat("reactions[", i, "].name is empty"));
    if (!names.insert(r.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate name"));
    }
    if (!ValidDestinationPattern(r.destination)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": bad destination pattern"));
    }
    if (absl::Status s = NoDeliveredCategory(r.categories, where); !s.ok()) return s;
    // The classifier's user rules use the same code grammar (code_pattern.h).
    if (absl::StatusOr<BasicCodePattern> p = BasicCodePattern::Parse(r.code_pattern); !p.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": code_pattern: ", p.status().message()));
    }
    if (absl::StatusOr<EnhancedCodePattern> p = EnhancedCodePattern::Parse(r.enhanced_pattern);
        !p.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": enhanced_pattern: ", p.status().message()));
    }
    if (r.threshold < 1 || r.window <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": threshold must be >= 1 and window positive"));
    }
    if (!r.suspend_for && !r.set_concurrency && !r.set_rate) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": needs an action (suspend_for, set_concurrency or set_rate)"));
    }
    if ((r.suspend_for && *r.suspend_for <= absl::ZeroDuration()) ||
        (r.set_concurrency && *r.set_concurrency < 1) ||
        (r.set_rate && (r.set_rate->unlimited() || r.set_rate->per <= absl::ZeroDuration())) ||
        r.duration <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": suspend_for and duration must be positive, set_concurrency and set_rate >= 1"));
    }
  }
  const StructuralConfig& s = structural;
  if (s.warning_421s < 1 || !(s.warning_ratio > 0 && s.warning_ratio <= 1) ||
      s.warning_window <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "structural: need warning_421s >= 1, 0 < warning_ratio <= 1, positive warning_window");
  }
  if (s.cycle_messages < 1 || s.evidence_messages < 1 || s.evidence_span < absl::ZeroDuration() ||
      s.probe_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "structural: need cycle_messages >= 1, evidence_messages >= 1, positive probe_interval");
  }
  if (!(s.probe_backoff >= 1.0 && s.probe_backoff <= 16.0) ||
      s.probe_interval_max < s.probe_interval) {
    return absl::InvalidArgumentError(
        "structural: need 1 <= probe_backoff <= 16 and probe_interval_max >= probe_interval");
  }
  if (lease_timeout != absl::InfiniteDuration() &&
      (lease_timeout <= absl::ZeroDuration() || lease_timeout > absl::Hours(24 * 30))) {
    return absl::InvalidArgumentError("lease_timeout must be in (0, 30 days] or infinite");
  }
  // At least 1 us: timer queues count ticks from the epoch in int64 up to
  // 2^62, which at 1 ns would end in 2116, within a 100-year lifetime of now.
  if (timer_resolution < absl::Microseconds(1) || timer_resolution > absl::Hours(1)) {
    return absl::InvalidArgumentError("timer_resolution must be in [1 us, 1 h]");
  }
  if (max_buffered_events < 1)
    return absl::InvalidArgumentError("max_buffered_events must be >= 1");
  return absl::OkStatus();
}

}  // namespace mailretry
