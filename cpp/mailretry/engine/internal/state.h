// File: engine/internal/state.h
// -----------------------------------------------------------------------------
// The engine's private state, shared by engine.cc (behaviour) and
// engine_snapshot.cc (Save/Load). Not part of the public API.
//
// Every pending message is one compact MsgRec (56 bytes) in chunked storage,
// indexed by a dense Slot that is also its TimerQueue handle. A message is
// always in exactly one TimerQueue entry: its retry time while scheduled, its
// expiry while waiting in a destination's ready list, its lease deadline while
// leased. That single timer is how lifetime expiry is enforced in every state.
#ifndef MAILRETRY_ENGINE_INTERNAL_STATE_H_
#define MAILRETRY_ENGINE_INTERNAL_STATE_H_

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/classify/internal/code_pattern.h"
#include "mailretry/common/internal/large_array.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/event_buffer.h"
#include "mailretry/engine/internal/lease_deadlines.h"
#include "mailretry/engine/internal/reply_cache.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/reply/reply.h"
#include "mailretry/timers/timer_queue.h"

namespace re2 {
class RE2;
}

namespace mailretry {
namespace internal {

inline constexpr uint32_t kNil = std::numeric_limits<uint32_t>::max();
inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
inline constexpr int64_t kNoTime = std::numeric_limits<int64_t>::min();

enum class MsgState : uint8_t { kFree = 0, kScheduled, kReady, kLeased };

enum MsgFlags : uint8_t {
  kFlagFinal = 1,       // the pending retry is the last one, at the lifetime end
  kFlagEvidence = 2,    // counted once towards early structural evidence
  kFlagCycle = 4,       // counted once towards the full-cycle structural rule
  kFlagProbe = 8,       // this lease is a held destination's probe
  kFlagFirstList = 16,  // sits in the first-attempt ready list (else retry list)
  // Its first attempt was deferred with a reply that may be greylisting in
  // other words (greylist.cc, the first-contact pattern).
  kFlagFirstDeferred = 32,
};

// One pending message. Times are Unix milliseconds.
struct MsgRec {
  uint64_t id = 0;
  int64_t submitted_ms = 0;  // expiry = submitted_ms + the destination's lifetime
  int64_t timer_ms = 0;      // exact due time of its one timer
  uint32_t dest = 0;
  uint32_t prev = kNil;  // ready-list links; `next` also chains the free list
  uint32_t next = kNil;
  uint32_t last_delay_s = 0;   // previous retry delay (Exim G/H, decorrelated jitter)
  uint32_t last_enhanced = 0;  // packed EnhancedCode + 1, 0 = none
  uint16_t last_code = 0;      // basic code, or 1000 + Transport for transport outcomes
  uint16_t attempts = 0;       // attempts handed out
  MsgState state = MsgState::kFree;
  uint8_t flags = 0;
  uint8_t step = 0;  // backoff step
  uint8_t last_category = 0xff;
  uint8_t fixed_uses = 0;  // consecutive non-advancing retries
  uint8_t sample = 0xff;   // (generation << 3) | ring index of its last reply text
  // Its first greylist deferral, in seconds after submitted_ms, plus one
  // (0 = none yet, or too late to count: learned greylist delays).
  uint16_t grey_s = 0;
};

inline constexpr int kSampleRing = 8;

// State per (source, destination) pair.
struct DestState {
  uint32_t domain_id = 0;
  uint32_t source_id = 0;
  uint32_t policy = 0;             // index into Impl::dest_policies
  int32_t lifetime_schedule = -1;  // destination-only schedule override with a policy
  // The lifetime of that schedule (or the default one) in ms, converted once
  // by InitDestination: ExpiresMs runs on every ready deadline.
  int64_t lifetime_ms = 0;
  absl::InlinedVector<uint16_t, 4> schedule_candidates;  // overrides whose destination matches
  absl::InlinedVector<uint16_t, 4> reaction_candidates;

  // Ready lists (FIFO) of due messages waiting for a slot.
  uint32_t first_head = kNil, first_tail = kNil, retry_head = kNil, retry_tail = kNil;
  uint32_t first_count = 0, retry_count = 0;
  uint32_t scheduled_count = 0;
  bool take_retry_next = false;
  bool in_ring = false;

