// Engine::Save / Engine::Load: a versioned binary snapshot of the whole engine
// (config, seed, PRNG state, messages, destinations, timers, undrained events).
//
// Layout: "MRSNAP\r\n" | u32 version | u64 payload length | payload | u32 CRC32C(payload).
// All integers little-endian. Written to "<path>.tmp.<pid>", fsync'ed, renamed
// over <path>, then the directory is fsync'ed, so a crash leaves either the old
// or the new file, never a torn one.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "mailretry/common/internal/binary_io.h"
#include "mailretry/common/internal/crc32c.h"
#include "mailretry/common/internal/file_io.h"
#include "mailretry/engine/durable/internal/snapshot_fields.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/core.h"
#include "mailretry/engine/internal/state.h"
#include "re2/re2.h"

namespace mailretry {
namespace internal {
namespace {

constexpr char kMagic[8] = {'M', 'R', 'S', 'N', 'A', 'P', '\r', '\n'};
using snapshot::FieldReader;
using snapshot::FieldWriter;
using snapshot::kOldestVersion;
using snapshot::kVersion;

using Writer = internal::BinaryWriter;
using Reader = internal::BinaryReader;

// --- events ------------------------------------------------------------------

void PutEvent(Writer& w, const Event& e, uint32_t dest_index) {
  w.U8(static_cast<uint8_t>(e.kind));
  w.Time(e.time);
  w.Bool(e.msg_id.has_value());
  w.U64(e.msg_id.value_or(0));
  w.U32(dest_index);
  w.U8(e.category ? static_cast<uint8_t>(*e.category) : 0xff);
  w.U32(e.attempt);
  w.Bool(e.next_attempt.has_value());
  if (e.next_attempt) w.Time(*e.next_attempt);
  const DestinationEventInfo& info = e.info();
  w.Bool(info.until.has_value());
  if (info.until) w.Time(*info.until);
  w.Str(e.status);
  w.Str(e.reply);
  w.Str(e.detail);
  w.Str(e.rule);
  w.U32(info.concurrency_limit);
  w.Bool(info.rate_per_second.has_value());
  if (info.rate_per_second) w.F64(*info.rate_per_second);
  w.U64(info.categories.size());
  for (const CategoryCount& cc : info.categories) {
    w.U8(static_cast<uint8_t>(cc.category));
    w.U32(cc.count);
  }
  w.U64(info.samples.size());
  for (const std::string& s : info.samples) w.Str(s);
  w.U64(info.remediation.size());
  for (const std::string& s : info.remediation) w.Str(s);
}

// Reads an event into `e`, its texts and destination-level part into
// `info`; the caller copies both into the event buffer (PushCopy).
bool GetEvent(Reader& r, const Engine::Impl& m, OwnedEvent& e) {
  const uint8_t kind = r.U8();
  if (kind >= kNumEventKinds) return false;
  e.kind = static_cast<EventKind>(kind);
  e.time = r.Time();
  const bool has_msg = r.Bool();
  const uint64_t id = r.U64();
  if (has_msg) e.msg_id = id;
  const uint32_t di = r.U32();
  if (di >= m.dests.size()) return false;
  e.destination = m.names[m.dests[di].domain_id];
  e.source = m.names[m.dests[di].source_id];
  const uint8_t cat = r.U8();
  if (cat != 0xff) {
    if (cat >= kNumCategories) return false;
    e.category = static_cast<Category>(cat);
  }
  e.attempt = r.U32();
  if (r.Bool()) e.next_attempt = r.Time();
  if (r.Bool()) e.info.until = r.Time();
  e.status = r.Str();
  e.reply = r.Str();
  e.detail = r.Str();
  e.rule = r.Str();
  e.info.concurrency_limit = r.U32();
  if (r.Bool()) e.info.rate_per_second = r.F64();
  e.info.categories.resize(r.Count(5));
  for (CategoryCount& cc : e.info.categories) {
    const uint8_t c = r.U8();
    if (c >= kNumCategories) return false;
    cc.category = static_cast<Category>(c);
    cc.count = r.U32();
  }
  e.info.samples.resize(r.Count(4));
  for (std::string& s : e.info.samples) s = r.Str();
  e.info.remediation.resize(r.Count(4));
  for (std::string& s : e.info.remediation) s = r.Str();
  return r.ok();
}

// --- state ---------------------------------------------------------------------

std::string Serialize(const Engine::Impl& m) {
  std::string out;
  FieldWriter w(&out);
  w(m.config);
  w.U64(m.seed);
  w.U64(m.rng.state());
  w.I64(m.now_ms);
  w.I64(m.last_event_ms);
  for (uint64_t v : {m.submitted, m.delivered, m.bounced, m.expired, m.attempts, m.deferred,
                     m.lease_expirations, m.events_dropped, m.stale_reports, m.clamped_times,
                     m.held_messages, m.released_messages, m.expired_held}) {
    w.U64(v);
  }
  w.U64(m.names.size());
  for (const std::string& n : m.names) w.Str(n);
  w.U64(m.dests.size());
  for (const DestState& d : m.dests) w(d);
  w.U32(m.msgs.size());
  uint64_t live = 0;
  for (uint32_t s = 0; s < m.msgs.size(); ++s) live += m.msgs[s].state != MsgState::kFree;
  w.U64(live);
  for (uint32_t s = 0; s < m.msgs.size(); ++s) {
    const MsgRec& r = m.msgs[s];
    if (r.state == MsgState::kFree) continue;
    w.U32(s);
    w(r);
  }
  w.U64(m.ring.size());
  for (uint32_t di : m.ring) w.U32(di);
  std::vector<std::pair<uint64_t, const std::vector<int64_t>*>> hits;
  for (const auto& [k, v] : m.reaction_hits) {
    if (!v.empty()) hits.emplace_back(k, &v);
  }
  std::sort(hits.begin(), hits.end());
  w.U64(hits.size());
  for (const auto& [k, v] : hits) {
    w.U64(k);
    w.U64(v->size());
    for (int64_t t : *v) w.I64(t);
  }
  std::vector<std::pair<uint32_t, Engine::Impl::GreylistMemory>> grey(m.greylist.begin(),
                                                                      m.greylist.end());
  std::sort(grey.begin(), grey.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  w.U64(grey.size());
  for (const auto& [domain, g] : grey) {
    w.U32(domain);
    w.I64(g.lower_ms);
    w.I64(g.upper_ms);
  }
  // Events name their destination by pair index.
  absl::flat_hash_map<std::pair<const char*, const char*>, uint32_t> by_names;
  for (uint32_t di = 0; di < m.dests.size(); ++di) {
    by_names[{m.names[m.dests[di].domain_id].data(), m.names[m.dests[di].source_id].data()}] = di;
  }
  w.U64(m.events.size());
  for (const Event& e : m.events) {
    auto it = by_names.find({e.destination.data(), e.source.data()});
    PutEvent(w, e, it == by_names.end() ? 0 : it->second);
  }
  return out;
}

}  // namespace

std::string EncodeConfig(const EngineConfig& config, uint64_t seed) {
  std::string out;
  FieldWriter w(&out);
  w(config);
  w.U64(seed);
  return out;
}

absl::Status SaveLocked(const Engine::Impl& m, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("snapshot path is empty");
  const std::string payload = Serialize(m);
  std::string head(kMagic, sizeof kMagic);
  Writer head_writer(&head);
  head_writer.U32(kVersion);
  head_writer.U64(payload.size());
  std::string tail;
  Writer(&tail).U32(Crc32c(payload));

  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot create '", tmp, "': ", std::strerror(errno)));
  }
  absl::Status s = WriteFully(fd, head);
  if (s.ok()) s = WriteFully(fd, payload);
  if (s.ok()) s = WriteFully(fd, tail);
  if (s.ok() && ::fsync(fd) != 0) s = absl::UnavailableError(std::strerror(errno));
  if (::close(fd) != 0 && s.ok()) s = absl::UnavailableError(std::strerror(errno));
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0)
    s = absl::UnavailableError(std::strerror(errno));
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("cannot write snapshot '", path, "': ", s.message()));
  }
  // Make the rename itself durable (best effort: the file is complete).
  const size_t slash = path.find_last_of('/');
  SyncDir(slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash)))
      .IgnoreError();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Engine::Impl>> LoadImpl(const std::string& path) {
  absl::StatusOr<std::string> read = ReadFile(path, "snapshot");
  if (!read.ok()) return read.status();
  const std::string& data = *read;
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("snapshot '", path, "' is corrupt: ", why));
  };
  constexpr size_t kHeader = sizeof kMagic + 4 + 8;
  if (data.size() < kHeader + 4) return corrupt("truncated header");
  if (std::memcmp(data.data(), kMagic, sizeof kMagic) != 0)
    return corrupt("not a mailretry snapshot (bad magic)");
  Reader head(std::string_view(data).substr(sizeof kMagic, 12));
  const uint32_t version = head.U32();
  const uint64_t len = head.U64();
  if (version < kOldestVersion || version > kVersion) {
    return absl::FailedPreconditionError(absl::StrCat("snapshot '", path, "' has format version ",
                                                      version, "; this build reads versions ",
                                                      kOldestVersion, " to ", kVersion));
  }
  if (len != data.size() - kHeader - 4) return corrupt("truncated or padded (length mismatch)");
  const std::string_view payload = std::string_view(data).substr(kHeader, len);
  Reader crc_reader(std::string_view(data).substr(kHeader + len, 4));
  if (crc_reader.U32() != Crc32c(payload)) return corrupt("checksum mismatch");

  FieldReader r(payload);
  r.version = version;
  EngineConfig config;
  r(config);
  const uint64_t seed = r.U64();
  if (!r.ok()) return corrupt("config section");
  absl::StatusOr<std::unique_ptr<Engine::Impl>> made = MakeImpl(std::move(config), seed);
  if (!made.ok()) return corrupt(absl::StrCat("config: ", made.status().message()));
  std::unique_ptr<Engine::Impl> m = *std::move(made);
  m->rng.set_state(r.U64());
  m->now_ms = r.I64();
  m->last_event_ms = r.I64();
  if (!snapshot::StoredTimeInRange(m->now_ms) || !snapshot::StoredTimeInRange(m->last_event_ms))
    return corrupt("engine clock out of range");
  for (uint64_t* v : {&m->submitted, &m->delivered, &m->bounced, &m->expired, &m->attempts,
                      &m->deferred, &m->lease_expirations, &m->events_dropped}) {
    *v = r.U64();
  }
  if (version >= 3) {
    m->stale_reports = r.U64();
    m->clamped_times = r.U64();
  }
  if (version >= 4) {
    m->held_messages = r.U64();
    m->released_messages = r.U64();
    m->expired_held = r.U64();
  }
  const uint64_t nnames = r.Count(4);
  if (nnames == 0 || !r.ok()) return corrupt("names");
  m->names.clear();
  m->name_ids.clear();
  for (uint64_t i = 0; i < nnames; ++i) {
    m->names.push_back(r.Str());
    if (!m->name_ids.emplace(std::string_view(m->names.back()), static_cast<uint32_t>(i)).second) {
      return corrupt("duplicate name");
    }
  }
  const uint64_t ndests = r.Count(64);
  m->dests.resize(ndests);
  for (uint64_t i = 0; i < ndests; ++i) {
    DestState& d = m->dests[i];
    r(d);
    // Clamp what indexes arrays or names a state.
    d.health = static_cast<Health>(std::min<uint8_t>(static_cast<uint8_t>(d.health), 2));
    d.sample_next %= kSampleRing;
    d.sample_count = std::min<uint32_t>(d.sample_count, kSampleRing);
    if (!r.ok() || d.domain_id >= nnames || d.source_id >= nnames)
      return corrupt("destination section");
    if (!snapshot::TimesInRange(d)) return corrupt("destination time out of range");
    if (!m->pair_ids.emplace((uint64_t{d.domain_id} << 32) | d.source_id, static_cast<uint32_t>(i))
             .second) {
      return corrupt("duplicate destination");
    }
    InitDestination(*m, d);
    if (m->source_seen.insert(d.source_id).second) m->source_list.push_back(d.source_id);
    if (d.strong_ptr > 0) ++m->sender_evidence[d.source_id].ptr_pairs;
    if (d.strong_auth > 0) ++m->sender_evidence[d.source_id].auth_pairs;
    if (d.wake != kNoTime &&
        !m->dest_timers->Schedule(static_cast<Slot>(i), absl::FromUnixMillis(d.wake)).ok()) {
      return corrupt("destination timer");
    }
  }
  const uint32_t nslots = r.U32();
  const uint64_t live = r.Count(50);
  // Each slot was allocated by a Submit, so there are never more slots than
  // messages submitted: a larger count would make Load allocate records (up
  // to 200 GB) for a file of a few bytes.
  if (!r.ok() || live > nslots || nslots > kMaxSlot || nslots > m->submitted) {
    return corrupt("message section header");
  }
  for (uint32_t s = 0; s < nslots; ++s) m->msgs.Grow();
  std::vector<bool> used(nslots, false);
  std::vector<std::pair<int64_t, uint32_t>> leased;  // (deadline, slot)
  for (uint64_t i = 0; i < live; ++i) {
    const uint32_t s = r.U32();
    if (!r.ok() || s >= nslots || used[s]) return corrupt("message slot");
    used[s] = true;
    MsgRec& x = m->msgs[s];
    r(x);
    const uint8_t st = static_cast<uint8_t>(x.state);
    if (!r.ok() || st < 1 || st > 3 || x.dest >= ndests ||
        (x.last_category != 0xff && x.last_category >= kNumCategories) ||
        !snapshot::TimesInRange(x)) {
      return corrupt("message record");
    }
    // By id: the index's own equality compares slot numbers (a new slot is
    // inserted only after a lookup by id), so insert() alone would accept a
    // second record with the same id.
    if (m->ids.contains(IdKey{x.id}) || !m->ids.insert(s).second) {
      return corrupt("duplicate message id");
    }
    if (x.state == MsgState::kLeased) {
      leased.emplace_back(x.timer_ms, s);  // the lease FIFO, in deadline order below
    } else if (!m->msg_timers->Schedule(s, absl::FromUnixMillis(x.timer_ms)).ok()) {
      return corrupt("message timer");
    }
    switch (x.state) {
      case MsgState::kScheduled:
        ++m->scheduled_n;
        break;
      case MsgState::kReady:
        ++m->ready_n;
        break;
      case MsgState::kLeased:
        ++m->leased_n;
        break;
      case MsgState::kFree:
        break;
    }
  }
  // Leases share one timeout, so deadline order is the order they were
  // handed out in (ties are ordered by message id when they fire).
  std::sort(leased.begin(), leased.end());
  if (m->lease_deadlines_on) {
    for (const auto& [due, s] : leased) m->leases.Push(due, s, m->msgs[s].id, m->msgs[s].attempts);
  }
  // Free slots chain in ascending order, so slot reuse is deterministic.
  for (uint32_t s = nslots; s-- > 0;) {
    if (used[s]) continue;
    m->msgs[s].next = m->free_head;
    m->free_head = s;
  }
  const uint64_t nring = r.Count(4);
  for (uint64_t i = 0; i < nring; ++i) {
    const uint32_t di = r.U32();
    if (di >= ndests) return corrupt("ring");
    m->ring.push_back(di);
  }
  const uint64_t nhits = r.Count(16);
  for (uint64_t i = 0; i < nhits; ++i) {
    const uint64_t k = r.U64();
    std::vector<int64_t>& v = m->reaction_hits[k];
    v.resize(r.Count(8));
    for (int64_t& t : v) {
      t = r.I64();
      if (!snapshot::StoredTimeInRange(t)) return corrupt("reaction hit time out of range");
    }
  }
  if (version >= 5) {
    const uint64_t ngrey = r.Count(20);
    for (uint64_t i = 0; i < ngrey; ++i) {
      const uint32_t domain = r.U32();
      if (!r.ok() || domain >= nnames) return corrupt("greylist section");
      Engine::Impl::GreylistMemory& g = m->greylist[domain];
      g.lower_ms = r.I64();
      g.upper_ms = r.I64();
      if (!snapshot::StoredTimeInRange(g.lower_ms) || !snapshot::StoredTimeInRange(g.upper_ms))
        return corrupt("greylist delay out of range");
      if (g.upper_ms != kNever) Core(*m).CountLearnedGreylist(kNever, g.upper_ms);
    }
  }
  const uint64_t nevents = r.Count(40);
  for (uint64_t i = 0; i < nevents; ++i) {
    OwnedEvent o;
    if (!GetEvent(r, *m, o)) return corrupt("event section");
    m->events.PushCopy(o.view());
  }
  if (!r.ok()) return corrupt("truncated payload");
  if (r.remaining() != 0) return corrupt("trailing bytes in payload");
  if (absl::Status s = CheckInvariantsLocked(*m); !s.ok()) {
    return corrupt(absl::StrCat("inconsistent state: ", s.message()));
  }
  return m;
}

}  // namespace internal
}  // namespace mailretry
