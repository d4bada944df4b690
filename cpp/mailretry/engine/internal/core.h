// File: engine/internal/core.h
// -----------------------------------------------------------------------------
// The engine's behaviour over its state (state.h). A Core is a short-lived view
// of one Engine::Impl, made per call with Impl::mu held; it has no state of its
// own. Its methods are grouped by concept, one source file each:
//   messages.cc     storage, ready lists, the one timer per message, the clock
//   events.cc       events and the reply samples behind their evidence
//   destination.cc  suspension, concurrency and rate cuts, release on delivery
//   reactions.cc    user reaction rules and the built-in reactions by category
//   structural.cc   the 421 warning, structural detection and holding
//   schedule.cc     which schedule applies to a failure, and expiry
//   greylist.cc     learned greylist delays per destination domain
//   operations.cc   the bodies of Submit, TakeReady, Report, ...
// The small predicates that TakeReady and Report call per message are defined
// here so that they inline.
#ifndef MAILRETRY_ENGINE_INTERNAL_CORE_H_
#define MAILRETRY_ENGINE_INTERNAL_CORE_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mailretry/common/internal/strings.h"
#include "mailretry/common/internal/unix_ms.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/state.h"

namespace mailretry::internal {

// --- time units: the engine keeps times as Unix milliseconds ------------------

inline int64_t Ms(absl::Time t) { return UnixMillis(t); }  // inline (unix_ms.h)
inline absl::Time T(int64_t ms) { return absl::FromUnixMillis(ms); }
inline int64_t DurMs(absl::Duration d) {
  if (d >= absl::Hours(24 * 365 * 1000)) return int64_t{1} << 60;  // "forever", overflow-safe
  return absl::ToInt64Milliseconds(d);
}
inline int64_t SatAdd(int64_t a, int64_t b) {
  if (b > 0 && a > std::numeric_limits<int64_t>::max() - b)
    return std::numeric_limits<int64_t>::max();
  return a + b;
}
// Milliseconds between messages at rate `r`; 0 = unlimited.
inline int64_t IntervalMs(const RateLimit& r) {
  if (r.unlimited()) return 0;
  return std::max<int64_t>(1, DurMs(r.per) / r.messages);
}
inline std::optional<double> RatePerSecond(int64_t interval_ms) {
  if (interval_ms <= 0) return std::nullopt;
  return 1000.0 / static_cast<double>(interval_ms);
}
inline bool IsTimeValid(absl::Time t) {  // [epoch, epoch + 10,000 years)
  return InUnixRange(t, int64_t{24} * 3600 * 365 * 10000);
}

// --- compact reply facts kept per message --------------------------------------

inline uint32_t PackEnhanced(const std::optional<EnhancedCode>& e) {
  if (!e) return 0;
  return ((uint32_t{e->klass} << 20) | (uint32_t{e->subject} << 10) | e->detail) + 1;
}
inline std::optional<EnhancedCode> UnpackEnhanced(uint32_t v) {
  if (v == 0) return std::nullopt;
  --v;
  EnhancedCode e;
  e.klass = static_cast<uint8_t>(v >> 20);
  e.subject = static_cast<uint16_t>((v >> 10) & 1023);
  e.detail = static_cast<uint16_t>(v & 1023);
  return e;
}
inline std::string EnhancedString(const std::optional<EnhancedCode>& e) {
  return e ? e->ToString() : std::string();
}
// Categories that count as early structural evidence: the sender-side
// checks whose replies are conclusive. Reputation and DNSBL replies used to
// count too, and a temporary listing that cleared got a healthy destination
// flagged; they now wait for a full cycle.
inline bool IsEvidenceCategory(Category c) {
  return c == Category::kAuthSpfDkimDmarc || c == Category::kPtrRdns;
}
inline bool IsWeakEvidenceCategory(Category c) {
  return c == Category::kReputationBlock || c == Category::kDnsblListed;
}
inline bool IsConnectionLevel(Transport t) {
  return t == Transport::kConnectionRefused || t == Transport::kConnectTimeout ||
         t == Transport::kDnsFailure;
}
// Replies that say something about the destination as a whole (its rate,
// reputation standing, capacity, availability), not about one message.
inline bool IsDestinationLevel(Category c, Transport t) {
  return c == Category::kRateLimit || c == Category::kReputationThrottle ||
         c == Category::kServerBusyCapacity || c == Category::kMaintenanceShutdown ||
         c == Category::kTooManyConnections || IsConnectionLevel(t);
}

// The built-in greylisting schedule override's name (setup.cc); with it,
// destinations learn their greylist delay (greylist.cc).
inline constexpr std::string_view kBuiltinGreylisting = "builtin:greylisting";
inline constexpr std::string_view kBuiltinMailboxFull = "builtin:mailbox-full";
inline constexpr std::string_view kBuiltinConnection = "builtin:connection";
// How long a path must stay partly throttled before it counts as chronic.
inline constexpr int64_t kChronicThrottleMs = 60 * 60 * 1000;
inline constexpr std::string_view kBuiltinPartialThrottle = "builtin:partial-throttle";

class Core {
 public:
  explicit Core(Engine::Impl& impl) : m_(impl) {}