  // Concurrency.
  uint32_t in_flight = 0;
  uint32_t concurrency = 0;
  uint32_t success_streak = 0;
  uint32_t conc_override = 0;
  int64_t conc_override_until = kNoTime;
  uint32_t conc_ceiling = 0;        // highest level not refused lately (0 = none)
  int64_t last_conc_cut = kNoTime;  // attempts started before it are not new evidence
  int64_t conc_ceiling_until = kNoTime;

  // Rate (GCRA) and its cut / ramp-back.
  int64_t tat = kNoTime;
  int64_t cut_interval_ms = 0;  // 0 = not cut
  int64_t last_cut = kNoTime;
  int64_t rate_override_ms = 0;
  int64_t rate_override_until = kNoTime;

  // Suspension.
  int64_t suspended_until = kNoTime;
  bool suspended = false;  // a destination_resumed event is owed
  // Half-open (suspend_probe_interval > 0): after a built-in suspension, only
  // probes go out until one is delivered, whenever suspended_until is.
  bool half_open = false;
  uint32_t suspensions = 0;
  uint32_t conn_failures = 0;
  uint32_t consecutive_failures = 0;
  uint64_t capacity_bits = 0;  // last attempts, newest in bit 0: 1 = a capacity reply
  // The same attempts: 1 = a reputation_throttle reply. All ones before any
  // attempt: a new path has shown no deliveries yet, so its first throttle
  // reply reacts in full, as a block would need.
  uint64_t throttle_bits = ~uint64_t{0};
  int64_t partial_since = kNoTime;  // since when the window mixes throttles and others
  uint32_t ramp_to = 0;             // after a probe release: +1 concurrency per delivery up to this
  int64_t wake = kNoTime;           // pending destination timer

  // Health.
  Health health = Health::kHealthy;
  bool held = false;
  bool probe_in_flight = false;
  int64_t next_probe = kNoTime;
  uint32_t held_probes = 0;  // probes sent since the hold began (their backoff)
  int64_t last_delivery = kNoTime;
  int64_t win_start = kNoTime;
  uint32_t cur_attempts = 0, cur_421 = 0, prev_attempts = 0, prev_421 = 0;
  std::array<uint32_t, kNumCategories> cat_counts{};  // failures since the last delivery
  uint32_t cycle_msgs = 0;
  uint32_t evidence_msgs = 0;
  // Attempts here answered with a PTR / an SPF-DKIM-DMARC reply (saturating):
  // strong evidence, pooled per source in Impl::sender_evidence.
  uint8_t strong_ptr = 0, strong_auth = 0;
  int64_t strong_first = kNoTime;  // the first of them since the last delivery
  int64_t evidence_first = kNoTime;

  // Counters.
  uint64_t attempts = 0, delivered = 0, deferred = 0, bounced = 0, expired = 0;

  // Recent distinct reply texts, for expired events and structural evidence.
  std::array<std::string, kSampleRing> samples;
  std::array<uint32_t, kSampleRing> sample_gen{};
  uint32_t sample_next = 0;
  uint32_t sample_count = 0;
};

// A compiled reaction rule.
struct CompiledReaction {
  ReactionRule rule;
  BasicCodePattern code;         // rule.code_pattern, compiled once
  EnhancedCodePattern enhanced;  // rule.enhanced_pattern, compiled once
  std::unique_ptr<re2::RE2> regex;
};

// A timer that Core::Advance found due, in the order it handles them.
struct DueTimer {
  int64_t due;
  uint8_t kind;  // 0 destination wake, 1 message timer
  uint64_t key;
  uint32_t idx;
};

// Chunked message storage: no reallocation slack, stable addresses. Chunks
// of 4096 records (a shift and a mask per access); all but the first are
// carved, nine at a time, out of 2 MiB huge pages (large_array.h): reports and
// leases reach records at random, and with 4 KiB pages almost every such
// access also missed the TLB. A small engine keeps one ordinary chunk.
class MsgStore {
 public:
  static constexpr uint32_t kChunkBits = 12;
  static constexpr uint32_t kChunk = 1u << kChunkBits;
  static constexpr size_t kChunkBytes = kChunk * sizeof(MsgRec);
  static constexpr size_t kPageBytes = size_t{2} << 20;
  static constexpr size_t kChunksPerPage = kPageBytes / kChunkBytes;  // 9: 1.6 % unused
  MsgRec& operator[](uint32_t slot) { return chunks_[slot >> kChunkBits][slot & (kChunk - 1)]; }
  const MsgRec& operator[](uint32_t slot) const {
    return chunks_[slot >> kChunkBits][slot & (kChunk - 1)];
  }
  uint32_t size() const { return size_; }
  // Appends a free record and returns its slot.
  uint32_t Grow() {
    if ((size_ & (kChunk - 1)) == 0) chunks_.push_back(NewChunk());
    return size_++;
  }
  size_t MemoryBytes() const {
    return (first_ ? kChunkBytes : 0) + pages_.size() * kPageBytes +
           chunks_.capacity() * sizeof(MsgRec*);
  }

