// File: engine/internal/destination.cc
// Destination limits: suspension, concurrency and rate cuts, and their release
// on delivery.
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
#include "absl/strings/str_format.h"
#include "mailretry/engine/internal/core.h"

namespace mailretry::internal {

void Core::Suspend(uint32_t di, int64_t now, std::optional<int64_t> fixed_ms, Category cat,
                   std::string_view rule, const std::string& text, bool extend) {
  DestState& d = m_.dests[di];
  const DestinationPolicy& p = Policy(d);
  int64_t dur;
  if (fixed_ms) {
    dur = *fixed_ms;
  } else {
    // suspend_base 0: the caller models suspensions itself.
    if (p.suspend_base <= absl::ZeroDuration()) return;
    // Replies from messages already in flight when the suspension began
    // are not repeats; a failed probe is.
    if ((d.suspended_until > now || HalfOpen(d)) && !extend) return;
    const double f = std::pow(p.suspend_multiplier, static_cast<double>(d.suspensions));
    dur = std::min<int64_t>(
        DurMs(p.suspend_max),
        static_cast<int64_t>(std::min(static_cast<double>(DurMs(p.suspend_base)) * f, 1e15)));
    ++d.suspensions;
  }
  const int64_t until = SatAdd(now, dur);
  if (until <= d.suspended_until) return;
  // A new suspension's first probe comes one interval after it began, and a
  // failed probe set the next one when it was taken; either way no later
  // than the suspension's end: probing must never make a suspension longer
  // than configured (suspend_base 2 s, suspend_max 10 s with the 5-min
  // default interval held a destination for 5 min).
  if (!d.held) {
    if (!extend && !HalfOpen(d)) d.next_probe = SatAdd(now, DurMs(p.suspend_probe_interval));
    if (d.next_probe != kNoTime) d.next_probe = std::min(d.next_probe, until);
  }
  d.half_open = !fixed_ms.has_value() && Probing(d);
  d.suspended_until = until;
  d.suspended = true;
  ArmWake(di, until);
  Event& e = Emit(EventKind::kDestinationSuspended, now, d);
  DestinationEventInfo& info = m_.events.NewInfo();
  e.destination_info = &info;
  info.until = T(until);
  e.category = cat;
  e.rule = m_.events.Keep(rule);
  e.reply = m_.events.Keep(text);
  e.detail =
      m_.events.Keep(absl::StrCat("suspended for ", absl::FormatDuration(absl::Milliseconds(dur)),
                                  fixed_ms ? "" : absl::StrCat(" (repeat ", d.suspensions, ")")));
}

void Core::ReleaseSuspension(uint32_t di, int64_t now) {
  DestState& d = m_.dests[di];
  const DestinationPolicy& p = Policy(d);
  d.suspended_until = kNoTime;
  d.half_open = false;
  m_.woken_probes.erase(di);
  // Rate cuts stay: after a rate-limit suspension lifting them provoked the
  // same replies again (burst scenario: 4xx per delivered 0.023 -> 0.058).
  // Ramp: the backlog that waited behind the suspension must not go out at
  // the old concurrency into a receiver that has just recovered.
  d.ramp_to = std::max(d.ramp_to, d.concurrency);
  SetConcurrency(d, std::min(d.concurrency, p.min_concurrency));
  if (d.suspended) {
    d.suspended = false;
    Event& e = Emit(EventKind::kDestinationResumed, now, d);
    e.detail = m_.events.Keep(absl::StrCat("a probe was delivered; concurrency ramps from ",
                                           d.concurrency, " to ", d.ramp_to, " (+1 per delivery)"));
  }
  AddToRing(di);
}

void Core::NoteProbeTaken(uint32_t di, int64_t /*now*/) {
  if (m_.woken_probes.erase(di) > 0) return;
  m_.domain_probe_owner[m_.dests[di].domain_id] = di;
}

void Core::WakeSiblingProbes(uint32_t di, int64_t now) {
  const uint32_t dom = m_.dests[di].domain_id;
  m_.domain_probe_owner.erase(dom);
  for (uint32_t src : m_.source_list) {
    auto it = m_.pair_ids.find((uint64_t{dom} << 32) | src);
    if (it == m_.pair_ids.end()) continue;
    const uint32_t si = it->second;
    DestState& s = m_.dests[si];
    if (si == di || !HalfOpen(s) || s.probe_in_flight) continue;
    // A sibling may be waiting on its own next_probe or only on the owner's
    // (then it is off the ring with a wake at that time): both end now.
    s.next_probe = std::min(s.next_probe, now);
    m_.woken_probes.insert(si);
    AddToRing(si);
  }
}

void Core::EmitThrottled(DestState& d, int64_t now, Category cat, std::string_view rule,
                         const std::string& text, std::string detail,
                         std::optional<int64_t> until) {
  Event& e = Emit(EventKind::kDestinationThrottled, now, d);
  e.category = cat;
  e.rule = m_.events.Keep(rule);
  e.reply = m_.events.Keep(text);
  e.detail = m_.events.Keep(detail);
  DestinationEventInfo& info = m_.events.NewInfo();
  e.destination_info = &info;
  info.concurrency_limit = EffectiveConcurrency(d, now);
  info.rate_per_second = RatePerSecond(EffectiveIntervalMs(d, now));
  if (until) info.until = T(*until);
}

void Core::CutConcurrency(DestState& d, int64_t now, int64_t attempt_started, Category cat,
                          std::string_view rule, const std::string& text) {
  // One cut per cohort: connections opened before the last cut were opened
  // at the old level, so their refusals say nothing about the new one.
  // Without this, three simultaneous "too many connections" took 5 -> 2 -> 1.
  if (d.last_conc_cut != kNoTime && attempt_started < d.last_conc_cut) return;
  const DestinationPolicy& p = Policy(d);
  const uint32_t target =
      std::max(p.min_concurrency, std::min(d.concurrency / 2, p.cut_concurrency_to));
  d.success_streak = 0;
  d.ramp_to = 0;
  if (target >= d.concurrency) return;
  // Remember the refused level so that slow raises do not walk straight
  // back into the receiver's cap (2 -> 3 -> refused -> 1 -> ...). Only a
  // real cut sets it: later refusals from the same cohort see the cut limit.
  if (p.concurrency_ceiling_hold > absl::ZeroDuration()) {
    d.conc_ceiling = std::max(p.min_concurrency, d.concurrency - 1);
    d.conc_ceiling_until = SatAdd(now, DurMs(p.concurrency_ceiling_hold));
  }
  d.last_conc_cut = now;
  SetConcurrency(d, target);
  EmitThrottled(d, now, cat, rule, text, absl::StrCat("concurrency cut to ", target), std::nullopt);
}

void Core::CutRate(DestState& d, int64_t now, int64_t attempt_started, Category cat,
                   std::string_view rule, const std::string& text) {
  // An attempt that started before the last cut was sent at the old rate:
  // its rate-limit reply is not new evidence. Without this, a burst of
  // replies from one cohort halved the rate once per reply.
  if (d.last_cut != kNoTime && attempt_started < d.last_cut) return;
  const DestinationPolicy& p = Policy(d);
  const int64_t cur = EffectiveIntervalMs(d, now, /*with_override=*/false);
  int64_t next = cur == 0 ? IntervalMs(p.unlimited_cut_to) : cur * 2;
  next = std::min(next, IntervalMs(p.min_rate));
  next = std::max(next, cur);
  d.last_cut = now;
  d.success_streak = 0;
  if (next == cur && d.cut_interval_ms != 0) {
    d.cut_interval_ms = next;  // at the floor: restart the quiet period only
    return;
  }
  d.cut_interval_ms = next;
  if (next == cur) return;
  EmitThrottled(d, now, cat, rule, text,
                absl::StrFormat("rate cut to %.4g messages/s", 1000.0 / static_cast<double>(next)),
                std::nullopt);
}

void Core::OnDelivered(uint32_t di, int64_t now) {
  DestState& d = m_.dests[di];
  const DestinationPolicy& p = Policy(d);
  ++d.delivered;
  d.last_delivery = now;
  d.capacity_bits <<= 1;
  NoteThrottleBit(d, now, false);
  d.consecutive_failures = 0;
  d.conn_failures = 0;
  d.suspensions = 0;
  d.cat_counts.fill(0);
  d.cycle_msgs = 0;
  d.evidence_msgs = 0;
  d.evidence_first = kNoTime;
  if (d.strong_ptr + d.strong_auth > 0) {
    // The check passes here now (a PTR fixed, a record published).
    Engine::Impl::SenderEvidence& s = m_.sender_evidence[d.source_id];
    if (d.strong_ptr > 0 && s.ptr_pairs > 0) --s.ptr_pairs;
    if (d.strong_auth > 0 && s.auth_pairs > 0) --s.auth_pairs;
    d.strong_ptr = d.strong_auth = 0;
  }
  d.strong_first = kNoTime;
  if (d.ramp_to > d.concurrency) {
    SetConcurrency(d, d.concurrency + 1);
    if (d.concurrency >= d.ramp_to) d.ramp_to = 0;
  } else if (d.ramp_to = 0; ++d.success_streak >= p.raise_concurrency_after) {
    d.success_streak = 0;
    const bool capped = d.conc_ceiling != 0 && now < d.conc_ceiling_until;
    const uint32_t limit = capped ? std::min(p.max_concurrency, d.conc_ceiling) : p.max_concurrency;
    if (d.concurrency < limit) SetConcurrency(d, d.concurrency + 1);
  }
  if (d.health == Health::kStructural) {
    d.health = Health::kHealthy;
    const bool was_held = d.held;
    d.held = false;
    Event& e = Emit(EventKind::kStructuralCleared, now, d);
    e.detail = "a message was delivered; the destination is released";  // static storage
    if (was_held) {
      const uint64_t n = Pending(d);
      m_.released_messages += n;
      e.detail =
          m_.events.Keep(absl::StrCat(ToAbsl(e.detail), " (", n, " held message(s) released)"));
    }
    AddToRing(di);
  } else if (d.health == Health::kWarning) {
    const double n = d.cur_attempts + d.prev_attempts;
    if (d.cur_421 + d.prev_421 < m_.config.structural.warning_ratio * n / 2)
      d.health = Health::kHealthy;
  }
}

}  // namespace mailretry::internal
