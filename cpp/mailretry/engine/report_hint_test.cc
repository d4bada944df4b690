// Reports that carry a slot hint (Lease::slot, SlotHint) or a reply handle
// (Engine::InternReply): both only spare the engine work, so every answer
// must be the one the plain report gives, whatever the hint says.
#include <cstdint>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/engine_test_util.h"

namespace mailretry {
namespace {

using namespace ::mailretry::engine_test;  // NOLINT: the shared test vocabulary

Reply R(std::string_view text) { return *ParseReply(text); }

// What a report decided, for comparing two ways of reporting.
std::string Describe(const absl::StatusOr<Decision>& d) {
  if (!d.ok()) return std::string(d.status().message());
  return absl::StrCat(std::string(DecisionActionName(d->action)), " ",
                      d->next_attempt ? absl::FormatTime(*d->next_attempt) : "-", " ",
                      d->category ? static_cast<int>(*d->category) : -1, " ", std::string(d->rule),
                      " ", std::string(d->schedule), " ", d->attempt);
}

std::vector<Lease> TakeAll(Engine& e, absl::Time now) {
  absl::StatusOr<std::vector<Lease>> l = e.TakeReady(now, 1'000'000);
  EXPECT_TRUE(l.ok()) << l.status();
  return l.ok() ? *l : std::vector<Lease>{};
}

TEST(SlotHint, LeasesCarryDistinctSlots) {
  std::unique_ptr<Engine> e = MakeEngine();
  for (uint64_t id = 1; id <= 10; ++id) {
    ASSERT_TRUE(e->Submit(id, absl::StrCat("d", id, ".example"), kT0).ok());
  }
  std::vector<Lease> ls = TakeAll(*e, kT0);
  ASSERT_EQ(ls.size(), 10u);
  std::set<uint32_t> slots;
  for (const Lease& l : ls) {
    EXPECT_NE(l.slot.slot, SlotHint{}.slot);
    slots.insert(l.slot.slot);
  }
  EXPECT_EQ(slots.size(), 10u);
}

// Whatever the hint (right, stale, out of range, a free record, another
// message's record), a report decides what the report without a hint does.
TEST(SlotHint, AnyHintGivesTheUnhintedAnswer) {
  const Reply temp = R(kTempFail);
  for (int variant = 0; variant < 5; ++variant) {
    SCOPED_TRACE(variant);
    std::unique_ptr<Engine> hinted = MakeEngine({}, 7);
    std::unique_ptr<Engine> plain = MakeEngine({}, 7);
    ASSERT_TRUE(hinted && plain);
    absl::StatusOr<ReplyHandle> h = hinted->InternReply(temp);
    ASSERT_TRUE(h.ok());
    for (Engine* e : {hinted.get(), plain.get()}) {
      for (uint64_t id = 1; id <= 6; ++id) {
        ASSERT_TRUE(e->Submit(id, absl::StrCat("d", id, ".example"), kT0).ok());
      }
    }
    std::vector<Lease> lh = TakeAll(*hinted, kT0);
    std::vector<Lease> lp = TakeAll(*plain, kT0);
    ASSERT_EQ(lh.size(), 6u);
    ASSERT_EQ(lp.size(), 6u);
    // Message 1 is delivered: its record is free (and reused by message 7).
    ASSERT_TRUE(hinted->Report(lh[0], kT0, R(kOk)).ok());
    ASSERT_TRUE(plain->Report(lp[0].msg_id, lp[0].attempt, kT0, R(kOk)).ok());
    const uint32_t freed = lh[0].slot.slot;
    for (size_t i = 1; i < lh.size(); ++i) {
      SlotHint hint = lh[i].slot;
      switch (variant) {
        case 0:
          break;  // the right one
        case 1:
          hint.slot = std::numeric_limits<uint32_t>::max() - 1;  // out of range
          break;
        case 2:
          hint.slot = freed;  // a free record
          break;
        case 3:
          hint.slot = lh[i == 1 ? 2 : 1].slot.slot;  // another pending message
          break;
        case 4:
          hint = SlotHint{};  // none
          break;
      }
      const Lease& l = lh[i];
      absl::StatusOr<Decision> a = hinted->Report(l.msg_id, kT0, *h, hint);
      absl::StatusOr<Decision> b = plain->Report(lp[i].msg_id, kT0, temp);
      EXPECT_EQ(Describe(a), Describe(b));
    }
    // A report for a finished message with a hint at its old record, now
    // holding another message: NotFound, and the other message is untouched.
    for (Engine* e : {hinted.get(), plain.get()}) ASSERT_TRUE(e->Submit(7, "b.example", kT0).ok());
    std::vector<Lease> l7 = TakeAll(*hinted, kT0);
    ASSERT_EQ(l7.size(), 1u);
    EXPECT_EQ(l7[0].slot.slot, freed);  // the free list gave the record back
    EXPECT_EQ(hinted->Report(1, kT0, *h, SlotHint{freed}).status().code(),
              absl::StatusCode::kNotFound);
    absl::StatusOr<Decision> d7 = hinted->Report(l7[0], kT0, R(kOk));
    ASSERT_TRUE(d7.ok()) << d7.status();
    EXPECT_EQ(d7->action, DecisionAction::kDelivered);
    EXPECT_EQ(hinted->Stats().delivered, 2u);
  }
}

// The fencing token still decides with a right hint: a stale attempt is
// refused even though the hint finds the record at once.
TEST(SlotHint, StaleLeaseIsRefusedWithTheRightHint) {
  EngineConfig c;
  c.lease_timeout = absl::Minutes(1);
  std::unique_ptr<Engine> e = MakeEngine(Unjittered(c));
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  std::vector<Lease> first = TakeAll(*e, kT0);
  ASSERT_EQ(first.size(), 1u);
  const absl::Time later = kT0 + absl::Minutes(2);  // the lease expired
  std::vector<Lease> second = TakeAll(*e, later);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].slot.slot, first[0].slot.slot);
  absl::StatusOr<Decision> stale = e->Report(first[0], later, R(kOk));
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(stale.status().GetPayload(kStaleLeasePayload).has_value());
  EXPECT_EQ(e->Stats().delivered, 0u);
  ASSERT_TRUE(e->Report(second[0], later, R(kOk)).ok());
  EXPECT_EQ(e->Stats().delivered, 1u);
}