 private:
  static_assert(kChunksPerPage >= 1);
  static_assert(std::is_trivially_destructible_v<MsgRec>, "pages are freed without destructors");
  struct FreePage {
    void operator()(void* p) const { FreeLarge(p, kPageBytes); }
  };
  MsgRec* NewChunk() {
    if (!first_) {
      first_ = std::make_unique<MsgRec[]>(kChunk);
      return first_.get();
    }
    if (pages_.empty() || page_used_ == kChunksPerPage) {
      pages_.emplace_back(AllocateLarge(kPageBytes));
      page_used_ = 0;
    }
    MsgRec* p = reinterpret_cast<MsgRec*>(static_cast<char*>(pages_.back().get()) +
                                          page_used_++ * kChunkBytes);
    std::uninitialized_default_construct_n(p, kChunk);
    return p;
  }
  std::vector<MsgRec*> chunks_;
  std::unique_ptr<MsgRec[]> first_;
  std::vector<std::unique_ptr<void, FreePage>> pages_;
  size_t page_used_ = 0;  // chunks carved out of pages_.back()
  uint32_t size_ = 0;
};

// The id index stores only slots (4 bytes each); hashing and equality look the
// id up in the store, so ids are not stored twice.
struct IdKey {
  uint64_t id;
};
struct SlotHash {
  using is_transparent = void;
  const MsgStore* store;
  size_t operator()(uint32_t slot) const { return absl::HashOf((*store)[slot].id); }
  size_t operator()(IdKey k) const { return absl::HashOf(k.id); }
};
struct SlotEq {
  using is_transparent = void;
  const MsgStore* store;
  bool operator()(uint32_t a, uint32_t b) const { return a == b; }
  bool operator()(uint32_t a, IdKey b) const { return (*store)[a].id == b.id; }
  bool operator()(IdKey a, uint32_t b) const { return a.id == (*store)[b].id; }
};
// On huge pages once large (large_array.h): every report probes it at random.
using IdIndex = absl::flat_hash_set<uint32_t, SlotHash, SlotEq, LargeArrayAllocator<uint32_t>>;

// The durable journal (durable/journal.cc), seen from the engine: every
// state-changing call is recorded after the engine applied it, under
// Impl::mu (execute.h). A non-OK CommitRecord means the call is applied in
// memory but not recorded, and `health()` stays non-OK so the engine refuses
// further state-changing calls rather than diverge from the disk.
class JournalSink {
 public:
  virtual ~JournalSink() = default;
  virtual absl::Status health() const = 0;
  // A buffer for the next record's payload (record_codec.h appends to it).
  virtual std::string* BeginRecord() = 0;
  // Frames, writes and (per the fsync policy) syncs the record.
  virtual absl::Status CommitRecord() = 0;
};

}  // namespace internal

struct Engine::Impl {
  Impl(EngineConfig cfg, uint64_t seed_value, Classifier cls);

