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
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "mailretry/engine/engine.h"
#include "mailretry/common/internal/binary_io.h"
#include "mailretry/engine/internal/state.h"
#include "re2/re2.h"

namespace mailretry {
namespace internal {
namespace {

constexpr char kMagic[8] = {'M', 'R', 'S', 'N', 'A', 'P', '\r', '\n'};
constexpr uint32_t kVersion = 2;  // 2: concurrency ceiling memory

// CRC32C (Castagnoli), table-driven; absl::crc is not available in 20220623.
const std::array<uint32_t, 256>& CrcTable() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}


using Writer = internal::BinaryWriter;
using Reader = internal::BinaryReader;

// --- config ------------------------------------------------------------------

void PutPolicy(Writer& w, const RetryPolicy& p) {
  w.U8(static_cast<uint8_t>(p.backoff));
  w.Dur(p.initial_delay);
  w.F64(p.multiplier);
  w.Dur(p.max_delay);
  w.Dur(p.min_delay);
  w.U64(p.intervals.size());
  for (absl::Duration d : p.intervals) w.Dur(d);
  w.U64(p.stages.size());
  for (const RetryStage& s : p.stages) {
    w.U8(static_cast<uint8_t>(s.kind));
    w.Dur(s.cutoff);
    w.Dur(s.interval);
    w.F64(s.multiplier);
  }
  w.U8(static_cast<uint8_t>(p.jitter));
  w.Dur(p.lifetime);
  w.U32(p.max_attempts);
  w.Bool(p.attempt_at_lifetime_end);
}

RetryPolicy GetPolicy(Reader& r) {
  RetryPolicy p;
  p.backoff = static_cast<Backoff>(r.U8());
  p.initial_delay = r.Dur();
  p.multiplier = r.F64();
  p.max_delay = r.Dur();
  p.min_delay = r.Dur();
  p.intervals.resize(r.Count(8));
  for (absl::Duration& d : p.intervals) d = r.Dur();
  p.stages.resize(r.Count(25));
  for (RetryStage& s : p.stages) {
    s.kind = static_cast<RetryStage::Kind>(r.U8());
    s.cutoff = r.Dur();
    s.interval = r.Dur();
    s.multiplier = r.F64();
  }
  p.jitter = static_cast<Jitter>(r.U8());
  p.lifetime = r.Dur();
  p.max_attempts = r.U32();
  p.attempt_at_lifetime_end = r.Bool();
  return p;
}

void PutRate(Writer& w, const RateLimit& r) {
  w.U32(r.messages);
  w.Dur(r.per);
}
RateLimit GetRate(Reader& r) {
  RateLimit x;
  x.messages = r.U32();
  x.per = r.Dur();
  return x;
}

template <typename E>
void PutEnums(Writer& w, const std::vector<E>& v) {
  w.U64(v.size());
  for (E e : v) w.U8(static_cast<uint8_t>(e));
}
template <typename E>
std::vector<E> GetEnums(Reader& r) {
  std::vector<E> v(r.Count(1));
  for (E& e : v) e = static_cast<E>(r.U8());
  return v;
}

void PutDestPolicy(Writer& w, const DestinationPolicy& d) {
  w.Str(d.destination);
  w.Str(d.source);
  w.U32(d.initial_concurrency);
  w.U32(d.max_concurrency);
  w.U32(d.min_concurrency);
  w.U32(d.cut_concurrency_to);
  w.U32(d.raise_concurrency_after);
  w.Dur(d.concurrency_ceiling_hold);
  PutRate(w, d.rate);
  PutRate(w, d.unlimited_cut_to);
  PutRate(w, d.min_rate);
  w.Dur(d.rate_quiet_period);
  w.Dur(d.suspend_base);
  w.F64(d.suspend_multiplier);
  w.Dur(d.suspend_max);
  w.U32(d.connection_failures_to_suspend);
}
DestinationPolicy GetDestPolicy(Reader& r) {
  DestinationPolicy d;
  d.destination = r.Str();
  d.source = r.Str();
  d.initial_concurrency = r.U32();
  d.max_concurrency = r.U32();
  d.min_concurrency = r.U32();
  d.cut_concurrency_to = r.U32();
  d.raise_concurrency_after = r.U32();
  d.concurrency_ceiling_hold = r.Dur();
  d.rate = GetRate(r);
  d.unlimited_cut_to = GetRate(r);
  d.min_rate = GetRate(r);
  d.rate_quiet_period = r.Dur();
  d.suspend_base = r.Dur();
  d.suspend_multiplier = r.F64();
  d.suspend_max = r.Dur();
  d.connection_failures_to_suspend = r.U32();
  return d;
}

void PutConfig(Writer& w, const EngineConfig& c) {
  PutPolicy(w, c.retry);
  w.U64(c.overrides.size());
  for (const ScheduleOverride& o : c.overrides) {
    w.Str(o.name);
    w.Str(o.destination);
    PutEnums(w, o.categories);
    PutEnums(w, o.transports);
    w.Bool(o.policy.has_value());
    if (o.policy) PutPolicy(w, *o.policy);
    w.Bool(o.fixed_delay.has_value());
    if (o.fixed_delay) w.Dur(*o.fixed_delay);
    w.Bool(o.advance_backoff);
    w.U32(o.max_consecutive);
  }
  w.Bool(c.builtin_overrides);
  PutDestPolicy(w, c.destination_defaults);
  w.U64(c.destinations.size());
  for (const DestinationPolicy& d : c.destinations) PutDestPolicy(w, d);
  w.U64(c.reactions.size());
  for (const ReactionRule& x : c.reactions) {
    w.Str(x.name);
    w.Str(x.text_regex);
    w.Str(x.enhanced_pattern);
    w.Str(x.code_pattern);
    w.Str(x.destination);
    PutEnums(w, x.categories);
    w.U32(x.threshold);
    w.Dur(x.window);
    w.Bool(x.suspend_for.has_value());
    if (x.suspend_for) w.Dur(*x.suspend_for);
    w.Bool(x.set_concurrency.has_value());
    if (x.set_concurrency) w.U32(*x.set_concurrency);
    w.Bool(x.set_rate.has_value());
    if (x.set_rate) PutRate(w, *x.set_rate);
    w.Dur(x.duration);
  }
  const StructuralConfig& s = c.structural;
  w.Bool(s.enabled);
  w.U32(s.warning_421s);
  w.F64(s.warning_ratio);
  w.Dur(s.warning_window);
  w.U32(s.cycle_messages);
  w.U32(s.cycle_failures);
  w.U32(s.evidence_messages);
  w.Dur(s.evidence_span);
  w.Bool(s.hold);
  w.Dur(s.probe_interval);
  w.U64(c.classifier_rules.size());
  for (const UserRule& u : c.classifier_rules) {
    w.Str(u.name);
    w.Str(u.text_regex);
    w.Str(u.enhanced_pattern);
    w.Str(u.code_pattern);
    w.Str(u.destination);
    w.U8(static_cast<uint8_t>(u.category));
    w.U8(static_cast<uint8_t>(u.action));
    w.U8(u.transient.has_value() ? (*u.transient ? 2 : 1) : 0);
  }
  w.Dur(c.lease_timeout);
  w.U8(static_cast<uint8_t>(c.backend));
  w.Dur(c.timer_resolution);
  w.Bool(c.message_events);
  w.U64(c.max_buffered_events);
}

EngineConfig GetConfig(Reader& r) {
  EngineConfig c;
  c.retry = GetPolicy(r);
  c.overrides.resize(r.Count(8));
  for (ScheduleOverride& o : c.overrides) {
    o.name = r.Str();
    o.destination = r.Str();
    o.categories = GetEnums<Category>(r);
    o.transports = GetEnums<Transport>(r);
    if (r.Bool()) o.policy = GetPolicy(r);
    if (r.Bool()) o.fixed_delay = r.Dur();
    o.advance_backoff = r.Bool();
    o.max_consecutive = r.U32();
  }
  c.builtin_overrides = r.Bool();
  c.destination_defaults = GetDestPolicy(r);
  c.destinations.resize(r.Count(8));
  for (DestinationPolicy& d : c.destinations) d = GetDestPolicy(r);
  c.reactions.resize(r.Count(20));
  for (ReactionRule& x : c.reactions) {
    x.name = r.Str();
    x.text_regex = r.Str();
    x.enhanced_pattern = r.Str();
    x.code_pattern = r.Str();
    x.destination = r.Str();
    x.categories = GetEnums<Category>(r);
    x.threshold = r.U32();
    x.window = r.Dur();
    if (r.Bool()) x.suspend_for = r.Dur();
    if (r.Bool()) x.set_concurrency = r.U32();
    if (r.Bool()) x.set_rate = GetRate(r);
    x.duration = r.Dur();
  }
  StructuralConfig& s = c.structural;
  s.enabled = r.Bool();
  s.warning_421s = r.U32();
  s.warning_ratio = r.F64();
  s.warning_window = r.Dur();
  s.cycle_messages = r.U32();
  s.cycle_failures = r.U32();
  s.evidence_messages = r.U32();
  s.evidence_span = r.Dur();
  s.hold = r.Bool();
  s.probe_interval = r.Dur();
  c.classifier_rules.resize(r.Count(20));
  for (UserRule& u : c.classifier_rules) {
    u.name = r.Str();
    u.text_regex = r.Str();
    u.enhanced_pattern = r.Str();
    u.code_pattern = r.Str();
    u.destination = r.Str();
    u.category = static_cast<Category>(r.U8());
    u.action = static_cast<Action>(r.U8());
    const uint8_t t = r.U8();
    if (t != 0) u.transient = (t == 2);
  }
  c.lease_timeout = r.Dur();
  c.backend = static_cast<TimerBackend>(r.U8());
  c.timer_resolution = r.Dur();
  c.message_events = r.Bool();
  c.max_buffered_events = r.U64();
  return c;
}

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

void PutDest(Writer& w, const DestState& d) {
  w.U32(d.domain_id);
  w.U32(d.source_id);
  w.U32(d.first_head);
  w.U32(d.first_tail);
  w.U32(d.retry_head);
  w.U32(d.retry_tail);
  w.U32(d.first_count);
  w.U32(d.retry_count);
  w.U32(d.scheduled_count);
  w.Bool(d.take_retry_next);
  w.Bool(d.in_ring);
  w.U32(d.in_flight);
  w.U32(d.concurrency);
  w.U32(d.success_streak);
  w.U32(d.conc_override);
  w.I64(d.conc_override_until);
  w.U32(d.conc_ceiling);
  w.I64(d.conc_ceiling_until);
  w.I64(d.tat);
  w.I64(d.cut_interval_ms);
  w.I64(d.last_cut);
  w.I64(d.rate_override_ms);
  w.I64(d.rate_override_until);
  w.I64(d.suspended_until);
  w.Bool(d.suspended);
  w.U32(d.suspensions);
  w.U32(d.conn_failures);
  w.U32(d.consecutive_failures);
  w.I64(d.wake);
  w.U8(static_cast<uint8_t>(d.health));
  w.Bool(d.held);
  w.Bool(d.probe_in_flight);
  w.I64(d.next_probe);
  w.I64(d.last_delivery);
  w.I64(d.win_start);
  w.U32(d.cur_attempts);
  w.U32(d.cur_421);
  w.U32(d.prev_attempts);
  w.U32(d.prev_421);
  for (uint32_t c : d.cat_counts) w.U32(c);
  w.U32(d.cycle_msgs);
  w.U32(d.evidence_msgs);
  w.I64(d.evidence_first);
  w.U64(d.attempts);
  w.U64(d.delivered);
  w.U64(d.deferred);
  w.U64(d.bounced);
  w.U64(d.expired);
  for (const std::string& s : d.samples) w.Str(s);
  for (uint32_t g : d.sample_gen) w.U32(g);
  w.U32(d.sample_next);
  w.U32(d.sample_count);
}

void GetDest(Reader& r, DestState& d) {
  d.domain_id = r.U32();
  d.source_id = r.U32();
  d.first_head = r.U32();
  d.first_tail = r.U32();
  d.retry_head = r.U32();
  d.retry_tail = r.U32();
  d.first_count = r.U32();
  d.retry_count = r.U32();
  d.scheduled_count = r.U32();
  d.take_retry_next = r.Bool();
  d.in_ring = r.Bool();
  d.in_flight = r.U32();
  d.concurrency = r.U32();
  d.success_streak = r.U32();
  d.conc_override = r.U32();
  d.conc_override_until = r.I64();
  d.conc_ceiling = r.U32();
  d.conc_ceiling_until = r.I64();
  d.tat = r.I64();
  d.cut_interval_ms = r.I64();
  d.last_cut = r.I64();
  d.rate_override_ms = r.I64();
  d.rate_override_until = r.I64();
  d.suspended_until = r.I64();
  d.suspended = r.Bool();
  d.suspensions = r.U32();
  d.conn_failures = r.U32();
  d.consecutive_failures = r.U32();
  d.wake = r.I64();
  d.health = static_cast<Health>(std::min<uint8_t>(r.U8(), 2));
  d.held = r.Bool();
  d.probe_in_flight = r.Bool();
  d.next_probe = r.I64();
  d.last_delivery = r.I64();
  d.win_start = r.I64();
  d.cur_attempts = r.U32();
  d.cur_421 = r.U32();
  d.prev_attempts = r.U32();
  d.prev_421 = r.U32();
  for (uint32_t& c : d.cat_counts) c = r.U32();
  d.cycle_msgs = r.U32();
  d.evidence_msgs = r.U32();
  d.evidence_first = r.I64();
  d.attempts = r.U64();
  d.delivered = r.U64();
  d.deferred = r.U64();
  d.bounced = r.U64();
  d.expired = r.U64();
  for (std::string& s : d.samples) s = r.Str();
  for (uint32_t& g : d.sample_gen) g = r.U32();
  d.sample_next = r.U32() % kSampleRing;
  d.sample_count = std::min<uint32_t>(r.U32(), kSampleRing);
}

std::string Serialize(const Engine::Impl& m) {
  std::string out;
  Writer w(&out);
  PutConfig(w, m.config);
  w.U64(m.seed);
  w.U64(m.rng.state());
  w.I64(m.now_ms);
  w.I64(m.last_event_ms);
  for (uint64_t v : {m.submitted, m.delivered, m.bounced, m.expired, m.attempts, m.deferred,
                     m.lease_expirations, m.events_dropped}) {
    w.U64(v);
  }
  w.U64(m.names.size());
  for (const std::string& n : m.names) w.Str(n);
  w.U64(m.dests.size());
  for (const DestState& d : m.dests) PutDest(w, d);
  w.U32(m.msgs.size());
  uint64_t live = 0;
  for (uint32_t s = 0; s < m.msgs.size(); ++s) live += m.msgs[s].state != MsgState::kFree;
  w.U64(live);
  for (uint32_t s = 0; s < m.msgs.size(); ++s) {
    const MsgRec& r = m.msgs[s];
    if (r.state == MsgState::kFree) continue;
    w.U32(s);
    w.U64(r.id);
    w.I64(r.submitted_ms);
    w.I64(r.timer_ms);
    w.U32(r.dest);
    w.U32(r.prev);
    w.U32(r.next);
    w.U32(r.last_delay_s);
    w.U32(r.last_enhanced);
    w.U32(r.last_code);
    w.U32(r.attempts);
    w.U8(static_cast<uint8_t>(r.state));
    w.U8(r.flags);
    w.U8(r.step);
    w.U8(r.last_category);
    w.U8(r.fixed_uses);
    w.U8(r.sample);
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

absl::Status ReadWholeFile(const std::string& path, std::string* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat("snapshot '", path, "' does not exist"));
    return absl::UnavailableError(absl::StrCat("cannot open snapshot '", path, "': ", std::strerror(err)));
  }
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return absl::UnavailableError(absl::StrCat("cannot read snapshot '", path, "': ", std::strerror(err)));
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t Crc32c(std::string_view data) {
  const auto& t = CrcTable();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) c = t[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
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
    return absl::UnavailableError(absl::StrCat("cannot create '", tmp, "': ", std::strerror(errno)));
  }
  absl::Status s = WriteAll(fd, head);
  if (s.ok()) s = WriteAll(fd, payload);
  if (s.ok()) s = WriteAll(fd, tail);
  if (s.ok() && ::fsync(fd) != 0) s = absl::UnavailableError(std::strerror(errno));
  if (::close(fd) != 0 && s.ok()) s = absl::UnavailableError(std::strerror(errno));
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = absl::UnavailableError(std::strerror(errno));
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot write snapshot '", path, "': ", s.message()));
  }
  // Make the rename itself durable.
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Engine::Impl>> LoadImpl(const std::string& path) {
  std::string data;
  if (absl::Status s = ReadWholeFile(path, &data); !s.ok()) return s;
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("snapshot '", path, "' is corrupt: ", why));
  };
  constexpr size_t kHeader = sizeof kMagic + 4 + 8;
  if (data.size() < kHeader + 4) return corrupt("truncated header");
  if (std::memcmp(data.data(), kMagic, sizeof kMagic) != 0) return corrupt("not a mailretry snapshot (bad magic)");
  Reader head(std::string_view(data).substr(sizeof kMagic, 12));
  const uint32_t version = head.U32();
  const uint64_t len = head.U64();
  if (version != kVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot '", path, "' has format version ", version, "; this build reads ", kVersion));
  }
  if (len != data.size() - kHeader - 4) return corrupt("truncated or padded (length mismatch)");
  const std::string_view payload = std::string_view(data).substr(kHeader, len);
  Reader crc_reader(std::string_view(data).substr(kHeader + len, 4));
  if (crc_reader.U32() != Crc32c(payload)) return corrupt("checksum mismatch");

