// File: engine/internal/operations.cc
// The bodies of the engine's operations (Submit, TakeReady, Report, ...), run
// with Impl::mu held.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "mailretry/engine/destination_name.h"
#include "mailretry/engine/internal/commands.h"
#include "mailretry/engine/internal/core.h"

namespace mailretry::internal {

absl::Status Core::SubmitOne(uint64_t id, uint32_t di, int64_t now,
                             std::optional<int64_t> not_before) {
  const uint32_t s = AllocSlot();
  MsgRec& r = m_.msgs[s];
  r.id = id;
  r.dest = di;
  r.submitted_ms = now;
  m_.ids.insert(s);
  ++m_.submitted;
  if (m_.dests[di].held) ++m_.held_messages;
  if (not_before && *not_before > now) {
    r.state = MsgState::kScheduled;
    ++m_.scheduled_n;
    ++m_.dests[di].scheduled_count;
    SetTimer(s, *not_before, false);
  } else {
    MakeReady(s, false);
  }
  return absl::OkStatus();
}

// Names are normalised once, here, where they enter the engine (see
// engine/destination_name.h); `storage` holds a changed spelling.
absl::StatusOr<std::string_view> Core::CheckDestination(std::string_view destination,
                                                        std::string& storage) const {
  if (IsNormalDestination(destination)) return destination;
  absl::StatusOr<std::string> n = NormalizeDestination(destination);
  if (!n.ok()) return n.status();
  storage = *std::move(n);
  return std::string_view(storage);
}

absl::Status Core::Submit(uint64_t id, std::string_view raw_destination, absl::Time now_t,
                          std::string_view source, std::optional<absl::Time> not_before) {
  std::string storage;
  absl::StatusOr<std::string_view> destination = CheckDestination(raw_destination, storage);
  if (!destination.ok()) return destination.status();
  if (absl::Status s = ValidateSourceName(source); !s.ok()) return s;
  if (not_before && !IsTimeValid(*not_before))
    return absl::InvalidArgumentError("not_before is out of range");
  if (absl::Status s = Advance(now_t); !s.ok()) return s;
  if (m_.ids.contains(internal::IdKey{id})) {
    return absl::AlreadyExistsError(absl::StrCat("message ", id, " is already pending"));
  }
  const uint32_t di = DestFor(*destination, source);
  std::optional<int64_t> nb;
  if (not_before) nb = Ms(*not_before);
  return SubmitOne(id, di, m_.now_ms, nb);
}

absl::Status Core::SubmitMany(absl::Span<const uint64_t> ids, absl::Span<const uint32_t> dest_idx,
                              absl::Span<const std::string> dest_names, absl::Time now_t,
                              absl::Span<const uint32_t> src_idx,
                              absl::Span<const std::string> src_names) {
  if (ids.size() != dest_idx.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "msg_ids has ", ids.size(), " entries but destination_indices has ", dest_idx.size()));
  }
  if (!src_idx.empty() && src_idx.size() != ids.size()) {
    return absl::InvalidArgumentError("source_indices must be empty or as long as msg_ids");
  }
  // Normalised spellings, copied only when some name is not in normal form.
  std::vector<std::string> normal_names;
  for (size_t i = 0; i < dest_names.size(); ++i) {
    if (IsNormalDestination(dest_names[i])) continue;
    absl::StatusOr<std::string> n = NormalizeDestination(dest_names[i]);
    if (!n.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("destination_names[", i, "]: ", n.status().message()));
    if (normal_names.empty()) normal_names.assign(dest_names.begin(), dest_names.end());
    normal_names[i] = *std::move(n);
  }
  if (!normal_names.empty()) dest_names = normal_names;
  for (size_t i = 0; i < src_names.size(); ++i) {
    if (absl::Status s = ValidateSourceName(src_names[i]); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("source_names[", i, "]: ", s.message()));
    }
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (dest_idx[i] >= dest_names.size()) {
      return absl::InvalidArgumentError(absl::StrCat("destination_indices[", i, "] = ", dest_idx[i],
                                                     " is out of range (", dest_names.size(),
                                                     " names)"));
    }
    if (!src_idx.empty() && src_idx[i] >= src_names.size()) {
      return absl::InvalidArgumentError(absl::StrCat("source_indices[", i, "] = ", src_idx[i],
                                                     " is out of range (", src_names.size(),
                                                     " names)"));
    }
  }
  if (absl::Status s = Advance(now_t); !s.ok()) return s;
  absl::flat_hash_set<uint64_t> seen;
  seen.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!seen.insert(ids[i]).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("message ", ids[i], " appears twice in the batch"));
    }
    if (m_.ids.contains(internal::IdKey{ids[i]})) {
      return absl::AlreadyExistsError(absl::StrCat("message ", ids[i], " is already pending"));
    }
  }
  m_.ids.reserve(m_.ids.size() + ids.size());
  std::vector<uint32_t> cache(src_idx.empty() ? dest_names.size() : 0, kNil);
  absl::flat_hash_map<uint64_t, uint32_t> pair_cache;
  for (size_t i = 0; i < ids.size(); ++i) {
    uint32_t di;
    if (src_idx.empty()) {
      uint32_t& c = cache[dest_idx[i]];
      if (c == kNil) c = DestFor(dest_names[dest_idx[i]], {});
      di = c;
    } else {
      const uint64_t key = (uint64_t{dest_idx[i]} << 32) | src_idx[i];
      auto [it, inserted] = pair_cache.emplace(key, 0);
      if (inserted) it->second = DestFor(dest_names[dest_idx[i]], src_names[src_idx[i]]);
      di = it->second;
    }
    SubmitOne(ids[i], di, m_.now_ms, std::nullopt).IgnoreError();
  }
  return absl::OkStatus();
}

