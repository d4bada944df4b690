// Timer-queue benchmarks: every TimerBackend (called through its concrete,
// final class, so devirtualized) and two baselines, at 1M and 10M pending.
//
// Method (the usual timer-queue benchmark): fill N timers on a random permutation
// of slots 0..N-1, due uniform over 5 days in ms. Then, on one structure and
// in this order, each phase timed on its own over M = N/10 random distinct
// slots:
//   cancel      cancel M pending slots
//   schedule    schedule those M again (steady-state insert, no regrowth)
//   reschedule  move M pending slots to new uniform due times
//   pop         advance the clock in 1 s steps until >= M have popped; ns per
//               popped item, clock steps included
//   empty_pop   PopDue at a time before anything is due, 1M calls
// Setup is outside the timed regions (manual time, one iteration).
// Results are counters in ns per op; bytes_per_timer is MemoryBytes()/N after
// the fill (baselines: their container capacity, Boost.Heap estimated).
// benchmarks/run timers turns the JSON output into records.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <numeric>
#include <queue>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "boost/heap/d_ary_heap.hpp"
#include "mailretry/timers/internal/boost_heap_queue.h"
#include "mailretry/timers/internal/quad_heap.h"
#include "mailretry/timers/internal/timing_wheel.h"
#include "mailretry/timers/timer_queue.h"

namespace mailretry {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);
constexpr int64_t kFiveDaysMs = int64_t{5} * 86400 * 1000;
constexpr int kEmptyPops = 1000000;

using Clock = std::chrono::steady_clock;

double NsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

struct Workload {
  std::vector<Slot> fill_order;  // permutation of 0..N-1
  std::vector<int64_t> due_ms;   // by slot, fill due time (offset from kT0)
  std::vector<Slot> ops;         // M distinct slots
  std::vector<int64_t> ops_ms;   // due_ms[ops[i]], contiguous: the timed loops
                                 // must not pay a random read of their own
  std::vector<int64_t> new_ms;   // M fresh due times
};

Workload MakeWorkload(size_t n) {
  std::mt19937_64 rng(42);
  Workload w;
  w.fill_order.resize(n);
  std::iota(w.fill_order.begin(), w.fill_order.end(), Slot{0});
  std::shuffle(w.fill_order.begin(), w.fill_order.end(), rng);
  w.due_ms.resize(n);
  // Due at least 1 s out, so that nothing is due at the fill's "now".
  for (auto& d : w.due_ms) d = 1000 + static_cast<int64_t>(rng() % kFiveDaysMs);
  size_t m = n / 10;
  std::vector<Slot> perm(n);
  std::iota(perm.begin(), perm.end(), Slot{0});
  std::shuffle(perm.begin(), perm.end(), rng);
  w.ops.assign(perm.begin(), perm.begin() + static_cast<std::ptrdiff_t>(m));
  w.ops_ms.resize(m);
  for (size_t i = 0; i < m; ++i) w.ops_ms[i] = w.due_ms[w.ops[i]];
  w.new_ms.resize(m);
  for (auto& d : w.new_ms) d = 1000 + static_cast<int64_t>(rng() % kFiveDaysMs);
  return w;
}

const Workload& GetWorkload(size_t n) {
  static std::vector<std::pair<size_t, Workload>> cache;
  for (auto& [k, w] : cache) {
    if (k == n) return w;
  }
  cache.clear();  // keep one: the 10M workload alone is ~200 MB
  cache.emplace_back(n, MakeWorkload(n));
  return cache.back().second;
}

struct Result {
  double cancel = -1, schedule = -1, reschedule = -1, pop = -1, empty_pop = -1, bytes = -1;
};

void Report(benchmark::State& state, const Result& r, double total_ns) {
  state.SetIterationTime(total_ns * 1e-9);
  auto set = [&](const char* name, double v) {
    if (v >= 0) state.counters[name] = v;
  };
  set("cancel_ns", r.cancel);
  set("schedule_ns", r.schedule);
  set("reschedule_ns", r.reschedule);
  set("pop_ns", r.pop);
  set("empty_pop_ns", r.empty_pop);
  set("bytes_per_timer", r.bytes);
}

