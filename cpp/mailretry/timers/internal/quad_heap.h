// File: timers/internal/quad_heap.h
// -----------------------------------------------------------------------------
// TimerBackend::kQuadHeap: an indexed 4-ary min-heap in one flat array.
//
// Each heap entry is 16 bytes {due ms, insertion seq, slot}: four siblings
// share one cache line and most comparisons are decided by the first word.
// A dense per-slot position array (4 bytes) makes Cancel/Reschedule O(log4 n)
// without searching. 20 B per pending timer, not the 12 B of a packed
// (due << 24 | slot) key: the contract needs both a full 32-bit slot and an
// insertion sequence (FIFO among equal due times), and the 12 B layout cannot
// carry both without capping the slot range or the time range.
//
// Exposed (rather than hidden behind MakeTimerQueue) so that benchmarks can call
// the concrete, devirtualized class.
#ifndef MAILRETRY_TIMERS_INTERNAL_QUAD_HEAP_H_
#define MAILRETRY_TIMERS_INTERNAL_QUAD_HEAP_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailretry/timers/internal/timer_clock.h"
#include "mailretry/timers/timer_queue.h"

namespace mailretry::internal {

class QuadHeap final : public TimerQueue {
 public:
  // Heaps always work in 1 ms ticks; options.resolution is ignored.
  explicit QuadHeap(const TimerOptions& options);

  absl::Status Schedule(Slot slot, absl::Time due) override;
  absl::Status Cancel(Slot slot) override;
  absl::Status Reschedule(Slot slot, absl::Time due) override;
  absl::Status PopDue(absl::Time now, std::vector<Slot>* out,
                      size_t max_items = std::numeric_limits<size_t>::max()) override;
  std::optional<absl::Time> NextDeadline() const override;
  size_t size() const override { return heap_.size(); }
  bool Contains(Slot slot) const override {
    return slot < pos_.size() && pos_[slot] != kNotPending;
  }
  absl::StatusOr<absl::Time> DueTime(Slot slot) const override;
  size_t MemoryBytes() const override;
  absl::Status CheckInvariants() const override;

  // Pre-sizes the per-slot index for slots [0, slots) and the heap for
  // `pending` entries, so that a fill does not pay for regrowth.
  void Reserve(size_t slots, size_t pending);
  // Lets tests reach the sequence-wraparound path without 2^32 insertions.
  void SetNextSeqForTesting(uint32_t seq) { next_seq_ = seq; }

 private:
  struct Entry {
    uint64_t due;  // ms tick, see TimerClock
    uint32_t seq;  // insertion order among equal `due`
    Slot slot;
  };
  static constexpr uint32_t kNotPending = std::numeric_limits<uint32_t>::max();

  static bool Before(const Entry& a, const Entry& b) {
    // Branchy on purpose: a cmov chain here makes the next child load wait
    // for the comparison, where a predicted branch lets it start early.
    if (a.due != b.due) return a.due < b.due;
    return a.seq < b.seq;
  }
  uint32_t NextSeq();
  void Renumber();
  void EnsureSlot(Slot slot);
  void SiftUp(uint32_t i, Entry e);
  void SiftDown(uint32_t i, Entry e);
  void RemoveAt(uint32_t i);

  TimerClock clock_;
  std::vector<Entry> heap_;
  std::vector<uint32_t> pos_;  // by slot: index in heap_, or kNotPending
  uint32_t next_seq_ = 0;
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_TIMERS_INTERNAL_QUAD_HEAP_H_
