// Throughput of ParseReply and ParseReply+Classify over the labelled dev
// corpus (cycling through its replies), in replies per second.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/classify/internal/reply_corpus.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

// Wire-shaped replies only: corpus lines without a basic code are published
// explanations that ParseReply rightly refuses.
const std::vector<std::string>& Replies() {
  static const auto* replies = [] {
    auto* out = new std::vector<std::string>;
    for (const internal::CorpusEntry& e : internal::LoadCorpus(MAILRETRY_DEV_REPLIES)) {
      if (ParseReply(e.reply).ok()) out->push_back(e.reply);
    }
    return out;
  }();
  return *replies;
}

// The corpus lives outside the repository (collected from other public
// projects); without it the corpus benchmarks skip and say why.
bool SkipWithoutCorpus(benchmark::State& state) {
  if (!Replies().empty()) return false;
  state.SkipWithError("the dev corpus is not at " MAILRETRY_DEV_REPLIES
                      " (set the CMake cache variable MAILRETRY_DEV_REPLIES)");
  return true;
}

void BM_ParseReply(benchmark::State& state) {
  if (SkipWithoutCorpus(state)) return;
  const std::vector<std::string>& replies = Replies();
  size_t i = 0, bytes = 0;
  for (auto _ : state) {
    const std::string& raw = replies[i];
    absl::StatusOr<Reply> r = ParseReply(raw);
    benchmark::DoNotOptimize(r);
    bytes += raw.size();
    if (++i == replies.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_ParseReply);

void BM_ParseAndClassify(benchmark::State& state) {
  if (SkipWithoutCorpus(state)) return;
  const std::vector<std::string>& replies = Replies();
  absl::StatusOr<Classifier> c = Classifier::Create();
  if (!c.ok()) {
    state.SkipWithError("Classifier::Create failed");
    return;
  }
  size_t i = 0, bytes = 0;
  for (auto _ : state) {
    const std::string& raw = replies[i];
    absl::StatusOr<Classification> k = c->ClassifyText(raw, "example.com");
    benchmark::DoNotOptimize(k);
    bytes += raw.size();
    if (++i == replies.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_ParseAndClassify);

void BM_ClassifyParsed(benchmark::State& state) {
  if (SkipWithoutCorpus(state)) return;
  std::vector<Reply> parsed;
  for (const std::string& raw : Replies()) parsed.push_back(*ParseReply(raw));
  absl::StatusOr<Classifier> c = Classifier::Create();
  if (!c.ok()) {
    state.SkipWithError("Classifier::Create failed");
    return;
  }
  size_t i = 0;
  for (auto _ : state) {
    Classification k = c->Classify(parsed[i]);
    benchmark::DoNotOptimize(k);
    if (++i == parsed.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ClassifyParsed);

// For instruction counts (benchmarks/run classify-instructions): one
// iteration of range(0) passes of ClassifyText over the corpus, so that two
// runs under callgrind (1 and 21 passes) differ by exactly 20 passes.
void BM_CallgrindPasses(benchmark::State& state) {
  if (SkipWithoutCorpus(state)) return;
  const std::vector<std::string>& replies = Replies();
  absl::StatusOr<Classifier> c = Classifier::Create();
  if (!c.ok()) {
    state.SkipWithError("Classifier::Create failed");
    return;
  }
  for (auto _ : state) {
    for (int64_t pass = 0; pass < state.range(0); ++pass) {
      for (const std::string& raw : replies) {
        absl::StatusOr<Classification> k = c->ClassifyText(raw, "example.com");
        benchmark::DoNotOptimize(k);
      }
    }
  }
  state.counters["replies"] = static_cast<double>(replies.size());
}
BENCHMARK(BM_CallgrindPasses)->Arg(1)->Arg(21)->Iterations(1);

void BM_ClassifierCreate(benchmark::State& state) {
  for (auto _ : state) {
    absl::StatusOr<Classifier> c = Classifier::Create();
    benchmark::DoNotOptimize(c);
  }
}
BENCHMARK(BM_ClassifierCreate)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mailretry

BENCHMARK_MAIN();
