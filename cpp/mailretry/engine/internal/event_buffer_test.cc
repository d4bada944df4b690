// The event buffer's storage (event_buffer.h) and the lifetime engine.h
// promises for an event's texts: valid until the next drain, whatever the
// engine records meanwhile; an OwnedEvent outlives drains.
#include "mailretry/engine/internal/event_buffer.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// Texts of every size land intact, across chunk boundaries and in the
// separate allocations of long texts, and stay put while more are added.
TEST(EventBufferTest, TextsStayIntactWhileTheBufferGrows) {
  internal::EventBuffer b;
  std::vector<std::string> want;
  std::vector<std::string_view> got;
  for (int i = 0; i < 5000; ++i) {
    // 1..99 bytes, and now and then one longer than a quarter chunk.
    std::string t(i % 997 == 0 ? 40'000 : 1 + i % 99, static_cast<char>('a' + i % 26));
    absl::StrAppend(&t, i);
    Event& e = b.emplace_back();
    e.reply = b.Keep(t);
    got.push_back(e.reply);
    want.push_back(std::move(t));
  }
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;
  std::vector<Event> out = b.Take(nullptr);
  ASSERT_THAT(out, SizeIs(want.size()));
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(out[i].reply, want[i]) << i;
}

// A drained batch stays valid while new events are recorded, and is given
// back (its arena reused) only by the drain after it.
TEST(EventBufferTest, DrainedBatchLivesUntilTheNextTake) {
  internal::EventBuffer b;
  b.emplace_back().detail = b.Keep(std::string("first batch"));
  std::vector<Event> first = b.Take(nullptr);
  for (int i = 0; i < 20'000; ++i) {  // several chunks' worth
    b.emplace_back().detail = b.Keep(absl::StrCat("second batch ", i));
  }
  ASSERT_THAT(first, SizeIs(1));
  EXPECT_EQ(first[0].detail, "first batch");
  std::vector<Event> second = b.Take(&first);
  EXPECT_TRUE(first.empty());  // its capacity went back to the buffer
  ASSERT_THAT(second, SizeIs(20'000));
  EXPECT_EQ(second[19'999].detail, "second batch 19999");
  b.emplace_back().detail = b.Keep(std::string("third"));
  EXPECT_EQ(second[0].detail, "second batch 0");
}

// An engine that is never drained, with a small event cap: dropped events'
// texts are given back, and the ones still buffered stay correct.
TEST(EventBufferTest, DroppingKeepsLiveTextsAndBoundsMemory) {
  internal::EventBuffer b;
  const size_t cap = 2000;
  size_t peak = 0;
  for (int i = 0; i < 200'000; ++i) {
    if (b.size() >= cap) b.pop_front();
    Event& e = b.emplace_back();
    e.reply = b.Keep(absl::StrCat("451 4.3.0 try again later, message ", i));
    e.attempt = static_cast<uint32_t>(i);
    if (i % 1000 == 0) {
      DestinationEventInfo& info = b.NewInfo();
      info.samples.push_back(absl::StrCat("sample ", i));
      e.destination_info = &info;
    }
    peak = std::max(peak, b.MemoryBytes());
  }
  ASSERT_EQ(b.size(), cap);
  for (const Event& e : b) {
    EXPECT_EQ(e.reply, absl::StrCat("451 4.3.0 try again later, message ", e.attempt));
    if (e.attempt % 1000 == 0) {
      ASSERT_NE(e.destination_info, nullptr);
      EXPECT_EQ(e.info().samples.at(0), absl::StrCat("sample ", e.attempt));
    } else {
      EXPECT_EQ(e.destination_info, nullptr);
    }
  }
  // 200k texts of ~45 bytes would be 9 MB; the buffer holds 2000 events.
  EXPECT_LT(peak, size_t{2} << 20);
}

// Through the engine: the texts of a drained batch survive reports that
// record new events, and an OwnedEvent survives any number of drains.
TEST(EventBufferTest, EngineEventTextsLiveUntilTheNextDrain) {
  std::unique_ptr<Engine> e = *Engine::Create({}, 1);
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(e->Submit(id, "a.example", kT0).ok());
  std::vector<Lease> leases = *e->TakeReady(kT0, 3);
  ASSERT_THAT(leases, SizeIs(3));
  ASSERT_TRUE(e->ReportText(leases[0], kT0, "451 4.3.0 first reply, kept").ok());
  std::vector<Event> batch = e->DrainEvents();
  ASSERT_THAT(batch, SizeIs(1));
  const OwnedEvent owned(batch[0]);
  // More events into the engine's arena, while `batch` is still in use.
  ASSERT_TRUE(e->ReportText(leases[1], kT0, "451 4.3.0 second reply").ok());
  ASSERT_TRUE(e->ReportText(leases[2], kT0, "550 5.1.1 no such user").ok());
  EXPECT_EQ(batch[0].kind, EventKind::kDeferred);
  EXPECT_EQ(batch[0].reply, "451 4.3.0 first reply, kept");
  EXPECT_EQ(batch[0].status, "4.3.0");
  EXPECT_THAT(batch[0].detail, HasSubstr("schedule default"));
  EXPECT_EQ(batch[0].destination_info, nullptr);  // a message event
  EXPECT_FALSE(batch[0].info().until.has_value());

  e->DrainEvents(batch);  // batch's old events are gone; the new ones are valid
  ASSERT_THAT(batch, SizeIs(2));
  EXPECT_EQ(batch[0].reply, "451 4.3.0 second reply");
  EXPECT_EQ(batch[1].kind, EventKind::kBounced);
  EXPECT_EQ(batch[1].reply, "550 5.1.1 no such user");
  e->DrainEvents(batch);
  EXPECT_TRUE(batch.empty());

  EXPECT_EQ(owned.reply, "451 4.3.0 first reply, kept");
  EXPECT_EQ(owned.view().reply, owned.reply);
  EXPECT_EQ(owned.view().destination_info, nullptr);
}

// The destination-level part: set for a suspension, with its end.
TEST(EventBufferTest, DestinationEventsCarryTheirInfo) {
  std::unique_ptr<Engine> e = *Engine::Create({}, 1);
  ASSERT_TRUE(e->Submit(1, "b.example", kT0).ok());
  const Lease l = (*e->TakeReady(kT0, 1))[0];
  // A rate-limit reply (Gmail's 4.7.28) cuts the rate and suspends.
  ASSERT_TRUE(e->ReportText(l, kT0, "421 4.7.28 unusual rate of mail from your address").ok());
  bool seen = false;
  for (const Event& ev : e->DrainEvents()) {
    if (ev.kind != EventKind::kDestinationSuspended) continue;
    seen = true;
    ASSERT_NE(ev.destination_info, nullptr);
    ASSERT_TRUE(ev.info().until.has_value());
    EXPECT_GT(*ev.info().until, kT0);
    const OwnedEvent o(ev);
    EXPECT_EQ(o.info.until, ev.info().until);
    EXPECT_EQ(o.view().destination_info, &o.info);
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace mailretry
