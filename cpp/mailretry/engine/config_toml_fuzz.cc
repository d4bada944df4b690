// libFuzzer target: the configuration grammar on arbitrary bytes. Whatever
// the text, ParseConfigToml returns InvalidArgument or a configuration that
// Engine::Create accepts (or refuses with InvalidArgument, e.g. a user rule's
// RE2 pattern): the grammar is the one validator, so nothing it accepts may
// crash the engine later. The scalar grammars get the same bytes.
// Build with -DMAILRETRY_FUZZ=ON and clang (./dev fuzz).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "mailretry/engine/config_toml.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/fuzz_support.h"

namespace {

using absl::IsInvalidArgument;
using mailretry::fuzz::Check;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<absl::Duration> d = mailretry::ParseConfigDuration(text);
  Check(d.ok() ? *d >= absl::ZeroDuration() : IsInvalidArgument(d.status()));
  absl::StatusOr<mailretry::RateLimit> r = mailretry::ParseConfigRate(text);
  Check(r.ok() || IsInvalidArgument(r.status()));

  absl::StatusOr<mailretry::ConfigFile> f = mailretry::ParseConfigToml(text, "fuzz.toml");
  if (!f.ok()) {
    Check(IsInvalidArgument(f.status()));
    return 0;
  }
  Check(f->config.Validate().ok());
  absl::StatusOr<std::unique_ptr<mailretry::Engine>> e =
      mailretry::Engine::Create(f->config, f->seed.value_or(0));
  if (!e.ok()) {
    Check(IsInvalidArgument(e.status()));
    return 0;
  }
  // A few calls through the configured engine: one message per configured
  // destination name is enough to reach the per-destination policy.
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  mailretry::Engine& engine = **e;
  uint64_t id = 1;
  Check(engine.Submit(id++, "example.com", now).ok());
  for (const mailretry::DestinationPolicy& p : f->config.destinations) {
    // A policy's destination may be a pattern that is no valid message
    // destination; refusing it is fine, crashing is not.
    const absl::Status s = engine.Submit(id++, p.destination, now);
    Check(s.ok() || IsInvalidArgument(s));
  }
  mailretry::fuzz::ExerciseEngine(engine);
  return 0;
}