// The three backends, each through its concrete (final) class.
template <typename Q>
void BM_Backend(benchmark::State& state, std::function<void(Q&, size_t)> reserve) {
  const size_t n = static_cast<size_t>(state.range(0));
  const Workload& w = GetWorkload(n);
  const size_t m = w.ops.size();
  for (auto _ : state) {
    Q q(TimerOptions{absl::Seconds(1), kT0});
    reserve(q, n);
    bool ok = true;
    for (Slot s : w.fill_order) ok &= q.Schedule(s, kT0 + absl::Milliseconds(w.due_ms[s])).ok();
    Result r;
    r.bytes = static_cast<double>(q.MemoryBytes()) / static_cast<double>(n);
    double total = 0;

    std::vector<Slot> out;
    out.reserve(1024);
    auto t0 = Clock::now();
    for (int i = 0; i < kEmptyPops; ++i) {
      ok &= q.PopDue(kT0 + absl::Nanoseconds(i), &out).ok();  // monotone, < 1 s
    }
    double ns = NsSince(t0);
    r.empty_pop = ns / kEmptyPops;
    total += ns;
    ok &= out.empty();

    t0 = Clock::now();
    for (Slot s : w.ops) ok &= q.Cancel(s).ok();
    ns = NsSince(t0);
    r.cancel = ns / static_cast<double>(m);
    total += ns;

    t0 = Clock::now();
    for (size_t i = 0; i < m; ++i) {
      ok &= q.Schedule(w.ops[i], kT0 + absl::Milliseconds(w.ops_ms[i])).ok();
    }
    ns = NsSince(t0);
    r.schedule = ns / static_cast<double>(m);
    total += ns;

    t0 = Clock::now();
    for (size_t i = 0; i < m; ++i) {
      ok &= q.Reschedule(w.ops[i], kT0 + absl::Milliseconds(w.new_ms[i])).ok();
    }
    ns = NsSince(t0);
    r.reschedule = ns / static_cast<double>(m);
    total += ns;

    out.reserve(m + n / 1000);
    size_t popped = 0;
    absl::Time now = kT0;
    t0 = Clock::now();
    while (popped < m) {
      now += absl::Seconds(1);
      ok &= q.PopDue(now, &out).ok();
      popped += out.size();
      out.clear();
    }
    ns = NsSince(t0);
    r.pop = ns / static_cast<double>(popped);
    total += ns;

    if (!ok) {
      state.SkipWithError("a TimerQueue call failed");
      return;
    }
    benchmark::DoNotOptimize(q.size());
    Report(state, r, total);
  }
}

// Baseline: the textbook std::priority_queue. No cancel, no reschedule.
void BM_StdPriorityQueue(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const Workload& w = GetWorkload(n);
  const size_t m = w.ops.size();
  using Item = std::pair<uint64_t, uint32_t>;
  for (auto _ : state) {
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> pq;
    // Fill N - M (all but the op slots), then time pushing the M op slots.
    {
      std::vector<uint8_t> is_op(n, 0);
      for (Slot s : w.ops) is_op[s] = 1;
      std::vector<Item> v;
      v.reserve(n);
      for (Slot s : w.fill_order) {
        if (!is_op[s]) v.emplace_back(static_cast<uint64_t>(w.due_ms[s]), s);
      }
      pq = decltype(pq)(std::greater<Item>(), std::move(v));
    }
    Result r;
    double total = 0;
    auto t0 = Clock::now();
    for (size_t i = 0; i < m; ++i) pq.emplace(static_cast<uint64_t>(w.ops_ms[i]), w.ops[i]);
    double ns = NsSince(t0);
    r.schedule = ns / static_cast<double>(m);
    total += ns;
    r.bytes = static_cast<double>(n * sizeof(Item)) / static_cast<double>(n);  // capacity >= n

    size_t hits = 0;
    t0 = Clock::now();
    for (int i = 0; i < kEmptyPops; ++i) hits += pq.top().first <= static_cast<uint64_t>(i % 1000);
    ns = NsSince(t0);
    r.empty_pop = ns / kEmptyPops;
    total += ns;

    size_t popped = 0;
    uint64_t now_ms = 0;
    uint64_t sink = 0;
    t0 = Clock::now();
    while (popped < m) {
      now_ms += 1000;
      while (!pq.empty() && pq.top().first <= now_ms) {
        sink += pq.top().second;
        pq.pop();
        ++popped;
      }
    }
    ns = NsSince(t0);
    r.pop = ns / static_cast<double>(popped);
    total += ns;
    benchmark::DoNotOptimize(sink + hits);
    Report(state, r, total);
  }
}

