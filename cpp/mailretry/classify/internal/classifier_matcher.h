// File: classify/internal/classifier_matcher.h
// -----------------------------------------------------------------------------
// One-pass multi-phrase matcher for the default classifier rules: an
// Aho–Corasick automaton compiled to a dense DFA over a small byte-class
// alphabet. The text is normalized first (ASCII lowercase, whitespace runs
// folded to one space, typographic apostrophes to '\''), so rule phrases are
// written once in lowercase. Internal; not part of the public API.
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
  // already lowercase; `num_groups` bounds Phrase::group.
  PhraseMatcher(absl::Span<const Phrase> phrases, uint32_t num_groups);

  uint32_t num_groups() const { return num_groups_; }
  size_t num_words() const { return (num_groups_ + 63) / 64; }
  size_t num_states() const { return num_states_; }

  // Normalizes `text` into `*scratch` and sets bit g of `groups` (num_words()
  // words, cleared by the caller) for every group with a phrase in the text.
  void Match(std::string_view text, std::string* scratch, uint64_t* groups) const;

  // The normalization Match applies, exposed for tests.
  static void Normalize(std::string_view text, std::string* out);

 private:
  struct Output {
    uint32_t group;
    uint16_t length;        // phrase length without boundary marks
    bool boundary_before;
    bool boundary_after;
  };

  // Transitions are uint16_t with the top bit marking states that report
  // phrases; rows are padded to a power of two so the hot loop shifts instead
  // of multiplying, and states are numbered breadth-first so the shallow states
  // most bytes land in share cache lines.
  static constexpr uint16_t kReports = 0x8000;
  static constexpr size_t kMaxStates = 0x8000;

  uint32_t num_groups_ = 0;
  size_t num_states_ = 0;
  size_t num_classes_ = 0;
  unsigned row_shift_ = 0;               // log2 of the padded row width
  uint8_t byte_class_[256] = {};
  std::vector<uint16_t> next_;           // num_states_ << row_shift_
  std::vector<uint32_t> out_begin_;      // per state, into outputs_; size num_states_ + 1
  std::vector<Output> outputs_;
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_CLASSIFY_INTERNAL_CLASSIFIER_MATCHER_H_
