#include "mailretry/common/internal/large_array.h"

#include <cstdint>
#include <numeric>

#include "gtest/gtest.h"

namespace mailretry::internal {
namespace {

TEST(LargeVector, LargeArraysAreHugePageAligned) {
  // 1M uint32_t = 4 MiB: past the 2 MiB threshold.
  LargeVector<uint32_t> v(1 << 20, 7);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % (uintptr_t{2} << 20), 0u);
  EXPECT_EQ(v.front(), 7u);
  EXPECT_EQ(v.back(), 7u);
}

TEST(LargeVector, GrowsAcrossTheThresholdKeepingItsContents) {
  LargeVector<uint32_t> v;
  for (uint32_t i = 0; i < 1'000'000; ++i) v.push_back(i);  // small, then large blocks
  uint64_t sum = std::accumulate(v.begin(), v.end(), uint64_t{0});
  EXPECT_EQ(sum, uint64_t{999'999} * 1'000'000 / 2);
  v.resize(10);  // shrinking keeps the block; freeing it (at scope end) uses the large path
  EXPECT_EQ(v[9], 9u);
  LargeVector<uint32_t> copy = v;
  EXPECT_EQ(copy.size(), 10u);
  EXPECT_EQ(copy[3], 3u);
}

}  // namespace
}  // namespace mailretry::internal
