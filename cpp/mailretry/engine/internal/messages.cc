// File: engine/internal/messages.cc
// Message storage, ready lists, timers and the clock: where each pending message
// is and which single timer it waits on (see state.h).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "mailretry/engine/internal/core.h"

namespace mailretry::internal {

absl::Status Core::CheckNow(absl::Time now) const {
  if (!IsTimeValid(now)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "time ", absl::FormatTime(now), " is outside the supported range (Unix epoch onwards)"));
  }
  // Less than kMaxClockSkew behind the clock: a reordering between threads
  // that read a wall clock, not a regression (Advance takes the clock instead).
  static const int64_t skew_ms = DurMs(kMaxClockSkew);  // converted once: this runs on every call
  if (m_.now_ms != kNoTime && Ms(now) <= m_.now_ms - skew_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "time went backwards: ", absl::FormatTime(now), " is ", absl::FormatDuration(kMaxClockSkew),
        " or more", " before the last call's ", absl::FormatTime(T(m_.now_ms))));
  }
  return absl::OkStatus();
}

absl::Status Core::Advance(absl::Time now_t) {
  if (absl::Status s = CheckNow(now_t); !s.ok()) return s;
  int64_t now = Ms(now_t);
  if (m_.now_ms != kNoTime && now < m_.now_ms) {
    now = m_.now_ms;
    ++m_.clamped_times;
  }
  const bool same_time = now == m_.now_ms;
  m_.now_ms = now;
  // Nothing can be due: the queues were emptied up to this very time, and no
  // timer was armed at or before it since (SetTimer/ArmWake say so). Polling
  // them again would find nothing; senders call in many times per instant.
  if (same_time && !m_.timers_due) return absl::OkStatus();
  using Item = DueTimer;
  // Reused across calls: Advance runs on every operation.
  std::vector<Slot>& ms = m_.due_msgs;
  std::vector<Slot>& ds = m_.due_dests;
  std::vector<Item>& items = m_.due_items;
  // Handling one timer can arm another that is already due (a message that
  // became ready after its expiry), so pop until nothing is due.
  for (;;) {
    ms.clear();
    ds.clear();
    if (absl::Status s = m_.msg_timers->PopDue(T(now), &ms); !s.ok()) return s;
    PopDueLeases(now, &ms);  // handled as message timers, in the same order
    if (absl::Status s = m_.dest_timers->PopDue(T(now), &ds); !s.ok()) return s;
    if (ms.empty() && ds.empty()) {
      m_.timers_due = false;
      break;
    }
    items.clear();
    for (Slot s : ms) items.push_back({m_.msgs[s].timer_ms, 1, m_.msgs[s].id, s});
    for (Slot s : ds) items.push_back({m_.dests[s].wake, 0, s, s});
    // Independent of the backends' tie order, so a restored engine replays.
    std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
      if (a.due != b.due) return a.due < b.due;
      if (a.kind != b.kind) return a.kind < b.kind;
      return a.key < b.key;
    });
    for (const Item& it : items) {
      if (it.kind == 0) {
        OnDestWake(it.idx, it.due);
      } else {
        OnMsgTimer(it.idx, it.due);
      }
    }
  }
  return absl::OkStatus();
}

uint32_t Core::InternName(std::string_view name) {
  auto it = m_.name_ids.find(name);
  if (it != m_.name_ids.end()) return it->second;
  m_.names.emplace_back(name);
  const uint32_t id = static_cast<uint32_t>(m_.names.size() - 1);
  m_.name_ids.emplace(std::string_view(m_.names.back()), id);
  return id;
}

