// File: common/internal/file_io.h
// -----------------------------------------------------------------------------
// The POSIX file operations that snapshots and the journal share: reading a
// whole file, writing a buffer fully across short writes and EINTR, and
// making a rename durable by syncing its directory. Errors are Unavailable
// (NotFound for a missing file) with the path and strerror in the message.
#ifndef MAILRETRY_COMMON_INTERNAL_FILE_IO_H_
#define MAILRETRY_COMMON_INTERNAL_FILE_IO_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailretry::internal {

// The whole file. NotFound names `what` and the path when it does not exist;
// InvalidArgument "<what> '<path>' is larger than N bytes" past `max_bytes`
// (for files a user names, so that a wrong path cannot exhaust memory).
absl::StatusOr<std::string> ReadFile(const std::string& path, std::string_view what = "file",
                                     size_t max_bytes = SIZE_MAX);
// write() until all of `data` is written; Unavailable with strerror otherwise.
absl::Status WriteFully(int fd, std::string_view data);
// fsync of a directory, after a rename or unlink in it.
absl::Status SyncDir(const std::string& dir);
// Unavailable "<what> '<path>': <strerror(err)>".
absl::Status Errno(std::string_view what, const std::string& path, int err);

}  // namespace mailretry::internal

#endif  // MAILRETRY_COMMON_INTERNAL_FILE_IO_H_
