// File: engine/engine.h
// -----------------------------------------------------------------------------
// The retry engine: it owns the pending messages and decides when each one is
// tried again, how hard each destination (source × domain) may be pushed, when
// a message expires, and when a destination's failures look structural
// (reputation, authentication, filtering) rather than transient.
//
// The caller drives it with explicit time and pulls work out of it:
//
//   absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Create(EngineConfig{}, /*seed=*/7);
//   (*e)->Submit(42, "example.com", now).IgnoreError();
//   for (const Lease& l : *(*e)->TakeReady(now, 100)) {
//     absl::StatusOr<Decision> d = (*e)->ReportText(l, now, "250 2.0.0 OK");
//   }
//   std::vector<Event> events = (*e)->DrainEvents();
//
// Nothing reads a clock; randomness comes from a PRNG seeded at Create and
// saved in snapshots, so the same calls with the same seed give the same
// decisions and events. Every method is safe to call from several threads
// (one absl::Mutex inside).
//
// Time: the engine's clock is the latest `now` it was given, kept in whole
// milliseconds (a `now` is truncated to its millisecond). Threads reading a
// wall clock reach the engine's lock in an order slightly different from the
// order they read the clock, so a `now` less than kMaxClockSkew (1 s) behind
// the engine's clock is taken as the engine's clock (counted in
// EngineStats::clamped_times); an earlier one is InvalidArgument and changes
// nothing.
#ifndef MAILRETRY_ENGINE_ENGINE_H_
#define MAILRETRY_ENGINE_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/engine/durable/journal.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/reply/reply.h"
#include "mailretry/timers/timer_queue.h"

namespace mailretry {

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

// A destination pattern: "" or "*" = any, "example.com" = exactly that domain,
// "*.example.com" = any subdomain of example.com (not example.com itself).
// Matching is ASCII case-insensitive.

// Replaces the retry schedule for some destinations and/or some reply
// categories / transport outcomes. The first matching override wins.
struct ScheduleOverride {
  std::string name;                   // for rule names in decisions and errors
  std::string destination;            // pattern, see above
  std::vector<Category> categories;   // empty = any category
  std::vector<Transport> transports;  // empty = any (Transport::kReply = a real reply)
  // A whole schedule for matching messages. When it matches on destination
  // alone (no categories/transports), it also sets those messages' lifetime.
  std::optional<RetryPolicy> policy;
  // Instead of `policy`: retry after `fixed_delay` (or, if unset, after the
  // message's current delay) WITHOUT advancing its backoff, for at most
  // `max_consecutive` times in a row (0 = no limit); after that the message's
  // normal schedule applies. Greylisting: fixed_delay = 5 min, max 3.
  std::optional<absl::Duration> fixed_delay;
  bool advance_backoff = true;  // false: this failure doesn't burn the schedule
  uint32_t max_consecutive = 0;
};

// Messages per interval; messages == 0 means unlimited. Enforced per
// destination by spacing messages one interval (per / messages, in whole
// milliseconds) apart, with no burst; destination wake-ups are exact to the
// millisecond on every timer backend, so a destination sends at its rate
// (600/min: one message every 100 ms) whatever timer_resolution is.
struct RateLimit {
  uint32_t messages = 0;
  absl::Duration per = absl::Minutes(1);
  bool unlimited() const { return messages == 0; }
};

// Limits and reactions for the destinations (source × domain) matching a pattern.
struct DestinationPolicy {
  std::string destination;  // pattern; the last matching entry of EngineConfig::destinations wins
  std::string source;       // "" or "*" = any source, else exact

  // Concurrency (messages in flight at once). Starts at `initial_concurrency`;
  // a too_many_connections reply cuts it to min(current/2, cut_concurrency_to)
  // (at least min_concurrency); each run of `raise_concurrency_after`
  // consecutive deliveries without a throttling reply raises it by one, up to
  // max_concurrency (and, for concurrency_ceiling_hold after a cut, up to one
  // below the level that was refused).
  uint32_t initial_concurrency = 5;
  uint32_t max_concurrency = 20;
  uint32_t min_concurrency = 1;
  uint32_t cut_concurrency_to = 2;
  uint32_t raise_concurrency_after = 20;
  // After a too_many_connections cut, raises stop one below the level that was
  // refused, for this long; then probing upward resumes. Zero = no memory.
  absl::Duration concurrency_ceiling_hold = absl::Hours(1);

