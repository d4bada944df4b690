// libFuzzer target: recovery of a durable directory whose journal is
// arbitrary. The directory holds the golden snapshot of generation 1
// (tests/golden/durable-0.1/snapshot-1.mrs) and the input as journal-1.mrj, with the
// header's generation and CRC and every record's CRC recomputed (a length
// that overruns the file is cut to the bytes left), so the fuzzer explores
// record decoding and replay rather than checksums. Whatever the records,
// OpenDurable returns an error status or an engine that passes
// CheckInvariants and keeps them through a few rounds of calls.
// Seeds: tests/golden/durable-0.1/journal-1.mrj (./dev fuzz). Build with -DMAILRETRY_FUZZ=ON.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "mailretry/common/internal/crc32c.h"
#include "mailretry/engine/durable/journal.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/fuzz_support.h"

#ifndef MAILRETRY_GOLDEN_DIR
#error "MAILRETRY_GOLDEN_DIR must name tests/golden/durable-0.1"
#endif

namespace {

using mailretry::fuzz::Check;
using mailretry::fuzz::GetLe32;
using mailretry::fuzz::PutLe;
using mailretry::internal::Crc32c;

constexpr size_t kHeaderSize = 8 + 4 + 8 + 4;  // magic, version, generation, CRC
constexpr size_t kFrameSize = 8;               // u32 CRC, u32 length

std::string WithValidFraming(std::string data) {
  if (data.size() < kHeaderSize) return data;
  PutLe(data, 12, 1, 8);  // generation 1, the snapshot's
  PutLe(data, 20, Crc32c(std::string_view(data).substr(0, 20)), 4);
  size_t pos = kHeaderSize;
  while (pos + kFrameSize <= data.size()) {
    const size_t left = data.size() - pos - kFrameSize;
    size_t len = GetLe32(data, pos + 4);
    if (len > left) {
      len = left;
      PutLe(data, pos + 4, len, 4);
    }
    PutLe(data, pos, Crc32c(std::string_view(data).substr(pos + 4, 4 + len)), 4);
    pos += kFrameSize + len;
  }
  return data;  // fewer than kFrameSize bytes left: a torn tail
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  static const std::string snapshot = ReadAll(MAILRETRY_GOLDEN_DIR "/snapshot-1.mrs");
  static const fs::path dir = mailretry::fuzz::ScratchPath("journal");
  Check(!snapshot.empty());
  fs::remove_all(dir);
  fs::create_directories(dir);
  WriteAll(dir / "snapshot-1.mrs", snapshot);
  WriteAll(dir / "journal-1.mrj",
           WithValidFraming(std::string(reinterpret_cast<const char*>(data), size)));

  mailretry::JournalOptions options;
  options.fsync = mailretry::JournalOptions::Fsync::kNever;
  options.reopen = mailretry::JournalOptions::Reopen::kUseSaved;
  absl::StatusOr<std::unique_ptr<mailretry::Engine>> e =
      mailretry::Engine::OpenDurable(dir.string(), {}, 0, options);
  mailretry::fuzz::CheckRestored(e);
  return 0;
}
