// File: engine/durable/snapshot_test.cc
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/common/internal/crc32c.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/engine_test_util.h"

namespace mailretry {
namespace {

using namespace ::mailretry::engine_test;  // NOLINT: the shared test vocabulary
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

TEST(Engine, SnapshotMidRunReplaysIdentically) {
  auto a = MakeEngine(RandomizedConfig(), 9);
  Driver da(11);
  for (int i = 0; i < 1200; ++i) da.Step(*a, false);
  const std::string path = TempPath("mid.snap");
  ASSERT_TRUE(a->Save(path).ok());
  absl::StatusOr<std::unique_ptr<Engine>> b = Engine::Load(path);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE((*b)->CheckInvariants().ok());
  EXPECT_EQ((*b)->seed(), 9u);
  EngineStats sa = a->Stats(), sb = (*b)->Stats();
  EXPECT_EQ(sa.submitted, sb.submitted);
  EXPECT_EQ(sa.pending, sb.pending);
  EXPECT_GT(sa.pending, 10u);
  Driver db = da;  // same driver state from here on
  da.rendered.clear();
  db.rendered.clear();
  for (int i = 0; i < 1500; ++i) {
    da.Step(*a, false);
    db.Step(**b, false);
  }
  ASSERT_GT(da.rendered.size(), 200u);
  EXPECT_EQ(da.rendered, db.rendered);
  std::remove(path.c_str());
}

TEST(Engine, SnapshotKeepsUndrainedEventsAndDestinationState) {
  auto a = MakeEngine();
  ASSERT_TRUE(a->Submit(1, "example.com", kT0, "ip9").ok());
  Take(*a, kT0);
  MustReport(*a, 1, kT0, kYahoo);  // a reputation deferral suspends at once
  const std::string path = TempPath("events.snap");
  ASSERT_TRUE(a->Save(path).ok());
  absl::StatusOr<std::unique_ptr<Engine>> b = Engine::Load(path);
  ASSERT_TRUE(b.ok()) << b.status();
  std::vector<Event> ea = a->DrainEvents(), eb = (*b)->DrainEvents();
  ASSERT_EQ(ea.size(), eb.size());
  for (size_t i = 0; i < ea.size(); ++i) EXPECT_EQ(Render(ea[i]), Render(eb[i]));
  EXPECT_EQ((*b)->GetDestination("example.com", "ip9")->suspended_until, kT0 + absl::Minutes(5));
  std::remove(path.c_str());
}

TEST(Engine, CorruptOrTruncatedSnapshotIsAClearError) {
  auto a = MakeEngine();
  for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(a->Submit(i, "example.com", kT0).ok());
  const std::string path = TempPath("good.snap");
  ASSERT_TRUE(a->Save(path).ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 100u);
  auto write = [](const std::string& p, const std::string& b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << b;
  };
  const std::string bad = TempPath("bad.snap");
  write(bad, bytes.substr(0, bytes.size() / 2));
  absl::Status s = Engine::Load(bad).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("truncated"));
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x40;
  write(bad, flipped);
  s = Engine::Load(bad).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("checksum"));
  write(bad, "not a snapshot at all, just text");
  EXPECT_EQ(Engine::Load(bad).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Engine::Load(TempPath("missing.snap")).status().code(), absl::StatusCode::kNotFound);
  // A failed save leaves the previous snapshot intact.
  EXPECT_FALSE(a->Save("/nonexistent-dir/x.snap").ok());
  ASSERT_TRUE(a->Submit(100, "example.com", kT0).ok());
  absl::StatusOr<std::unique_ptr<Engine>> still = Engine::Load(path);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ((*still)->Stats().submitted, 20u);
  std::remove(path.c_str());
  std::remove(bad.c_str());
}

// --- damaged snapshots, framing intact ---------------------------------------
// Each test below changes a few payload bytes of a saved snapshot and rewrites
// the CRC32C trailer, so that only the loader's own checks stand between the
// damage and a running engine (as in snapshot_fuzz).

