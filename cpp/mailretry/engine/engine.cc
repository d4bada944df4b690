#include "mailretry/engine.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "mailretry/engine/internal/state.h"
#include "re2/re2.h"

namespace mailretry {

using internal::DestState;
using internal::kNever;
using internal::kNil;
using internal::kNoTime;
using internal::MsgRec;
using internal::MsgState;

namespace {

// absl::string_view is not std::string_view in this Abseil build.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

int64_t Ms(absl::Time t) { return absl::ToUnixMillis(t); }
absl::Time T(int64_t ms) { return absl::FromUnixMillis(ms); }
int64_t DurMs(absl::Duration d) {
  if (d >= absl::Hours(24 * 365 * 1000)) return int64_t{1} << 60;  // "forever", overflow-safe
  return absl::ToInt64Milliseconds(d);
}
int64_t SatAdd(int64_t a, int64_t b) {
  if (b > 0 && a > std::numeric_limits<int64_t>::max() - b) return std::numeric_limits<int64_t>::max();
  return a + b;
}
int64_t IntervalMs(const RateLimit& r) {
  if (r.unlimited()) return 0;
  return std::max<int64_t>(1, DurMs(r.per) / r.messages);
}
std::optional<double> RatePerSecond(int64_t interval_ms) {
  if (interval_ms <= 0) return std::nullopt;
  return 1000.0 / static_cast<double>(interval_ms);
}

bool IsTimeValid(absl::Time t) {
  return t >= absl::UnixEpoch() && t < absl::UnixEpoch() + absl::Hours(24 * 365 * 10000);
}

// Destination patterns: "" / "*" any, "*.example.com" subdomains, else exact.
bool MatchDestination(std::string_view pattern, std::string_view name) {
  if (pattern.empty() || pattern == "*") return true;
  if (absl::StartsWith(AV(pattern), "*.")) {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    return name.size() > suffix.size() && absl::EndsWithIgnoreCase(AV(name), AV(suffix));
  }
  return absl::EqualsIgnoreCase(AV(pattern), AV(name));
}

bool ValidDestinationPattern(std::string_view p) {
  if (p.empty() || p == "*") return true;
  std::string_view rest = absl::StartsWith(AV(p), "*.") ? p.substr(2) : p;
  return !rest.empty() && rest.find('*') == std::string_view::npos;
}

// "421", "4xx", "45x".
bool ValidCodePattern(std::string_view p) {
  if (p.empty()) return true;
  if (p.size() != 3) return false;
  for (char c : p) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != 'x' && c != 'X') return false;
  }
  return true;
}
bool MatchCode(std::string_view p, int code) {
  if (p.empty()) return true;
  if (code < 100 || code > 999) return false;
  const char digits[3] = {static_cast<char>('0' + code / 100), static_cast<char>('0' + (code / 10) % 10),
                          static_cast<char>('0' + code % 10)};
  for (int i = 0; i < 3; ++i) {
    if (p[i] != 'x' && p[i] != 'X' && p[i] != digits[i]) return false;
  }
  return true;
}

// "4.7.28", "4.7.*", "5.*.*".
bool ParseEnhancedPattern(std::string_view p, int out[3]) {
  std::vector<absl::string_view> parts = absl::StrSplit(AV(p), '.');
  if (parts.size() != 3) return false;
  for (int i = 0; i < 3; ++i) {
    if (parts[i] == "*") {
      out[i] = -1;
    } else if (!absl::SimpleAtoi(parts[i], &out[i]) || out[i] < 0 || out[i] > 999) {
      return false;
    }
  }
  return true;
}
bool MatchEnhanced(std::string_view p, const std::optional<EnhancedCode>& e) {
  if (p.empty()) return true;
  if (!e.has_value()) return false;
  int parts[3];
  if (!ParseEnhancedPattern(p, parts)) return false;
  const int have[3] = {e->klass, e->subject, e->detail};
  for (int i = 0; i < 3; ++i) {
    if (parts[i] >= 0 && parts[i] != have[i]) return false;
  }
  return true;
}

uint32_t PackEnhanced(const std::optional<EnhancedCode>& e) {
  if (!e) return 0;
  return ((uint32_t{e->klass} << 20) | (uint32_t{e->subject} << 10) | e->detail) + 1;
}
std::optional<EnhancedCode> UnpackEnhanced(uint32_t v) {
  if (v == 0) return std::nullopt;
  --v;
  EnhancedCode e;
  e.klass = static_cast<uint8_t>(v >> 20);
  e.subject = static_cast<uint16_t>((v >> 10) & 1023);
  e.detail = static_cast<uint16_t>(v & 1023);
  return e;
}

bool IsEvidenceCategory(Category c) {
  return c == Category::kReputationBlock || c == Category::kDnsblListed ||
         c == Category::kAuthSpfDkimDmarc || c == Category::kPtrRdns;
}

bool IsConnectionLevel(Transport t) {
  return t == Transport::kConnectionRefused || t == Transport::kConnectTimeout ||
         t == Transport::kDnsFailure;
}

std::string EnhancedString(const std::optional<EnhancedCode>& e) {
  return e ? e->ToString() : std::string();
}

}  // namespace

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

std::string_view DecisionActionName(DecisionAction a) {
  switch (a) {
    case DecisionAction::kDelivered: return "delivered";
    case DecisionAction::kRetry: return "retry";
    case DecisionAction::kBounced: return "bounced";
    case DecisionAction::kExpired: return "expired";
  }
  return "retry";
}

std::string_view EventKindName(EventKind k) {
  switch (k) {
    case EventKind::kDelivered: return "delivered";
    case EventKind::kDeferred: return "deferred";
    case EventKind::kBounced: return "bounced";
    case EventKind::kExpired: return "expired";
    case EventKind::kLeaseExpired: return "lease_expired";
    case EventKind::kDestinationThrottled: return "destination_throttled";
    case EventKind::kDestinationSuspended: return "destination_suspended";
    case EventKind::kDestinationResumed: return "destination_resumed";
    case EventKind::kDestinationWarning: return "destination_warning";
    case EventKind::kStructuralFailure: return "structural_failure";
    case EventKind::kStructuralCleared: return "structural_cleared";
  }
  return "delivered";
}

std::string_view HealthName(Health h) {
  switch (h) {
    case Health::kHealthy: return "healthy";
    case Health::kWarning: return "warning";
    case Health::kStructural: return "structural";
  }
  return "healthy";
}

std::vector<std::string> RemediationSteps(Category c) {
  switch (c) {
    case Category::kRateLimit:
    case Category::kTooManyConnections:
    case Category::kServerBusyCapacity:
    case Category::kReputationThrottle:
      return {"Lower concurrency to 1-2 connections per sending IP and cut the message rate; "
              "ramp back up slowly (receivers never signal 'speed up')."};
    case Category::kReputationBlock:
      return {"Check the sending IP's and domain's reputation (Google Postmaster Tools, Microsoft SNDS) "
              "and reduce volume until it recovers.",
              "Check the sending IP against the major DNSBLs and request delisting where listed."};
    case Category::kDnsblListed:
      return {"Check the sending IP against the major DNSBLs, fix the cause and request delisting."};
    case Category::kAuthSpfDkimDmarc:
      return {"Make SPF include the actual sending IP, make DKIM signatures validate, and align DMARC "
              "with one of them."};
    case Category::kPtrRdns:
      return {"Make the sending IP's PTR record resolve and match the HELO/EHLO hostname "
              "(forward-confirmed reverse DNS)."};
    case Category::kPolicyContentSpam:
      return {"Review content, links and list hygiene; check complaint rates."};
    case Category::kTlsRequired:
      return {"Enable STARTTLS with a valid certificate towards this destination."};
    case Category::kRelayDenied:
      return {"Check the relay/smarthost configuration and its credentials."};
    case Category::kUnknownTransient:
      return {"Read the text after the code: it names the real cause.",
              "Lower concurrency to 1-2 connections per sending IP.",
              "Confirm the sending IP's PTR resolves and matches HELO/EHLO.",
              "Check IP reputation (DNSBLs, Google Postmaster Tools).",
              "Verify SPF, DKIM and DMARC alignment."};
    default:
      return {};
  }
}

// ---------------------------------------------------------------------------
// Config validation
// ---------------------------------------------------------------------------

