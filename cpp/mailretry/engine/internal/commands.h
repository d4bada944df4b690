// File: engine/internal/commands.h
// -----------------------------------------------------------------------------
// Every state-changing engine operation as a value. A command holds the call's
// arguments (views into the caller's data: building one allocates nothing),
// one field list (`Fields`) that both the journal's writer and its reader
// walk, so save and load cannot drift apart, and what a refused call returns.
//
// There is one path for all of them: Engine's methods build a command and
// call Execute (execute.h), which takes the lock, applies the command with
// Apply (operations.cc) and, for a durable engine, journals the command with
// a fingerprint of its result. Replaying a journal decodes the same commands
// and runs the same Execute. Adding an operation means adding a struct here,
// its Apply, and one line in the journal's dispatch (durable/journal.cc).
#ifndef MAILRETRY_ENGINE_INTERNAL_COMMANDS_H_
#define MAILRETRY_ENGINE_INTERNAL_COMMANDS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/reply_cache.h"
#include "mailretry/reply/reply.h"

namespace mailretry::internal {

// Operation codes, as stored in the journal (never renumber).
enum class Op : uint8_t {
  kSubmit = 1,
  kSubmitMany = 2,
  kAdvance = 3,
  kTakeReady = 4,
  kReport = 5,
  kReportMany = 6,
  kReportManyText = 7,
  kDrainEvents = 8,
  // Fenced reports (the lease's attempt follows the id). New codes rather than
  // new fields, so journals written before them replay unchanged.
  kReportLease = 9,
  kReportLeases = 10,
  kReportLeasesText = 11,
};

// The attempt of an unfenced report (attempts start at 1): Core::Report
// applies it to whatever lease is current.
inline constexpr uint32_t kUnfenced = 0;

using Decisions = std::vector<absl::StatusOr<Decision>>;

struct SubmitCommand {
  static constexpr Op kOp = Op::kSubmit;
  static constexpr std::string_view kName = "submit";
  using Result = absl::Status;
  absl::Time now;
  uint64_t msg_id = 0;
  std::string_view destination;
  std::string_view source;
  std::optional<absl::Time> not_before;
  template <class C, class V>
  static void Fields(C& c, V& v) {
    v(c.now), v(c.msg_id), v(c.destination), v(c.source), v(c.not_before);
  }
};

struct SubmitManyCommand {
  static constexpr Op kOp = Op::kSubmitMany;
  static constexpr std::string_view kName = "submit_many";
  using Result = absl::Status;
  absl::Time now;
  absl::Span<const uint64_t> msg_ids;
  absl::Span<const uint32_t> destination_indices;
  absl::Span<const std::string> destination_names;
  absl::Span<const uint32_t> source_indices;
  absl::Span<const std::string> source_names;
  template <class C, class V>
  static void Fields(C& c, V& v) {
    v(c.now), v(c.msg_ids), v(c.destination_indices), v(c.destination_names), v(c.source_indices),
        v(c.source_names);
  }
};

struct AdvanceCommand {
  static constexpr Op kOp = Op::kAdvance;
  static constexpr std::string_view kName = "advance";
  using Result = absl::Status;
  absl::Time now;
  template <class C, class V>
  static void Fields(C& c, V& v) {
    v(c.now);
  }
};

struct TakeReadyCommand {
  static constexpr Op kOp = Op::kTakeReady;
  static constexpr std::string_view kName = "take_ready";
  using Result = absl::StatusOr<std::vector<Lease>>;
  absl::Time now;
  uint64_t limit = 0;
  // The caller's previous leases (may be null): the result is built in this
  // vector's storage, so a caller passing the same vector each round
  // allocates nothing once it is large enough. Not journaled: it changes no
  // state, only where the result's storage comes from.
  std::vector<Lease>* recycle = nullptr;
  template <class C, class V>
  static void Fields(C& c, V& v) {
    v(c.now), v(c.limit);
  }
};

struct ReportCommand {
  static constexpr Op kOp = Op::kReport;
  static constexpr std::string_view kName = "report";
  using Result = absl::StatusOr<Decision>;
  absl::Time now;
  uint64_t msg_id = 0;
  const Reply* reply = nullptr;
  // Not journaled (they change nothing but the cost of the call): `reply` is
  // interned->reply (a report by ReplyHandle), and the lease's slot hint.
  const ReplyCache::Parsed* interned = nullptr;
  SlotHint slot;
  template <class C, class V>
  static void Fields(C& c, V& v) {
    v(c.now), v(c.msg_id), v(c.reply);
  }
};

struct ReportManyCommand {
  static constexpr Op kOp = Op::kReportMany;
  static constexpr std::string_view kName = "report_many";
  using Result = Decisions;
  absl::Time now;
  absl::Span<const uint64_t> msg_ids;
  // Only the replies paired with an id (Engine::ReportMany trims the rest).
  absl::Span<const Reply> replies;
  Decisions* recycle = nullptr;  // as in TakeReadyCommand
  template <class C, class V>
  static void Fields(C& c, V& v) {
    v(c.now), v(c.msg_ids), v(c.replies);
  }
};

struct ReportManyTextCommand {
  static constexpr Op kOp = Op::kReportManyText;
  static constexpr std::string_view kName = "report_many_text";
  using Result = Decisions;
  absl::Time now;
  absl::Span<const uint64_t> msg_ids;
  absl::Span<const std::string> raw_replies;  // trimmed like ReportManyCommand::replies
  Decisions* recycle = nullptr;               // as in TakeReadyCommand
  template <class C, class V>
  static void Fields(C& c, V& v) {
    v(c.now), v(c.msg_ids), v(c.raw_replies);
  }
};

// Reports that name their lease (msg_id, attempt): a report for a lease that
// is no longer current is refused as stale and changes nothing (Core::Report).
struct ReportLeaseCommand {
  static constexpr Op kOp = Op::kReportLease;
  static constexpr std::string_view kName = "report_lease";
  using Result = absl::StatusOr<Decision>;
  absl::Time now;
  uint64_t msg_id = 0;
  uint64_t attempt = 0;
  const Reply* reply = nullptr;
  const ReplyCache::Parsed* interned = nullptr;  // as in ReportCommand
  SlotHint slot;
  template <class C, class V>
  static void Fields(C& c, V& v) {
    v(c.now), v(c.msg_id), v(c.attempt), v(c.reply);
  }
};

struct ReportLeasesCommand {
  static constexpr Op kOp = Op::kReportLeases;
  static constexpr std::string_view kName = "report_leases";
  using Result = Decisions;
  absl::Time now;
  absl::Span<const uint64_t> msg_ids;
  absl::Span<const uint32_t> attempts;  // as long as msg_ids
  absl::Span<const Reply> replies;      // trimmed like ReportManyCommand::replies
  Decisions* recycle = nullptr;         // as in TakeReadyCommand
  template <class C, class V>
  static void Fields(C& c, V& v) {
    v(c.now), v(c.msg_ids), v(c.attempts), v(c.replies);
  }
};

struct ReportLeasesTextCommand {
  static constexpr Op kOp = Op::kReportLeasesText;
  static constexpr std::string_view kName = "report_leases_text";
  using Result = Decisions;
  absl::Time now;
  absl::Span<const uint64_t> msg_ids;
  absl::Span<const uint32_t> attempts;
  absl::Span<const std::string> raw_replies;
  Decisions* recycle = nullptr;  // as in TakeReadyCommand
  template <class C, class V>
  static void Fields(C& c, V& v) {
    v(c.now), v(c.msg_ids), v(c.attempts), v(c.raw_replies);
  }
};

// Drained events are state (a replay must not hand them out again), so a
// drain is journaled by its count. An empty drain changes nothing and is not
// journaled; a durable engine whose journal failed keeps its events.
struct DrainEventsCommand {
  static constexpr Op kOp = Op::kDrainEvents;
  static constexpr std::string_view kName = "drain_events";
  using Result = std::vector<Event>;
  // Events the caller is done with, reused for new ones (not journaled: it
  // changes no state, only where the next events' storage comes from).
  std::vector<Event>* recycle = nullptr;
  template <class C, class V>
  static void Fields(C&, V&) {}
};

// What a call returns when the engine refuses it (its journal failed): the
// error, for each entry of a batch; a drain hands out nothing.
template <class Cmd>
typename Cmd::Result Refuse(const Cmd& cmd, const absl::Status& s) {
  if constexpr (std::is_same_v<typename Cmd::Result, Decisions>) {
    return Decisions(cmd.msg_ids.size(), s);
  } else if constexpr (std::is_same_v<typename Cmd::Result, std::vector<Event>>) {
    return {};
  } else {
    return typename Cmd::Result(s);
  }
}

// Applies a command to the state, with Impl::mu held (operations.cc).
absl::Status Apply(Engine::Impl& impl, const SubmitCommand& c);
absl::Status Apply(Engine::Impl& impl, const SubmitManyCommand& c);
absl::Status Apply(Engine::Impl& impl, const AdvanceCommand& c);
absl::StatusOr<std::vector<Lease>> Apply(Engine::Impl& impl, const TakeReadyCommand& c);
absl::StatusOr<Decision> Apply(Engine::Impl& impl, const ReportCommand& c);
Decisions Apply(Engine::Impl& impl, const ReportManyCommand& c);
Decisions Apply(Engine::Impl& impl, const ReportManyTextCommand& c);
absl::StatusOr<Decision> Apply(Engine::Impl& impl, const ReportLeaseCommand& c);
Decisions Apply(Engine::Impl& impl, const ReportLeasesCommand& c);
Decisions Apply(Engine::Impl& impl, const ReportLeasesTextCommand& c);
std::vector<Event> Apply(Engine::Impl& impl, const DrainEventsCommand& c);

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_INTERNAL_COMMANDS_H_
