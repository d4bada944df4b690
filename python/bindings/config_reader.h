// File: config_reader.h
// Builds an EngineConfig from a Python mapping (parsed TOML or dicts), with
// every key checked and errors naming the key's path.
#ifndef MAILRETRY_PYTHON_BINDINGS_CONFIG_READER_H_
#define MAILRETRY_PYTHON_BINDINGS_CONFIG_READER_H_

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>

#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
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
    out = static_cast<Int>(UnsignedValue(key, static_cast<unsigned long long>(
                                                  std::numeric_limits<Int>::max())));
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

// None -> defaults. Raises InvalidInputError for unknown keys, wrong types,
// bad durations, and whatever EngineConfig::Validate rejects.
EngineConfig EngineConfigFromMapping(pybind11::handle mapping);

// Seconds (int/float), datetime.timedelta, or a string such as "90s", "15m",
// "4h", "5d", "1h30m". Raises InvalidInputError naming `path`.
absl::Duration ParseDurationValue(pybind11::handle value, const std::string& path);

}  // namespace mailretry::python

#endif  // MAILRETRY_PYTHON_BINDINGS_CONFIG_READER_H_
