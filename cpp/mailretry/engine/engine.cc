// File: engine/engine.cc
// The public Engine: each method takes the lock, runs the operation's body
// (internal/operations.cc) and, for a durable engine, journals the call.
#include "mailretry/engine/engine.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "mailretry/engine/internal/core.h"
#include "mailretry/engine/internal/state.h"
#include "re2/re2.h"  // Impl owns compiled RE2s; destroying one here needs the type

namespace mailretry {

using internal::Core;
using internal::DestState;
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

// A durable engine (engine_journal.cc) journals each state-changing call after
// applying it, under the same lock, so the journal order is the apply order.
// After a failed journal write the engine refuses further changes.
#define MAILRETRY_JOURNAL_HEALTH()                                        \
  if (impl_->journal != nullptr) {                                        \
    if (absl::Status h = impl_->journal->health(); !h.ok()) return h;     \
  }

absl::Status Engine::Submit(uint64_t msg_id, std::string_view destination, absl::Time now,
                            std::string_view source, std::optional<absl::Time> not_before) {
  absl::MutexLock lock(&impl_->mu);
  MAILRETRY_JOURNAL_HEALTH();
  absl::Status s = Core(*impl_).Submit(msg_id, destination, now, source, not_before);
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->Submit(msg_id, destination, now, source, not_before, s); !j.ok()) return j;
  }
  return s;
}

absl::Status Engine::SubmitMany(absl::Span<const uint64_t> msg_ids, absl::Span<const uint32_t> destination_indices,
                                absl::Span<const std::string> destination_names, absl::Time now,
                                absl::Span<const uint32_t> source_indices,
                                absl::Span<const std::string> source_names) {
  absl::MutexLock lock(&impl_->mu);
  MAILRETRY_JOURNAL_HEALTH();
  absl::Status s = Core(*impl_).SubmitMany(msg_ids, destination_indices, destination_names, now, source_indices,
                                           source_names);
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->SubmitMany(msg_ids, destination_indices, destination_names, now,
                                                    source_indices, source_names, s);
        !j.ok()) {
      return j;
    }
  }
  return s;
}

absl::Status Engine::Advance(absl::Time now) {
  absl::MutexLock lock(&impl_->mu);
  MAILRETRY_JOURNAL_HEALTH();
  absl::Status s = Core(*impl_).Advance(now);
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->Advance(now, s); !j.ok()) return j;
  }
  return s;
}

absl::StatusOr<std::vector<Lease>> Engine::TakeReady(absl::Time now, size_t limit) {
  absl::MutexLock lock(&impl_->mu);
  MAILRETRY_JOURNAL_HEALTH();
  absl::StatusOr<std::vector<Lease>> out = Core(*impl_).TakeReady(now, limit);
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->TakeReady(now, limit, out); !j.ok()) return j;
  }
  return out;
}

absl::StatusOr<Decision> Engine::Report(uint64_t msg_id, absl::Time now, const Reply& reply) {
  absl::MutexLock lock(&impl_->mu);
  MAILRETRY_JOURNAL_HEALTH();
  Core core(*impl_);
  const absl::Status adv = core.Advance(now);
  absl::StatusOr<Decision> out =
      adv.ok() ? core.Report(msg_id, impl_->now_ms, reply) : absl::StatusOr<Decision>(adv);
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->Report(msg_id, now, reply, out); !j.ok()) return j;
  }
  return out;
}

absl::StatusOr<Decision> Engine::ReportText(uint64_t msg_id, absl::Time now, std::string_view raw_reply) {
  absl::StatusOr<Reply> reply = ParseReply(raw_reply);
  if (!reply.ok()) return reply.status();
  return Report(msg_id, now, *reply);
}

std::vector<absl::StatusOr<Decision>> Engine::ReportMany(absl::Span<const uint64_t> msg_ids,
                                                         absl::Span<const Reply> replies, absl::Time now) {
  std::vector<absl::StatusOr<Decision>> out;
  out.reserve(msg_ids.size());
  absl::MutexLock lock(&impl_->mu);
  if (impl_->journal != nullptr) {
    if (absl::Status h = impl_->journal->health(); !h.ok()) return std::vector<absl::StatusOr<Decision>>(msg_ids.size(), h);
  }
  Core core(*impl_);
  absl::Status adv = core.Advance(now);
  for (size_t i = 0; i < msg_ids.size(); ++i) {
    if (!adv.ok()) {
      out.push_back(adv);
    } else if (i >= replies.size()) {
      out.push_back(absl::InvalidArgumentError("no reply for this id (replies is shorter than msg_ids)"));
    } else {
      out.push_back(core.Report(msg_ids[i], impl_->now_ms, replies[i]));
    }
  }
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->ReportMany(msg_ids, replies, now, out); !j.ok()) {
      return std::vector<absl::StatusOr<Decision>>(msg_ids.size(), j);
    }
  }
  return out;
}