// Baseline: Boost.Heap d_ary_heap<arity 4, mutable> used directly, with
// update() for reschedule (the way the library is meant to be used).
void BM_BoostDaryMutable(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const Workload& w = GetWorkload(n);
  const size_t m = w.ops.size();
  using Item = std::pair<uint64_t, uint32_t>;
  using Heap = boost::heap::d_ary_heap<Item, boost::heap::arity<4>, boost::heap::mutable_<true>,
                                       boost::heap::compare<std::greater<Item>>>;
  for (auto _ : state) {
    Heap heap;
    heap.reserve(n);
    std::vector<Heap::handle_type> handle(n);
    for (Slot s : w.fill_order) handle[s] = heap.push(Item(static_cast<uint64_t>(w.due_ms[s]), s));
    Result r;
    // std::list node (value + 2 links + malloc header) + vector entry + handle.
    r.bytes = static_cast<double>(sizeof(Item) + 2 * sizeof(void*) + 16 + sizeof(void*) +
                                  sizeof(Heap::handle_type));
    double total = 0;

    size_t hits = 0;
    auto t0 = Clock::now();
    for (int i = 0; i < kEmptyPops; ++i)
      hits += heap.top().first <= static_cast<uint64_t>(i % 1000);
    double ns = NsSince(t0);
    r.empty_pop = ns / kEmptyPops;
    total += ns;

    t0 = Clock::now();
    for (Slot s : w.ops) heap.erase(handle[s]);
    ns = NsSince(t0);
    r.cancel = ns / static_cast<double>(m);
    total += ns;

    t0 = Clock::now();
    for (size_t i = 0; i < m; ++i) {
      handle[w.ops[i]] = heap.push(Item(static_cast<uint64_t>(w.ops_ms[i]), w.ops[i]));
    }
    ns = NsSince(t0);
    r.schedule = ns / static_cast<double>(m);
    total += ns;

    t0 = Clock::now();
    for (size_t i = 0; i < m; ++i) {
      Slot s = w.ops[i];
      heap.update(handle[s], Item(static_cast<uint64_t>(w.new_ms[i]), s));
    }
    ns = NsSince(t0);
    r.reschedule = ns / static_cast<double>(m);
    total += ns;

    size_t popped = 0;
    uint64_t now_ms = 0;
    uint64_t sink = 0;
    t0 = Clock::now();
    while (popped < m) {
      now_ms += 1000;
      while (!heap.empty() && heap.top().first <= now_ms) {
        sink += heap.top().second;
        heap.pop();
        ++popped;
      }
    }
    ns = NsSince(t0);
    r.pop = ns / static_cast<double>(popped);
    total += ns;
    benchmark::DoNotOptimize(sink + hits);
    Report(state, r, total);
  }
}

void Register() {
  auto apply = [](benchmark::internal::Benchmark* b) {
    b->Arg(1000000)->Arg(10000000)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
  };
  apply(
      benchmark::RegisterBenchmark("timers/wheel", BM_Backend<internal::TimingWheel>,
                                   std::function<void(internal::TimingWheel&, size_t)>(
                                       [](internal::TimingWheel& q, size_t n) { q.Reserve(n); })));
  apply(
      benchmark::RegisterBenchmark("timers/quad_heap", BM_Backend<internal::QuadHeap>,
                                   std::function<void(internal::QuadHeap&, size_t)>(
                                       [](internal::QuadHeap& q, size_t n) { q.Reserve(n, n); })));
  apply(benchmark::RegisterBenchmark(
      "timers/boost_heap", BM_Backend<internal::BoostHeapQueue>,
      std::function<void(internal::BoostHeapQueue&, size_t)>(
          [](internal::BoostHeapQueue& q, size_t n) { q.Reserve(n, n); })));
  apply(benchmark::RegisterBenchmark("timers/std_priority_queue", BM_StdPriorityQueue));
  apply(benchmark::RegisterBenchmark("timers/boost_dary_mutable", BM_BoostDaryMutable));
}

const bool kRegistered = (Register(), true);

}  // namespace
}  // namespace mailretry

BENCHMARK_MAIN();
