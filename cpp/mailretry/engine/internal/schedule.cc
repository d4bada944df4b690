// File: engine/internal/schedule.cc
// The choice of schedule for a failed message (overrides, backoff, the final
// attempt at the lifetime end) and expiry.
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
#include "mailretry/engine/internal/core.h"

namespace mailretry::internal {

// Which schedule applies to this failure: category/transport overrides
// first (user ones before built-ins), then destination-only ones.
const ScheduleOverride* Core::FindOverride(const DestState& d, const Reply& reply,
                                           Category cat) const {
  for (int pass = 0; pass < 2; ++pass) {
    for (uint16_t i : d.schedule_candidates) {
      const ScheduleOverride& o = m_.schedules[i];
      const bool specific = !o.categories.empty() || !o.transports.empty();
      if (specific != (pass == 0)) continue;
      if (!o.categories.empty() &&
          std::find(o.categories.begin(), o.categories.end(), cat) == o.categories.end()) {
        continue;
      }
      if (!o.transports.empty() && std::find(o.transports.begin(), o.transports.end(),
                                             reply.transport) == o.transports.end()) {
        continue;
      }
      return &o;
    }
  }
  return nullptr;
}

// The next retry for a transiently failed message, or expiry (nullopt).
std::optional<int64_t> Core::NextAttempt(MsgRec& r, const DestState& d, const Reply& reply,
                                         Category cat, int64_t now,
                                         std::string_view* schedule_name) {
  const RetryPolicy& life = LifetimePolicy(d);
  const ScheduleOverride* o = FindOverride(d, reply, cat);
  const RetryPolicy* policy = &life;
  bool advance = true;
  std::optional<int64_t> fixed;
  *schedule_name = d.lifetime_schedule >= 0
                       ? std::string_view(m_.schedules[d.lifetime_schedule].name)
                       : std::string_view("default");
  std::optional<int64_t> learned;
  RetryPolicy learned_full;
  if (o != nullptr && o->name == kBuiltinGreylisting && o->fixed_delay) {
    learned = LearnedGreylistDelay(r, d, now, DurMs(*o->fixed_delay), schedule_name);
  }
  if (learned) {
    // The learned wait replaces the fixed one, past max_consecutive too (a
    // 60-min window needs more than three 5-min retries while learning).
    advance = false;
    fixed = learned;
  } else if (o != nullptr && o->name == kBuiltinConnection && !Policy(d).quick_connection_retry) {
    advance = false;
    *schedule_name = o->name;
  } else if (o == nullptr && cat == Category::kReputationThrottle &&
             Policy(d).suspend_base > absl::ZeroDuration() && PartlyThrottled(d, now) &&
             r.fixed_uses < 2) {
    // A partly throttled path delivers most attempts, and the share refused
    // does not depend on when the retry comes: the refused message retries
    // soon (Postfix's 5-min minimal backoff), twice without burning its
    // backoff. The default 15 min put the p95 of a steady one-third throttle
    // at 1.7 h against Postfix's 0.17 h.
    advance = false;
    fixed = std::min<int64_t>(DurMs(life.initial_delay), DurMs(absl::Minutes(5)));
    *schedule_name = kBuiltinPartialThrottle;
  } else if (o != nullptr) {
    const bool non_advancing = o->fixed_delay.has_value() || !o->advance_backoff;
    if (non_advancing && (o->max_consecutive == 0 || r.fixed_uses < o->max_consecutive)) {
      advance = false;
      if (o->fixed_delay) fixed = DurMs(*o->fixed_delay);
      *schedule_name = o->name;
    } else if (o->name == kBuiltinConnection) {
      // Past the quick retries a connection failure still does not burn the
      // schedule: the message waits its current step's delay (a dead host is
      // suspended long before this matters).
      advance = false;
      *schedule_name = o->name;
    } else if (o->policy) {
      policy = &*o->policy;
      *schedule_name = o->name;
      if (o->name == kBuiltinMailboxFull &&
          LearnedFullMailboxPolicy(r, d, now, *o->policy, &learned_full)) {
        policy = &learned_full;
      }
    }
  }
  if (policy->max_attempts != 0 && r.attempts >= policy->max_attempts) return std::nullopt;
  RetryState st;
  st.failures = r.attempts;
  st.step = r.step;
  st.age = absl::Milliseconds(now - r.submitted_ms);
  st.last_delay = absl::Seconds(r.last_delay_s);
  int64_t delay = fixed ? *fixed : DurMs(NextDelay(*policy, st, m_.rng));
  if (advance) {
    if (r.step < 255) ++r.step;
    r.fixed_uses = 0;
  } else if (r.fixed_uses < 255) {
    ++r.fixed_uses;
  }
  r.last_delay_s =
      static_cast<uint32_t>(std::min<int64_t>(delay / 1000, std::numeric_limits<uint32_t>::max()));
  const int64_t remaining = ExpiresMs(r) - now;
  r.flags &= static_cast<uint8_t>(~internal::kFlagFinal);
  if (delay >= remaining) {
    if (!life.attempt_at_lifetime_end || remaining <= 0) return std::nullopt;
    delay = remaining;
    r.flags |= internal::kFlagFinal;
  }
  return now + delay;
}

std::optional<int64_t> Core::WaitForRelease(MsgRec& r, int64_t now) {
  r.flags &= static_cast<uint8_t>(~internal::kFlagFinal);
  if (ExpiresMs(r) <= now) return std::nullopt;
  return now;
}

void Core::Expire(uint32_t s, int64_t t, std::string_view why) {
  MsgRec& r = m_.msgs[s];
  DestState& d = m_.dests[r.dest];
  ++d.expired;
  ++m_.expired;
  if (d.held) ++m_.expired_held;
  const std::string last = LastReplyText(r);
  if (Event* e = EmitMsg(EventKind::kExpired, t, r)) {
    e->status = "4.4.7";
    if (r.last_category != 0xff) e->category = static_cast<Category>(r.last_category);
    e->reply = m_.events.Keep(last);
    e->detail = m_.events.Keep(absl::StrCat(ToAbsl(why), " after ", r.attempts, " attempt(s)"));
  }
  const uint32_t di = r.dest;
  StructuralEvidence(di, r,
                     r.last_category != 0xff ? static_cast<Category>(r.last_category)
                                             : Category::kUnknownTransient,
                     t, /*expiring=*/true);
  FreeSlot(s);
}

}  // namespace mailretry::internal
