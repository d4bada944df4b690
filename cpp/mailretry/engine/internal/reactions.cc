// File: engine/internal/reactions.cc
// Reactions to a failed attempt: user reaction rules first, then the built-in
// reaction of the reply's category.
#include <algorithm>
#include <bit>
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
#include "mailretry/engine/internal/patterns.h"
#include "re2/re2.h"

namespace mailretry::internal {

bool Core::ReactionMatches(const internal::CompiledReaction& cr, const Reply& reply,
                           const Classification& c) {
  const ReactionRule& r = cr.rule;
  if (!r.categories.empty() &&
      std::find(r.categories.begin(), r.categories.end(), c.category) == r.categories.end()) {
    return false;
  }
  if (!cr.code.Matches(reply)) return false;
  if (!cr.enhanced.Matches(reply.enhanced)) return false;
  if (cr.regex && !RE2::PartialMatch(reply.text, *cr.regex)) return false;
  return true;
}

void Core::NoteThrottleBit(DestState& d, int64_t now, bool throttled) {
  d.throttle_bits = (d.throttle_bits << 1) | (throttled ? 1 : 0);
  const DestinationPolicy& p = Policy(d);
  if (!p.partial_throttle_window || p.capacity_window == 0) return;
  // Over the last 64 attempts (a share of 20 was too noisy: a steady
  // two-thirds throttle often showed a whole window refused). Under one in
  // sixteen refused is noise that per-message backoff handles (a spell kept
  // alive by it delayed the reaction to a later incident: reputation-incident
  // 4xx 1.12x KumoMTA's); three in four or more is a block, an incident or a
  // rate ceiling's run of refusals, which a cut or a suspension does help:
  // either ends a partial spell.
  const auto n = static_cast<uint32_t>(std::popcount(d.throttle_bits));
  if (16 * n < 64 || 4 * n >= 3 * 64) {
    d.partial_since = kNoTime;
  } else if (d.partial_since == kNoTime) {
    d.partial_since = now;
  }
}

bool Core::PartlyThrottled(const DestState& d, int64_t now) const {
  // Throttle replies interleaved with deliveries for an hour or more, with
  // no run of a whole window refused: a standing that lets part of the mail
  // through all day, not an incident or a rate ceiling (those show runs of
  // refusals, and a cut or a suspension helps them). Its share does not
  // depend on the rate, so cutting the rate or suspending only holds back
  // the messages that would have gone through (held-out set 5: p95 38 h
  // against Postfix's 0.17 h).
  return d.partial_since != kNoTime && now - d.partial_since >= kChronicThrottleMs;
}

void Core::ApplyReactions(uint32_t di, int64_t now, int64_t attempt_started, const Reply& reply,
                          const Classification& c, const std::string& text, bool probe) {
  DestState& d = m_.dests[di];
  if (probe) {
    if (IsDestinationLevel(c.category, reply.transport)) {
      // The half-open probe failed for a destination-level reason: the next
      // repeat. Nothing else: it says nothing new about the rate.
      Suspend(di, now, std::nullopt, c.category, "builtin:probe-failed", text, /*extend=*/true);
    } else {
      // Refused for its own reasons (greylisted, unknown recipient, ...):
      // the destination answered past the point where it was refusing, so it
      // is back. Without this, a greylisting host, which refuses every
      // first attempt, stayed half-open for good. The domain's other
      // sources are told too, as after a delivered probe.
      ReleaseSuspension(di, now);
      WakeSiblingProbes(di, now);
    }
    return;
  }
  bool matched = false;
  for (uint16_t ri : d.reaction_candidates) {
    const internal::CompiledReaction& cr = m_.reactions[ri];
    if (!ReactionMatches(cr, reply, c)) continue;
    matched = true;
    const ReactionRule& r = cr.rule;
    if (r.threshold > 1) {
      std::vector<int64_t>& hits = m_.reaction_hits[(uint64_t{di} << 16) | ri];
      const int64_t lo = now - DurMs(r.window);
      hits.erase(hits.begin(),
                 std::find_if(hits.begin(), hits.end(), [&](int64_t h) { return h > lo; }));
      hits.push_back(now);
      if (hits.size() < r.threshold) continue;
      hits.clear();
    }
    const std::string rule_name = absl::StrCat("reaction:", r.name);
    const int64_t until = SatAdd(now, DurMs(r.duration));
    if (r.set_concurrency) {
      d.conc_override = *r.set_concurrency;
      d.conc_override_until = until;
      ++m_.limits_generation;
      // When it ends the limit rises with no call to bump the generation:
      // Engine::LimitsGeneration checks this time.
      if (m_.conc_override_end != kNoTime)
        m_.conc_override_end = std::min(m_.conc_override_end, until);
      EmitThrottled(d, now, c.category, rule_name, text,
                    absl::StrCat("concurrency set to ", *r.set_concurrency, " by rule"), until);
    }
    if (r.set_rate) {
      d.rate_override_ms = IntervalMs(*r.set_rate);
      d.rate_override_until = until;
      EmitThrottled(d, now, c.category, rule_name, text,
                    absl::StrCat("rate set to ", r.set_rate->messages, " per ",
                                 absl::FormatDuration(r.set_rate->per), " by rule"),
                    until);
    }
    if (r.suspend_for) Suspend(di, now, DurMs(*r.suspend_for), c.category, rule_name, text);
  }
  const bool capacity = c.category == Category::kServerBusyCapacity;
  d.capacity_bits = (d.capacity_bits << 1) | (capacity ? 1 : 0);
  NoteThrottleBit(d, now, c.category == Category::kReputationThrottle);
  if (matched) return;

  // Built-in reactions by category.
  switch (c.category) {
    case Category::kReputationThrottle:
      if (PartlyThrottled(d, now)) break;
      [[fallthrough]];
    case Category::kRateLimit:
      CutRate(d, now, attempt_started, c.category, c.rule, text);
      Suspend(di, now, std::nullopt, c.category, c.rule, text);
      break;
    case Category::kServerBusyCapacity: {
      // The rate of capacity replies over the recent attempts, not one reply.
      const uint32_t w = Policy(d).capacity_window;
      if (w == 0) {
        Suspend(di, now, std::nullopt, c.category, c.rule, text);
        break;
      }
      const uint64_t mask = w >= 64 ? ~uint64_t{0} : ((uint64_t{1} << w) - 1);
      const auto n = static_cast<uint32_t>(std::popcount(d.capacity_bits & mask));
      if (n >= Policy(d).capacity_suspend_min)
        Suspend(di, now, std::nullopt, c.category, c.rule, text);
      break;
    }
    case Category::kMaintenanceShutdown:
      Suspend(di, now, std::nullopt, c.category, c.rule, text);
      break;
    case Category::kTooManyConnections:
      CutConcurrency(d, now, attempt_started, c.category, c.rule, text);
      break;
    default:
      break;
  }
  if (IsConnectionLevel(reply.transport)) {
    ++d.conn_failures;
    const uint32_t limit = Policy(d).connection_failures_to_suspend;
    if (limit != 0 && d.conn_failures >= limit) {
      d.conn_failures = 0;
      Suspend(di, now, std::nullopt, c.category, "builtin:connection-failures", text);
    }
  } else {
    d.conn_failures = 0;
  }
}

}  // namespace mailretry::internal