absl::Status EngineConfig::Validate() const {
  if (absl::Status s = retry.Validate(); !s.ok()) return s;
  for (size_t i = 0; i < overrides.size(); ++i) {
    const ScheduleOverride& o = overrides[i];
    const std::string where = absl::StrCat("overrides[", i, "] '", o.name, "'");
    if (o.name.empty()) return absl::InvalidArgumentError(absl::StrCat("overrides[", i, "].name is empty"));
    if (!ValidDestinationPattern(o.destination)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": bad destination pattern '", o.destination, "'"));
    }
    if (o.policy) {
      if (absl::Status s = o.policy->Validate(); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
      }
      if (o.fixed_delay) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": set either policy or fixed_delay, not both"));
      }
    } else if (!o.fixed_delay && o.advance_backoff) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": needs a policy, a fixed_delay or advance_backoff = false"));
    }
    if (o.fixed_delay && *o.fixed_delay <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": fixed_delay must be positive"));
    }
  }
  std::vector<const DestinationPolicy*> policies = {&destination_defaults};
  for (const DestinationPolicy& d : destinations) policies.push_back(&d);
  for (size_t i = 0; i < policies.size(); ++i) {
    const DestinationPolicy& d = *policies[i];
    const std::string where =
        i == 0 ? std::string("destination_defaults") : absl::StrCat("destinations[", i - 1, "]");
    if (!ValidDestinationPattern(d.destination)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": bad destination pattern '", d.destination, "'"));
    }
    if (d.min_concurrency < 1 || d.initial_concurrency < d.min_concurrency ||
        d.max_concurrency < d.initial_concurrency) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": need 1 <= min_concurrency <= initial_concurrency <= max_concurrency"));
    }
    if (d.cut_concurrency_to < 1 || d.raise_concurrency_after < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": cut_concurrency_to and raise_concurrency_after must be >= 1"));
    }
    if (d.concurrency_ceiling_hold < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": concurrency_ceiling_hold must not be negative"));
    }
    for (const RateLimit* r : {&d.rate, &d.unlimited_cut_to, &d.min_rate}) {
      if (r->per <= absl::ZeroDuration() || r->per == absl::InfiniteDuration()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": rate intervals must be positive and finite"));
      }
    }
    if (d.unlimited_cut_to.unlimited() || d.min_rate.unlimited()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unlimited_cut_to and min_rate need messages >= 1"));
    }
    if (d.rate_quiet_period <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": rate_quiet_period must be positive"));
    }
    if (d.suspend_base <= absl::ZeroDuration() || d.suspend_max < d.suspend_base ||
        !(d.suspend_multiplier >= 1.0) || !std::isfinite(d.suspend_multiplier)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": need 0 < suspend_base <= suspend_max and suspend_multiplier >= 1"));
    }
  }
  absl::flat_hash_set<std::string> names;
  for (size_t i = 0; i < reactions.size(); ++i) {
    const ReactionRule& r = reactions[i];
    const std::string where = absl::StrCat("reactions[", i, "] '", r.name, "'");
    if (r.name.empty()) return absl::InvalidArgumentError(absl::StrCat("reactions[", i, "].name is empty"));
    if (!names.insert(r.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate name"));
    }
    if (!ValidDestinationPattern(r.destination)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": bad destination pattern"));
    }
    if (!ValidCodePattern(r.code_pattern)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": bad code_pattern '", r.code_pattern, "'"));
    }
    int parts[3];
    if (!r.enhanced_pattern.empty() && !ParseEnhancedPattern(r.enhanced_pattern, parts)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": bad enhanced_pattern '", r.enhanced_pattern, "'"));
    }
    if (r.threshold < 1 || r.window <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": threshold must be >= 1 and window positive"));
    }
    if (!r.suspend_for && !r.set_concurrency && !r.set_rate) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": needs an action (suspend_for, set_concurrency or set_rate)"));
    }
    if ((r.suspend_for && *r.suspend_for <= absl::ZeroDuration()) ||
        (r.set_concurrency && *r.set_concurrency < 1) ||
        (r.set_rate && (r.set_rate->unlimited() || r.set_rate->per <= absl::ZeroDuration())) ||
        r.duration <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": suspend_for and duration must be positive, set_concurrency and set_rate >= 1"));
    }
  }
  const StructuralConfig& s = structural;
  if (s.warning_421s < 1 || !(s.warning_ratio > 0 && s.warning_ratio <= 1) ||
      s.warning_window <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "structural: need warning_421s >= 1, 0 < warning_ratio <= 1, positive warning_window");
  }
  if (s.cycle_messages < 1 || s.evidence_messages < 1 || s.evidence_span < absl::ZeroDuration() ||
      s.probe_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "structural: need cycle_messages >= 1, evidence_messages >= 1, positive probe_interval");
  }
  if (lease_timeout <= absl::ZeroDuration() || lease_timeout > absl::Hours(24 * 30)) {
    return absl::InvalidArgumentError("lease_timeout must be in (0, 30 days]");
  }
  if (timer_resolution <= absl::ZeroDuration() || timer_resolution > absl::Hours(1)) {
    return absl::InvalidArgumentError("timer_resolution must be in (0, 1 h]");
  }
  if (max_buffered_events < 1) return absl::InvalidArgumentError("max_buffered_events must be >= 1");
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Impl construction
// ---------------------------------------------------------------------------

Engine::Impl::Impl(EngineConfig cfg, uint64_t seed_value, Classifier cls)
    : config(std::move(cfg)),
      seed(seed_value),
      classifier(std::move(cls)),
      rng(seed_value),
      ids(0, internal::SlotHash{&msgs}, internal::SlotEq{&msgs}) {}

namespace internal {

absl::StatusOr<std::unique_ptr<Engine::Impl>> MakeImpl(EngineConfig config, uint64_t seed) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  absl::StatusOr<Classifier> cls = Classifier::Create(config.classifier_rules);
  if (!cls.ok()) return cls.status();
  auto impl = std::make_unique<Engine::Impl>(std::move(config), seed, *std::move(cls));
  EngineConfig& c = impl->config;

  impl->schedules = c.overrides;
  if (c.builtin_overrides) {
    ScheduleOverride grey;
    grey.name = "builtin:greylisting";
    grey.categories = {Category::kGreylisting};
    grey.fixed_delay = absl::Minutes(5);
    grey.advance_backoff = false;
    grey.max_consecutive = 3;
    impl->schedules.push_back(grey);
    ScheduleOverride conn;
    conn.name = "builtin:connection";
    conn.transports = {Transport::kConnectionRefused, Transport::kConnectTimeout, Transport::kDnsFailure};
    conn.advance_backoff = false;
    impl->schedules.push_back(conn);
  }
  if (impl->schedules.size() > 60000) return absl::InvalidArgumentError("too many schedule overrides");

  impl->dest_policies.push_back(c.destination_defaults);
  for (const DestinationPolicy& d : c.destinations) impl->dest_policies.push_back(d);

  if (c.reactions.size() > 60000) return absl::InvalidArgumentError("too many reaction rules");
  for (const ReactionRule& r : c.reactions) {
    CompiledReaction cr;
    cr.rule = r;
    if (!r.text_regex.empty()) {
      RE2::Options opts;
      opts.set_case_sensitive(false);
      opts.set_log_errors(false);
      cr.regex = std::make_unique<RE2>(r.text_regex, opts);
      if (!cr.regex->ok()) {
        return absl::InvalidArgumentError(absl::StrCat("reaction '", r.name, "': bad regex '", r.text_regex,
                                                       "': ", cr.regex->error()));
      }
    }
    impl->reactions.push_back(std::move(cr));
  }

  // One "full retry cycle": the schedule grew to its cap and the attempt after
  // the capped wait failed too (15m, 30m, 1h, 2h, 4h → the 6th failure).
  if (c.structural.cycle_failures != 0) {
    impl->cycle_failures = c.structural.cycle_failures;
  } else {
    impl->cycle_failures = 6;
    if (c.retry.backoff == Backoff::kExponential && c.retry.multiplier > 1.0 &&
        c.retry.max_delay != absl::InfiniteDuration()) {
      double d = absl::ToDoubleSeconds(c.retry.initial_delay);
      const double cap = absl::ToDoubleSeconds(c.retry.max_delay);
      uint32_t waits = 1;
      while (d < cap && waits < 20) {
        d *= c.retry.multiplier;
        ++waits;
      }
      impl->cycle_failures = waits + 1;
    }
  }

  TimerOptions topts;
  topts.resolution = c.timer_resolution;
  topts.start = absl::UnixEpoch();
  impl->msg_timers = MakeTimerQueue(c.backend, topts);
  impl->dest_timers = MakeTimerQueue(c.backend, topts);
  if (impl->msg_timers == nullptr || impl->dest_timers == nullptr) {
    return absl::InvalidArgumentError("unknown timer backend");
  }
  // The empty source gets id 0 so that "no source" is cheap.
  impl->names.emplace_back();
  impl->name_ids.emplace(std::string_view(impl->names.back()), 0);
  return impl;
}

void InitDestination(Engine::Impl& impl, DestState& d) {
  const std::string_view dom = impl.names[d.domain_id];
  const std::string_view src = impl.names[d.source_id];
  d.policy = 0;
  for (size_t i = 1; i < impl.dest_policies.size(); ++i) {
    const DestinationPolicy& p = impl.dest_policies[i];
    if (MatchDestination(p.destination, dom) && (p.source.empty() || p.source == "*" || p.source == src)) {
      d.policy = static_cast<uint32_t>(i);
    }
  }
  d.schedule_candidates.clear();
  d.lifetime_schedule = -1;
  for (size_t i = 0; i < impl.schedules.size(); ++i) {
    const ScheduleOverride& o = impl.schedules[i];
    if (!MatchDestination(o.destination, dom)) continue;
    d.schedule_candidates.push_back(static_cast<uint16_t>(i));
    if (d.lifetime_schedule < 0 && o.policy && o.categories.empty() && o.transports.empty() &&
        !o.destination.empty() && o.destination != "*") {
      d.lifetime_schedule = static_cast<int32_t>(i);
    }
  }
  d.reaction_candidates.clear();
  for (size_t i = 0; i < impl.reactions.size(); ++i) {
    if (MatchDestination(impl.reactions[i].rule.destination, dom)) {
      d.reaction_candidates.push_back(static_cast<uint16_t>(i));
    }
  }
}

}  // namespace internal