  // Rate. A rate_limit / reputation_throttle reply halves the current rate
  // (an unlimited rate is cut to `unlimited_cut_to`), never below `min_rate`.
  // After `rate_quiet_period` without another such reply the rate doubles,
  // and again every quiet period, until it is back at `rate`. An unlimited
  // `unlimited_cut_to` (messages 0) leaves an unlimited rate uncut (for a
  // caller that paces sending itself, as the simulator's MTA presets do).
  RateLimit rate;  // configured ceiling
  RateLimit unlimited_cut_to{60, absl::Minutes(1)};
  RateLimit min_rate{1, absl::Minutes(1)};
  absl::Duration rate_quiet_period = absl::Minutes(15);

  // Suspension. rate_limit, reputation_throttle, server_busy_capacity and
  // maintenance_shutdown replies (and `connection_failures_to_suspend`
  // consecutive connection-level failures) suspend the destination for
  // suspend_base × suspend_multiplier^(repeats), at most suspend_max. A reply
  // that arrives while already suspended does not count as a repeat. The
  // repeat count resets on the next delivery. suspend_base 0: these replies
  // never suspend (for a caller that models suspensions itself, as the
  // simulator's MTA presets do; a reaction rule's suspend_for still applies).
  absl::Duration suspend_base = absl::Minutes(5);
  double suspend_multiplier = 2.0;
  absl::Duration suspend_max = absl::Hours(4);
  uint32_t connection_failures_to_suspend = 5;  // 0 = never
  // Half-open probing (a circuit breaker's half-open state). While suspended,
  // one message (a probe) goes out every `suspend_probe_interval`: a delivery
  // ends the suspension and concurrency ramps back from min_concurrency (+1
  // per delivery up to where it was); a probe refused for a destination-level
  // reason (rate, reputation, capacity, maintenance, connection failure)
  // extends the suspension to its next repeat. Messages refused for such a
  // reason while the destination is suspended wait in its queue for the
  // release instead of walking their own backoff, so the first delivery after
  // a block ends comes at most one probe interval later. Zero = no probes:
  // the suspension simply runs out (the behaviour before 0.3).
  absl::Duration suspend_probe_interval = absl::Minutes(5);
  // server_busy_capacity replies suspend only when at least
  // `capacity_suspend_min` of the last `capacity_window` attempts (at most
  // 64) got one: an isolated "server busy" is noise that the message's own
  // backoff handles, a run of them is an overloaded receiver. A window of 0
  // suspends on every such reply (the behaviour before 0.3).
  uint32_t capacity_window = 20;
  uint32_t capacity_suspend_min = 3;
  // Chronic partial throttling: when reputation_throttle replies have been
  // mixed with other outcomes (between 1 in 16 and 3 in 4 of the last 64
  // attempts) for an hour, the path is partly throttled all day by its
  // standing, and the share refused does not depend on the rate: such a
  // reply then neither cuts the rate nor suspends (either held back the many
  // messages that would have gone through: held-out set 5, p95 38 h against
  // Postfix's 0.17 h), and the refused message retries at 5 min, twice
  // without burning its backoff. A run above 3 in 4 ends the spell and the
  // full reaction applies again. false (or capacity_window 0) = every such
  // reply cuts and suspends (the behaviour before 0.5).
  bool partial_throttle_window = true;
  // Learned greylist delays (with the built-in greylisting override). Each
  // destination domain's delay is learned from its own messages, pooled over
  // sources: a greylisted retry that fails after waiting t since the
  // message's first greylist deferral says the delay is longer than t, a
  // delivery right after a greylist deferral says it is at most t. Retries go
  // at the shortest wait known to work; an unlearned domain starts at the
  // override's 5 min (then 10, 15, then doubling the wait), and one retry per
  // message may bisect a wide gap between the bounds. false = the fixed
  // override only (the behaviour before 0.3).
  bool learn_greylist_delay = true;
  // An isolated connection failure (refused, timed out, lost mid-transaction,
  // DNS) is retried at 5 min (at most the schedule's first delay), twice in a
  // row, without burning the backoff; then at the message's current step.
  // false = always the current step (the behaviour before 0.4).
  bool quick_connection_retry = true;
  // Full-mailbox retries (with the built-in override) go a third of the
  // domain's learned clearing time apart (pooled over sources, from the age
  // of its full-mailbox messages at delivery, after three of them) until the
  // message is twice that old; then the override's 1 h, 2 h, 4 h. false =
  // the fixed override only (the behaviour before 0.4).
  bool learn_full_mailbox = true;
};

// A reaction to a reply pattern (KumoMTA traffic-shaping automation, PowerMTA
// backoff mode). Matchers use the classifier's UserRule conventions; every
// non-empty matcher must match. When a reaction rule matches a reply, the
// built-in category reactions (DestinationPolicy) are skipped for that reply.
struct ReactionRule {
  std::string name;        // required, unique
  std::string text_regex;  // RE2, unanchored, case-insensitive
  // Code patterns: the one grammar of classify/internal/code_pattern.h, as for
  // the classifier's user rules (lists, ranges and wildcards).
  std::string enhanced_pattern;      // "4.7.28", "4.7.*", "5.7.606-649", "4.7.26,4.7.28"
  std::string code_pattern;          // "421", "4xx", "5*x", "450-452", "421,45x"
  std::string destination;           // destination pattern
  std::vector<Category> categories;  // empty = any
  // Fire only after `threshold` matches within `window` (1 = on every match).
  uint32_t threshold = 1;
  absl::Duration window = absl::Hours(1);
  // What happens when it fires (at least one must be set).
  std::optional<absl::Duration> suspend_for;
  std::optional<uint32_t> set_concurrency;  // ceiling for `duration`
  std::optional<RateLimit> set_rate;        // ceiling for `duration`
  absl::Duration duration = absl::Hours(1);
};

struct StructuralConfig {
  bool enabled = true;
  // destination_warning: at least `warning_421s` 421 replies within
  // `warning_window` that are at least `warning_ratio` of the attempts
  // reported in that window.
  uint32_t warning_421s = 20;
  double warning_ratio = 0.5;
  absl::Duration warning_window = absl::Hours(1);
  // structural_failure, full-cycle rule: `cycle_messages` distinct messages
  // each failed `cycle_failures` times (0 = derived from `retry`: the schedule
  // grew to its cap and the attempt after the capped wait failed too; with the
  // default 15m, 30m, 1h, 2h, 4h that is 6 failures, about 7.75 h) and no
  // message to the destination was delivered since it was submitted. A message
  // that expires counts too.
  uint32_t cycle_messages = 3;
  uint32_t cycle_failures = 0;
  // structural_failure, early rule: reputation_block, dnsbl_listed,
  // auth_spf_dkim_dmarc or ptr_rdns replies from at least `evidence_messages`
  // distinct messages, spanning at least `evidence_span`, no delivery since.
  uint32_t evidence_messages = 20;
  absl::Duration evidence_span = absl::Hours(2);
  // structural_failure, strong rule: a PTR or SPF/DKIM/DMARC reply is the
  // sender's fault (its IP's reverse DNS, its domain's authentication) and
  // decides without a full cycle once it is confirmed: on `strong_attempts`
  // attempts to this destination at least `strong_span` apart with no
  // delivery between (a random PTR reply amid deliveries is noise), or at
  // `sender_destinations` destinations for the same source (pooled: the fault
  // shows wherever it is checked). 0 = off. Reputation and DNSBL replies are
  // weaker (a listing that clears is not structural) and wait for the
  // full-cycle rule.
  uint32_t strong_attempts = 2;
  absl::Duration strong_span = absl::Minutes(10);
  uint32_t sender_destinations = 2;
  // Let reputation_block and dnsbl_listed replies count towards the early
  // rule too (the behaviour before 0.3).
  bool early_weak_evidence = false;
  // After structural_failure: hold the destination (new and due messages wait)
  // and let one probe message out per `probe_interval`; a delivery clears it.
  bool hold = true;
  absl::Duration probe_interval = absl::Minutes(30);
  // Each probe of a hold that is not delivered multiplies the wait before the
  // next one by `probe_backoff`, up to `probe_interval_max`: a sender-side
  // fault (a missing PTR record) is rarely fixed within the hour, and a probe
  // every 30 min for the messages' 5-day lifetime cost 240 refusals per held
  // destination. 1.0 = a fixed interval (the behaviour before 0.3).
  double probe_backoff = 2.0;
  absl::Duration probe_interval_max = absl::Hours(12);
};

struct EngineConfig {
  RetryPolicy retry = RetryPolicy::Default();
  // Checked in order before `retry`. Unless `builtin_overrides` is false,
  // three built-ins are appended: greylisting → 5 min without advancing (3
  // times in a row at most); connection_refused / connect_timeout /
  // dns_failure → the current delay without advancing the backoff;
  // mailbox_full → `retry` with its initial delay raised to at least 1 h.
  std::vector<ScheduleOverride> overrides;
  bool builtin_overrides = true;
  DestinationPolicy destination_defaults;
  std::vector<DestinationPolicy> destinations;
  std::vector<ReactionRule> reactions;
  StructuralConfig structural;
  std::vector<UserRule> classifier_rules;  // passed to Classifier::Create
  // A lease not reported within this time returns its message to the schedule.
  // absl::InfiniteDuration(): leases never expire (for a caller that reports
  // every lease, as the simulator does); no deadline is kept for them.
  absl::Duration lease_timeout = absl::Minutes(10);
  TimerBackend backend = TimerBackend::kWheel;
  // Message due times (retries, expiries, lease deadlines) are honoured at
  // most one step late (the wheel's granularity). Destination wake-ups
  // (rates, suspensions, probes) are always exact to the millisecond.
  absl::Duration timer_resolution = absl::Seconds(1);
  // Per-message events (delivered/deferred/bounced/expired/lease_expired);
  // destination events are always recorded.
  bool message_events = true;
  // Undrained events beyond this are dropped oldest-first (counted in Stats).
  size_t max_buffered_events = 1 << 20;

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

// Where the engine keeps a message (Lease::slot): given back with a report it
// spares the engine the lookup of the id in its index, a random access into a
// table as large as the queue. Only a hint: the engine uses it when the record
// there is pending and holds that very id (ids are unique among pending
// messages, so that record is the message), and otherwise looks the id up as
// usual. A stale or made-up hint costs the lookup, never a wrong report.
struct SlotHint {
  uint32_t slot = std::numeric_limits<uint32_t>::max();  // max: none
};

// A reply registered once with Engine::InternReply and then reported by this
// handle: the engine keeps the reply and remembers its classification, so a
// report costs no hashing of the reply text. For senders that report the same
// few replies many times (the simulator). Valid for the Engine's life.
struct ReplyHandle {
  uint32_t index = std::numeric_limits<uint32_t>::max();  // max: none
};

// One message handed to the sender. `destination` and `source` point into the
// engine's interned names and stay valid while the Engine lives.
struct Lease {
  uint64_t msg_id = 0;
  std::string_view destination;
  std::string_view source;         // "" when the message has no source
  uint32_t destination_index = 0;  // stable id of the (source, destination) pair
  uint32_t attempt = 0;            // 1 for the first attempt
  absl::Time deadline;             // report before this or the lease expires
  SlotHint slot;                   // passed back by Report(const Lease&, ...)
};

// Set (empty value) on the FailedPrecondition returned for a report naming a
// lease that is no longer current, so callers can tell a stale report (a
// late duplicate, harmless) from a report in the wrong state.
inline constexpr char kStaleLeasePayload[] = "type.googleapis.com/mailretry.StaleLease";

// How far behind the engine's clock a `now` may be and still be accepted (as
// the engine's clock); see the header comment.
inline constexpr absl::Duration kMaxClockSkew = absl::Seconds(1);

enum class DecisionAction : uint8_t { kDelivered, kRetry, kBounced, kExpired };
std::string_view DecisionActionName(DecisionAction a);  // "delivered", "retry", ...

// The engine's answer to Report.
struct Decision {
  DecisionAction action = DecisionAction::kRetry;
  std::optional<absl::Time> next_attempt;  // kRetry only
  std::optional<Category> category;        // unset for kDelivered
  std::string_view rule;                   // classifier rule; valid while the Engine lives
  std::string_view schedule;               // schedule used: "default" or an override name
  uint32_t attempt = 0;                    // the attempt this report is about
};

enum class EventKind : uint8_t {
  kDelivered,
  kDeferred,
  kBounced,
  kExpired,
  kLeaseExpired,
  kDestinationThrottled,
  kDestinationSuspended,
  kDestinationResumed,
  kDestinationWarning,
  kStructuralFailure,
  kStructuralCleared,
};
inline constexpr int kNumEventKinds = 11;
std::string_view EventKindName(EventKind k);  // "delivered", ..., "structural_cleared"

struct CategoryCount {
  Category category;
  uint32_t count = 0;
};

// The destination-level part of an event: the limits in force, the suspension
// end and the evidence. Set for destination_throttled, destination_suspended,
// destination_warning and structural_failure; message events, which are most
// events, carry none of it (Event::info() then returns an empty one).
struct DestinationEventInfo {
  std::optional<absl::Time> until;  // suspended: end; throttled: end of a rule override
  // destination_throttled: the limits now in force (0 / nullopt = unlimited).
  uint32_t concurrency_limit = 0;
  std::optional<double> rate_per_second;
  // destination_warning / structural_failure: evidence and what to do.
  std::vector<CategoryCount> categories;  // dominant first
  std::vector<std::string> samples;       // recent reply texts
  std::vector<std::string> remediation;   // steps for the dominant categories
};

// One event. Compact on purpose (about 170 bytes, no heap memory of its own):
// a busy engine records one per report, and the 350-byte event with four
// strings and three vectors that it replaced was most of the cache misses of
// a batch of reports.
//
// Lifetime: the text fields and `destination_info` point into storage that
// the engine owns, and stay valid until the next DrainEvents call on the same
// engine (from any thread) or the engine's destruction; `destination` and
// `source` stay valid while the Engine lives. Copy what you keep longer
// (OwnedEvent). An engine drained from several threads must have each
// batch used before another thread drains.
struct Event {
  EventKind kind = EventKind::kDelivered;
  std::optional<Category> category;  // message events; throttled/suspended: the trigger
  uint32_t attempt = 0;              // message events: attempts made so far
  absl::Time time;                   // when it happened (non-decreasing in the stream)
  std::optional<uint64_t> msg_id;    // message events
  std::string_view destination;      // valid while the Engine lives
  std::string_view source;
  std::optional<absl::Time> next_attempt;  // deferred, lease_expired
  std::string_view status;                 // enhanced status: the reply's, or "4.4.7" for expired
  std::string_view reply;                  // reply text; for expired the last reply
  std::string_view detail;                 // why, in words
  std::string_view rule;                   // classifier or reaction rule behind it
  // Null for events without a destination-level part; see info().
  const DestinationEventInfo* destination_info = nullptr;

