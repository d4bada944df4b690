// File: engine/durable/internal/journal_replay.cc
// Reading the journal back: framing checks and re-execution of each record.

#include "mailretry/engine/durable/internal/journal_replay.h"

#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "mailretry/common/internal/binary_io.h"
#include "mailretry/common/internal/crc32c.h"
#include "mailretry/engine/durable/internal/record_codec.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/commands.h"
#include "mailretry/engine/internal/execute.h"
#include "mailretry/engine/internal/state.h"
#include "re2/re2.h"  // Impl owns compiled RE2s; destroying one here needs the type

namespace mailretry::internal {
namespace {

// The payload of the record at `off`, or nullopt if it is cut short or fails
// its checksum; `end` is set to the offset after it when valid.
std::optional<std::string_view> RecordAt(std::string_view data, size_t off, size_t* end) {
  if (data.size() - off < kFrameSize) return std::nullopt;
  RecordReader frame(data.substr(off, kFrameSize));
  const uint32_t crc = frame.U32();
  const uint32_t len = frame.U32();
  if (len == 0 || len > kMaxRecord || len > data.size() - off - kFrameSize) return std::nullopt;
  if (Crc32c(data.substr(off + 4, 4 + size_t{len})) != crc) return std::nullopt;
  *end = off + kFrameSize + len;
  return data.substr(off + kFrameSize, len);
}

// Whether a valid record starts anywhere after `from`. A crash can only
// damage the end of the journal (records are appended with one write()), so
// a bad record with valid records after it is corruption, not a torn write.
bool ValidRecordAfter(std::string_view data, size_t from) {
  size_t end = 0;
  for (size_t p = from; p + kFrameSize < data.size(); ++p) {
    if (RecordAt(data, p, &end)) return true;
  }
  return false;
}

// Decodes one command, re-executes it and checks its result's fingerprint.
template <class Cmd>
absl::Status ReplayCommand(Engine::Impl& impl, RecordReader& r) {
  Cmd cmd;
  Cmd::Fields(cmd, r);
  if (!r.ok()) return absl::DataLossError("undecodable payload");
  const typename Cmd::Result got = Execute(impl, cmd);
  if (absl::Status s = CheckOutcome(r, Cmd::kName, got); !s.ok()) return s;
  if (!r.ok() || !r.done()) return absl::DataLossError("undecodable payload");
  return absl::OkStatus();
}

// Re-executes one journaled call. An error describes the mismatch or the
// undecodable payload; the caller adds the file, record number and offset.
absl::Status ApplyRecord(Engine::Impl& impl, std::string_view payload) {
  RecordReader r(payload);
  const Op op = static_cast<Op>(r.U8());
  switch (op) {
    case Op::kSubmit:
      return ReplayCommand<SubmitCommand>(impl, r);
    case Op::kSubmitMany:
      return ReplayCommand<SubmitManyCommand>(impl, r);
    case Op::kAdvance:
      return ReplayCommand<AdvanceCommand>(impl, r);
    case Op::kTakeReady:
      return ReplayCommand<TakeReadyCommand>(impl, r);
    case Op::kReport:
      return ReplayCommand<ReportCommand>(impl, r);
    case Op::kReportMany:
      return ReplayCommand<ReportManyCommand>(impl, r);
    case Op::kReportManyText:
      return ReplayCommand<ReportManyTextCommand>(impl, r);
    case Op::kDrainEvents:
      return ReplayCommand<DrainEventsCommand>(impl, r);
    case Op::kReportLease:
      return ReplayCommand<ReportLeaseCommand>(impl, r);
    case Op::kReportLeases:
      return ReplayCommand<ReportLeasesCommand>(impl, r);
    case Op::kReportLeasesText:
      return ReplayCommand<ReportLeasesTextCommand>(impl, r);
  }
  return absl::DataLossError(absl::StrCat("unknown operation ", static_cast<int>(op)));
}

}  // namespace

absl::StatusOr<ReplayResult> ReplayJournal(Engine::Impl& impl, const std::string& path,
                                           std::string_view data, uint64_t generation) {
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("journal '", path, "' is corrupt: ", why));
  };
  if (data.size() < kHeaderSize) return corrupt("truncated header");
  if (std::memcmp(data.data(), kJournalMagic, sizeof kJournalMagic) != 0) {
    return corrupt("not a mailretry journal (bad magic)");
  }
  RecordReader head(data.substr(sizeof kJournalMagic, kHeaderSize - sizeof kJournalMagic));
  const uint32_t version = head.U32();
  const uint64_t gen = head.U64();
  const uint32_t crc = head.U32();
  if (Crc32c(data.substr(0, kHeaderSize - 4)) != crc) return corrupt("header checksum mismatch");
  if (version != kJournalVersion) {
    return absl::FailedPreconditionError(absl::StrCat("journal '", path, "' has version ", version,
                                                      "; this build reads version ",
                                                      kJournalVersion));
  }
  if (gen != generation)
    return corrupt(absl::StrCat("header says generation ", gen, ", expected ", generation));
  ReplayResult r;
  size_t off = kHeaderSize;
  while (off < data.size()) {
    size_t end = 0;
    std::optional<std::string_view> payload = RecordAt(data, off, &end);
    if (!payload) {
      if (ValidRecordAfter(data, off + 1)) {
        return corrupt(
            absl::StrCat("record ", r.records + 1, " at byte ", off,
                         " is cut short or fails its checksum, and valid records follow it"));
      }
      r.torn = true;
      break;
    }
    if (absl::Status s = ApplyRecord(impl, *payload); !s.ok()) {
      return corrupt(absl::StrCat("record ", r.records + 1, " at byte ", off, ": ", s.message()));
    }
    ++r.records;
    off = end;
  }
  r.valid_end = off;
  return r;
}

}  // namespace mailretry::internal
