// mailretry._core.Engine and its result types. Times cross the boundary as
// float seconds since the epoch (mailretry.engine converts datetime). Calls
// whose work grows with input release the GIL; the engine locks itself.
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

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "bindings.h"
#include "config_reader.h"
#include "mailretry/engine/config_toml.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/config_tree.h"
#include "mailretry/policy/retry_policy.h"
#include "status.h"
#include "text_column.h"

namespace py = pybind11;

namespace mailretry::python {
namespace {

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
  d[k.until] = OptFloat(OptSeconds(e.until));
  d[k.status] = Text(e.status);
  d[k.reply] = Text(e.reply);
  d[k.detail] = Text(e.detail);
  d[k.rule] = Text(e.rule);
  d[k.concurrency_limit] = py::int_(e.concurrency_limit);
  d[k.rate_per_second] = OptFloat(e.rate_per_second);
  d[k.categories] = CategoryCounts(e.categories);
  d[k.samples] = StringTuple(e.samples);
  d[k.remediation] = StringTuple(e.remediation);
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

template <typename T>
py::array_t<T> ToArray(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, {sizeof(T)}, heap->data(), owner);
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

}  // namespace

void RegisterEngine(py::module_& m) {
  py::class_<PyLease>(m, "Lease", "A message handed to the sender for one attempt.")
      .def_readonly("msg_id", &PyLease::msg_id)
      .def_readonly("destination", &PyLease::destination)
      .def_readonly("source", &PyLease::source, "'' when the message has no source.")
      .def_readonly("destination_index", &PyLease::destination_index,
                    "Stable id of the (source, destination) pair.")
      .def_readonly("attempt", &PyLease::attempt, "1 for the first attempt.")
      .def_readonly("deadline", &PyLease::deadline,
                    "Report before this time (epoch seconds) or the lease expires.")
      .def("__repr__", [](const PyLease& l) {
        return "<Lease msg_id=" + std::to_string(l.msg_id) + " destination=" + l.destination +
               " attempt=" + std::to_string(l.attempt) + ">";
      });

  py::class_<PyDecision>(m, "Decision", "The engine's answer to a report.")
      .def_readonly("action", &PyDecision::action, "'delivered', 'retry', 'bounced' or 'expired'.")
      .def_readonly("next_attempt", &PyDecision::next_attempt,
                    "Epoch seconds of the next attempt (retry only), else None.")
      .def_readonly("category", &PyDecision::category, "Reply category; None when delivered.")
      .def_readonly("rule", &PyDecision::rule, "Classifier rule that decided the category.")
      .def_readonly("schedule", &PyDecision::schedule, "Retry schedule used.")
      .def_readonly("attempt", &PyDecision::attempt, "The attempt this report was about.")
      .def("__repr__", [](const PyDecision& d) {
        return "<Decision " + d.action + (d.category ? " " + *d.category : std::string()) +
               " attempt=" + std::to_string(d.attempt) + ">";
      });

  py::class_<Engine>(m, "Engine", "The retry engine (see mailretry.Engine for the typed API).")
      .def(py::init([](py::object config, py::object seed) {
             ConfigFile f = ConfigFromMapping(config);
             return ValueOrThrow(
                 Engine::Create(std::move(f.config), ResolveSeed(f.seed, SeedArg(seed))));
           }),
           py::arg("config") = py::none(), py::kw_only(), py::arg("seed") = py::none())
      .def_static(
          "load",
          [](const std::string& path) {
            absl::StatusOr<std::unique_ptr<Engine>> e;
            {
              py::gil_scoped_release release;
              e = Engine::Load(path);
            }
            ThrowIfFileError(e.status());
            return *std::move(e);
          },
          py::arg("path"))
      .def(
          "submit",
          [](Engine& e, uint64_t msg_id, py::handle destination_in, int64_t now_ms,
             py::handle source_in, std::optional<int64_t> not_before_ms) {
            const std::string destination = ToALabels(NameArg(destination_in, "destination"));
            const std::string source = NameArg(source_in, "source");
            std::optional<absl::Time> nb;
            if (not_before_ms) nb = TimeFromMillis(*not_before_ms);
            const absl::Time t = TimeFromMillis(now_ms);
            absl::Status status;
            {
              // A durable engine may wait for fsync here; other threads may run.
              py::gil_scoped_release release;
              status = e.Submit(msg_id, destination, t, source, nb);
            }
            ThrowIfError(status);
          },
          py::arg("msg_id"), py::arg("destination"), py::arg("now_ms"), py::kw_only(),
          py::arg("source") = "", py::arg("not_before_ms") = py::none())
      .def(
          "submit_many",
          [](Engine& e, py::handle msg_ids_in, py::handle destinations, int64_t now_ms,
             py::handle sources) {
            py::array_t<uint64_t> msg_ids = CheckedIds(msg_ids_in, "msg_ids");
            const size_t n = static_cast<size_t>(msg_ids.shape(0));
            TextColumn dest_text = CollectTexts(destinations, "destinations");
            TextColumn source_text;
            if (!sources.is_none()) source_text = CollectTexts(sources, "sources");
            if (dest_text.views.size() != n ||
                (!sources.is_none() && source_text.views.size() != n)) {
              ThrowIfError(absl::InvalidArgumentError(
                  "msg_ids, destinations and sources must have the same length"));
            }
            const absl::Time t = TimeFromMillis(now_ms);
            absl::Status status;
            {
              py::gil_scoped_release release;
              // Interned here: hashing is far cheaper than sorting names in numpy.
              auto intern = [](const std::vector<std::string_view>& views,
                               std::vector<uint32_t>& indices, std::vector<std::string>& names) {
                absl::flat_hash_map<std::string_view, uint32_t> ids;
                indices.reserve(views.size());
                for (std::string_view v : views) {
                  auto [it, inserted] = ids.try_emplace(v, static_cast<uint32_t>(names.size()));
                  if (inserted) names.emplace_back(v);
                  indices.push_back(it->second);
                }
              };
              std::vector<uint32_t> dest_idx, src_idx;
              std::vector<std::string> dest_names, src_names;
              intern(dest_text.views, dest_idx, dest_names);
              for (std::string& name : dest_names) {
                if (!IsAscii(name)) {
                  py::gil_scoped_acquire acquire;  // rare: names with non-ASCII text
                  name = ToALabels(name);
                }
              }
              if (!sources.is_none()) intern(source_text.views, src_idx, src_names);
              status = e.SubmitMany(absl::MakeConstSpan(msg_ids.data(), n), dest_idx, dest_names, t,
                                    src_idx, src_names);
            }
            ThrowIfError(status);
          },
          py::arg("msg_ids"), py::arg("destinations"), py::arg("now_ms"), py::kw_only(),
          py::arg("sources") = py::none())
      .def(
          "advance",
          [](Engine& e, int64_t now_ms) {
            const absl::Time t = TimeFromMillis(now_ms);
            absl::Status status;
            {
              py::gil_scoped_release release;
              status = e.Advance(t);
            }
            ThrowIfError(status);
          },
          py::arg("now_ms"))
      .def(
          "take_ready",
          [](Engine& e, int64_t now_ms, size_t limit) {
            const absl::Time t = TimeFromMillis(now_ms);
            absl::StatusOr<std::vector<Lease>> leases;
            std::vector<PyLease> out;
            {
              py::gil_scoped_release release;
              leases = e.TakeReady(t, limit);
              if (leases.ok()) {
                out.reserve(leases->size());
                for (const Lease& l : *leases) out.push_back(ToPy(l));
              }
            }
            ThrowIfError(leases.status());
            return out;
          },
          py::arg("now_ms"), py::arg("limit"))
      .def(
          "take_ready_arrays",
          [](Engine& e, int64_t now_ms, size_t limit) {
            const absl::Time t = TimeFromMillis(now_ms);
            absl::StatusOr<std::vector<Lease>> leases;
            std::vector<uint64_t> ids;
            std::vector<uint32_t> dest, attempt;
            {
              py::gil_scoped_release release;
              leases = e.TakeReady(t, limit);
              if (leases.ok()) {
                ids.reserve(leases->size());
                dest.reserve(leases->size());
                attempt.reserve(leases->size());
                for (const Lease& l : *leases) {
                  ids.push_back(l.msg_id);
                  dest.push_back(l.destination_index);
                  attempt.push_back(l.attempt);
                }
              }
            }
            ThrowIfError(leases.status());
            return py::make_tuple(ToArray(std::move(ids)), ToArray(std::move(dest)),
                                  ToArray(std::move(attempt)));
          },
          py::arg("now_ms"), py::arg("limit"))
      .def(
          "report",
          [](Engine& e, uint64_t msg_id, uint32_t attempt, int64_t now_ms, std::string_view raw) {
            const absl::Time t = TimeFromMillis(now_ms);
            absl::StatusOr<Decision> d;
            PyDecision out;
            {
              py::gil_scoped_release release;
              d = e.ReportText(msg_id, attempt, t, raw);
              if (d.ok()) out = ToPy(*d);
            }
            ThrowIfError(d.status());
            return out;
          },
          py::arg("msg_id"), py::arg("attempt"), py::arg("now_ms"), py::arg("reply"))
      .def(
          "report_reply",
          [](Engine& e, uint64_t msg_id, uint32_t attempt, int64_t now_ms, const Reply& reply) {
            const absl::Time t = TimeFromMillis(now_ms);
            absl::StatusOr<Decision> d;
            PyDecision out;
            {
              py::gil_scoped_release release;
              d = e.Report(msg_id, attempt, t, reply);
              if (d.ok()) out = ToPy(*d);
            }
            ThrowIfError(d.status());
            return out;
          },
          py::arg("msg_id"), py::arg("attempt"), py::arg("now_ms"), py::arg("reply"))
      .def(
          "report_many",
          [](Engine& e, py::handle msg_ids_in, py::handle attempts_in, py::sequence replies,
             int64_t now_ms) {
            py::array_t<uint64_t> msg_ids = CheckedIds(msg_ids_in, "msg_ids");
            py::array_t<uint64_t> attempts64 = CheckedIds(attempts_in, "attempts");
            if (static_cast<size_t>(msg_ids.shape(0)) != py::len(replies) ||
                attempts64.shape(0) != msg_ids.shape(0)) {
              ThrowIfError(absl::InvalidArgumentError(
                  "msg_ids, attempts and replies must have the same length"));
            }
            std::vector<uint32_t> attempts(static_cast<size_t>(attempts64.shape(0)));
            for (size_t i = 0; i < attempts.size(); ++i) {
              const uint64_t a = attempts64.data()[i];
              if (a == 0 || a > std::numeric_limits<uint32_t>::max()) {
                ThrowIfError(absl::InvalidArgumentError(absl::StrCat(
                    "attempts index ", i, ": ", a, " is not an attempt number (1 or more)")));
              }
              attempts[i] = static_cast<uint32_t>(a);
            }
            std::vector<std::string> texts = StringList(replies, "replies");
            const absl::Time t = TimeFromMillis(now_ms);
            std::vector<absl::StatusOr<Decision>> results;
            std::vector<uint8_t> action, ok, stale;
            std::vector<double> next_attempt;
            std::vector<int16_t> category;
            std::vector<std::pair<size_t, absl::Status>> errors;
            {
              py::gil_scoped_release release;
              results = e.ReportManyText(
                  absl::MakeConstSpan(msg_ids.data(), static_cast<size_t>(msg_ids.shape(0))),
                  attempts, texts, t);
              const size_t n = results.size();
              action.assign(n, 0);
              ok.assign(n, 0);
              stale.assign(n, 0);
              next_attempt.assign(n, std::numeric_limits<double>::quiet_NaN());
              category.assign(n, -1);
              for (size_t i = 0; i < n; ++i) {
                if (!results[i].ok()) {
                  stale[i] = results[i].status().GetPayload(kStaleLeasePayload).has_value();
                  errors.emplace_back(i, results[i].status());
                  continue;
                }
                const Decision& d = *results[i];
                ok[i] = 1;
                action[i] = static_cast<uint8_t>(d.action);
                if (d.next_attempt) next_attempt[i] = Seconds(*d.next_attempt);
                if (d.category) category[i] = static_cast<int16_t>(*d.category);
              }
            }
            py::dict errs;
            for (const auto& [i, status] : errors)
              errs[py::int_(i)] = std::string(status.message());
            py::dict out;
            out["ok"] = ToArray(std::move(ok)).attr("view")("bool");
            out["action"] = ToArray(std::move(action));
            out["next_attempt"] = ToArray(std::move(next_attempt));
            out["category"] = ToArray(std::move(category));
            out["stale"] = ToArray(std::move(stale)).attr("view")("bool");
            out["errors"] = errs;
            return out;
          },
          py::arg("msg_ids"), py::arg("attempts"), py::arg("replies"), py::arg("now_ms"))
      .def("next_wakeup", [](const Engine& e) { return OptSeconds(e.NextWakeup()); })
      .def("drain_events",
           [](Engine& e) {
             // Drained into a vector kept per thread: the engine reuses the
             // previous drain's events for new ones (no allocation per event).
             thread_local std::vector<Event> events;
             {
               py::gil_scoped_release release;
               e.DrainEvents(events);
             }
             py::list out(events.size());
             for (size_t i = 0; i < events.size(); ++i) {
               PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i),
                               EventToDict(events[i]).release().ptr());
             }
             // A huge batch is not kept between calls (the engine keeps at
             // most that many spares anyway).
             if (events.size() > 65536) std::vector<Event>().swap(events);
             return out;
           })
      .def(
          "destination",
          [](const Engine& e, py::handle name, py::handle source) {
            return DestinationToDict(ValueOrThrow(e.GetDestination(
                ToALabels(NameArg(name, "destination")), NameArg(source, "source"))));
          },
          py::arg("name"), py::arg("source") = "")
      .def(
          "concurrency_limit",
          // What a connection pool asks before each attempt: one number, not
          // the whole destination dict (about 10x cheaper from Python).
          [](const Engine& e, py::handle name, py::handle source) {
            return ValueOrThrow(e.ConcurrencyLimit(ToALabels(NameArg(name, "destination")),
                                                   NameArg(source, "source")));
          },
          py::arg("name"), py::arg("source") = "")
      .def("stats", [](const Engine& e) { return StatsToDict(e.Stats()); })
      .def(
          "save",
          [](const Engine& e, const std::string& path) {
            absl::Status status;
            {
              py::gil_scoped_release release;
              status = e.Save(path);
            }
            ThrowIfError(status);
          },
          py::arg("path"))
      .def("check_invariants", [](const Engine& e) { ThrowIfError(e.CheckInvariants()); })
      .def_property_readonly("seed", &Engine::seed);

  m.attr("TIMER_BACKENDS") =
      py::make_tuple(std::string(TimerBackendName(TimerBackend::kWheel)),
                     std::string(TimerBackendName(TimerBackend::kQuadHeap)),
                     std::string(TimerBackendName(TimerBackend::kBoostHeap)));
  m.attr("DECISION_ACTIONS") = py::make_tuple("delivered", "retry", "bounced", "expired");
  py::tuple kinds(kNumEventKinds);
  for (int i = 0; i < kNumEventKinds; ++i) {
    kinds[static_cast<size_t>(i)] = std::string(EventKindName(static_cast<EventKind>(i)));
  }
  m.attr("EVENT_KINDS") = kinds;

  m.def(
      "read_config_file",
      [](const std::string& path) {
        absl::StatusOr<std::string> text;
        {
          py::gil_scoped_release release;
          text = internal::ReadConfigText(path);
        }
        ThrowIfFileError(text.status());
        toml::table root = ValueOrThrow(internal::ParseTomlTree(*text, path));
        ThrowIfError(internal::ConfigFromTree(root).status());
        return PythonFromConfigNode(root);
      },
      py::arg("path"),
      R"doc(A TOML configuration file as dicts, after checking it with the engine's
config grammar (the same as Engine(config)): InvalidInputError for a syntax
error, invalid UTF-8 or a bad key or value; MissingFileError if it does not
exist.)doc");
  m.def(
      "user_rules",
      [](py::iterable specs) {
        std::vector<UserRule> out;
        size_t i = 0;
        for (py::handle spec : specs) {
          const std::string path = absl::StrCat("rules[", i++, "]");
          if (py::isinstance<UserRule>(spec)) {
            out.push_back(spec.cast<UserRule>());
            continue;
          }
          py::list one;
          one.append(spec);
          toml::array list;
          if (!py::isinstance<py::dict>(spec)) FailAt("config", path, "expected a table (dict)");
          list.push_back(ConfigTreeFromMapping(spec, path));
          std::vector<UserRule> parsed = ValueOrThrow(internal::UserRulesFromTree(list, "rules"));
          out.push_back(std::move(parsed[0]));
        }
        return out;
      },
      py::arg("specs"),
      "User rules from mappings (or UserRule objects), checked by the config grammar.");

  m.def(
      "retry_timeline",
      [](py::object policy, uint64_t seed, size_t max_points) {
        py::dict wrapper;
        wrapper["retry"] = policy.is_none() ? py::dict() : policy;
        EngineConfig c = EngineConfigFromMapping(wrapper);
        std::vector<double> out;
        for (absl::Duration d : Timeline(c.retry, seed, max_points)) {
          out.push_back(SecondsFromDuration(d));
        }
        return out;
      },
      py::arg("policy") = py::none(), py::kw_only(), py::arg("seed") = 0,
      py::arg("max_points") = 10000,
      R"doc(Offsets (seconds from submission) of every attempt of a message that
always fails, for a retry policy given as a mapping like the TOML [retry]
table (e.g. {"preset": "postfix"}). The last entry is the attempt after which
it expires.)doc");
}

}  // namespace mailretry::python
