// File: engine/internal/patterns.h
// -----------------------------------------------------------------------------
// Destination patterns of the engine's configuration ("", "*",
// "*.example.com", "example.com") for policies, overrides and reaction rules.
// Reply-code patterns have one grammar for reactions and the classifier's user
// rules: classify/internal/code_pattern.h.
#ifndef MAILRETRY_ENGINE_INTERNAL_PATTERNS_H_
#define MAILRETRY_ENGINE_INTERNAL_PATTERNS_H_

#include <optional>
#include <string_view>

#include "mailretry/reply/reply.h"

namespace mailretry::internal {

bool MatchDestination(std::string_view pattern, std::string_view name);
bool ValidDestinationPattern(std::string_view p);

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_INTERNAL_PATTERNS_H_