// ---------------------------------------------------------------------------
// The engine's behaviour. All functions below run with impl.mu held.
// ---------------------------------------------------------------------------

namespace {

class Core {
 public:
  explicit Core(Engine::Impl& impl) : m_(impl) {}

  // --- time -----------------------------------------------------------------

  absl::Status CheckNow(absl::Time now) const {
    if (!IsTimeValid(now)) {
      return absl::InvalidArgumentError(absl::StrCat("time ", absl::FormatTime(now),
                                                     " is outside the supported range (Unix epoch onwards)"));
    }
    if (m_.now_ms != kNoTime && Ms(now) < m_.now_ms) {
      return absl::InvalidArgumentError(absl::StrCat("time went backwards: ", absl::FormatTime(now),
                                                     " is before the last call's ",
                                                     absl::FormatTime(T(m_.now_ms))));
    }
    return absl::OkStatus();
  }

  absl::Status Advance(absl::Time now_t) {
    if (absl::Status s = CheckNow(now_t); !s.ok()) return s;
    const int64_t now = Ms(now_t);
    m_.now_ms = now;
    struct Item {
      int64_t due;
      uint8_t kind;  // 0 destination wake, 1 message timer
      uint64_t key;
      uint32_t idx;
    };
    std::vector<Slot> ms;
    std::vector<Slot> ds;
    std::vector<Item> items;
    // Handling one timer can arm another that is already due (a message that
    // became ready after its expiry), so pop until nothing is due.
    for (;;) {
      ms.clear();
      ds.clear();
      if (absl::Status s = m_.msg_timers->PopDue(T(now), &ms); !s.ok()) return s;
      if (absl::Status s = m_.dest_timers->PopDue(T(now), &ds); !s.ok()) return s;
      if (ms.empty() && ds.empty()) break;
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

  // --- names and destinations -------------------------------------------------

  uint32_t InternName(std::string_view name) {
    auto it = m_.name_ids.find(name);
    if (it != m_.name_ids.end()) return it->second;
    m_.names.emplace_back(name);
    const uint32_t id = static_cast<uint32_t>(m_.names.size() - 1);
    m_.name_ids.emplace(std::string_view(m_.names.back()), id);
    return id;
  }

  uint32_t DestFor(std::string_view domain, std::string_view source) {
    uint32_t dom_id;
    if (std::any_of(domain.begin(), domain.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      dom_id = InternName(absl::AsciiStrToLower(AV(domain)));
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
    return idx;
  }

  const DestinationPolicy& Policy(const DestState& d) const { return m_.dest_policies[d.policy]; }

  const RetryPolicy& LifetimePolicy(const DestState& d) const {
    return d.lifetime_schedule >= 0 ? *m_.schedules[d.lifetime_schedule].policy : m_.config.retry;
  }

  int64_t ExpiresMs(const MsgRec& r) const {
    return SatAdd(r.submitted_ms, DurMs(LifetimePolicy(m_.dests[r.dest]).lifetime));
  }

  // When a message waiting in a ready list gives up: at its lifetime end, or,
  // for its final attempt (scheduled at the end), one lease timeout later.
  int64_t ReadyDeadline(const MsgRec& r) const {
    const int64_t e = ExpiresMs(r);
    return (r.flags & internal::kFlagFinal) ? SatAdd(e, DurMs(m_.config.lease_timeout)) : e;
  }

  uint32_t EffectiveConcurrency(const DestState& d, int64_t now) const {
    if (d.conc_override_until > now) return std::min(d.concurrency, d.conc_override);
    return d.concurrency;
  }

  // Milliseconds between messages now in force; 0 = unlimited.
  int64_t EffectiveIntervalMs(const DestState& d, int64_t now, bool with_override = true) const {
    const DestinationPolicy& p = Policy(d);
    const int64_t base = IntervalMs(p.rate);
    int64_t iv = base;
    if (d.cut_interval_ms > 0) {
      const int64_t quiet = std::max<int64_t>(1, DurMs(p.rate_quiet_period));
      const int64_t steps = (now - d.last_cut) / quiet;
      const int64_t c = steps >= 62 ? 0 : (d.cut_interval_ms >> steps);
      if (base > 0) {
        iv = std::max(base, c);
      } else {
        // No configured ceiling: lift the cut once the rate has doubled three
        // times past the cut-to rate.
        iv = (c * 8 <= IntervalMs(p.unlimited_cut_to)) ? 0 : c;
      }
    }
    if (with_override && d.rate_override_until > now) iv = std::max(iv, d.rate_override_ms);
    return iv;
  }

  // 0 if a message may go now; kNever if only a report can unblock it; else
  // the time at which it may.
  int64_t BlockedUntil(const DestState& d, int64_t now) const {
    if (d.suspended_until > now) return d.suspended_until;
    if (d.held) {
      if (d.probe_in_flight) return kNever;
      if (d.next_probe > now) return d.next_probe;
    }
    if (d.in_flight >= EffectiveConcurrency(d, now)) {
      if (d.conc_override_until > now && d.in_flight < d.concurrency) return d.conc_override_until;
      return kNever;
    }
    const int64_t iv = EffectiveIntervalMs(d, now);
    if (iv > 0 && d.tat != kNoTime && d.tat > now) return d.tat;
    return 0;
  }

  void ArmWake(uint32_t di, int64_t t) {
    DestState& d = m_.dests[di];
    if (d.wake != kNoTime && d.wake <= t) return;  // an earlier wake re-checks everything
    const bool pending = d.wake != kNoTime;
    d.wake = t;
    if (pending) {
      m_.dest_timers->Reschedule(di, T(t)).IgnoreError();
    } else {
      m_.dest_timers->Schedule(di, T(t)).IgnoreError();
    }
  }

  void AddToRing(uint32_t di) {
    DestState& d = m_.dests[di];
    if (d.in_ring || d.first_count + d.retry_count == 0) return;
    d.in_ring = true;
    m_.ring.push_back(di);
  }

  // --- events -------------------------------------------------------------------

  Event& Emit(EventKind kind, int64_t t, const DestState& d) {
    if (m_.events.size() >= m_.config.max_buffered_events) {
      m_.events.pop_front();
      ++m_.events_dropped;
    }
    m_.last_event_ms = std::max(m_.last_event_ms, t);
    Event& e = m_.events.emplace_back();
    e.kind = kind;
    e.time = T(m_.last_event_ms);
    e.destination = m_.names[d.domain_id];
    e.source = m_.names[d.source_id];
    return e;
  }

  Event* EmitMsg(EventKind kind, int64_t t, const MsgRec& r) {
    if (!m_.config.message_events) return nullptr;
    Event& e = Emit(kind, t, m_.dests[r.dest]);
    e.msg_id = r.id;
    e.attempt = r.attempts;
    return &e;
  }

  // --- message storage ---------------------------------------------------------

  uint32_t AllocSlot() {
    if (m_.free_head != kNil) {
      const uint32_t s = m_.free_head;
      m_.free_head = m_.msgs[s].next;
      m_.msgs[s] = MsgRec{};
      return s;
    }
    const uint32_t s = m_.msgs.Grow();
    m_.msgs[s] = MsgRec{};
    return s;
  }

  void FreeSlot(uint32_t s) {
    m_.ids.erase(s);  // before the record is cleared: the index hashes its id
    MsgRec& r = m_.msgs[s];
    r = MsgRec{};
    r.next = m_.free_head;
    m_.free_head = s;
  }

  void PushReady(uint32_t s, bool front = false) {
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

  void Unlink(uint32_t s) {
    MsgRec& r = m_.msgs[s];
    DestState& d = m_.dests[r.dest];
    const bool first = (r.flags & internal::kFlagFirstList) != 0;
    uint32_t& head = first ? d.first_head : d.retry_head;
    uint32_t& tail = first ? d.first_tail : d.retry_tail;
    if (r.prev != kNil) m_.msgs[r.prev].next = r.next; else head = r.next;
    if (r.next != kNil) m_.msgs[r.next].prev = r.prev; else tail = r.prev;
    r.prev = r.next = kNil;
    if (first) --d.first_count; else --d.retry_count;
    --m_.ready_n;
  }

  void SetTimer(uint32_t s, int64_t due, bool pending) {
    MsgRec& r = m_.msgs[s];
    r.timer_ms = due;
    if (pending) {
      m_.msg_timers->Reschedule(s, T(due)).IgnoreError();
    } else {
      m_.msg_timers->Schedule(s, T(due)).IgnoreError();
    }
  }

  // Puts a message whose time has come into its destination's ready list;
  // its timer becomes its ready deadline.
  void MakeReady(uint32_t s, bool timer_pending) {
    PushReady(s);
    SetTimer(s, ReadyDeadline(m_.msgs[s]), timer_pending);
    AddToRing(m_.msgs[s].dest);
  }

  // --- timers ------------------------------------------------------------------

  void OnDestWake(uint32_t di, int64_t t) {
    DestState& d = m_.dests[di];
    d.wake = kNoTime;
    if (d.suspended) {
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

  void OnMsgTimer(uint32_t s, int64_t t) {
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
               d.suspended_until > t ? "lifetime ended while the destination was suspended"
               : d.held              ? "lifetime ended while the destination was held"
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

  void ReleaseLease(MsgRec& r, DestState& d) {
    if (d.in_flight > 0) --d.in_flight;
    if (r.flags & internal::kFlagProbe) {
      d.probe_in_flight = false;
      r.flags &= static_cast<uint8_t>(~internal::kFlagProbe);
    }
    AddToRing(r.dest);
  }

  // --- replies ------------------------------------------------------------------

  std::string LastReplyText(const MsgRec& r) const {
    const DestState& d = m_.dests[r.dest];
    if (r.sample != 0xff) {
      const uint32_t idx = r.sample & 7u;
      if ((d.sample_gen[idx] & 31u) == (r.sample >> 3u)) return d.samples[idx];
    }
    if (r.last_code == 0) return std::string();
    if (r.last_code >= 1000) {
      return absl::StrCat("<", AV(TransportName(static_cast<Transport>(r.last_code - 1000))), ">");
    }
    std::optional<EnhancedCode> e = UnpackEnhanced(r.last_enhanced);
    return e ? absl::StrCat(r.last_code, " ", e->ToString()) : absl::StrCat(r.last_code);
  }

  uint8_t AddSample(DestState& d, const std::string& text) {
    for (uint32_t i = 0; i < d.sample_count; ++i) {
      if (d.samples[i] == text) return static_cast<uint8_t>(((d.sample_gen[i] & 31u) << 3) | i);
    }
    const uint32_t i = d.sample_next;
    d.samples[i] = text;
    ++d.sample_gen[i];
    d.sample_next = (i + 1) % internal::kSampleRing;
    d.sample_count = std::min<uint32_t>(d.sample_count + 1, internal::kSampleRing);
    return static_cast<uint8_t>(((d.sample_gen[i] & 31u) << 3) | i);
  }

  void RecordReply(MsgRec& r, DestState& d, const Reply& reply, const Classification& c,
                   const std::string& text) {
    r.last_code = reply.transport == Transport::kReply
                      ? static_cast<uint16_t>(reply.code)
                      : static_cast<uint16_t>(1000 + static_cast<int>(reply.transport));
    r.last_enhanced = PackEnhanced(reply.enhanced);
    r.last_category = static_cast<uint8_t>(c.category);
    r.sample = AddSample(d, text);
  }

  // --- destination reactions --------------------------------------------------------

  void RollWindow(DestState& d, int64_t now) {
    const int64_t w = std::max<int64_t>(1, DurMs(m_.config.structural.warning_window));
    const int64_t start = now - (now % w);
    if (d.win_start == kNoTime) {
      d.win_start = start;
      return;
    }
    if (now >= d.win_start + w) {
      if (now >= d.win_start + 2 * w) {
        d.prev_attempts = d.prev_421 = 0;
      } else {
        d.prev_attempts = d.cur_attempts;
        d.prev_421 = d.cur_421;
      }
      d.cur_attempts = d.cur_421 = 0;
      d.win_start = start;
    }
  }

  std::vector<CategoryCount> DominantCategories(const DestState& d, size_t max) const {
    std::vector<CategoryCount> out;
    for (int i = 0; i < kNumCategories; ++i) {
      if (d.cat_counts[i] > 0) out.push_back({static_cast<Category>(i), d.cat_counts[i]});
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const CategoryCount& a, const CategoryCount& b) { return a.count > b.count; });
    if (out.size() > max) out.resize(max);
    return out;
  }

  void FillEvidence(Event& e, const DestState& d) {
    e.categories = DominantCategories(d, 3);
    for (uint32_t k = 0; k < d.sample_count; ++k) {
      // Most recent first.
      const uint32_t i = (d.sample_next + internal::kSampleRing - 1 - k) % internal::kSampleRing;
      e.samples.push_back(d.samples[i]);
    }
    for (const CategoryCount& cc : e.categories) {
      for (std::string& step : RemediationSteps(cc.category)) {
        if (std::find(e.remediation.begin(), e.remediation.end(), step) == e.remediation.end()) {
          e.remediation.push_back(std::move(step));
        }
      }
    }
    if (e.remediation.empty()) e.remediation = RemediationSteps(Category::kUnknownTransient);
  }

  void Suspend(uint32_t di, int64_t now, std::optional<int64_t> fixed_ms, Category cat,
               std::string_view rule, const std::string& text) {
    DestState& d = m_.dests[di];
    const DestinationPolicy& p = Policy(d);
    int64_t dur;
    if (fixed_ms) {
      dur = *fixed_ms;
    } else {
      // Replies from messages already in flight when the suspension began
      // are not repeats.
      if (d.suspended_until > now) return;
      const double f = std::pow(p.suspend_multiplier, static_cast<double>(d.suspensions));
      dur = std::min<int64_t>(DurMs(p.suspend_max),
                              static_cast<int64_t>(std::min(static_cast<double>(DurMs(p.suspend_base)) * f, 1e15)));
      ++d.suspensions;
    }
    const int64_t until = SatAdd(now, dur);
    if (until <= d.suspended_until) return;
    d.suspended_until = until;
    d.suspended = true;
    ArmWake(di, until);
    Event& e = Emit(EventKind::kDestinationSuspended, now, d);
    e.until = T(until);
    e.category = cat;
    e.rule = std::string(rule);
    e.reply = text;
    e.detail = absl::StrCat("suspended for ", absl::FormatDuration(absl::Milliseconds(dur)),
                            fixed_ms ? "" : absl::StrCat(" (repeat ", d.suspensions, ")"));
  }

  void EmitThrottled(DestState& d, int64_t now, Category cat, std::string_view rule,
                     const std::string& text, std::string detail, std::optional<int64_t> until) {
    Event& e = Emit(EventKind::kDestinationThrottled, now, d);
    e.category = cat;
    e.rule = std::string(rule);
    e.reply = text;
    e.detail = std::move(detail);
    e.concurrency_limit = EffectiveConcurrency(d, now);
    e.rate_per_second = RatePerSecond(EffectiveIntervalMs(d, now));
    if (until) e.until = T(*until);
  }

  void CutConcurrency(DestState& d, int64_t now, Category cat, std::string_view rule, const std::string& text) {
    const DestinationPolicy& p = Policy(d);
    const uint32_t target = std::max(p.min_concurrency, std::min(d.concurrency / 2, p.cut_concurrency_to));
    d.success_streak = 0;
    if (target >= d.concurrency) return;
    // Remember the refused level so that slow raises do not walk straight
    // back into the receiver's cap (2 -> 3 -> refused -> 1 -> ...). Only a
    // real cut sets it: later refusals from the same cohort see the cut limit.
    if (p.concurrency_ceiling_hold > absl::ZeroDuration()) {
      d.conc_ceiling = std::max(p.min_concurrency, d.concurrency - 1);
      d.conc_ceiling_until = SatAdd(now, DurMs(p.concurrency_ceiling_hold));
    }
    d.concurrency = target;
    EmitThrottled(d, now, cat, rule, text, absl::StrCat("concurrency cut to ", target), std::nullopt);
  }

  void CutRate(DestState& d, int64_t now, int64_t attempt_started, Category cat,
               std::string_view rule, const std::string& text) {
    // An attempt that started before the last cut was sent at the old rate:
    // its rate-limit reply is not new evidence. Without this, a burst of
    // replies from one cohort halved the rate once per reply.
    if (d.last_cut != kNoTime && attempt_started < d.last_cut) return;
    const DestinationPolicy& p = Policy(d);
    const int64_t cur = EffectiveIntervalMs(d, now, /*with_override=*/false);
    int64_t next = cur == 0 ? IntervalMs(p.unlimited_cut_to) : cur * 2;
    next = std::min(next, IntervalMs(p.min_rate));
    next = std::max(next, cur);
    d.last_cut = now;
    d.success_streak = 0;
    if (next == cur && d.cut_interval_ms != 0) {
      d.cut_interval_ms = next;  // at the floor: restart the quiet period only
      return;
    }
    d.cut_interval_ms = next;
    if (next == cur) return;
    EmitThrottled(d, now, cat, rule, text,
                  absl::StrFormat("rate cut to %.4g messages/s", 1000.0 / static_cast<double>(next)),
                  std::nullopt);
  }

  bool ReactionMatches(const internal::CompiledReaction& cr, const Reply& reply, const Classification& c) {
    const ReactionRule& r = cr.rule;
    if (!r.categories.empty() &&
        std::find(r.categories.begin(), r.categories.end(), c.category) == r.categories.end()) {
      return false;
    }
    if (!r.code_pattern.empty() && (reply.transport != Transport::kReply || !MatchCode(r.code_pattern, reply.code))) {
      return false;
    }
    if (!MatchEnhanced(r.enhanced_pattern, reply.enhanced)) return false;
    if (cr.regex && !RE2::PartialMatch(reply.text, *cr.regex)) return false;
    return true;
  }

  void ApplyReactions(uint32_t di, int64_t now, int64_t attempt_started, const Reply& reply,
                      const Classification& c, const std::string& text) {
    DestState& d = m_.dests[di];
    bool matched = false;
    for (uint16_t ri : d.reaction_candidates) {
      const internal::CompiledReaction& cr = m_.reactions[ri];
      if (!ReactionMatches(cr, reply, c)) continue;
      matched = true;
      const ReactionRule& r = cr.rule;
      if (r.threshold > 1) {
        std::vector<int64_t>& hits = m_.reaction_hits[(uint64_t{di} << 16) | ri];
        const int64_t lo = now - DurMs(r.window);
        hits.erase(hits.begin(), std::find_if(hits.begin(), hits.end(), [&](int64_t h) { return h > lo; }));
        hits.push_back(now);
        if (hits.size() < r.threshold) continue;
        hits.clear();
      }
      const std::string rule_name = absl::StrCat("reaction:", r.name);
      const int64_t until = SatAdd(now, DurMs(r.duration));
      if (r.set_concurrency) {
        d.conc_override = *r.set_concurrency;
        d.conc_override_until = until;
        EmitThrottled(d, now, c.category, rule_name, text,
                      absl::StrCat("concurrency set to ", *r.set_concurrency, " by rule"), until);
      }
      if (r.set_rate) {
        d.rate_override_ms = IntervalMs(*r.set_rate);
        d.rate_override_until = until;
        EmitThrottled(d, now, c.category, rule_name, text,
                      absl::StrCat("rate set to ", r.set_rate->messages, " per ",
                                   absl::FormatDuration(r.set_rate->per), " by rule"),
                      until);
      }
      if (r.suspend_for) Suspend(di, now, DurMs(*r.suspend_for), c.category, rule_name, text);
    }
    if (matched) return;

    // Built-in reactions by category.
    switch (c.category) {
      case Category::kRateLimit:
      case Category::kReputationThrottle:
        CutRate(d, now, attempt_started, c.category, c.rule, text);
        Suspend(di, now, std::nullopt, c.category, c.rule, text);
        break;
      case Category::kServerBusyCapacity:
      case Category::kMaintenanceShutdown:
        Suspend(di, now, std::nullopt, c.category, c.rule, text);
        break;
      case Category::kTooManyConnections:
        CutConcurrency(d, now, c.category, c.rule, text);
        break;
      default:
        break;
    }
    if (IsConnectionLevel(reply.transport)) {
      ++d.conn_failures;
      const uint32_t limit = Policy(d).connection_failures_to_suspend;
      if (limit != 0 && d.conn_failures >= limit) {
        d.conn_failures = 0;
        Suspend(di, now, std::nullopt, c.category, "builtin:connection-failures", text);
      }
    } else {
      d.conn_failures = 0;
    }
  }

  void NoteAttempt(DestState& d, int64_t now, bool is_421) {
    RollWindow(d, now);
    ++d.cur_attempts;
    if (is_421) ++d.cur_421;
  }

  void CheckWarning(DestState& d, int64_t now) {
    const StructuralConfig& s = m_.config.structural;
    if (!s.enabled || d.health != Health::kHealthy) return;
    const uint32_t n421 = d.cur_421 + d.prev_421;
    const uint32_t n = d.cur_attempts + d.prev_attempts;
    if (n421 < s.warning_421s || static_cast<double>(n421) < s.warning_ratio * n) return;
    d.health = Health::kWarning;
    Event& e = Emit(EventKind::kDestinationWarning, now, d);
    e.detail = absl::StrCat(n421, " of the last ", n, " attempts got 421 within ",
                            absl::FormatDuration(s.warning_window), " or so");
    FillEvidence(e, d);
  }

  // Counts a failing message towards the structural rules and raises
  // structural_failure when one of them holds.
  void StructuralEvidence(uint32_t di, MsgRec& r, Category cat, int64_t now, bool expiring) {
    DestState& d = m_.dests[di];
    if (IsEvidenceCategory(cat) && !(r.flags & internal::kFlagEvidence)) {
      r.flags |= internal::kFlagEvidence;
      ++d.evidence_msgs;
      if (d.evidence_first == kNoTime) d.evidence_first = now;
    }
    const bool no_delivery_since = d.last_delivery == kNoTime || d.last_delivery < r.submitted_ms;
    if (!(r.flags & internal::kFlagCycle) && no_delivery_since &&
        (expiring || r.attempts >= m_.cycle_failures)) {
      r.flags |= internal::kFlagCycle;
      ++d.cycle_msgs;
    }
    CheckStructural(di, now);
  }

  void CheckStructural(uint32_t di, int64_t now) {
    DestState& d = m_.dests[di];
    const StructuralConfig& s = m_.config.structural;
    if (!s.enabled || d.health == Health::kStructural) return;
    const bool cycle = d.cycle_msgs >= s.cycle_messages;
    const bool early = d.evidence_msgs >= s.evidence_messages && d.evidence_first != kNoTime &&
                       now - d.evidence_first >= DurMs(s.evidence_span);
    if (!cycle && !early) return;
    d.health = Health::kStructural;
    Event& e = Emit(EventKind::kStructuralFailure, now, d);
    if (cycle) {
      e.detail = absl::StrCat(d.cycle_msgs, " messages failed a full retry cycle (", m_.cycle_failures,
                              " attempts) with no delivery to this destination since they were submitted");
    } else {
      e.detail = absl::StrCat(d.evidence_msgs,
                              " messages got reputation/authentication/PTR/DNSBL replies over ",
                              absl::FormatDuration(absl::Milliseconds(now - d.evidence_first)),
                              " with no delivery");
    }
    FillEvidence(e, d);
    if (s.hold) {
      d.held = true;
      d.next_probe = SatAdd(now, DurMs(s.probe_interval));
      ArmWake(di, d.next_probe);
      absl::StrAppend(&e.detail, "; holding the destination, one probe every ",
                      absl::FormatDuration(s.probe_interval));
    }
  }

  // --- outcomes -------------------------------------------------------------------------

  void Expire(uint32_t s, int64_t t, std::string_view why) {
    MsgRec& r = m_.msgs[s];
    DestState& d = m_.dests[r.dest];
    ++d.expired;
    ++m_.expired;
    const std::string last = LastReplyText(r);
    if (Event* e = EmitMsg(EventKind::kExpired, t, r)) {
      e->status = "4.4.7";
      if (r.last_category != 0xff) e->category = static_cast<Category>(r.last_category);
      e->reply = last;
      e->detail = absl::StrCat(AV(why), " after ", r.attempts, " attempt(s)");
    }
    const uint32_t di = r.dest;
    StructuralEvidence(di, r, r.last_category != 0xff ? static_cast<Category>(r.last_category)
                                                      : Category::kUnknownTransient,
                       t, /*expiring=*/true);
    FreeSlot(s);
  }

  void OnDelivered(uint32_t di, int64_t now) {
    DestState& d = m_.dests[di];
    const DestinationPolicy& p = Policy(d);
    ++d.delivered;
    d.last_delivery = now;
    d.consecutive_failures = 0;
    d.conn_failures = 0;
    d.suspensions = 0;
    d.cat_counts.fill(0);
    d.cycle_msgs = 0;
    d.evidence_msgs = 0;
    d.evidence_first = kNoTime;
    if (++d.success_streak >= p.raise_concurrency_after) {
      d.success_streak = 0;
      const bool capped = d.conc_ceiling != 0 && now < d.conc_ceiling_until;
      const uint32_t limit = capped ? std::min(p.max_concurrency, d.conc_ceiling) : p.max_concurrency;
      if (d.concurrency < limit) ++d.concurrency;
    }
    if (d.health == Health::kStructural) {
      d.health = Health::kHealthy;
      d.held = false;
      Event& e = Emit(EventKind::kStructuralCleared, now, d);
      e.detail = "a message was delivered; the destination is released";
      AddToRing(di);
    } else if (d.health == Health::kWarning) {
      const double n = d.cur_attempts + d.prev_attempts;
      if (d.cur_421 + d.prev_421 < m_.config.structural.warning_ratio * n / 2) d.health = Health::kHealthy;
    }
  }

  // Which schedule applies to this failure: category/transport overrides
  // first (user ones before built-ins), then destination-only ones.
  const ScheduleOverride* FindOverride(const DestState& d, const Reply& reply, Category cat) const {
    for (int pass = 0; pass < 2; ++pass) {
      for (uint16_t i : d.schedule_candidates) {
        const ScheduleOverride& o = m_.schedules[i];
        const bool specific = !o.categories.empty() || !o.transports.empty();
        if (specific != (pass == 0)) continue;
        if (!o.categories.empty() &&
            std::find(o.categories.begin(), o.categories.end(), cat) == o.categories.end()) {
          continue;
        }
        if (!o.transports.empty() &&
            std::find(o.transports.begin(), o.transports.end(), reply.transport) == o.transports.end()) {
          continue;
        }
        return &o;
      }
    }
    return nullptr;
  }

  // The next retry for a transiently failed message, or expiry (nullopt).
  std::optional<int64_t> NextAttempt(MsgRec& r, const DestState& d, const Reply& reply, Category cat,
                                     int64_t now, std::string_view* schedule_name) {
    const RetryPolicy& life = LifetimePolicy(d);
    const ScheduleOverride* o = FindOverride(d, reply, cat);
    const RetryPolicy* policy = &life;
    bool advance = true;
    std::optional<int64_t> fixed;
    *schedule_name = d.lifetime_schedule >= 0 ? std::string_view(m_.schedules[d.lifetime_schedule].name)
                                              : std::string_view("default");
    if (o != nullptr) {
      const bool non_advancing = o->fixed_delay.has_value() || !o->advance_backoff;
      if (non_advancing && (o->max_consecutive == 0 || r.fixed_uses < o->max_consecutive)) {
        advance = false;
        if (o->fixed_delay) fixed = DurMs(*o->fixed_delay);
        *schedule_name = o->name;
      } else if (o->policy) {
        policy = &*o->policy;
        *schedule_name = o->name;
      }
    }
    if (policy->max_attempts != 0 && r.attempts >= policy->max_attempts) return std::nullopt;
    RetryState st;
    st.failures = r.attempts;
    st.step = r.step;
    st.age = absl::Milliseconds(now - r.submitted_ms);
    st.last_delay = absl::Seconds(r.last_delay_s);
    int64_t delay = fixed ? *fixed : DurMs(NextDelay(*policy, st, m_.rng));
    if (advance) {
      if (r.step < 255) ++r.step;
      r.fixed_uses = 0;
    } else if (r.fixed_uses < 255) {
      ++r.fixed_uses;
    }
    r.last_delay_s = static_cast<uint32_t>(std::min<int64_t>(delay / 1000, std::numeric_limits<uint32_t>::max()));
    const int64_t remaining = ExpiresMs(r) - now;
    r.flags &= static_cast<uint8_t>(~internal::kFlagFinal);
    if (delay >= remaining) {
      if (!life.attempt_at_lifetime_end || remaining <= 0) return std::nullopt;
      delay = remaining;
      r.flags |= internal::kFlagFinal;
    }
    return now + delay;
  }

 public:
  // --- API bodies ----------------------------------------------------------------------

  absl::Status SubmitOne(uint64_t id, uint32_t di, int64_t now, std::optional<int64_t> not_before) {
    const uint32_t s = AllocSlot();
    MsgRec& r = m_.msgs[s];
    r.id = id;
    r.dest = di;
    r.submitted_ms = now;
    m_.ids.insert(s);
    ++m_.submitted;
    if (not_before && *not_before > now) {
      r.state = MsgState::kScheduled;
      ++m_.scheduled_n;
      ++m_.dests[di].scheduled_count;
      SetTimer(s, *not_before, false);
    } else {
      MakeReady(s, false);
    }
    return absl::OkStatus();
  }

  absl::Status CheckDestination(std::string_view destination) const {
    if (destination.empty()) return absl::InvalidArgumentError("destination is empty");
    if (destination.size() > 255) return absl::InvalidArgumentError("destination is longer than 255 bytes");
    return absl::OkStatus();
  }

  absl::Status Submit(uint64_t id, std::string_view destination, absl::Time now_t, std::string_view source,
                      std::optional<absl::Time> not_before) {
    if (absl::Status s = CheckDestination(destination); !s.ok()) return s;
    if (source.size() > 255) return absl::InvalidArgumentError("source is longer than 255 bytes");
    if (not_before && !IsTimeValid(*not_before)) return absl::InvalidArgumentError("not_before is out of range");
    if (absl::Status s = Advance(now_t); !s.ok()) return s;
    if (m_.ids.contains(internal::IdKey{id})) {
      return absl::AlreadyExistsError(absl::StrCat("message ", id, " is already pending"));
    }
    const uint32_t di = DestFor(destination, source);
    std::optional<int64_t> nb;
    if (not_before) nb = Ms(*not_before);
    return SubmitOne(id, di, m_.now_ms, nb);
  }

  absl::Status SubmitMany(absl::Span<const uint64_t> ids, absl::Span<const uint32_t> dest_idx,
                          absl::Span<const std::string> dest_names, absl::Time now_t,
                          absl::Span<const uint32_t> src_idx, absl::Span<const std::string> src_names) {
    if (ids.size() != dest_idx.size()) {
      return absl::InvalidArgumentError(absl::StrCat("msg_ids has ", ids.size(), " entries but destination_indices has ",
                                                     dest_idx.size()));
    }
    if (!src_idx.empty() && src_idx.size() != ids.size()) {
      return absl::InvalidArgumentError("source_indices must be empty or as long as msg_ids");
    }
    for (const std::string& n : dest_names) {
      if (absl::Status s = CheckDestination(n); !s.ok()) return s;
    }
    for (const std::string& n : src_names) {
      if (n.size() > 255) return absl::InvalidArgumentError("source is longer than 255 bytes");
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (dest_idx[i] >= dest_names.size()) {
        return absl::InvalidArgumentError(absl::StrCat("destination_indices[", i, "] = ", dest_idx[i],
                                                       " is out of range (", dest_names.size(), " names)"));
      }
      if (!src_idx.empty() && src_idx[i] >= src_names.size()) {
        return absl::InvalidArgumentError(absl::StrCat("source_indices[", i, "] = ", src_idx[i],
                                                       " is out of range (", src_names.size(), " names)"));
      }
    }
    if (absl::Status s = Advance(now_t); !s.ok()) return s;
    absl::flat_hash_set<uint64_t> seen;
    seen.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!seen.insert(ids[i]).second) {
        return absl::AlreadyExistsError(absl::StrCat("message ", ids[i], " appears twice in the batch"));
      }
      if (m_.ids.contains(internal::IdKey{ids[i]})) {
        return absl::AlreadyExistsError(absl::StrCat("message ", ids[i], " is already pending"));
      }
    }
    m_.ids.reserve(m_.ids.size() + ids.size());
    std::vector<uint32_t> cache(src_idx.empty() ? dest_names.size() : 0, kNil);
    absl::flat_hash_map<uint64_t, uint32_t> pair_cache;
    for (size_t i = 0; i < ids.size(); ++i) {
      uint32_t di;
      if (src_idx.empty()) {
        uint32_t& c = cache[dest_idx[i]];
        if (c == kNil) c = DestFor(dest_names[dest_idx[i]], {});
        di = c;
      } else {
        const uint64_t key = (uint64_t{dest_idx[i]} << 32) | src_idx[i];
        auto [it, inserted] = pair_cache.emplace(key, 0);
        if (inserted) it->second = DestFor(dest_names[dest_idx[i]], src_names[src_idx[i]]);
        di = it->second;
      }
      SubmitOne(ids[i], di, m_.now_ms, std::nullopt).IgnoreError();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<Lease>> TakeReady(absl::Time now_t, size_t limit) {
    if (absl::Status s = Advance(now_t); !s.ok()) return s;
    const int64_t now = m_.now_ms;
    std::vector<Lease> out;
    out.reserve(std::min<size_t>(limit, m_.ready_n));
    const int64_t deadline = SatAdd(now, DurMs(m_.config.lease_timeout));
    while (out.size() < limit && !m_.ring.empty()) {
      const uint32_t di = m_.ring.front();
      m_.ring.pop_front();
      DestState& d = m_.dests[di];
      if (d.first_count + d.retry_count == 0) {
        d.in_ring = false;
        continue;
      }
      const int64_t blocked = BlockedUntil(d, now);
      if (blocked != 0) {
        d.in_ring = false;
        if (blocked != kNever) ArmWake(di, blocked);
        continue;
      }
      // Alternate first attempts and retries so neither starves the other.
      bool use_retry = d.first_count == 0 || (d.retry_count > 0 && d.take_retry_next);
      d.take_retry_next = !use_retry;
      const uint32_t s = use_retry ? d.retry_head : d.first_head;
      Unlink(s);
      MsgRec& r = m_.msgs[s];
      r.state = MsgState::kLeased;
      if (r.attempts < std::numeric_limits<uint16_t>::max()) ++r.attempts;
      ++m_.leased_n;
      ++m_.attempts;
      ++d.attempts;
      ++d.in_flight;
      if (d.held) {
        d.probe_in_flight = true;
        r.flags |= internal::kFlagProbe;
        d.next_probe = SatAdd(now, DurMs(m_.config.structural.probe_interval));
      }
      const int64_t iv = EffectiveIntervalMs(d, now);
      if (iv > 0) d.tat = SatAdd(std::max(d.tat == kNoTime ? now : d.tat, now), iv);
      SetTimer(s, deadline, /*pending=*/true);
      Lease& l = out.emplace_back();
      l.msg_id = r.id;
      l.destination = m_.names[d.domain_id];
      l.source = m_.names[d.source_id];
      l.destination_index = di;
      l.attempt = r.attempts;
      l.deadline = T(deadline);
      if (d.first_count + d.retry_count > 0) {
        m_.ring.push_back(di);
      } else {
        d.in_ring = false;
      }
    }
    return out;
  }

  absl::StatusOr<Decision> Report(uint64_t id, int64_t now, const Reply& reply) {
    auto it = m_.ids.find(internal::IdKey{id});
    if (it == m_.ids.end()) {
      return absl::NotFoundError(absl::StrCat("message ", id, " is not pending (never submitted, or already finished)"));
    }
    const uint32_t s = *it;
    MsgRec& r = m_.msgs[s];
    if (r.state != MsgState::kLeased) {
      return absl::FailedPreconditionError(absl::StrCat(
          "message ", id, " is not leased (",
          r.state == MsgState::kScheduled ? "waiting for its retry time" : "due, not yet taken or its lease expired",
          ")"));
    }
    const uint32_t di = r.dest;
    DestState& d = m_.dests[di];
    // While leased, the message's timer is its lease deadline.
    const int64_t attempt_started = r.timer_ms - DurMs(m_.config.lease_timeout);
    --m_.leased_n;
    ReleaseLease(r, d);
    m_.msg_timers->Cancel(s).IgnoreError();

    Decision out;
    out.attempt = r.attempts;
    if (reply.success()) {
      NoteAttempt(d, now, false);
      out.action = DecisionAction::kDelivered;
      out.rule = "success";
      ++m_.delivered;
      if (Event* e = EmitMsg(EventKind::kDelivered, now, r)) {
        e->status = EnhancedString(reply.enhanced);
        e->reply = reply.ToString();
      }
      OnDelivered(di, now);
      FreeSlot(s);
      return out;
    }

    const std::string text = reply.ToString();
    const Classification c = m_.classifier.Classify(reply, m_.names[d.domain_id]);
    out.category = c.category;
    out.rule = c.rule;
    RecordReply(r, d, reply, c, text);
    ++d.consecutive_failures;
    ++d.cat_counts[static_cast<int>(c.category)];
    NoteAttempt(d, now, reply.transport == Transport::kReply && reply.code == 421);

    ApplyReactions(di, now, attempt_started, reply, c, text);

    if (!c.transient) {
      out.action = DecisionAction::kBounced;
      ++d.bounced;
      ++m_.bounced;
      if (Event* e = EmitMsg(EventKind::kBounced, now, r)) {
        e->category = c.category;
        e->status = EnhancedString(reply.enhanced);
        e->reply = text;
        e->rule = std::string(c.rule);
        e->detail = "permanent failure";
      }
      StructuralEvidence(di, r, c.category, now, false);
      FreeSlot(s);
      return out;
    }

    std::string_view schedule;
    const std::optional<int64_t> next = NextAttempt(r, d, reply, c.category, now, &schedule);
    out.schedule = schedule;
    if (!next) {
      out.action = DecisionAction::kExpired;
      Expire(s, now, "lifetime or attempt limit reached");
      CheckWarning(m_.dests[di], now);
      return out;
    }
    out.action = DecisionAction::kRetry;
    out.next_attempt = T(*next);
    ++d.deferred;
    ++m_.deferred;
    if (Event* e = EmitMsg(EventKind::kDeferred, now, r)) {
      e->category = c.category;
      e->status = EnhancedString(reply.enhanced);
      e->reply = text;
      e->rule = std::string(c.rule);
      e->next_attempt = out.next_attempt;
      // Cheap on purpose: one deferred event per failed attempt.
      e->detail = absl::StrCat("schedule ", AV(schedule), (r.flags & internal::kFlagFinal) ? ", last attempt" : "");
    }
    StructuralEvidence(di, r, c.category, now, false);
    CheckWarning(d, now);
    r.state = MsgState::kScheduled;
    ++m_.scheduled_n;
    ++d.scheduled_count;
    SetTimer(s, *next, false);
    return out;
  }

  std::optional<absl::Time> NextWakeup() const {
    std::optional<absl::Time> best = m_.msg_timers->NextDeadline();
    auto consider = [&](absl::Time t) {
      if (!best || t < *best) best = t;
    };
    if (auto t = m_.dest_timers->NextDeadline()) consider(*t);
    for (uint32_t di : m_.ring) {
      const DestState& d = m_.dests[di];
      if (d.first_count + d.retry_count == 0) continue;
      const int64_t b = BlockedUntil(d, m_.now_ms);
      if (b == 0) {
        consider(T(m_.now_ms));
      } else if (b != kNever) {
        consider(T(b));
      }
    }
    return best;
  }

  DestinationInfo Info(uint32_t di) const {
    const DestState& d = m_.dests[di];
    const int64_t now = m_.now_ms;
    DestinationInfo out;
    out.destination = m_.names[d.domain_id];
    out.source = m_.names[d.source_id];
    out.index = di;
    out.health = d.health;
    out.held = d.held;
    out.concurrency_limit = EffectiveConcurrency(d, now);
    out.max_concurrency = Policy(d).max_concurrency;
    out.in_flight = d.in_flight;
    out.rate_per_second = RatePerSecond(EffectiveIntervalMs(d, now));
    if (d.suspended_until > now) out.suspended_until = T(d.suspended_until);
    out.suspensions = d.suspensions;
    if (d.held) out.next_probe = T(d.next_probe);
    out.ready = d.first_count + d.retry_count;
    out.scheduled = d.scheduled_count;
    out.attempts = d.attempts;
    out.delivered = d.delivered;
    out.deferred = d.deferred;
    out.bounced = d.bounced;
    out.expired = d.expired;
    out.consecutive_failures = d.consecutive_failures;
    if (d.last_delivery != kNoTime) out.last_delivery = T(d.last_delivery);
    if (d.sample_count > 0) {
      out.last_reply = d.samples[(d.sample_next + internal::kSampleRing - 1) % internal::kSampleRing];
    }
    out.failure_categories = DominantCategories(d, kNumCategories);
    return out;
  }

 private:
  Engine::Impl& m_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EngineConfig config, uint64_t seed) {
  absl::StatusOr<std::unique_ptr<Impl>> impl = internal::MakeImpl(std::move(config), seed);
  if (!impl.ok()) return impl.status();
  return std::unique_ptr<Engine>(new Engine(*std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const std::string& path) {
  absl::StatusOr<std::unique_ptr<Impl>> impl = internal::LoadImpl(path);
  if (!impl.ok()) return impl.status();
  return std::unique_ptr<Engine>(new Engine(*std::move(impl)));
}

// A durable engine (engine_journal.cc) journals each state-changing call after
// applying it, under the same lock, so the journal order is the apply order.
// After a failed journal write the engine refuses further changes.
#define MAILRETRY_JOURNAL_HEALTH()                                        \
  if (impl_->journal != nullptr) {                                        \
    if (absl::Status h = impl_->journal->health(); !h.ok()) return h;     \
  }

absl::Status Engine::Submit(uint64_t msg_id, std::string_view destination, absl::Time now,
                            std::string_view source, std::optional<absl::Time> not_before) {
  absl::MutexLock lock(&impl_->mu);
  MAILRETRY_JOURNAL_HEALTH();
  absl::Status s = Core(*impl_).Submit(msg_id, destination, now, source, not_before);
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->Submit(msg_id, destination, now, source, not_before, s); !j.ok()) return j;
  }
  return s;
}

absl::Status Engine::SubmitMany(absl::Span<const uint64_t> msg_ids, absl::Span<const uint32_t> destination_indices,
                                absl::Span<const std::string> destination_names, absl::Time now,
                                absl::Span<const uint32_t> source_indices,
                                absl::Span<const std::string> source_names) {
  absl::MutexLock lock(&impl_->mu);
  MAILRETRY_JOURNAL_HEALTH();
  absl::Status s = Core(*impl_).SubmitMany(msg_ids, destination_indices, destination_names, now, source_indices,
                                           source_names);
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->SubmitMany(msg_ids, destination_indices, destination_names, now,
                                                    source_indices, source_names, s);
        !j.ok()) {
      return j;
    }
  }
  return s;
}

absl::Status Engine::Advance(absl::Time now) {
  absl::MutexLock lock(&impl_->mu);
  MAILRETRY_JOURNAL_HEALTH();
  absl::Status s = Core(*impl_).Advance(now);
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->Advance(now, s); !j.ok()) return j;
  }
  return s;
}

absl::StatusOr<std::vector<Lease>> Engine::TakeReady(absl::Time now, size_t limit) {
  absl::MutexLock lock(&impl_->mu);
  MAILRETRY_JOURNAL_HEALTH();
  absl::StatusOr<std::vector<Lease>> out = Core(*impl_).TakeReady(now, limit);
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->TakeReady(now, limit, out); !j.ok()) return j;
  }
  return out;
}

absl::StatusOr<Decision> Engine::Report(uint64_t msg_id, absl::Time now, const Reply& reply) {
  absl::MutexLock lock(&impl_->mu);
  MAILRETRY_JOURNAL_HEALTH();
  Core core(*impl_);
  const absl::Status adv = core.Advance(now);
  absl::StatusOr<Decision> out =
      adv.ok() ? core.Report(msg_id, impl_->now_ms, reply) : absl::StatusOr<Decision>(adv);
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->Report(msg_id, now, reply, out); !j.ok()) return j;
  }
  return out;
}

