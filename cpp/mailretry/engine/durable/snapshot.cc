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
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/core.h"
#include "mailretry/engine/internal/state.h"
#include "re2/re2.h"

namespace mailretry {
namespace internal {
namespace {

constexpr char kMagic[8] = {'M', 'R', 'S', 'N', 'A', 'P', '\r', '\n'};
// 2: concurrency ceiling memory. 3: stale-report and clamped-time counters,
// and each destination's last concurrency cut (version 2 files load with the
// counters at 0 and no cut remembered). 4: issue 12's adaptive state (probing,
// capacity window, greylist delays, sender evidence, hold counters); older
// files load with this build's defaults for the new config fields and empty
// new state. 5: learned greylist delays (the policy switch, each message's
// first greylist deferral, each domain's bounds); older files load with
// learning off, so that their journals replay as recorded.
constexpr uint32_t kVersion = 5;
constexpr uint32_t kOldestVersion = 2;

using Writer = internal::BinaryWriter;
using Reader = internal::BinaryReader;

// --- one field list per saved struct ----------------------------------------------
// Each Fields(v, x) names the struct's saved fields once, in file order; the
// same list serves Save (v writes) and Load (v reads). Integers keep their
// width except uint16_t, stored as u32; enums are stored as u8; an optional
// is a bool then the value when present; a vector is a u64 count then its
// elements; an array is its elements.

template <class S, class T>
concept Of = std::is_same_v<std::remove_const_t<S>, T>;

template <class V, Of<RateLimit> S>
void Fields(V& v, S& x) {
  v(x.messages), v(x.per);
}

template <class V, Of<RetryStage> S>
void Fields(V& v, S& x) {
  v(x.kind), v(x.cutoff), v(x.interval), v(x.multiplier);
}

template <class V, Of<RetryPolicy> S>
void Fields(V& v, S& x) {
  v(x.backoff), v(x.initial_delay), v(x.multiplier), v(x.max_delay), v(x.min_delay), v(x.intervals),
      v(x.stages), v(x.jitter), v(x.lifetime), v(x.max_attempts), v(x.attempt_at_lifetime_end);
}

template <class V, Of<DestinationPolicy> S>
void Fields(V& v, S& x) {
  v(x.destination), v(x.source), v(x.initial_concurrency), v(x.max_concurrency),
      v(x.min_concurrency), v(x.cut_concurrency_to), v(x.raise_concurrency_after),
      v(x.concurrency_ceiling_hold), v(x.rate), v(x.unlimited_cut_to), v(x.min_rate),
      v(x.rate_quiet_period), v(x.suspend_base), v(x.suspend_multiplier), v(x.suspend_max),
      v(x.connection_failures_to_suspend);
  if (v.version >= 4) {
    v(x.suspend_probe_interval), v(x.capacity_window), v(x.capacity_suspend_min);
  } else if constexpr (!std::is_const_v<S>) {
    // An engine saved before format 4 did not probe and suspended on every
    // capacity reply: its journal must replay to the state it recorded, so
    // it keeps that behaviour.
    x.suspend_probe_interval = absl::ZeroDuration();
    x.capacity_window = 0;
  }
  if (v.version >= 5) {
    v(x.learn_greylist_delay);
  } else if constexpr (!std::is_const_v<S>) {
    x.learn_greylist_delay = false;
  }
}

template <class V, Of<ScheduleOverride> S>
void Fields(V& v, S& x) {
  v(x.name), v(x.destination), v(x.categories), v(x.transports), v(x.policy), v(x.fixed_delay),
      v(x.advance_backoff), v(x.max_consecutive);
}

template <class V, Of<ReactionRule> S>
void Fields(V& v, S& x) {
  v(x.name), v(x.text_regex), v(x.enhanced_pattern), v(x.code_pattern), v(x.destination),
      v(x.categories), v(x.threshold), v(x.window), v(x.suspend_for), v(x.set_concurrency),
      v(x.set_rate), v(x.duration);
}

template <class V, Of<StructuralConfig> S>
void Fields(V& v, S& x) {
  v(x.enabled), v(x.warning_421s), v(x.warning_ratio), v(x.warning_window), v(x.cycle_messages),
      v(x.cycle_failures), v(x.evidence_messages), v(x.evidence_span), v(x.hold),
      v(x.probe_interval);
  if (v.version >= 4) {
    v(x.strong_attempts), v(x.strong_span), v(x.sender_destinations), v(x.early_weak_evidence);
  } else if constexpr (!std::is_const_v<S>) {
    // Before format 4: no strong rule, weak evidence counted early.
    x.strong_attempts = x.sender_destinations = 0;
    x.early_weak_evidence = true;
  }
  if (v.version >= 5) {
    v(x.probe_backoff), v(x.probe_interval_max);
  } else if constexpr (!std::is_const_v<S>) {
    x.probe_backoff = 1.0;  // a fixed probe interval
  }
}

// `transient` is a tri-state byte: 0 unset, 1 false, 2 true.
template <class V, Of<UserRule> S>
void Fields(V& v, S& x) {
  v(x.name), v(x.text_regex), v(x.enhanced_pattern), v(x.code_pattern), v(x.destination),
      v(x.category), v(x.action);
  v.TriStateByte(x.transient);
}

template <class V, Of<EngineConfig> S>
void Fields(V& v, S& x) {
  v(x.retry), v(x.overrides), v(x.builtin_overrides), v(x.destination_defaults), v(x.destinations),
      v(x.reactions), v(x.structural), v(x.classifier_rules), v(x.lease_timeout), v(x.backend),
      v(x.timer_resolution), v(x.message_events), v(x.max_buffered_events);
}

template <class V, Of<DestState> S>
void Fields(V& v, S& d) {
  v(d.domain_id), v(d.source_id), v(d.first_head), v(d.first_tail), v(d.retry_head),
      v(d.retry_tail), v(d.first_count), v(d.retry_count), v(d.scheduled_count),
      v(d.take_retry_next), v(d.in_ring);
  v(d.in_flight), v(d.concurrency), v(d.success_streak), v(d.conc_override),
      v(d.conc_override_until), v(d.conc_ceiling), v(d.conc_ceiling_until);
  v(d.tat), v(d.cut_interval_ms), v(d.last_cut), v(d.rate_override_ms), v(d.rate_override_until);
  v(d.suspended_until), v(d.suspended), v(d.suspensions), v(d.conn_failures),
      v(d.consecutive_failures), v(d.wake);
  v(d.health), v(d.held), v(d.probe_in_flight), v(d.next_probe), v(d.last_delivery), v(d.win_start),
      v(d.cur_attempts), v(d.cur_421), v(d.prev_attempts), v(d.prev_421), v(d.cat_counts),
      v(d.cycle_msgs), v(d.evidence_msgs), v(d.evidence_first);
  v(d.attempts), v(d.delivered), v(d.deferred), v(d.bounced), v(d.expired);
  v(d.samples), v(d.sample_gen), v(d.sample_next), v(d.sample_count);
  if (v.version >= 3) v(d.last_conc_cut);
  if (v.version >= 4)
    v(d.ramp_to), v(d.half_open), v(d.capacity_bits), v(d.strong_ptr), v(d.strong_auth),
        v(d.strong_first);
  if (v.version >= 5) v(d.held_probes);
}

// A live message (its slot is written before it).
template <class V, Of<MsgRec> S>
void Fields(V& v, S& x) {
  v(x.id), v(x.submitted_ms), v(x.timer_ms), v(x.dest), v(x.prev), v(x.next), v(x.last_delay_s),
      v(x.last_enhanced), v(x.last_code), v(x.attempts), v(x.state), v(x.flags), v(x.step),
      v(x.last_category), v(x.fixed_uses), v(x.sample);
  if (v.version >= 5) v(x.grey_s);
}

// The least bytes one element takes in the file: a corrupt count can then
// never make Load allocate more than a small multiple of the file's size.
template <class T>
constexpr size_t MinBytes() {
  if constexpr (std::is_same_v<T, RetryStage>) return 25;
  if constexpr (std::is_same_v<T, ReactionRule> || std::is_same_v<T, UserRule>) return 20;
  if constexpr (std::is_same_v<T, absl::Duration> || std::is_same_v<T, ScheduleOverride> ||
                std::is_same_v<T, DestinationPolicy>) {
    return 8;
  }
  if constexpr (std::is_enum_v<T>) return 1;
  if constexpr (std::is_arithmetic_v<T>) return sizeof(T);
  return 4;
}

template <class T>
struct IsVector : std::false_type {};
template <class T, class A>
struct IsVector<std::vector<T, A>> : std::true_type {};
template <class T>
struct IsArray : std::false_type {};
template <class T, size_t N>
struct IsArray<std::array<T, N>> : std::true_type {};
template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

// Save's visitor.
class FieldWriter : public Writer {
 public:
  using Writer::Writer;
  uint32_t version = kVersion;  // Save writes the current format
  template <class T>
  void operator()(const T& x) {
    if constexpr (std::is_same_v<T, bool>) {
      Bool(x);
    } else if constexpr (std::is_enum_v<T>) {
      U8(static_cast<uint8_t>(x));
    } else if constexpr (std::is_same_v<T, uint8_t>) {
      U8(x);
    } else if constexpr (std::is_same_v<T, uint16_t> || std::is_same_v<T, uint32_t>) {
      U32(x);
    } else if constexpr (std::is_same_v<T, uint64_t>) {
      U64(x);
    } else if constexpr (std::is_same_v<T, int64_t>) {
      I64(x);
    } else if constexpr (std::is_same_v<T, double>) {
      F64(x);
    } else if constexpr (std::is_same_v<T, absl::Duration>) {
      Dur(x);
    } else if constexpr (std::is_same_v<T, std::string>) {
      Str(x);
    } else if constexpr (IsOptional<T>::value) {
      Bool(x.has_value());
      if (x) (*this)(*x);
    } else if constexpr (IsVector<T>::value) {
      U64(x.size());
      for (const auto& e : x) (*this)(e);
    } else if constexpr (IsArray<T>::value) {
      for (const auto& e : x) (*this)(e);
    } else {
      Fields(*this, x);
    }
  }
  void TriStateByte(const std::optional<bool>& t) { U8(t.has_value() ? (*t ? 2 : 1) : 0); }
};

// Load's visitor. Values are taken as stored; Load checks them afterwards.
class FieldReader : public Reader {
 public:
  using Reader::Reader;
  uint32_t version = kVersion;  // of the file being read: older files lack later fields
  template <class T>
  void operator()(T& x) {
    if constexpr (std::is_same_v<T, bool>) {
      x = Bool();
    } else if constexpr (std::is_enum_v<T>) {
      x = static_cast<T>(U8());
    } else if constexpr (std::is_same_v<T, uint8_t>) {
      x = U8();
    } else if constexpr (std::is_same_v<T, uint16_t>) {
      x = static_cast<uint16_t>(U32());
    } else if constexpr (std::is_same_v<T, uint32_t>) {
      x = U32();
    } else if constexpr (std::is_same_v<T, uint64_t>) {
      x = U64();
    } else if constexpr (std::is_same_v<T, int64_t>) {
      x = I64();
    } else if constexpr (std::is_same_v<T, double>) {
      x = F64();
    } else if constexpr (std::is_same_v<T, absl::Duration>) {
      x = Dur();
    } else if constexpr (std::is_same_v<T, std::string>) {
      x = Str();
    } else if constexpr (IsOptional<T>::value) {
      if (Bool()) {
        typename T::value_type v{};
        (*this)(v);
        x = std::move(v);
      } else {
        x.reset();
      }
    } else if constexpr (IsVector<T>::value) {
      x.resize(Count(MinBytes<typename T::value_type>()));
      for (auto& e : x) (*this)(e);
    } else if constexpr (IsArray<T>::value) {
      for (auto& e : x) (*this)(e);
    } else {
      Fields(*this, x);
    }
  }
  void TriStateByte(std::optional<bool>& t) {
    const uint8_t b = U8();
    if (b != 0) t = (b == 2);
  }
};

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
  w.Bool(e.until.has_value());
  if (e.until) w.Time(*e.until);
  w.Str(e.status);
  w.Str(e.reply);
  w.Str(e.detail);
  w.Str(e.rule);
  w.U32(e.concurrency_limit);
  w.Bool(e.rate_per_second.has_value());
  if (e.rate_per_second) w.F64(*e.rate_per_second);
  w.U64(e.categories.size());
  for (const CategoryCount& cc : e.categories) {
    w.U8(static_cast<uint8_t>(cc.category));
    w.U32(cc.count);
  }
  w.U64(e.samples.size());
  for (const std::string& s : e.samples) w.Str(s);
  w.U64(e.remediation.size());
  for (const std::string& s : e.remediation) w.Str(s);
}

bool GetEvent(Reader& r, const Engine::Impl& m, Event& e) {
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
  if (r.Bool()) e.until = r.Time();
  e.status = r.Str();
  e.reply = r.Str();
  e.detail = r.Str();
  e.rule = r.Str();
  e.concurrency_limit = r.U32();
  if (r.Bool()) e.rate_per_second = r.F64();
  e.categories.resize(r.Count(5));
  for (CategoryCount& cc : e.categories) {
    const uint8_t c = r.U8();
    if (c >= kNumCategories) return false;
    cc.category = static_cast<Category>(c);
    cc.count = r.U32();
  }
  e.samples.resize(r.Count(4));
  for (std::string& s : e.samples) s = r.Str();
  e.remediation.resize(r.Count(4));
  for (std::string& s : e.remediation) s = r.Str();
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
    if (!m->pair_ids.emplace((uint64_t{d.domain_id} << 32) | d.source_id, static_cast<uint32_t>(i))
             .second) {
      return corrupt("duplicate destination");
    }
    InitDestination(*m, d);
    if (d.strong_ptr > 0) ++m->sender_evidence[d.source_id].ptr_pairs;
    if (d.strong_auth > 0) ++m->sender_evidence[d.source_id].auth_pairs;
    if (d.wake != kNoTime)
      m->dest_timers->Schedule(static_cast<Slot>(i), absl::FromUnixMillis(d.wake)).IgnoreError();
  }
  const uint32_t nslots = r.U32();
  const uint64_t live = r.Count(50);
  if (!r.ok() || live > nslots || nslots > kMaxSlot) return corrupt("message section header");
  for (uint32_t s = 0; s < nslots; ++s) m->msgs.Grow();
  std::vector<bool> used(nslots, false);
  for (uint64_t i = 0; i < live; ++i) {
    const uint32_t s = r.U32();
    if (!r.ok() || s >= nslots || used[s]) return corrupt("message slot");
    used[s] = true;
    MsgRec& x = m->msgs[s];
    r(x);
    const uint8_t st = static_cast<uint8_t>(x.state);
    if (!r.ok() || st < 1 || st > 3 || x.dest >= ndests ||
        (x.last_category != 0xff && x.last_category >= kNumCategories)) {
      return corrupt("message record");
    }
    if (!m->ids.insert(s).second) return corrupt("duplicate message id");
    if (!m->msg_timers->Schedule(s, absl::FromUnixMillis(x.timer_ms)).ok())
      return corrupt("message timer");
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
    for (int64_t& t : v) t = r.I64();
  }
  if (version >= 5) {
    const uint64_t ngrey = r.Count(20);
    for (uint64_t i = 0; i < ngrey; ++i) {
      const uint32_t domain = r.U32();
      if (!r.ok() || domain >= nnames) return corrupt("greylist section");
      Engine::Impl::GreylistMemory& g = m->greylist[domain];
      g.lower_ms = r.I64();
      g.upper_ms = r.I64();
      if (g.upper_ms != kNever) Core(*m).CountLearnedGreylist(kNever, g.upper_ms);
    }
  }
  const uint64_t nevents = r.Count(40);
  for (uint64_t i = 0; i < nevents; ++i) {
    Event e;
    if (!GetEvent(r, *m, e)) return corrupt("event section");
    m->events.push_back(std::move(e));
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
