// File: engine/config_toml.h
// -----------------------------------------------------------------------------
// The configuration grammar: an EngineConfig (and the engine's seed) from a
// TOML document such as examples/mailretry.toml. It is the one validator of
// configuration: the Python bindings convert mappings into the same tree and
// call the same parser, so C++ and Python accept and reject the same files
// with the same messages.
//
//   absl::StatusOr<ConfigFile> f = LoadConfigFile("mailretry.toml");
//   if (f.ok()) engine = Engine::Create(f->config, f->seed.value_or(0));
//
// Grammar (every table's keys are checked; an unknown key, a value of the
// wrong type or an impossible value is InvalidArgument "config <path>: ..."
// naming the key, e.g. "config destinations[2].rate: ..."):
//   durations  seconds (integer or float, >= 0) or a string of number+unit
//              parts: "90s", "15m", "1h30m", "0.5h", "250ms"; units ms s m h d w
//   rates      "N/duration" ("100/1m") with N >= 1, "unlimited", or a table
//              {messages = N, per = duration}. A rate of 0 is an error: it
//              would read as "no messages" but used to mean "no limit".
//   enums      by name: categories, transports, backoff, jitter, timer backend
//   integers   in the range of their field (max_attempts fits uint32, ...)
//   seed       optional top-level non-negative integer
// then EngineConfig::Validate (cross-field rules).
#ifndef MAILRETRY_ENGINE_CONFIG_TOML_H_
#define MAILRETRY_ENGINE_CONFIG_TOML_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailretry/engine/engine.h"

namespace mailretry {

// A parsed configuration file.
struct ConfigFile {
  EngineConfig config;
  std::optional<uint64_t> seed;  // the top-level `seed`, if present
};

// Parses TOML text. `origin` (a file name) prefixes syntax errors.
// InvalidArgument for a syntax error (with line and column), invalid UTF-8,
// or anything the grammar above rejects.
absl::StatusOr<ConfigFile> ParseConfigToml(std::string_view text,
                                           std::string_view origin = "config");

// Reads and parses a file. NotFound if it does not exist, Unavailable if it
// cannot be read, else as ParseConfigToml.
absl::StatusOr<ConfigFile> LoadConfigFile(const std::string& path);

// The scalar grammars, for callers with their own containers.
// InvalidArgument describing the problem (without a path).
absl::StatusOr<absl::Duration> ParseConfigDuration(std::string_view text);
absl::StatusOr<RateLimit> ParseConfigRate(std::string_view text);

}  // namespace mailretry

#endif  // MAILRETRY_ENGINE_CONFIG_TOML_H_
