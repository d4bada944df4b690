// mailretry._core simulator functions: scenarios cross as plain dicts (the
// parsed TOML or mailretry.sim's dataclasses as dicts), results come back as
// dicts of NumPy arrays for mailretry.sim to turn into DataFrames. The run
// itself releases the GIL; it takes the GIL back once per simulated hour to
// report progress and to let Ctrl-C stop it.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "bindings.h"
#include "config_reader.h"
#include "mailretry/engine/engine.h"
#include "mailretry/sim/sim.h"
#include "status.h"

namespace py = pybind11;

namespace mailretry::python {
namespace {

[[noreturn]] void Bad(const std::string& path, const std::string& what) {
  FailAt("scenario", path, what);
}

// Scenario tables: the engine config's checked reader, with "scenario" errors.
class Fields : public CheckedTable {
 public:
  Fields(py::handle obj, std::string path) : CheckedTable(obj, std::move(path), "scenario") {}
};

sim::ReceiverProfile ProfileFrom(py::handle obj, const std::string& path) {
  Fields f(obj, path);
  std::string name, base;
  f.String("name", name);
  f.String("base", base);
  if (name.empty()) Bad(f.Path("name"), "required");
  sim::ReceiverProfile p;
  if (!base.empty() || sim::BuiltinProfile(name).ok()) {
    p = ValueOrThrow(sim::BuiltinProfile(base.empty() ? name : base));
  } else {
    p = ValueOrThrow(sim::BuiltinProfile("generic-host"));
  }
  p.name = name;
  f.String("provider", p.provider);
  f.Unsigned("max_connections_per_source", p.max_connections_per_source);
  f.Unsigned("max_per_minute", p.max_per_minute);
  f.Unsigned("max_per_hour", p.max_per_hour);
  f.Bool("ceiling_strict", p.ceiling_strict);
  f.Double("soft_block_below", p.soft_block_below);
  f.Double("throttle_probability", p.throttle_probability);
  f.Double("retry_penalty", p.retry_penalty);
  f.Double("recovery_per_hour", p.recovery_per_hour);
  f.Duration("incident_offset", p.incident_offset);
  f.Duration("incident_duration", p.incident_duration);
  f.Double("incident_probability", p.incident_probability);
  f.Bool("checks_ptr", p.checks_ptr);
  f.Unsigned("ptr_soft_attempts", p.ptr_soft_attempts);
  if (f.Has("checks_auth")) {
    std::string a;
    f.String("checks_auth", a);
    absl::StatusOr<sim::AuthCheck> check = sim::ParseAuthCheck(a);
    if (!check.ok()) Bad(f.Path("checks_auth"), std::string(check.status().message()));
    p.checks_auth = *check;
  }
  f.Unsigned("auth_soft_attempts", p.auth_soft_attempts);
  f.Duration("maintenance_every", p.maintenance_every);
  f.Duration("maintenance_duration", p.maintenance_duration);
  f.Duration("maintenance_offset", p.maintenance_offset);
  f.Duration("outage_offset", p.outage_offset);
  f.Duration("outage_duration", p.outage_duration);
  if (f.Has("outage_kind")) {
    std::string k;
    f.String("outage_kind", k);
    bool found = false;
    for (int i = 0; i < sim::kNumReplyKinds; ++i) {
      if (sim::ReplyKindName(static_cast<sim::ReplyKind>(i)) == k) {
        p.outage_kind = static_cast<sim::ReplyKind>(i);
        found = true;
      }
    }
    if (!found)
      Bad(f.Path("outage_kind"), "expected connection_refused, connect_timeout or maintenance");
  }
  f.Double("overload_probability", p.overload_probability);
  f.Double("random_deferral_probability", p.random_deferral_probability);
  f.Double("refuse_probability", p.refuse_probability);
  f.Double("timeout_probability", p.timeout_probability);
  f.Double("drop_probability", p.drop_probability);
  f.Double("greylist_probability", p.greylist_probability);
  f.Duration("greylist_delay", p.greylist_delay);
  f.Double("mailbox_full_probability", p.mailbox_full_probability);
  f.Duration("mailbox_full_duration", p.mailbox_full_duration);
  f.Double("unknown_user_probability", p.unknown_user_probability);
  f.Duration("latency_min", p.latency_min);
  f.Duration("latency_max", p.latency_max);
  f.Duration("refuse_latency", p.refuse_latency);
  f.Duration("connect_timeout", p.connect_timeout);
  if (f.Has("replies")) {
    Fields r(f.Get("replies"), f.Path("replies"));
    for (int k = 0; k < sim::kNumReplyKinds; ++k) {
      const std::string kname(sim::ReplyKindName(static_cast<sim::ReplyKind>(k)));
      r.String(kname.c_str(), p.replies[k]);
    }
    r.Finish();
  }
  f.Finish();
  return p;
}

sim::Scenario ScenarioFrom(py::handle obj) {
  sim::Scenario s = sim::DefaultScenario();
  if (obj.is_none()) return s;
  Fields f(obj, "");
  f.Unsigned("messages", s.messages);
  f.Unsigned("seed", s.seed);
  if (f.Has("start")) {
    double start = 0;
    f.Double("start", start);
    s.start = TimeFromSeconds(start);
  }
  f.Duration("horizon", s.horizon);
  f.Duration("arrival_window", s.arrival_window);
  f.Bool("reputation_from_retries", s.reputation_from_retries);
  if (f.Has("hourly_weights")) {
    s.hourly_weights.clear();
    size_t i = 0;
    for (py::handle w : f.List("hourly_weights")) {
      const std::string path = absl::StrCat("hourly_weights[", i++, "]");
      if (py::isinstance<py::bool_>(w) ||
          !(py::isinstance<py::float_>(w) || py::isinstance<py::int_>(w))) {
        Bad(path, "expected a number");
      }
      s.hourly_weights.push_back(w.cast<double>());
    }
  }
  if (f.Has("sources")) {
    s.sources.clear();
    size_t i = 0;
    for (py::handle item : f.List("sources")) {
      Fields src(item, absl::StrCat("sources[", i++, "]"));
      sim::Source out;
      src.String("name", out.name);
      src.Double("reputation", out.reputation);
      src.Double("weight", out.weight);
      src.Bool("ptr", out.ptr);
      src.Bool("spf", out.spf);
      src.Bool("dkim", out.dkim);
      src.Bool("dmarc", out.dmarc);
      src.Finish();
      s.sources.push_back(std::move(out));
    }
  }
  if (f.Has("destinations")) {
    s.named.clear();
    size_t i = 0;
    for (py::handle item : f.List("destinations")) {
      Fields d(item, absl::StrCat("destinations[", i++, "]"));
      sim::NamedDestination out;
      d.String("domain", out.domain);
      d.Double("share", out.share);
      d.String("profile", out.profile);
      d.Finish();
      s.named.push_back(std::move(out));
    }
  }
  f.Unsigned("tail_domains", s.tail_domains);
  f.Double("zipf_exponent", s.zipf_exponent);
  if (f.Has("tail_profiles")) {
    py::handle tp = f.Get("tail_profiles");
    if (!py::isinstance<py::dict>(tp)) Bad("tail_profiles", "expected a table of profile = weight");
    s.tail_profiles.clear();
    for (auto item : py::reinterpret_borrow<py::dict>(tp)) {
      const std::string name = py::str(item.first);
      if (py::isinstance<py::bool_>(item.second) ||
          !(py::isinstance<py::float_>(item.second) || py::isinstance<py::int_>(item.second))) {
        Bad(absl::StrCat("tail_profiles.", name), "expected a number");
      }
      s.tail_profiles.emplace_back(name, item.second.cast<double>());
    }
  }
  if (f.Has("profiles")) {
    size_t i = 0;
    for (py::handle item : f.List("profiles")) {
      s.profiles.push_back(ProfileFrom(item, absl::StrCat("profiles[", i++, "]")));
    }
  }
  // Labels for mailretry.sim: checked for type here, so that one place
  // decides what a scenario file may contain.
  for (const char* key : {"name", "description"}) {
    std::string label;
    f.String(key, label);
  }
  if (f.Has("policies")) {
    py::handle pol = f.Get("policies");
    if (!py::isinstance<py::dict>(pol)) Bad("policies", "expected a table of engine-config tables");
    for (auto item : py::reinterpret_borrow<py::dict>(pol)) {
      try {
        (void)EngineConfigFromMapping(item.second);
      } catch (py::error_already_set& e) {
        Bad(absl::StrCat("policies.", std::string(py::str(item.first))),
            std::string(py::str(e.value())));
      }
    }
  }
  f.Finish();
  ThrowIfError(sim::ValidateScenario(s));
  return s;
}

py::dict ProfileToDict(const sim::ReceiverProfile& p) {
  py::dict d;
  d["name"] = p.name;
  d["provider"] = p.provider;
  d["max_connections_per_source"] = p.max_connections_per_source;
  d["max_per_minute"] = p.max_per_minute;
  d["max_per_hour"] = p.max_per_hour;
  d["ceiling_strict"] = p.ceiling_strict;
  d["soft_block_below"] = p.soft_block_below;
  d["throttle_probability"] = p.throttle_probability;
  d["retry_penalty"] = p.retry_penalty;
  d["recovery_per_hour"] = p.recovery_per_hour;
  d["incident_offset"] = SecondsFromDuration(p.incident_offset);
  d["incident_duration"] = SecondsFromDuration(p.incident_duration);
  d["incident_probability"] = p.incident_probability;
  d["checks_ptr"] = p.checks_ptr;
  d["ptr_soft_attempts"] = p.ptr_soft_attempts;
  d["checks_auth"] = std::string(sim::AuthCheckName(p.checks_auth));
  d["auth_soft_attempts"] = p.auth_soft_attempts;
  d["maintenance_every"] = SecondsFromDuration(p.maintenance_every);
  d["maintenance_duration"] = SecondsFromDuration(p.maintenance_duration);
  d["maintenance_offset"] = SecondsFromDuration(p.maintenance_offset);
  d["outage_offset"] = SecondsFromDuration(p.outage_offset);
  d["outage_duration"] = SecondsFromDuration(p.outage_duration);
  d["outage_kind"] = std::string(sim::ReplyKindName(p.outage_kind));
  d["overload_probability"] = p.overload_probability;
  d["random_deferral_probability"] = p.random_deferral_probability;
  d["refuse_probability"] = p.refuse_probability;
  d["timeout_probability"] = p.timeout_probability;
  d["drop_probability"] = p.drop_probability;
  d["greylist_probability"] = p.greylist_probability;
  d["greylist_delay"] = SecondsFromDuration(p.greylist_delay);
  d["mailbox_full_probability"] = p.mailbox_full_probability;
  d["mailbox_full_duration"] = SecondsFromDuration(p.mailbox_full_duration);
  d["unknown_user_probability"] = p.unknown_user_probability;
  d["latency_min"] = SecondsFromDuration(p.latency_min);
  d["latency_max"] = SecondsFromDuration(p.latency_max);
  d["refuse_latency"] = SecondsFromDuration(p.refuse_latency);
  d["connect_timeout"] = SecondsFromDuration(p.connect_timeout);
  py::dict replies;
  for (int k = 0; k < sim::kNumReplyKinds; ++k) {
    replies[py::str(std::string(sim::ReplyKindName(static_cast<sim::ReplyKind>(k))))] =
        p.replies[k];
  }
  d["replies"] = replies;
  return d;
}

py::dict ScenarioToDict(const sim::Scenario& s) {
  py::dict d;
  d["messages"] = s.messages;
  d["seed"] = s.seed;
  d["start"] = SecondsFromTime(s.start);
  d["horizon"] = SecondsFromDuration(s.horizon);
  d["arrival_window"] = SecondsFromDuration(s.arrival_window);
  d["reputation_from_retries"] = s.reputation_from_retries;
  d["hourly_weights"] = s.hourly_weights;
  py::list sources;
  for (const sim::Source& src : s.sources) {
    py::dict x;
    x["name"] = src.name;
    x["reputation"] = src.reputation;
    x["weight"] = src.weight;
    x["ptr"] = src.ptr;
    x["spf"] = src.spf;
    x["dkim"] = src.dkim;
    x["dmarc"] = src.dmarc;
    sources.append(x);
  }
  d["sources"] = sources;
  py::list named;
  for (const sim::NamedDestination& n : s.named) {
    py::dict x;
    x["domain"] = n.domain;
    x["share"] = n.share;
    x["profile"] = n.profile;
    named.append(x);
  }
  d["destinations"] = named;
  d["tail_domains"] = s.tail_domains;
  d["zipf_exponent"] = s.zipf_exponent;
  py::dict tail;
  for (const auto& [name, w] : s.tail_profiles) tail[py::str(name)] = w;
  d["tail_profiles"] = tail;
  py::list profiles;
  for (const sim::ReceiverProfile& p : s.profiles) profiles.append(ProfileToDict(p));
  d["profiles"] = profiles;
  return d;
}

template <typename T>
py::array_t<T> Array(const std::vector<T>& v) {
  return py::array_t<T>(static_cast<py::ssize_t>(v.size()), v.data());
}

py::dict ResultToDict(const sim::Result& r) {
  py::dict out;
  const size_t n = r.msg_outcome.size();
  std::vector<uint8_t> outcome(n);
  for (size_t i = 0; i < n; ++i) outcome[i] = static_cast<uint8_t>(r.msg_outcome[i]);
  py::dict msgs;
  msgs["domain"] = Array(r.msg_domain);
  msgs["source"] = Array(r.msg_source);
  msgs["outcome"] = Array(outcome);
  msgs["submit_s"] = Array(r.msg_submit_s);
  msgs["end_s"] = Array(r.msg_end_s);
  msgs["attempts"] = Array(r.msg_attempts);
  msgs["replies_4xx"] = Array(r.msg_4xx);
  out["messages"] = msgs;
  py::list outcome_names;
  for (int o = 0; o < sim::kNumOutcomes; ++o)
    outcome_names.append(std::string(sim::OutcomeName(static_cast<sim::Outcome>(o))));
  out["outcome_names"] = outcome_names;

  py::dict doms;
  doms["domain"] = r.domains;
  doms["profile"] = r.domain_profile;
  doms["messages"] = Array(r.domain_messages);
  out["domains"] = doms;
  // Per (domain, source) pair, index domain * sources + source.
  py::dict pairs;
  std::vector<uint8_t> truth(r.pair_structural.begin(), r.pair_structural.end());
  pairs["structural"] = Array(truth).attr("astype")("bool");
  pairs["messages"] = Array(r.pair_messages);
  pairs["structural_s"] = Array(r.pair_structural_s);
  pairs["warning_s"] = Array(r.pair_warning_s);
  out["pairs"] = pairs;
  out["sources"] = r.sources;

  const size_t h = r.hours.size();
  std::vector<uint64_t> cols[8];
  for (auto& c : cols) c.resize(h);
  for (size_t i = 0; i < h; ++i) {
    const sim::HourBin& b = r.hours[i];
    cols[0][i] = b.attempts;
    cols[1][i] = b.delivered;
    cols[2][i] = b.bounced;
    cols[3][i] = b.expired;
    cols[4][i] = b.replies_4xx;
    cols[5][i] = b.replies_5xx;
    cols[6][i] = b.in_flight;
    cols[7][i] = b.pending;
  }
  const char* names[8] = {"attempts",    "delivered",   "bounced",   "expired",
                          "replies_4xx", "replies_5xx", "in_flight", "pending"};
  py::dict hours;
  for (int c = 0; c < 8; ++c) hours[names[c]] = Array(cols[c]);
  out["hours"] = hours;

  py::dict kinds;
  for (int k = 0; k < sim::kNumReplyKinds; ++k) {
    kinds[py::str(std::string(sim::ReplyKindName(static_cast<sim::ReplyKind>(k))))] =
        r.reply_kinds[k];
  }
  out["reply_kinds"] = kinds;

  const sim::Summary& s = r.summary;
  py::dict sum;
  sum["messages"] = s.messages;
  sum["delivered"] = s.delivered;
  sum["bounced"] = s.bounced;
  sum["expired"] = s.expired;
  sum["held"] = s.held;
  sum["delivered_pct"] = s.delivered_pct;
  sum["bounced_pct"] = s.bounced_pct;
  sum["expired_pct"] = s.expired_pct;
  sum["held_pct"] = s.held_pct;
  sum["all_p50_s"] = s.all_p50_s;
  sum["all_p95_s"] = s.all_p95_s;
  sum["all_p99_s"] = s.all_p99_s;
  sum["ttd_p50_s"] = s.ttd_p50_s;
  sum["ttd_p95_s"] = s.ttd_p95_s;
  sum["ttd_p99_s"] = s.ttd_p99_s;
  sum["attempts"] = s.attempts;
  sum["replies_4xx"] = s.replies_4xx;
  sum["replies_5xx"] = s.replies_5xx;
  sum["transport_failures"] = s.transport_failures;
  sum["local_deferrals"] = s.local_deferrals;
  sum["attempts_per_delivered"] = s.attempts_per_delivered;
  sum["replies_4xx_per_delivered"] = s.replies_4xx_per_delivered;
  sum["receiver_seconds"] = s.receiver_seconds;
  sum["receiver_seconds_per_delivered"] = s.receiver_seconds_per_delivered;
  sum["peak_connection_utilisation"] = s.peak_connection_utilisation;
  sum["structural_true_positives"] = s.structural_true_positives;
  sum["structural_false_positives"] = s.structural_false_positives;
  sum["structural_false_negatives"] = s.structural_false_negatives;
  sum["structural_true_negatives"] = s.structural_true_negatives;
  sum["structural_precision"] = s.structural_precision;
  sum["structural_recall"] = s.structural_recall;
  sum["end_s"] = s.end_s;
  sum["warning_destinations"] = s.warning_destinations;
  sum["wall_seconds"] = s.wall_seconds;
  out["summary"] = sum;

  py::dict es;
  es["submitted"] = r.engine_stats.submitted;
  es["delivered"] = r.engine_stats.delivered;
  es["bounced"] = r.engine_stats.bounced;
  es["expired"] = r.engine_stats.expired;
  es["pending"] = r.engine_stats.pending;
  es["attempts"] = r.engine_stats.attempts;
  es["deferred"] = r.engine_stats.deferred;
  es["lease_expirations"] = r.engine_stats.lease_expirations;
  es["destinations"] = r.engine_stats.destinations;
  es["events_dropped"] = r.engine_stats.events_dropped;
  out["engine_stats"] = es;
  return out;
}

}  // namespace

void RegisterSim(py::module_& m) {
  m.def(
      "sim_profile_names", [] { return sim::BuiltinProfileNames(); },
      "Names of the built-in receiver profiles.");
  m.def(
      "sim_profile",
      [](const std::string& name) {
        return ProfileToDict(ValueOrThrow(sim::BuiltinProfile(name)));
      },
      py::arg("name"), "A built-in receiver profile as a dict (durations in seconds).");
  m.def(
      "sim_default_scenario", [] { return ScenarioToDict(sim::DefaultScenario()); },
      "The built-in default scenario as a dict (durations in seconds).");
  m.def(
      "sim_check_scenario",
      [](py::handle scenario) { return ScenarioToDict(ScenarioFrom(scenario)); },
      py::arg("scenario"),
      "Validates a scenario dict; returns it completed with defaults. Raises InvalidInputError.");
  m.def(
      "sim_run",
      [](py::handle scenario, py::handle policy, std::optional<py::function> progress) {
        const sim::Scenario s = ScenarioFrom(scenario);
        sim::Policy pol;
        if (py::isinstance<py::str>(policy)) {
          absl::StatusOr<sim::Policy> preset = sim::PresetPolicy(policy.cast<std::string>());
          if (!preset.ok()) {
            ThrowIfError(absl::InvalidArgumentError(preset.status().message()));
          }
          pol = *std::move(preset);
        } else {
          pol.name = "custom";
          pol.engine = EngineConfigFromMapping(policy);
        }
        // Progress and Ctrl-C: take the GIL back about once per simulated hour.
        std::optional<py::error_already_set> pending_error;
        sim::ProgressFn fn = [&](double fraction) {
          py::gil_scoped_acquire gil;
          try {
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            if (progress.has_value()) {
              py::object keep = (*progress)(fraction);
              if (!keep.is_none() && !keep.cast<bool>()) return false;
            }
          } catch (py::error_already_set& e) {
            pending_error.emplace(std::move(e));
            return false;
          }
          return true;
        };
        absl::StatusOr<sim::Result> result;
        {
          py::gil_scoped_release release;
          result = sim::Run(s, pol, fn);
        }
        if (pending_error.has_value()) throw std::move(*pending_error);
        return ResultToDict(ValueOrThrow(std::move(result)));
      },
      py::arg("scenario"), py::arg("policy") = py::none(), py::arg("progress") = py::none(),
      "Runs one simulation under a preset policy name or an engine-config mapping (the engine "
      "alone); returns a dict of NumPy arrays and summaries (see mailretry.sim).");
  m.def(
      "sim_policy_names", [] { return sim::PresetPolicyNames(); },
      "Names of the preset policies, in display order.");
  auto sources_to_list = [](const std::vector<sim::ParamSource>& v) {
    py::list out;
    for (const sim::ParamSource& p : v) {
      py::dict d;
      d["item"] = p.profile;
      d["field"] = p.field;
      d["value"] = p.value;
      d["source"] = p.source;
      d["confidence"] = p.confidence;
      out.append(d);
    }
    return out;
  };
  m.def(
      "sim_explain_profiles", [sources_to_list] { return sources_to_list(sim::ExplainProfiles()); },
      "Where every built-in receiver parameter comes from (list of dicts).");
  m.def(
      "sim_explain_presets", [sources_to_list] { return sources_to_list(sim::ExplainPresets()); },
      "What each preset policy reproduces and where its defaults come from (list of dicts).");
}

}  // namespace mailretry::python