absl::Status Core::TakeReady(absl::Time now_t, size_t limit, std::vector<Lease>& out) {
  out.clear();
  if (absl::Status s = Advance(now_t); !s.ok()) return s;
  const int64_t now = m_.now_ms;
  out.reserve(std::min<size_t>(limit, m_.ready_n));
  const int64_t deadline = SatAdd(now, m_.lease_timeout_ms);
  while (out.size() < limit && !m_.ring.empty()) {
    const uint32_t di = m_.ring.front();
    m_.ring.pop_front();
    DestState& d = m_.dests[di];
    if (d.first_count + d.retry_count == 0) {
      d.in_ring = false;
      continue;
    }
    const int64_t blocked = BlockedUntil(d, now);
    if (blocked != 0) {
      d.in_ring = false;
      if (blocked != kNever) ArmWake(di, blocked);
      continue;
    }
    // Alternate first attempts and retries so neither starves the other.
    bool use_retry = d.first_count == 0 || (d.retry_count > 0 && d.take_retry_next);
    d.take_retry_next = !use_retry;
    const uint32_t s = use_retry ? d.retry_head : d.first_head;
    Unlink(s);
    MsgRec& r = m_.msgs[s];
    r.state = MsgState::kLeased;
    if (r.attempts < std::numeric_limits<uint16_t>::max()) ++r.attempts;
    ++m_.leased_n;
    ++m_.attempts;
    ++d.attempts;
    ++d.in_flight;
    if (d.held) {
      d.probe_in_flight = true;
      r.flags |= internal::kFlagProbe;
      d.next_probe = SatAdd(now, HeldProbeIntervalMs(d));
    } else if (HalfOpen(d)) {
      // BlockedUntil let it through: the half-open probe.
      d.probe_in_flight = true;
      r.flags |= internal::kFlagProbe;
      d.next_probe = SatAdd(now, DurMs(Policy(d).suspend_probe_interval));
      NoteProbeTaken(di, now);
    }
    const int64_t iv = EffectiveIntervalMs(d, now);
    if (iv > 0) d.tat = SatAdd(std::max(d.tat == kNoTime ? now : d.tat, now), iv);
    // The message leaves the timer queue (its ready deadline) for the lease
    // FIFO: no timer-queue entry per lease (lease_deadlines.h).
    r.timer_ms = deadline;
    m_.msg_timers->Cancel(s).IgnoreError();
    if (m_.lease_deadlines_on) m_.leases.Push(deadline, s, r.id, r.attempts);
    Lease& l = out.emplace_back();
    l.msg_id = r.id;
    l.destination = m_.names[d.domain_id];
    l.source = m_.names[d.source_id];
    l.destination_index = di;
    l.attempt = r.attempts;
    l.deadline = T(deadline);
    l.slot = SlotHint{s};
    if (d.first_count + d.retry_count > 0) {
      m_.ring.push_back(di);
    } else {
      d.in_ring = false;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Decision> Core::Report(uint64_t id, uint32_t attempt, int64_t now,
                                      const Reply& reply, const ReplyCache::Parsed* parsed,
                                      SlotHint hint) {
  // The hint is taken only when its record is pending with this id: ids are
  // unique among pending messages (the index holds exactly the non-free
  // records), so that record is the one the index would find.
  std::optional<IdIndex::const_iterator> pos;  // s's place in the index, if looked up
  uint32_t s = hint.slot;
  if (s >= m_.msgs.size() || m_.msgs[s].state == MsgState::kFree || m_.msgs[s].id != id) {
    auto it = m_.ids.find(internal::IdKey{id});
    if (it == m_.ids.end()) {
      return absl::NotFoundError(
          absl::StrCat("message ", id, " is not pending (never submitted, or already finished)"));
    }
    s = *it;
    pos = it;
  }
  MsgRec& r = m_.msgs[s];
  if (attempt != kUnfenced) {
    // The fencing token: only the current lease (the latest attempt, still
    // leased) may report. Anything older is a late duplicate of an attempt
    // whose lease timed out; applying it would land on the next attempt.
    if (attempt > r.attempts) {
      return absl::FailedPreconditionError(
          absl::StrCat("message ", id, " is not leased: attempt ", attempt,
                       " was never handed out (its latest is ", r.attempts, ")"));
    }
    if (attempt < r.attempts || r.state != MsgState::kLeased) {
      ++m_.stale_reports;
      absl::Status stale = absl::FailedPreconditionError(absl::StrCat(
          "stale report: attempt ", attempt, " of message ", id, " is no longer leased (",
          attempt < r.attempts ? absl::StrCat("attempt ", r.attempts, " was leased since")
                               : std::string("its lease expired and it waits for its next attempt"),
          "); ignored"));
      stale.SetPayload(kStaleLeasePayload, absl::Cord());
      return stale;
    }
  }
  if (r.state != MsgState::kLeased) {
    return absl::FailedPreconditionError(
        absl::StrCat("message ", id, " is not leased (",
                     r.state == MsgState::kScheduled ? "waiting for its retry time"
                                                     : "due, not yet taken or its lease expired",
                     ")"));
  }
  const uint32_t di = r.dest;
  DestState& d = m_.dests[di];
  // While leased, the message's timer is its lease deadline.
  const int64_t attempt_started = r.timer_ms - m_.lease_timeout_ms;
  // A suspended destination's half-open probe (not a held one's).
  const bool probe = (r.flags & internal::kFlagProbe) && HalfOpen(d);
  --m_.leased_n;
  ReleaseLease(r, d);
  // Its lease deadline stays in the FIFO, stale now (LeaseCurrent): dropped
  // when it reaches the front.

  Decision out;
  out.attempt = r.attempts;
  // Canonical text and classification, memoized per distinct reply (valid
  // until the next Get: nothing below asks the cache again).
  const ReplyCache::Facts& facts =
      parsed != nullptr
          ? m_.reply_cache.GetParsed(*parsed, d.domain_id, m_.names[d.domain_id], m_.classifier)
          : m_.reply_cache.Get(reply, d.domain_id, m_.names[d.domain_id], m_.classifier);
  const std::string& text = facts.text;
  if (reply.success()) {
    NoteAttempt(d, now, false);
    out.action = DecisionAction::kDelivered;
    out.rule = "success";
    ++m_.delivered;
    if (Event* e = EmitMsg(EventKind::kDelivered, now, r)) {
      e->status = m_.events.Keep(facts.status);
      e->reply = m_.events.Keep(text);
    }
    if (probe) {
      ReleaseSuspension(di, now);
      WakeSiblingProbes(di, now);
    }
    NoteGreylistDelivery(r, now);
    NoteFullMailboxDelivery(r, now);
    NoteFirstContact(r, d);
    OnDelivered(di, now);
    // By position when the lookup found it (nothing was inserted into the
    // index since), else by id.
    if (pos) {
      FreeSlot(s, *pos);
    } else {
      FreeSlot(s);
    }
    return out;
  }

  // A misread greylisting wording is told by its first-contact pattern.
  const Classification c = FirstContactGreylisting(r, d, reply, facts.classification);
  out.category = c.category;
  out.rule = c.rule;
  RecordReply(r, d, reply, c, text);
  ++d.consecutive_failures;
  ++d.cat_counts[static_cast<int>(c.category)];
  NoteAttempt(d, now, reply.transport == Transport::kReply && reply.code == 421);

  ApplyReactions(di, now, attempt_started, reply, c, text, probe);

  if (!c.transient) {
    out.action = DecisionAction::kBounced;
    ++d.bounced;
    ++m_.bounced;
    if (Event* e = EmitMsg(EventKind::kBounced, now, r)) {
      e->category = c.category;
      e->status = m_.events.Keep(facts.status);
      e->reply = m_.events.Keep(text);
      e->rule = c.rule;  // the classifier's: valid while the engine lives
      e->detail = "permanent failure";
    }
    StructuralEvidence(di, r, c.category, now, false);
    // By position when the lookup found it (nothing was inserted into the
    // index since), else by id.
    if (pos) {
      FreeSlot(s, *pos);
    } else {
      FreeSlot(s);
    }
    return out;
  }

  std::string_view schedule;
  std::optional<int64_t> next;
  // The failed probe itself walks its own backoff: with one message pending
  // (a small destination) it would otherwise be re-probed every interval.
  if (!probe && HalfOpen(m_.dests[di]) && IsDestinationLevel(c.category, reply.transport)) {
    schedule = "builtin:wait-for-release";
    next = WaitForRelease(r, now);
  } else {
    next = NextAttempt(r, d, reply, c.category, now, &schedule);
  }
  out.schedule = schedule;
  if (!next) {
    out.action = DecisionAction::kExpired;
    Expire(s, now, "lifetime or attempt limit reached");
    CheckWarning(m_.dests[di], now);
    return out;
  }
  out.action = DecisionAction::kRetry;
  out.next_attempt = T(*next);
  ++d.deferred;
  ++m_.deferred;
  if (Event* e = EmitMsg(EventKind::kDeferred, now, r)) {
    e->category = c.category;
    e->status = m_.events.Keep(facts.status);
    e->reply = m_.events.Keep(text);
    e->rule = c.rule;  // the classifier's: valid while the engine lives
    e->next_attempt = out.next_attempt;
    // Cheap on purpose: one deferred event per failed attempt, its detail
    // written straight into the event arena.
    e->detail = m_.events.KeepCat("schedule ", schedule,
                                  (r.flags & internal::kFlagFinal) ? ", last attempt" : "");
  }
  StructuralEvidence(di, r, c.category, now, false);
  CheckWarning(d, now);
  r.state = MsgState::kScheduled;
  ++m_.scheduled_n;
  ++d.scheduled_count;
  SetTimer(s, *next, false);
  return out;
}

std::optional<absl::Time> Core::NextWakeup() const {
  std::optional<absl::Time> best = m_.msg_timers->NextDeadline();
  auto consider = [&](absl::Time t) {
    if (!best || t < *best) best = t;
  };
  // The earliest current lease deadline, exact: reported leases' entries
  // are dropped first (they change nothing, so a query may drop them).
  DropStaleLeases();
  if (!m_.leases.empty()) consider(T(m_.leases.front().fire_ms));
  if (auto t = m_.dest_timers->NextDeadline()) consider(*t);
  for (uint32_t di : m_.ring) {
    const DestState& d = m_.dests[di];
    if (d.first_count + d.retry_count == 0) continue;
    const int64_t b = BlockedUntil(d, m_.now_ms);
    if (b == 0) {
      consider(T(m_.now_ms));
    } else if (b != kNever) {
      consider(T(b));
    }
  }
  return best;
}

DestinationInfo Core::Info(uint32_t di) const {
  const DestState& d = m_.dests[di];
  const int64_t now = m_.now_ms;
  DestinationInfo out;
  out.destination = m_.names[d.domain_id];
  out.source = m_.names[d.source_id];
  out.index = di;
  out.health = d.health;
  out.held = d.held;
  out.concurrency_limit = EffectiveConcurrency(d, now);
  out.max_concurrency = Policy(d).max_concurrency;
  out.in_flight = d.in_flight;
  out.rate_per_second = RatePerSecond(EffectiveIntervalMs(d, now));
  if (d.suspended_until > now) out.suspended_until = T(d.suspended_until);
  if (HalfOpen(d)) {
    // Suspended until a probe is delivered; the next one goes at next_probe.
    out.suspended_until = T(std::max(d.suspended_until, d.next_probe));
    out.next_probe = T(d.next_probe);
  }
  out.suspensions = d.suspensions;
  if (d.held) out.next_probe = T(d.next_probe);
  out.ready = d.first_count + d.retry_count;
  out.scheduled = d.scheduled_count;
  out.attempts = d.attempts;
  out.delivered = d.delivered;
  out.deferred = d.deferred;
  out.bounced = d.bounced;
  out.expired = d.expired;
  out.consecutive_failures = d.consecutive_failures;
  if (d.last_delivery != kNoTime) out.last_delivery = T(d.last_delivery);
  if (d.sample_count > 0) {
    out.last_reply = d.samples[(d.sample_next + internal::kSampleRing - 1) % internal::kSampleRing];
  }
  out.failure_categories = DominantCategories(d, kNumCategories);
  return out;
}

// --- commands (commands.h) ------------------------------------------------------

absl::Status Apply(Engine::Impl& impl, const SubmitCommand& c) {
  return Core(impl).Submit(c.msg_id, c.destination, c.now, c.source, c.not_before);
}

absl::Status Apply(Engine::Impl& impl, const SubmitManyCommand& c) {
  return Core(impl).SubmitMany(c.msg_ids, c.destination_indices, c.destination_names, c.now,
                               c.source_indices, c.source_names);
}

absl::Status Apply(Engine::Impl& impl, const AdvanceCommand& c) {
  return Core(impl).Advance(c.now);
}

absl::StatusOr<std::vector<Lease>> Apply(Engine::Impl& impl, const TakeReadyCommand& c) {
  std::vector<Lease> out;
  if (c.recycle != nullptr) out.swap(*c.recycle);
  if (absl::Status s = Core(impl).TakeReady(
          c.now, static_cast<size_t>(std::min<uint64_t>(c.limit, SIZE_MAX)), out);
      !s.ok()) {
    return s;
  }
  return out;
}

namespace {

// The reports of a batch, fenced (`attempts` as long as `msg_ids`) or not
// (empty). `reply_of(i, storage)` gives entry i's reply or the error that
// replaces its report.
// `recycle` (may be null): the caller's previous results, whose storage
// the new ones reuse.
template <typename ReplyOf>
Decisions ReportBatch(Engine::Impl& impl, absl::Time now, absl::Span<const uint64_t> msg_ids,
                      absl::Span<const uint32_t> attempts, Decisions* recycle, ReplyOf reply_of) {
  Core core(impl);
  const absl::Status adv = core.Advance(now);
  Decisions out;
  if (recycle != nullptr) {
    out.swap(*recycle);
    out.clear();
  }
  out.reserve(msg_ids.size());
  for (size_t i = 0; i < msg_ids.size(); ++i) {
    if (!adv.ok()) {
      out.push_back(adv);
      continue;
    }
    const uint32_t attempt = attempts.empty() ? kUnfenced : (i < attempts.size() ? attempts[i] : 0);
    if (!attempts.empty() && attempt == kUnfenced) {
      out.push_back(absl::InvalidArgumentError(absl::StrCat(
          "attempt 0 of message ", msg_ids[i], " was never leased (attempts start at 1)")));
      continue;
    }
    Reply storage;
    auto reply = reply_of(i, storage);
    if (!reply.ok()) {
      out.push_back(reply.status());
      continue;
    }
    if constexpr (std::is_same_v<decltype(reply), absl::StatusOr<const ReplyCache::Parsed*>>) {
      out.push_back(core.Report(msg_ids[i], attempt, impl.now_ms, (*reply)->reply, *reply));
    } else {
      out.push_back(core.Report(msg_ids[i], attempt, impl.now_ms, **reply));
    }
  }
  return out;
}

absl::StatusOr<const Reply*> ReplyAt(absl::Span<const Reply> replies, size_t i) {
  if (i >= replies.size())
    return absl::InvalidArgumentError("no reply for this id (replies is shorter than msg_ids)");
  return &replies[i];
}

absl::StatusOr<const ReplyCache::Parsed*> ParsedReplyAt(ReplyCache& cache,
                                                        absl::Span<const std::string> raw,
                                                        size_t i) {
  if (i >= raw.size())
    return absl::InvalidArgumentError("no reply for this id (raw_replies is shorter than msg_ids)");
  return cache.ParseEntry(raw[i]);
}

}  // namespace

absl::StatusOr<Decision> Apply(Engine::Impl& impl, const ReportCommand& c) {
  Core core(impl);
  if (absl::Status s = core.Advance(c.now); !s.ok()) return s;
  return core.Report(c.msg_id, kUnfenced, impl.now_ms, *c.reply, c.interned, c.slot);
}

absl::StatusOr<Decision> Apply(Engine::Impl& impl, const ReportLeaseCommand& c) {
  if (c.attempt == kUnfenced || c.attempt > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("attempt ", c.attempt, " of message ", c.msg_id,
                                                   " was never leased (attempts start at 1)"));
  }
  Core core(impl);
  if (absl::Status s = core.Advance(c.now); !s.ok()) return s;
  return core.Report(c.msg_id, static_cast<uint32_t>(c.attempt), impl.now_ms, *c.reply, c.interned,
                     c.slot);
}

Decisions Apply(Engine::Impl& impl, const ReportManyCommand& c) {
  return ReportBatch(impl, c.now, c.msg_ids, {}, c.recycle,
                     [&](size_t i, Reply&) { return ReplyAt(c.replies, i); });
}

Decisions Apply(Engine::Impl& impl, const ReportLeasesCommand& c) {
  return ReportBatch(impl, c.now, c.msg_ids, c.attempts, c.recycle,
                     [&](size_t i, Reply&) { return ReplyAt(c.replies, i); });
}

Decisions Apply(Engine::Impl& impl, const ReportManyTextCommand& c) {
  return ReportBatch(impl, c.now, c.msg_ids, {}, c.recycle, [&](size_t i, Reply&) {
    return ParsedReplyAt(impl.reply_cache, c.raw_replies, i);
  });
}

Decisions Apply(Engine::Impl& impl, const ReportLeasesTextCommand& c) {
  return ReportBatch(impl, c.now, c.msg_ids, c.attempts, c.recycle, [&](size_t i, Reply&) {
    return ParsedReplyAt(impl.reply_cache, c.raw_replies, i);
  });
}

std::vector<Event> Apply(Engine::Impl& impl, const DrainEventsCommand& c) {
  return impl.events.Take(c.recycle);
}

}  // namespace mailretry::internal
