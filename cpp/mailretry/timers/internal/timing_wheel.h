// File: timers/internal/timing_wheel.h
// -----------------------------------------------------------------------------
// TimerBackend::kWheel: a tickless two-level timing wheel with array buckets.
//
// Time is counted in ticks of TimerOptions::resolution (1 s by default); a due
// time is rounded up to a tick, so a timer never fires early and at most one
// resolution step late.
//
//   level 0: 4096 buckets of one tick each: the cursor's 4096-tick block
//   level 1: 4096 buckets of 4096 ticks each, a ring over the next 4095
//            blocks (always >= 4095 * 4096 ticks ahead: 194 days at 1 s,
//            19 days at 100 ms)
//   overflow: an ordered map (tick, seq) -> slot for anything later
//
// Where a timer lives is a function of its tick and the cursor `cur_` (the
// lowest tick that may still hold timers): same 4096-block as cur_ -> level 0,
// one of the next 4095 blocks -> level 1, else overflow. When the cursor
// enters a block, that block's level-1 bucket is moved ("cascaded") into
// level 0 in one sequential pass, so each timer moves at most once (and once
// more if it started in overflow, which a retry schedule of days never does).
//
// Why array buckets with in-place tombstones (and not lists or swap-remove):
// * Popping a bucket reads its slot ids sequentially; a linked list pays one
//   dependent cache miss per timer (about 145 against 30 ns per pop at 10M
//   pending, measured when this design was chosen).
// * Buckets are only ever appended to, and a cascade appends in bucket order,
//   so every level-0 bucket (one tick) is already in insertion order: FIFO
//   among equal due ticks comes for free. Swap-remove would break it, so
//   Cancel (and the remove half of Reschedule) leaves the entry where it is
//   and only frees the per-slot record {tick, position}: an entry is live iff
//   its slot's record still points at that bucket and position (IsLive). That
//   makes a cancel one cache line (the record) instead of two dependent ones.
//   A bucket whose live count drops to zero is reset; one with more stale
//   entries than live ids is compacted.
// * The record array is allocated on transparent huge pages when large: at
//   10M slots it is 80 MB, and with 4 KiB pages every random access also paid
//   a TLB miss (a nested page walk on a VM).
// * No allocation per timer: bucket vectors grow geometrically; level-0
//   buckets keep a small capacity between uses, a cascaded level-1 bucket
//   hands its memory back.
//
// Occupancy: one 64-bit summary word over 64 words of bits per level, so the
// next non-empty bucket is two count-trailing-zeros away. NextDeadline() and an
// empty PopDue() are O(1).
//
// NextDeadline() is exact when the earliest timer is in level 0 or overflow.
// When it is in level 1 the wheel returns the earliest tick ever scheduled into
// that bucket (or the bucket's start); a Cancel can leave it early. It is never
// later than the true earliest due time, and PopDue at that time cascades the
// bucket, after which it is exact: a host that sleeps until NextDeadline()
// wakes up at most once for nothing per cascaded bucket.
//
// Memory: 8 B per slot id (record) + 4 B per pending timer (bucket entry) +
// vector slack and stale entries; fixed ~200 KiB of bucket headers and bitmaps.
#ifndef MAILRETRY_TIMERS_INTERNAL_TIMING_WHEEL_H_
#define MAILRETRY_TIMERS_INTERNAL_TIMING_WHEEL_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailretry/common/internal/large_array.h"
#include "mailretry/timers/internal/timer_clock.h"
#include "mailretry/timers/timer_queue.h"

namespace mailretry::internal {

// 4096 bits with a summary word: Set/Clear/First in O(1).
class OccupancyBitmap {
 public:
  static constexpr uint32_t kBits = 4096;
  void Set(uint32_t i) {
    words_[i >> 6] |= uint64_t{1} << (i & 63);
    summary_ |= uint64_t{1} << (i >> 6);
  }
  void Clear(uint32_t i) {
    words_[i >> 6] &= ~(uint64_t{1} << (i & 63));
    if (words_[i >> 6] == 0) summary_ &= ~(uint64_t{1} << (i >> 6));
  }
  bool Test(uint32_t i) const { return (words_[i >> 6] >> (i & 63)) & 1; }
  bool empty() const { return summary_ == 0; }
  // Lowest set bit; requires !empty().
  uint32_t First() const {
    uint32_t w = static_cast<uint32_t>(__builtin_ctzll(summary_));
    return w * 64 + static_cast<uint32_t>(__builtin_ctzll(words_[w]));
  }
  // Lowest set bit at or after i, wrapping around; requires !empty().
  uint32_t FirstFrom(uint32_t i) const {
    uint32_t w = i >> 6;
    uint64_t in_word = words_[w] & (~uint64_t{0} << (i & 63));
    if (in_word != 0) return w * 64 + static_cast<uint32_t>(__builtin_ctzll(in_word));
    uint64_t later = w == 63 ? 0 : summary_ & (~uint64_t{0} << (w + 1));
    if (later == 0) return First();
    uint32_t lw = static_cast<uint32_t>(__builtin_ctzll(later));
    return lw * 64 + static_cast<uint32_t>(__builtin_ctzll(words_[lw]));
  }
  // For CheckInvariants: the summary mirrors the words.
  bool SummaryConsistent() const {
    for (uint32_t w = 0; w < 64; ++w) {
      if (((summary_ >> w) & 1) != (words_[w] != 0)) return false;
    }
    return true;
  }

 private:
  uint64_t summary_ = 0;
  std::array<uint64_t, 64> words_{};
};

class TimingWheel final : public TimerQueue {
 public:
  explicit TimingWheel(const TimerOptions& options);

