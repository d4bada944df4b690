#include "mailretry/classify/internal/classifier_matcher.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace mailretry::internal {
namespace {

bool IsWordByte(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsSpaceByte(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// U+2018/U+2019 in UTF-8 starting at p[i]; providers write "doesn’t" as often
// as "doesn't".
bool IsTypographicApostrophe(const unsigned char* p, size_t n, size_t i) {
  return p[i] == 0xE2 && i + 2 < n && p[i + 1] == 0x80 && (p[i + 2] == 0x98 || p[i + 2] == 0x99);
}

// ASCII lowercase, every whitespace byte to ' ', everything else unchanged.
constexpr std::array<unsigned char, 256> MakeFold() {
  std::array<unsigned char, 256> t{};
  for (int c = 0; c < 256; ++c) {
    unsigned char v = static_cast<unsigned char>(c);
    if (c >= 'A' && c <= 'Z') v = static_cast<unsigned char>(c + 32);
    if (c == ' ' || (c >= '\t' && c <= '\r')) v = ' ';
    t[static_cast<size_t>(c)] = v;
  }
  return t;
}
constexpr std::array<unsigned char, 256> kFold = MakeFold();

}  // namespace

void PhraseMatcher::Normalize(std::string_view text, std::string* out) {
  out->resize(text.size());
  char* dst = out->data();
  size_t j = 0;
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<unsigned char>(c + 32);
    } else if (c == ' ' || (c >= '\t' && c <= '\r')) {
      if (j == 0 || dst[j - 1] == ' ') continue;
      c = ' ';
    } else if (IsTypographicApostrophe(reinterpret_cast<const unsigned char*>(text.data()), n, i)) {
      c = '\'';
      i += 2;
    }
    dst[j++] = static_cast<char>(c);
  }
  out->resize(j);
}

