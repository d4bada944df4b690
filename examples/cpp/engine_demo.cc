// engine_demo: the retry engine driven by a fake sender, in simulated time.
//
// Three destinations: one healthy (5% random deferrals), one greylisting
// first-time senders, one that rejects the sending IP for a missing PTR record
// until the operator fixes it 10 hours in (structural failure, hold, probes,
// then structural_cleared). The
// sender takes leases, "delivers" them, reports the reply, and sleeps until
// the engine's next wakeup. Events are printed as they happen.
//
// Built by the top-level CMakeLists (target engine_demo, run by ctest as
// example.engine_demo): `cmake --build build --target engine_demo && build/engine_demo`.
#include <cstdio>
#include <random>
#include <string>

#include "absl/time/time.h"
#include "mailretry/engine/engine.h"

namespace {

using mailretry::Engine;
using mailretry::Event;
using mailretry::Lease;

// The fake SMTP conversation: what each destination answers.
std::string FakeSend(const Lease& lease, absl::Time now, absl::Time fixed_at, std::mt19937& rng) {
  if (lease.destination == "greylist.example" && lease.attempt == 1) {
    return "451 4.7.1 Greylisted, please try again later";
  }
  if (lease.destination == "blocked.example" && now < fixed_at) {
    return "450 4.7.25 Client host rejected: cannot find your reverse hostname";
  }
  if (std::uniform_int_distribution<int>(1, 100)(rng) <= 5) return "451 4.3.0 Temporary failure";
  return "250 2.0.0 OK";
}

void Print(const Event& e) {
  std::printf("%s  %-22s %-18s", absl::FormatTime("%H:%M", e.time, absl::UTCTimeZone()).c_str(),
              std::string(mailretry::EventKindName(e.kind)).c_str(),
              std::string(e.destination).c_str());
  if (e.msg_id) std::printf(" msg=%llu", static_cast<unsigned long long>(*e.msg_id));
  if (e.category) std::printf(" %s", std::string(mailretry::CategoryName(*e.category)).c_str());
  if (e.next_attempt) {
    std::printf(" next=%s",
                absl::FormatTime("%H:%M", *e.next_attempt, absl::UTCTimeZone()).c_str());
  }
  if (!e.detail.empty())
    std::printf("  (%.*s)", static_cast<int>(e.detail.size()), e.detail.data());
  std::printf("\n");
  for (const std::string& step : e.info().remediation) std::printf("      -> %s\n", step.c_str());
}

}  // namespace

int main() {
  absl::StatusOr<std::unique_ptr<Engine>> made = Engine::Create({}, /*seed=*/1);
  if (!made.ok()) {
    std::fprintf(stderr, "%s\n", made.status().ToString().c_str());
    return 1;
  }
  Engine& engine = **made;
  absl::Time now = absl::FromCivil(absl::CivilMinute(2025, 1, 6, 9, 0), absl::UTCTimeZone());

  uint64_t id = 1;
  for (const char* dest : {"healthy.example", "greylist.example", "blocked.example"}) {
    for (int i = 0; i < 4; ++i) engine.Submit(id++, dest, now).IgnoreError();
  }

  std::mt19937 rng(7);
  const absl::Time ptr_fixed_at = now + absl::Hours(10);
  int steps = 0;
  while (steps++ < 200) {
    absl::StatusOr<std::vector<Lease>> leases = engine.TakeReady(now, 50);
    if (!leases.ok()) return 1;
    for (const Lease& l : *leases) {
      engine.ReportText(l.msg_id, now + absl::Seconds(2), FakeSend(l, now, ptr_fixed_at, rng))
          .IgnoreError();
    }
    for (const Event& e : engine.DrainEvents()) Print(e);
    std::optional<absl::Time> wake = engine.NextWakeup();
    if (!wake) break;
    now = std::max(now + absl::Seconds(2), *wake);
  }
  mailretry::EngineStats s = engine.Stats();
  std::printf(
      "\nsubmitted=%llu delivered=%llu bounced=%llu expired=%llu pending=%llu\n",
      static_cast<unsigned long long>(s.submitted), static_cast<unsigned long long>(s.delivered),
      static_cast<unsigned long long>(s.bounced), static_cast<unsigned long long>(s.expired),
      static_cast<unsigned long long>(s.pending));
  return 0;
}
