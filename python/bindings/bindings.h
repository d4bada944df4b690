// File: bindings.h
// Registration entry points of mailretry._core, one per area, and the helpers
// they share (time conversion at the boundary).
#ifndef MAILRETRY_PYTHON_BINDINGS_BINDINGS_H_
#define MAILRETRY_PYTHON_BINDINGS_BINDINGS_H_

#include <pybind11/pybind11.h>

#include "absl/time/time.h"

namespace mailretry::python {

void RegisterReply(pybind11::module_& m);
void RegisterClassifier(pybind11::module_& m);
void RegisterEngine(pybind11::module_& m);
void RegisterSim(pybind11::module_& m);
void RegisterJournal(pybind11::module_& m);  // after RegisterEngine: adds to Engine
void RegisterConfig(pybind11::module_& m);

// Python passes time as float seconds since the Unix epoch (the pure-Python
// layer converts datetime). Non-finite values raise InvalidInputError.
absl::Time TimeFromSeconds(double seconds);
double SecondsFromTime(absl::Time t);
absl::Duration DurationFromSeconds(double seconds);
double SecondsFromDuration(absl::Duration d);

}  // namespace mailretry::python

#endif  // MAILRETRY_PYTHON_BINDINGS_BINDINGS_H_