PhraseMatcher::PhraseMatcher(absl::Span<const Phrase> phrases, uint32_t num_groups)
    : num_groups_(num_groups) {
  // Byte classes: every byte used by some phrase gets its own class, all
  // other bytes share class 0; 0xE2 gets its own class too, so the hot loop
  // can send just that byte to the slow path. ' ' and 'a'-'z' are numbered
  // first (see kSlow). Then every raw byte is mapped to the class of its
  // normalized form: 'A'-'Z' to 'a'-'z', every whitespace byte to ' '.
  std::vector<Output> pending;
  std::vector<std::string_view> bodies;
  pending.reserve(phrases.size());
  bodies.reserve(phrases.size());
  bool used[256] = {};
  for (const Phrase& p : phrases) {
    std::string_view body = p.text;
    Output o{p.group, 0, false, false};
    if (!body.empty() && body.front() == '^') {
      o.boundary_before = true;
      body.remove_prefix(1);
    }
    if (!body.empty() && body.back() == '$') {
      o.boundary_after = true;
      body.remove_suffix(1);
    }
    if (body.empty()) continue;
    // Bytes the normalized text never holds: the phrase can never match.
    bool possible = true;
    const auto* b = reinterpret_cast<const unsigned char*>(body.data());
    for (size_t i = 0; i < body.size(); ++i) {
      if ((b[i] >= 'A' && b[i] <= 'Z') || (b[i] != ' ' && IsSpaceByte(b[i])) ||
          IsTypographicApostrophe(b, body.size(), i)) {
        possible = false;
      }
    }
    if (!possible) continue;
    o.length = static_cast<uint16_t>(body.size());
    for (unsigned char c : body) used[c] = true;
    pending.push_back(o);
    bodies.push_back(body);
  }
  uint8_t phrase_class[256] = {};  // class of a normalized byte
  num_classes_ = 1;
  auto number = [&](unsigned char c) {
    if (phrase_class[c] == 0) phrase_class[c] = static_cast<uint8_t>(num_classes_++);
  };
  if (used[static_cast<unsigned char>(' ')]) number(' ');
  for (int c = 'a'; c <= 'z'; ++c) {
    if (used[c]) number(static_cast<unsigned char>(c));
  }
  for (int c = 0; c < 256; ++c) {
    if (used[c]) number(static_cast<unsigned char>(c));
  }
  number(0xE2);
  e2_class_ = phrase_class[0xE2];
  apostrophe_class_ = phrase_class[static_cast<unsigned char>('\'')];
  for (int c = 0; c < 256; ++c) byte_class_[c] = phrase_class[kFold[static_cast<size_t>(c)]];
  // The Aho–Corasick construction below works on phrase_class; byte 0xE2 in
  // the text and in a phrase is the same class, so `used` needs no special
  // case for it.

  // Trie. last_class[s]: the class of the edge into s (the last byte of its label).
  constexpr uint32_t kNone = UINT32_MAX;
  std::vector<uint32_t> go(num_classes_, kNone);
  std::vector<std::vector<Output>> outs(1);
  std::vector<uint8_t> last_class(1, 0);
  for (size_t k = 0; k < bodies.size(); ++k) {
    uint32_t s = 0;
    for (unsigned char c : bodies[k]) {
      const size_t idx = s * num_classes_ + phrase_class[c];
      if (go[idx] == kNone) {
        go[idx] = static_cast<uint32_t>(outs.size());
        outs.emplace_back();
        last_class.push_back(phrase_class[c]);
        go.resize(go.size() + num_classes_, kNone);
      }
      s = go[idx];
    }
    outs[s].push_back(pending[k]);
  }
  num_states_ = outs.size();

  // Breadth-first: failure links, outputs inherited along them, and the
  // complete transition function (missing edges follow the failure link).
  std::vector<uint32_t> fail(num_states_, 0);
  std::deque<uint32_t> queue;
  for (size_t cls = 0; cls < num_classes_; ++cls) {
    uint32_t& t = go[cls];
    if (t == kNone) {
      t = 0;
    } else {
      fail[t] = 0;
      queue.push_back(t);
    }
  }
  while (!queue.empty()) {
    const uint32_t s = queue.front();
    queue.pop_front();
    const std::vector<Output>& inherited = outs[fail[s]];
    outs[s].insert(outs[s].end(), inherited.begin(), inherited.end());
    for (size_t cls = 0; cls < num_classes_; ++cls) {
      uint32_t& t = go[s * num_classes_ + cls];
      const uint32_t via_fail = go[fail[s] * num_classes_ + cls];
      if (t == kNone) {
        t = via_fail;
      } else {
        fail[t] = via_fail;
        queue.push_back(t);
      }
    }
  }
  // Whitespace runs: a state whose label ends in ' ' was reached by a space of
  // the normalized text, so a further whitespace byte of the same run is
  // dropped: it stays put (and reports nothing: the run's first byte did). A
  // state reached by a whitespace byte always has such a label, or is the root
  // with no phrase starting with ' ' (where ' ' leads back to the root anyway).
  // Leading whitespace is skipped by Match before the automaton starts.
  const uint8_t space_class = phrase_class[static_cast<unsigned char>(' ')];
  std::vector<bool> self_loop(num_states_, false);
  if (space_class != 0) {
    for (size_t s = 1; s < num_states_; ++s) {
      if (last_class[s] == space_class) {
        go[s * num_classes_ + space_class] = static_cast<uint32_t>(s);
        self_loop[s] = true;
      }
    }
  }
  // Renumber breadth-first (BFS order from the root) and pack the table.
  std::vector<uint32_t> order;
  std::vector<uint32_t> new_id(num_states_, kNone);
  order.reserve(num_states_);
  order.push_back(0);
  new_id[0] = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const uint32_t s = order[k];
    for (size_t cls = 0; cls < num_classes_; ++cls) {
      const uint32_t t = go[s * num_classes_ + cls];
      if (new_id[t] == kNone) {
        new_id[t] = static_cast<uint32_t>(order.size());
        order.push_back(t);
      }
    }
  }
  num_states_ = order.size();  // only reachable states
  row_shift_ = 0;
  while ((size_t{1} << row_shift_) < num_classes_) ++row_shift_;
  // 64-byte aligned rows, so a row's first 64 bytes are one cache line.
  constexpr size_t kAlign = 64 / sizeof(uint16_t);
  auto allocate = [this](size_t entries) {
    storage_.assign(entries + kAlign, 0);
    const auto addr = reinterpret_cast<uintptr_t>(storage_.data());
    const size_t skip = ((64 - addr % 64) % 64) / sizeof(uint16_t);
    next_ = storage_.data() + skip;
    return storage_.data() + skip;
  };
  if (num_states_ > kMaxStates) {
    // Not reachable with the built-in table (a few thousand states); keep the
    // matcher total by matching nothing rather than corrupting indices.
    num_states_ = 1;
    allocate(size_t{1} << row_shift_);
    out_begin_.assign(2, 0);
    return;
  }
  uint16_t* next = allocate(num_states_ << row_shift_);
  out_begin_.reserve(num_states_ + 1);
  for (size_t k = 0; k < num_states_; ++k) {
    const uint32_t s = order[k];
    for (size_t cls = 0; cls < num_classes_; ++cls) {
      const uint32_t t = go[s * num_classes_ + cls];
      uint16_t v = static_cast<uint16_t>(new_id[t]);
      const bool stays = t == s && self_loop[s] && cls == space_class;
      if ((!outs[t].empty() && !stays) || cls == e2_class_) v |= kSlow;
      next[(k << row_shift_) | cls] = v;
    }
    out_begin_.push_back(static_cast<uint32_t>(outputs_.size()));
    outputs_.insert(outputs_.end(), outs[s].begin(), outs[s].end());
  }
  out_begin_.push_back(static_cast<uint32_t>(outputs_.size()));
}

