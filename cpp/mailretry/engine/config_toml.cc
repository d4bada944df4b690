// The configuration grammar (engine/config_toml.h) over toml++'s node tree.
//
// Parsing never stops at the first bad value by unwinding: each reader records
// the first error in the Context and returns a default, and the entry points
// return that error. That keeps the grammar free of exceptions and of status
// plumbing on every field.

#include "mailretry/engine/config_toml.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/common/internal/file_io.h"
#include "mailretry/common/internal/strings.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/config_table.h"
#include "mailretry/engine/internal/config_tree.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/reply/reply.h"
#include "mailretry/timers/timer_queue.h"

namespace mailretry {
namespace internal {
namespace {

using config_grammar::Context;
using config_grammar::DurationFromSeconds;
using config_grammar::Index;
using config_grammar::Join;
using config_grammar::Table;
using config_grammar::TypeName;

RetryStage ParseStage(Context& cx, const toml::node* node, const std::string& path) {
  Table t(cx, node, path);
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
    t.Fail("kind", "expected fixed, geometric or randomized");
  }
  t.Duration("cutoff", stage.cutoff);
  t.Duration("interval", stage.interval);
  t.Double("multiplier", stage.multiplier);
  t.Finish();
  return stage;
}

RetryPolicy ParseRetryPolicy(Context& cx, const toml::node* node, const std::string& path) {
  Table t(cx, node, path);
  RetryPolicy p = RetryPolicy::Default();
  if (t.Has("preset")) {
    std::string preset;
    t.String("preset", preset);
    absl::StatusOr<RetryPolicy> base = RetryPolicy::Preset(preset);
    if (base.ok()) {
      p = *base;
    } else {
      t.Fail("preset", base.status().message());
    }
  }
  if (t.Has("backoff")) {
    std::string b;
    t.String("backoff", b);
    if (b == "exponential") {
      p.backoff = Backoff::kExponential;
    } else if (b == "age") {
      p.backoff = Backoff::kAge;
    } else if (b == "intervals") {
      p.backoff = Backoff::kIntervals;
    } else if (b == "stages") {
      p.backoff = Backoff::kStages;
    } else {
      t.Fail("backoff", "expected exponential, age, intervals or stages");
    }
  }
  t.Duration("initial_delay", p.initial_delay);
  t.Double("multiplier", p.multiplier);
  if (const toml::node* n = t.Get("max_delay")) {
    const auto* s = n->as_string();
    if (s != nullptr && s->get() == "none") {
      p.max_delay = absl::InfiniteDuration();
    } else {
      t.Duration("max_delay", p.max_delay);
    }
  }
  t.Duration("min_delay", p.min_delay);
  if (t.Has("intervals")) {
    p.intervals.clear();
    size_t i = 0;
    for (const toml::node* item : t.List("intervals")) {
      if (auto d = Table::DurationValue(cx, *item, Index(t.Path("intervals"), i++)))
        p.intervals.push_back(*d);
    }
  }
  if (t.Has("stages")) {
    p.stages.clear();
    size_t i = 0;
    for (const toml::node* item : t.List("stages")) {
      p.stages.push_back(ParseStage(cx, item, Index(t.Path("stages"), i++)));
    }
  }
  if (t.Has("jitter")) {
    std::string j;
    t.String("jitter", j);
    absl::StatusOr<Jitter> parsed = ParseJitter(j);
    if (parsed.ok()) {
      p.jitter = *parsed;
    } else {
      t.Fail("jitter", parsed.status().message());
    }
  }
  t.Duration("lifetime", p.lifetime);
  t.Unsigned("max_attempts", p.max_attempts);
  t.Bool("attempt_at_lifetime_end", p.attempt_at_lifetime_end);
  t.Finish();
  return p;
}

RateLimit ParseRate(Context& cx, const toml::node& node, const std::string& path) {
  if (const auto* s = node.as_string()) {
    absl::StatusOr<RateLimit> r = ParseConfigRate(s->get());
    if (!r.ok()) cx.Fail(path, r.status().message());
    return r.value_or(RateLimit{});
  }
  Table t(cx, &node, path);
  RateLimit rate;
  rate.messages = 1;
  if (!t.Has("messages")) t.Fail("messages", "required (or write the rate as \"unlimited\")");
  t.Unsigned("messages", rate.messages);
  if (rate.messages == 0)
    t.Fail("messages", "a rate of 0 messages is not a limit; write \"unlimited\" for none");
  t.Duration("per", rate.per);
  t.Finish();
  return rate;
}

DestinationPolicy ParseDestinationPolicy(Context& cx, const toml::node* node,
                                         const std::string& path, const DestinationPolicy& base) {
  Table t(cx, node, path);
  DestinationPolicy d = base;
  t.String("destination", d.destination);
  t.String("source", d.source);
  const bool explicit_initial = t.Has("initial_concurrency");
  t.Unsigned("initial_concurrency", d.initial_concurrency);
  t.Unsigned("max_concurrency", d.max_concurrency);
  // "max_concurrency = 3" alone means: never more than 3, so start there too.
  if (!explicit_initial && d.initial_concurrency > d.max_concurrency)
    d.initial_concurrency = d.max_concurrency;
  t.Unsigned("min_concurrency", d.min_concurrency);
  t.Unsigned("cut_concurrency_to", d.cut_concurrency_to);
  t.Unsigned("raise_concurrency_after", d.raise_concurrency_after);
  t.Duration("concurrency_ceiling_hold", d.concurrency_ceiling_hold);
  if (const toml::node* n = t.Get("rate")) d.rate = ParseRate(cx, *n, t.Path("rate"));
  if (const toml::node* n = t.Get("unlimited_cut_to")) {
    d.unlimited_cut_to = ParseRate(cx, *n, t.Path("unlimited_cut_to"));
  }
  if (const toml::node* n = t.Get("min_rate")) d.min_rate = ParseRate(cx, *n, t.Path("min_rate"));
  t.Duration("rate_quiet_period", d.rate_quiet_period);
  t.Duration("suspend_base", d.suspend_base);
  t.Double("suspend_multiplier", d.suspend_multiplier);
  t.Duration("suspend_max", d.suspend_max);
  t.Unsigned("connection_failures_to_suspend", d.connection_failures_to_suspend);
  t.Duration("suspend_probe_interval", d.suspend_probe_interval);
  t.Unsigned("capacity_window", d.capacity_window);
  t.Unsigned("capacity_suspend_min", d.capacity_suspend_min);
  t.Bool("partial_throttle_window", d.partial_throttle_window);
  t.Bool("learn_greylist_delay", d.learn_greylist_delay);
  t.Bool("quick_connection_retry", d.quick_connection_retry);
  t.Bool("learn_full_mailbox", d.learn_full_mailbox);
  t.Finish();
  return d;
}

ScheduleOverride ParseOverride(Context& cx, const toml::node* node, const std::string& path) {
  Table t(cx, node, path);
  ScheduleOverride o;
  t.String("name", o.name);
  t.String("destination", o.destination);
  o.categories =
      t.Names<Category>("categories", [](std::string_view s) { return ParseCategory(s); });
  o.transports =
      t.Names<Transport>("transports", [](std::string_view s) { return ParseTransport(s); });
  if (const toml::node* n = t.Get("policy")) o.policy = ParseRetryPolicy(cx, n, t.Path("policy"));
  t.OptionalDuration("fixed_delay", o.fixed_delay);
  t.Bool("advance_backoff", o.advance_backoff);
  t.Unsigned("max_consecutive", o.max_consecutive);
  t.Finish();
  return o;
}

ReactionRule ParseReaction(Context& cx, const toml::node* node, const std::string& path) {
  Table t(cx, node, path);
  ReactionRule r;
  t.String("name", r.name);
  t.String("text", r.text_regex);
  t.String("enhanced", r.enhanced_pattern);
  t.String("code", r.code_pattern);
  t.String("destination", r.destination);
  r.categories =
      t.Names<Category>("categories", [](std::string_view s) { return ParseCategory(s); });
  t.Unsigned("threshold", r.threshold);
  t.Duration("window", r.window);
  t.OptionalDuration("suspend_for", r.suspend_for);
  if (t.Has("set_concurrency")) {
    uint32_t c = 0;
    t.Unsigned("set_concurrency", c);
    r.set_concurrency = c;
  }
  if (const toml::node* n = t.Get("set_rate")) r.set_rate = ParseRate(cx, *n, t.Path("set_rate"));
  t.Duration("duration", r.duration);
  t.Finish();
  return r;
}

StructuralConfig ParseStructural(Context& cx, const toml::node* node, const std::string& path) {
  Table t(cx, node, path);
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
  t.Double("probe_backoff", s.probe_backoff);
  t.Duration("probe_interval_max", s.probe_interval_max);
  t.Unsigned("strong_attempts", s.strong_attempts);
  t.Duration("strong_span", s.strong_span);
  t.Unsigned("sender_destinations", s.sender_destinations);
  t.Bool("early_weak_evidence", s.early_weak_evidence);
  t.Finish();
  return s;
}

UserRule ParseUserRule(Context& cx, const toml::node* node, const std::string& path) {
  Table t(cx, node, path);
  UserRule r;
  for (const char* required : {"name", "category", "action"}) {
    if (!t.Has(required)) t.Fail(required, "required");
  }
  t.String("name", r.name);
  t.String("text", r.text_regex);
  t.String("enhanced", r.enhanced_pattern);
  t.String("code", r.code_pattern);
  t.String("destination", r.destination);
  std::string category, action;
  t.String("category", category);
  t.String("action", action);
  if (t.cx().ok()) {
    absl::StatusOr<Category> c = ParseCategory(category);
    if (c.ok()) {
      r.category = *c;
    } else {
      t.Fail("category", c.status().message());
    }
    absl::StatusOr<Action> a = ParseAction(action);
    if (a.ok()) {
      r.action = *a;
    } else {
      t.Fail("action", a.status().message());
    }
  }
  if (t.Has("transient")) {
    bool tr = false;
    t.Bool("transient", tr);
    r.transient = tr;
  }
  t.Finish();
  return r;
}

}  // namespace

absl::StatusOr<std::vector<UserRule>> UserRulesFromTree(const toml::node& list,
                                                        const std::string& path) {
  Context cx;
  std::vector<UserRule> out;
  const toml::array* a = list.as_array();
  if (a == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("config ", path, ": expected a list of tables"));
  size_t i = 0;
  for (const toml::node& item : *a) out.push_back(ParseUserRule(cx, &item, Index(path, i++)));
  if (!cx.ok()) return cx.status;
  return out;
}

absl::StatusOr<ConfigFile> ConfigFromTree(const toml::table& root) {
  Context cx;
  ConfigFile out;
  EngineConfig& config = out.config;
  Table t(cx, &root, "");
  if (const toml::node* n = t.Get("seed")) {
    out.seed =
        t.UnsignedValue(*n, "seed", static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
  }
  if (const toml::node* n = t.Get("retry")) config.retry = ParseRetryPolicy(cx, n, "retry");
  size_t i = 0;
  for (const toml::node* item : t.List("overrides"))
    config.overrides.push_back(ParseOverride(cx, item, Index("overrides", i++)));
  t.Bool("builtin_overrides", config.builtin_overrides);
  if (const toml::node* n = t.Get("destination_defaults")) {
    config.destination_defaults =
        ParseDestinationPolicy(cx, n, "destination_defaults", config.destination_defaults);
  }
  i = 0;
  for (const toml::node* item : t.List("destinations")) {
    config.destinations.push_back(
        ParseDestinationPolicy(cx, item, Index("destinations", i++), config.destination_defaults));
  }
  i = 0;
  for (const toml::node* item : t.List("reactions"))
    config.reactions.push_back(ParseReaction(cx, item, Index("reactions", i++)));
  if (const toml::node* n = t.Get("structural"))
    config.structural = ParseStructural(cx, n, "structural");
  if (const toml::node* n = t.Get("classifier")) {
    Table c(cx, n, "classifier");
    i = 0;
    for (const toml::node* item : c.List("rules")) {
      config.classifier_rules.push_back(ParseUserRule(cx, item, Index("classifier.rules", i++)));
    }
    c.Finish();
  }
  // [cluster] configures the Python shared-state layer (mailretry.cluster),
  // which checks its own keys: one file configures a node, and the engine
  // only has to let the table through.
  if (const toml::node* n = t.Get("cluster"); n != nullptr && n->as_table() == nullptr) {
    t.Fail("cluster", absl::StrCat("expected a table, got ", internal::ToAbsl(TypeName(*n))));
  }
  t.Duration("lease_timeout", config.lease_timeout);
  if (t.Has("backend")) {
    std::string b;
    t.String("backend", b);
    absl::StatusOr<TimerBackend> parsed = ParseTimerBackend(b);
    if (parsed.ok()) {
      config.backend = *parsed;
    } else {
      t.Fail("backend", parsed.status().message());
    }
  }
  t.Duration("timer_resolution", config.timer_resolution);
  t.Bool("message_events", config.message_events);
  if (t.Has("max_buffered_events")) {
    uint64_t n = 0;
    t.Unsigned("max_buffered_events", n);
    config.max_buffered_events = static_cast<size_t>(n);
  }
  t.Finish();
  if (!cx.ok()) return cx.status;
  if (absl::Status s = config.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", s.message()));
  }
  return out;
}

}  // namespace internal

absl::StatusOr<absl::Duration> ParseConfigDuration(std::string_view s) {
  // "90s", "15m", "4h", "5d", "1h30m", "0.5h", "250ms"; units: ms s m h d w.
  if (s.empty()) return absl::InvalidArgumentError("empty duration");
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("bad duration \"", internal::ToAbsl(s),
                     "\" (a number and a unit: ms, s, m, h, d, w; e.g. \"15m\", \"5d\")"));
  };
  double total = 0;
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = i;
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
    if (start == i || i - start > 32) return bad();
    const std::string digits(s.substr(start, i - start));
    char* end = nullptr;
    const double number = std::strtod(digits.c_str(), &end);
    if (end != digits.c_str() + digits.size()) return bad();
    const size_t unit_start = i;
    while (i < s.size() && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z'))) ++i;
    const std::string_view unit = s.substr(unit_start, i - unit_start);
    double per;
    if (unit == "ms") {
      per = 0.001;
    } else if (unit == "s") {
      per = 1;
    } else if (unit == "m") {
      per = 60;
    } else if (unit == "h") {
      per = 3600;
    } else if (unit == "d") {
      per = 86400;
    } else if (unit == "w") {
      per = 7 * 86400;
    } else {
      return bad();
    }
    total += number * per;
  }
  return internal::DurationFromSeconds(total);
}

