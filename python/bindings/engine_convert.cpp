// File: engine_convert.cpp
// Conversions for mailretry._core.Engine (engine_convert.h).
#include "engine_convert.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bindings.h"
#include "mailretry/engine/engine.h"
#include "status.h"

namespace mailretry::python {
namespace {

// Event dict keys, created once: building 18 key objects per event was a large
// part of drain_events' cost.
struct EventKeys {
  py::str kind{"kind"}, time{"time"}, msg_id{"msg_id"}, destination{"destination"},
      source{"source"}, category{"category"}, attempt{"attempt"}, next_attempt{"next_attempt"},
      until{"until"}, status{"status"}, reply{"reply"}, detail{"detail"}, rule{"rule"},
      concurrency_limit{"concurrency_limit"}, rate_per_second{"rate_per_second"},
      categories{"categories"}, samples{"samples"}, remediation{"remediation"};
  std::vector<py::str> kind_names;
  std::vector<py::str> category_names;
};

const EventKeys& Keys() {
  // Leaked on purpose: Python objects must not be destroyed after the
  // interpreter finalizes.
  static const EventKeys* keys = [] {
    auto* k = new EventKeys();
    for (int i = 0; i < kNumEventKinds; ++i) {
      k->kind_names.emplace_back(std::string(EventKindName(static_cast<EventKind>(i))));
    }
    for (int i = 0; i < kNumCategories; ++i) {
      k->category_names.emplace_back(std::string(CategoryName(static_cast<Category>(i))));
    }
    return k;
  }();
  return *keys;
}

}  // namespace

// Time crosses into the engine as integer milliseconds since the epoch (the
// engine's own unit; mailretry.engine.to_millis rounds seconds and datetimes
// to it), so a time the engine hands out and gets back is the same integer:
// `take_ready(next_wakeup())` is never one unit short. Outgoing times are
// seconds (ms / 1000, the double nearest to it, which to_millis maps back
// exactly); an engine time that is not a whole millisecond rounds up, so a
// wake-up time is never early.
absl::Time TimeFromMillis(int64_t ms) { return absl::FromUnixMillis(ms); }

int64_t CeilMillis(absl::Time t) {
  const int64_t ms = absl::ToUnixMillis(t);  // floor
  return absl::FromUnixMillis(ms) < t ? ms + 1 : ms;
}

double Seconds(absl::Time t) { return static_cast<double>(CeilMillis(t)) / 1000.0; }

std::optional<double> OptSeconds(const std::optional<absl::Time>& t) {
  if (!t) return std::nullopt;
  return Seconds(*t);
}

// Message ids from an array-like: integer dtypes (negative values rejected),
// or floats that are exact integers in [0, 2^64). Anything else, including
// NaN, 2.9 and booleans, is InvalidInputError naming the first bad index: a
// silent cast turned -1 into 2^64-1 and 5.7 into 5 (and delivered message 5).
py::array_t<uint64_t> CheckedIds(py::handle obj, const char* what) {
  py::module_ np = py::module_::import("numpy");
  py::array arr = np.attr("asarray")(obj);
  if (arr.ndim() != 1)
    ThrowIfError(absl::InvalidArgumentError(absl::StrCat(what, " must be a 1-d array")));
  const size_t n = static_cast<size_t>(arr.shape(0));
  const char kind = arr.dtype().kind();
  auto bad = [&](size_t i, const std::string& why) {
    ThrowIfError(absl::InvalidArgumentError(absl::StrCat(what, " index ", i, ": ", why)));
  };
  if (kind == 'u')
    return py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
  py::array_t<uint64_t> out(static_cast<py::ssize_t>(n));
  uint64_t* dst = out.mutable_data();
  if (kind == 'i') {
    auto src = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    const int64_t* p = src.data();
    for (size_t i = 0; i < n; ++i) {
      if (p[i] < 0) bad(i, absl::StrCat(p[i], " is negative"));
      dst[i] = static_cast<uint64_t>(p[i]);
    }
    return out;
  }
  if (kind == 'f') {
    auto src = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(arr);
    const double* p = src.data();
    for (size_t i = 0; i < n; ++i) {
      const double x = p[i];
      // 2^64 itself is the first double out of range.
      if (!(x >= 0 && x < 18446744073709551616.0) || std::floor(x) != x) {
        bad(i, absl::StrCat(x, " is not an integer from 0 to 2^64-1"));
      }
      dst[i] = static_cast<uint64_t>(x);
    }
    return out;
  }
  if (kind == 'O') {  // e.g. a list mixing huge and small ints
    py::list items = arr.attr("tolist")();
    for (size_t i = 0; i < n; ++i) {
      py::handle v = items[i];
      if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v)) bad(i, "not an integer");
      const unsigned long long x = PyLong_AsUnsignedLongLong(v.ptr());
      if (PyErr_Occurred()) {
        PyErr_Clear();
        bad(i, "out of range 0 to 2^64-1");
      }
      dst[i] = x;
    }
    return out;
  }
  if (n == 0) return out;
  bad(0, absl::StrCat("ids must be integers, got an array of dtype ",
                      std::string(py::str(arr.dtype()))));
  return out;
}

