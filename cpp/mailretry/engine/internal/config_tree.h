// File: engine/internal/config_tree.h
// -----------------------------------------------------------------------------
// The configuration grammar of engine/config_toml.h applied to an already
// built toml++ tree. The Python bindings build such a tree from a mapping and
// call these, so that mappings and files go through one validator. Not
// installed: it exposes toml++ types.
#ifndef MAILRETRY_ENGINE_INTERNAL_CONFIG_TREE_H_
#define MAILRETRY_ENGINE_INTERNAL_CONFIG_TREE_H_

#include <toml++/toml.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/engine/config_toml.h"

namespace mailretry::internal {

// TOML text as a tree: InvalidArgument "<origin>:<line>:<column>: ..." for a
// syntax error or invalid UTF-8.
absl::StatusOr<toml::table> ParseTomlTree(std::string_view text, std::string_view origin);
// A config file's text: NotFound, Unavailable, or InvalidArgument over 16 MiB.
absl::StatusOr<std::string> ReadConfigText(const std::string& path);
// InvalidArgument "config <path>: ..." as ParseConfigToml.
absl::StatusOr<ConfigFile> ConfigFromTree(const toml::table& root);
// A list of [[classifier.rules]] tables; `path` names it in errors.
absl::StatusOr<std::vector<UserRule>> UserRulesFromTree(const toml::node& list,
                                                        const std::string& path);

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_INTERNAL_CONFIG_TREE_H_
