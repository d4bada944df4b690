// The default scenario and scenario validation (every field, every custom
// profile); the built-in profiles themselves are in sim_profiles.cc.
#include <cmath>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "mailretry/reply/reply.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim {
namespace {

bool Probability(double p) { return std::isfinite(p) && p >= 0.0 && p <= 1.0; }

bool IsTransportKind(int k) {
  return k == static_cast<int>(ReplyKind::kConnectionRefused) ||
         k == static_cast<int>(ReplyKind::kConnectTimeout) ||
         k == static_cast<int>(ReplyKind::kDroppedMidData);
}

absl::Status CheckProfile(const ReceiverProfile& p) {
  auto bad = [&](std::string_view field, std::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("profile \"", p.name, "\": ", std::string(field), " ", std::string(what)));
  };
  if (p.name.empty()) return absl::InvalidArgumentError("profile: empty name");
  const std::pair<const char*, double> probs[] = {
      {"throttle_probability", p.throttle_probability},
      {"overload_probability", p.overload_probability},
      {"random_deferral_probability", p.random_deferral_probability},
      {"refuse_probability", p.refuse_probability},
      {"timeout_probability", p.timeout_probability},
      {"drop_probability", p.drop_probability},
      {"incident_probability", p.incident_probability},
      {"greylist_probability", p.greylist_probability},
      {"mailbox_full_probability", p.mailbox_full_probability},
      {"unknown_user_probability", p.unknown_user_probability},
      {"soft_block_below", p.soft_block_below},
      {"retry_penalty", p.retry_penalty},
  };
  for (const auto& [field, v] : probs) {
    if (!Probability(v)) return bad(field, "must be in [0, 1]");
  }
  if (!std::isfinite(p.recovery_per_hour) || p.recovery_per_hour < 0) {
    return bad("recovery_per_hour", "must be >= 0");
  }
  if (p.maintenance_every < absl::ZeroDuration()) return bad("maintenance_every", "negative");
  if (p.maintenance_every > absl::ZeroDuration() &&
      (p.maintenance_duration <= absl::ZeroDuration() ||
       p.maintenance_duration >= p.maintenance_every)) {
    return bad("maintenance_duration", "must be in (0, maintenance_every)");
  }
  const std::pair<const char*, absl::Duration> nonneg[] = {
      {"maintenance_offset", p.maintenance_offset},
      {"outage_offset", p.outage_offset},
      {"outage_duration", p.outage_duration},
      {"incident_offset", p.incident_offset},
      {"incident_duration", p.incident_duration},
      {"greylist_delay", p.greylist_delay},
      {"mailbox_full_duration", p.mailbox_full_duration},
      {"refuse_latency", p.refuse_latency},
  };
  for (const auto& [field, v] : nonneg) {
    if (v < absl::ZeroDuration()) return bad(field, "negative");
  }
  if (p.connect_timeout <= absl::ZeroDuration()) return bad("connect_timeout", "must be > 0");
  if (p.outage_kind != ReplyKind::kConnectionRefused &&
      p.outage_kind != ReplyKind::kConnectTimeout && p.outage_kind != ReplyKind::kMaintenance) {
    return bad("outage_kind", "must be connection_refused, connect_timeout or maintenance");
  }
  if (p.latency_min < absl::ZeroDuration() || p.latency_max < p.latency_min) {
    return bad("latency_min/latency_max", "need 0 <= latency_min <= latency_max");
  }
  for (int k = 0; k < kNumReplyKinds; ++k) {
    const std::string field =
        absl::StrCat("replies.", std::string(ReplyKindName(static_cast<ReplyKind>(k))));
    if (IsTransportKind(k)) continue;  // free text detail
    absl::StatusOr<Reply> r = ParseReply(p.replies[k]);
    if (!r.ok()) return bad(field, std::string(r.status().message()));
    const int klass = r->code / 100;
    const bool want_2xx = k == static_cast<int>(ReplyKind::kAccepted);
    const bool want_5xx = k == static_cast<int>(ReplyKind::kPtrReject) ||
                          k == static_cast<int>(ReplyKind::kAuthReject) ||
                          k == static_cast<int>(ReplyKind::kUnknownUser);
    if (want_2xx && klass != 2) return bad(field, "must be a 2xx reply");
    if (want_5xx && klass != 5) return bad(field, "must be a 5xx reply");
    if (!want_2xx && !want_5xx && klass != 4) return bad(field, "must be a 4xx reply");
  }
  return absl::OkStatus();
}

}  // namespace

Scenario DefaultScenario() {
  Scenario s;
  s.messages = 100000;
  s.seed = 1;
  s.arrival_window = absl::Hours(24);
  // A working day: quiet night, morning campaign peak, afternoon shoulder.
  // Transactional mail follows the working day; at 09:00 a newsletter goes
  // out (about a quarter of the day's volume within that hour).
  s.hourly_weights = {0.3, 0.2, 0.2, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 12.0, 2.5, 2.0,
                      1.5, 1.5, 2.0, 2.0, 1.5, 1.2, 1.0, 0.8, 0.6, 0.5,  0.4, 0.3};
  // ip-d is a newly added IP whose PTR record was forgotten.
  s.sources = {{"ip-a", 0.95, 1.0}, {"ip-b", 0.9, 1.0}, {"ip-c", 0.85, 1.0}, {"ip-d", 0.45, 1.0}};
  s.sources[3].ptr = false;
  s.named = {
      {"gmail.com", 0.30, "gmail-like"},     {"outlook.com", 0.12, "outlook-like"},
      {"hotmail.com", 0.05, "outlook-like"}, {"yahoo.com", 0.10, "yahoo-like"},
      {"comcast.net", 0.02, "comcast-like"}, {"corp-gateway.example", 0.03, "enterprise-gateway"}};
  s.tail_domains = 2000;
  s.zipf_exponent = 1.0;
  s.tail_profiles = {{"generic-host", 0.55},
                     {"small-host-greylisting", 0.2},
                     {"enterprise-gateway", 0.15},
                     {"ptr-checking-host", 0.07},
                     {"auth-checking-host", 0.03}};
  return s;
}

