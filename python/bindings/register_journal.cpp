// The engine's durable mode for Python: Engine.open_durable, Engine.compact,
// Engine.sync and Engine.journal_info, added to the Engine class that
// register_engine.cpp defines (RegisterJournal runs after RegisterEngine).
#include <pybind11/pybind11.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bindings.h"
#include "config_reader.h"
#include "mailretry/engine/durable/journal.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/state.h"
#include "status.h"

namespace py = pybind11;

namespace mailretry::python {

namespace {

JournalOptions::Fsync ParseFsync(const std::string& name) {
  if (name == "always") return JournalOptions::Fsync::kEveryOp;
  if (name == "group") return JournalOptions::Fsync::kGrouped;
  if (name == "never") return JournalOptions::Fsync::kNever;
  ThrowIfError(absl::InvalidArgumentError(
      absl::StrCat("fsync must be 'always', 'group' or 'never', got '", name, "'")));
  return JournalOptions::Fsync::kGrouped;
}

py::dict InfoToDict(const JournalInfo& i) {
  py::dict d;
  d["directory"] = i.directory;
  d["generation"] = i.generation;
  d["records"] = i.records;
  d["bytes"] = i.bytes;
  d["fsyncs"] = i.fsyncs;
  d["compactions"] = i.compactions;
  d["failed_compactions"] = i.failed_compactions;
  d["created"] = i.created;
  d["records_replayed"] = i.records_replayed;
  d["torn_tail_dropped"] = i.torn_tail_dropped;
  return d;
}

}  // namespace

void RegisterJournal(py::module_& m) {
  auto engine = py::reinterpret_borrow<py::class_<Engine>>(m.attr("Engine"));
  engine
      .def_static(
          "open_durable",
          [](const std::string& directory, py::object config, py::object seed,
             const std::string& fsync, double group_interval, uint64_t compact_after_records) {
            JournalOptions o;
            o.compact_after_records = compact_after_records;
            o.fsync = ParseFsync(fsync);
            if (!(group_interval >= 0)) {
              ThrowIfError(absl::InvalidArgumentError("group_interval must be >= 0 seconds"));
            }
            o.group_interval = DurationFromSeconds(group_interval);
            // A reopen uses the saved config and seed. What the caller gave
            // (config and/or seed; None = not given) must match them, so that
            // a changed configuration is an error, never silently ignored.
            o.reopen = JournalOptions::Reopen::kUseSaved;
            ConfigFile f = ConfigFromMapping(config);
            const std::optional<uint64_t> given_seed =
                SeedArg(seed).has_value() || f.seed.has_value()
                    ? std::optional<uint64_t>(ResolveSeed(f.seed, SeedArg(seed)))
                    : std::nullopt;
            const std::string given_config =
                config.is_none() ? std::string() : internal::EncodeConfig(f.config, 0);
            absl::StatusOr<std::unique_ptr<Engine>> e;
            {
              py::gil_scoped_release release;  // replay can take a while
              e = Engine::OpenDurable(directory, std::move(f.config), given_seed.value_or(0), o);
            }
            ThrowIfError(e.status());
            if (!(*e)->journal_info()->created) {
              if (given_seed && *given_seed != (*e)->seed()) {
                ThrowIfError(absl::InvalidArgumentError(absl::StrCat(
                    "journal directory '", directory, "' holds an engine with seed ", (*e)->seed(),
                    " (not ", *given_seed,
                    "); a reopen uses the saved config and seed: pass the same ones, or none")));
              }
              if (!given_config.empty() &&
                  given_config != internal::EncodeConfig((*e)->config(), 0)) {
                ThrowIfError(absl::InvalidArgumentError(
                    absl::StrCat("journal directory '", directory,
                                 "' holds an engine with another configuration; a reopen "
                                 "uses the saved config and seed: pass the same ones, or none")));
              }
            }
            return *std::move(e);
          },
          py::arg("directory"), py::arg("config") = py::none(), py::kw_only(),
          py::arg("seed") = py::none(), py::arg("fsync") = "group",
          py::arg("group_interval") = 0.005, py::arg("compact_after_records") = 0)
      .def("compact",
           [](Engine& e) {
             absl::Status s;
             {
               py::gil_scoped_release release;
               s = e.Compact();
             }
             ThrowIfError(s);
           })
      .def("sync",
           [](Engine& e) {
             absl::Status s;
             {
               py::gil_scoped_release release;
               s = e.Sync();
             }
             ThrowIfError(s);
           })
      .def("journal_info", [](const Engine& e) -> py::object {
        std::optional<JournalInfo> info = e.journal_info();
        if (!info) return py::none();
        return InfoToDict(*info);
      });
}

}  // namespace mailretry::python