  // --- time -----------------------------------------------------------------
  absl::Status CheckNow(absl::Time now) const;
  absl::Status Advance(absl::Time now_t);

  // --- names and destinations -------------------------------------------------
  uint32_t InternName(std::string_view name);
  uint32_t DestFor(std::string_view domain, std::string_view source);
  const DestinationPolicy& Policy(const DestState& d) const { return m_.dest_policies[d.policy]; }

  const RetryPolicy& LifetimePolicy(const DestState& d) const {
    return d.lifetime_schedule >= 0 ? *m_.schedules[d.lifetime_schedule].policy : m_.config.retry;
  }
  int64_t ExpiresMs(const MsgRec& r) const {
    return SatAdd(r.submitted_ms, m_.dests[r.dest].lifetime_ms);
  }
  // When a message waiting in a ready list gives up: at its lifetime end, or,
  // for its final attempt (scheduled at the end), one lease timeout later.
  int64_t ReadyDeadline(const MsgRec& r) const {
    const int64_t e = ExpiresMs(r);
    return (r.flags & internal::kFlagFinal) ? SatAdd(e, m_.lease_timeout_ms) : e;
  }
  uint32_t EffectiveConcurrency(const DestState& d, int64_t now) const {
    if (d.conc_override_until > now) return std::min(d.concurrency, d.conc_override);
    return d.concurrency;
  }
  // Milliseconds between messages now in force; 0 = unlimited.
  int64_t EffectiveIntervalMs(const DestState& d, int64_t now, bool with_override = true) const {
    const DestinationPolicy& p = Policy(d);
    const int64_t base = IntervalMs(p.rate);
    int64_t iv = base;
    if (d.cut_interval_ms > 0) {
      const int64_t quiet = std::max<int64_t>(1, DurMs(p.rate_quiet_period));
      const int64_t steps = (now - d.last_cut) / quiet;
      const int64_t c = steps >= 62 ? 0 : (d.cut_interval_ms >> steps);
      if (base > 0) {
        iv = std::max(base, c);
      } else {
        // No configured ceiling: lift the cut once the rate has doubled three
        // times past the cut-to rate.
        iv = (c * 8 <= IntervalMs(p.unlimited_cut_to)) ? 0 : c;
      }
    }
    if (with_override && d.rate_override_until > now) iv = std::max(iv, d.rate_override_ms);
    return iv;
  }
  // 0 if a message may go now; kNever if only a report can unblock it; else
  // the time at which it may.
  int64_t BlockedUntil(const DestState& d, int64_t now) const {
    if (HalfOpen(d)) {
      // One probe per suspend_probe_interval until one is delivered.
      if (d.probe_in_flight) return kNever;
      if (d.next_probe > now) return d.next_probe;
      return ProbeGate(d, now);
    }
    if (d.suspended_until > now) return d.suspended_until;
    if (d.held) {
      if (d.probe_in_flight) return kNever;
      if (d.next_probe > now) return d.next_probe;
    }
    if (d.in_flight >= EffectiveConcurrency(d, now)) {
      if (d.conc_override_until > now && d.in_flight < d.concurrency) return d.conc_override_until;
      return kNever;
    }
    // Rate: messages are spaced one interval apart (tat: the theoretical
    // time of the next one). Destination wake-ups are exact to the
    // millisecond (setup.cc), so the spacing holds on every backend.
    const int64_t iv = EffectiveIntervalMs(d, now);
    if (iv > 0 && d.tat != kNoTime && d.tat > now) return d.tat;
    return 0;
  }
  // 0, or when the domain's next pooled half-open probe may go (see
  // Impl::domain_probe_owner). `d` is half-open.
  int64_t ProbeGate(const DestState& d, int64_t now) const {
    auto it = m_.domain_probe_owner.find(d.domain_id);
    if (it == m_.domain_probe_owner.end()) return 0;
    const DestState& o = m_.dests[it->second];
    if (&o == &d || !HalfOpen(o)) return 0;
    if (o.probe_in_flight) return SatAdd(now, DurMs(Policy(d).suspend_probe_interval));
    return o.next_probe > now ? o.next_probe : 0;
  }
  bool Probing(const DestState& d) const {
    return Policy(d).suspend_probe_interval > absl::ZeroDuration();
  }
  // Suspended by a built-in reaction with probing on, and not held (a held
  // destination's own probes take over). A user rule's suspend_for is a
  // fixed pause, never half-open.
  bool HalfOpen(const DestState& d) const { return d.half_open && !d.held; }
  // Messages of a destination not yet finished, in any state.
  static uint64_t Pending(const DestState& d) {
    return uint64_t{d.first_count} + d.retry_count + d.scheduled_count + d.in_flight;
  }
  void ArmWake(uint32_t di, int64_t t);
  void AddToRing(uint32_t di);

