// File: config_reader.h
// Python mappings into the C++ config grammar (mailretry/engine/config_toml.h),
// which checks every key; and CheckedTable, the key-checking reader of
// simulator scenarios.
#ifndef MAILRETRY_PYTHON_BINDINGS_CONFIG_READER_H_
#define MAILRETRY_PYTHON_BINDINGS_CONFIG_READER_H_

#include <pybind11/pybind11.h>
#include <toml++/toml.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "mailretry/engine/config_toml.h"
#include "mailretry/engine/engine.h"

namespace mailretry::python {

// Raises InvalidInputError "<kind> <path>: <what>" (kind: "config", "scenario").
[[noreturn]] void FailAt(const std::string& kind, const std::string& path, const std::string& what);

// A view of one Python mapping that remembers which keys were read, so that
// leftovers (typos) are reported by Finish() instead of silently ignored.
// Readers leave `out` unchanged when the key is absent or None, and raise
// InvalidInputError naming the key's path for a value of the wrong type.
class CheckedTable {
 public:
  CheckedTable(pybind11::handle obj, std::string path, std::string kind = "config");

  void Finish() const;
  bool Has(const char* key);
  pybind11::handle Get(const char* key) { return dict_[key]; }
  std::string Path(const std::string& key) const;
  [[noreturn]] void Fail(const std::string& key, const std::string& what) const {
    FailAt(kind_, Path(key), what);
  }
  const std::string& kind() const { return kind_; }

  void String(const char* key, std::string& out);
  void Bool(const char* key, bool& out);
  void Double(const char* key, double& out);  // finite numbers only
  template <typename Int>
  void Unsigned(const char* key, Int& out) {
    if (!Has(key)) return;
    out = static_cast<Int>(
        UnsignedValue(key, static_cast<unsigned long long>(std::numeric_limits<Int>::max())));
  }
  void Duration(const char* key, absl::Duration& out);
  void OptionalDuration(const char* key, std::optional<absl::Duration>& out);
  std::vector<pybind11::handle> List(const char* key);

 private:
  unsigned long long UnsignedValue(const char* key, unsigned long long max);

  pybind11::dict dict_;
  std::string path_;
  std::string kind_;
  absl::flat_hash_set<std::string> used_;
};

// A mapping (parsed TOML or dicts) as a toml++ tree, for the one C++ config
// grammar (mailretry/engine/config_toml.h). None values are left out (absent);
// a timedelta becomes seconds; an int beyond int64 or a value of another type
// raises InvalidInputError naming its path.
toml::table ConfigTreeFromMapping(pybind11::handle mapping, const std::string& path);
// None -> defaults. Raises InvalidInputError for unknown keys, wrong types,
// bad durations, and whatever EngineConfig::Validate rejects. `seed` is the
// mapping's top-level seed, if any.
ConfigFile ConfigFromMapping(pybind11::handle mapping);
EngineConfig EngineConfigFromMapping(pybind11::handle mapping);
// A seed argument: None, or an int from 0 to 2^64-1 (else InvalidInputError).
std::optional<uint64_t> SeedArg(pybind11::handle value);
// The config's top-level `seed` and a seed argument: either one, or both when
// equal (InvalidInputError otherwise); 0 when neither is given.
uint64_t ResolveSeed(std::optional<uint64_t> from_config, std::optional<uint64_t> from_argument);
// A parsed TOML tree back as Python dicts and lists.
pybind11::object PythonFromConfigNode(const toml::node& node);

// Seconds (int/float), datetime.timedelta, or a string in the config
// grammar's syntax ("90s", "15m", "1h30m"). Raises InvalidInputError naming `path`.
absl::Duration ParseDurationValue(pybind11::handle value, const std::string& path);

}  // namespace mailretry::python

#endif  // MAILRETRY_PYTHON_BINDINGS_CONFIG_READER_H_