absl::StatusOr<RateLimit> ParseConfigRate(std::string_view s) {
  RateLimit rate;
  if (s == "unlimited") return rate;
  const size_t slash = s.find('/');
  const std::string_view count = s.substr(0, slash);
  if (slash == std::string_view::npos || count.empty() || count.size() > 9) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad rate \"", internal::ToAbsl(s),
                     "\" (expected \"N/duration\" such as \"100/1m\", or \"unlimited\")"));
  }
  uint32_t n = 0;
  for (char c : count) {
    if (c < '0' || c > '9') {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad rate \"", internal::ToAbsl(s), "\" (expected \"N/duration\" such as \"100/1m\")"));
    }
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  if (n == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rate \"", internal::ToAbsl(s), "\" allows no messages; write \"unlimited\" for no limit"));
  }
  absl::StatusOr<absl::Duration> per = ParseConfigDuration(s.substr(slash + 1));
  if (!per.ok()) return per.status();
  if (*per <= absl::ZeroDuration())
    return absl::InvalidArgumentError(
        absl::StrCat("rate \"", internal::ToAbsl(s), "\": interval must be positive"));
  rate.messages = n;
  rate.per = *per;
  return rate;
}

namespace internal {

absl::StatusOr<toml::table> ParseTomlTree(std::string_view text, std::string_view origin) {
  // The Debian build of toml++ reports syntax errors only by exception; they
  // are caught here and never leave this function.
  try {
    return toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const toml::source_position pos = e.source().begin;
    return absl::InvalidArgumentError(absl::StrCat(internal::ToAbsl(origin), ":", pos.line, ":",
                                                   pos.column, ": ",
                                                   internal::ToAbsl(e.description())));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(internal::ToAbsl(origin), ": ", e.what()));
  }
}

absl::StatusOr<std::string> ReadConfigText(const std::string& path) {
  // Config files are small; a larger one is a wrong path, not a config.
  return ReadFile(path, "config file", size_t{1} << 24);
}

}  // namespace internal

absl::StatusOr<ConfigFile> ParseConfigToml(std::string_view text, std::string_view origin) {
  absl::StatusOr<toml::table> root = internal::ParseTomlTree(text, origin);
  if (!root.ok()) return root.status();
  return internal::ConfigFromTree(*root);
}

absl::StatusOr<ConfigFile> LoadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = internal::ReadConfigText(path);
  if (!text.ok()) return text.status();
  return ParseConfigToml(*text, path);
}

}  // namespace mailretry