// Past the first 4,096 records the store carves its chunks out of 2 MiB
// pages, nine per page: 41,645 records span the ordinary chunk and two pages,
// and records on every side of those boundaries are found by hint and by id.
TEST(SlotHint, RecordsAcrossStorageChunks) {
  std::unique_ptr<Engine> e = MakeEngine();
  constexpr uint64_t kN = 4096 + 37449 + 100;
  for (uint64_t id = 0; id < kN; ++id) ASSERT_TRUE(e->Submit(id, "a.example", kT0).ok());
  // Every record exists from its Submit; a destination takes 5 at a time.
  const Reply ok = R(kOk);
  uint64_t reported = 0;
  while (reported < kN) {
    std::vector<Lease> ls = TakeAll(*e, kT0);
    ASSERT_FALSE(ls.empty());
    for (const Lease& l : ls) {
      absl::StatusOr<Decision> d =
          reported % 2 == 0 ? e->Report(l, kT0, ok) : e->Report(l.msg_id, l.attempt, kT0, ok);
      ASSERT_TRUE(d.ok()) << l.msg_id << " " << d.status();
      ASSERT_EQ(d->action, DecisionAction::kDelivered);
      ++reported;
    }
  }
  EXPECT_EQ(e->Stats().delivered, kN);
  EXPECT_EQ(e->Stats().pending, 0u);
  EXPECT_TRUE(e->CheckInvariants().ok());
}