constexpr size_t kSnapshotHeader = 8 + 4 + 8;  // magic, u32 version, u64 payload length

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// `bytes` little-endian bytes of `v`.
std::string LittleEndian(uint64_t v, int bytes = 8) {
  std::string out(static_cast<size_t>(bytes), '\0');
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

// Writes `bytes` to `path` with the CRC32C trailer recomputed for its payload.
void WriteWithPayloadCrc(const std::string& path, std::string bytes) {
  const size_t payload = bytes.size() - kSnapshotHeader - 4;
  const uint32_t crc = internal::Crc32c(std::string_view(bytes).substr(kSnapshotHeader, payload));
  bytes.replace(kSnapshotHeader + payload, 4, LittleEndian(crc, 4));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

void ExpectDataLoss(const std::string& path, const std::string& why) {
  absl::Status s = Engine::Load(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(why));
}

// A payload holding one message id twice must be refused: the id index
// compares slots by number, and its insert() accepted the second record, which
// then could be leased while reports reached the first (found by
// snapshot_fuzz).
TEST(Engine, SnapshotWithADuplicateMessageIdIsDataLoss) {
  constexpr uint64_t kA = 0x1122334455667788, kB = 0x1122334455667789;
  auto a = MakeEngine();
  ASSERT_TRUE(a->Submit(kA, "example.com", kT0).ok());
  ASSERT_TRUE(a->Submit(kB, "example.com", kT0).ok());
  const std::string path = TempPath("dup.snap");
  ASSERT_TRUE(a->Save(path).ok());
  std::string bytes = ReadBytes(path);
  const size_t at = bytes.find(LittleEndian(kB));
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 8, LittleEndian(kA));
  WriteWithPayloadCrc(path, bytes);
  ExpectDataLoss(path, "duplicate message id");
  std::remove(path.c_str());
}

// More message slots than messages ever submitted cannot come from an engine
// (each slot is allocated by a Submit); Load used to allocate them all, up to
// 200 GB for a file of a few bytes (found by snapshot_fuzz).
TEST(Engine, SnapshotWithMoreSlotsThanSubmittedMessagesIsDataLoss) {
  auto a = MakeEngine();
  for (uint64_t id : {11, 12, 13}) ASSERT_TRUE(a->Submit(id, "example.com", kT0).ok());
  const std::string path = TempPath("slots.snap");
  ASSERT_TRUE(a->Save(path).ok());
  std::string bytes = ReadBytes(path);
  // The message section's header: u32 slot count 3, u64 live count 3.
  const std::string header = LittleEndian(3, 4) + LittleEndian(3);
  const size_t at = bytes.find(header);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(bytes.find(header, at + 1), std::string::npos);
  bytes[at] = 4;  // one slot more than the 3 messages submitted
  WriteWithPayloadCrc(path, bytes);
  ExpectDataLoss(path, "message section header");
  std::remove(path.c_str());
}

// A message's submission time (the 8 bytes after its id) beyond any time the
// engine can hold is damage, refused at load rather than at the timer queue.
TEST(Engine, SnapshotWithAMessageTimeOutOfRangeIsDataLoss) {
  constexpr uint64_t kId = 0x5566778899aabbcc;
  auto a = MakeEngine();
  ASSERT_TRUE(a->Submit(kId, "example.com", kT0).ok());
  const std::string path = TempPath("msgtime.snap");
  ASSERT_TRUE(a->Save(path).ok());
  std::string bytes = ReadBytes(path);
  const size_t at = bytes.find(LittleEndian(kId));
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(bytes.substr(at + 8, 8), LittleEndian(absl::ToUnixMillis(kT0)));
  bytes.replace(at + 8, 8, LittleEndian(uint64_t{1} << 62));
  WriteWithPayloadCrc(path, bytes);
  ExpectDataLoss(path, "message record");
  std::remove(path.c_str());
}

// snapshot_fuzz's case: the golden state with one destination's rate interval
// (1,000 ms, at payload offset 6,873) raised to about 2e18 ms. Load accepted
// it, and the first round of calls armed a wake-up beyond the timer queue's
// range, which the engine ignored: "destination 11 wake timer mismatch".
TEST(Engine, SnapshotWithADestinationTimeOutOfRangeIsDataLoss) {
  const std::string golden =
      std::string(MAILRETRY_SOURCE_DIR) + "/tests/golden/durable-0.1/state.mrs";
  std::string bytes = ReadBytes(golden);
  constexpr size_t kAt = 6893;  // the field's file offset
  ASSERT_GT(bytes.size(), kAt + 8) << golden;
  ASSERT_EQ(bytes.substr(kAt, 8), LittleEndian(1000));
  ASSERT_TRUE(Engine::Load(golden).ok());
  bytes.replace(kAt, 8, LittleEndian(0x1bffffffffffffff));
  const std::string path = TempPath("desttime.snap");
  WriteWithPayloadCrc(path, bytes);
  ExpectDataLoss(path, "destination time out of range");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace mailretry