  EngineConfig config;
  uint64_t seed;
  Classifier classifier;
  // Parsed replies, canonical texts and classifications of recent replies
  // (derived state: not saved, rebuilt on demand).
  internal::ReplyCache reply_cache;
  std::vector<ScheduleOverride> schedules;       // user overrides, then built-ins
  std::vector<DestinationPolicy> dest_policies;  // [0] = defaults, then config.destinations
  std::vector<internal::CompiledReaction> reactions;
  uint32_t cycle_failures = 5;
  int64_t lease_timeout_ms = 0;  // config.lease_timeout, converted once
  // config.structural.warning_window in ms (at least 1), converted once:
  // RollWindow runs on every report.
  int64_t warning_window_ms = 1;

  // std::mutex, not absl::Mutex: the system's Abseil is built with its
  // deadlock detection on, which made every uncontended lock and unlock cost
  // a graph lookup (about 350 instructions, 13 % of a simulator run); the
  // engine takes this one lock per call and waits on no condition.
  mutable std::mutex mu;
  SplitMix64 rng;
  int64_t now_ms = internal::kNoTime;
  // False only when Core::Advance emptied the timer queues up to now_ms and
  // no timer was armed at or before now_ms since (then Advance at the same
  // time skips polling them). True after a restore.
  bool timers_due = true;
  int64_t last_event_ms = internal::kNoTime;
  // Bumped whenever a destination's concurrency limit may have changed
  // (Engine::LimitsGeneration): a connection pool re-reads its limits only
  // then. Not saved: a restored engine starts a new count.
  uint64_t limits_generation = 0;
  // Earliest end of a rule's concurrency override still in force: the limit
  // rises then without a call changing it. kNoTime: not known (after a
  // restore), found on the next LimitsGeneration call.
  int64_t conc_override_end = internal::kNoTime;

  // Interned names (lowercased destinations, sources as given).
  std::deque<std::string> names;
  absl::flat_hash_map<std::string_view, uint32_t> name_ids;
  absl::flat_hash_map<uint64_t, uint32_t> pair_ids;  // domain_id << 32 | source_id
  std::vector<internal::DestState> dests;

  internal::MsgStore msgs;
  internal::IdIndex ids;
  uint32_t free_head = internal::kNil;
  std::unique_ptr<TimerQueue> msg_timers;
  // Leased messages' deadlines (lease_deadlines.h): a leased message is in
  // this FIFO, not in msg_timers. Derived from the records (Load rebuilds
  // it). Off for an infinite lease_timeout: leases then never expire.
  internal::LeaseDeadlines leases;
  bool lease_deadlines_on = true;
  std::unique_ptr<TimerQueue> dest_timers;
  std::deque<uint32_t> ring;  // destinations with ready messages, round-robin
  // Core::Advance's scratch space, kept to spare allocations per call.
  std::vector<Slot> due_msgs, due_dests;
  std::vector<internal::DueTimer> due_items;

  // Sender-side evidence pooled across destinations, by source name id: how
  // many (destination, source) pairs got a PTR / an SPF-DKIM-DMARC reply.
  // Derived from DestState::strong_*, so Load rebuilds it.
  struct SenderEvidence {
    uint32_t ptr_pairs = 0, auth_pairs = 0;
  };
  absl::flat_hash_map<uint32_t, SenderEvidence> sender_evidence;

  // The distinct source name ids, in order of first use: a domain's pairs are
  // found through pair_ids, source by source (a per-domain list cost a heap
  // allocation per new destination on the submit path). Derived from `dests`
  // (Load rebuilds it).
  std::vector<uint32_t> source_list;
  absl::flat_hash_set<uint32_t> source_seen;
  // Half-open probes pooled over sources: by destination domain, the pair
  // that took its last half-open probe. While that pair is still half-open,
  // the domain's other half-open pairs wait for its next_probe: one probe per
  // suspend_probe_interval goes to a domain, not one per source. When a
  // provider blocks every source at once (a reputation incident), each
  // source paid a refusal per interval. Following the owner's next_probe
  // (not a fixed time) keeps a short suspension's early probe. Not saved:
  // after a restore each pair probes on its own next_probe once.
  absl::flat_hash_map<uint32_t, uint32_t> domain_probe_owner;
  // Pairs woken by a sibling's delivered probe: their next probe goes at once
  // and in parallel, without becoming the owner that the others wait for.
  absl::flat_hash_set<uint32_t> woken_probes;

