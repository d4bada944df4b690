// File: internal/sim_sender.h
// -----------------------------------------------------------------------------
// The sending-MTA models the simulator puts between the engine's schedule and
// the receivers for the presets. The engine decides when each message is due
// (the preset's retry schedule); the gate decides what the real MTA does with
// a due message: start an attempt now, keep it waiting in its active/ready
// queue (concurrency window, rate pacing, queue retry mode), or defer it
// without contacting the receiver (Postfix dead destination, Exim "retry time
// not reached", KumoMTA suspension). Feedback from each attempt's outcome
// moves the gate's per-destination state, as the MTA's own scheduler does.
// State is per (receiving domain, source) pair.
#ifndef MAILRETRY_SIM_INTERNAL_SIM_SENDER_H_
#define MAILRETRY_SIM_INTERNAL_SIM_SENDER_H_

#include <cstdint>
#include <memory>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "mailretry/common/internal/large_array.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim::internal {

// Why the MTA deferred a message without an attempt.
enum class LocalDeferral : uint8_t {
  kDeadDestination,    // Postfix: "delivery temporarily suspended"
  kHostRetryTime,      // Exim: "retry time not reached for any host"
  kSuspended,          // KumoMTA: ready queue suspended by automation
  kNoAnswerFromHosts,  // KumoMTA: consecutive connection failures
};
inline constexpr int kNumLocalDeferrals = 4;
// The reply text the sim reports to the engine for a local deferral.
std::string_view LocalDeferralText(LocalDeferral d);

// What the gate asks of the simulation.
class GateHost {
 public:
  virtual ~GateHost() = default;
  virtual void StartAttempt(uint32_t msg, int64_t now_ms) = 0;
  virtual void Defer(uint32_t msg, int64_t now_ms, LocalDeferral why) = 0;
  // The engine already ended the message (it expired while waiting).
  virtual bool Finished(uint32_t msg) = 0;
};

// A KumoMTA traffic-shaping automation rule, or a PowerMTA backoff pattern,
// matched against the reply kinds of each profile beforehand.
struct AutomationRule {
  std::string name;
  std::string provider;    // "" = every destination ("default" block)
  std::string regex;       // RE2, case-insensitive, unanchored
  uint32_t threshold = 1;  // matches per hour before it fires
  absl::Duration suspend = absl::ZeroDuration();
  uint32_t rate_messages = 0;  // SetConfig max_message_rate (0 = unchanged)
  absl::Duration rate_per = absl::Minutes(1);
  uint32_t connection_limit = 0;  // SetConfig connection_limit (0 = unchanged)
  absl::Duration duration = absl::Hours(1);
};

class SenderGate {
 public:
  // `pair_profile[pair]` = the receiving profile of each pair; `profiles`
  // index it. `rng_seed` seeds Exim's randomized host gaps.
  SenderGate(SenderModel model, const std::vector<ReceiverProfile>& profiles,
             std::vector<uint32_t> pair_profile, uint64_t rng_seed);
  ~SenderGate();

  SenderModel model() const { return model_; }
  // A leased (due) message for `pair`.
  void Offer(GateHost& host, uint32_t pair, uint32_t msg, int64_t now);
  // An attempt on `pair` ended with `kind`.
  void OnResult(GateHost& host, uint32_t pair, ReplyKind kind, int64_t now);
  // Wakes pairs whose timers (rate pacing, queue retry, end of dead status) are due.
  void Advance(GateHost& host, int64_t now);
  // Earliest gate timer, or INT64_MAX.
  int64_t NextWake() const;
  // Messages waiting in the gate (leased by the engine, not yet tried).
  uint64_t waiting() const { return waiting_total_; }
  // Pairs whose gate holds traffic back right now (dead, suspended, retry mode).
  bool Blocked(uint32_t pair, int64_t now) const;

 private:
  struct PairGate;
  void Pump(GateHost& host, uint32_t pair, int64_t now);
  void Flush(GateHost& host, uint32_t pair, int64_t now, LocalDeferral why);
  void Wake(uint32_t pair, int64_t at);
  void Push(uint32_t pair, uint32_t msg);
  uint32_t Pop(uint32_t pair);

  SenderModel model_;
  std::vector<uint32_t> pair_profile_;
  std::vector<PairGate> pairs_;
  // Intrusive FIFO links, per message (huge pages).
  ::mailretry::internal::LargeVector<uint32_t> next_;
  uint64_t waiting_total_ = 0;
  // Per profile: base shaping (KumoMTA) and which rules each reply kind matches.
  std::vector<uint32_t> base_connections_;
  std::vector<int64_t> base_interval_ms_;
  std::vector<uint32_t> connection_failure_limit_;
  std::vector<AutomationRule> rules_;
  std::vector<std::vector<std::vector<uint16_t>>> matches_;  // [profile][kind] -> rules
  std::priority_queue<std::pair<int64_t, uint32_t>, std::vector<std::pair<int64_t, uint32_t>>,
                      std::greater<>>
      wakes_;
  RetryPolicy exim_hosts_;
  SplitMix64 rng_;
};

// The rules each model uses (for ExplainPresets and tests).
std::vector<AutomationRule> KumoAutomationRules();
std::vector<AutomationRule> PowerMtaBackoffPatterns();

}  // namespace mailretry::sim::internal

#endif  // MAILRETRY_SIM_INTERNAL_SIM_SENDER_H_
