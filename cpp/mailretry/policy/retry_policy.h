// File: policy/retry_policy.h
// -----------------------------------------------------------------------------
// When a message is tried again after a transient failure, and when it gives
// up. A RetryPolicy is plain data: initial delay × multiplier up to a cap, or
// Postfix's age-anchored delay, or an explicit interval list (Haraka), or
// Exim-style stages (fixed / geometric / randomized segments with cutoffs),
// plus jitter and the queue lifetime. NextRetry() is a pure function of the
// message's retry state and a caller-owned PRNG, so schedules replay exactly.
//
//   RetryPolicy p = RetryPolicy::Default();       // 15m, 30m, 1h, 2h, 4h, 4h, ... for 5 days
//   SplitMix64 rng(/*seed=*/42);
//   RetryDecision d = NextRetry(p, {.failures = 1, .age = absl::Minutes(1)}, rng);
//   // d.delay == absl::Minutes(15), d.expire == false
#ifndef MAILRETRY_POLICY_RETRY_POLICY_H_
#define MAILRETRY_POLICY_RETRY_POLICY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mailretry {

// Small, fast, seedable PRNG (Steele/Lea/Flood splitmix64). Its whole state is
// one uint64, so the engine saves it in snapshots and replays exactly.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed = 0) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  uint64_t state() const { return state_; }
  void set_state(uint64_t s) { state_ = s; }

 private:
  uint64_t state_;
};

// How a computed delay is randomized (AWS "Exponential Backoff and Jitter").
enum class Jitter : uint8_t {
  kNone,          // the delay as computed
  kFull,          // uniform in [0, d]  (never below RetryPolicy::min_delay)
  kEqual,         // d/2 + uniform in [0, d/2]
  kDecorrelated,  // min(cap, uniform in [initial, 3 × previous delay])
  kKumo,          // d ± ½·min(initial/20, 60 s), KumoMTA's default
  // d × uniform in [0.8, 1.2]: the engine's default. The mean delay stays d,
  // so the documented schedule (15m, 30m, 1h, …) holds on average, while
  // messages deferred together spread over ±20 % (gRPC's connection backoff
  // uses the same ±20 %) instead of coming back in lock-step.
  kProportional,
};
std::string_view JitterName(
    Jitter j);  // "none", "full", "equal", "decorrelated", "kumo", "proportional"
absl::StatusOr<Jitter> ParseJitter(std::string_view name);

// One segment of an Exim-style rule list. A stage applies while the message's
// age (time since submission) is at most `cutoff`; the first such stage wins.
struct RetryStage {
  enum class Kind : uint8_t {
    kFixed,       // Exim F: every `interval`
    kGeometric,   // Exim G: `interval` first, then previous gap × multiplier
    kRandomized,  // Exim H: like G, drawn in the upper half of [interval, gap × multiplier]
  };
  Kind kind = Kind::kFixed;
  absl::Duration cutoff = absl::Hours(2);
  absl::Duration interval = absl::Minutes(15);
  double multiplier = 1.5;  // kGeometric and kRandomized only
};

// How the base delay grows (before jitter and the cap).
enum class Backoff : uint8_t {
  kExponential,  // initial_delay × multiplier^(step)              (RFC 5321 / KumoMTA)
  kAge,          // clamp(message age, min_delay, max_delay)       (Postfix qmgr)
  kIntervals,    // intervals[step], the last one repeating        (Haraka temp_fail_intervals)
  kStages,       // `stages`, chosen by message age                (Exim retry rules)
};

