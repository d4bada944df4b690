// File: engine/engine.cc
// The public Engine: each method takes the lock, runs the operation's body
// (internal/operations.cc) and, for a durable engine, journals the call.
#include "mailretry/engine/engine.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "mailretry/engine/destination_name.h"
#include "mailretry/engine/internal/commands.h"
#include "mailretry/engine/internal/core.h"
#include "mailretry/engine/internal/execute.h"
#include "mailretry/engine/internal/state.h"
#include "re2/re2.h"  // Impl owns compiled RE2s; destroying one here needs the type

namespace mailretry {

using internal::Core;
using internal::DestState;
using internal::Execute;
using internal::Ms;
using internal::T;
using internal::ToAbsl;

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EngineConfig config, uint64_t seed) {
  absl::StatusOr<std::unique_ptr<Impl>> impl = internal::MakeImpl(std::move(config), seed);
  if (!impl.ok()) return impl.status();
  return std::unique_ptr<Engine>(new Engine(*std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const std::string& path) {
  absl::StatusOr<std::unique_ptr<Impl>> impl = internal::LoadImpl(path);
  if (!impl.ok()) return impl.status();
  return std::unique_ptr<Engine>(new Engine(*std::move(impl)));
}

// Each state-changing method builds its command and runs it through the one
// command path (internal/execute.h), which also journals it.

absl::Status Engine::Submit(uint64_t msg_id, std::string_view destination, absl::Time now,
                            std::string_view source, std::optional<absl::Time> not_before) {
  return Execute(*impl_, internal::SubmitCommand{.now = now,
                                                 .msg_id = msg_id,
                                                 .destination = destination,
                                                 .source = source,
                                                 .not_before = not_before});
}

absl::Status Engine::SubmitMany(absl::Span<const uint64_t> msg_ids,
                                absl::Span<const uint32_t> destination_indices,
                                absl::Span<const std::string> destination_names, absl::Time now,
                                absl::Span<const uint32_t> source_indices,
                                absl::Span<const std::string> source_names) {
  return Execute(*impl_, internal::SubmitManyCommand{.now = now,
                                                     .msg_ids = msg_ids,
                                                     .destination_indices = destination_indices,
                                                     .destination_names = destination_names,
                                                     .source_indices = source_indices,
                                                     .source_names = source_names});
}

absl::Status Engine::Advance(absl::Time now) {
  return Execute(*impl_, internal::AdvanceCommand{.now = now});
}

// The returning calls are the filling calls with a fresh vector: one body each.
absl::StatusOr<std::vector<Lease>> Engine::TakeReady(absl::Time now, size_t limit) {
  std::vector<Lease> out;
  if (absl::Status s = TakeReady(now, limit, out); !s.ok()) return s;
  return out;
}

absl::Status Engine::TakeReady(absl::Time now, size_t limit, std::vector<Lease>& out) {
  // The command builds its result in `out`'s storage and hands it back.
  absl::StatusOr<std::vector<Lease>> r =
      Execute(*impl_, internal::TakeReadyCommand{.now = now, .limit = limit, .recycle = &out});
  if (!r.ok()) {
    out.clear();
    return r.status();
  }
  out = *std::move(r);
  return absl::OkStatus();
}

namespace {

// A reply whose text is longer than replies may be (a transport reply's
// detail, which ParseReply never saw) is cut to kMaxReplyBytes at a UTF-8
// boundary before the engine keeps it in events and samples, or journals it.
const Reply& CappedReply(const Reply& reply, Reply& storage) {
  if (reply.text.size() <= kMaxReplyBytes) return reply;
  storage = reply;
  size_t n = kMaxReplyBytes;
  while (n > 0 && (static_cast<unsigned char>(storage.text[n]) & 0xC0) == 0x80) --n;
  storage.text.resize(n);
  return storage;
}

// The replies paired with an id (the rest are never read, nor journaled),
// capped as CappedReply; `storage` holds a copy only when one is cut.
absl::Span<const Reply> CappedReplies(absl::Span<const Reply> replies, size_t n,
                                      std::vector<Reply>& storage) {
  replies = replies.first(std::min(replies.size(), n));
  for (size_t i = 0; i < replies.size(); ++i) {
    if (replies[i].text.size() <= kMaxReplyBytes) continue;
    if (storage.empty()) storage.assign(replies.begin(), replies.end());
    Reply cut;
    storage[i] = CappedReply(replies[i], cut);
  }
  return storage.empty() ? replies : absl::Span<const Reply>(storage);
}

absl::Status UnknownReplyHandle(ReplyHandle h) {
  return absl::InvalidArgumentError(
      absl::StrCat("reply handle ", h.index, " was not given out by this engine's InternReply"));
}

}  // namespace

absl::StatusOr<Decision> Engine::Report(uint64_t msg_id, uint32_t attempt, absl::Time now,
                                        const Reply& reply) {
  Reply storage;
  return Execute(
      *impl_,
      internal::ReportLeaseCommand{
          .now = now, .msg_id = msg_id, .attempt = attempt, .reply = &CappedReply(reply, storage)});
}

absl::StatusOr<Decision> Engine::Report(const Lease& lease, absl::Time now, const Reply& reply) {
  Reply storage;
  return Execute(*impl_, internal::ReportLeaseCommand{.now = now,
                                                      .msg_id = lease.msg_id,
                                                      .attempt = lease.attempt,
                                                      .reply = &CappedReply(reply, storage),
                                                      .slot = lease.slot});
}

absl::StatusOr<Decision> Engine::Report(const Lease& lease, absl::Time now, ReplyHandle reply) {
  const internal::ReplyCache::Parsed* p = impl_->reply_cache.Interned(reply.index);
  if (p == nullptr) return UnknownReplyHandle(reply);
  return Execute(*impl_, internal::ReportLeaseCommand{.now = now,
                                                      .msg_id = lease.msg_id,
                                                      .attempt = lease.attempt,
                                                      .reply = &p->reply,
                                                      .interned = p,
                                                      .slot = lease.slot});
}

absl::StatusOr<ReplyHandle> Engine::InternReply(const Reply& reply) {
  Reply storage;
  const Reply& capped = CappedReply(reply, storage);
  std::lock_guard lock(impl_->mu);
  const uint32_t i = impl_->reply_cache.Intern(capped);
  if (i >= kMaxReplyHandles) {
    return absl::ResourceExhaustedError(
        absl::StrCat("at most ", kMaxReplyHandles, " replies can be interned per engine"));
  }
  return ReplyHandle{i};
}

absl::StatusOr<Decision> Engine::Report(uint64_t msg_id, absl::Time now, const Reply& reply) {
  Reply storage;
  return Execute(*impl_, internal::ReportCommand{
                             .now = now, .msg_id = msg_id, .reply = &CappedReply(reply, storage)});
}

absl::StatusOr<Decision> Engine::Report(uint64_t msg_id, absl::Time now, ReplyHandle reply,
                                        SlotHint slot) {
  const internal::ReplyCache::Parsed* p = impl_->reply_cache.Interned(reply.index);
  if (p == nullptr) return UnknownReplyHandle(reply);
  return Execute(
      *impl_, internal::ReportCommand{
                  .now = now, .msg_id = msg_id, .reply = &p->reply, .interned = p, .slot = slot});
}

absl::StatusOr<Decision> Engine::ReportText(uint64_t msg_id, uint32_t attempt, absl::Time now,
                                            std::string_view raw_reply) {
  absl::StatusOr<Reply> reply = ParseReply(raw_reply);
  if (!reply.ok()) return reply.status();
  return Report(msg_id, attempt, now, *reply);
}

absl::StatusOr<Decision> Engine::ReportText(uint64_t msg_id, absl::Time now,
                                            std::string_view raw_reply) {
  absl::StatusOr<Reply> reply = ParseReply(raw_reply);
  if (!reply.ok()) return reply.status();
  return Report(msg_id, now, *reply);
}

std::vector<absl::StatusOr<Decision>> Engine::ReportMany(absl::Span<const uint64_t> msg_ids,
                                                         absl::Span<const Reply> replies,
                                                         absl::Time now) {
  std::vector<absl::StatusOr<Decision>> out;
  ReportMany(msg_ids, replies, now, out);
  return out;
}

void Engine::ReportMany(absl::Span<const uint64_t> msg_ids, absl::Span<const Reply> replies,
                        absl::Time now, std::vector<absl::StatusOr<Decision>>& out) {
  std::vector<Reply> storage;
  out = Execute(*impl_, internal::ReportManyCommand{
                            .now = now,
                            .msg_ids = msg_ids,
                            .replies = CappedReplies(replies, msg_ids.size(), storage),
                            .recycle = &out});
}

std::vector<absl::StatusOr<Decision>> Engine::ReportMany(absl::Span<const uint64_t> msg_ids,
                                                         absl::Span<const uint32_t> attempts,
                                                         absl::Span<const Reply> replies,
                                                         absl::Time now) {
  std::vector<absl::StatusOr<Decision>> out;
  ReportMany(msg_ids, attempts, replies, now, out);
  return out;
}

void Engine::ReportMany(absl::Span<const uint64_t> msg_ids, absl::Span<const uint32_t> attempts,
                        absl::Span<const Reply> replies, absl::Time now,
                        std::vector<absl::StatusOr<Decision>>& out) {
  if (attempts.size() != msg_ids.size()) {
    out.assign(msg_ids.size(), absl::InvalidArgumentError("attempts must be as long as msg_ids"));
    return;
  }
  std::vector<Reply> storage;
  out = Execute(*impl_, internal::ReportLeasesCommand{
                            .now = now,
                            .msg_ids = msg_ids,
                            .attempts = attempts,
                            .replies = CappedReplies(replies, msg_ids.size(), storage),
                            .recycle = &out});
}

std::vector<absl::StatusOr<Decision>> Engine::ReportManyText(
    absl::Span<const uint64_t> msg_ids, absl::Span<const std::string> raw_replies, absl::Time now) {
  std::vector<absl::StatusOr<Decision>> out;
  ReportManyText(msg_ids, raw_replies, now, out);
  return out;
}

void Engine::ReportManyText(absl::Span<const uint64_t> msg_ids,
                            absl::Span<const std::string> raw_replies, absl::Time now,
                            std::vector<absl::StatusOr<Decision>>& out) {
  out = Execute(*impl_, internal::ReportManyTextCommand{.now = now,
                                                        .msg_ids = msg_ids,
                                                        .raw_replies = raw_replies.first(std::min(
                                                            raw_replies.size(), msg_ids.size())),
                                                        .recycle = &out});
}

std::vector<absl::StatusOr<Decision>> Engine::ReportManyText(
    absl::Span<const uint64_t> msg_ids, absl::Span<const uint32_t> attempts,
    absl::Span<const std::string> raw_replies, absl::Time now) {
  std::vector<absl::StatusOr<Decision>> out;
  ReportManyText(msg_ids, attempts, raw_replies, now, out);
  return out;
}

void Engine::ReportManyText(absl::Span<const uint64_t> msg_ids, absl::Span<const uint32_t> attempts,
                            absl::Span<const std::string> raw_replies, absl::Time now,
                            std::vector<absl::StatusOr<Decision>>& out) {
  if (attempts.size() != msg_ids.size()) {
    out.assign(msg_ids.size(), absl::InvalidArgumentError("attempts must be as long as msg_ids"));
    return;
  }
  out = Execute(*impl_, internal::ReportLeasesTextCommand{.now = now,
                                                          .msg_ids = msg_ids,
                                                          .attempts = attempts,
                                                          .raw_replies = raw_replies.first(std::min(
                                                              raw_replies.size(), msg_ids.size())),
                                                          .recycle = &out});
}

std::optional<absl::Time> Engine::NextWakeup() const {
  std::lock_guard lock(impl_->mu);
  return Core(*impl_).NextWakeup();
}

std::vector<Event> Engine::DrainEvents() { return Execute(*impl_, internal::DrainEventsCommand{}); }

void Engine::DrainEvents(std::vector<Event>& events) {
  events = Execute(*impl_, internal::DrainEventsCommand{.recycle = &events});
}

namespace {

// The (destination, source) pair's index, with Impl::mu held. A name already
// in normal form (the usual case) is looked up without a copy.
absl::StatusOr<uint32_t> FindPair(const Engine::Impl& m, std::string_view destination,
                                  std::string_view source) {
  std::string storage;
  std::string_view name = destination;
  if (!IsNormalDestination(destination)) {
    absl::StatusOr<std::string> n = NormalizeDestination(destination);
    if (!n.ok()) return n.status();
    storage = *std::move(n);
    name = storage;
  }
  auto dom = m.name_ids.find(name);
  auto src = m.name_ids.find(source);
  if (dom != m.name_ids.end() && src != m.name_ids.end()) {
    auto it = m.pair_ids.find((uint64_t{dom->second} << 32) | src->second);
    if (it != m.pair_ids.end()) return it->second;
  }
  return absl::NotFoundError(absl::StrCat(
      "no messages were ever submitted to destination '", ToAbsl(destination), "'",
      source.empty() ? std::string() : absl::StrCat(" from source '", ToAbsl(source), "'")));
}

}  // namespace

absl::StatusOr<DestinationInfo> Engine::GetDestination(std::string_view destination,
                                                       std::string_view source) const {
  std::lock_guard lock(impl_->mu);
  absl::StatusOr<uint32_t> di = FindPair(*impl_, destination, source);
  if (!di.ok()) return di.status();
  return Core(*impl_).Info(*di);
}

absl::StatusOr<uint32_t> Engine::ConcurrencyLimit(std::string_view destination,
                                                  std::string_view source) const {
  std::lock_guard lock(impl_->mu);
  absl::StatusOr<uint32_t> di = FindPair(*impl_, destination, source);
  if (!di.ok()) return di.status();
  return Core(*impl_).EffectiveConcurrency(impl_->dests[*di], impl_->now_ms);
}

uint64_t Engine::LimitsGeneration() const {
  std::lock_guard lock(impl_->mu);
  Impl& m = *impl_;
  if (m.now_ms >= m.conc_override_end) {
    // A rule's override ended (or the end is unknown after a restore): the
    // limit went up without a call that bumps the generation. Rare, so the
    // next end is found by a scan.
    ++m.limits_generation;
    int64_t next = internal::kNever;
    for (const internal::DestState& d : m.dests) {
      if (d.conc_override_until > m.now_ms) next = std::min(next, d.conc_override_until);
    }
    m.conc_override_end = next;
  }
  return m.limits_generation;
}

EngineStats Engine::Stats() const {
  std::lock_guard lock(impl_->mu);
  const Impl& m = *impl_;
  EngineStats s;
  s.submitted = m.submitted;
  s.delivered = m.delivered;
  s.bounced = m.bounced;
  s.expired = m.expired;
  s.scheduled = m.scheduled_n;
  s.ready = m.ready_n;
  s.leased = m.leased_n;
  s.pending = m.scheduled_n + m.ready_n + m.leased_n;
  s.attempts = m.attempts;
  s.deferred = m.deferred;
  s.lease_expirations = m.lease_expirations;
  s.destinations = m.dests.size();
  for (const DestState& d : m.dests) {
    if (d.suspended_until > m.now_ms || (d.half_open && !d.held)) ++s.suspended_destinations;
    if (d.held) ++s.held_destinations;
  }
  s.events_buffered = m.events.size();
  s.events_dropped = m.events_dropped;
  s.stale_reports = m.stale_reports;
  s.clamped_times = m.clamped_times;
  s.held_messages = m.held_messages;
  s.released_messages = m.released_messages;
  s.expired_held = m.expired_held;
  size_t bytes = m.msgs.MemoryBytes() + m.ids.capacity() * (sizeof(uint32_t) + 1) +
                 m.msg_timers->MemoryBytes() + m.dest_timers->MemoryBytes() +
                 m.dests.capacity() * sizeof(DestState) +
                 m.pair_ids.capacity() * (sizeof(uint64_t) * 2 + 1) +
                 m.name_ids.capacity() * (sizeof(std::string_view) + sizeof(uint64_t) + 1) +
                 m.ring.size() * sizeof(uint32_t) + m.reply_cache.MemoryBytes() +
                 m.leases.MemoryBytes() + m.events.MemoryBytes();
  for (const std::string& n : m.names)
    bytes += sizeof(std::string) + (n.capacity() > 15 ? n.capacity() : 0);
  for (const DestState& d : m.dests) {
    for (const std::string& t : d.samples) bytes += t.capacity() > 15 ? t.capacity() : 0;
  }
  s.memory_bytes = bytes;
  return s;
}

absl::Status Engine::Save(const std::string& path) const {
  std::lock_guard lock(impl_->mu);
  return internal::SaveLocked(*impl_, path);
}

absl::Status Engine::CheckInvariants() const {
  std::lock_guard lock(impl_->mu);
  return internal::CheckInvariantsLocked(*impl_);
}

const EngineConfig& Engine::config() const { return impl_->config; }
uint64_t Engine::seed() const { return impl_->seed; }

}  // namespace mailretry