  // *destination_info, or an empty DestinationEventInfo.
  const DestinationEventInfo& info() const;
};

// An Event with its own copies of the texts and the destination-level part,
// valid as long as it lives (for keeping events across drains).
struct OwnedEvent {
  OwnedEvent() = default;
  explicit OwnedEvent(const Event& e);
  EventKind kind = EventKind::kDelivered;
  std::optional<Category> category;
  uint32_t attempt = 0;
  absl::Time time;
  std::optional<uint64_t> msg_id;
  std::string_view destination;  // valid while the Engine lives
  std::string_view source;
  std::optional<absl::Time> next_attempt;
  std::string status, reply, detail, rule;
  DestinationEventInfo info;
  // An Event pointing into this one (valid while it lives, unchanged);
  // destination_info is null when `info` is empty.
  Event view() const;
};

enum class Health : uint8_t { kHealthy, kWarning, kStructural };
std::string_view HealthName(Health h);  // "healthy", "warning", "structural"

struct DestinationInfo {
  std::string destination;
  std::string source;
  uint32_t index = 0;
  Health health = Health::kHealthy;
  bool held = false;               // structural hold: probes only
  uint32_t concurrency_limit = 0;  // in force now
  uint32_t max_concurrency = 0;
  uint32_t in_flight = 0;
  std::optional<double> rate_per_second;  // in force now; nullopt = unlimited
  std::optional<absl::Time> suspended_until;
  uint32_t suspensions = 0;              // repeats since the last delivery
  std::optional<absl::Time> next_probe;  // when held
  uint64_t ready = 0;                    // due, waiting for a slot
  uint64_t scheduled = 0;                // waiting for their retry time
  uint64_t attempts = 0, delivered = 0, deferred = 0, bounced = 0, expired = 0;
  uint32_t consecutive_failures = 0;
  std::optional<absl::Time> last_delivery;
  std::string last_reply;
  std::vector<CategoryCount> failure_categories;  // since the last delivery, dominant first
};

struct EngineStats {
  // Invariant: submitted == delivered + bounced + expired + pending,
  // pending == scheduled + ready + leased.
  uint64_t submitted = 0, delivered = 0, bounced = 0, expired = 0;
  uint64_t pending = 0, scheduled = 0, ready = 0, leased = 0;
  uint64_t attempts = 0, deferred = 0, lease_expirations = 0;
  uint64_t destinations = 0, suspended_destinations = 0, held_destinations = 0;
  uint64_t events_buffered = 0, events_dropped = 0;
  // Reports refused as stale (kStaleLeasePayload): the lease they name was
  // no longer current. They changed nothing.
  uint64_t stale_reports = 0;
  // Calls whose `now` was less than kMaxClockSkew behind the engine's clock and
  // was taken as the engine's clock instead of being refused.
  uint64_t clamped_times = 0;
  // What structural holds cost: messages that waited at a held destination
  // (pending when the hold began, or arriving during it), those still pending
  // when a hold was lifted (released), and those whose lifetime ended while
  // held (expired_held; also counted in `expired`). The rest were its probes.
  uint64_t held_messages = 0, released_messages = 0, expired_held = 0;
  size_t memory_bytes = 0;  // engine-owned heap, approximate
};

// ---------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------

class Engine {
 public:
  // InvalidArgument for an invalid config (see EngineConfig::Validate and
  // Classifier::Create).
  static absl::StatusOr<std::unique_ptr<Engine>> Create(EngineConfig config = {},
                                                        uint64_t seed = 0);
  // Restores an engine saved with Save, config and seed included.
  // NotFound / DataLoss (truncated, bad checksum, bad magic) /
  // FailedPrecondition (unsupported version) with the path in the message.
  static absl::StatusOr<std::unique_ptr<Engine>> Load(const std::string& path);

  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Adds a message; its first attempt is due at max(now, not_before).
  // AlreadyExists if `msg_id` is pending; InvalidArgument for an empty
  // destination or time going backwards.
  absl::Status Submit(uint64_t msg_id, std::string_view destination, absl::Time now,
                      std::string_view source = {},
                      std::optional<absl::Time> not_before = std::nullopt);

