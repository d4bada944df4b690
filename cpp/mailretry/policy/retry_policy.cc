#include "mailretry/policy/retry_policy.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "mailretry/common/internal/strings.h"
#include "mailretry/common/internal/unix_ms.h"

namespace mailretry {
namespace {

// Durations are computed in double seconds so that multiplier^step saturates
// instead of overflowing; anything past this is "infinite" for our purposes.
constexpr double kMaxSeconds = 1e12;

double Secs(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return kMaxSeconds;
  return internal::DoubleSeconds(d);  // absl::ToDoubleSeconds, inline
}

absl::Duration FromSecs(double s) {
  if (s >= kMaxSeconds) return absl::Seconds(kMaxSeconds);
  if (s <= 0) return absl::ZeroDuration();
  // Millisecond granularity keeps schedules identical across platforms.
  return absl::Milliseconds(std::llround(s * 1000.0));
}

double StageBase(const RetryPolicy& p, const RetryState& s, SplitMix64& rng) {
  const RetryStage* stage = &p.stages.back();
  for (const RetryStage& st : p.stages) {
    if (s.age <= st.cutoff) {
      stage = &st;
      break;
    }
  }
  const double p1 = Secs(stage->interval);
  const double last = Secs(s.last_delay);
  switch (stage->kind) {
    case RetryStage::Kind::kFixed:
      return p1;
    case RetryStage::Kind::kGeometric:
      return last < p1 ? p1 : last * stage->multiplier;
    case RetryStage::Kind::kRandomized: {
      // Exim retry.c draws in the upper half of [p1, lastgap × p2].
      const double next_gap = last * stage->multiplier;
      if (next_gap <= p1) return p1;
      const double span = next_gap - p1;
      return p1 + span / 2 + rng.Uniform() * span / 2;
    }
  }
  return p1;
}

}  // namespace

std::string_view JitterName(Jitter j) {
  switch (j) {
    case Jitter::kNone:
      return "none";
    case Jitter::kFull:
      return "full";
    case Jitter::kEqual:
      return "equal";
    case Jitter::kDecorrelated:
      return "decorrelated";
    case Jitter::kKumo:
      return "kumo";
    case Jitter::kProportional:
      return "proportional";
  }
  return "none";
}

absl::StatusOr<Jitter> ParseJitter(std::string_view name) {
  const std::string n = absl::AsciiStrToLower(internal::ToAbsl(name));
  for (Jitter j : {Jitter::kNone, Jitter::kFull, Jitter::kEqual, Jitter::kDecorrelated,
                   Jitter::kKumo, Jitter::kProportional}) {
    if (JitterName(j) == n) return j;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown jitter '", internal::ToAbsl(name),
                   "' (expected none, full, equal, decorrelated, kumo or proportional)"));
}

RetryPolicy RetryPolicy::Default() { return RetryPolicy{}; }

RetryPolicy RetryPolicy::Postfix() {
  RetryPolicy p;
  p.backoff = Backoff::kAge;
  p.min_delay = absl::Seconds(300);  // minimal_backoff_time
  p.initial_delay = absl::Seconds(300);
  p.max_delay = absl::Seconds(4000);  // maximal_backoff_time
  p.lifetime = absl::Hours(24 * 5);   // maximal_queue_lifetime
  p.attempt_at_lifetime_end = true;   // qmgr expires only after an attempt
  p.jitter = Jitter::kNone;           // the delay is the time in queue, not drawn
  return p;
}

RetryPolicy RetryPolicy::Exim() {
  RetryPolicy p;
  p.backoff = Backoff::kStages;
  p.stages = {
      {RetryStage::Kind::kFixed, absl::Hours(2), absl::Minutes(15), 1.0},
      {RetryStage::Kind::kGeometric, absl::Hours(16), absl::Hours(1), 1.5},
      {RetryStage::Kind::kFixed, absl::Hours(24 * 4), absl::Hours(6), 1.0},
  };
  p.initial_delay = absl::Minutes(15);
  p.max_delay = absl::Hours(24);  // retry_interval_max
  p.lifetime = absl::Hours(24 * 4);
  p.attempt_at_lifetime_end = true;
  p.jitter = Jitter::kNone;  // H stages carry Exim's own randomness
  return p;
}

RetryPolicy RetryPolicy::KumoMta() {
  RetryPolicy p;
  p.backoff = Backoff::kExponential;
  p.initial_delay = absl::Minutes(20);  // retry_interval
  p.multiplier = 2.0;
  p.max_delay = absl::InfiniteDuration();  // max_retry_interval: none
  p.lifetime = absl::Hours(24 * 7);        // max_age
  p.jitter = Jitter::kKumo;
  p.attempt_at_lifetime_end = false;
  return p;
}

RetryPolicy RetryPolicy::Haraka() {
  RetryPolicy p;
  p.backoff = Backoff::kIntervals;
  for (int i = 1; i <= 12; ++i) p.intervals.push_back(absl::Seconds(int64_t{1} << (i + 5)));
  p.initial_delay = p.intervals.front();
  p.max_delay = absl::InfiniteDuration();
  p.max_attempts = 13;  // maxTempFailures
  p.lifetime = absl::Hours(24 * 30);
  p.attempt_at_lifetime_end = false;
  p.jitter = Jitter::kNone;  // Haraka's temp_fail_intervals are fixed
  return p;
}