std::vector<absl::StatusOr<Decision>> Engine::ReportManyText(absl::Span<const uint64_t> msg_ids,
                                                             absl::Span<const std::string> raw_replies,
                                                             absl::Time now) {
  std::vector<absl::StatusOr<Decision>> out;
  out.reserve(msg_ids.size());
  absl::MutexLock lock(&impl_->mu);
  if (impl_->journal != nullptr) {
    if (absl::Status h = impl_->journal->health(); !h.ok()) return std::vector<absl::StatusOr<Decision>>(msg_ids.size(), h);
  }
  Core core(*impl_);
  absl::Status adv = core.Advance(now);
  for (size_t i = 0; i < msg_ids.size(); ++i) {
    if (!adv.ok()) {
      out.push_back(adv);
      continue;
    }
    if (i >= raw_replies.size()) {
      out.push_back(absl::InvalidArgumentError("no reply for this id (raw_replies is shorter than msg_ids)"));
      continue;
    }
    absl::StatusOr<Reply> reply = ParseReply(raw_replies[i]);
    if (!reply.ok()) {
      out.push_back(reply.status());
      continue;
    }
    out.push_back(core.Report(msg_ids[i], impl_->now_ms, *reply));
  }
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->ReportManyText(msg_ids, raw_replies, now, out); !j.ok()) {
      return std::vector<absl::StatusOr<Decision>>(msg_ids.size(), j);
    }
  }
  return out;
}

std::optional<absl::Time> Engine::NextWakeup() const {
  absl::MutexLock lock(&impl_->mu);
  return Core(*impl_).NextWakeup();
}

std::vector<Event> Engine::DrainEvents() {
  absl::MutexLock lock(&impl_->mu);
  // A durable engine whose journal failed keeps its events (they are state).
  if (impl_->journal != nullptr && !impl_->journal->health().ok()) return {};
  std::vector<Event> out(std::make_move_iterator(impl_->events.begin()),
                         std::make_move_iterator(impl_->events.end()));
  impl_->events.clear();
  // An empty drain changes nothing and is not journaled.
  if (impl_->journal != nullptr && !out.empty()) impl_->journal->DrainEvents(out.size()).IgnoreError();
  return out;
}

absl::StatusOr<DestinationInfo> Engine::GetDestination(std::string_view destination,
                                                       std::string_view source) const {
  absl::MutexLock lock(&impl_->mu);
  const std::string lower = absl::AsciiStrToLower(ToAbsl(destination));
  auto dom = impl_->name_ids.find(lower);
  auto src = source.empty() ? impl_->name_ids.find(std::string_view()) : impl_->name_ids.find(source);
  if (dom != impl_->name_ids.end() && src != impl_->name_ids.end()) {
    auto it = impl_->pair_ids.find((uint64_t{dom->second} << 32) | src->second);
    if (it != impl_->pair_ids.end()) return Core(*impl_).Info(it->second);
  }
  return absl::NotFoundError(absl::StrCat("no messages were ever submitted to destination '", ToAbsl(destination), "'",
                                          source.empty() ? std::string() : absl::StrCat(" from source '", ToAbsl(source), "'")));
}

EngineStats Engine::Stats() const {
  absl::MutexLock lock(&impl_->mu);
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
    if (d.suspended_until > m.now_ms) ++s.suspended_destinations;
    if (d.held) ++s.held_destinations;
  }
  s.events_buffered = m.events.size();
  s.events_dropped = m.events_dropped;
  size_t bytes = m.msgs.MemoryBytes() + m.ids.capacity() * (sizeof(uint32_t) + 1) +
                 m.msg_timers->MemoryBytes() + m.dest_timers->MemoryBytes() +
                 m.dests.capacity() * sizeof(DestState) + m.pair_ids.capacity() * (sizeof(uint64_t) * 2 + 1) +
                 m.name_ids.capacity() * (sizeof(std::string_view) + sizeof(uint64_t) + 1) +
                 m.ring.size() * sizeof(uint32_t);
  for (const std::string& n : m.names) bytes += sizeof(std::string) + (n.capacity() > 15 ? n.capacity() : 0);
  for (const DestState& d : m.dests) {
    for (const std::string& t : d.samples) bytes += t.capacity() > 15 ? t.capacity() : 0;
  }
  s.memory_bytes = bytes;
  return s;
}

absl::Status Engine::Save(const std::string& path) const {
  absl::MutexLock lock(&impl_->mu);
  return internal::SaveLocked(*impl_, path);
}

absl::Status Engine::CheckInvariants() const {
  absl::MutexLock lock(&impl_->mu);
  return internal::CheckInvariantsLocked(*impl_);
}

const EngineConfig& Engine::config() const { return impl_->config; }
uint64_t Engine::seed() const { return impl_->seed; }

}  // namespace mailretry
