// File: engine_convert.h
// Conversions between mailretry._core.Engine's Python arguments and results
// and the C++ engine's types (times, ids, leases, decisions, events,
// destination and stats dicts, names), used by register_engine.cpp. Times
// cross as float seconds.
#ifndef MAILRETRY_PYTHON_BINDINGS_ENGINE_CONVERT_H_
#define MAILRETRY_PYTHON_BINDINGS_ENGINE_CONVERT_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "mailretry/engine/engine.h"

namespace py = pybind11;

namespace mailretry::python {

// Python-owned copies of the engine's results (which point into its storage).
struct PyLease {
  uint64_t msg_id;
  std::string destination;
  std::string source;
  uint32_t destination_index;
  uint32_t attempt;
  double deadline;
};

struct PyDecision {
  std::string action;
  std::optional<double> next_attempt;
  std::optional<std::string> category;
  std::string rule;
  std::string schedule;
  uint32_t attempt = 0;
};

absl::Time TimeFromMillis(int64_t ms);
// Engine time to whole milliseconds, rounded up (a wake-up is never early).
int64_t CeilMillis(absl::Time t);
double Seconds(absl::Time t);
std::optional<double> OptSeconds(const std::optional<absl::Time>& t);
// Message ids from an array-like; InvalidInputError names the first bad index.
py::array_t<uint64_t> CheckedIds(py::handle obj, const char* what);
std::optional<std::string> OptCategory(const std::optional<Category>& c);
PyLease ToPy(const Lease& l);
PyDecision ToPy(const Decision& d);
py::tuple CategoryCounts(const std::vector<CategoryCount>& counts);
py::str Text(std::string_view s);
py::tuple StringTuple(const std::vector<std::string>& items);
py::object OptFloat(const std::optional<double>& v);
py::dict EventToDict(const Event& e);
py::dict DestinationToDict(const DestinationInfo& i);
py::dict StatsToDict(const EngineStats& s);
// A list of str (InvalidInputError otherwise).
std::vector<std::string> StringList(py::handle seq, const char* what);
bool IsAscii(std::string_view s);
// The IDNA step of destination normalisation (Python's idna codec).
std::string ToALabels(std::string_view utf8);
// A name argument (str or bytes) as UTF-8.
std::string NameArg(py::handle v, const char* what);

// A vector handed to numpy without a copy (the array owns it).
template <typename T>
py::array_t<T> ToArray(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, {sizeof(T)}, heap->data(), owner);
}

}  // namespace mailretry::python

#endif  // MAILRETRY_PYTHON_BINDINGS_ENGINE_CONVERT_H_
