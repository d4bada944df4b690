// File: register_config.cpp
// The config grammar's scalars for Python code that reads its own table of the
// same file (mailretry.cluster's [cluster]): durations and rates are parsed by
// the one C++ grammar (mailretry/engine/config_toml.h), never re-implemented.
#include <pybind11/pybind11.h>

#include <string>
#include <utility>

#include "absl/time/time.h"
#include "bindings.h"
#include "mailretry/engine/config_toml.h"
#include "mailretry/engine/engine.h"
#include "status.h"

namespace py = pybind11;

namespace mailretry::python {

void RegisterConfig(py::module_& m) {
  m.def(
      "parse_duration",
      [](const std::string& text) {
        return absl::ToDoubleSeconds(ValueOrThrow(ParseConfigDuration(text)));
      },
      py::arg("text"),
      R"doc(Seconds in a config duration such as "90s", "15m" or "1h30m" (units ms,
s, m, h, d, w). InvalidInputError describing the problem otherwise.)doc");
  m.def(
      "parse_rate",
      [](const std::string& text) -> py::object {
        const RateLimit rate = ValueOrThrow(ParseConfigRate(text));
        if (rate.unlimited()) return py::none();
        return py::make_tuple(rate.messages, absl::ToDoubleSeconds(rate.per));
      },
      py::arg("text"),
      R"doc((messages, per_seconds) of a config rate such as "100/1m"; None for
"unlimited". InvalidInputError describing the problem otherwise.)doc");
}

}  // namespace mailretry::python