  // Batch submit for array callers: message i goes to
  // destination_names[destination_indices[i]] from
  // source_names[source_indices[i]] (source_indices may be empty = no source).
  // All-or-nothing: on any error (duplicate id in the batch or pending,
  // index out of range, empty name) nothing is submitted.
  absl::Status SubmitMany(absl::Span<const uint64_t> msg_ids,
                          absl::Span<const uint32_t> destination_indices,
                          absl::Span<const std::string> destination_names, absl::Time now,
                          absl::Span<const uint32_t> source_indices = {},
                          absl::Span<const std::string> source_names = {});

  // Processes everything due at `now` (retry times, expiries, lease timeouts,
  // suspension ends) without taking messages.
  absl::Status Advance(absl::Time now);

  // Up to `limit` leases for due messages whose destination is not suspended
  // and has a free concurrency slot and rate allowance; round-robin across
  // destinations, alternating first attempts and retries within one.
  absl::StatusOr<std::vector<Lease>> TakeReady(absl::Time now, size_t limit);
  // The same into `out`, whose contents are replaced (emptied on error). Its
  // storage is reused: a caller that passes the same vector every round
  // allocates nothing once it has grown to its largest batch.
  absl::Status TakeReady(absl::Time now, size_t limit, std::vector<Lease>& out);