  // Learned greylist delays by destination domain (name id), pooled over
  // sources: waits after a message's first greylist deferral that were still
  // greylisted (lower) and that got through (upper).
  struct GreylistMemory {
    int64_t lower_ms = 0;                 // the longest refused wait (0 = none)
    int64_t upper_ms = internal::kNever;  // the shortest wait that worked (kNever = none)
  };
  absl::flat_hash_map<uint32_t, GreylistMemory> greylist;
  // The first-contact pattern by destination domain, pooled over sources
  // (greylist.cc): delivered messages whose first attempt was deferred with
  // an unknown-transient or server-busy reply and a later one got through,
  // against messages delivered at their first attempt. Not saved: after a
  // restore the pattern is seen again from the next few deliveries.
  struct FirstContact {
    uint32_t deferred_then_delivered = 0;
    uint32_t first_delivered = 0;
  };
  // Indexed by the domain's interned name id (grown on a domain's first
  // delivery; a missing entry counts as zeros): a lookup per delivery, and a
  // hash map's probe cost more than the count it updated.
  std::vector<FirstContact> first_contact;
  // How many domains learned each delay (their upper bound, rounded up to
  // kGreyBucketMs; the last bucket holds the longer ones): where an
  // unlearned domain's first retry goes. Derived from `greylist` (Load
  // rebuilds it).
  static constexpr int64_t kGreyBucketMs = 30'000;
  std::vector<uint32_t> greylist_learned = std::vector<uint32_t>(481, 0);
  uint32_t greylist_learned_domains = 0;

  // How long full mailboxes last at each destination domain (name id),
  // pooled over sources (mailbox_full.cc): a running mean of the log of the
  // age at which a message whose last failure was a full mailbox got
  // through. Not saved: after a restore it is learned again from the next
  // few such deliveries.
  struct FullMailboxMemory {
    double log_age_s = 0;
    uint32_t samples = 0;
  };
  absl::flat_hash_map<uint32_t, FullMailboxMemory> full_mailbox;

  // Reaction-rule threshold windows: (dest << 16 | rule) -> match times.
  absl::flat_hash_map<uint64_t, std::vector<int64_t>> reaction_hits;

  internal::EventBuffer events;
  uint64_t events_dropped = 0;

  uint64_t submitted = 0, delivered = 0, bounced = 0, expired = 0;
  uint64_t scheduled_n = 0, ready_n = 0, leased_n = 0;
  uint64_t attempts = 0, deferred = 0, lease_expirations = 0;
  // Reports naming a lease that is no longer current; calls whose `now` was
  // slightly behind the clock and taken as the clock (see Core::Advance).
  uint64_t stale_reports = 0, clamped_times = 0;
  // Structural holds: messages that waited at a held destination, those still
  // pending when a hold was lifted, and those whose lifetime ended held.
  uint64_t held_messages = 0, released_messages = 0, expired_held = 0;

  // Set for a durable engine (Engine::OpenDurable); null otherwise and while
  // the journal is being replayed.
  std::unique_ptr<internal::JournalSink> journal;
};

// Engine internals used by the snapshot code.
namespace internal {
// Builds an Impl (validates the config, compiles rules, creates timer queues).
absl::StatusOr<std::unique_ptr<Engine::Impl>> MakeImpl(EngineConfig config, uint64_t seed);
// Resolves per-destination caches (policy index, override candidates) after
// a destination's names are known.
void InitDestination(Engine::Impl& impl, internal::DestState& d);
absl::Status CheckInvariantsLocked(const Engine::Impl& impl);
absl::Status SaveLocked(const Engine::Impl& impl, const std::string& path);
absl::StatusOr<std::unique_ptr<Engine::Impl>> LoadImpl(const std::string& path);
// The snapshot encoding of a config and seed: equal bytes, equal behaviour.
// A durable reopen compares the caller's config with the saved one by it.
std::string EncodeConfig(const EngineConfig& config, uint64_t seed);
}  // namespace internal

}  // namespace mailretry

#endif  // MAILRETRY_ENGINE_INTERNAL_STATE_H_