  // --- events -------------------------------------------------------------------
  Event& Emit(EventKind kind, int64_t t, const DestState& d);
  Event* EmitMsg(EventKind kind, int64_t t, const MsgRec& r);

  // --- message storage ---------------------------------------------------------
  uint32_t AllocSlot();
  void FreeSlot(uint32_t s);
  // FreeSlot when the caller holds s's position in the id index (Report
  // found it there): erasing by position spares hashing the id again.
  void FreeSlot(uint32_t s, IdIndex::const_iterator pos);
  void PushReady(uint32_t s, bool front = false);
  void Unlink(uint32_t s);
  void SetTimer(uint32_t s, int64_t due, bool pending);
  // True while a lease deadline entry names its message's current lease
  // (lease_deadlines.h): leased, same id, attempt and deadline.
  bool LeaseCurrent(const LeaseDeadlines::Entry& e) const {
    const MsgRec& r = m_.msgs[e.slot];
    return r.state == MsgState::kLeased && r.id == e.id && r.attempts == e.attempt &&
           r.timer_ms == e.due_ms;
  }
  // Drops stale entries from the front of the lease FIFO.
  void DropStaleLeases() const {
    while (!m_.leases.empty() && !LeaseCurrent(m_.leases.front())) m_.leases.pop_front();
  }
  // Appends to `out` the slots whose lease deadline is due at `now`.
  void PopDueLeases(int64_t now, std::vector<Slot>* out) {
    for (;;) {
      DropStaleLeases();
      if (m_.leases.empty() || m_.leases.front().fire_ms > now) return;
      out->push_back(m_.leases.front().slot);
      m_.leases.pop_front();
    }
  }
  // Puts a message whose time has come into its destination's ready list;
  // its timer becomes its ready deadline.
  void MakeReady(uint32_t s, bool timer_pending);

  // --- timers ------------------------------------------------------------------
  void OnDestWake(uint32_t di, int64_t t);
  void OnMsgTimer(uint32_t s, int64_t t);
  void ReleaseLease(MsgRec& r, DestState& d);

  // --- replies ------------------------------------------------------------------
  std::string LastReplyText(const MsgRec& r) const;
  uint8_t AddSample(DestState& d, const std::string& text);
  void RecordReply(MsgRec& r, DestState& d, const Reply& reply, const Classification& c,
                   const std::string& text);

