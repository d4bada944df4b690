// File: internal/simulation.h
// -----------------------------------------------------------------------------
// One simulation run's state: the world built from the scenario (domains,
// sources, (domain, source) pairs, messages with their per-message record),
// the Engine under test, the sending-MTA gate, the attempts in flight and the
// Result being filled. Setup (internal/sim_setup.cc) builds the world; Run
// (sim.cc) is the event loop. Internal to the simulator: sim::Run is the API.
#ifndef MAILRETRY_SIM_INTERNAL_SIMULATION_H_
#define MAILRETRY_SIM_INTERNAL_SIMULATION_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailretry/common/internal/large_array.h"
#include "mailretry/common/internal/unix_ms.h"
#include "mailretry/engine/engine.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/reply/reply.h"
#include "mailretry/sim/internal/sim_receiver.h"
#include "mailretry/sim/internal/sim_sender.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim::internal {

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

// What the loop reads and writes on every attempt of a message, in one record
// (48 bytes) rather than eight arrays: at 1M messages each array access was a
// cache miss of its own. The Result's per-message arrays are filled from it
// at the end.
struct Msg {
  RecipientState rcpt;
  int64_t expiry_ms = std::numeric_limits<int64_t>::max();  // submit + lifetime (infer_expiry_)
  uint32_t domain = 0;
  uint16_t source = 0;
  uint16_t attempts = 0;
  uint16_t replies_4xx = 0;
  Outcome outcome = Outcome::kPending;
  bool final_attempt = false;  // leased for the attempt at the lifetime's end
  // Its current lease's Lease::slot, given back with the report (spares the
  // engine the lookup of the id). Fits in what was padding.
  uint32_t slot = std::numeric_limits<uint32_t>::max();
};
static_assert(sizeof(Msg) <= 48, "one Msg per message: keep it compact");

class Simulation : public GateHost {
 public:
  Simulation(const Scenario& s, const ProgressFn& progress) : s_(s), progress_(progress) {}

  absl::StatusOr<Result> Run(const Policy& policy);

  // GateHost.
  void StartAttempt(uint32_t msg, int64_t now_ms) override;
  void Defer(uint32_t msg, int64_t now_ms, LocalDeferral why) override;
  // Also true once the message's lifetime has passed: the engine expires
  // it silently then (message events are off for speed, see Run).
  bool Finished(uint32_t msg) override {
    const Msg& x = msgs_[msg];
    if (x.outcome != Outcome::kPending) return true;
    if (infer_expiry_ && now_ >= x.expiry_ms && !x.final_attempt) {
      Finish(msg, Outcome::kExpired, x.expiry_ms);
      return true;
    }
    return false;
  }

 private:
  absl::Status Setup();
  uint32_t ProfileIndex(const std::string& name);
  void Finish(uint32_t msg, Outcome o, int64_t t_ms);
  HourBin& Bin(int64_t t_ms) {
    const size_t b = static_cast<size_t>(std::max<int64_t>(t_ms, 0) / kMsPerHour);
    if (b >= r_.hours.size()) r_.hours.resize(b + 1);
    return r_.hours[b];
  }
  // A hint only: the record is wanted soon, by a load or a store. Both ends:
  // a 48-byte record spans two cache lines half the time.
  void PrefetchMsg(uint32_t msg) const {
    const char* p = reinterpret_cast<const char*>(msgs_.data() + msg);
    __builtin_prefetch(p, 1);
    __builtin_prefetch(p + sizeof(Msg) - 1, 1);
  }
  uint32_t Pair(uint32_t msg) const { return msgs_[msg].domain * nsources_ + msgs_[msg].source; }
  // Run-relative ms <-> absl::Time, at every event: inline (unix_ms.h) when
  // the start is a whole Unix millisecond (then exactly absl's answer).
  absl::Time T(int64_t ms) const {
    if (start_whole_ms_) return absl::FromUnixMillis(start_ms_ + ms);
    return s_.start + absl::Milliseconds(ms);
  }
  int64_t ToMs(absl::Time t) const {
    if (start_whole_ms_ && ::mailretry::internal::IsWholeUnixMillis(t)) {
      return ::mailretry::internal::UnixMillis(t) - start_ms_;
    }
    return absl::ToInt64Milliseconds(t - s_.start);
  }
  // Reports the msg's current lease with a reply interned with the engine.
  absl::Status Decide(uint32_t msg, int64_t now, ReplyHandle reply);
  void DrainEvents();

  const Scenario& s_;
  const ProgressFn& progress_;
  Result r_;
  uint64_t finished_ = 0;
  uint32_t nsources_ = 1;
  double receiver_ms_ = 0;
  absl::Status error_;

  std::vector<ReceiverProfile> profiles_;
  std::vector<ProfileMs> profile_ms_;        // [profile], its durations in ms
  std::vector<std::vector<Reply>> replies_;  // [profile][kind]
  std::vector<Reply> local_replies_;         // [LocalDeferral]
  // The same interned with the run's engine (Engine::InternReply).
  std::vector<std::vector<ReplyHandle>> reply_handles_;
  std::vector<ReplyHandle> local_handles_;
  absl::flat_hash_map<std::string, uint32_t> profile_ids_;
  std::vector<uint32_t> domain_profile_;  // profile index per domain
  absl::flat_hash_map<std::string, uint32_t> domain_ids_;
  absl::flat_hash_map<std::string, uint32_t> source_ids_;
  std::vector<int64_t> arrival_ms_;
  // On huge pages: touched at random (see common/internal/large_array.h).
  ::mailretry::internal::LargeVector<Msg> msgs_;
  std::vector<PairState> pairs_;

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<SenderGate> gate_;
  std::priority_queue<InFlight, std::vector<InFlight>, EndsLater> in_flight_;
  uint64_t seq_ = 0;
  SplitMix64 rng_{0};
  int64_t now_ = 0;
  bool infer_expiry_ = false;
  int64_t lifetime_ms_ = 0;
  // s_.start in Unix ms, when it is a whole one within the fast range.
  int64_t start_ms_ = 0;
  bool start_whole_ms_ = false;
};

}  // namespace mailretry::sim::internal

#endif  // MAILRETRY_SIM_INTERNAL_SIMULATION_H_