absl::Status ValidateScenario(const Scenario& s) {
  if (s.messages == 0 || s.messages > (uint64_t{1} << 31)) {
    return absl::InvalidArgumentError("scenario.messages must be in [1, 2^31]");
  }
  if (s.horizon < absl::ZeroDuration() || s.horizon > absl::Hours(24 * 366)) {
    return absl::InvalidArgumentError(
        "scenario.horizon must be in [0, 366d] (0 = until every message has an outcome)");
  }
  // The engine accepts times from the Unix epoch on; a start it would reject
  // must fail here, in check(), not as an internal error halfway through run().
  if (s.start < absl::UnixEpoch() || s.start > absl::FromUnixSeconds(int64_t{1} << 40)) {
    return absl::InvalidArgumentError("scenario.start must be epoch seconds from 0 to 2^40");
  }
  if (s.arrival_window < absl::ZeroDuration() || s.arrival_window > absl::Hours(24 * 60) ||
      (s.horizon > absl::ZeroDuration() && s.arrival_window > s.horizon)) {
    return absl::InvalidArgumentError("scenario.arrival_window must be in [0, 60d] and <= horizon");
  }
  double hw = 0;
  for (double w : s.hourly_weights) {
    if (!std::isfinite(w) || w < 0) {
      return absl::InvalidArgumentError("scenario.hourly_weights must be finite and >= 0");
    }
    hw += w;
  }
  if (!s.hourly_weights.empty() && hw <= 0) {
    return absl::InvalidArgumentError("scenario.hourly_weights must not all be zero");
  }
  if (s.sources.empty() || s.sources.size() > 1024) {
    return absl::InvalidArgumentError("scenario.sources: need 1 to 1024 sources");
  }
  absl::flat_hash_set<std::string> seen;
  double sw = 0;
  for (const Source& src : s.sources) {
    if (src.name.empty()) return absl::InvalidArgumentError("scenario.sources: empty name");
    if (!seen.insert(src.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("scenario.sources: duplicate \"", src.name, "\""));
    }
    if (!Probability(src.reputation)) {
      return absl::InvalidArgumentError(
          absl::StrCat("source \"", src.name, "\": reputation must be in [0, 1]"));
    }
    if (!std::isfinite(src.weight) || src.weight < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("source \"", src.name, "\": weight must be >= 0"));
    }
    sw += src.weight;
  }
  if (sw <= 0) return absl::InvalidArgumentError("scenario.sources: weights must not all be zero");

  absl::flat_hash_set<std::string> profiles;
  for (const ReceiverProfile& p : s.profiles) {
    if (absl::Status st = CheckProfile(p); !st.ok()) return st;
    if (!profiles.insert(p.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("scenario.profiles: duplicate \"", p.name, "\""));
    }
  }
  for (const std::string& n : BuiltinProfileNames()) profiles.insert(n);
  auto known = [&](const std::string& name) { return profiles.contains(name); };

  seen.clear();
  double named = 0;
  for (const NamedDestination& d : s.named) {
    if (d.domain.empty()) return absl::InvalidArgumentError("scenario.destinations: empty domain");
    if (!seen.insert(d.domain).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("scenario.destinations: duplicate \"", d.domain, "\""));
    }
    if (!std::isfinite(d.share) || d.share < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("destination \"", d.domain, "\": share must be >= 0"));
    }
    if (!known(d.profile)) {
      return absl::InvalidArgumentError(
          absl::StrCat("destination \"", d.domain, "\": unknown profile \"", d.profile, "\""));
    }
    named += d.share;
  }
  if (named > 1.0 + 1e-9) {
    return absl::InvalidArgumentError("scenario.destinations: shares add up to more than 1");
  }
  if (s.tail_domains > 10'000'000) {
    return absl::InvalidArgumentError("scenario.tail_domains must be <= 10000000");
  }
  if (named < 1.0 - 1e-9 && s.tail_domains == 0) {
    return absl::InvalidArgumentError(
        "scenario: named shares add up to less than 1 and there is no tail (tail_domains = 0)");
  }
  if (!std::isfinite(s.zipf_exponent) || s.zipf_exponent < 0) {
    return absl::InvalidArgumentError("scenario.zipf_exponent must be >= 0");
  }
  double tw = 0;
  for (const auto& [name, w] : s.tail_profiles) {
    if (!known(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("scenario.tail_profiles: unknown profile \"", name, "\""));
    }
    if (!std::isfinite(w) || w < 0) {
      return absl::InvalidArgumentError("scenario.tail_profiles: weights must be >= 0");
    }
    tw += w;
  }
  if (s.tail_domains > 0 && tw <= 0) {
    return absl::InvalidArgumentError("scenario.tail_profiles: need a profile with weight > 0");
  }
  // Built-ins are valid by construction; checking them also guards edits.
  for (const std::string& n : BuiltinProfileNames()) {
    absl::StatusOr<ReceiverProfile> p = BuiltinProfile(n);
    if (!p.ok()) return p.status();
    if (absl::Status st = CheckProfile(*p); !st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace mailretry::sim