  // The outcome of a leased attempt, naming the lease: `attempt` is
  // Lease::attempt, and (msg_id, attempt) is the lease's fencing token. A
  // report for a lease that is no longer current (it timed out and the
  // message is waiting again or was leased again, or the attempt was already
  // reported) is FailedPrecondition carrying kStaleLeasePayload: it changes
  // nothing and is counted in EngineStats::stale_reports. NotFound: unknown
  // id (never submitted or already finished). InvalidArgument: an attempt
  // that was never handed out. A reply text longer than kMaxReplyBytes (a
  // transport reply's detail) is cut to that length, as ParseReply caps replies.
  absl::StatusOr<Decision> Report(uint64_t msg_id, uint32_t attempt, absl::Time now,
                                  const Reply& reply);
  absl::StatusOr<Decision> Report(const Lease& lease, absl::Time now, const Reply& reply);
  // Report(lease, now, reply) for a reply registered with InternReply;
  // InvalidArgument for a handle this engine did not give out.
  absl::StatusOr<Decision> Report(const Lease& lease, absl::Time now, ReplyHandle reply);
  // Registers a reply for reports by handle (cut to kMaxReplyBytes as Report
  // cuts it). Each call registers a new handle, even for an equal reply: intern
  // each distinct reply once. ResourceExhausted after kMaxReplyHandles.
  absl::StatusOr<ReplyHandle> InternReply(const Reply& reply);
  static constexpr uint32_t kMaxReplyHandles = 1u << 16;
  // ParseReply(raw_reply) then Report; ParseReply's InvalidArgument leaves the
  // lease untouched.
  absl::StatusOr<Decision> ReportText(uint64_t msg_id, uint32_t attempt, absl::Time now,
                                      std::string_view raw_reply);
  absl::StatusOr<Decision> ReportText(const Lease& lease, absl::Time now,
                                      std::string_view raw_reply) {
    return ReportText(lease.msg_id, lease.attempt, now, raw_reply);
  }
  // Batch reports; one result per id, in order (errors do not stop the batch).
  // `attempts` names each lease as in Report.
  std::vector<absl::StatusOr<Decision>> ReportMany(absl::Span<const uint64_t> msg_ids,
                                                   absl::Span<const uint32_t> attempts,
                                                   absl::Span<const Reply> replies, absl::Time now);
  std::vector<absl::StatusOr<Decision>> ReportManyText(absl::Span<const uint64_t> msg_ids,
                                                       absl::Span<const uint32_t> attempts,
                                                       absl::Span<const std::string> raw_replies,
                                                       absl::Time now);
  // The same into `out`, whose contents are replaced; its storage is reused
  // as TakeReady(now, limit, out) reuses its vector's.
  void ReportMany(absl::Span<const uint64_t> msg_ids, absl::Span<const uint32_t> attempts,
                  absl::Span<const Reply> replies, absl::Time now,
                  std::vector<absl::StatusOr<Decision>>& out);
  void ReportManyText(absl::Span<const uint64_t> msg_ids, absl::Span<const uint32_t> attempts,
                      absl::Span<const std::string> raw_replies, absl::Time now,
                      std::vector<absl::StatusOr<Decision>>& out);