namespace {

// Whether the normalized character before a phrase is a word byte. The phrase
// is `length` normalized characters ending at raw byte `end` (inclusive);
// walks back over the raw text one normalized character at a time: a
// whitespace run is one ' ', a typographic apostrophe (3 bytes) one '\''. A
// leading whitespace run normalizes to nothing, and is not a word byte either.
bool WordByteBefore(const unsigned char* p, size_t end, size_t length) {
  size_t k = end + 1;  // exclusive
  for (size_t units = 0; units < length && k > 0; ++units) {
    const unsigned char c = p[k - 1];
    if (IsSpaceByte(c)) {
      while (k > 0 && IsSpaceByte(p[k - 1])) --k;
    } else if (k >= 3 && (c == 0x98 || c == 0x99) && p[k - 2] == 0x80 && p[k - 3] == 0xE2) {
      k -= 3;
    } else {
      --k;
    }
  }
  return k > 0 && IsWordByte(kFold[p[k - 1]]);
}

// Eight bytes at a time: replies are short and nearly always ASCII.
bool IsAscii(const unsigned char* p, size_t n) {
  uint64_t any = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    any |= w;
  }
  for (; i < n; ++i) any |= p[i];
  return (any & 0x8080808080808080ULL) == 0;
}

}  // namespace

uint32_t PhraseMatcher::Report(const unsigned char* p, size_t n, size_t at, uint16_t t,
                               uint64_t* groups) const {
  const uint32_t to = t & (kSlow - 1);
  for (uint32_t b = out_begin_[to], e = out_begin_[to + 1]; b < e; ++b) {
    const Output& o = outputs_[b];
    if (o.boundary_after && at + 1 < n && IsWordByte(kFold[p[at + 1]])) continue;
    if (o.boundary_before && WordByteBefore(p, at, o.length)) continue;
    groups[o.group >> 6] |= uint64_t{1} << (o.group & 63);
  }
  return to;
}