// A report by handle decides, emits and counts what a report by the reply does.
TEST(ReplyHandle, SameAsReportingTheReply) {
  const std::vector<std::string> texts = {kTempFail, kGreylisted, kUnknownUser, kRateLimited, kOk};
  std::unique_ptr<Engine> by_handle = MakeEngine({}, 3);
  std::unique_ptr<Engine> by_reply = MakeEngine({}, 3);
  std::vector<ReplyHandle> handles;
  for (const std::string& t : texts) {
    absl::StatusOr<ReplyHandle> h = by_handle->InternReply(R(t));
    ASSERT_TRUE(h.ok());
    handles.push_back(*h);
  }
  EXPECT_NE(handles[0].index, handles[1].index);
  for (Engine* e : {by_handle.get(), by_reply.get()}) {
    for (uint64_t id = 0; id < 40; ++id) {
      ASSERT_TRUE(e->Submit(id, id % 2 ? "a.example" : "b.example", kT0).ok());
    }
  }
  absl::Time now = kT0;
  for (int round = 0; round < 6; ++round) {
    std::vector<Lease> a = TakeAll(*by_handle, now);
    std::vector<Lease> b = TakeAll(*by_reply, now);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      const size_t k = (a[i].msg_id + static_cast<uint64_t>(round)) % texts.size();
      absl::StatusOr<Decision> da = i % 2 ? by_handle->Report(a[i], now, handles[k])
                                          : by_handle->Report(a[i].msg_id, now, handles[k], {});
      absl::StatusOr<Decision> db = by_reply->Report(b[i], now, R(texts[k]));
      EXPECT_EQ(Describe(da), Describe(db));
    }
    now += absl::Hours(2);
  }
  std::vector<Event> ea = by_handle->DrainEvents();
  std::vector<Event> eb = by_reply->DrainEvents();
  ASSERT_EQ(ea.size(), eb.size());
  for (size_t i = 0; i < ea.size(); ++i) {
    EXPECT_EQ(ea[i].kind, eb[i].kind);
    EXPECT_EQ(ea[i].reply, eb[i].reply);
    EXPECT_EQ(ea[i].status, eb[i].status);
    EXPECT_EQ(ea[i].msg_id, eb[i].msg_id);
  }
  EXPECT_EQ(by_handle->Stats().delivered, by_reply->Stats().delivered);
  EXPECT_EQ(by_handle->Stats().bounced, by_reply->Stats().bounced);
  EXPECT_EQ(by_handle->Stats().deferred, by_reply->Stats().deferred);
}

TEST(ReplyHandle, UnknownHandleIsRefusedAndChangesNothing) {
  std::unique_ptr<Engine> e = MakeEngine();
  std::unique_ptr<Engine> other = MakeEngine();
  absl::StatusOr<ReplyHandle> foreign = other->InternReply(R(kOk));
  ASSERT_TRUE(foreign.ok());
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  std::vector<Lease> l = TakeAll(*e, kT0);
  ASSERT_EQ(l.size(), 1u);
  // This engine has interned nothing: index 0 is not its own.
  EXPECT_EQ(e->Report(l[0], kT0, *foreign).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Report(1, kT0, ReplyHandle{}, l[0].slot).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Stats().leased, 1u);
  ASSERT_TRUE(e->Report(l[0], kT0, R(kOk)).ok());
  EXPECT_EQ(e->Stats().delivered, 1u);
}

TEST(ReplyHandle, LongReplyIsCutLikeAReport) {
  std::unique_ptr<Engine> e = MakeEngine();
  const Reply huge = TransportReply(Transport::kConnectionRefused, std::string(1 << 20, 'x'));
  absl::StatusOr<ReplyHandle> h = e->InternReply(huge);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(e->Submit(1, "a.example", kT0).ok());
  std::vector<Lease> l = TakeAll(*e, kT0);
  ASSERT_TRUE(e->Report(l[0], kT0, *h).ok());
  for (const Event& ev : e->DrainEvents()) {
    EXPECT_LE(ev.reply.size(), kMaxReplyBytes + 64);
    for (const std::string& s : ev.info().samples) EXPECT_LE(s.size(), kMaxReplyBytes + 64);
  }
}

TEST(ReplyHandle, TableIsBounded) {
  std::unique_ptr<Engine> e = MakeEngine();
  const Reply r = R(kTempFail);
  for (uint32_t i = 0; i < Engine::kMaxReplyHandles; ++i) {
    absl::StatusOr<ReplyHandle> h = e->InternReply(r);
    ASSERT_TRUE(h.ok()) << i;
    ASSERT_EQ(h->index, i);
  }
  EXPECT_EQ(e->InternReply(r).status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace mailretry
