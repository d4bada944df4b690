// mailretry._core.Engine and its result types. Times cross the boundary as
// float seconds since the epoch (mailretry.engine converts datetime). Calls
// whose work grows with input release the GIL; the engine locks itself.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "absl/container/flat_hash_map.h"
#include "bindings.h"
#include "config_reader.h"
#include "mailretry/engine/engine.h"
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

std::optional<double> OptSeconds(const std::optional<absl::Time>& t) {
  if (!t) return std::nullopt;
  return SecondsFromTime(*t);
}

std::optional<std::string> OptCategory(const std::optional<Category>& c) {
  if (!c) return std::nullopt;
  return std::string(CategoryName(*c));
}

PyLease ToPy(const Lease& l) {
  return PyLease{l.msg_id,           std::string(l.destination), std::string(l.source),
                 l.destination_index, l.attempt,                  SecondsFromTime(l.deadline)};
}

PyDecision ToPy(const Decision& d) {
  return PyDecision{std::string(DecisionActionName(d.action)), OptSeconds(d.next_attempt),
                    OptCategory(d.category),                   std::string(d.rule),
                    std::string(d.schedule),                   d.attempt};
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

py::tuple StringTuple(const std::vector<std::string>& items) {
  py::tuple out(items.size());
  for (size_t i = 0; i < items.size(); ++i) out[i] = py::str(items[i]);
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
  d[k.time] = py::float_(SecondsFromTime(e.time));
  d[k.msg_id] = e.msg_id ? py::object(py::int_(*e.msg_id)) : py::object(py::none());
  d[k.destination] = py::str(e.destination.data(), e.destination.size());
  d[k.source] = py::str(e.source.data(), e.source.size());
  d[k.category] = e.category ? py::object(k.category_names[static_cast<size_t>(*e.category)])
                             : py::object(py::none());
  d[k.attempt] = py::int_(e.attempt);
  d[k.next_attempt] = OptFloat(OptSeconds(e.next_attempt));
  d[k.until] = OptFloat(OptSeconds(e.until));
  d[k.status] = py::str(e.status);
  d[k.reply] = py::str(e.reply);
  d[k.detail] = py::str(e.detail);
  d[k.rule] = py::str(e.rule);
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
  d["memory_bytes"] = s.memory_bytes;
  return d;
}

template <typename T>
py::array_t<T> ToArray(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, {sizeof(T)}, heap->data(),
                        owner);
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
      .def(py::init([](py::object config, uint64_t seed) {
             EngineConfig c = EngineConfigFromMapping(config);
             return ValueOrThrow(Engine::Create(std::move(c), seed));
           }),
           py::arg("config") = py::none(), py::kw_only(), py::arg("seed") = 0)
      .def_static(
          "load",
          [](const std::string& path) {
            absl::StatusOr<std::unique_ptr<Engine>> e;
            {
              py::gil_scoped_release release;
              e = Engine::Load(path);
            }
            return ValueOrThrow(std::move(e));
          },
          py::arg("path"))
      .def(
          "submit",
          [](Engine& e, uint64_t msg_id, std::string_view destination, double now,
             std::string_view source, std::optional<double> not_before) {
            std::optional<absl::Time> nb;
            if (not_before) nb = TimeFromSeconds(*not_before);
            const absl::Time t = TimeFromSeconds(now);
            absl::Status status;
            {
              // A durable engine may wait for fsync here; other threads may run.
              py::gil_scoped_release release;
              status = e.Submit(msg_id, destination, t, source, nb);
            }
            ThrowIfError(status);
          },
          py::arg("msg_id"), py::arg("destination"), py::arg("now"), py::kw_only(),
          py::arg("source") = "", py::arg("not_before") = py::none())
      .def(
          "submit_many",
          [](Engine& e, py::array_t<uint64_t, py::array::c_style | py::array::forcecast> msg_ids,
             py::handle destinations, double now, py::handle sources) {
            if (msg_ids.ndim() != 1) {
              ThrowIfError(absl::InvalidArgumentError("msg_ids must be a 1-d array"));
            }
            const size_t n = static_cast<size_t>(msg_ids.shape(0));
            TextColumn dest_text = CollectTexts(destinations, "destinations");
            TextColumn source_text;
            if (!sources.is_none()) source_text = CollectTexts(sources, "sources");
            if (dest_text.views.size() != n ||
                (!sources.is_none() && source_text.views.size() != n)) {
              ThrowIfError(absl::InvalidArgumentError(
                  "msg_ids, destinations and sources must have the same length"));
            }
            const absl::Time t = TimeFromSeconds(now);
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
              if (!sources.is_none()) intern(source_text.views, src_idx, src_names);
              status = e.SubmitMany(absl::MakeConstSpan(msg_ids.data(), n), dest_idx, dest_names,
                                    t, src_idx, src_names);
            }
            ThrowIfError(status);
          },
          py::arg("msg_ids"), py::arg("destinations"), py::arg("now"), py::kw_only(),
          py::arg("sources") = py::none())
      .def(
          "advance",
          [](Engine& e, double now) {
            const absl::Time t = TimeFromSeconds(now);
            absl::Status status;
            {
              py::gil_scoped_release release;
              status = e.Advance(t);
            }
            ThrowIfError(status);
          },
          py::arg("now"))
      .def(
          "take_ready",
          [](Engine& e, double now, size_t limit) {
            const absl::Time t = TimeFromSeconds(now);
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
          py::arg("now"), py::arg("limit"))
      .def(
          "take_ready_arrays",
          [](Engine& e, double now, size_t limit) {
            const absl::Time t = TimeFromSeconds(now);
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
          py::arg("now"), py::arg("limit"))
      .def(
          "report",
          [](Engine& e, uint64_t msg_id, double now, std::string_view raw) {
            const absl::Time t = TimeFromSeconds(now);
            absl::StatusOr<Decision> d;
            PyDecision out;
            {
              py::gil_scoped_release release;
              d = e.ReportText(msg_id, t, raw);
              if (d.ok()) out = ToPy(*d);
            }
            ThrowIfError(d.status());
            return out;
          },
          py::arg("msg_id"), py::arg("now"), py::arg("reply"))
      .def(
          "report_reply",
          [](Engine& e, uint64_t msg_id, double now, const Reply& reply) {
            const absl::Time t = TimeFromSeconds(now);
            absl::StatusOr<Decision> d;
            PyDecision out;
            {
              py::gil_scoped_release release;
              d = e.Report(msg_id, t, reply);
              if (d.ok()) out = ToPy(*d);
            }
            ThrowIfError(d.status());
            return out;
          },
          py::arg("msg_id"), py::arg("now"), py::arg("reply"))
      .def(
          "report_many",
          [](Engine& e, py::array_t<uint64_t, py::array::c_style | py::array::forcecast> msg_ids,
             py::sequence replies, double now) {
            if (msg_ids.ndim() != 1 || static_cast<size_t>(msg_ids.shape(0)) != py::len(replies)) {
              ThrowIfError(absl::InvalidArgumentError(
                  "msg_ids and replies must have the same length"));
            }
            std::vector<std::string> texts = StringList(replies, "replies");
            const absl::Time t = TimeFromSeconds(now);
            std::vector<absl::StatusOr<Decision>> results;
            std::vector<uint8_t> action, ok;
            std::vector<double> next_attempt;
            std::vector<int16_t> category;
            std::vector<std::pair<size_t, absl::Status>> errors;
            {
              py::gil_scoped_release release;
              results = e.ReportManyText(
                  absl::MakeConstSpan(msg_ids.data(), static_cast<size_t>(msg_ids.shape(0))),
                  texts, t);
              const size_t n = results.size();
              action.assign(n, 0);
              ok.assign(n, 0);
              next_attempt.assign(n, std::numeric_limits<double>::quiet_NaN());
              category.assign(n, -1);
              for (size_t i = 0; i < n; ++i) {
                if (!results[i].ok()) {
                  errors.emplace_back(i, results[i].status());
                  continue;
                }
                const Decision& d = *results[i];
                ok[i] = 1;
                action[i] = static_cast<uint8_t>(d.action);
                if (d.next_attempt) next_attempt[i] = SecondsFromTime(*d.next_attempt);
                if (d.category) category[i] = static_cast<int16_t>(*d.category);
              }
            }
            py::dict errs;
            for (const auto& [i, status] : errors) errs[py::int_(i)] = std::string(status.message());
            py::dict out;
            out["ok"] = ToArray(std::move(ok)).attr("view")("bool");
            out["action"] = ToArray(std::move(action));
            out["next_attempt"] = ToArray(std::move(next_attempt));
            out["category"] = ToArray(std::move(category));
            out["errors"] = errs;
            return out;
          },
          py::arg("msg_ids"), py::arg("replies"), py::arg("now"))
      .def("next_wakeup",
           [](const Engine& e) { return OptSeconds(e.NextWakeup()); })
      .def("drain_events",
           [](Engine& e) {
             std::vector<Event> events;
             {
               py::gil_scoped_release release;
               events = e.DrainEvents();
             }
             py::list out;
             for (const Event& ev : events) out.append(EventToDict(ev));
             return out;
           })
      .def(
          "destination",
          [](const Engine& e, std::string_view name, std::string_view source) {
            return DestinationToDict(ValueOrThrow(e.GetDestination(name, source)));
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

  m.attr("DECISION_ACTIONS") = py::make_tuple("delivered", "retry", "bounced", "expired");
  py::tuple kinds(kNumEventKinds);
  for (int i = 0; i < kNumEventKinds; ++i) {
    kinds[static_cast<size_t>(i)] = std::string(EventKindName(static_cast<EventKind>(i)));
  }
  m.attr("EVENT_KINDS") = kinds;

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
