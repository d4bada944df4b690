// File: common/internal/crc32c.h
// -----------------------------------------------------------------------------
// CRC32C (Castagnoli), the checksum of the snapshot and journal files. Table
// driven: absl::crc is not in Debian's Abseil 20220623, and the files are
// small enough that a byte-wise loop is not the bottleneck (the fsync is).
#ifndef MAILRETRY_COMMON_INTERNAL_CRC32C_H_
#define MAILRETRY_COMMON_INTERNAL_CRC32C_H_

#include <cstdint>
#include <string_view>

namespace mailretry::internal {

// The CRC32C of `data` (initial value and final xor 0xFFFFFFFF, reflected), as
// in RFC 3720 and SSE 4.2's crc32 instruction: "123456789" gives 0xE3069283.
uint32_t Crc32c(std::string_view data);

}  // namespace mailretry::internal

#endif  // MAILRETRY_COMMON_INTERNAL_CRC32C_H_