template <int kShift>
void PhraseMatcher::MatchRows(std::string_view text, uint64_t* groups) const {
  // One table load per byte: case and whitespace are folded by byte_class_,
  // whitespace runs by the self-loops; apostrophes and reports take the
  // flagged (kSlow) branch. The loop is bound by the latency of
  // state -> row -> load -> state, so the row shift is a constant when it can be.
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const uint16_t* next = next_;
  const uint8_t* cls = byte_class_;
  const unsigned shift = kShift >= 0 ? static_cast<unsigned>(kShift) : row_shift_;
  size_t i = 0;
  while (i < n && IsSpaceByte(p[i])) ++i;  // leading whitespace normalizes to nothing
  uint32_t s = 0;
  if (n - i >= 2 * kWarmUp && IsAscii(p + i, n - i)) {
    // Two chains at once, to overlap their latencies: A reads [i, m) from the
    // root; B starts from the root kWarmUp bytes before m, reads them without
    // reporting, then reads [m, n) in step with A. When A's state at m - 1 is
    // B's state there, B has followed A's exact path from m on (the automaton
    // is a function of state and byte), so A is done. Otherwise (A deep in a
    // long phrase) A goes on from m; B's reports stay: every phrase B found is
    // in the text (B's view is the text after q, which normalizes the same:
    // q is past the leading whitespace, and ASCII has no apostrophe to split),
    // and word boundaries are checked in the raw text either way.
    const size_t m = i + (n - i + kWarmUp + 1) / 2;
    const size_t q = m - kWarmUp;
    uint32_t a = 0, b = 0;
    for (size_t k = 0; k < kWarmUp; ++k) {
      const uint32_t ta = next[(a << shift) | cls[p[i + k]]];
      b = next[(b << shift) | cls[p[q + k]]] & (kSlow - 1);
      a = (ta & kSlow) == 0 ? ta : Report(p, n, i + k, static_cast<uint16_t>(ta), groups);
    }
    const uint32_t b_at_m = b;
    const size_t steps = m - i;  // B's n - q bytes are at most as many
    size_t k = kWarmUp;
    for (; q + k < n; ++k) {
      const uint32_t ta = next[(a << shift) | cls[p[i + k]]];
      const uint32_t tb = next[(b << shift) | cls[p[q + k]]];
      if (((ta | tb) & kSlow) == 0) [[likely]] {
        a = ta;
        b = tb;
        continue;
      }
      a = (ta & kSlow) == 0 ? ta : Report(p, n, i + k, static_cast<uint16_t>(ta), groups);
      b = (tb & kSlow) == 0 ? tb : Report(p, n, q + k, static_cast<uint16_t>(tb), groups);
    }
    for (; k < steps; ++k) {
      const uint32_t ta = next[(a << shift) | cls[p[i + k]]];
      a = (ta & kSlow) == 0 ? ta : Report(p, n, i + k, static_cast<uint16_t>(ta), groups);
    }
    if (a == b_at_m) return;
    s = a;
    i = m;
  }
  for (; i < n; ++i) {
    const uint32_t t = next[(s << shift) | cls[p[i]]];
    if ((t & kSlow) == 0) [[likely]] {
      s = t;
      continue;
    }
    uint32_t u = t;
    if (cls[p[i]] == e2_class_ && IsTypographicApostrophe(p, n, i)) {
      u = next[(s << shift) | apostrophe_class_];
      i += 2;
    }
    s = Report(p, n, i, static_cast<uint16_t>(u), groups);
  }
}

void PhraseMatcher::Match(std::string_view text, uint64_t* groups) const {
  switch (row_shift_) {
    case 6:  // the ASCII phrases: 33-64 classes
      return MatchRows<6>(text, groups);
    case 7:  // the non-ASCII phrases
      return MatchRows<7>(text, groups);
    default:
      return MatchRows<-1>(text, groups);
  }
}

}  // namespace mailretry::internal