std::optional<std::string> OptCategory(const std::optional<Category>& c) {
  if (!c) return std::nullopt;
  return std::string(CategoryName(*c));
}

PyLease ToPy(const Lease& l) {
  return PyLease{l.msg_id,  std::string(l.destination), std::string(l.source), l.destination_index,
                 l.attempt, Seconds(l.deadline)};
}

PyDecision ToPy(const Decision& d) {
  return PyDecision{std::string(DecisionActionName(d.action)),
                    OptSeconds(d.next_attempt),
                    OptCategory(d.category),
                    std::string(d.rule),
                    std::string(d.schedule),
                    d.attempt};
}

// Tuples, not lists: an empty tuple is a shared constant and tuples of plain
// values are not tracked by the cyclic GC, so a million message events do not
// make every collection walk them.
py::tuple CategoryCounts(const std::vector<CategoryCount>& counts) {
  py::tuple out(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    out[i] = py::make_tuple(std::string(CategoryName(counts[i].category)), counts[i].count);
  }
  return out;
}

// Event text as str without ever raising: the engine's events are drained
// (gone from its buffer) before they are converted, so a decode error here
// would lose every event of the batch. Names are validated UTF-8 on the way
// in; this also covers text from other sources (a C++ caller's transport
// detail) by replacing undecodable bytes.
py::str Text(std::string_view s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (o == nullptr) throw py::error_already_set();  // out of memory
  return py::reinterpret_steal<py::str>(o);
}

py::tuple StringTuple(const std::vector<std::string>& items) {
  py::tuple out(items.size());
  for (size_t i = 0; i < items.size(); ++i) out[i] = Text(items[i]);
  return out;
}

py::object OptFloat(const std::optional<double>& v) {
  return v ? py::object(py::float_(*v)) : py::object(py::none());
}

// Events become plain dicts: easy to log, to filter, and to load into pandas.
py::dict EventToDict(const Event& e) {
  const EventKeys& k = Keys();
  py::dict d;
  d[k.kind] = k.kind_names[static_cast<size_t>(e.kind)];
  d[k.time] = py::float_(Seconds(e.time));
  d[k.msg_id] = e.msg_id ? py::object(py::int_(*e.msg_id)) : py::object(py::none());
  d[k.destination] = Text(e.destination);
  d[k.source] = Text(e.source);
  d[k.category] = e.category ? py::object(k.category_names[static_cast<size_t>(*e.category)])
                             : py::object(py::none());
  d[k.attempt] = py::int_(e.attempt);
  d[k.next_attempt] = OptFloat(OptSeconds(e.next_attempt));
  const DestinationEventInfo& info = e.info();  // empty for message events
  d[k.until] = OptFloat(OptSeconds(info.until));
  d[k.status] = Text(e.status);
  d[k.reply] = Text(e.reply);
  d[k.detail] = Text(e.detail);
  d[k.rule] = Text(e.rule);
  d[k.concurrency_limit] = py::int_(info.concurrency_limit);
  d[k.rate_per_second] = OptFloat(info.rate_per_second);
  d[k.categories] = CategoryCounts(info.categories);
  d[k.samples] = StringTuple(info.samples);
  d[k.remediation] = StringTuple(info.remediation);
  return d;
}

