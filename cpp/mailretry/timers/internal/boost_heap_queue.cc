#include "mailretry/timers/internal/boost_heap_queue.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace mailretry::internal {

BoostHeapQueue::BoostHeapQueue(const TimerOptions& options)
    : clock_(options.start, absl::Milliseconds(1)) {}

void BoostHeapQueue::Reserve(size_t slots, size_t pending) {
  if (slots > pending_.size()) {
    pending_.resize(slots, 0);
    handles_.resize(slots);
  }
  heap_.reserve(pending);
}

void BoostHeapQueue::EnsureSlot(Slot slot) {
  if (slot < pending_.size()) return;
  size_t want = std::max<size_t>(size_t{slot} + 1, pending_.size() + pending_.size() / 2);
  want = std::min<size_t>(want, size_t{kMaxSlot} + 1);
  pending_.resize(want, 0);
  handles_.resize(want);
}

absl::Status BoostHeapQueue::Schedule(Slot slot, absl::Time due) {
  if (slot > kMaxSlot) return absl::OutOfRangeError(absl::StrCat("slot ", slot, " > kMaxSlot"));
  if (Contains(slot)) return absl::AlreadyExistsError(absl::StrCat("slot ", slot, " is pending"));
  absl::StatusOr<int64_t> tick = clock_.DueTick(due);
  if (!tick.ok()) return tick.status();
  EnsureSlot(slot);
  handles_[slot] = heap_.push(Node{static_cast<uint64_t>(*tick), slot});
  pending_[slot] = 1;
  return absl::OkStatus();
}

absl::Status BoostHeapQueue::Cancel(Slot slot) {
  if (!Contains(slot)) return absl::NotFoundError(absl::StrCat("slot ", slot, " is not pending"));
  heap_.erase(handles_[slot]);
  pending_[slot] = 0;
  return absl::OkStatus();
}

absl::Status BoostHeapQueue::Reschedule(Slot slot, absl::Time due) {
  if (!Contains(slot)) return absl::NotFoundError(absl::StrCat("slot ", slot, " is not pending"));
  absl::StatusOr<int64_t> tick = clock_.DueTick(due);
  if (!tick.ok()) return tick.status();
  heap_.erase(handles_[slot]);
  handles_[slot] = heap_.push(Node{static_cast<uint64_t>(*tick), slot});
  return absl::OkStatus();
}

absl::Status BoostHeapQueue::PopDue(absl::Time now, std::vector<Slot>* out, size_t max_items) {
  absl::StatusOr<int64_t> now_tick = clock_.Advance(now);
  if (!now_tick.ok()) return now_tick.status();
  const uint64_t limit = static_cast<uint64_t>(*now_tick);
  for (size_t popped = 0; popped < max_items && !heap_.empty() && heap_.top().due <= limit;
       ++popped) {
    Slot slot = heap_.top().slot;
    heap_.pop();
    pending_[slot] = 0;
    out->push_back(slot);
  }
  return absl::OkStatus();
}

std::optional<absl::Time> BoostHeapQueue::NextDeadline() const {
  if (heap_.empty()) return std::nullopt;
  return clock_.TickTime(static_cast<int64_t>(heap_.top().due));
}

absl::StatusOr<absl::Time> BoostHeapQueue::DueTime(Slot slot) const {
  if (!Contains(slot)) return absl::NotFoundError(absl::StrCat("slot ", slot, " is not pending"));
  return clock_.TickTime(static_cast<int64_t>((*handles_[slot]).due));
}

size_t BoostHeapQueue::MemoryBytes() const {
  // Per element: a std::list node (two links, the value, the stability
  // counter, malloc header) and one list iterator in the heap's vector.
  constexpr size_t kPerNode = 2 * sizeof(void*) + sizeof(Node) + sizeof(uint64_t) + 16;
  return sizeof(*this) + heap_.size() * (kPerNode + sizeof(void*)) +
         handles_.capacity() * sizeof(Heap::handle_type) + pending_.capacity();
}

absl::Status BoostHeapQueue::CheckInvariants() const {
  size_t pending = 0;
  for (uint8_t p : pending_) pending += p;
  if (pending != heap_.size()) {
    return absl::InternalError(absl::StrCat(pending, " slots pending, heap holds ", heap_.size()));
  }
  for (const Node& n : heap_) {
    if (!Contains(n.slot)) {
      return absl::InternalError(absl::StrCat("heap holds slot ", n.slot, " not marked pending"));
    }
    if ((*handles_[n.slot]).due != n.due) {
      return absl::InternalError(absl::StrCat("slot ", n.slot, " handle points elsewhere"));
    }
    if (n.due < heap_.top().due) {
      return absl::InternalError(absl::StrCat("slot ", n.slot, " is due before the top"));
    }
  }
  return absl::OkStatus();
}

}  // namespace mailretry::internal