absl::StatusOr<Decision> Engine::ReportText(uint64_t msg_id, absl::Time now, std::string_view raw_reply) {
  absl::StatusOr<Reply> reply = ParseReply(raw_reply);
  if (!reply.ok()) return reply.status();
  return Report(msg_id, now, *reply);
}

std::vector<absl::StatusOr<Decision>> Engine::ReportMany(absl::Span<const uint64_t> msg_ids,
                                                         absl::Span<const Reply> replies, absl::Time now) {
  std::vector<absl::StatusOr<Decision>> out;
  out.reserve(msg_ids.size());
  absl::MutexLock lock(&impl_->mu);
  if (impl_->journal != nullptr) {
    if (absl::Status h = impl_->journal->health(); !h.ok()) return std::vector<absl::StatusOr<Decision>>(msg_ids.size(), h);
  }
  Core core(*impl_);
  absl::Status adv = core.Advance(now);
  for (size_t i = 0; i < msg_ids.size(); ++i) {
    if (!adv.ok()) {
      out.push_back(adv);
    } else if (i >= replies.size()) {
      out.push_back(absl::InvalidArgumentError("no reply for this id (replies is shorter than msg_ids)"));
    } else {
      out.push_back(core.Report(msg_ids[i], impl_->now_ms, replies[i]));
    }
  }
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->ReportMany(msg_ids, replies, now, out); !j.ok()) {
      return std::vector<absl::StatusOr<Decision>>(msg_ids.size(), j);
    }
  }
  return out;
}

