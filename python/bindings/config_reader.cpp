// EngineConfig from Python mappings (the parsed TOML, or dicts built in a
// notebook). Every key is checked: an unknown key or a value of the wrong type
// is an InvalidInputError naming its path ("destinations[2].rate.per").
#include "config_reader.h"

#include <cctype>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/engine/engine.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/timers/timer_queue.h"
#include "status.h"

namespace py = pybind11;

namespace mailretry::python {
namespace {

[[noreturn]] void Fail(const std::string& path, const std::string& what) {
  FailAt("config", path, what);
}

using Table = CheckedTable;

template <typename T, typename ParseFn>
std::vector<T> ParseNames(Table& t, const char* key, ParseFn parse) {
  std::vector<T> out;
  size_t i = 0;
  for (py::handle item : t.List(key)) {
    std::string path = absl::StrCat(t.Path(key), "[", i++, "]");
    if (!py::isinstance<py::str>(item)) Fail(path, "expected a string");
    auto parsed = parse(item.cast<std::string>());
    if (!parsed.ok()) Fail(path, std::string(parsed.status().message()));
    out.push_back(*parsed);
  }
  return out;
}

RetryStage ParseStage(py::handle obj, const std::string& path) {
  Table t(obj, path);
  RetryStage stage;
  std::string kind = "fixed";
  t.String("kind", kind);
  if (kind == "fixed" || kind == "F") {
    stage.kind = RetryStage::Kind::kFixed;
  } else if (kind == "geometric" || kind == "G") {
    stage.kind = RetryStage::Kind::kGeometric;
  } else if (kind == "randomized" || kind == "H") {
    stage.kind = RetryStage::Kind::kRandomized;
  } else {
    Fail(t.Path("kind"), "expected fixed, geometric or randomized");
  }
  t.Duration("cutoff", stage.cutoff);
  t.Duration("interval", stage.interval);
  t.Double("multiplier", stage.multiplier);
  t.Finish();
  return stage;
}

RetryPolicy ParseRetryPolicy(py::handle obj, const std::string& path) {
  Table t(obj, path);
  RetryPolicy p = RetryPolicy::Default();
  if (t.Has("preset")) {
    std::string preset;
    t.String("preset", preset);
    auto base = RetryPolicy::Preset(preset);
    if (!base.ok()) Fail(t.Path("preset"), std::string(base.status().message()));
    p = *base;
  }
  if (t.Has("backoff")) {
    std::string b;
    t.String("backoff", b);
    if (b == "exponential") p.backoff = Backoff::kExponential;
    else if (b == "age") p.backoff = Backoff::kAge;
    else if (b == "intervals") p.backoff = Backoff::kIntervals;
    else if (b == "stages") p.backoff = Backoff::kStages;
    else Fail(t.Path("backoff"), "expected exponential, age, intervals or stages");
  }
  t.Duration("initial_delay", p.initial_delay);
  t.Double("multiplier", p.multiplier);
  if (t.Has("max_delay")) {
    py::handle v = t.Get("max_delay");
    if (py::isinstance<py::str>(v) && v.cast<std::string>() == "none") {
      p.max_delay = absl::InfiniteDuration();
    } else {
      t.Duration("max_delay", p.max_delay);
    }
  }
  t.Duration("min_delay", p.min_delay);
  if (t.Has("intervals")) {
    p.intervals.clear();
    size_t i = 0;
    for (py::handle item : t.List("intervals")) {
      p.intervals.push_back(ParseDurationValue(item, absl::StrCat(t.Path("intervals"), "[", i++, "]")));
    }
  }
  if (t.Has("stages")) {
    p.stages.clear();
    size_t i = 0;
    for (py::handle item : t.List("stages")) {
      p.stages.push_back(ParseStage(item, absl::StrCat(t.Path("stages"), "[", i++, "]")));
    }
  }
  if (t.Has("jitter")) {
    std::string j;
    t.String("jitter", j);
    auto parsed = ParseJitter(j);
    if (!parsed.ok()) Fail(t.Path("jitter"), std::string(parsed.status().message()));
    p.jitter = *parsed;
  }
  t.Duration("lifetime", p.lifetime);
  t.Unsigned("max_attempts", p.max_attempts);
  t.Bool("attempt_at_lifetime_end", p.attempt_at_lifetime_end);
  t.Finish();
  return p;
}

RateLimit ParseRate(py::handle obj, const std::string& path) {
  RateLimit rate;
  if (py::isinstance<py::str>(obj)) {
    // "100/1m", "unlimited"
    std::string s = obj.cast<std::string>();
    if (s == "unlimited") return rate;
    auto slash = s.find('/');
    if (slash == std::string::npos) Fail(path, "expected \"N/duration\" such as \"100/1m\"");
    std::string count = s.substr(0, slash);
    if (count.empty() || count.size() > 9 ||
        !std::all_of(count.begin(), count.end(), [](char c) { return std::isdigit(c) != 0; })) {
      Fail(path, "expected \"N/duration\" such as \"100/1m\"");
    }
    rate.messages = static_cast<uint32_t>(std::stoul(count));
    rate.per = ParseDurationValue(py::str(s.substr(slash + 1)), path);
    return rate;
  }
  Table t(obj, path);
  t.Unsigned("messages", rate.messages);
  t.Duration("per", rate.per);
  t.Finish();
  return rate;
}

DestinationPolicy ParseDestinationPolicy(py::handle obj, const std::string& path,
                                         const DestinationPolicy& base) {
  Table t(obj, path);
  DestinationPolicy d = base;
  t.String("destination", d.destination);
  t.String("source", d.source);
  const bool explicit_initial = t.Has("initial_concurrency");
  t.Unsigned("initial_concurrency", d.initial_concurrency);
  t.Unsigned("max_concurrency", d.max_concurrency);
  // "max_concurrency = 3" alone means: never more than 3, so start there too.
  if (!explicit_initial && d.initial_concurrency > d.max_concurrency) {
    d.initial_concurrency = d.max_concurrency;
  }
  t.Unsigned("min_concurrency", d.min_concurrency);
  t.Unsigned("cut_concurrency_to", d.cut_concurrency_to);
  t.Unsigned("raise_concurrency_after", d.raise_concurrency_after);
  t.Duration("concurrency_ceiling_hold", d.concurrency_ceiling_hold);
  if (t.Has("rate")) d.rate = ParseRate(t.Get("rate"), t.Path("rate"));
  if (t.Has("unlimited_cut_to")) {
    d.unlimited_cut_to = ParseRate(t.Get("unlimited_cut_to"), t.Path("unlimited_cut_to"));
  }
  if (t.Has("min_rate")) d.min_rate = ParseRate(t.Get("min_rate"), t.Path("min_rate"));
  t.Duration("rate_quiet_period", d.rate_quiet_period);
  t.Duration("suspend_base", d.suspend_base);
  t.Double("suspend_multiplier", d.suspend_multiplier);
  t.Duration("suspend_max", d.suspend_max);
  t.Unsigned("connection_failures_to_suspend", d.connection_failures_to_suspend);
  t.Finish();
  return d;
}

ScheduleOverride ParseOverride(py::handle obj, const std::string& path) {
  Table t(obj, path);
  ScheduleOverride o;
  t.String("name", o.name);
  t.String("destination", o.destination);
  o.categories = ParseNames<Category>(t, "categories", [](const std::string& s) {
    return ParseCategory(s);
  });
  o.transports = ParseNames<Transport>(t, "transports", [](const std::string& s) {
    return ParseTransport(s);
  });
  if (t.Has("policy")) o.policy = ParseRetryPolicy(t.Get("policy"), t.Path("policy"));
  t.OptionalDuration("fixed_delay", o.fixed_delay);
  t.Bool("advance_backoff", o.advance_backoff);
  t.Unsigned("max_consecutive", o.max_consecutive);
  t.Finish();
  return o;
}

ReactionRule ParseReaction(py::handle obj, const std::string& path) {
  Table t(obj, path);
  ReactionRule r;
  t.String("name", r.name);
  t.String("text", r.text_regex);
  t.String("enhanced", r.enhanced_pattern);
  t.String("code", r.code_pattern);
  t.String("destination", r.destination);
  r.categories = ParseNames<Category>(t, "categories", [](const std::string& s) {
    return ParseCategory(s);
  });
  t.Unsigned("threshold", r.threshold);
  t.Duration("window", r.window);
  t.OptionalDuration("suspend_for", r.suspend_for);
  if (t.Has("set_concurrency")) {
    uint32_t c = 0;
    t.Unsigned("set_concurrency", c);
    r.set_concurrency = c;
  }
  if (t.Has("set_rate")) r.set_rate = ParseRate(t.Get("set_rate"), t.Path("set_rate"));
  t.Duration("duration", r.duration);
  t.Finish();
  return r;
}

StructuralConfig ParseStructural(py::handle obj, const std::string& path) {
  Table t(obj, path);
  StructuralConfig s;
  t.Bool("enabled", s.enabled);
  t.Unsigned("warning_421s", s.warning_421s);
  t.Double("warning_ratio", s.warning_ratio);
  t.Duration("warning_window", s.warning_window);
  t.Unsigned("cycle_messages", s.cycle_messages);
  t.Unsigned("cycle_failures", s.cycle_failures);
  t.Unsigned("evidence_messages", s.evidence_messages);
  t.Duration("evidence_span", s.evidence_span);
  t.Bool("hold", s.hold);
  t.Duration("probe_interval", s.probe_interval);
  t.Finish();
  return s;
}

UserRule ParseUserRule(py::handle obj, const std::string& path) {
  Table t(obj, path);
  UserRule r;
  t.String("name", r.name);
  t.String("text", r.text_regex);
  t.String("enhanced", r.enhanced_pattern);
  t.String("code", r.code_pattern);
  t.String("destination", r.destination);
  std::string category, action;
  t.String("category", category);
  t.String("action", action);
  auto c = ParseCategory(category);
  if (!c.ok()) Fail(t.Path("category"), std::string(c.status().message()));
  auto a = ParseAction(action);
  if (!a.ok()) Fail(t.Path("action"), std::string(a.status().message()));
  r.category = *c;
  r.action = *a;
  if (t.Has("transient")) {
    bool tr = false;
    t.Bool("transient", tr);
    r.transient = tr;
  }
  t.Finish();
  return r;
}

}  // namespace

void FailAt(const std::string& kind, const std::string& path, const std::string& what) {
  ThrowIfError(absl::InvalidArgumentError(absl::StrCat(kind, " ", path, ": ", what)));
  throw std::logic_error("unreachable");  // ThrowIfError always throws for an error
}

CheckedTable::CheckedTable(py::handle obj, std::string path, std::string kind)
    : path_(std::move(path)), kind_(std::move(kind)) {
  if (!py::isinstance<py::dict>(obj)) FailAt(kind_, path_, "expected a table (dict)");
  dict_ = py::reinterpret_borrow<py::dict>(obj);
}

void CheckedTable::Finish() const {
  for (auto item : dict_) {
    const std::string key = py::str(item.first);
    if (!used_.contains(key)) Fail(key, "unknown key");
  }
}

bool CheckedTable::Has(const char* key) {
  used_.insert(key);
  return dict_.contains(key) && !dict_[key].is_none();
}

std::string CheckedTable::Path(const std::string& key) const {
  return path_.empty() ? key : absl::StrCat(path_, ".", key);
}

void CheckedTable::String(const char* key, std::string& out) {
  if (!Has(key)) return;
  py::handle v = Get(key);
  if (!py::isinstance<py::str>(v)) Fail(key, "expected a string");
  out = v.cast<std::string>();
}

void CheckedTable::Bool(const char* key, bool& out) {
  if (!Has(key)) return;
  py::handle v = Get(key);
  if (!py::isinstance<py::bool_>(v)) Fail(key, "expected true or false");
  out = v.cast<bool>();
}

void CheckedTable::Double(const char* key, double& out) {
  if (!Has(key)) return;
  py::handle v = Get(key);
  if (py::isinstance<py::bool_>(v) ||
      !(py::isinstance<py::float_>(v) || py::isinstance<py::int_>(v))) {
    Fail(key, "expected a number");
  }
  out = v.cast<double>();
  if (!std::isfinite(out)) Fail(key, "expected a finite number");
}

unsigned long long CheckedTable::UnsignedValue(const char* key, unsigned long long max) {
  py::handle v = Get(key);
  if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v)) {
    Fail(key, "expected an integer");
  }
  const long long x = v.cast<long long>();
  if (x < 0 || static_cast<unsigned long long>(x) > max) Fail(key, "out of range");
  return static_cast<unsigned long long>(x);
}