  Reader r(payload);
  EngineConfig config = GetConfig(r);
  const uint64_t seed = r.U64();
  if (!r.ok()) return corrupt("config section");
  absl::StatusOr<std::unique_ptr<Engine::Impl>> made = MakeImpl(std::move(config), seed);
  if (!made.ok()) return corrupt(absl::StrCat("config: ", made.status().message()));
  std::unique_ptr<Engine::Impl> m = *std::move(made);
  m->rng.set_state(r.U64());
  m->now_ms = r.I64();
  m->last_event_ms = r.I64();
  for (uint64_t* v : {&m->submitted, &m->delivered, &m->bounced, &m->expired, &m->attempts, &m->deferred,
                      &m->lease_expirations, &m->events_dropped}) {
    *v = r.U64();
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
    GetDest(r, d);
    if (!r.ok() || d.domain_id >= nnames || d.source_id >= nnames) return corrupt("destination section");
    if (!m->pair_ids.emplace((uint64_t{d.domain_id} << 32) | d.source_id, static_cast<uint32_t>(i)).second) {
      return corrupt("duplicate destination");
    }
    InitDestination(*m, d);
    if (d.wake != kNoTime) m->dest_timers->Schedule(static_cast<Slot>(i), absl::FromUnixMillis(d.wake)).IgnoreError();
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
    x.id = r.U64();
    x.submitted_ms = r.I64();
    x.timer_ms = r.I64();
    x.dest = r.U32();
    x.prev = r.U32();
    x.next = r.U32();
    x.last_delay_s = r.U32();
    x.last_enhanced = r.U32();
    x.last_code = static_cast<uint16_t>(r.U32());
    x.attempts = static_cast<uint16_t>(r.U32());
    const uint8_t st = r.U8();
    x.flags = r.U8();
    x.step = r.U8();
    x.last_category = r.U8();
    x.fixed_uses = r.U8();
    x.sample = r.U8();
    if (!r.ok() || st < 1 || st > 3 || x.dest >= ndests ||
        (x.last_category != 0xff && x.last_category >= kNumCategories)) {
      return corrupt("message record");
    }
    x.state = static_cast<MsgState>(st);
    if (!m->ids.insert(s).second) return corrupt("duplicate message id");
    if (!m->msg_timers->Schedule(s, absl::FromUnixMillis(x.timer_ms)).ok()) return corrupt("message timer");
    switch (x.state) {
      case MsgState::kScheduled: ++m->scheduled_n; break;
      case MsgState::kReady: ++m->ready_n; break;
      case MsgState::kLeased: ++m->leased_n; break;
      case MsgState::kFree: break;
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
