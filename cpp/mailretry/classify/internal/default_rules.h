// File: classify/internal/default_rules.h
// -----------------------------------------------------------------------------
// The built-in classifier rule table, in priority order (first match wins),
// in layers that the rule names show ("default:<layer>/<rule>"):
//   provider/, mta/   provider markers and MTA/gateway stock wordings;
//   phrase/, words/, intl/   phrase families: specific phrases, word classes
//                     (a subject word and a state word in any order), and
//                     non-English stock wordings;
//   enhanced/         RFC 3463 details that name a cause;
//   generic/ (and phrase/address-rejected, busy, maintenance)   phrases that
//                     say little, below the specific enhanced codes;
//   enhanced/ (subjects), code/   RFC 3463 subjects, RFC 5321 basic codes.
// Specific evidence comes before generic evidence. User rules (checked before
// this table) and transport outcomes are decided in classifier.cc.
// Internal; Classifier compiles it once.
#ifndef MAILRETRY_CLASSIFY_INTERNAL_DEFAULT_RULES_H_
#define MAILRETRY_CLASSIFY_INTERNAL_DEFAULT_RULES_H_

#include <optional>
#include <string_view>
#include <vector>

#include "mailretry/classify/classifier.h"

namespace mailretry::internal {

// One built-in rule. Every non-empty condition must hold.
//
// Phrases are lowercase and matched against the normalized reply text (see
// PhraseMatcher); '^'/'$' at either end ask for a word boundary.
struct DefaultRuleSpec {
  std::string_view name = {};  // "default:..." — stable, reported in Classification::rule
  Category category =
      Category::kUnknownPermanent;            // for 5yz (and for 4yz unless category_4xx is set)
  std::vector<std::string_view> any = {};     // at least one of these phrases
  std::vector<std::string_view> also = {};    // and at least one of these
  std::vector<std::string_view> unless = {};  // and none of these
  std::string_view code = {};                 // code pattern, "4xx" / "550" / "45x"; empty = any
  std::string_view enhanced = {};  // comma-separated enhanced patterns, "*.7.28,5.7.606-649"
  std::optional<Category> category_4xx = {};  // category when the reply is transient (4yz)
  std::optional<Action> action = {};          // default: DefaultAction(category, class)
  std::optional<bool> transient = {};         // default: DefaultTransient(action, class)
};

// The table, built on first use and never destroyed.
const std::vector<DefaultRuleSpec>& DefaultRuleSpecs();

// The table's parts, one file each (default_rules_<part>.cc), appended in
// this order by DefaultRuleSpecs: provider and MTA stock wordings (2a, 2b);
// phrase families (3); word classes, non-English wordings, generic limit,
// format and content wordings (3b, 3c, 3e: default_rules_{words,intl}.cc);
// enhanced-code details, generic phrases, enhanced subjects, basic codes
// (4a, 3d, 4b, 5).
void AppendStockRules(std::vector<DefaultRuleSpec>* out);
void AppendPhraseRules(std::vector<DefaultRuleSpec>* out);
void AppendWordRules(std::vector<DefaultRuleSpec>* out);
void AppendIntlRules(std::vector<DefaultRuleSpec>* out);
void AppendContentRules(std::vector<DefaultRuleSpec>* out);
void AppendCodeRules(std::vector<DefaultRuleSpec>* out);

// The usual reaction to `category` for a reply of class `klass` (4 or 5; 0
// when unknown, treated as 5): e.g. mailbox_full retries on 4yz and bounces
// on 5yz; reputation_block suspends the destination.
Action DefaultAction(Category category, int klass);

// Transient unless the action gives up (bounce), or the sender must fix
// something (remediate) and the server said it is permanent (5yz).
bool DefaultTransient(Action action, int klass);

}  // namespace mailretry::internal

#endif  // MAILRETRY_CLASSIFY_INTERNAL_DEFAULT_RULES_H_
