// File: engine/internal/reply_cache.cc
// The cache misses of ReplyCache (reply_cache.h): compute, and keep the
// answer when the text is short enough.
#include "mailretry/engine/internal/reply_cache.h"

#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace mailretry::internal {

const ReplyCache::Facts& ReplyCache::Miss(const KeyView& k, const Reply& reply,
                                          std::string_view destination,
                                          const Classifier& classifier) {
  Facts f{reply.ToString(), reply.enhanced ? reply.enhanced->ToString() : std::string(),
          classifier.Classify(reply, destination)};
  if (k.text.size() > kMaxCachedText) {
    uncached_ = std::move(f);
    return uncached_;
  }
  if (facts_.size() >= kMaxEntries) facts_.clear();
  ++facts_gen_;  // the insertion below may move entries (and clear() dropped them)
  auto [it, inserted] = facts_.emplace(
      Key{k.transport, k.code, k.enhanced, k.scope, std::string(k.text)}, std::move(f));
  return it->second;
}

absl::StatusOr<const ReplyCache::Parsed*> ReplyCache::ParseMiss(std::string_view raw) {
  absl::StatusOr<Reply> r = ParseReply(raw);
  if (!r.ok()) return r.status();
  if (raw.size() > kMaxCachedText) {
    uncached_reply_ = Parsed{*std::move(r)};
    return &uncached_reply_;
  }
  if (parsed_.size() >= kMaxEntries) parsed_.clear();
  auto [it, inserted] = parsed_.emplace(std::string(raw), Parsed{*std::move(r)});
  return &it->second;
}

uint32_t ReplyCache::Intern(Reply reply) {
  const uint32_t n = interned_n_.load(std::memory_order_relaxed);
  if (n >= kMaxInterned) return kMaxInterned;
  std::unique_ptr<Parsed[]>& chunk = interned_[n / kInternChunk];
  if (chunk == nullptr) chunk = std::make_unique<Parsed[]>(kInternChunk);
  chunk[n % kInternChunk].reply = std::move(reply);
  interned_n_.store(n + 1, std::memory_order_release);  // publishes the entry
  return n;
}

size_t ReplyCache::MemoryBytes() const {
  size_t bytes = facts_.capacity() * (sizeof(Key) + sizeof(Facts) + 1) +
                 parsed_.capacity() * (sizeof(std::string) + sizeof(Parsed) + 1);
  auto heap = [](const std::string& s) { return s.capacity() > 15 ? s.capacity() : 0; };
  for (const auto& [key, f] : facts_) bytes += heap(key.text) + heap(f.text) + heap(f.status);
  for (const auto& [raw, p] : parsed_) bytes += heap(raw) + heap(p.reply.text);
  const uint32_t n = interned_n_.load(std::memory_order_acquire);
  bytes += (n + kInternChunk - 1) / kInternChunk * kInternChunk * sizeof(Parsed);
  for (uint32_t i = 0; i < n; ++i) bytes += heap(Interned(i)->reply.text);
  return bytes;
}

}  // namespace mailretry::internal
