// mailretry._core: the private compiled module. Users import `mailretry`.
#include <pybind11/pybind11.h>

#include <cmath>

#include "absl/status/status.h"
#include "bindings.h"
#include "mailretry/common/version.h"
#include "status.h"

namespace py = pybind11;

namespace mailretry::python {

absl::Time TimeFromSeconds(double seconds) {
  if (!std::isfinite(seconds)) {
    ThrowIfError(absl::InvalidArgumentError("time must be a finite number of seconds"));
  }
  return absl::UnixEpoch() + absl::Seconds(seconds);
}

double SecondsFromTime(absl::Time t) { return absl::ToDoubleSeconds(t - absl::UnixEpoch()); }

absl::Duration DurationFromSeconds(double seconds) {
  if (!std::isfinite(seconds)) {
    ThrowIfError(absl::InvalidArgumentError("duration must be a finite number of seconds"));
  }
  return absl::Seconds(seconds);
}

double SecondsFromDuration(absl::Duration d) { return absl::ToDoubleSeconds(d); }

}  // namespace mailretry::python

PYBIND11_MODULE(_core, m) {
  m.doc() = "mailretry._core: compiled core of mailretry (private; import mailretry)";
  m.attr("__version__") = std::string(mailretry::Version());
  mailretry::python::RegisterErrors(m);
  mailretry::python::RegisterReply(m);
  mailretry::python::RegisterClassifier(m);
  mailretry::python::RegisterEngine(m);
  mailretry::python::RegisterSim(m);
  mailretry::python::RegisterJournal(m);
  mailretry::python::RegisterConfig(m);
}
