// File: timers/internal/boost_heap_queue.h
// -----------------------------------------------------------------------------
// TimerBackend::kBoostHeap: the structure the first design named,
// boost::heap::d_ary_heap<arity 4, mutable, stable>, behind the TimerQueue
// contract. Kept as a reference point: benchmarks/README.md (Timers) measures
// it 3-20x slower than the array heap because mutable d_ary_heap stores values in a
// std::list and sifts list iterators (a dependent miss per comparison).
#ifndef MAILRETRY_TIMERS_INTERNAL_BOOST_HEAP_QUEUE_H_
#define MAILRETRY_TIMERS_INTERNAL_BOOST_HEAP_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/heap/d_ary_heap.hpp"
#include "mailretry/timers/internal/timer_clock.h"
#include "mailretry/timers/timer_queue.h"

namespace mailretry::internal {

class BoostHeapQueue final : public TimerQueue {
 public:
  // Works in 1 ms ticks; options.resolution is ignored.
  explicit BoostHeapQueue(const TimerOptions& options);

  absl::Status Schedule(Slot slot, absl::Time due) override;
  absl::Status Cancel(Slot slot) override;
  absl::Status Reschedule(Slot slot, absl::Time due) override;
  absl::Status PopDue(absl::Time now, std::vector<Slot>* out,
                      size_t max_items = std::numeric_limits<size_t>::max()) override;
  std::optional<absl::Time> NextDeadline() const override;
  size_t size() const override { return heap_.size(); }
  bool Contains(Slot slot) const override { return slot < pending_.size() && pending_[slot]; }
  absl::StatusOr<absl::Time> DueTime(Slot slot) const override;
  // An estimate for the heap part: Boost.Heap does not expose its allocations.
  size_t MemoryBytes() const override;
  absl::Status CheckInvariants() const override;

  void Reserve(size_t slots, size_t pending);

 private:
  struct Node {
    uint64_t due;  // ms tick
    Slot slot;
  };
  // Boost.Heap is a max-heap: "greater due" must rank lower.
  struct Later {
    bool operator()(const Node& a, const Node& b) const { return a.due > b.due; }
  };
  // stable<true>: equal due times pop in insertion order. Reschedule erases
  // and pushes, so it counts as a fresh insertion (update() would keep the old
  // stability count).
  using Heap = boost::heap::d_ary_heap<Node, boost::heap::arity<4>, boost::heap::mutable_<true>,
                                       boost::heap::stable<true>, boost::heap::compare<Later>>;

  void EnsureSlot(Slot slot);

  TimerClock clock_;
  Heap heap_;
  std::vector<Heap::handle_type> handles_;  // by slot; valid where pending_
  std::vector<uint8_t> pending_;
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_TIMERS_INTERNAL_BOOST_HEAP_QUEUE_H_
