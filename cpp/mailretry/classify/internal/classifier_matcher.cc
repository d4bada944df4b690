#include "mailretry/classify/internal/classifier_matcher.h"

#include <array>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace mailretry::internal {
namespace {

bool IsWordByte(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

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
    } else if (c == 0xE2 && i + 2 < n && static_cast<unsigned char>(text[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(text[i + 2]) == 0x98 ||
                static_cast<unsigned char>(text[i + 2]) == 0x99)) {
      // U+2018/U+2019: providers write "doesn’t" as often as "doesn't".
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
  // other bytes share class 0. Keeps the DFA table small (tens of columns).
  std::vector<Output> pending;
  std::vector<std::string_view> bodies;
  pending.reserve(phrases.size());
  bodies.reserve(phrases.size());
  num_classes_ = 1;
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
    o.length = static_cast<uint16_t>(body.size());
    for (unsigned char c : body) {
      if (byte_class_[c] == 0) byte_class_[c] = static_cast<uint8_t>(num_classes_++);
    }
    pending.push_back(o);
    bodies.push_back(body);
  }

  // Trie.
  constexpr uint32_t kNone = UINT32_MAX;
  std::vector<uint32_t> go(num_classes_, kNone);
  std::vector<std::vector<Output>> outs(1);
  for (size_t k = 0; k < bodies.size(); ++k) {
    uint32_t s = 0;
    for (unsigned char c : bodies[k]) {
      const size_t idx = s * num_classes_ + byte_class_[c];
      if (go[idx] == kNone) {
        go[idx] = static_cast<uint32_t>(outs.size());
        outs.emplace_back();
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
  if (num_states_ > kMaxStates) {
    // Not reachable with the built-in table (a few thousand states); keep the
    // matcher total by matching nothing rather than corrupting indices.
    num_states_ = 1;
    next_.assign(size_t{1} << row_shift_, 0);
    out_begin_.assign(2, 0);
    return;
  }
  next_.assign(num_states_ << row_shift_, 0);
  out_begin_.reserve(num_states_ + 1);
  for (size_t k = 0; k < num_states_; ++k) {
    const uint32_t s = order[k];
    for (size_t cls = 0; cls < num_classes_; ++cls) {
      const uint32_t t = go[s * num_classes_ + cls];
      uint16_t v = static_cast<uint16_t>(new_id[t]);
      if (!outs[t].empty()) v |= kReports;
      next_[(k << row_shift_) | cls] = v;
    }
    out_begin_.push_back(static_cast<uint32_t>(outputs_.size()));
    outputs_.insert(outputs_.end(), outs[s].begin(), outs[s].end());
  }
  out_begin_.push_back(static_cast<uint32_t>(outputs_.size()));
}

void PhraseMatcher::Match(std::string_view text, std::string* scratch, uint64_t* groups) const {
  // Normalization and matching in one pass. The normalized text is kept only
  // for word-boundary checks before a phrase; the check after a phrase can
  // look at the raw next byte, since normalization never turns a non-word
  // byte into a word byte or back.
  scratch->resize(text.size());
  auto* out = reinterpret_cast<unsigned char*>(scratch->data());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const uint16_t* next = next_.data();
  const unsigned shift = row_shift_;
  uint32_t s = 0;
  size_t j = 0;
  unsigned char prev = ' ';  // also drops leading whitespace
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = kFold[p[i]];
    if (c == ' ') {
      if (prev == ' ') continue;
    } else if (c == 0xE2 && i + 2 < n && p[i + 1] == 0x80 && (p[i + 2] == 0x98 || p[i + 2] == 0x99)) {
      c = '\'';
      i += 2;
    }
    prev = c;
    out[j] = c;
    const uint16_t t = next[(s << shift) | byte_class_[c]];
    s = t & (kReports - 1);
    if ((t & kReports) != 0) {
      for (uint32_t b = out_begin_[s], e = out_begin_[s + 1]; b < e; ++b) {
        const Output& o = outputs_[b];
        if (o.boundary_after && i + 1 < n && IsWordByte(kFold[p[i + 1]])) continue;
        if (o.boundary_before) {
          const size_t begin = j + 1 - o.length;
          if (begin > 0 && IsWordByte(out[begin - 1])) continue;
        }
        groups[o.group >> 6] |= uint64_t{1} << (o.group & 63);
      }
    }
    ++j;
  }
}

}  // namespace mailretry::internal
