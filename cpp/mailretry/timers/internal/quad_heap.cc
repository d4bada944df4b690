#include "mailretry/timers/internal/quad_heap.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "absl/strings/str_cat.h"

namespace mailretry::internal {

QuadHeap::QuadHeap(const TimerOptions& options) : clock_(options.start, absl::Milliseconds(1)) {}

void QuadHeap::Reserve(size_t slots, size_t pending) {
  if (slots > pos_.size()) pos_.resize(slots, kNotPending);
  heap_.reserve(pending);
}

void QuadHeap::EnsureSlot(Slot slot) {
  if (slot < pos_.size()) return;
  // Geometric growth so that ascending slot ids cost amortized O(1).
  size_t want = std::max<size_t>(size_t{slot} + 1, pos_.size() + pos_.size() / 2);
  want = std::min<size_t>(want, size_t{kMaxSlot} + 1);
  pos_.resize(want, kNotPending);
}

uint32_t QuadHeap::NextSeq() {
  if (next_seq_ == std::numeric_limits<uint32_t>::max()) Renumber();
  return next_seq_++;
}

// The sequence counter wrapped: give pending entries the ranks of their
// (due, seq) order. Order is unchanged, so the heap stays a heap. O(n log n)
// once per 2^32 - n insertions.
void QuadHeap::Renumber() {
  std::vector<uint32_t> idx(heap_.size());
  std::iota(idx.begin(), idx.end(), 0u);
  std::sort(idx.begin(), idx.end(),
            [this](uint32_t a, uint32_t b) { return Before(heap_[a], heap_[b]); });
  for (uint32_t rank = 0; rank < idx.size(); ++rank) heap_[idx[rank]].seq = rank;
  next_seq_ = static_cast<uint32_t>(idx.size());
}

void QuadHeap::SiftUp(uint32_t i, Entry e) {
  while (i > 0) {
    uint32_t parent = (i - 1) / 4;
    if (!Before(e, heap_[parent])) break;
    heap_[i] = heap_[parent];
    pos_[heap_[i].slot] = i;
    i = parent;
  }
  heap_[i] = e;
  pos_[e.slot] = i;
}

void QuadHeap::SiftDown(uint32_t i, Entry e) {
  const uint32_t n = static_cast<uint32_t>(heap_.size());
  for (;;) {
    uint32_t first = 4 * i + 1;
    if (first >= n) break;
    uint32_t best = first;
    uint32_t last = std::min(first + 4, n);
    for (uint32_t c = first + 1; c < last; ++c) {
      if (Before(heap_[c], heap_[best])) best = c;
    }
    if (!Before(heap_[best], e)) break;
    heap_[i] = heap_[best];
    pos_[heap_[i].slot] = i;
    i = best;
  }
  heap_[i] = e;
  pos_[e.slot] = i;
}

void QuadHeap::RemoveAt(uint32_t i) {
  pos_[heap_[i].slot] = kNotPending;
  Entry last = heap_.back();
  heap_.pop_back();
  if (i == heap_.size()) return;
  if (i > 0 && Before(last, heap_[(i - 1) / 4])) {
    SiftUp(i, last);
  } else {
    SiftDown(i, last);
  }
}

absl::Status QuadHeap::Schedule(Slot slot, absl::Time due) {
  if (slot > kMaxSlot) return absl::OutOfRangeError(absl::StrCat("slot ", slot, " > kMaxSlot"));
  if (Contains(slot)) return absl::AlreadyExistsError(absl::StrCat("slot ", slot, " is pending"));
  absl::StatusOr<int64_t> tick = clock_.DueTick(due);
  if (!tick.ok()) return tick.status();
  EnsureSlot(slot);
  heap_.push_back({});
  SiftUp(static_cast<uint32_t>(heap_.size() - 1),
         Entry{static_cast<uint64_t>(*tick), NextSeq(), slot});
  return absl::OkStatus();
}

absl::Status QuadHeap::Cancel(Slot slot) {
  if (!Contains(slot)) return absl::NotFoundError(absl::StrCat("slot ", slot, " is not pending"));
  RemoveAt(pos_[slot]);
  return absl::OkStatus();
}

absl::Status QuadHeap::Reschedule(Slot slot, absl::Time due) {
  if (!Contains(slot)) return absl::NotFoundError(absl::StrCat("slot ", slot, " is not pending"));
  absl::StatusOr<int64_t> tick = clock_.DueTick(due);
  if (!tick.ok()) return tick.status();
  uint32_t i = pos_[slot];
  Entry e{static_cast<uint64_t>(*tick), NextSeq(), slot};
  // The new seq is larger than any pending one, so e only moves up if its due
  // got earlier; otherwise it can only sink.
  if (Before(e, heap_[i])) {
    SiftUp(i, e);
  } else {
    SiftDown(i, e);
  }
  return absl::OkStatus();
}

absl::Status QuadHeap::PopDue(absl::Time now, std::vector<Slot>* out, size_t max_items) {
  absl::StatusOr<int64_t> now_tick = clock_.Advance(now);
  if (!now_tick.ok()) return now_tick.status();
  const uint64_t limit = static_cast<uint64_t>(*now_tick);
  for (size_t popped = 0; popped < max_items && !heap_.empty() && heap_[0].due <= limit; ++popped) {
    out->push_back(heap_[0].slot);
    RemoveAt(0);
  }
  return absl::OkStatus();
}

std::optional<absl::Time> QuadHeap::NextDeadline() const {
  if (heap_.empty()) return std::nullopt;
  return clock_.TickTime(static_cast<int64_t>(heap_[0].due));
}

absl::StatusOr<absl::Time> QuadHeap::DueTime(Slot slot) const {
  if (!Contains(slot)) return absl::NotFoundError(absl::StrCat("slot ", slot, " is not pending"));
  return clock_.TickTime(static_cast<int64_t>(heap_[pos_[slot]].due));
}

size_t QuadHeap::MemoryBytes() const {
  return sizeof(*this) + heap_.capacity() * sizeof(Entry) + pos_.capacity() * sizeof(uint32_t);
}

absl::Status QuadHeap::CheckInvariants() const {
  for (uint32_t i = 0; i < heap_.size(); ++i) {
    const Entry& e = heap_[i];
    if (e.slot >= pos_.size() || pos_[e.slot] != i) {
      return absl::InternalError(absl::StrCat("heap[", i, "] slot ", e.slot, " index mismatch"));
    }
    if (i > 0 && Before(e, heap_[(i - 1) / 4])) {
      return absl::InternalError(absl::StrCat("heap order broken at ", i));
    }
    if (e.seq >= next_seq_) {
      return absl::InternalError(absl::StrCat("heap[", i, "] seq ", e.seq, " not yet issued"));
    }
  }
  size_t pending = 0;
  for (uint32_t p : pos_) pending += p != kNotPending;
  if (pending != heap_.size()) {
    return absl::InternalError(
        absl::StrCat(pending, " slots claim a position, heap holds ", heap_.size()));
  }
  return absl::OkStatus();
}

}  // namespace mailretry::internal
