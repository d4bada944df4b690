// File: engine/internal/config_table.h
// -----------------------------------------------------------------------------
// The typed, key-checked view of one TOML table that the configuration grammar
// (engine/config_toml.cc) reads every section through. Each reader records the
// first error in a Context and returns a default, so the grammar has neither
// exceptions nor status plumbing on every field; Table::Finish() reports the
// keys nobody read, which is how misspelt options are caught. Not installed:
// it exposes toml++ types.
#ifndef MAILRETRY_ENGINE_INTERNAL_CONFIG_TABLE_H_
#define MAILRETRY_ENGINE_INTERNAL_CONFIG_TABLE_H_

#include <toml++/toml.h>

#include <cmath>
#include <cstdint>
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
#include "mailretry/common/internal/strings.h"
#include "mailretry/engine/config_toml.h"

namespace mailretry::internal::config_grammar {

// Longest duration a config may name: far beyond any queue lifetime, far
// below absl::Duration's range, so that sums of durations cannot overflow.
inline constexpr double kMaxDurationSeconds = 100.0 * 365 * 86400;

struct Context {
  absl::Status status;
  bool ok() const { return status.ok(); }
  void Fail(const std::string& path, absl::string_view what) {
    if (status.ok()) status = absl::InvalidArgumentError(absl::StrCat("config ", path, ": ", what));
  }
};

inline std::string Join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", ToAbsl(key));
}
inline std::string Index(const std::string& path, size_t i) {
  return absl::StrCat(path, "[", i, "]");
}

inline std::string_view TypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "a list";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "a date or time";
  }
}

inline absl::StatusOr<absl::Duration> DurationFromSeconds(double s) {
  if (!std::isfinite(s)) return absl::InvalidArgumentError("expected a finite duration");
  if (s < 0) return absl::InvalidArgumentError("a duration must not be negative");
  if (s > kMaxDurationSeconds)
    return absl::InvalidArgumentError("duration too long (at most 100 years)");
  return absl::Seconds(s);
}

// A table whose keys are checked: Finish() reports the keys nobody read.
class Table {
 public:
  Table(Context& cx, const toml::node* node, std::string path) : cx_(cx), path_(std::move(path)) {
    table_ = node != nullptr ? node->as_table() : nullptr;
    if (node != nullptr && table_ == nullptr) {
      cx_.Fail(path_.empty() ? "(top level)" : path_,
               absl::StrCat("expected a table, got ", ToAbsl(TypeName(*node))));
    }
  }

  const std::string& path() const { return path_; }
  std::string Path(std::string_view key) const { return Join(path_, key); }
  void Fail(std::string_view key, absl::string_view what) { cx_.Fail(Path(key), what); }

  const toml::node* Get(std::string_view key) {
    used_.insert(std::string(key));
    return table_ == nullptr ? nullptr : table_->get(key);
  }
  bool Has(std::string_view key) { return Get(key) != nullptr; }

  void Finish() {
    if (table_ == nullptr) return;
    for (const auto& [k, v] : *table_) {
      if (!used_.contains(std::string(k.str()))) {
        cx_.Fail(Path(k.str()), "unknown key");
        return;
      }
    }
  }