absl::StatusOr<RetryPolicy> RetryPolicy::Preset(std::string_view name) {
  const std::string n = absl::AsciiStrToLower(internal::ToAbsl(name));
  if (n == "default") return Default();
  if (n == "postfix") return Postfix();
  if (n == "exim") return Exim();
  if (n == "kumomta" || n == "kumo") return KumoMta();
  if (n == "haraka") return Haraka();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown retry preset '", internal::ToAbsl(name),
                   "' (expected default, postfix, exim, kumomta or haraka)"));
}

absl::Status RetryPolicy::Validate() const {
  if (initial_delay <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("retry.initial_delay must be positive");
  }
  if (!(multiplier >= 1.0) || !std::isfinite(multiplier)) {
    return absl::InvalidArgumentError("retry.multiplier must be a finite number >= 1");
  }
  if (max_delay <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("retry.max_delay must be positive");
  }
  if (min_delay < absl::ZeroDuration() || min_delay > max_delay) {
    return absl::InvalidArgumentError("retry.min_delay must be in [0, max_delay]");
  }
  if (lifetime <= absl::ZeroDuration() || lifetime == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("retry.lifetime must be positive and finite");
  }
  if (backoff == Backoff::kIntervals) {
    if (intervals.empty()) {
      return absl::InvalidArgumentError(
          "retry.intervals must not be empty for backoff 'intervals'");
    }
    for (absl::Duration d : intervals) {
      if (d <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError("retry.intervals must all be positive");
      }
    }
  }
  if (backoff == Backoff::kStages) {
    if (stages.empty()) {
      return absl::InvalidArgumentError("retry.stages must not be empty for backoff 'stages'");
    }
    absl::Duration prev = -absl::InfiniteDuration();
    for (size_t i = 0; i < stages.size(); ++i) {
      const RetryStage& s = stages[i];
      if (s.interval <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError(
            absl::StrCat("retry.stages[", i, "].interval must be positive"));
      }
      if (s.cutoff <= prev) {
        return absl::InvalidArgumentError(
            absl::StrCat("retry.stages[", i, "].cutoff must be later than the previous stage's"));
      }
      if (s.kind != RetryStage::Kind::kFixed &&
          (!(s.multiplier >= 1.0) || !std::isfinite(s.multiplier))) {
        return absl::InvalidArgumentError(
            absl::StrCat("retry.stages[", i, "].multiplier must be >= 1"));
      }
      prev = s.cutoff;
    }
  }
  return absl::OkStatus();
}

absl::Duration NextDelay(const RetryPolicy& p, const RetryState& s, SplitMix64& rng) {
  double d = 0;
  switch (p.backoff) {
    case Backoff::kExponential:
      d = Secs(p.initial_delay) * std::pow(p.multiplier, static_cast<double>(s.step));
      break;
    case Backoff::kAge:
      // Postfix: the time already spent in the queue, so delays double without
      // an attempt counter; clamped below.
      d = std::max(Secs(s.age), Secs(p.min_delay));
      break;
    case Backoff::kIntervals:
      d = Secs(p.intervals[std::min<size_t>(s.step, p.intervals.size() - 1)]);
      break;
    case Backoff::kStages:
      d = StageBase(p, s, rng);
      break;
  }
  const double cap = Secs(p.max_delay);
  d = std::min(d, cap);
  switch (p.jitter) {
    case Jitter::kNone:
      break;
    case Jitter::kFull:
      d = rng.Uniform() * d;
      break;
    case Jitter::kEqual:
      d = d / 2 + rng.Uniform() * d / 2;
      break;
    case Jitter::kDecorrelated: {
      const double base = Secs(p.initial_delay);
      const double hi = std::max(base, 3 * Secs(s.last_delay));
      d = std::min(cap, base + rng.Uniform() * (hi - base));
      break;
    }
    case Jitter::kKumo: {
      const double mag = std::min(Secs(p.initial_delay) / 20.0, 60.0);
      d = d + rng.Uniform() * mag - mag / 2;
      break;
    }
    case Jitter::kProportional:
      d = d * (0.8 + 0.4 * rng.Uniform());
      break;
  }
  d = std::max(d, Secs(p.min_delay));
  return FromSecs(d);
}

RetryDecision NextRetry(const RetryPolicy& p, const RetryState& s, SplitMix64& rng) {
  RetryDecision out;
  if (p.max_attempts != 0 && s.failures >= p.max_attempts) {
    out.expire = true;
    return out;
  }
  out.delay = NextDelay(p, s, rng);

  const absl::Duration remaining = p.lifetime - s.age;
  if (out.delay >= remaining) {
    if (p.attempt_at_lifetime_end && remaining > absl::ZeroDuration()) {
      out.delay = remaining;
      out.final_attempt = true;
    } else {
      out.expire = true;
      out.delay = absl::ZeroDuration();
    }
  }
  return out;
}

std::vector<absl::Duration> Timeline(const RetryPolicy& policy, uint64_t seed, size_t max_points) {
  std::vector<absl::Duration> out;
  if (max_points == 0 || !policy.Validate().ok()) return out;
  SplitMix64 rng(seed);
  RetryState st;
  absl::Duration t = absl::ZeroDuration();
  out.push_back(t);
  while (out.size() < max_points) {
    st.age = t;
    RetryDecision d = NextRetry(policy, st, rng);
    if (d.expire) break;
    t += d.delay;
    out.push_back(t);
    st.last_delay = d.delay;
    ++st.failures;
    ++st.step;
  }
  return out;
}

}  // namespace mailretry
