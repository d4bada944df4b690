// File: engine/internal/patterns.h
// -----------------------------------------------------------------------------
// The patterns of the engine's configuration: destination patterns ("", "*",
// "*.example.com", "example.com") for policies, overrides and reaction rules,
// and the reply-code patterns of reaction rules ("421", "4xx"; "4.7.28",
// "4.7.*").
#ifndef MAILRETRY_ENGINE_INTERNAL_PATTERNS_H_
#define MAILRETRY_ENGINE_INTERNAL_PATTERNS_H_

#include <optional>
#include <string_view>

#include "mailretry/reply/reply.h"

namespace mailretry::internal {

bool MatchDestination(std::string_view pattern, std::string_view name);
bool ValidDestinationPattern(std::string_view p);
bool ValidCodePattern(std::string_view p);
bool MatchCode(std::string_view p, int code);
bool ParseEnhancedPattern(std::string_view p, int out[3]);
bool MatchEnhanced(std::string_view p, const std::optional<EnhancedCode>& e);

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_INTERNAL_PATTERNS_H_
