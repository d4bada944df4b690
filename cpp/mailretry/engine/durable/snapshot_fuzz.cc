// libFuzzer target: Engine::Load on arbitrary snapshot payloads. The input is
// a snapshot file whose length field and CRC32C trailer are recomputed before
// loading, so the fuzzer explores the payload decoder rather than the
// checksum. Whatever the bytes, Load returns DataLoss / FailedPrecondition or
// an engine that passes CheckInvariants and keeps them through a few rounds
// of calls: a loader that accepts a state the engine cannot run is a bug.
// Seeds: tests/golden/durable-0.1/*.mrs (./dev fuzz). Build with -DMAILRETRY_FUZZ=ON.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "mailretry/common/internal/crc32c.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/fuzz_support.h"

namespace {

constexpr size_t kMagicSize = 8;
constexpr size_t kHeaderSize = kMagicSize + 4 + 8;  // magic, u32 version, u64 length

// The input with a consistent length and checksum (when it is long enough to
// have a header: shorter inputs test the loader's own size checks).
std::string WithValidFraming(std::string data) {
  if (data.size() < kHeaderSize + 4) return data;
  const size_t payload = data.size() - kHeaderSize - 4;
  mailretry::fuzz::PutLe(data, kMagicSize + 4, payload, 8);
  const uint32_t crc =
      mailretry::internal::Crc32c(std::string_view(data).substr(kHeaderSize, payload));
  mailretry::fuzz::PutLe(data, kHeaderSize + payload, crc, 4);
  return data;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = mailretry::fuzz::ScratchPath("snapshot") + ".mrs";
  const std::string bytes =
      WithValidFraming(std::string(reinterpret_cast<const char*>(data), size));
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  absl::StatusOr<std::unique_ptr<mailretry::Engine>> e = mailretry::Engine::Load(path);
  mailretry::fuzz::CheckRestored(e);
  return 0;
}
