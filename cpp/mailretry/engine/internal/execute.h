// File: engine/internal/execute.h
// -----------------------------------------------------------------------------
// The one path every state-changing call takes (see commands.h): lock, refuse
// if the journal failed earlier, apply, journal. A durable engine journals
// each call after applying it, under the same lock, so the journal order is
// the apply order; after a failed journal write the engine refuses further
// changes rather than diverge from the disk. Replay runs the same function
// with no journal attached.
#ifndef MAILRETRY_ENGINE_INTERNAL_EXECUTE_H_
#define MAILRETRY_ENGINE_INTERNAL_EXECUTE_H_

#include <mutex>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "mailretry/engine/durable/internal/record_codec.h"
#include "mailretry/engine/internal/commands.h"
#include "mailretry/engine/internal/state.h"

namespace mailretry::internal {

template <class Cmd>
typename Cmd::Result Execute(Engine::Impl& impl, const Cmd& cmd) {
  std::lock_guard lock(impl.mu);
  JournalSink* journal = impl.journal.get();
  if (journal != nullptr) {
    if (absl::Status h = journal->health(); !h.ok()) return Refuse(cmd, h);
  }
  typename Cmd::Result result = Apply(impl, cmd);
  if (journal == nullptr) return result;
  if constexpr (std::is_same_v<Cmd, DrainEventsCommand>) {
    if (result.empty()) return result;
    // The events are out of the engine now: hand them over even if the
    // record fails (the journal then refuses every later call).
    WriteRecord(journal->BeginRecord(), cmd, result);
    journal->CommitRecord().IgnoreError();
    return result;
  } else {
    WriteRecord(journal->BeginRecord(), cmd, result);
    if (absl::Status j = journal->CommitRecord(); !j.ok()) return Refuse(cmd, j);
    return result;
  }
}

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_INTERNAL_EXECUTE_H_
