// File: engine/internal/lease_deadlines.h
// -----------------------------------------------------------------------------
// The deadlines of the leased messages, in a FIFO.
//
// Every lease gets the same timeout and the engine's clock never goes back, so
// lease deadlines arrive in order: a queue ordered by arrival is ordered by
// due time, and the earliest is at its front. This replaces a timer-queue
// entry per lease (a Reschedule when the message is leased and a Cancel when
// it is reported, each touching the wheel's per-slot record and its bucket
// neighbours, scattered over memory) by one append to a sequential array. A
// reported lease's entry is not removed: it goes stale (its message is no
// longer leased under the same id, attempt and deadline) and is dropped when
// it reaches the front.
//
// An entry fires when the engine's timer queue would have popped it, so the
// engine's decisions do not change: on the timing wheel, at the first engine
// time whose tick reaches the deadline's tick rounded up (at most one
// resolution step late); on the heaps, at the deadline itself.
#ifndef MAILRETRY_ENGINE_INTERNAL_LEASE_DEADLINES_H_
#define MAILRETRY_ENGINE_INTERNAL_LEASE_DEADLINES_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "mailretry/timers/timer_queue.h"

namespace mailretry::internal {

class LeaseDeadlines {
 public:
  struct Entry {
    int64_t fire_ms;   // first engine time (Unix ms) at which it is due
    int64_t due_ms;    // the lease deadline itself (MsgRec::timer_ms)
    uint64_t id;       // the leased message and attempt: the entry is current
    uint32_t slot;     // while that message sits in `slot`, leased, with this
    uint16_t attempt;  // attempt and deadline
  };

  // `backend` and `resolution` as the engine's message timer queue; set
  // before the first Push.
  void Configure(TimerBackend backend, absl::Duration resolution);

  // The first engine time at which a deadline `due_ms` is due.
  int64_t FireMs(int64_t due_ms) const;
  // Appends a lease's deadline; deadlines must not decrease.
  void Push(int64_t due_ms, uint32_t slot, uint64_t id, uint16_t attempt) {
    v_.push_back({FireMs(due_ms), due_ms, id, slot, attempt});
  }
  bool empty() const { return head_ == v_.size(); }
  size_t size() const { return v_.size() - head_; }
  const Entry& front() const { return v_[head_]; }
  void pop_front() {
    ++head_;
    if (head_ == v_.size()) {
      v_.clear();
      head_ = 0;
    } else if (head_ >= 4096 && head_ * 2 >= v_.size()) {
      v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void clear() {
    v_.clear();
    head_ = 0;
  }
  std::vector<Entry>::const_iterator begin() const {
    return v_.begin() + static_cast<std::ptrdiff_t>(head_);
  }
  std::vector<Entry>::const_iterator end() const { return v_.end(); }
  size_t MemoryBytes() const { return v_.capacity() * sizeof(Entry); }

 private:
  bool rounds_ = false;  // the wheel: due times round up to a tick
  int64_t res_ns_ = 1;
  absl::Duration resolution_ = absl::Seconds(1);
  std::vector<Entry> v_;
  size_t head_ = 0;
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_INTERNAL_LEASE_DEADLINES_H_