void CheckedTable::Duration(const char* key, absl::Duration& out) {
  if (Has(key)) out = ParseDurationValue(Get(key), Path(key));
}

void CheckedTable::OptionalDuration(const char* key, std::optional<absl::Duration>& out) {
  if (Has(key)) out = ParseDurationValue(Get(key), Path(key));
}

std::vector<py::handle> CheckedTable::List(const char* key) {
  std::vector<py::handle> items;
  if (!Has(key)) return items;
  py::handle v = Get(key);
  if (!py::isinstance<py::list>(v) && !py::isinstance<py::tuple>(v)) {
    Fail(key, "expected a list");
  }
  for (py::handle item : v) items.push_back(item);
  return items;
}

absl::Duration ParseDurationValue(py::handle v, const std::string& path) {
  if (py::isinstance<py::bool_>(v)) Fail(path, "expected a duration");
  if (py::isinstance<py::float_>(v) || py::isinstance<py::int_>(v)) {
    double s = v.cast<double>();
    if (!std::isfinite(s)) Fail(path, "expected a finite duration");
    return absl::Seconds(s);
  }
  if (py::hasattr(v, "total_seconds")) {  // datetime.timedelta
    return absl::Seconds(v.attr("total_seconds")().cast<double>());
  }
  if (!py::isinstance<py::str>(v)) Fail(path, "expected a duration (seconds or \"15m\")");
  // "90s", "15m", "4h", "5d", "1h30m", "0.5h"; units: ms s m h d w.
  std::string s = v.cast<std::string>();
  absl::Duration total = absl::ZeroDuration();
  size_t i = 0;
  if (s.empty()) Fail(path, "empty duration");
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (start == i) Fail(path, absl::StrCat("bad duration \"", s, "\" (e.g. \"15m\", \"5d\")"));
    const std::string digits = s.substr(start, i - start);
    char* end = nullptr;
    const double number = std::strtod(digits.c_str(), &end);
    if (end != digits.c_str() + digits.size()) {
      Fail(path, absl::StrCat("bad duration \"", s, "\""));
    }
    size_t unit_start = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
    std::string unit = s.substr(unit_start, i - unit_start);
    double seconds_per_unit;
    if (unit == "ms") seconds_per_unit = 0.001;
    else if (unit == "s") seconds_per_unit = 1;
    else if (unit == "m") seconds_per_unit = 60;
    else if (unit == "h") seconds_per_unit = 3600;
    else if (unit == "d") seconds_per_unit = 86400;
    else if (unit == "w") seconds_per_unit = 7 * 86400;
    else Fail(path, absl::StrCat("bad duration unit in \"", s, "\" (ms, s, m, h, d, w)"));
    total += absl::Seconds(number * seconds_per_unit);
  }
  return total;
}