  void String(std::string_view key, std::string& out) {
    const toml::node* n = Get(key);
    if (n == nullptr) return;
    if (const auto* v = n->as_string()) {
      out = v->get();
    } else {
      Fail(key, absl::StrCat("expected a string, got ", ToAbsl(TypeName(*n))));
    }
  }
  void Bool(std::string_view key, bool& out) {
    const toml::node* n = Get(key);
    if (n == nullptr) return;
    if (const auto* v = n->as_boolean()) {
      out = v->get();
    } else {
      Fail(key, "expected true or false");
    }
  }
  void Double(std::string_view key, double& out) {
    const toml::node* n = Get(key);
    if (n == nullptr) return;
    double d = 0;
    if (const auto* f = n->as_floating_point()) {
      d = f->get();
    } else if (const auto* i = n->as_integer()) {
      d = static_cast<double>(i->get());
    } else {
      Fail(key, "expected a number");
      return;
    }
    if (!std::isfinite(d)) {
      Fail(key, "expected a finite number");
      return;
    }
    out = d;
  }
  template <typename Int>
  void Unsigned(std::string_view key, Int& out) {
    const toml::node* n = Get(key);
    if (n == nullptr) return;
    std::optional<uint64_t> v =
        UnsignedValue(*n, Path(key), static_cast<uint64_t>(std::numeric_limits<Int>::max()));
    if (v) out = static_cast<Int>(*v);
  }
  std::optional<uint64_t> UnsignedValue(const toml::node& n, const std::string& path,
                                        uint64_t max) {
    const auto* i = n.as_integer();
    if (i == nullptr) {
      cx_.Fail(path, absl::StrCat("expected an integer, got ", ToAbsl(TypeName(n))));
      return std::nullopt;
    }
    const int64_t x = i->get();
    if (x < 0 || static_cast<uint64_t>(x) > max) {
      cx_.Fail(path, absl::StrCat("out of range (0 to ", max, ")"));
      return std::nullopt;
    }
    return static_cast<uint64_t>(x);
  }
  void Duration(std::string_view key, absl::Duration& out) {
    if (const toml::node* n = Get(key)) {
      if (std::optional<absl::Duration> d = DurationValue(cx_, *n, Path(key))) out = *d;
    }
  }
  void OptionalDuration(std::string_view key, std::optional<absl::Duration>& out) {
    if (const toml::node* n = Get(key)) {
      if (std::optional<absl::Duration> d = DurationValue(cx_, *n, Path(key))) out = *d;
    }
  }
  // The items of a list (empty when absent or not a list).
  std::vector<const toml::node*> List(std::string_view key) {
    std::vector<const toml::node*> out;
    const toml::node* n = Get(key);
    if (n == nullptr) return out;
    const toml::array* a = n->as_array();
    if (a == nullptr) {
      Fail(key, absl::StrCat("expected a list, got ", ToAbsl(TypeName(*n))));
      return out;
    }
    for (const toml::node& item : *a) out.push_back(&item);
    return out;
  }
  template <typename T, typename ParseFn>
  std::vector<T> Names(std::string_view key, ParseFn parse) {
    std::vector<T> out;
    size_t i = 0;
    for (const toml::node* item : List(key)) {
      const std::string path = Index(Path(key), i++);
      const auto* s = item->as_string();
      if (s == nullptr) {
        cx_.Fail(path, "expected a string");
        continue;
      }
      auto parsed = parse(s->get());
      if (!parsed.ok()) {
        cx_.Fail(path, parsed.status().message());
        continue;
      }
      out.push_back(*parsed);
    }
    return out;
  }

  static std::optional<absl::Duration> DurationValue(Context& cx, const toml::node& n,
                                                     const std::string& path) {
    absl::StatusOr<absl::Duration> d =
        absl::InvalidArgumentError("expected a duration (seconds or \"15m\")");
    if (const auto* f = n.as_floating_point()) {
      d = DurationFromSeconds(f->get());
    } else if (const auto* i = n.as_integer()) {
      d = DurationFromSeconds(static_cast<double>(i->get()));
    } else if (const auto* s = n.as_string()) {
      d = ParseConfigDuration(s->get());
    }
    if (!d.ok()) {
      cx.Fail(path, d.status().message());
      return std::nullopt;
    }
    return *d;
  }

  Context& cx() { return cx_; }

 private:
  Context& cx_;
  std::string path_;
  const toml::table* table_ = nullptr;
  absl::flat_hash_set<std::string> used_;
};

}  // namespace mailretry::internal::config_grammar

#endif  // MAILRETRY_ENGINE_INTERNAL_CONFIG_TABLE_H_
