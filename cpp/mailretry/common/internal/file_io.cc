// File: common/internal/file_io.cc
#include "mailretry/common/internal/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "mailretry/common/internal/strings.h"

namespace mailretry::internal {

absl::Status Errno(std::string_view what, const std::string& path, int err) {
  return absl::UnavailableError(Cat(what, " '", path, "': ", std::strerror(err)));
}

absl::StatusOr<std::string> ReadFile(const std::string& path, std::string_view what,
                                     size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(Cat(what, " '", path, "' does not exist"));
    return Errno(Cat("cannot open ", what), path, err);
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return Errno(Cat("cannot read ", what), path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      return absl::InvalidArgumentError(
          Cat(what, " '", path, "' is larger than ", max_bytes, " bytes"));
    }
  }
  ::close(fd);
  return out;
}

absl::Status WriteFully(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open directory", dir, errno);
  absl::Status s;
  if (::fsync(fd) != 0) s = Errno("cannot fsync directory", dir, errno);
  ::close(fd);
  return s;
}

}  // namespace mailretry::internal