std::vector<absl::StatusOr<Decision>> Engine::ReportManyText(absl::Span<const uint64_t> msg_ids,
                                                             absl::Span<const std::string> raw_replies,
                                                             absl::Time now) {
  std::vector<absl::StatusOr<Decision>> out;
  out.reserve(msg_ids.size());
  absl::MutexLock lock(&impl_->mu);
  if (impl_->journal != nullptr) {
    if (absl::Status h = impl_->journal->health(); !h.ok()) return std::vector<absl::StatusOr<Decision>>(msg_ids.size(), h);
  }
  Core core(*impl_);
  absl::Status adv = core.Advance(now);
  for (size_t i = 0; i < msg_ids.size(); ++i) {
    if (!adv.ok()) {
      out.push_back(adv);
      continue;
    }
    if (i >= raw_replies.size()) {
      out.push_back(absl::InvalidArgumentError("no reply for this id (raw_replies is shorter than msg_ids)"));
      continue;
    }
    absl::StatusOr<Reply> reply = ParseReply(raw_replies[i]);
    if (!reply.ok()) {
      out.push_back(reply.status());
      continue;
    }
    out.push_back(core.Report(msg_ids[i], impl_->now_ms, *reply));
  }
  if (impl_->journal != nullptr) {
    if (absl::Status j = impl_->journal->ReportManyText(msg_ids, raw_replies, now, out); !j.ok()) {
      return std::vector<absl::StatusOr<Decision>>(msg_ids.size(), j);
    }
  }
  return out;
}

