// PhraseMatcher against the definition it implements: find each phrase in
// PhraseMatcher::Normalize(text), with word boundaries checked on the
// normalized text. Match folds the normalization into its automaton (byte
// classes, whitespace self-loops, an apostrophe slow path, word boundaries
// read back in the raw text), so this compares the two on texts built to hit
// those cases: case, whitespace runs (leading, trailing, mixed), typographic
// and broken apostrophes, UTF-8, boundaries at both ends.
#include "mailretry/classify/internal/classifier_matcher.h"

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace mailretry::internal {
namespace {

bool IsWord(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

uint64_t Reference(const std::vector<Phrase>& phrases, std::string_view text) {
  std::string norm;
  PhraseMatcher::Normalize(text, &norm);
  uint64_t groups = 0;
  for (const Phrase& p : phrases) {
    std::string_view body = p.text;
    const bool before = body.starts_with('^');
    if (before) body.remove_prefix(1);
    const bool after = body.ends_with('$');
    if (after) body.remove_suffix(1);
    for (size_t at = norm.find(body); at != std::string::npos; at = norm.find(body, at + 1)) {
      if (before && at > 0 && IsWord(norm[at - 1])) continue;
      const size_t end = at + body.size();
      if (after && end < norm.size() && IsWord(norm[end])) continue;
      groups |= uint64_t{1} << p.group;
    }
  }
  return groups;
}

uint64_t Groups(const PhraseMatcher& m, std::string_view text) {
  uint64_t groups = 0;
  m.Match(text, &groups);
  return groups;
}

TEST(PhraseMatcher, NormalizesCaseSpacesAndApostrophes) {
  std::string out;
  PhraseMatcher::Normalize(" A  B\t\r\nC don\u2019t", &out);
  EXPECT_EQ(out, "a b c don't");
}

TEST(PhraseMatcher, WordBoundaries) {
  std::vector<Phrase> phrases = {{"^ptr$", 0}, {"dkim", 1}, {"^tls", 2}};
  PhraseMatcher m(phrases, 3);
  auto groups = [&](std::string_view text) {
    uint64_t g = 0;
    m.Match(text, &g);
    return g;
  };
  EXPECT_EQ(groups("no PTR record"), 1u);
  EXPECT_EQ(groups("ptr"), 1u);
  EXPECT_EQ(groups("aptr"), 0u);
  EXPECT_EQ(groups("ptrs"), 0u);
  EXPECT_EQ(groups("xdkimx"), 2u);
  EXPECT_EQ(groups("TLSA and ptr."), 5u);
  EXPECT_EQ(groups("mtls"), 0u);
}

TEST(PhraseMatcher, FoldsTheNormalizationIntoTheAutomaton) {
  const std::vector<Phrase> phrases = {{"don't", 0}, {"^no such$", 1}, {" b", 2},
                                       {"a b", 3},   {"^'s$", 4},      {"x  y", 5},
                                       {"Upper", 6}, {"tab\there", 7}, {"\xC3\xA9t\xC3\xA9", 8},
                                       {"b'", 9}};
  PhraseMatcher m(phrases, 10);
  EXPECT_EQ(Groups(m, "We DON\u2019T know"), 1u);
  EXPECT_EQ(Groups(m, "we don\u2018t"), 1u);
  EXPECT_EQ(Groups(m, "No\t \r\nSuch user"), 2u);
  EXPECT_EQ(Groups(m, "nosuch"), 0u);
  EXPECT_EQ(Groups(m, "   b"), 0u) << "leading whitespace normalizes to nothing";
  EXPECT_EQ(Groups(m, "x  \t b"), 4u);
  EXPECT_EQ(Groups(m, "a \t\n b"), 4u | 8u);
  EXPECT_EQ(Groups(m, "it\u2019s"), 0u) << "'s follows a word byte";
  EXPECT_EQ(Groups(m, "the \u2019s here"), 16u);
  EXPECT_EQ(Groups(m, "x  y UPPER tab\there"), 0u) << "phrases the normalized text cannot hold";
  EXPECT_EQ(Groups(m, "\xC3\x89T\xC3\xA9 \xC3\xA9T\xC3\xA9"), 256u) << "only ASCII is case-folded";
  EXPECT_EQ(Groups(m, "b\xE2\x80"), 0u) << "an incomplete apostrophe is not one";
  EXPECT_EQ(Groups(m, "b\xE2\x80\x99"), 512u);
}

TEST(PhraseMatcher, AgreesWithNormalizeThenFindOnRandomTexts) {
  const std::vector<Phrase> phrases = {
      {"ab", 0},   {"^ab$", 1},       {"b a", 2},       {"^a b", 3},        {"a'b", 4},
      {"'", 5},    {" ", 6},          {"^b$", 7},       {"ba b$", 8},       {"^ 1", 9},
      {"1-a", 10}, {"a\xE2\x80", 11}, {"\xC3\xA9", 12}, {"^\xC3\xA9$", 13}, {"b  a", 14},
      {"aB", 15},  {"a\tb", 16},      {"aaa", 17},      {"^a'$", 18},       {"\xE2", 19},
  };
  PhraseMatcher m(phrases, 20);
  const std::vector<std::string> pieces = {
      "a",        "b",    "A",        "B",        " ",       "  ",           "\t",
      "\r\n",     "'",    "1",        "-",        "x",       "\xE2\x80\x99", "\xE2\x80\x98",
      "\xE2\x80", "\xE2", "\x80\x99", "\xC3\xA9", "\xC3\x89"};
  std::mt19937 rng(13);
  std::uniform_int_distribution<size_t> piece(0, pieces.size() - 1);
  std::uniform_int_distribution<size_t> ascii_piece(0, 10);  // pieces[0..10] are ASCII
  std::uniform_int_distribution<int> length(0, 14);
  std::uniform_int_distribution<int> long_length(40, 120);  // long ASCII texts take two chains
  for (int iter = 0; iter < 20000; ++iter) {
    std::string text;
    for (int k = length(rng); k > 0; --k) text += pieces[piece(rng)];
    ASSERT_EQ(Groups(m, text), Reference(phrases, text)) << "text: \"" << text << "\"";
    text.clear();
    for (int k = long_length(rng); k > 0; --k) text += pieces[ascii_piece(rng)];
    ASSERT_EQ(Groups(m, text), Reference(phrases, text)) << "text: \"" << text << "\"";
  }
}

// A phrase longer than the second chain's warm-up, across the middle of a
// long text: the chains disagree there, and the first one must go on.
TEST(PhraseMatcher, FindsLongPhrasesAcrossTheMiddleOfLongTexts) {
  const std::string phrase = "the recipient mailbox does not exist in this domain";  // 51 bytes
  const std::vector<Phrase> phrases = {{phrase, 0}, {"^mailbox", 1}, {"domain$", 2}};
  PhraseMatcher m(phrases, 3);
  for (size_t before = 0; before < 80; ++before) {
    for (size_t after : {0, 1, 7, 30, 80}) {
      const std::string text =
          std::string(before, 'x') + " " + phrase + " " + std::string(after, 'y');
      ASSERT_EQ(Groups(m, text), Reference(phrases, text)) << before << " " << after;
      ASSERT_EQ(Groups(m, text) & 1u, 1u) << before << " " << after;
    }
  }
}

}  // namespace
}  // namespace mailretry::internal
