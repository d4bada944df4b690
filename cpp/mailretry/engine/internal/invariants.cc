// File: engine/internal/invariants.cc
// The engine's invariants, checked by CheckInvariants() in tests (randomised
// workloads call it after every step) and after loading a snapshot.
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "mailretry/engine/internal/state.h"

namespace mailretry {

using internal::DestState;
using internal::kNil;
using internal::kNoTime;
using internal::MsgRec;
using internal::MsgState;

namespace internal {

absl::Status CheckInvariantsLocked(const Engine::Impl& m) {
  auto fail = [](auto&&... parts) { return absl::InternalError(absl::StrCat(parts...)); };
  uint64_t sched = 0, ready = 0, leased = 0, live = 0;
  std::vector<uint32_t> in_flight(m.dests.size(), 0), scheduled(m.dests.size(), 0);
  for (uint32_t s = 0; s < m.msgs.size(); ++s) {
    const MsgRec& r = m.msgs[s];
    if (r.state == MsgState::kFree) continue;
    ++live;
    if (r.dest >= m.dests.size())
      return fail("message slot ", s, " has destination ", r.dest, " out of range");
    // Looked up by id, as Report does: the index compares slots by number,
    // so two records with one id would both be "contained".
    const auto found = m.ids.find(internal::IdKey{r.id});
    if (found == m.ids.end() || *found != s) {
      return fail("message ", r.id, " at slot ", s, " is not what the id index finds for its id");
    }
    // A leased message's timer is its lease deadline in the FIFO (checked
    // below), every other one's an entry in msg_timers.
    if (m.msg_timers->Contains(s) == (r.state == MsgState::kLeased)) {
      return fail("message ", r.id,
                  r.state == MsgState::kLeased ? " is leased and has a timer" : " has no timer");
    }
    switch (r.state) {
      case MsgState::kScheduled:
        ++sched;
        ++scheduled[r.dest];
        break;
      case MsgState::kReady:
        ++ready;
        break;
      case MsgState::kLeased:
        ++leased;
        ++in_flight[r.dest];
        break;
      case MsgState::kFree:
        break;
    }
  }
  if (live != m.ids.size())
    return fail("id index holds ", m.ids.size(), " ids, ", live, " live records");
  if (live - leased != m.msg_timers->size())
    return fail(m.msg_timers->size(), " message timers for ", live - leased, " unleased messages");
  {
    // Lease deadlines: in order, one current entry per leased message.
    uint64_t current = 0;
    int64_t prev = std::numeric_limits<int64_t>::min();
    for (const LeaseDeadlines::Entry& e : m.leases) {
      if (e.due_ms < prev) return fail("lease deadlines out of order at message ", e.id);
      prev = e.due_ms;
      if (e.slot >= m.msgs.size())
        return fail("lease deadline with slot ", e.slot, " out of range");
      const MsgRec& r = m.msgs[e.slot];
      if (r.state == MsgState::kLeased && r.id == e.id && r.attempts == e.attempt &&
          r.timer_ms == e.due_ms) {
        ++current;
      }
    }
    if (current != (m.lease_deadlines_on ? leased : 0)) {
      return fail(current, " current lease deadlines for ", leased, " leased messages");
    }
  }
  if (sched != m.scheduled_n || ready != m.ready_n || leased != m.leased_n) {
    return fail("state counters (", m.scheduled_n, ",", m.ready_n, ",", m.leased_n,
                ") != records (", sched, ",", ready, ",", leased, ")");
  }
  if (m.submitted != m.delivered + m.bounced + m.expired + live) {
    return fail("submitted ", m.submitted, " != delivered ", m.delivered, " + bounced ", m.bounced,
                " + expired ", m.expired, " + pending ", live);
  }
  uint64_t listed = 0;
  for (uint32_t di = 0; di < m.dests.size(); ++di) {
    const DestState& d = m.dests[di];
    if (d.domain_id >= m.names.size() || d.source_id >= m.names.size())
      return fail("destination ", di, " bad name id");
    if (d.policy >= m.dest_policies.size()) return fail("destination ", di, " bad policy index");
    if (d.in_flight != in_flight[di])
      return fail("destination ", di, " in_flight ", d.in_flight, " != ", in_flight[di]);
    if (d.scheduled_count != scheduled[di])
      return fail("destination ", di, " scheduled count mismatch");
    for (int list = 0; list < 2; ++list) {
      uint32_t s = list == 0 ? d.first_head : d.retry_head;
      const uint32_t want = list == 0 ? d.first_count : d.retry_count;
      uint32_t prev = kNil, n = 0;
      while (s != kNil) {
        if (s >= m.msgs.size() || n > want)
          return fail("destination ", di, " ready list is broken");
        const MsgRec& r = m.msgs[s];
        if (r.state != MsgState::kReady || r.dest != di || r.prev != prev ||
            ((r.flags & kFlagFirstList) != 0) != (list == 0)) {
          return fail("destination ", di, " ready list holds an inconsistent record at slot ", s);
        }
        prev = s;
        s = r.next;
        ++n;
      }
      if (n != want || prev != (list == 0 ? d.first_tail : d.retry_tail)) {
        return fail("destination ", di, " ready list length/tail mismatch");
      }
      listed += n;
    }
  }
  if (listed != ready) return fail(listed, " messages in ready lists, ", ready, " ready records");
  uint64_t ring_n = 0;
  for (uint32_t di : m.ring) {
    if (di >= m.dests.size() || !m.dests[di].in_ring)
      return fail("ring holds destination ", di, " not marked in_ring");
    ++ring_n;
  }
  uint64_t marked = 0;
  for (const DestState& d : m.dests) marked += d.in_ring ? 1 : 0;
  if (marked != ring_n)
    return fail(marked, " destinations marked in_ring, ", ring_n, " in the ring");
  for (uint32_t di = 0; di < m.dests.size(); ++di) {
    const DestState& d = m.dests[di];
    if (d.first_count + d.retry_count > 0 && !d.in_ring && d.wake == kNoTime && d.in_flight == 0 &&
        !d.probe_in_flight) {
      return fail("destination ", di, " has ready messages but nothing will dispatch them");
    }
    if ((d.wake != kNoTime) != m.dest_timers->Contains(di))
      return fail("destination ", di, " wake timer mismatch");
  }
  if (absl::Status s = m.msg_timers->CheckInvariants(); !s.ok()) return s;
  return m.dest_timers->CheckInvariants();
}

}  // namespace internal

}  // namespace mailretry