std::optional<absl::Time> Engine::NextWakeup() const {
  absl::MutexLock lock(&impl_->mu);
  return Core(*impl_).NextWakeup();
}

std::vector<Event> Engine::DrainEvents() {
  absl::MutexLock lock(&impl_->mu);
  // A durable engine whose journal failed keeps its events (they are state).
  if (impl_->journal != nullptr && !impl_->journal->health().ok()) return {};
  std::vector<Event> out(std::make_move_iterator(impl_->events.begin()),
                         std::make_move_iterator(impl_->events.end()));
  impl_->events.clear();
  // An empty drain changes nothing and is not journaled.
  if (impl_->journal != nullptr && !out.empty()) impl_->journal->DrainEvents(out.size()).IgnoreError();
  return out;
}

absl::StatusOr<DestinationInfo> Engine::GetDestination(std::string_view destination,
                                                       std::string_view source) const {
  absl::MutexLock lock(&impl_->mu);
  const std::string lower = absl::AsciiStrToLower(AV(destination));
  auto dom = impl_->name_ids.find(lower);
  auto src = source.empty() ? impl_->name_ids.find(std::string_view()) : impl_->name_ids.find(source);
  if (dom != impl_->name_ids.end() && src != impl_->name_ids.end()) {
    auto it = impl_->pair_ids.find((uint64_t{dom->second} << 32) | src->second);
    if (it != impl_->pair_ids.end()) return Core(*impl_).Info(it->second);
  }
  return absl::NotFoundError(absl::StrCat("no messages were ever submitted to destination '", AV(destination), "'",
                                          source.empty() ? std::string() : absl::StrCat(" from source '", AV(source), "'")));
}