  absl::Status Schedule(Slot slot, absl::Time due) override;
  absl::Status Cancel(Slot slot) override;
  absl::Status Reschedule(Slot slot, absl::Time due) override;
  absl::Status ScheduleUnixMs(Slot slot, int64_t due_ms) override;
  absl::Status RescheduleUnixMs(Slot slot, int64_t due_ms) override;
  absl::Status PopDue(absl::Time now, std::vector<Slot>* out,
                      size_t max_items = std::numeric_limits<size_t>::max()) override;
  std::optional<absl::Time> NextDeadline() const override;
  size_t size() const override { return size_; }
  bool Contains(Slot slot) const override {
    return slot < recs_.size() && recs_[slot].pos != kFree;
  }
  absl::StatusOr<absl::Time> DueTime(Slot slot) const override;
  size_t MemoryBytes() const override;
  absl::Status CheckInvariants() const override;

  // Pre-sizes the per-slot records for slots [0, slots).
  void Reserve(size_t slots);

  // Ticks per level bucket and per wheel (for tests and benchmarks).
  static constexpr int kLevelBits = 12;
  // Timers due this many ticks after the cursor's block start or later go to
  // the overflow map.
  static constexpr uint64_t kRangeTicks = uint64_t{1} << (2 * kLevelBits);

 private:
  static constexpr uint32_t kSlots = 1u << kLevelBits;
  static constexpr uint32_t kMask = kSlots - 1;
  static constexpr uint32_t kFree = std::numeric_limits<uint32_t>::max();
  static constexpr uint32_t kOverflow = kFree - 1;
  // Compact a bucket once it holds more tombstones than this and than live ids.
  static constexpr uint32_t kMinDeadToCompact = 32;
  // A drained level-0 bucket keeps at most this capacity (in ids).
  static constexpr size_t kKeepCapacity = 256;

  struct Rec {
    uint32_t tick_lo;  // low 32 bits of the due tick (wheel ticks are < cur_ + 2^24)
    uint32_t pos;      // index in its bucket, or kFree / kOverflow
  };
  struct Bucket {
    std::vector<Slot> ids;  // append-only; may hold stale entries (see IsLive)
    uint32_t head = 0;      // ids before head were popped (partial drain)
    uint32_t live = 0;
  };
  using OverflowKey = std::pair<uint64_t, uint64_t>;  // (tick, insertion seq)

  uint64_t TickOf(const Rec& r) const {
    return cur_ + static_cast<uint32_t>(r.tick_lo - static_cast<uint32_t>(cur_));
  }
  bool InLevel0(uint64_t t) const { return (t >> kLevelBits) == (cur_ >> kLevelBits); }
  bool InWheel(uint64_t t) const { return (t >> kLevelBits) - (cur_ >> kLevelBits) < kSlots; }
  // First tick of the block that level-1 bucket j stands for.
  uint64_t Level1Start(uint32_t j) const {
    uint64_t blk = cur_ >> kLevelBits;
    return (blk + ((j - blk) & kMask)) << kLevelBits;
  }
  // The level-1 bucket due first: the ring starts after the cursor's block.
  uint32_t NextLevel1() const { return l1_bits_.FirstFrom((cur_ >> kLevelBits) & kMask); }

  void EnsureSlot(Slot slot) {
    if (slot >= recs_.size()) Grow(slot);
  }
  void Grow(Slot slot);
  // Schedule / Reschedule once the due tick is known.
  absl::Status ScheduleTick(Slot slot, absl::StatusOr<int64_t> tick);
  absl::Status RescheduleTick(Slot slot, absl::StatusOr<int64_t> tick);
  void Place(Slot slot, uint64_t tick);
  void Append(Bucket& b, OccupancyBitmap& bits, uint32_t index, Slot slot);
  void Remove(Slot slot);
  void ResetBucket(Bucket& b, OccupancyBitmap& bits, uint32_t index, size_t keep_capacity);
  void Compact(Bucket& b, int level, uint32_t index);
  void Cascade(uint32_t j, uint64_t start);
  // Whether entry k of bucket (level, index), naming slot s, is s's live
  // entry: s's record points at position k and its tick maps to this bucket.
  // Positions in a bucket are only reused after a reset or a compaction,
  // both of which drop the stale entries, so a stale entry never matches.
  bool IsLive(Slot s, uint32_t k, int level, uint32_t index) const {
    const Rec& r = recs_[s];
    if (r.pos != k) return false;  // also kFree / kOverflow
    uint64_t tick = TickOf(r);
    return level == 0 ? InLevel0(tick) && (tick & kMask) == index
                      : !InLevel0(tick) && ((tick >> kLevelBits) & kMask) == index;
  }
  void SetCursor(uint64_t tick);
  void MigrateOverflow();
  absl::Status CheckBucket(const Bucket& b, const OccupancyBitmap& bits, int level,
                           uint32_t index) const;

  TimerClock clock_;
  uint64_t cur_ = 0;
  size_t size_ = 0;
  LargeVector<Rec> recs_;  // on huge pages: see common/internal/large_array.h
  std::vector<Bucket> l0_;
  std::vector<Bucket> l1_;
  std::vector<uint64_t> l1_min_;  // earliest tick placed in each level-1 bucket
  OccupancyBitmap l0_bits_;
  OccupancyBitmap l1_bits_;
  std::map<OverflowKey, Slot> overflow_;
  absl::flat_hash_map<Slot, OverflowKey> overflow_key_;
  uint64_t overflow_seq_ = 0;
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_TIMERS_INTERNAL_TIMING_WHEEL_H_
