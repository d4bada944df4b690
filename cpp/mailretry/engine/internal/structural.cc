// File: engine/internal/structural.cc
// Structural-failure detection: the 421 warning window, full-cycle and early
// evidence, and holding a structurally failing destination.
#include "mailretry/engine/internal/core.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mailretry::internal {

void Core::RollWindow(DestState& d, int64_t now) {
  const int64_t w = std::max<int64_t>(1, DurMs(m_.config.structural.warning_window));
  const int64_t start = now - (now % w);
  if (d.win_start == kNoTime) {
    d.win_start = start;
    return;
  }
  if (now >= d.win_start + w) {
    if (now >= d.win_start + 2 * w) {
      d.prev_attempts = d.prev_421 = 0;
    } else {
      d.prev_attempts = d.cur_attempts;
      d.prev_421 = d.cur_421;
    }
    d.cur_attempts = d.cur_421 = 0;
    d.win_start = start;
  }
}

void Core::NoteAttempt(DestState& d, int64_t now, bool is_421) {
  RollWindow(d, now);
  ++d.cur_attempts;
  if (is_421) ++d.cur_421;
}

void Core::CheckWarning(DestState& d, int64_t now) {
  const StructuralConfig& s = m_.config.structural;
  if (!s.enabled || d.health != Health::kHealthy) return;
  const uint32_t n421 = d.cur_421 + d.prev_421;
  const uint32_t n = d.cur_attempts + d.prev_attempts;
  if (n421 < s.warning_421s || static_cast<double>(n421) < s.warning_ratio * n) return;
  d.health = Health::kWarning;
  Event& e = Emit(EventKind::kDestinationWarning, now, d);
  e.detail = absl::StrCat(n421, " of the last ", n, " attempts got 421 within ",
                          absl::FormatDuration(s.warning_window), " or so");
  FillEvidence(e, d);
}

// Counts a failing message towards the structural rules and raises
// structural_failure when one of them holds.
void Core::StructuralEvidence(uint32_t di, MsgRec& r, Category cat, int64_t now, bool expiring) {
  DestState& d = m_.dests[di];
  if (IsEvidenceCategory(cat) && !(r.flags & internal::kFlagEvidence)) {
    r.flags |= internal::kFlagEvidence;
    ++d.evidence_msgs;
    if (d.evidence_first == kNoTime) d.evidence_first = now;
  }
  const bool no_delivery_since = d.last_delivery == kNoTime || d.last_delivery < r.submitted_ms;
  if (!(r.flags & internal::kFlagCycle) && no_delivery_since &&
      (expiring || r.attempts >= m_.cycle_failures)) {
    r.flags |= internal::kFlagCycle;
    ++d.cycle_msgs;
  }
  CheckStructural(di, now);
}

void Core::CheckStructural(uint32_t di, int64_t now) {
  DestState& d = m_.dests[di];
  const StructuralConfig& s = m_.config.structural;
  if (!s.enabled || d.health == Health::kStructural) return;
  const bool cycle = d.cycle_msgs >= s.cycle_messages;
  const bool early = d.evidence_msgs >= s.evidence_messages && d.evidence_first != kNoTime &&
                     now - d.evidence_first >= DurMs(s.evidence_span);
  if (!cycle && !early) return;
  d.health = Health::kStructural;
  Event& e = Emit(EventKind::kStructuralFailure, now, d);
  if (cycle) {
    e.detail = absl::StrCat(d.cycle_msgs, " messages failed a full retry cycle (", m_.cycle_failures,
                            " attempts) with no delivery to this destination since they were submitted");
  } else {
    e.detail = absl::StrCat(d.evidence_msgs,
                            " messages got reputation/authentication/PTR/DNSBL replies over ",
                            absl::FormatDuration(absl::Milliseconds(now - d.evidence_first)),
                            " with no delivery");
  }
  FillEvidence(e, d);
  if (s.hold) {
    d.held = true;
    d.next_probe = SatAdd(now, DurMs(s.probe_interval));
    ArmWake(di, d.next_probe);
    absl::StrAppend(&e.detail, "; holding the destination, one probe every ",
                    absl::FormatDuration(s.probe_interval));
  }
}

}  // namespace mailretry::internal
