#include "mailretry/common/version.h"

#include <algorithm>

#include "gtest/gtest.h"

namespace mailretry {
namespace {

TEST(Version, IsSemantic) {
  std::string_view v = Version();
  EXPECT_EQ(std::count(v.begin(), v.end(), '.'), 2) << v;
}

}  // namespace
}  // namespace mailretry