  // Unfenced reports (0.1 API, kept for one release): they apply to whatever
  // lease of `msg_id` is current, so a late report of an expired lease lands
  // on the next attempt. Use the overloads above. FailedPrecondition when the
  // message is not leased.
  absl::StatusOr<Decision> Report(uint64_t msg_id, absl::Time now, const Reply& reply);
  // The same by reply handle, with the lease's slot hint: the simulator's
  // report (its leases never time out, so unfenced is exact there).
  absl::StatusOr<Decision> Report(uint64_t msg_id, absl::Time now, ReplyHandle reply,
                                  SlotHint slot);
  absl::StatusOr<Decision> ReportText(uint64_t msg_id, absl::Time now, std::string_view raw_reply);
  std::vector<absl::StatusOr<Decision>> ReportMany(absl::Span<const uint64_t> msg_ids,
                                                   absl::Span<const Reply> replies, absl::Time now);
  std::vector<absl::StatusOr<Decision>> ReportManyText(absl::Span<const uint64_t> msg_ids,
                                                       absl::Span<const std::string> raw_replies,
                                                       absl::Time now);
  // The same into `out` (contents replaced, storage reused).
  void ReportMany(absl::Span<const uint64_t> msg_ids, absl::Span<const Reply> replies,
                  absl::Time now, std::vector<absl::StatusOr<Decision>>& out);
  void ReportManyText(absl::Span<const uint64_t> msg_ids, absl::Span<const std::string> raw_replies,
                      absl::Time now, std::vector<absl::StatusOr<Decision>>& out);

