// File: engine/durable/internal/journal_replay.h
// -----------------------------------------------------------------------------
// The journal file's framing (header, then records of u32 CRC32C, u32 length
// and a payload) and its replay: each record's command is re-executed through
// the engine's one command path and its result checked against the recorded
// fingerprint. The writer (durable/journal.cc) and the reader share the
// constants here, so the two cannot drift apart.
#ifndef MAILRETRY_ENGINE_DURABLE_INTERNAL_JOURNAL_REPLAY_H_
#define MAILRETRY_ENGINE_DURABLE_INTERNAL_JOURNAL_REPLAY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "mailretry/engine/engine.h"

namespace mailretry::internal {

inline constexpr char kJournalMagic[8] = {'M', 'R', 'J', 'R', 'N', 'L', '\r', '\n'};
inline constexpr uint32_t kJournalVersion = 1;
inline constexpr size_t kHeaderSize = 8 + 4 + 8 + 4;
inline constexpr size_t kFrameSize = 8;  // u32 crc + u32 length
inline constexpr uint32_t kMaxRecord = uint32_t{1} << 30;

// What replaying one journal file found.
struct ReplayResult {
  uint64_t records = 0;
  size_t valid_end = 0;
  bool torn = false;
};

// Replays journal-<generation>.mrj's bytes `data` (read from `path`, named in
// errors) into `impl`. DataLoss "journal '<path>' is corrupt: ..." for a bad
// header or a damaged record followed by valid ones; a damaged tail (a torn
// last write) ends the replay with `torn` set. FailedPrecondition for another
// format version.
absl::StatusOr<ReplayResult> ReplayJournal(Engine::Impl& impl, const std::string& path,
                                           std::string_view data, uint64_t generation);

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_DURABLE_INTERNAL_JOURNAL_REPLAY_H_