  // --- destination reactions --------------------------------------------------------
  void RollWindow(DestState& d, int64_t now);
  std::vector<CategoryCount> DominantCategories(const DestState& d, size_t max) const;
  void FillEvidence(Event& e, const DestState& d);
  // `extend`: a failed probe escalates a suspension already in force.
  void Suspend(uint32_t di, int64_t now, std::optional<int64_t> fixed_ms, Category cat,
               std::string_view rule, const std::string& text, bool extend = false);
  // A half-open pair of `di`'s domain takes a probe: the domain's other
  // half-open pairs wait one interval.
  void NoteProbeTaken(uint32_t di, int64_t now);
  // `di`'s probe was delivered: the domain's other half-open pairs probe now
  // (the provider is back for one source; each still needs its own success).
  void WakeSiblingProbes(uint32_t di, int64_t now);
  // A probe was delivered: end the suspension and ramp concurrency back up.
  void ReleaseSuspension(uint32_t di, int64_t now);
  void EmitThrottled(DestState& d, int64_t now, Category cat, std::string_view rule,
                     const std::string& text, std::string detail, std::optional<int64_t> until);
  // Every change of a destination's own concurrency goes through here, so
  // that Engine::LimitsGeneration moves with it.
  void SetConcurrency(DestState& d, uint32_t concurrency) {
    if (concurrency != d.concurrency) ++m_.limits_generation;
    d.concurrency = concurrency;
  }
  void CutConcurrency(DestState& d, int64_t now, int64_t attempt_started, Category cat,
                      std::string_view rule, const std::string& text);
  void CutRate(DestState& d, int64_t now, int64_t attempt_started, Category cat,
               std::string_view rule, const std::string& text);
  bool ReactionMatches(const internal::CompiledReaction& cr, const Reply& reply,
                       const Classification& c);
  // `probe`: the reply is a suspended destination's probe.
  // The partial-throttle window (DestinationPolicy::partial_throttle_window):
  // record one attempt's outcome, and whether the path has been partly
  // throttled (some attempts refused, some not) for kChronicThrottleMs.
  void NoteThrottleBit(DestState& d, int64_t now, bool throttled);
  bool PartlyThrottled(const DestState& d, int64_t now) const;
  void ApplyReactions(uint32_t di, int64_t now, int64_t attempt_started, const Reply& reply,
                      const Classification& c, const std::string& text, bool probe = false);
  void NoteAttempt(DestState& d, int64_t now, bool is_421);
  void CheckWarning(DestState& d, int64_t now);
  // Counts a failing message towards the structural rules and raises
  // structural_failure when one of them holds.
  void StructuralEvidence(uint32_t di, MsgRec& r, Category cat, int64_t now, bool expiring);
  void CheckStructural(uint32_t di, int64_t now);
  // The wait before a held destination's next probe; counts this probe.
  int64_t HeldProbeIntervalMs(DestState& d);
  // Counts a PTR / SPF-DKIM-DMARC reply to this pair and to its source.
  void NoteStrongEvidence(DestState& d, Category cat, int64_t now);

  // --- outcomes -------------------------------------------------------------------------
  void Expire(uint32_t s, int64_t t, std::string_view why);
  void OnDelivered(uint32_t di, int64_t now);
  // Which schedule applies to this failure: category/transport overrides
  // first (user ones before built-ins), then destination-only ones.
  const ScheduleOverride* FindOverride(const DestState& d, const Reply& reply, Category cat) const;
  // The next retry for a transiently failed message, or expiry (nullopt).
  std::optional<int64_t> NextAttempt(MsgRec& r, const DestState& d, const Reply& reply,
                                     Category cat, int64_t now, std::string_view* schedule_name);
  // A message refused for a destination-level reason while its destination
  // is suspended with probing: it waits in the destination's queue for the
  // release (now, without advancing its backoff), or expires (nullopt).
  std::optional<int64_t> WaitForRelease(MsgRec& r, int64_t now);

