// mailretry._core.Engine and its result types. Times cross the boundary as
// float seconds since the epoch (mailretry.engine converts datetime). Calls
// whose work grows with input release the GIL; the engine locks itself.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "bindings.h"
#include "config_reader.h"
#include "engine_convert.h"
#include "mailretry/engine/config_toml.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/config_tree.h"
#include "mailretry/policy/retry_policy.h"
#include "status.h"
#include "text_column.h"

namespace py = pybind11;

namespace mailretry::python {
namespace {

// One report: the engine decides with the GIL released, and the answer is
// converted there too. `decide` returns the engine's StatusOr<Decision>.
template <typename Decide>
PyDecision ReportOne(Decide&& decide) {
  absl::StatusOr<Decision> d;
  PyDecision out;
  {
    py::gil_scoped_release release;
    d = decide();
    if (d.ok()) out = ToPy(*d);
  }
  ThrowIfError(d.status());
  return out;
}

// What drain_events and poll drain into, one vector per thread: the engine
// reuses the previous drain's events for new ones (no allocation per event).
std::vector<Event>& DrainBuffer() {
  thread_local std::vector<Event> events;
  return events;
}

// Held from a drain until its events are converted: an event's texts live in
// the engine only until its next drain (engine.h), and another thread may
// drain the same engine while this one converts (the GIL is released for the
// drain, and converting can run Python code, a finalizer, that switches
// threads). One lock for all engines: a drain is a few swaps. Recursive, so
// that such a finalizer draining another engine cannot deadlock.
std::recursive_mutex& DrainMutex() {
  static std::recursive_mutex mu;
  return mu;
}

// The drained events as a list of dicts. A huge batch's vector is not kept
// between calls: each thread's buffer stays small while it is idle.
py::list EventList(std::vector<Event>& events) {
  py::list out(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), EventToDict(events[i]).release().ptr());
  }
  if (events.size() > 65536) std::vector<Event>().swap(events);
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
            return ReportOne(
                [&] { return e.ReportText(msg_id, attempt, TimeFromMillis(now_ms), raw); });
          },
          py::arg("msg_id"), py::arg("attempt"), py::arg("now_ms"), py::arg("reply"))
      .def(
          "report_lease",
          // report() for a Lease object and a reply text: the fields are read
          // here instead of through two attribute calls from Python.
          [](Engine& e, const PyLease& lease, int64_t now_ms, std::string_view raw) {
            return ReportOne([&] {
              return e.ReportText(lease.msg_id, lease.attempt, TimeFromMillis(now_ms), raw);
            });
          },
          py::arg("lease"), py::arg("now_ms"), py::arg("reply"))
      .def(
          "report_reply",
          [](Engine& e, uint64_t msg_id, uint32_t attempt, int64_t now_ms, const Reply& reply) {
            return ReportOne(
                [&] { return e.Report(msg_id, attempt, TimeFromMillis(now_ms), reply); });
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
             std::vector<Event>& events = DrainBuffer();
             std::unique_lock<std::recursive_mutex> lock(DrainMutex(), std::defer_lock);
             {
               py::gil_scoped_release release;  // not held while waiting for the lock
               lock.lock();
               e.DrainEvents(events);
             }
             return EventList(events);
           })
      .def(
          "poll",
          // One loop turn of a driver in one call: take_ready (or advance,
          // when limit is 0), drain_events, next_wakeup. Each call from
          // Python costs a few microseconds in a busy process (the caches
          // are cold between a driver's turns), more than the work of the
          // three when little is due.
          [](Engine& e, int64_t now_ms, size_t limit) {
            const absl::Time t = TimeFromMillis(now_ms);
            std::vector<Event>& events = DrainBuffer();
            absl::Status status;
            std::vector<PyLease> out;
            std::optional<absl::Time> wakeup;
            std::unique_lock<std::recursive_mutex> lock(DrainMutex(), std::defer_lock);
            {
              py::gil_scoped_release release;
              if (limit == 0) {
                status = e.Advance(t);
              } else {
                absl::StatusOr<std::vector<Lease>> leases = e.TakeReady(t, limit);
                status = leases.status();
                if (leases.ok()) {
                  out.reserve(leases->size());
                  for (const Lease& l : *leases) out.push_back(ToPy(l));
                }
              }
              if (status.ok()) {
                lock.lock();
                e.DrainEvents(events);
                wakeup = e.NextWakeup();
              }
            }
            ThrowIfError(status);
            return py::make_tuple(py::cast(std::move(out)), EventList(events),
                                  py::cast(OptSeconds(wakeup)));
          },
          py::arg("now_ms"), py::arg("limit"))
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
      .def("limits_generation", &Engine::LimitsGeneration,
           "Changes whenever a destination's concurrency limit may have changed.")
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
