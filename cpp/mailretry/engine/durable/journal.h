// File: engine/durable/journal.h
// -----------------------------------------------------------------------------
// Options and status of the engine's durable mode (Engine::OpenDurable,
// Engine::Compact, Engine::Sync; implemented in engine_journal.cc).
//
// A durable engine keeps, in one directory:
//
//   snapshot-<G>.mrs   Engine::Save output for generation G (atomic, checksummed)
//   journal-<G>.mrj    every state-changing call made since that snapshot
//   LOCK               flock'ed while an engine has the directory open
//
// Every call that changes the engine (Submit, SubmitMany, Advance, TakeReady,
// Report*, a non-empty DrainEvents) is applied and then appended to the
// journal, under the engine's mutex, with one write() and before the call
// returns; a call that failed is journaled too (it may have advanced time
// first). The engine is deterministic, so recovery is: load the latest
// snapshot, re-execute the journaled calls, and check that each gives the
// recorded outcome. Compaction writes snapshot G+1 and an empty journal G+1,
// then removes generation G.
//
// Opening never initialises a directory that holds anything of ours: a
// snapshot without its journal (unless the previous generation's journal is
// still there: a compaction interrupted between its two files), a journal
// without a snapshot (unless it is the record-less journal of an interrupted
// creation) or a journal newer than the latest snapshot is DataLoss, and no
// file is written or removed.
//
// Journal layout (little-endian):
//   header  "MRJRNL\r\n" | u32 version | u64 generation | u32 CRC32C(previous 20 bytes)
//   record  u32 CRC32C(the next 4 bytes + payload) | u32 payload length | payload
// A record cut short or failing its checksum at the very end of the file is a
// torn write: it is dropped and the file truncated. A bad record followed by
// more data is DataLoss naming the byte offset; nothing is guessed.
//
// What survives what: killing the process loses nothing a call returned (the
// record is in the kernel before the call returns). `fsync` decides what
// survives a power loss or kernel crash; see JournalOptions::Fsync.
//
// Delivery guarantee: no message is lost; a lease taken before a crash and not
// reported is still leased after recovery, returns to the schedule at its
// lease deadline and is attempted again, so the attempts in flight at the
// crash may be delivered twice (at-least-once).
#ifndef MAILRETRY_ENGINE_DURABLE_JOURNAL_H_
#define MAILRETRY_ENGINE_DURABLE_JOURNAL_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace mailretry {

struct JournalOptions {
  enum class Fsync : uint8_t {
    // write() only: survives a process crash, not a power loss.
    kNever,
    // fsync before every journaled call returns: survives everything.
    kEveryOp,
    // fsync from a background thread, at most once per `group_interval` of
    // wall time (at least 1 ms) and only when something was written; also on
    // Sync() and at destruction. Calls never wait for the disk, and a power
    // loss loses at most the calls of the last interval, even when the
    // caller goes idle. (A thread-free design that fsyncs on the call that
    // crosses the interval would put the fsync, milliseconds on a VM disk,
    // on every few-hundredth call's path: measured at 2.3x slower than
    // write-only with a 5 ms interval; see benchmarks/README.md.)
    kGrouped,
  };
  Fsync fsync = Fsync::kGrouped;
  absl::Duration group_interval = absl::Milliseconds(5);
  // Compact automatically once the journal holds this many records (0 =
  // only when Compact() is called). The call that reaches the threshold
  // also writes the snapshot (milliseconds per 100k pending messages). A
  // failed automatic compaction does not fail that call (its record is in
  // the journal); it is tried again after as many records more.
  uint64_t compact_after_records = 0;
  // Reopening a directory that already holds an engine: its saved config and
  // seed always win, since the journal replays only against them. With
  // kRequireSame, a config or seed passed to OpenDurable that differs from
  // the saved ones is InvalidArgument (nothing is opened), so that a changed
  // configuration is never silently ignored; kUseSaved ignores them (for
  // callers that pass none, e.g. Python's open_durable(dir)).
  enum class Reopen : uint8_t { kRequireSame, kUseSaved };
  Reopen reopen = Reopen::kRequireSame;
};

// What OpenDurable found and what the journal holds now.
struct JournalInfo {
  std::string directory;
  uint64_t generation = 0;          // current snapshot / journal generation
  uint64_t records = 0;             // records in the current journal
  uint64_t bytes = 0;               // size of the current journal file
  uint64_t fsyncs = 0;              // fsync calls on the journal since open
  uint64_t compactions = 0;         // since open, automatic or not
  uint64_t failed_compactions = 0;  // automatic ones that failed (retried later)
  // Recovery (at OpenDurable).
  bool created = false;  // no state existed: a new engine was created
  uint64_t records_replayed = 0;
  bool torn_tail_dropped = false;  // a partial last record was dropped
};

}  // namespace mailretry

#endif  // MAILRETRY_ENGINE_DURABLE_JOURNAL_H_