EngineStats Engine::Stats() const {
  absl::MutexLock lock(&impl_->mu);
  const Impl& m = *impl_;
  EngineStats s;
  s.submitted = m.submitted;
  s.delivered = m.delivered;
  s.bounced = m.bounced;
  s.expired = m.expired;
  s.scheduled = m.scheduled_n;
  s.ready = m.ready_n;
  s.leased = m.leased_n;
  s.pending = m.scheduled_n + m.ready_n + m.leased_n;
  s.attempts = m.attempts;
  s.deferred = m.deferred;
  s.lease_expirations = m.lease_expirations;
  s.destinations = m.dests.size();
  for (const DestState& d : m.dests) {
    if (d.suspended_until > m.now_ms) ++s.suspended_destinations;
    if (d.held) ++s.held_destinations;
  }
  s.events_buffered = m.events.size();
  s.events_dropped = m.events_dropped;
  size_t bytes = m.msgs.MemoryBytes() + m.ids.capacity() * (sizeof(uint32_t) + 1) +
                 m.msg_timers->MemoryBytes() + m.dest_timers->MemoryBytes() +
                 m.dests.capacity() * sizeof(DestState) + m.pair_ids.capacity() * (sizeof(uint64_t) * 2 + 1) +
                 m.name_ids.capacity() * (sizeof(std::string_view) + sizeof(uint64_t) + 1) +
                 m.ring.size() * sizeof(uint32_t);
  for (const std::string& n : m.names) bytes += sizeof(std::string) + (n.capacity() > 15 ? n.capacity() : 0);
  for (const DestState& d : m.dests) {
    for (const std::string& t : d.samples) bytes += t.capacity() > 15 ? t.capacity() : 0;
  }
  s.memory_bytes = bytes;
  return s;
}

