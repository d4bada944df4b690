// File: engine/internal/greylist.cc
// Learned greylist delays. A greylisting receiver refuses a new (client,
// sender, recipient) triplet until a delay of its own has passed since the
// first attempt (postgrey's 5 min, others 10 min to an hour), then accepts.
// A fixed 5-min retry hits a long window many times, and a retry at 15 min
// can miss a 15-min window by seconds. The delay is a property of the
// receiving domain, so each domain's is learned from its messages, over all
// sources: a refused retry bounds it from below, a delivery right after a
// greylist deferral from above, and retries go at the upper bound.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

#include "mailretry/engine/internal/core.h"

namespace mailretry::internal {
namespace {

constexpr int64_t kMinute = 60'000;
// Waits longer than this are not greylisting any more: the message falls
// back to the override's own rule (three fixed retries, then its backoff).
constexpr int64_t kLongestWait = 4 * 60 * kMinute;
// A wait that worked and one that did not are "close" within this: no more
// bisecting. Timing noise (seconds of latency) is well inside it.
int64_t CloseEnough(int64_t upper) { return std::max<int64_t>(2 * kMinute, upper / 4); }

// The next wait to try while no wait is known to work: the override's start
// (5 min) and its multiples up to three of them, then doubling. Above the
// longest refused wait, so that a message never repeats a refused wait.
int64_t Explore(int64_t lower, int64_t start) {
  if (lower < start) return start;
  if (lower < 3 * start) return (lower / start + 1) * start;
  return 2 * lower;
}

}  // namespace

std::optional<int64_t> Core::LearnedGreylistDelay(MsgRec& r, const DestState& d, int64_t now,
                                                  int64_t start_ms,
                                                  std::string_view* schedule_name) {
  if (!Policy(d).learn_greylist_delay) return std::nullopt;
  const bool first = r.grey_s == 0;
  if (first) {
    const int64_t s = (now - r.submitted_ms) / 1000 + 1;
    // Too late in its life to count (uint16 seconds, about 18 h): the
    // override's own rule, unlearned.
    if (s < 1 || s >= std::numeric_limits<uint16_t>::max()) return std::nullopt;
    r.grey_s = static_cast<uint16_t>(s);
  }
  const int64_t first_ms = r.submitted_ms + (int64_t{r.grey_s} - 1) * 1000;
  Engine::Impl::GreylistMemory& g = m_.greylist[d.domain_id];
  const int64_t waited = now - first_ms;
  if (!first && waited > g.lower_ms) {
    g.lower_ms = waited;
    // Refused well after a wait that once worked: the delay changed (or the
    // triplet's record expired). Learn again from here.
    if (g.upper_ms != kNever && g.lower_ms >= g.upper_ms + kMinute) {
      CountLearnedGreylist(g.upper_ms, kNever);
      g.upper_ms = kNever;
    }
  }
  int64_t target;
  std::optional<int64_t> prior;
  if (g.upper_ms == kNever) prior = GreylistPrior(std::max(g.lower_ms, waited));
  if (prior) {
    // Nothing known here: wait as long as the typical other domain needed
    // (the median), then as long as nearly all did (the 90th percentile),
    // so that a domain with one or two messages is not refused at 5, 10
    // and 15 min on its way to a 15-min window. One step to the 80th
    // percentile (before) made a 3-min host among 40-min ones wait 60 min.
    target = std::max(start_ms, *prior);
    *schedule_name = "builtin:greylisting (learning)";
  } else if (g.upper_ms == kNever) {
    target = Explore(std::max(g.lower_ms, waited), start_ms);
    *schedule_name = "builtin:greylisting (learning)";
  } else if (first && g.lower_ms > 0 && g.upper_ms - g.lower_ms > CloseEnough(g.upper_ms)) {
    // A wide gap between a refused and a working wait: this message's first
    // retry tries the middle (one extra refusal at most per message; the
    // rest go at the wait known to work).
    target = g.lower_ms + (g.upper_ms - g.lower_ms) / 2;
    *schedule_name = "builtin:greylisting (learning)";
  } else if (first && g.lower_ms == 0 && g.upper_ms > start_ms) {
    // Nothing was ever refused after a wait here, so the wait that worked
    // may be far above the host's delay: a first delivery after the prior
    // (most domains' delay) stayed the domain's wait for good, and a 3-min
    // host among 40-min ones waited 60 min per message. Try half of it: if
    // it works the bound halves at no cost; if not, the refused wait is the
    // lower bound and bisecting (at most one retry per message) takes over.
    target = std::max(start_ms, g.upper_ms / 2);
    *schedule_name = "builtin:greylisting (learning)";
  } else {
    target = std::max(g.upper_ms, waited + kMinute);
    *schedule_name = "builtin:greylisting (learned)";
  }
  if (target > kLongestWait) {
    *schedule_name = "builtin:greylisting";
    return std::nullopt;
  }
  return std::max<int64_t>(1000, first_ms + target - now);
}

void Core::NoteGreylistDelivery(const MsgRec& r, int64_t now) {
  if (r.grey_s == 0 || r.last_category != static_cast<uint8_t>(Category::kGreylisting)) return;
  const DestState& d = m_.dests[r.dest];
  if (!Policy(d).learn_greylist_delay) return;
  const int64_t waited = now - (r.submitted_ms + (int64_t{r.grey_s} - 1) * 1000);
  if (waited <= 0) return;
  Engine::Impl::GreylistMemory& g = m_.greylist[d.domain_id];
  if (waited < g.upper_ms) CountLearnedGreylist(g.upper_ms, waited);
  g.upper_ms = std::min(g.upper_ms, waited);
  // A refused wait longer than one that worked: the refusal was stale.
  if (g.lower_ms >= g.upper_ms) g.lower_ms = 0;
}

// The first-contact pattern. Greylisting wordings vary without end ("not yet
// authorized", "not yet trusted", "try later"), and the reply code cannot
// tell them from a load or rate deferral (450/451 with 4.2.0, 4.3.2 or
// 4.7.1 alike); what gives greylisting away is whom it refuses: every new
// (client, sender, recipient) triplet once, at its first contact, and nobody
// on a retry after the delay. So a domain where nearly every delivered
// message was first deferred with an unknown-transient or server-busy reply
// (the categories a misread greylisting wording lands in) and then accepted,
// and (almost) none went through at the first attempt, is treated as
// greylisting for such first-contact deferrals: retried at the learned delay
// instead of the backoff, and not counted as capacity trouble (which would
// suspend the destination). A server that is really busy or flaky defers
// attempts at random, so it delivers most messages at their first attempt
// and never shows the pattern. Counts are halved past kFirstContactAge
// messages, so a host that stops greylisting (postgrey's auto-whitelist)
// drops out of it.
namespace {
constexpr uint32_t kFirstContactMin = 3;    // deferred-then-delivered messages needed
constexpr uint32_t kFirstContactRatio = 9;  // ... per message delivered at once, at least
constexpr uint32_t kFirstContactAge = 64;
constexpr std::string_view kFirstContactRule = "builtin:first-contact-greylisting";

bool MaybeGreylistingInOtherWords(const Reply& reply, const Classification& c) {
  return c.transient && reply.transport == Transport::kReply && reply.code >= 400 &&
         reply.code < 500 &&
         (c.category == Category::kUnknownTransient || c.category == Category::kServerBusyCapacity);
}
}  // namespace

Classification Core::FirstContactGreylisting(MsgRec& r, const DestState& d, const Reply& reply,
                                             const Classification& c) {
  if (!Policy(d).learn_greylist_delay || !MaybeGreylistingInOtherWords(reply, c)) return c;
  // Only a message's first contact (or its retries while it is being
  // treated as greylisted): a reply to a later attempt is not the pattern.
  const bool first = r.attempts == 1;
  if (first) r.flags |= internal::kFlagFirstDeferred;
  if (!first && r.last_category != static_cast<uint8_t>(Category::kGreylisting)) return c;
  if (d.domain_id >= m_.first_contact.size()) return c;
  const Engine::Impl::FirstContact& f = m_.first_contact[d.domain_id];
  if (f.deferred_then_delivered < kFirstContactMin ||
      f.deferred_then_delivered < kFirstContactRatio * f.first_delivered) {
    return c;
  }
  Classification g = c;
  g.category = Category::kGreylisting;
  g.rule = kFirstContactRule;
  return g;
}

void Core::NoteFirstContact(const MsgRec& r, const DestState& d) {
  if (!Policy(d).learn_greylist_delay) return;
  const bool at_once = r.attempts == 1;
  const bool after_deferral = !at_once && (r.flags & internal::kFlagFirstDeferred) != 0;
  if (!at_once && !after_deferral) return;
  if (d.domain_id >= m_.first_contact.size()) m_.first_contact.resize(m_.names.size());
  Engine::Impl::FirstContact& f = m_.first_contact[d.domain_id];
  if (at_once) {
    ++f.first_delivered;
  } else {
    ++f.deferred_then_delivered;
  }
  if (f.first_delivered + f.deferred_then_delivered > kFirstContactAge) {
    f.first_delivered /= 2;
    f.deferred_then_delivered /= 2;
  }
}

namespace {
size_t GreyBucket(int64_t upper, size_t n) {
  const int64_t b = (upper + Engine::Impl::kGreyBucketMs - 1) / Engine::Impl::kGreyBucketMs;
  return static_cast<size_t>(std::clamp<int64_t>(b, 0, static_cast<int64_t>(n) - 1));
}
}  // namespace

void Core::CountLearnedGreylist(int64_t old_upper, int64_t new_upper) {
  std::vector<uint32_t>& h = m_.greylist_learned;
  if (old_upper != kNever) {
    uint32_t& c = h[GreyBucket(old_upper, h.size())];
    if (c > 0) --c;
    if (m_.greylist_learned_domains > 0) --m_.greylist_learned_domains;
  }
  if (new_upper != kNever) {
    ++h[GreyBucket(new_upper, h.size())];
    ++m_.greylist_learned_domains;
  }
}

std::optional<int64_t> Core::GreylistPrior(int64_t above) const {
  // Too few domains to speak for the others.
  constexpr uint32_t kMinDomains = 5;
  const uint32_t n = m_.greylist_learned_domains;
  if (n < kMinDomains) return std::nullopt;
  const std::vector<uint32_t>& h = m_.greylist_learned;
  for (const uint64_t percent : {50, 90}) {
    const uint64_t want = (uint64_t{n} * percent + 99) / 100;  // rounded up
    uint64_t seen = 0;
    for (size_t b = 0; b < h.size(); ++b) {
      seen += h[b];
      if (seen < want) continue;
      const int64_t delay = static_cast<int64_t>(b) * Engine::Impl::kGreyBucketMs;
      // A refused wait a minute short of it is not worth one more refusal.
      if (delay >= above + kMinute) return delay;
      break;
    }
  }
  return std::nullopt;
}

}  // namespace mailretry::internal
