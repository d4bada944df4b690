// File: engine/internal/structural.cc
// Structural-failure detection: the 421 warning window, full-cycle and early
// evidence, and holding a structurally failing destination.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "mailretry/engine/internal/core.h"

namespace mailretry::internal {

void Core::RollWindow(DestState& d, int64_t now) {
  const int64_t w = m_.warning_window_ms;
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
  e.detail = m_.events.Keep(absl::StrCat(n421, " of the last ", n, " attempts got 421 within ",
                                         absl::FormatDuration(s.warning_window), " or so"));
  FillEvidence(e, d);
}

// Counts a failing message towards the structural rules and raises
// structural_failure when one of them holds.
void Core::NoteStrongEvidence(DestState& d, Category cat, int64_t now) {
  if (d.strong_first == kNoTime) d.strong_first = now;
  const bool ptr = cat == Category::kPtrRdns;
  uint8_t& n = ptr ? d.strong_ptr : d.strong_auth;
  if (n == 0) {
    Engine::Impl::SenderEvidence& s = m_.sender_evidence[d.source_id];
    ++(ptr ? s.ptr_pairs : s.auth_pairs);
  }
  if (n < 255) ++n;
}

void Core::StructuralEvidence(uint32_t di, MsgRec& r, Category cat, int64_t now, bool expiring) {
  DestState& d = m_.dests[di];
  // An expiry repeats the message's last reply; it is not a new attempt.
  if (!expiring && IsEvidenceCategory(cat)) NoteStrongEvidence(d, cat, now);
  const bool early_evidence =
      IsEvidenceCategory(cat) ||
      (m_.config.structural.early_weak_evidence && IsWeakEvidenceCategory(cat));
  if (early_evidence && !(r.flags & internal::kFlagEvidence)) {
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

int64_t Core::HeldProbeIntervalMs(DestState& d) {
  const StructuralConfig& s = m_.config.structural;
  const double f = std::pow(s.probe_backoff, static_cast<double>(d.held_probes));
  if (d.held_probes < 64) ++d.held_probes;
  const double ms = std::min(static_cast<double>(DurMs(s.probe_interval)) * f, 1e15);
  return std::max(DurMs(s.probe_interval),
                  std::min<int64_t>(static_cast<int64_t>(ms), DurMs(s.probe_interval_max)));
}

void Core::CheckStructural(uint32_t di, int64_t now) {
  DestState& d = m_.dests[di];
  const StructuralConfig& s = m_.config.structural;
  if (!s.enabled || d.health == Health::kStructural) return;
  const bool cycle = d.cycle_msgs >= s.cycle_messages;
  const bool early = d.evidence_msgs >= s.evidence_messages && d.evidence_first != kNoTime &&
                     now - d.evidence_first >= DurMs(s.evidence_span);
  // Strong, sender-side evidence: confirmed here or at other destinations.
  const Engine::Impl::SenderEvidence* pooled = nullptr;
  if (d.strong_ptr + d.strong_auth > 0) {
    auto it = m_.sender_evidence.find(d.source_id);
    if (it != m_.sender_evidence.end()) pooled = &it->second;
  }
  auto confirmed = [&](uint8_t here, uint32_t pairs) {
    return here > 0 && ((s.strong_attempts > 0 && here >= s.strong_attempts &&
                         now - d.strong_first >= DurMs(s.strong_span)) ||
                        (s.sender_destinations > 0 && pairs >= s.sender_destinations));
  };
  const bool ptr = pooled != nullptr && confirmed(d.strong_ptr, pooled->ptr_pairs);
  const bool auth = pooled != nullptr && confirmed(d.strong_auth, pooled->auth_pairs);
  if (!cycle && !early && !ptr && !auth) return;
  d.health = Health::kStructural;
  Event& e = Emit(EventKind::kStructuralFailure, now, d);
  // Built here, then copied into the event arena once.
  std::string detail;
  std::string_view rule;
  std::string rule_storage;
  if (ptr || auth) {
    // Say whose fault it is and which check failed.
    const std::string_view src = m_.names[d.source_id];
    const std::string who =
        src.empty() ? std::string("the sender") : absl::StrCat("source ", ToAbsl(src));
    rule = ptr ? "structural:sender/ptr" : "structural:sender/spf-dkim-dmarc";
    detail = absl::StrCat("sender-side: ",
                          ptr ? "PTR (reverse DNS of the sending IP)"
                              : "SPF/DKIM/DMARC (the sending domain's authentication)",
                          " fails for ", who, "; ", ptr ? d.strong_ptr : d.strong_auth,
                          " attempt(s) here and ", ptr ? pooled->ptr_pairs : pooled->auth_pairs,
                          " destination(s) for this source got such replies");
  } else {
    if (cycle) {
      detail =
          absl::StrCat(d.cycle_msgs, " messages failed a full retry cycle (", m_.cycle_failures,
                       " attempts) with no delivery to this destination since they were submitted");
    } else {
      detail = absl::StrCat(d.evidence_msgs, " messages got authentication/PTR",
                            s.early_weak_evidence ? "/reputation/DNSBL" : "", " replies over ",
                            absl::FormatDuration(absl::Milliseconds(now - d.evidence_first)),
                            " with no delivery");
    }
    // Whose side, by the dominant failure: the sender's checks (PTR,
    // SPF/DKIM/DMARC, its reputation at this receiver) or the receiver.
    const std::vector<CategoryCount> top = DominantCategories(d, 1);
    const Category c = top.empty() ? Category::kUnknownTransient : top[0].category;
    std::string_view check;
    if (c == Category::kPtrRdns) {
      check = "ptr";
    } else if (c == Category::kAuthSpfDkimDmarc) {
      check = "spf-dkim-dmarc";
    } else if (c == Category::kReputationBlock || c == Category::kReputationThrottle ||
               c == Category::kDnsblListed) {
      check = "reputation";
    }
    if (!check.empty()) {
      rule_storage = absl::StrCat("structural:sender/", ToAbsl(check));
      rule = rule_storage;
      absl::StrAppend(&detail, "; sender-side: ",
                      check == "ptr"          ? "PTR"
                      : check == "reputation" ? "reputation"
                                              : "SPF/DKIM/DMARC");
    } else {
      rule_storage = absl::StrCat("structural:receiver/", ToAbsl(CategoryName(c)));
      rule = rule_storage;
      absl::StrAppend(&detail, "; receiver-side: mostly ", ToAbsl(CategoryName(c)));
    }
  }
  FillEvidence(e, d);
  if (s.hold) {
    d.held = true;
    d.held_probes = 0;
    d.next_probe = SatAdd(now, DurMs(s.probe_interval));
    ArmWake(di, d.next_probe);
    const uint64_t n = Pending(d);
    m_.held_messages += n;
    absl::StrAppend(&detail, "; holding the destination (", n,
                    " message(s) pending), one probe after ",
                    absl::FormatDuration(s.probe_interval),
                    s.probe_backoff > 1.0
                        ? absl::StrCat(", the wait growing x", s.probe_backoff, " per probe up to ",
                                       absl::FormatDuration(s.probe_interval_max))
                        : std::string(" each time"));
  }
  e.detail = m_.events.Keep(detail);
  e.rule = m_.events.Keep(rule);
}

}  // namespace mailretry::internal