struct RetryPolicy {
  Backoff backoff = Backoff::kExponential;
  absl::Duration initial_delay = absl::Minutes(15);
  double multiplier = 2.0;
  // Cap on one delay. The default 4 h follows the seed's 15m, 30m, 1h, 2h, 4h
  // progression; after it the message is tried every 4 h (about 30 attempts
  // in 5 days). absl::InfiniteDuration() = no cap (KumoMTA).
  absl::Duration max_delay = absl::Hours(4);
  // Floor on one delay, after jitter (Postfix minimal_backoff_time).
  absl::Duration min_delay = absl::ZeroDuration();
  std::vector<absl::Duration> intervals;  // Backoff::kIntervals
  std::vector<RetryStage> stages;         // Backoff::kStages
  Jitter jitter = Jitter::kProportional;
  // Queue lifetime, counted from submission (RFC 5321: at least 4-5 days).
  absl::Duration lifetime = absl::Hours(24 * 5);
  // Give up after this many failed attempts (0 = no limit; Haraka: 13).
  uint32_t max_attempts = 0;
  // What happens when the next retry would fall after the end of the lifetime:
  // true  = one last attempt exactly at the end of the lifetime (Postfix-like;
  //         every message is tried for its whole lifetime);
  // false = the message expires right away (KumoMTA: gives up early).
  bool attempt_at_lifetime_end = true;

  // The engine's default: 15 min doubling, capped at 4 h, 5-day lifetime,
  // one last attempt at the end, ±20 % proportional jitter.
  static RetryPolicy Default();
  // Postfix qmgr: delay = time in queue clamped to [300 s, 4000 s], 5 d.
  static RetryPolicy Postfix();
  // Exim's default rule "F,2h,15m; G,16h,1h,1.5; F,4d,6h", 4 d, gaps ≤ 24 h.
  static RetryPolicy Exim();
  // KumoMTA: 20 min × 2^n, no cap, max_age 7 d, ±30 s jitter, expires as soon
  // as the next retry would pass max_age (≈ 85 h with the defaults).
  static RetryPolicy KumoMta();
  // Haraka: 2^(n+5) s for n = 1..12 (64 s … 36.4 h), bounces (here: expires)
  // at the 13th temporary failure; no time limit (lifetime set to 30 d).
  static RetryPolicy Haraka();
  // By name: "default", "postfix", "exim", "kumomta", "haraka".
  static absl::StatusOr<RetryPolicy> Preset(std::string_view name);

  // InvalidArgument naming the first bad field: non-positive delays or
  // lifetime, multiplier < 1, min_delay > max_delay, empty interval list or
  // stage list for that backoff, stages with non-increasing cutoffs.
  absl::Status Validate() const;
};

// The retry state of one message, as the engine keeps it.
struct RetryState {
  uint32_t failures = 1;      // failed attempts so far, including this one (>= 1)
  uint32_t step = 0;          // backoff step; advances with each counted failure
  absl::Duration age;         // now - submission
  absl::Duration last_delay;  // previous delay (zero before the first retry)
};

// What to do after a transient failure.
struct RetryDecision {
  bool expire = false;                          // give up now (lifetime or attempts exhausted)
  absl::Duration delay = absl::ZeroDuration();  // when !expire: wait this long
  bool final_attempt = false;                   // the retry is the last one, at the lifetime end
};

// The delay before the next attempt from the backoff, cap, jitter and floor
// alone (no lifetime or max_attempts check). The engine uses it when a
// category override's schedule applies to a message whose lifetime was fixed
// by another policy.
absl::Duration NextDelay(const RetryPolicy& policy, const RetryState& state, SplitMix64& rng);

// The delay before the next attempt, or expiry. Consumes `rng` only when the
// policy has jitter (or randomized stages). `state.step` selects the base
// delay for kExponential and kIntervals.
RetryDecision NextRetry(const RetryPolicy& policy, const RetryState& state, SplitMix64& rng);

// Offsets from submission of every attempt of a message that always fails at
// once (attempt 1 at zero), ending with the attempt after which it expires.
// For comparing presets; at most `max_points` entries.
std::vector<absl::Duration> Timeline(const RetryPolicy& policy, uint64_t seed = 0,
                                     size_t max_points = 10000);

}  // namespace mailretry

#endif  // MAILRETRY_POLICY_RETRY_POLICY_H_
