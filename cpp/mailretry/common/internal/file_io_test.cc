#include "mailretry/common/internal/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mailretry::internal {
namespace {

using ::testing::HasSubstr;

class FileIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/file_io_XXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
  }
  void TearDown() override {
    ::unlink(Path("f").c_str());
    ::rmdir(dir_.c_str());
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  void Write(const std::string& name, const std::string& data) {
    const int fd = ::open(Path(name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(WriteFully(fd, data).ok());
    ::close(fd);
  }
  std::string dir_;
};

TEST_F(FileIoTest, ReadsWhatWasWrittenAcrossManyReads) {
  const std::string data(200'000, 'x');  // larger than one read() buffer
  Write("f", data);
  absl::StatusOr<std::string> got = ReadFile(Path("f"));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, data);
}

TEST_F(FileIoTest, MissingFileIsNotFoundAndNamesWhatAndPath) {
  absl::StatusOr<std::string> got = ReadFile(Path("absent"), "config file");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got.status().message(), HasSubstr("config file '"));
  EXPECT_THAT(got.status().message(), HasSubstr("absent' does not exist"));
}

TEST_F(FileIoTest, AFileOverTheLimitIsRefusedAndOneAtTheLimitIsRead) {
  Write("f", std::string(100, 'y'));
  EXPECT_TRUE(ReadFile(Path("f"), "config file", 100).ok());
  absl::StatusOr<std::string> got = ReadFile(Path("f"), "config file", 99);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(), HasSubstr("is larger than 99 bytes"));
}

}  // namespace
}  // namespace mailretry::internal