absl::Status Engine::Save(const std::string& path) const {
  absl::MutexLock lock(&impl_->mu);
  return internal::SaveLocked(*impl_, path);
}

absl::Status Engine::CheckInvariants() const {
  absl::MutexLock lock(&impl_->mu);
  return internal::CheckInvariantsLocked(*impl_);
}

const EngineConfig& Engine::config() const { return impl_->config; }
uint64_t Engine::seed() const { return impl_->seed; }

// ---------------------------------------------------------------------------
// Invariants
// ---------------------------------------------------------------------------

namespace internal {

absl::Status CheckInvariantsLocked(const Engine::Impl& m) {
  auto fail = [](auto&&... parts) { return absl::InternalError(absl::StrCat(parts...)); };
  uint64_t sched = 0, ready = 0, leased = 0, live = 0;
  std::vector<uint32_t> in_flight(m.dests.size(), 0), scheduled(m.dests.size(), 0);
  for (uint32_t s = 0; s < m.msgs.size(); ++s) {
    const MsgRec& r = m.msgs[s];
    if (r.state == MsgState::kFree) continue;
    ++live;
    if (r.dest >= m.dests.size()) return fail("message slot ", s, " has destination ", r.dest, " out of range");
    if (!m.ids.contains(s)) return fail("message ", r.id, " is missing from the id index");
    if (!m.msg_timers->Contains(s)) return fail("message ", r.id, " has no timer");
    switch (r.state) {
      case MsgState::kScheduled: ++sched; ++scheduled[r.dest]; break;
      case MsgState::kReady: ++ready; break;
      case MsgState::kLeased: ++leased; ++in_flight[r.dest]; break;
      case MsgState::kFree: break;
    }
  }
  if (live != m.ids.size()) return fail("id index holds ", m.ids.size(), " ids, ", live, " live records");
  if (live != m.msg_timers->size()) return fail(m.msg_timers->size(), " message timers for ", live, " messages");
  if (sched != m.scheduled_n || ready != m.ready_n || leased != m.leased_n) {
    return fail("state counters (", m.scheduled_n, ",", m.ready_n, ",", m.leased_n, ") != records (", sched, ",",
                ready, ",", leased, ")");
  }
  if (m.submitted != m.delivered + m.bounced + m.expired + live) {
    return fail("submitted ", m.submitted, " != delivered ", m.delivered, " + bounced ", m.bounced, " + expired ",
                m.expired, " + pending ", live);
  }
  uint64_t listed = 0;
  for (uint32_t di = 0; di < m.dests.size(); ++di) {
    const DestState& d = m.dests[di];
    if (d.domain_id >= m.names.size() || d.source_id >= m.names.size()) return fail("destination ", di, " bad name id");
    if (d.policy >= m.dest_policies.size()) return fail("destination ", di, " bad policy index");
    if (d.in_flight != in_flight[di]) return fail("destination ", di, " in_flight ", d.in_flight, " != ", in_flight[di]);
    if (d.scheduled_count != scheduled[di]) return fail("destination ", di, " scheduled count mismatch");
    for (int list = 0; list < 2; ++list) {
      uint32_t s = list == 0 ? d.first_head : d.retry_head;
      const uint32_t want = list == 0 ? d.first_count : d.retry_count;
      uint32_t prev = kNil, n = 0;
      while (s != kNil) {
        if (s >= m.msgs.size() || n > want) return fail("destination ", di, " ready list is broken");
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
    if (di >= m.dests.size() || !m.dests[di].in_ring) return fail("ring holds destination ", di, " not marked in_ring");
    ++ring_n;
  }
  uint64_t marked = 0;
  for (const DestState& d : m.dests) marked += d.in_ring ? 1 : 0;
  if (marked != ring_n) return fail(marked, " destinations marked in_ring, ", ring_n, " in the ring");
  for (uint32_t di = 0; di < m.dests.size(); ++di) {
    const DestState& d = m.dests[di];
    if (d.first_count + d.retry_count > 0 && !d.in_ring && d.wake == kNoTime &&
        d.in_flight == 0 && !d.probe_in_flight) {
      return fail("destination ", di, " has ready messages but nothing will dispatch them");
    }
    if ((d.wake != kNoTime) != m.dest_timers->Contains(di)) return fail("destination ", di, " wake timer mismatch");
  }
  if (absl::Status s = m.msg_timers->CheckInvariants(); !s.ok()) return s;
  return m.dest_timers->CheckInvariants();
}

}  // namespace internal

}  // namespace mailretry