  // Earliest time at which Advance/TakeReady would do something: the last
  // `now` seen if messages are dispatchable already; nullopt when idle.
  std::optional<absl::Time> NextWakeup() const;

  // Events since the last drain, oldest first. Their texts stay valid until
  // the next DrainEvents call (see Event).
  std::vector<Event> DrainEvents();
  // The same into `events`, whose previous contents are dropped and whose
  // capacity the engine reuses for later events. Draining into the same
  // vector each time, a steady stream of events allocates nothing.
  void DrainEvents(std::vector<Event>& events);

  // State of one (destination, source) pair; NotFound if never seen.
  absl::StatusOr<DestinationInfo> GetDestination(std::string_view destination,
                                                 std::string_view source = {}) const;
  // GetDestination(...)->concurrency_limit without building the whole
  // DestinationInfo: what a connection pool asks before each attempt.
  absl::StatusOr<uint32_t> ConcurrencyLimit(std::string_view destination,
                                            std::string_view source = {}) const;
  // A number that changes whenever any destination's concurrency limit may
  // have changed since the last call (a cut, a raise, a rule's override
  // starting or ending at the engine's current time). A connection pool that
  // caches ConcurrencyLimit answers re-reads them only when this differs
  // from the value it read them under, so a lowered limit is still seen at
  // the next check. It may change without any limit changing; it starts
  // anew in a restored engine (compare it only with the same engine's).
  uint64_t LimitsGeneration() const;
  EngineStats Stats() const;