EngineConfig EngineConfigFromMapping(py::handle obj) {
  EngineConfig config;
  if (obj.is_none()) return config;
  Table t(obj, "");
  if (t.Has("retry")) config.retry = ParseRetryPolicy(t.Get("retry"), "retry");
  size_t i = 0;
  for (py::handle item : t.List("overrides")) {
    config.overrides.push_back(ParseOverride(item, absl::StrCat("overrides[", i++, "]")));
  }
  t.Bool("builtin_overrides", config.builtin_overrides);
  if (t.Has("destination_defaults")) {
    config.destination_defaults = ParseDestinationPolicy(
        t.Get("destination_defaults"), "destination_defaults", config.destination_defaults);
  }
  i = 0;
  for (py::handle item : t.List("destinations")) {
    config.destinations.push_back(ParseDestinationPolicy(
        item, absl::StrCat("destinations[", i++, "]"), config.destination_defaults));
  }
  i = 0;
  for (py::handle item : t.List("reactions")) {
    config.reactions.push_back(ParseReaction(item, absl::StrCat("reactions[", i++, "]")));
  }
  if (t.Has("structural")) config.structural = ParseStructural(t.Get("structural"), "structural");
  if (t.Has("classifier")) {
    Table c(t.Get("classifier"), "classifier");
    i = 0;
    for (py::handle item : c.List("rules")) {
      config.classifier_rules.push_back(ParseUserRule(item, absl::StrCat("classifier.rules[", i++, "]")));
    }
    c.Finish();
  }
  t.Duration("lease_timeout", config.lease_timeout);
  if (t.Has("backend")) {
    std::string b;
    t.String("backend", b);
    auto parsed = ParseTimerBackend(b);
    if (!parsed.ok()) Fail("backend", std::string(parsed.status().message()));
    config.backend = *parsed;
  }
  t.Duration("timer_resolution", config.timer_resolution);
  t.Bool("message_events", config.message_events);
  if (t.Has("max_buffered_events")) {
    uint64_t n = 0;
    t.Unsigned("max_buffered_events", n);
    config.max_buffered_events = static_cast<size_t>(n);
  }
  // Keys that the Python layer consumes (engine construction arguments).
  t.Has("seed");
  t.Finish();
  ThrowIfError(config.Validate());
  return config;
}

}  // namespace mailretry::python
