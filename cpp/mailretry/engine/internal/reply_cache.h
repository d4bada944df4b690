// File: engine/internal/reply_cache.h
// -----------------------------------------------------------------------------
// A bounded memo of what the engine's report path derives from a reply: the
// parsed Reply of a raw text, and a reply's canonical text (Reply::ToString)
// with its classification. Senders see few distinct replies (a simulator run
// sends a few hundred texts millions of times), and parsing, formatting and
// classifying the same text again was most of a report's cost.
//
// Both are pure functions of their key (ParseReply of the raw text; the
// classifier is immutable for the engine's life, and only user rules scoped by
// destination make the result depend on the destination, so the scope is part
// of the key only then), so a hit returns exactly what a recomputation would:
// caching changes no decision. Texts longer than kMaxCachedText are not
// cached (long replies rarely repeat); when a table is full it is cleared, so
// memory stays bounded (about kMaxEntries × (kMaxCachedText + 100) bytes).
#ifndef MAILRETRY_ENGINE_INTERNAL_REPLY_CACHE_H_
#define MAILRETRY_ENGINE_INTERNAL_REPLY_CACHE_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/common/internal/strings.h"
#include "mailretry/reply/reply.h"

namespace mailretry::internal {

class ReplyCache {
 public:
  static constexpr size_t kMaxEntries = 4096;
  static constexpr size_t kMaxCachedText = 512;

  // What the report path needs from a reply.
  struct Facts {
    std::string text;    // Reply::ToString()
    std::string status;  // the enhanced code as text ("4.7.0"), or empty
    Classification classification;
  };

  // `by_destination`: some user rule is scoped by destination, so the
  // classification depends on it.
  explicit ReplyCache(bool by_destination = false) : by_destination_(by_destination) {}

  // The facts of `reply` for a destination (`scope` its interned id,
  // `destination` its name). The reference is valid until the next call.
  const Facts& Get(const Reply& reply, uint32_t scope, std::string_view destination,
                   const Classifier& classifier) {
    const KeyView k{static_cast<uint8_t>(reply.transport), reply.code, PackEnhanced(reply),
                    by_destination_ ? scope : 0, reply.text};
    if (auto it = facts_.find(k); it != facts_.end()) return it->second;
    return Miss(k, reply, destination, classifier);
  }

  // A parsed raw text, with a memo of its Facts: a report by text then costs
  // one lookup (by the raw text) instead of two (raw text, then the parsed
  // reply's key).
  struct Parsed {
    Reply reply;
    // Valid while facts_gen == the cache's facts_gen_ (bumped by every
    // insertion into or clearing of the facts table, which may move its
    // entries). Only set when the facts do not depend on the destination.
    mutable const Facts* facts = nullptr;
    mutable uint64_t facts_gen = 0;
  };

  // ParseReply(raw), memoized. The pointer is valid until the next call.
  absl::StatusOr<const Parsed*> ParseEntry(std::string_view raw) {
    if (auto it = parsed_.find(ToAbsl(raw)); it != parsed_.end()) return &it->second;
    return ParseMiss(raw);
  }
  absl::StatusOr<const Reply*> Parse(std::string_view raw) {
    absl::StatusOr<const Parsed*> p = ParseEntry(raw);
    if (!p.ok()) return p.status();
    return &(*p)->reply;
  }

  // Get(p.reply, ...), using and refreshing p's memo. Same answer as Get.
  const Facts& GetParsed(const Parsed& p, uint32_t scope, std::string_view destination,
                         const Classifier& classifier) {
    if (!by_destination_ && p.facts != nullptr && p.facts_gen == facts_gen_) return *p.facts;
    const Facts& f = Get(p.reply, scope, destination, classifier);
    if (!by_destination_ && &f != &uncached_) {
      p.facts = &f;
      p.facts_gen = facts_gen_;
    }
    return f;
  }

  // Replies registered by Engine::InternReply, by ReplyHandle::index. Each
  // is a Parsed, so a report by handle uses GetParsed's memo: no hashing of
  // the reply. Intern runs under the engine's lock; Interned may run without
  // it (Engine::Report resolves the handle before taking the lock): entries
  // never move (fixed chunks) and the count is published after the entry.
  static constexpr uint32_t kInternChunk = 256;
  static constexpr uint32_t kMaxInterned = 1u << 16;
  // The new entry's index, or kMaxInterned when the table is full.
  uint32_t Intern(Reply reply);
  // The entry, or null for an index never handed out.
  const Parsed* Interned(uint32_t index) const {
    if (index >= interned_n_.load(std::memory_order_acquire)) return nullptr;
    return &interned_[index / kInternChunk][index % kInternChunk];
  }

  size_t MemoryBytes() const;

 private:
  struct KeyView {
    uint8_t transport;
    int code;
    uint32_t enhanced;
    uint32_t scope;
    std::string_view text;
    friend bool operator==(const KeyView& a, const KeyView& b) {
      return a.transport == b.transport && a.code == b.code && a.enhanced == b.enhanced &&
             a.scope == b.scope && a.text == b.text;
    }
  };
  struct Key {
    uint8_t transport;
    int code;
    uint32_t enhanced;
    uint32_t scope;
    std::string text;
    KeyView view() const { return {transport, code, enhanced, scope, text}; }
  };
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(const KeyView& k) const {
      return absl::HashOf(k.transport, k.code, k.enhanced, k.scope, k.text);
    }
    size_t operator()(const Key& k) const { return (*this)(k.view()); }
  };
  struct KeyEq {
    using is_transparent = void;
    static KeyView V(const KeyView& k) { return k; }
    static KeyView V(const Key& k) { return k.view(); }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return V(a) == V(b);
    }
  };

  static uint32_t PackEnhanced(const Reply& r) {
    if (!r.enhanced) return 0;
    return ((uint32_t{r.enhanced->klass} << 20) | (uint32_t{r.enhanced->subject} << 10) |
            r.enhanced->detail) +
           1;
  }
  const Facts& Miss(const KeyView& k, const Reply& reply, std::string_view destination,
                    const Classifier& classifier);
  absl::StatusOr<const Parsed*> ParseMiss(std::string_view raw);

  bool by_destination_;
  absl::flat_hash_map<Key, Facts, KeyHash, KeyEq> facts_;
  uint64_t facts_gen_ = 1;  // see Parsed::facts_gen
  absl::flat_hash_map<std::string, Parsed> parsed_;
  Facts uncached_;  // the answer for a text too long to cache
  Parsed uncached_reply_;
  std::array<std::unique_ptr<Parsed[]>, kMaxInterned / kInternChunk> interned_;
  std::atomic<uint32_t> interned_n_{0};
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_INTERNAL_REPLY_CACHE_H_
