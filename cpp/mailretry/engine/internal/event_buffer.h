// File: engine/internal/event_buffer.h
// -----------------------------------------------------------------------------
// The engine's undrained events and the storage their texts point into.
//
// An Event (engine.h) holds string_views and a pointer, no memory of its own:
// its texts are copied into an EventTexts arena (chunks filled front to back,
// so a batch of events writes a few contiguous lines instead of a heap block
// per string), its destination-level part into the arena's list of
// DestinationEventInfo. There are two arenas: one for the buffered events and
// one for the batch handed out by the last drain, which must stay valid until
// the next drain (the lifetime engine.h documents). A drain swaps them and
// empties the older one, keeping its chunks for reuse.
#ifndef MAILRETRY_ENGINE_INTERNAL_EVENT_BUFFER_H_
#define MAILRETRY_ENGINE_INTERNAL_EVENT_BUFFER_H_

#include <algorithm>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mailretry/engine/engine.h"

namespace mailretry::internal {

// Append-only storage for event texts and destination-level parts, emptied
// as a whole. Addresses are stable until Clear.
class EventTexts {
 public:
  // A copy of `s` in the arena (empty views are returned as they are).
  std::string_view Keep(std::string_view s) {
    if (s.empty()) return {};
    if (s.size() > kChunk / 4) return KeepLarge(s);
    if (chunks_.empty() || used_ + s.size() > kChunk) NextChunk();
    char* p = chunks_[chunk_].get() + used_;
    std::copy(s.begin(), s.end(), p);
    used_ += s.size();
    return {p, s.size()};
  }
  // a + b + c in the arena, without a temporary string.
  std::string_view KeepCat(std::string_view a, std::string_view b, std::string_view c) {
    const size_t n = a.size() + b.size() + c.size();
    if (n == 0 || n > kChunk / 4) return Keep(std::string(a).append(b).append(c));
    if (chunks_.empty() || used_ + n > kChunk) NextChunk();
    char* const p = chunks_[chunk_].get() + used_;
    char* q = std::copy(a.begin(), a.end(), p);
    q = std::copy(b.begin(), b.end(), q);
    std::copy(c.begin(), c.end(), q);
    used_ += n;
    return {p, n};
  }
  DestinationEventInfo& NewInfo() { return infos_.emplace_back(); }
  // Drops every text and info; keeps a few chunks for reuse.
  void Clear();
  // Member-wise, without allocating (std::swap's temporary EventTexts built a
  // deque, one allocation per drain).
  void swap(EventTexts& o) noexcept {
    chunks_.swap(o.chunks_);
    std::swap(chunk_, o.chunk_);
    std::swap(used_, o.used_);
    large_.swap(o.large_);
    std::swap(large_bytes_, o.large_bytes_);
    infos_.swap(o.infos_);
  }
  size_t MemoryBytes() const;

 private:
  static constexpr size_t kChunk = size_t{64} << 10;
  static constexpr size_t kKeepChunks = 16;  // 1 MiB kept across drains at most
  void NextChunk();
  std::string_view KeepLarge(std::string_view s);

  std::vector<std::unique_ptr<char[]>> chunks_;  // kChunk bytes each
  size_t chunk_ = 0;                             // the chunk being filled
  size_t used_ = 0;                              // bytes used in it
  std::vector<std::unique_ptr<char[]>> large_;   // texts longer than kChunk / 4
  size_t large_bytes_ = 0;
  std::deque<DestinationEventInfo> infos_;
};

// The undrained events, oldest first, with a moving head for the ones dropped
// beyond EngineConfig::max_buffered_events.
class EventBuffer {
 public:
  // Vector capacity (in events, 168 bytes each) kept from a caller's drained
  // batch for the next one, at most 44 MB: refilling room that was written
  // last round stays in the cache, where a new vector grown by doubling
  // missed on every line (and copied the events on each doubling). Peak
  // memory does not grow: the caller's batch held that room already. A drain
  // of a larger batch gives it back to the allocator.
  static constexpr size_t kMaxSpare = size_t{1} << 18;

  size_t size() const { return v_.size() - head_; }
  bool empty() const { return size() == 0; }
  std::vector<Event>::const_iterator begin() const {
    return v_.begin() + static_cast<ptrdiff_t>(head_);
  }
  std::vector<Event>::const_iterator end() const { return v_.end(); }
  Event& emplace_back() { return v_.emplace_back(); }
  // A copy of `s` that lives as long as the buffered events.
  std::string_view Keep(std::string_view s) { return texts_.Keep(s); }
  std::string_view KeepCat(std::string_view a, std::string_view b, std::string_view c = {}) {
    return texts_.KeepCat(a, b, c);
  }
  // A destination-level part for a buffered event.
  DestinationEventInfo& NewInfo() { return texts_.NewInfo(); }
  // Appends a copy of `e` whose texts and info live in this buffer.
  void PushCopy(const Event& e);
  // Drops the oldest event. Once the dropped ones are half of the vector
  // their room, and their texts', is given back (amortized O(1) per drop).
  void pop_front();
  // Removes and returns every event, oldest first; their texts stay valid
  // until the next Take. `recycle` (may be null) is the caller's previous
  // batch: its vector's capacity is reused.
  std::vector<Event> Take(std::vector<Event>* recycle);
  size_t MemoryBytes() const {
    return v_.capacity() * sizeof(Event) + texts_.MemoryBytes() + drained_.MemoryBytes();
  }

 private:
  std::vector<Event> v_;
  size_t head_ = 0;     // first live event
  EventTexts texts_;    // the buffered events' texts
  EventTexts drained_;  // the last drained batch's texts
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_INTERNAL_EVENT_BUFFER_H_
