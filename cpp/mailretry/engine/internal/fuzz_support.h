// File: engine/internal/fuzz_support.h
// -----------------------------------------------------------------------------
// What the engine's libFuzzer targets (config_toml_fuzz, snapshot_fuzz,
// journal_fuzz) share: a check that aborts (so libFuzzer records the input),
// little-endian patching for recomputing framing fields, a per-process
// scratch path, and a short run of an engine that must keep its invariants.
// Only fuzz targets include this header.
#ifndef MAILRETRY_ENGINE_INTERNAL_FUZZ_SUPPORT_H_
#define MAILRETRY_ENGINE_INTERNAL_FUZZ_SUPPORT_H_

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailretry/engine/engine.h"

namespace mailretry::fuzz {

inline void Check(bool ok) {
  if (!ok) std::abort();
}

// Check(s.ok()), printing the status first, so that a crash report says why.
inline void CheckOk(const absl::Status& s) {
  if (!s.ok()) std::fprintf(stderr, "unexpected status: %s\n", s.ToString().c_str());
  Check(s.ok());
}

// Writes the low `bytes` bytes of `v` little-endian at `at`.
inline void PutLe(std::string& s, size_t at, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

inline uint32_t GetLe32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

// $TMPDIR (or /tmp)/mailretry-<what>-fuzz.<pid>: one per fuzzing process.
inline std::string ScratchPath(const std::string& what) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/mailretry-" + what + "-fuzz." +
         std::to_string(getpid());
}

// Runs an engine for a few rounds: every lease is answered with a rotating
// mix of outcomes and time moves on by the engine's own wake-ups. Every call
// must succeed (or refuse a time that went backwards) and the invariants must
// hold after each round.
inline void ExerciseEngine(Engine& e) {
  static const char* const kReplies[] = {"250 2.0.0 OK", "421 4.7.0 Try again later",
                                         "450 4.2.0 Greylisted, come back in 5 minutes",
                                         "550 5.1.1 No such user", "452 4.2.2 Mailbox full"};
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  if (std::optional<absl::Time> w = e.NextWakeup()) now = std::max(now, *w);
  size_t k = 0;
  for (int round = 0; round < 4; ++round) {
    absl::StatusOr<std::vector<Lease>> leases = e.TakeReady(now, 64);
    Check(leases.ok() || leases.status().code() == absl::StatusCode::kInvalidArgument);
    if (leases.ok()) {
      for (const Lease& l : *leases) {
        CheckOk(e.ReportText(l, now, kReplies[k++ % 5]).status());
      }
    }
    e.DrainEvents();
    (void)e.Stats();
    CheckOk(e.CheckInvariants());
    const std::optional<absl::Time> w = e.NextWakeup();
    now = std::max(now + absl::Seconds(1), w.value_or(now + absl::Hours(1)));
  }
}

// What a load or a recovery must give: DataLoss or FailedPrecondition (the
// documented refusals of a damaged or foreign file), or an engine that keeps
// its invariants through ExerciseEngine.
inline void CheckRestored(const absl::StatusOr<std::unique_ptr<Engine>>& e) {
  if (!e.ok()) {
    const absl::StatusCode c = e.status().code();
    Check(c == absl::StatusCode::kDataLoss || c == absl::StatusCode::kFailedPrecondition);
    return;
  }
  CheckOk((*e)->CheckInvariants());
  ExerciseEngine(**e);
}

}  // namespace mailretry::fuzz

#endif  // MAILRETRY_ENGINE_INTERNAL_FUZZ_SUPPORT_H_
