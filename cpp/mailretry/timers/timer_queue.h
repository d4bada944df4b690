// File: timers/timer_queue.h
// -----------------------------------------------------------------------------
// The structure that holds pending retries: dense uint32 slot handles, each
// with a due time. The caller passes time in; nothing here reads a clock.
// Backends (tickless timing wheel, Boost.Heap, indexed 4-ary heap) meet one
// contract and are chosen when the engine is built.
//
//   std::unique_ptr<TimerQueue> q = MakeTimerQueue(TimerBackend::kWheel, {});
//   q->Schedule(7, now + absl::Minutes(15)).IgnoreError();
//   std::vector<Slot> due;
//   q->PopDue(now + absl::Hours(1), &due).IgnoreError();   // due == {7}
#ifndef MAILRETRY_TIMERS_TIMER_QUEUE_H_
#define MAILRETRY_TIMERS_TIMER_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mailretry {

using Slot = uint32_t;

// Largest slot handle accepted; larger ones get OutOfRange. Backends index
// dense per-slot arrays by slot, so memory follows the largest slot ever used
// (8-16 B per slot id below it), not the number pending: hand out slots
// 0..N-1 and reuse freed ones. 2^27 slots keep that worst case near 2 GiB.
inline constexpr Slot kMaxSlot = (Slot{1} << 27) - 1;

enum class TimerBackend : uint8_t {
  kWheel,      // tickless hierarchical timing wheel (default)
  kBoostHeap,  // boost::heap::d_ary_heap<arity 4, mutable, stable>
  kQuadHeap,   // indexed 4-ary heap over packed (due, seq) keys
};
std::string_view TimerBackendName(TimerBackend b);  // "wheel", "boost_heap", "quad_heap"
absl::StatusOr<TimerBackend> ParseTimerBackend(std::string_view name);

struct TimerOptions {
  // Wheel granularity. Due times are rounded UP to a multiple of it, so a
  // timer never fires early and at most one resolution step late. Heaps keep
  // exact times (they also round to 1 ms internally).
  absl::Duration resolution = absl::Seconds(1);
  // The queue's notion of "now" before the first PopDue.
  absl::Time start = absl::UnixEpoch();
};

class TimerQueue {
 public:
  virtual ~TimerQueue() = default;

  // Adds `slot` with due time `due` (a due time at or before the last PopDue's
  // `now` is due at the next PopDue). AlreadyExists if the slot is pending.
  virtual absl::Status Schedule(Slot slot, absl::Time due) = 0;
  // Removes a pending slot. NotFound if it is not pending (unknown or popped).
  virtual absl::Status Cancel(Slot slot) = 0;
  // Moves a pending slot to a new due time (earlier or later); among equal due
  // times it counts as inserted now. NotFound if it is not pending.
  virtual absl::Status Reschedule(Slot slot, absl::Time due) = 0;
  // Schedule / Reschedule with the due time in Unix milliseconds: the same
  // result as passing absl::FromUnixMillis(due_ms). The engine keeps its
  // times in milliseconds; a backend may override these to skip the
  // absl::Time round trip (the wheel does: one conversion per timer
  // operation was a tenth of the engine's timer cost).
  virtual absl::Status ScheduleUnixMs(Slot slot, int64_t due_ms) {
    return Schedule(slot, absl::FromUnixMillis(due_ms));
  }
  virtual absl::Status RescheduleUnixMs(Slot slot, int64_t due_ms) {
    return Reschedule(slot, absl::FromUnixMillis(due_ms));
  }
  // Appends to *out, in due order (equal due times in insertion order), the
  // pending slots with due <= now, at most `max_items` of them; they stop being
  // pending. InvalidArgument if `now` is earlier than a previous PopDue's now.
  virtual absl::Status PopDue(absl::Time now, std::vector<Slot>* out,
                              size_t max_items = std::numeric_limits<size_t>::max()) = 0;
  // Earliest time at which PopDue would return something; nullopt when empty.
  // The host may sleep until then. O(1) on every backend.
  virtual std::optional<absl::Time> NextDeadline() const = 0;
  // Number of pending slots.
  virtual size_t size() const = 0;
  bool empty() const { return size() == 0; }
  // True if `slot` is pending.
  virtual bool Contains(Slot slot) const = 0;
  // Due time of a pending slot (after rounding); NotFound otherwise.
  virtual absl::StatusOr<absl::Time> DueTime(Slot slot) const = 0;
  // Bytes held by the structure (heap allocations included).
  virtual size_t MemoryBytes() const = 0;
  // Full structural self-check for tests: Internal error describing the first
  // broken invariant. O(n).
  virtual absl::Status CheckInvariants() const = 0;
};

std::unique_ptr<TimerQueue> MakeTimerQueue(TimerBackend backend, const TimerOptions& options = {});

}  // namespace mailretry

#endif  // MAILRETRY_TIMERS_TIMER_QUEUE_H_
