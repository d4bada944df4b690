// File: config_reader.h
// Builds an EngineConfig from a Python mapping (parsed TOML or dicts), with
// every key checked and errors naming the key's path.
#ifndef MAILRETRY_PYTHON_BINDINGS_CONFIG_READER_H_
#define MAILRETRY_PYTHON_BINDINGS_CONFIG_READER_H_

#include <string>

#include <pybind11/pybind11.h>

#include "absl/time/time.h"
#include "mailretry/engine.h"

namespace mailretry::python {

// None -> defaults. Raises InvalidInputError for unknown keys, wrong types,
// bad durations, and whatever EngineConfig::Validate rejects.
EngineConfig EngineConfigFromMapping(pybind11::handle mapping);

// Seconds (int/float), datetime.timedelta, or a string such as "90s", "15m",
// "4h", "5d", "1h30m". Raises InvalidInputError naming `path`.
absl::Duration ParseDurationValue(pybind11::handle value, const std::string& path);

}  // namespace mailretry::python

#endif  // MAILRETRY_PYTHON_BINDINGS_CONFIG_READER_H_
