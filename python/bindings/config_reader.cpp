// Python mappings (parsed TOML, or dicts built in a notebook) into the C++
// config grammar (mailretry/engine/config_toml.h), which checks every key and
// value; and CheckedTable, which reads simulator scenarios the same way.
#include "config_reader.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/engine/config_toml.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/config_tree.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/timers/timer_queue.h"
#include "status.h"

namespace py = pybind11;

namespace mailretry::python {
namespace {

[[noreturn]] void Fail(const std::string& path, const std::string& what) {
  FailAt("config", path, what);
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
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (overflow != 0 || x < 0 || static_cast<unsigned long long>(x) > max) Fail(key, "out of range");
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
  absl::StatusOr<absl::Duration> d = ParseConfigDuration(v.cast<std::string>());
  if (!d.ok()) Fail(path, std::string(d.status().message()));
  return *d;
}

namespace {

toml::array ArrayFromPython(py::handle seq, const std::string& path);

// One Python value as a toml++ node, inserted with `put` (into a table or a
// list). TOML's types are the grammar's types; a timedelta becomes seconds,
// which is how the grammar reads a number. Not a template over `put`: the
// recursion through lists would instantiate without end.
void ConvertValue(py::handle v, const std::string& path,
                  const std::function<void(toml::node&&)>& put) {
  if (py::isinstance<py::bool_>(v)) {
    put(toml::value<bool>(v.cast<bool>()));
  } else if (py::isinstance<py::int_>(v)) {
    // Beyond int64 no field can take it: say so here, naming the key.
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    if (overflow != 0) FailAt("config", path, "out of range");
    put(toml::value<int64_t>(static_cast<int64_t>(x)));
  } else if (py::isinstance<py::float_>(v)) {
    put(toml::value<double>(v.cast<double>()));
  } else if (py::isinstance<py::str>(v)) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(v.ptr(), &size);
    if (data == nullptr) {
      PyErr_Clear();
      FailAt("config", path, "not valid text (lone surrogate)");
    }
    put(toml::value<std::string>(std::string(data, static_cast<size_t>(size))));
  } else if (py::isinstance<py::dict>(v)) {
    put(ConfigTreeFromMapping(v, path));
  } else if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
    put(ArrayFromPython(v, path));
  } else if (py::hasattr(v, "total_seconds")) {  // datetime.timedelta
    put(toml::value<double>(v.attr("total_seconds")().cast<double>()));
  } else {
    FailAt("config", path,
           absl::StrCat("unsupported value of type ",
                        std::string(py::str(py::type::of(v).attr("__name__")))));
  }
}

toml::array ArrayFromPython(py::handle seq, const std::string& path) {
  toml::array out;
  size_t i = 0;
  for (py::handle item : seq) {
    ConvertValue(item, absl::StrCat(path, "[", i++, "]"),
                 [&](toml::node&& node) { out.push_back(std::move(node)); });
  }
  return out;
}

}  // namespace

toml::table ConfigTreeFromMapping(py::handle obj, const std::string& path) {
  if (!py::isinstance<py::dict>(obj))
    FailAt("config", path.empty() ? "(top level)" : path, "expected a table (dict)");
  toml::table out;
  for (auto item : py::reinterpret_borrow<py::dict>(obj)) {
    if (!py::isinstance<py::str>(item.first)) FailAt("config", path, "keys must be strings");
    const std::string key = item.first.cast<std::string>();
    if (item.second.is_none()) continue;  // None = absent
    ConvertValue(item.second, path.empty() ? key : absl::StrCat(path, ".", key),
                 [&](toml::node&& node) { out.insert(key, std::move(node)); });
  }
  return out;
}

std::optional<uint64_t> SeedArg(py::handle v) {
  if (v.is_none()) return std::nullopt;
  if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v)) {
    ThrowIfError(absl::InvalidArgumentError("seed must be an integer"));
  }
  const unsigned long long x = PyLong_AsUnsignedLongLong(v.ptr());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    ThrowIfError(absl::InvalidArgumentError("seed must be from 0 to 2^64-1"));
  }
  return x;
}

uint64_t ResolveSeed(std::optional<uint64_t> from_config, std::optional<uint64_t> from_argument) {
  if (from_config && from_argument && *from_config != *from_argument) {
    ThrowIfError(absl::InvalidArgumentError(absl::StrCat(
        "config seed ", *from_config, " conflicts with the seed argument ", *from_argument)));
  }
  return from_argument.value_or(from_config.value_or(0));
}

ConfigFile ConfigFromMapping(py::handle obj) {
  if (obj.is_none()) return ConfigFile{};
  return ValueOrThrow(internal::ConfigFromTree(ConfigTreeFromMapping(obj, "")));
}

EngineConfig EngineConfigFromMapping(py::handle obj) {
  ConfigFile f = ConfigFromMapping(obj);
  return std::move(f.config);
}

py::object PythonFromConfigNode(const toml::node& n) {
  if (const auto* t = n.as_table()) {
    py::dict d;
    for (const auto& [k, v] : *t) d[py::str(std::string(k.str()))] = PythonFromConfigNode(v);
    return d;
  }
  if (const auto* a = n.as_array()) {
    py::list l;
    for (const toml::node& item : *a) l.append(PythonFromConfigNode(item));
    return l;
  }
  if (const auto* s = n.as_string()) return py::str(s->get());
  if (const auto* i = n.as_integer()) return py::int_(i->get());
  if (const auto* f = n.as_floating_point()) return py::float_(f->get());
  if (const auto* b = n.as_boolean()) return py::bool_(b->get());
  // Dates and times: no key takes one (the grammar rejected them already).
  return py::none();
}

}  // namespace mailretry::python