  // --- learned greylist delays (greylist.cc) -----------------------------------------
  // The wait before a greylisted message's next retry, from its destination
  // domain's learned delay (and the refused wait this reply adds to it), or
  // nullopt when learning does not apply (then the override's fixed delay).
  std::optional<int64_t> LearnedGreylistDelay(MsgRec& r, const DestState& d, int64_t now,
                                              int64_t start_ms, std::string_view* schedule_name);
  // A delivery: if the message's last failure was greylisting, its wait
  // since the first greylist deferral worked.
  void NoteGreylistDelivery(const MsgRec& r, int64_t now);
  // Greylisting recognised by its behaviour instead of its wording: a domain
  // whose messages are (nearly) all deferred at their first attempt with an
  // unknown-transient or server-busy reply, and then accepted on a retry.
  // Returns `c` with the greylisting category when this reply is such a
  // deferral of a message's first contact there; else `c` unchanged. Marks
  // the message for NoteFirstContact.
  Classification FirstContactGreylisting(MsgRec& r, const DestState& d, const Reply& reply,
                                         const Classification& c);
  // A delivery's part in the first-contact pattern of its domain.
  void NoteFirstContact(const MsgRec& r, const DestState& d);
  // Moves a domain's learned delay from `old_upper` to `new_upper` in the
  // histogram of learned delays (kNever = not learned).
  void CountLearnedGreylist(int64_t old_upper, int64_t new_upper);
  // The next wait for a domain that has learned nothing yet, above the
  // longest wait already refused (`above`): the median of the other domains'
  // learned delays, then their 90th percentile, once a few have learned
  // one; nullopt when there are too few or `above` is past both (then the
  // override's walk: 5 min, its multiples, doubling).
  std::optional<int64_t> GreylistPrior(int64_t above) const;

  // --- learned full-mailbox spacing (mailbox_full.cc) --------------------------------
  // A delivery: if the message's last failure was a full mailbox, its age is
  // one more sample of how long full mailboxes last at its domain.
  void NoteFullMailboxDelivery(const MsgRec& r, int64_t now);
  // The schedule for a full-mailbox retry at `d`, written into `out` from the
  // override's own policy `base`: retries a third of the domain's learned
  // clearing time apart while the message is younger than twice that time.
  // False while the domain has learned too little, or past that age (then
  // `base` applies).
  bool LearnedFullMailboxPolicy(const MsgRec& r, const DestState& d, int64_t now,
                                const RetryPolicy& base, RetryPolicy* out) const;

  // --- API bodies (operations.cc)
  // ----------------------------------------------------------------------
  absl::Status SubmitOne(uint64_t id, uint32_t di, int64_t now, std::optional<int64_t> not_before);
  absl::StatusOr<std::string_view> CheckDestination(std::string_view destination,
                                                    std::string& storage) const;
  absl::Status Submit(uint64_t id, std::string_view destination, absl::Time now_t,
                      std::string_view source, std::optional<absl::Time> not_before);
  absl::Status SubmitMany(absl::Span<const uint64_t> ids, absl::Span<const uint32_t> dest_idx,
                          absl::Span<const std::string> dest_names, absl::Time now_t,
                          absl::Span<const uint32_t> src_idx,
                          absl::Span<const std::string> src_names);
  // Replaces `out`'s contents with the leases (empty on error).
  absl::Status TakeReady(absl::Time now_t, size_t limit, std::vector<Lease>& out);
  // `attempt` names the lease (kUnfenced: whichever is current).
  // `parsed`: `reply` is parsed->reply, from the reply cache (a report by
  // text), whose memo spares the lookup of its facts.
  // `hint`: the lease's slot (SlotHint), used only if it holds this id.
  absl::StatusOr<Decision> Report(uint64_t id, uint32_t attempt, int64_t now, const Reply& reply,
                                  const ReplyCache::Parsed* parsed = nullptr, SlotHint hint = {});
  std::optional<absl::Time> NextWakeup() const;
  DestinationInfo Info(uint32_t di) const;

 private:
  Engine::Impl& m_;
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_INTERNAL_CORE_H_