py::dict DestinationToDict(const DestinationInfo& i) {
  py::dict d;
  d["destination"] = i.destination;
  d["source"] = i.source;
  d["index"] = i.index;
  d["health"] = std::string(HealthName(i.health));
  d["held"] = i.held;
  d["concurrency_limit"] = i.concurrency_limit;
  d["max_concurrency"] = i.max_concurrency;
  d["in_flight"] = i.in_flight;
  d["rate_per_second"] = i.rate_per_second;
  d["suspended_until"] = OptSeconds(i.suspended_until);
  d["suspensions"] = i.suspensions;
  d["next_probe"] = OptSeconds(i.next_probe);
  d["ready"] = i.ready;
  d["scheduled"] = i.scheduled;
  d["attempts"] = i.attempts;
  d["delivered"] = i.delivered;
  d["deferred"] = i.deferred;
  d["bounced"] = i.bounced;
  d["expired"] = i.expired;
  d["consecutive_failures"] = i.consecutive_failures;
  d["last_delivery"] = OptSeconds(i.last_delivery);
  d["last_reply"] = i.last_reply;
  d["failure_categories"] = CategoryCounts(i.failure_categories);
  return d;
}

py::dict StatsToDict(const EngineStats& s) {
  py::dict d;
  d["submitted"] = s.submitted;
  d["delivered"] = s.delivered;
  d["bounced"] = s.bounced;
  d["expired"] = s.expired;
  d["pending"] = s.pending;
  d["scheduled"] = s.scheduled;
  d["ready"] = s.ready;
  d["leased"] = s.leased;
  d["attempts"] = s.attempts;
  d["deferred"] = s.deferred;
  d["lease_expirations"] = s.lease_expirations;
  d["destinations"] = s.destinations;
  d["suspended_destinations"] = s.suspended_destinations;
  d["held_destinations"] = s.held_destinations;
  d["events_buffered"] = s.events_buffered;
  d["events_dropped"] = s.events_dropped;
  d["stale_reports"] = s.stale_reports;
  d["clamped_times"] = s.clamped_times;
  d["held_messages"] = s.held_messages;
  d["released_messages"] = s.released_messages;
  d["expired_held"] = s.expired_held;
  d["memory_bytes"] = s.memory_bytes;
  return d;
}

std::vector<std::string> StringList(py::handle seq, const char* what) {
  std::vector<std::string> out;
  for (py::handle item : seq) {
    if (!py::isinstance<py::str>(item)) {
      ThrowIfError(absl::InvalidArgumentError(std::string(what) + " must be strings"));
    }
    out.push_back(item.cast<std::string>());
  }
  return out;
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// The IDNA step of destination normalisation, done here with Python's codec
// (IDNA 2003: nameprep, which maps case and compatibility forms, then
// punycode) because the C++ core takes only A-labels; lowercasing, the
// trailing dot and the checks happen once, in the core. Text that is not
// valid UTF-8 is passed on unchanged for the core to reject.
std::string ToALabels(std::string_view utf8) {
  if (IsAscii(utf8)) return std::string(utf8);
  PyObject* u = PyUnicode_DecodeUTF8(utf8.data(), static_cast<Py_ssize_t>(utf8.size()), "strict");
  if (u == nullptr) {
    PyErr_Clear();
    return std::string(utf8);
  }
  py::str name = py::reinterpret_steal<py::str>(u);
  try {
    return name.attr("encode")("idna").cast<std::string>();
  } catch (py::error_already_set& err) {
    ThrowIfError(absl::InvalidArgumentError(absl::StrCat(
        "destination '",
        std::string(py::str(name.attr("encode")("ascii", "backslashreplace").attr("decode")())),
        "' is not a valid internationalised domain name: ", err.what())));
    throw;
  }
}

// A name argument as UTF-8: str (a lone surrogate is InvalidInputError, not a
// TypeError) or bytes (checked by the core).
std::string NameArg(py::handle v, const char* what) {
  if (py::isinstance<py::bytes>(v)) return v.cast<std::string>();
  if (!py::isinstance<py::str>(v)) {
    ThrowIfError(absl::InvalidArgumentError(absl::StrCat(what, " must be a str")));
  }
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(v.ptr(), &size);
  if (data == nullptr) {
    PyErr_Clear();
    ThrowIfError(
        absl::InvalidArgumentError(absl::StrCat(what, " is not valid text (lone surrogate)")));
  }
  return std::string(data, static_cast<size_t>(size));
}

}  // namespace mailretry::python
