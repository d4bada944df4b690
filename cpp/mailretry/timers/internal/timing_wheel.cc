#include "mailretry/timers/internal/timing_wheel.h"

#include <algorithm>
#include <new>
#include <string>

#include "absl/strings/str_cat.h"

namespace mailretry::internal {
namespace {

// How far ahead of a sequential walk over slot ids to prefetch their records:
// the records are the only random accesses in a cascade or a drain, and
// independent misses overlap only if they are issued early. A walk issues at
// most this many misses per miss latency, so at 8 a cascade at 10M was bound
// at latency/8 (~30 ns here) per timer; 32 keeps enough misses in flight.
constexpr size_t kPrefetchDistance = 32;

}  // namespace

TimingWheel::TimingWheel(const TimerOptions& options)
    : clock_(options.start, options.resolution), l0_(kSlots), l1_(kSlots), l1_min_(kSlots, 0) {}

void TimingWheel::Reserve(size_t slots) {
  if (slots > recs_.size()) recs_.resize(slots, Rec{0, kFree});
}

void TimingWheel::Grow(Slot slot) {
  size_t want = std::max<size_t>(size_t{slot} + 1, recs_.size() + recs_.size() / 2);
  want = std::min<size_t>(want, size_t{kMaxSlot} + 1);
  recs_.resize(want, Rec{0, kFree});
}

void TimingWheel::Append(Bucket& b, OccupancyBitmap& bits, uint32_t index, Slot slot) {
  recs_[slot].pos = static_cast<uint32_t>(b.ids.size());
  b.ids.push_back(slot);
  if (b.live++ == 0) bits.Set(index);
}

void TimingWheel::Place(Slot slot, uint64_t tick) {
  recs_[slot].tick_lo = static_cast<uint32_t>(tick);
  if (InLevel0(tick)) {
    uint32_t i = static_cast<uint32_t>(tick) & kMask;
    Append(l0_[i], l0_bits_, i, slot);
  } else if (InWheel(tick)) {
    uint32_t j = static_cast<uint32_t>(tick >> kLevelBits) & kMask;
    if (l1_[j].live == 0 || tick < l1_min_[j]) l1_min_[j] = tick;
    Append(l1_[j], l1_bits_, j, slot);
  } else {
    OverflowKey key{tick, overflow_seq_++};
    overflow_.emplace(key, slot);
    overflow_key_[slot] = key;
    recs_[slot].pos = kOverflow;
  }
}

void TimingWheel::ResetBucket(Bucket& b, OccupancyBitmap& bits, uint32_t index,
                              size_t keep_capacity) {
  if (b.ids.capacity() > keep_capacity) {
    std::vector<Slot>().swap(b.ids);
  } else {
    b.ids.clear();
  }
  b.head = 0;
  b.live = 0;
  bits.Clear(index);
}

// Squeezes stale entries out of [head, end). Moves live ids, so their
// records' positions are rewritten; paid for by the cancels that made the
// stale entries. A rewritten position w is never larger than the read index,
// so it cannot make a later stale entry look live.
void TimingWheel::Compact(Bucket& b, int level, uint32_t index) {
  const Slot* ids = b.ids.data();
  const size_t n = b.ids.size();
  uint32_t w = 0;
  for (size_t r = b.head; r < n; ++r) {
    if (r + kPrefetchDistance < n) __builtin_prefetch(&recs_[ids[r + kPrefetchDistance]], 1);
    Slot s = ids[r];
    if (!IsLive(s, static_cast<uint32_t>(r), level, index)) continue;
    recs_[s].pos = w;
    b.ids[w++] = s;
  }
  b.ids.resize(w);
  b.head = 0;
}

void TimingWheel::Remove(Slot slot) {
  Rec& r = recs_[slot];
  if (r.pos == kOverflow) {
    auto it = overflow_key_.find(slot);
    overflow_.erase(it->second);
    overflow_key_.erase(it);
  } else {
    uint64_t tick = TickOf(r);
    // The bucket entry is left alone (it is stale from here on, see IsLive):
    // at 10M it sits on a cache line of its own, and writing it was a second
    // miss that depended on this record's.
    const int level = InLevel0(tick) ? 0 : 1;
    const uint32_t index = level == 0 ? static_cast<uint32_t>(tick) & kMask
                                      : static_cast<uint32_t>(tick >> kLevelBits) & kMask;
    Bucket& b = level == 0 ? l0_[index] : l1_[index];
    r.pos = kFree;
    if (--b.live == 0) {
      ResetBucket(b, level == 0 ? l0_bits_ : l1_bits_, index, kKeepCapacity);
    } else {
      uint32_t dead = static_cast<uint32_t>(b.ids.size()) - b.head - b.live;
      if (dead > kMinDeadToCompact && dead > b.live) Compact(b, level, index);
    }
  }
  r.pos = kFree;
  --size_;
}

absl::Status TimingWheel::Schedule(Slot slot, absl::Time due) {
  if (slot > kMaxSlot) return absl::OutOfRangeError(absl::StrCat("slot ", slot, " > kMaxSlot"));
  if (Contains(slot)) return absl::AlreadyExistsError(absl::StrCat("slot ", slot, " is pending"));
  return ScheduleTick(slot, clock_.DueTick(due));
}

absl::Status TimingWheel::ScheduleUnixMs(Slot slot, int64_t due_ms) {
  if (slot > kMaxSlot) return absl::OutOfRangeError(absl::StrCat("slot ", slot, " > kMaxSlot"));
  if (Contains(slot)) return absl::AlreadyExistsError(absl::StrCat("slot ", slot, " is pending"));
  return ScheduleTick(slot, clock_.DueTickUnixMs(due_ms));
}

absl::Status TimingWheel::ScheduleTick(Slot slot, absl::StatusOr<int64_t> tick) {
  if (!tick.ok()) return tick.status();
  EnsureSlot(slot);
  Place(slot, static_cast<uint64_t>(*tick));
  ++size_;
  return absl::OkStatus();
}

absl::Status TimingWheel::Cancel(Slot slot) {
  if (!Contains(slot)) return absl::NotFoundError(absl::StrCat("slot ", slot, " is not pending"));
  Remove(slot);
  return absl::OkStatus();
}

absl::Status TimingWheel::Reschedule(Slot slot, absl::Time due) {
  if (!Contains(slot)) return absl::NotFoundError(absl::StrCat("slot ", slot, " is not pending"));
  return RescheduleTick(slot, clock_.DueTick(due));
}

absl::Status TimingWheel::RescheduleUnixMs(Slot slot, int64_t due_ms) {
  if (!Contains(slot)) return absl::NotFoundError(absl::StrCat("slot ", slot, " is not pending"));
  return RescheduleTick(slot, clock_.DueTickUnixMs(due_ms));
}

absl::Status TimingWheel::RescheduleTick(Slot slot, absl::StatusOr<int64_t> tick) {
  if (!tick.ok()) return tick.status();
  // Remove + append: the timer goes behind everything already due at its new
  // tick, which is the "counts as a fresh insertion" rule.
  Remove(slot);
  Place(slot, static_cast<uint64_t>(*tick));
  ++size_;
  return absl::OkStatus();
}

void TimingWheel::MigrateOverflow() {
  while (!overflow_.empty() && InWheel(overflow_.begin()->first.first)) {
    auto it = overflow_.begin();
    Slot slot = it->second;
    uint64_t tick = it->first.first;
    overflow_key_.erase(slot);
    overflow_.erase(it);
    Place(slot, tick);  // map order is (tick, seq): FIFO survives the move
  }
}

// Moves the cursor forward. Callers guarantee no timer is due before `tick`,
// so every timer keeps the level its tick and the new cursor imply, except
// overflow timers that the window now reaches.
void TimingWheel::SetCursor(uint64_t tick) {
  bool new_block = (tick >> kLevelBits) != (cur_ >> kLevelBits);
  cur_ = tick;
  if (new_block) MigrateOverflow();
}

// Moves the cursor to `start`, the first tick of level-1 bucket j's block
// (level 0 is empty), and moves that bucket's live ids into level 0. Overflow
// timers the window now reaches are migrated only afterwards: a migrated
// timer could otherwise take a level-0 position equal to the position of one
// of its own stale entries in bucket j and make that entry look live.
void TimingWheel::Cascade(uint32_t j, uint64_t start) {
  Bucket b = std::move(l1_[j]);
  l1_[j] = Bucket();
  l1_bits_.Clear(j);
  cur_ = start;
  const Slot* ids = b.ids.data();
  const size_t n = b.ids.size();
  uint32_t left = b.live;
  for (size_t k = b.head; k < n && left > 0; ++k) {
    if (k + kPrefetchDistance < n) __builtin_prefetch(&recs_[ids[k + kPrefetchDistance]], 1);
    Slot s = ids[k];
    Rec& r = recs_[s];
    // Live iff the record still points here. Every level-1 id whose tick is
    // in the new block was in bucket j (level 0 is empty), and an id's live
    // entry is its last one in a bucket, so the Append below (which rewrites
    // pos) cannot revive a later stale entry of the same id.
    if (r.pos != k || !InLevel0(TickOf(r))) continue;
    --left;
    uint32_t i = r.tick_lo & kMask;
    Append(l0_[i], l0_bits_, i, s);
  }
  MigrateOverflow();
}

absl::Status TimingWheel::PopDue(absl::Time now, std::vector<Slot>* out, size_t max_items) {
  absl::StatusOr<int64_t> now_tick = clock_.Advance(now);
  if (!now_tick.ok()) return now_tick.status();
  const uint64_t target = static_cast<uint64_t>(*now_tick);
  size_t popped = 0;
  for (;;) {
    if (!l0_bits_.empty()) {
      uint32_t i = l0_bits_.First();
      uint64_t tick = (cur_ & ~uint64_t{kMask}) | i;
      if (tick > target) break;
      cur_ = tick;  // same block: nothing to migrate
      if (popped == max_items) break;
      Bucket& b = l0_[i];
      const Slot* ids = b.ids.data();
      const size_t n = b.ids.size();
      size_t k = b.head;
      for (; k < n && b.live > 0 && popped < max_items; ++k) {
        if (k + kPrefetchDistance < n) __builtin_prefetch(&recs_[ids[k + kPrefetchDistance]], 1);
        Slot s = ids[k];
        Rec& r = recs_[s];
        // Stale entries (cancelled or moved) are skipped: see IsLive. The tick
        // test cannot be fooled by a wrapped tick_lo: pending ticks are within
        // 2^24 of the cursor.
        if (r.pos != k || r.tick_lo != static_cast<uint32_t>(tick)) continue;
        r.pos = kFree;
        out->push_back(s);
        --b.live;
        ++popped;
      }
      if (b.live == 0) {
        ResetBucket(b, l0_bits_, i, kKeepCapacity);
      } else {
        b.head = static_cast<uint32_t>(k);
        break;  // max_items reached mid-bucket; cur_ stays on this tick
      }
    } else if (!l1_bits_.empty()) {
      uint32_t j = NextLevel1();
      uint64_t start = Level1Start(j);
      if (start > target) break;
      Cascade(j, start);
    } else if (!overflow_.empty()) {
      uint64_t tick = overflow_.begin()->first.first;
      if (tick > target) break;
      SetCursor(tick);  // a new block: pulls this timer (and its block) in
    } else {
      break;
    }
  }
  size_ -= popped;
  // Nothing is due before target + 1 now (unless max_items stopped us on a
  // due tick, where cur_ must stay), so the cursor may jump; a later timer
  // then lands in level 0 directly instead of cascading.
  if (l0_bits_.empty() || ((cur_ & ~uint64_t{kMask}) | l0_bits_.First()) > target) {
    if (cur_ < target) SetCursor(target);
  }
  // A host that polls pops the next level-0 bucket next time: start the misses
  // on its first records now, so that they overlap with the host's own work
  // instead of stalling the first kPrefetchDistance items of that drain. Only
  // a hint: a wasted prefetch costs a little memory bandwidth. Skipped when
  // nothing popped, so that polling an idle queue stays a few loads.
  if (popped > 0 && !l0_bits_.empty()) {
    const Bucket& b = l0_[l0_bits_.First()];
    const size_t end = std::min<size_t>(b.ids.size(), b.head + kPrefetchDistance);
    for (size_t k = b.head; k < end; ++k) __builtin_prefetch(&recs_[b.ids[k]], 1);
  }
  return absl::OkStatus();
}

std::optional<absl::Time> TimingWheel::NextDeadline() const {
  if (!l0_bits_.empty()) {
    return clock_.TickTime(static_cast<int64_t>((cur_ & ~uint64_t{kMask}) | l0_bits_.First()));
  }
  if (!l1_bits_.empty()) {
    uint32_t j = NextLevel1();
    return clock_.TickTime(static_cast<int64_t>(std::max(Level1Start(j), l1_min_[j])));
  }
  if (!overflow_.empty()) {
    return clock_.TickTime(static_cast<int64_t>(overflow_.begin()->first.first));
  }
  return std::nullopt;
}

absl::StatusOr<absl::Time> TimingWheel::DueTime(Slot slot) const {
  if (!Contains(slot)) return absl::NotFoundError(absl::StrCat("slot ", slot, " is not pending"));
  const Rec& r = recs_[slot];
  if (r.pos == kOverflow) {
    return clock_.TickTime(static_cast<int64_t>(overflow_key_.at(slot).first));
  }
  return clock_.TickTime(static_cast<int64_t>(TickOf(r)));
}

size_t TimingWheel::MemoryBytes() const {
  size_t bytes = sizeof(*this) + recs_.capacity() * sizeof(Rec) +
                 (l0_.capacity() + l1_.capacity()) * sizeof(Bucket) +
                 l1_min_.capacity() * sizeof(uint64_t);
  for (const Bucket& b : l0_) bytes += b.ids.capacity() * sizeof(Slot);
  for (const Bucket& b : l1_) bytes += b.ids.capacity() * sizeof(Slot);
  // std::map node (three links, colour, key, value, malloc header) and one
  // flat_hash_map slot plus control byte per overflow timer, estimated.
  constexpr size_t kOverflowNode = 4 * sizeof(void*) + sizeof(OverflowKey) + 2 * sizeof(uint64_t);
  bytes += overflow_.size() * kOverflowNode +
           overflow_key_.capacity() * (sizeof(std::pair<Slot, OverflowKey>) + 1);
  return bytes;
}

absl::Status TimingWheel::CheckBucket(const Bucket& b, const OccupancyBitmap& bits, int level,
                                      uint32_t index) const {
  auto where = [&] { return absl::StrCat("level ", level, " bucket ", index); };
  if (bits.Test(index) != (b.live > 0)) {
    return absl::InternalError(absl::StrCat(where(), ": occupancy bit disagrees with live count"));
  }
  if (b.live == 0 && (!b.ids.empty() || b.head != 0)) {
    return absl::InternalError(absl::StrCat(where(), ": empty but not reset"));
  }
  if (b.head > b.ids.size()) return absl::InternalError(absl::StrCat(where(), ": head past end"));
  uint32_t live = 0;
  for (uint32_t k = b.head; k < b.ids.size(); ++k) {
    Slot s = b.ids[k];
    if (s >= recs_.size()) {
      return absl::InternalError(absl::StrCat(where(), ": slot ", s, " out of range"));
    }
    if (!IsLive(s, k, level, index)) continue;  // stale: cancelled or moved
    ++live;
    uint64_t tick = TickOf(recs_[s]);
    if (tick < cur_) {
      return absl::InternalError(
          absl::StrCat(where(), ": slot ", s, " tick ", tick, " is behind the cursor ", cur_));
    }
    bool ok = level == 0 ? InLevel0(tick) && (tick & kMask) == index
                         : !InLevel0(tick) && InWheel(tick) &&
                               ((tick >> kLevelBits) & kMask) == index && tick >= l1_min_[index];
    if (!ok) {
      return absl::InternalError(absl::StrCat(where(), ": slot ", s, " tick ", tick,
                                              " does not belong here (cursor ", cur_, ")"));
    }
  }
  if (live != b.live) {
    return absl::InternalError(
        absl::StrCat(where(), ": live count ", b.live, " but ", live, " ids"));
  }
  return absl::OkStatus();
}

absl::Status TimingWheel::CheckInvariants() const {
  if (cur_ > static_cast<uint64_t>(clock_.now_tick())) {
    return absl::InternalError(absl::StrCat("cursor ", cur_, " ahead of now ", clock_.now_tick()));
  }
  if (!l0_bits_.SummaryConsistent() || !l1_bits_.SummaryConsistent()) {
    return absl::InternalError("occupancy summary word disagrees with its words");
  }
  size_t in_buckets = 0;
  for (int level = 0; level < 2; ++level) {
    const std::vector<Bucket>& buckets = level == 0 ? l0_ : l1_;
    const OccupancyBitmap& bits = level == 0 ? l0_bits_ : l1_bits_;
    for (uint32_t i = 0; i < kSlots; ++i) {
      const Bucket& b = buckets[i];
      // Tight pass first: an empty bucket must be unmarked and reset.
      if (b.live == 0 && !bits.Test(i) && b.ids.empty() && b.head == 0) continue;
      if (absl::Status s = CheckBucket(b, bits, level, i); !s.ok()) return s;
      in_buckets += b.live;
    }
  }
  if (overflow_.size() != overflow_key_.size()) {
    return absl::InternalError("overflow map and its slot index differ in size");
  }
  for (const auto& [key, slot] : overflow_) {
    if (InWheel(key.first)) {
      return absl::InternalError(absl::StrCat("overflow slot ", slot, " is within the wheel"));
    }
    auto it = overflow_key_.find(slot);
    if (it == overflow_key_.end() || it->second != key || slot >= recs_.size() ||
        recs_[slot].pos != kOverflow) {
      return absl::InternalError(absl::StrCat("overflow slot ", slot, " is not indexed"));
    }
  }
  // Every pending record points at an entry that names it; with the live
  // counts above this makes the stale/live split exact.
  size_t pending = 0;
  for (Slot s = 0; s < recs_.size(); ++s) {
    const Rec& r = recs_[s];
    if (r.pos == kFree) continue;
    ++pending;
    if (r.pos == kOverflow) continue;
    uint64_t tick = TickOf(r);
    const Bucket& b = InLevel0(tick) ? l0_[tick & kMask] : l1_[(tick >> kLevelBits) & kMask];
    if (r.pos < b.head || r.pos >= b.ids.size() || b.ids[r.pos] != s) {
      return absl::InternalError(
          absl::StrCat("slot ", s, " record points at an entry of another slot"));
    }
  }
  if (pending != size_ || in_buckets + overflow_.size() != size_) {
    return absl::InternalError(absl::StrCat("size ", size_, ", records pending ", pending,
                                            ", in buckets ", in_buckets, ", overflow ",
                                            overflow_.size()));
  }
  return absl::OkStatus();
}

}  // namespace mailretry::internal
