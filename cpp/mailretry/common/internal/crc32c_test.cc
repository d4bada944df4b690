#include "mailretry/common/internal/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace mailretry::internal {
namespace {

// Check values from RFC 3720, appendix B.4, and the usual "123456789" check.
TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(""), 0x00000000u);
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
}

TEST(Crc32cTest, DetectsASingleFlippedBit) {
  std::string data(100, 'a');
  const uint32_t before = Crc32c(data);
  data[57] ^= 0x10;
  EXPECT_NE(Crc32c(data), before);
}

}  // namespace
}  // namespace mailretry::internal
