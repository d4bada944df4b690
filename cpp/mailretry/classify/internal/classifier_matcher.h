// File: classify/internal/classifier_matcher.h
// -----------------------------------------------------------------------------
// One-pass multi-phrase matcher for the default classifier rules: an
// Aho–Corasick automaton compiled to a dense DFA over a small byte-class
// alphabet. Phrases match the normalized text (ASCII lowercase, whitespace
// runs folded to one space, typographic apostrophes to '\''), so rule phrases
// are written once in lowercase; the normalization is folded into the
// automaton, so the text is read once, in place. Internal; not part of the
// public API.
#ifndef MAILRETRY_CLASSIFY_INTERNAL_CLASSIFIER_MATCHER_H_
#define MAILRETRY_CLASSIFY_INTERNAL_CLASSIFIER_MATCHER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"

namespace mailretry::internal {

// A phrase to find. Leading '^' / trailing '$' demand a word boundary there
// (the neighbouring character is not [a-z0-9] or is the end of the text).
struct Phrase {
  std::string_view text;
  uint32_t group = 0;  // reported when the phrase is found
};

class PhraseMatcher {
 public:
  // Builds the automaton. Phrases must be non-empty after '^'/'$' removal and
  // already lowercase; `num_groups` bounds Phrase::group. A phrase holding a
  // byte the normalization never produces (uppercase, whitespace other than a
  // single ' ', a typographic apostrophe) can never match and is dropped.
  PhraseMatcher(absl::Span<const Phrase> phrases, uint32_t num_groups);
  PhraseMatcher(const PhraseMatcher&) = delete;
  PhraseMatcher& operator=(const PhraseMatcher&) = delete;

  uint32_t num_groups() const { return num_groups_; }
  size_t num_words() const { return (num_groups_ + 63) / 64; }
  size_t num_states() const { return num_states_; }
  size_t num_classes() const { return num_classes_; }

  // Sets bit g of `groups` (num_words() words, cleared by the caller) for
  // every group with a phrase in the normalized `text`. The text is read in
  // place: the normalization is built into the automaton (see the .cc).
  void Match(std::string_view text, uint64_t* groups) const;

  // The normalization Match applies, exposed for tests: ASCII lowercase,
  // whitespace runs folded to one space and dropped at the start, U+2018 and
  // U+2019 to '\''.
  static void Normalize(std::string_view text, std::string* out);

 private:
  struct Output {
    uint32_t group;
    uint16_t length;  // phrase length without boundary marks
    bool boundary_before;
    bool boundary_after;
  };

  // Transitions are uint16_t with the top bit (kSlow) marking the entries the
  // hot loop must not simply follow: the target state reports phrases, or the
  // byte is 0xE2 (maybe a typographic apostrophe). Rows are padded to a power
  // of two so the hot loop shifts instead of multiplying; states are numbered
  // breadth-first so the shallow states most bytes land in share cache lines,
  // and the classes of ' ' and 'a'-'z' come first so that the entries most
  // bytes read sit in the first 64 bytes of each row.
  static constexpr uint16_t kSlow = 0x8000;
  static constexpr size_t kMaxStates = 0x8000;
  // Bytes the second chain of MatchRows reads before its half of the text;
  // the phrases' states are rarely deeper (see MatchRows).
  static constexpr size_t kWarmUp = 24;

  // Match with the row shift as a constant (kShift >= 0) or row_shift_ (-1).
  template <int kShift>
  void MatchRows(std::string_view text, uint64_t* groups) const;

  // Out of the hot loop: sets the groups of the phrases that transition `t`
  // (ending at raw byte `at`) completes, after their word-boundary checks.
  // Returns the state t leads to.
  uint32_t Report(const unsigned char* p, size_t n, size_t at, uint16_t t, uint64_t* groups) const;

  uint32_t num_groups_ = 0;
  size_t num_states_ = 0;
  size_t num_classes_ = 0;
  unsigned row_shift_ = 0;           // log2 of the padded row width
  uint8_t e2_class_ = 0;             // class of byte 0xE2 (its own)
  uint8_t apostrophe_class_ = 0;     // class of '\'' (0 when no phrase has one)
  uint8_t byte_class_[256] = {};     // raw byte -> class, case and whitespace folded
  std::vector<uint16_t> storage_;    // next_ lives here, 64-byte aligned
  const uint16_t* next_ = nullptr;   // num_states_ << row_shift_
  std::vector<uint32_t> out_begin_;  // per state, into outputs_; size num_states_ + 1
  std::vector<Output> outputs_;
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_CLASSIFY_INTERNAL_CLASSIFIER_MATCHER_H_