uint32_t Core::DestFor(std::string_view domain, std::string_view source) {
  uint32_t dom_id;
  if (std::any_of(domain.begin(), domain.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
    dom_id = InternName(absl::AsciiStrToLower(ToAbsl(domain)));
  } else {
    dom_id = InternName(domain);
  }
  const uint32_t src_id = source.empty() ? 0 : InternName(source);
  const uint64_t key = (uint64_t{dom_id} << 32) | src_id;
  auto it = m_.pair_ids.find(key);
  if (it != m_.pair_ids.end()) return it->second;
  const uint32_t idx = static_cast<uint32_t>(m_.dests.size());
  m_.dests.emplace_back();
  DestState& d = m_.dests.back();
  d.domain_id = dom_id;
  d.source_id = src_id;
  internal::InitDestination(m_, d);
  d.concurrency = Policy(d).initial_concurrency;
  m_.pair_ids.emplace(key, idx);
  if (m_.source_seen.insert(src_id).second) m_.source_list.push_back(src_id);
  return idx;
}

uint32_t Core::AllocSlot() {
  // A free record is already a default MsgRec (FreeSlot cleared it; Grow
  // and Load create default ones) but for its free-list link.
  if (m_.free_head != kNil) {
    const uint32_t s = m_.free_head;
    m_.free_head = m_.msgs[s].next;
    m_.msgs[s].next = kNil;
    return s;
  }
  return m_.msgs.Grow();
}

void Core::FreeSlot(uint32_t s) {
  m_.ids.erase(s);  // before the record is cleared: the index hashes its id
  MsgRec& r = m_.msgs[s];
  r = MsgRec{};
  r.next = m_.free_head;
  m_.free_head = s;
}

void Core::FreeSlot(uint32_t s, IdIndex::const_iterator pos) {
  m_.ids.erase(pos);
  MsgRec& r = m_.msgs[s];
  r = MsgRec{};
  r.next = m_.free_head;
  m_.free_head = s;
}

void Core::PushReady(uint32_t s, bool front) {
  MsgRec& r = m_.msgs[s];
  DestState& d = m_.dests[r.dest];
  const bool first = r.attempts == 0;
  uint32_t& head = first ? d.first_head : d.retry_head;
  uint32_t& tail = first ? d.first_tail : d.retry_tail;
  if (first) {
    r.flags |= internal::kFlagFirstList;
    ++d.first_count;
  } else {
    r.flags &= static_cast<uint8_t>(~internal::kFlagFirstList);
    ++d.retry_count;
  }
  if (front) {
    r.prev = kNil;
    r.next = head;
    if (head != kNil) m_.msgs[head].prev = s;
    head = s;
    if (tail == kNil) tail = s;
  } else {
    r.next = kNil;
    r.prev = tail;
    if (tail != kNil) m_.msgs[tail].next = s;
    tail = s;
    if (head == kNil) head = s;
  }
  r.state = MsgState::kReady;
  ++m_.ready_n;
}

void Core::Unlink(uint32_t s) {
  MsgRec& r = m_.msgs[s];
  DestState& d = m_.dests[r.dest];
  const bool first = (r.flags & internal::kFlagFirstList) != 0;
  uint32_t& head = first ? d.first_head : d.retry_head;
  uint32_t& tail = first ? d.first_tail : d.retry_tail;
  if (r.prev != kNil)
    m_.msgs[r.prev].next = r.next;
  else
    head = r.next;
  if (r.next != kNil)
    m_.msgs[r.next].prev = r.prev;
  else
    tail = r.prev;
  r.prev = r.next = kNil;
  if (first)
    --d.first_count;
  else
    --d.retry_count;
  --m_.ready_n;
}

void Core::SetTimer(uint32_t s, int64_t due, bool pending) {
  MsgRec& r = m_.msgs[s];
  r.timer_ms = due;
  if (due <= m_.now_ms) m_.timers_due = true;
  if (pending) {
    m_.msg_timers->RescheduleUnixMs(s, due).IgnoreError();
  } else {
    m_.msg_timers->ScheduleUnixMs(s, due).IgnoreError();
  }
}

// Puts a message whose time has come into its destination's ready list;
// its timer becomes its ready deadline.
void Core::MakeReady(uint32_t s, bool timer_pending) {
  PushReady(s);
  SetTimer(s, ReadyDeadline(m_.msgs[s]), timer_pending);
  AddToRing(m_.msgs[s].dest);
}

void Core::OnDestWake(uint32_t di, int64_t t) {
  DestState& d = m_.dests[di];
  d.wake = kNoTime;
  // A half-open destination resumes when a probe is delivered, not here.
  if (d.suspended && !d.half_open) {
    if (d.suspended_until <= t) {
      d.suspended = false;
      Event& e = Emit(EventKind::kDestinationResumed, t, d);
      e.detail = "suspension ended";
    } else {
      ArmWake(di, d.suspended_until);
    }
  }
  AddToRing(di);
}

void Core::OnMsgTimer(uint32_t s, int64_t t) {
  MsgRec& r = m_.msgs[s];
  DestState& d = m_.dests[r.dest];
  switch (r.state) {
    case MsgState::kScheduled:
      --m_.scheduled_n;
      --d.scheduled_count;
      MakeReady(s, /*timer_pending=*/false);
      break;
    case MsgState::kReady:
      Unlink(s);
      Expire(s, t,
             d.suspended_until > t || d.half_open
                 ? "lifetime ended while the destination was suspended"
             : d.held ? "lifetime ended while the destination was held"
                      : "lifetime ended while waiting for a delivery slot");
      break;
    case MsgState::kLeased: {
      --m_.leased_n;
      ReleaseLease(r, d);
      ++m_.lease_expirations;
      if ((r.flags & internal::kFlagFinal) || t >= ExpiresMs(r)) {
        Expire(s, t, "lease expired after the lifetime ended");
        break;
      }
      if (Event* e = EmitMsg(EventKind::kLeaseExpired, t, r)) {
        e->next_attempt = T(t);
        e->detail = "lease not reported in time; the message is due again";
      }
      PushReady(s);
      SetTimer(s, ReadyDeadline(r), false);
      AddToRing(r.dest);
      break;
    }
    case MsgState::kFree:
      break;
  }
}

void Core::ReleaseLease(MsgRec& r, DestState& d) {
  if (d.in_flight > 0) --d.in_flight;
  if (r.flags & internal::kFlagProbe) {
    d.probe_in_flight = false;
    r.flags &= static_cast<uint8_t>(~internal::kFlagProbe);
  }
  AddToRing(r.dest);
}

void Core::ArmWake(uint32_t di, int64_t t) {
  DestState& d = m_.dests[di];
  if (d.wake != kNoTime && d.wake <= t) return;  // an earlier wake re-checks everything
  const bool pending = d.wake != kNoTime;
  d.wake = t;
  if (t <= m_.now_ms) m_.timers_due = true;
  if (pending) {
    m_.dest_timers->RescheduleUnixMs(di, t).IgnoreError();
  } else {
    m_.dest_timers->ScheduleUnixMs(di, t).IgnoreError();
  }
}

void Core::AddToRing(uint32_t di) {
  DestState& d = m_.dests[di];
  if (d.in_ring || d.first_count + d.retry_count == 0) return;
  d.in_ring = true;
  m_.ring.push_back(di);
}

}  // namespace mailretry::internal