  // Writes a versioned, checksummed snapshot atomically (temporary file in the
  // same directory, fsync, rename). Undrained events are included. On error
  // the previous file at `path` is untouched.
  absl::Status Save(const std::string& path) const;

  // Full consistency check for tests (message counts, lists, timers):
  // Internal error describing the first broken invariant.
  absl::Status CheckInvariants() const;

  const EngineConfig& config() const;
  uint64_t seed() const;

  // --- Durable mode (engine_journal.h) --------------------------------------
  // Recovers the engine kept in `directory` (latest snapshot + journal
  // replay), or creates one there with `config` and `seed` (ignored when
  // recovering: the saved ones are used). Creates `directory` if missing (not
  // its parents). Every state-changing call is then journaled before it
  // returns. Errors: InvalidArgument (config, options), Unavailable (I/O, with
  // the path), FailedPrecondition (another engine has the directory open),
  // DataLoss (a corrupt snapshot or journal, with the file and byte offset).
  static absl::StatusOr<std::unique_ptr<Engine>> OpenDurable(const std::string& directory,
                                                             EngineConfig config = {},
                                                             uint64_t seed = 0,
                                                             JournalOptions options = {});
  // Writes a new snapshot generation and starts an empty journal; the old
  // generation's files are removed once the new ones are durable.
  // FailedPrecondition for a non-durable engine.
  absl::Status Compact();
  // fsyncs the journal now, whatever the policy. FailedPrecondition for a
  // non-durable engine.
  absl::Status Sync();
  // nullopt for a non-durable engine.
  std::optional<JournalInfo> journal_info() const;

  struct Impl;  // engine.cc

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Remediation steps for a failure category (empty for categories that need none).
std::vector<std::string> RemediationSteps(Category c);

}  // namespace mailretry

#endif  // MAILRETRY_ENGINE_ENGINE_H_
