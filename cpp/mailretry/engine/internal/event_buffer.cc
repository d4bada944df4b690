// File: engine/internal/event_buffer.cc
// The event buffer's slow paths: new chunks, long texts, dropping, draining.
#include "mailretry/engine/internal/event_buffer.h"

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace mailretry::internal {

void EventTexts::NextChunk() {
  if (!chunks_.empty()) ++chunk_;
  // new char[], not make_unique: the chunk is written before it is read,
  // zeroing it first would touch every line twice.
  if (chunk_ == chunks_.size()) chunks_.emplace_back(new char[kChunk]);
  used_ = 0;
}

std::string_view EventTexts::KeepLarge(std::string_view s) {
  large_.emplace_back(new char[s.size()]);
  std::copy(s.begin(), s.end(), large_.back().get());
  large_bytes_ += s.size();
  return {large_.back().get(), s.size()};
}

void EventTexts::Clear() {
  if (chunks_.size() > kKeepChunks) chunks_.resize(kKeepChunks);
  chunk_ = 0;
  used_ = 0;
  large_.clear();
  large_bytes_ = 0;
  if (!infos_.empty()) infos_.clear();  // most drains have none: skip the deque's walk
}

size_t EventTexts::MemoryBytes() const {
  return chunks_.size() * kChunk + large_bytes_ + infos_.size() * sizeof(DestinationEventInfo);
}

void EventBuffer::PushCopy(const Event& e) {
  Event& c = v_.emplace_back(e);
  c.status = Keep(e.status);
  c.reply = Keep(e.reply);
  c.detail = Keep(e.detail);
  c.rule = Keep(e.rule);
  if (e.destination_info != nullptr) {
    DestinationEventInfo& info = NewInfo();
    info = *e.destination_info;
    c.destination_info = &info;
  }
}

void EventBuffer::pop_front() {
  v_[head_] = Event{};
  ++head_;
  if (head_ >= 1024 && head_ * 2 >= v_.size()) {
    // Copy the live events' texts into a fresh arena: an engine that is
    // never drained keeps only what its buffered events need.
    std::vector<Event> live(v_.begin() + static_cast<ptrdiff_t>(head_), v_.end());
    EventTexts old = std::move(texts_);
    texts_ = EventTexts();
    v_.clear();
    head_ = 0;
    for (const Event& e : live) PushCopy(e);
    old.Clear();
  }
}

std::vector<Event> EventBuffer::Take(std::vector<Event>* recycle) {
  // The batch handed out before this one is no longer valid: its arena
  // becomes the buffer's, emptied; this batch's arena is kept until the next
  // Take.
  texts_.swap(drained_);
  texts_.Clear();
  std::vector<Event> out;
  out.swap(v_);
  if (head_ > 0) out.erase(out.begin(), out.begin() + static_cast<ptrdiff_t>(head_));
  head_ = 0;
  if (recycle != nullptr) {
    v_.swap(*recycle);
    v_.clear();
    if (v_.capacity() > kMaxSpare) std::vector<Event>().swap(v_);
  }
  // Room for a similar batch next time, within reason: growing from empty
  // moved every event again on each doubling.
  if (v_.capacity() < std::min<size_t>(out.size(), 4096)) {
    v_.reserve(std::min<size_t>(out.size(), 4096));
  }
  return out;
}

}  // namespace mailretry::internal
