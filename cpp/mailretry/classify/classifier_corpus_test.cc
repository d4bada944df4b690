// The classifier on the labelled dev corpus (../shared/smtp-replies/dev.jsonl,
// read in place): the tune/validation split by source, and accuracy floors.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/classify/internal/reply_corpus.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

Classifier Default() {
  absl::StatusOr<Classifier> c = Classifier::Create();
  EXPECT_TRUE(c.ok()) << c.status();
  return *std::move(c);
}

// --- the labelled dev corpus ---------------------------------------------------------

// Transient truth: the reply's class, except where the label's action says
// otherwise — a 5yz the label retries/throttles/suspends is transient, a 4yz
// the label bounces is permanent. Replies without a basic code use the
// enhanced class.
bool TruthTransient(const Reply& r, std::string_view action) {
  if (action == "retry" || action == "throttle" || action == "suspend_domain") return true;
  if (action == "bounce") return false;
  const int klass = r.code != 0 ? r.code / 100 : (r.enhanced ? r.enhanced->klass : 5);
  return klass == 4;
}

struct CorpusScore {
  int n = 0, category = 0, action = 0, transient = 0;
  double CategoryRate() const { return n == 0 ? 0 : static_cast<double>(category) / n; }
  double ActionRate() const { return n == 0 ? 0 : static_cast<double>(action) / n; }
  double TransientRate() const { return n == 0 ? 0 : static_cast<double>(transient) / n; }
};

// Scores `rows`. With `print_misses`, prints every miss: used on the tune
// split only (MAILRETRY_CORPUS_VERBOSE), never on the validation split, whose
// rows must stay unread while rules are written.
CorpusScore Score(const Classifier& c, const std::vector<internal::CorpusEntry>& rows,
                  bool print_misses) {
  CorpusScore s;
  for (const internal::CorpusEntry& e : rows) {
    const Reply r = internal::CorpusReply(e.reply);
    const Classification k = c.Classify(r);
    const std::string got_cat(CategoryName(k.category));
    const bool cat_match = got_cat == e.category;
    const bool act_match = ActionName(k.action) == e.action;
    const bool tr_match = k.transient == TruthTransient(r, e.action);
    ++s.n;
    s.category += cat_match;
    s.action += act_match;
    s.transient += tr_match;
    if (print_misses && (!cat_match || !act_match || !tr_match)) {
      std::printf("MISS %s/%s%s want %s/%s got %s/%s/%d via %s | %.200s\n", cat_match ? "" : "C",
                  act_match ? "" : "A", tr_match ? "" : "T", e.category.c_str(), e.action.c_str(),
                  got_cat.c_str(), std::string(ActionName(k.action)).c_str(), k.transient,
                  std::string(k.rule).c_str(), e.reply.c_str());
    }
  }
  return s;
}

void PrintScore(const char* name, const CorpusScore& s) {
  std::printf(
      "dev corpus, %s split: %d replies, category %.1f%%, action %.1f%%, transient %.1f%%\n", name,
      s.n, 100 * s.CategoryRate(), 100 * s.ActionRate(), 100 * s.TransientRate());
}

TEST(DevCorpus, SplitIsBySourceAndStable) {
  // Fixed points of the hash, so that Python (through the bindings) and C++
  // can never disagree about the split.
  EXPECT_EQ(internal::SourceHash(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(internal::SourceHash("a"), 0xaf63dc4c8601ec8cULL);
  const std::vector<internal::CorpusEntry> corpus = internal::LoadCorpus(MAILRETRY_DEV_REPLIES);
  if (corpus.empty()) GTEST_SKIP() << "the dev corpus is not at " << MAILRETRY_DEV_REPLIES;
  const size_t validation =
      internal::CorpusRowsIn(corpus, internal::CorpusSplit::kValidation).size();
  const size_t tune = internal::CorpusRowsIn(corpus, internal::CorpusSplit::kTune).size();
  EXPECT_EQ(validation + tune, corpus.size());
  // About a quarter of the rows; a changed hash or corpus shows here.
  EXPECT_GT(validation, corpus.size() / 6);
  EXPECT_LT(validation, corpus.size() / 2);
}

TEST(DevCorpus, AccuracyFloors) {
  const std::vector<internal::CorpusEntry> corpus = internal::LoadCorpus(MAILRETRY_DEV_REPLIES);
  if (corpus.empty()) GTEST_SKIP() << "the dev corpus is not at " << MAILRETRY_DEV_REPLIES;
  ASSERT_GE(corpus.size(), 400u);
  Classifier c = Default();
  const bool verbose = std::getenv("MAILRETRY_CORPUS_VERBOSE") != nullptr;
  const CorpusScore tune =
      Score(c, internal::CorpusRowsIn(corpus, internal::CorpusSplit::kTune), verbose);
  const CorpusScore validation =
      Score(c, internal::CorpusRowsIn(corpus, internal::CorpusSplit::kValidation), false);
  const CorpusScore all = Score(c, corpus, false);
  PrintScore("tune", tune);
  PrintScore("validation", validation);
  PrintScore("full", all);
  // Full corpus: floors a little below what the default rules reach (98.5 %,
  // 99.4 %, 99.8 %), so a regression shows.
  EXPECT_GE(all.CategoryRate(), 0.98);
  EXPECT_GE(all.ActionRate(), 0.99);
  EXPECT_GE(all.TransientRate(), 0.995);
  // Validation split (sources never read while writing rules): the floors the
  // classifier promises on replies it has not seen (issue 13).
  EXPECT_GE(validation.CategoryRate(), 0.95);
  EXPECT_GE(validation.ActionRate(), 0.97);
  EXPECT_GE(validation.TransientRate(), 0.995);
}

}  // namespace
}  // namespace mailretry
