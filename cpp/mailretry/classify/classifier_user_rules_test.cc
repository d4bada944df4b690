// Classifier, layer 1: user rules (RE2 on the text, code patterns, destination
// scope) ahead of the built-in table, and their validation.
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/classify/classifier.h"

namespace mailretry {
namespace {

using ::testing::HasSubstr;

Classification Of(const Classifier& c, std::string_view raw, std::string_view dest = {}) {
  absl::StatusOr<Classification> k = c.ClassifyText(raw, dest);
  EXPECT_TRUE(k.ok()) << raw << ": " << k.status();
  return k.ok() ? *k : Classification{};
}

// --- user rules ------------------------------------------------------------------

TEST(UserRules, TakePrecedenceAndReportTheirName) {
  UserRule u;
  u.name = "my-rule";
  u.text_regex = "unusual\\s+RATE";
  u.category = Category::kReputationThrottle;
  u.action = Action::kSuspendDomain;
  absl::StatusOr<Classifier> c = Classifier::Create({u});
  ASSERT_TRUE(c.ok()) << c.status();
  Classification k = Of(*c, "421 4.7.28 Unusual rate");
  EXPECT_EQ(k.category, Category::kReputationThrottle);
  EXPECT_EQ(k.action, Action::kSuspendDomain);
  EXPECT_TRUE(k.transient);  // from the 4yz code
  EXPECT_EQ(k.rule, "user:my-rule");
  EXPECT_EQ(Of(*c, "421 4.7.28 x").rule, "default:enhanced/4.7.28");
  std::vector<std::string> names = c->RuleNames();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "user:my-rule");
}

TEST(UserRules, FirstMatchingUserRuleWins) {
  UserRule a{.name = "a", .text_regex = "busy", .category = Category::kServerBusyCapacity};
  UserRule b{.name = "b", .text_regex = "busy", .category = Category::kMaintenanceShutdown};
  absl::StatusOr<Classifier> c = Classifier::Create({a, b});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(Of(*c, "421 busy").rule, "user:a");
}

TEST(UserRules, EnhancedAndCodePatterns) {
  UserRule u{.name = "e",
             .enhanced_pattern = "4.7.*",
             .code_pattern = "45x",
             .category = Category::kGreylisting};
  absl::StatusOr<Classifier> c = Classifier::Create({u});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Of(*c, "451 4.7.1 x").rule, "user:e");
  EXPECT_EQ(Of(*c, "450 4.7.12 x").rule, "user:e");
  EXPECT_NE(Of(*c, "421 4.7.1 x").rule, "user:e");  // code 421 not 45x
  EXPECT_NE(Of(*c, "451 4.3.0 x").rule, "user:e");  // enhanced 4.3.0
  EXPECT_NE(Of(*c, "451 x").rule, "user:e");        // no enhanced code

  UserRule w{.name = "w", .enhanced_pattern = "*.7.28", .code_pattern = "4xx"};
  absl::StatusOr<Classifier> cw = Classifier::Create({w});
  ASSERT_TRUE(cw.ok());
  EXPECT_EQ(Of(*cw, "421 4.7.28 x").rule, "user:w");
  EXPECT_NE(Of(*cw, "550 5.7.28 x").rule, "user:w");

  UserRule exact{.name = "x", .code_pattern = "421"};
  absl::StatusOr<Classifier> cx = Classifier::Create({exact});
  ASSERT_TRUE(cx.ok());
  EXPECT_EQ(Of(*cx, "421 x").rule, "user:x");
  EXPECT_NE(Of(*cx, "450 x").rule, "user:x");
}

TEST(UserRules, TransientOverrideAndDefault) {
  UserRule u{.name = "t",
             .text_regex = "frequency",
             .category = Category::kRateLimit,
             .action = Action::kThrottle,
             .transient = true};
  UserRule v{.name = "v", .text_regex = "nope"};
  absl::StatusOr<Classifier> c = Classifier::Create({u, v});
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(Of(*c, "550 frequency limited").transient);
  EXPECT_FALSE(Of(*c, "550 nope").transient);
  EXPECT_TRUE(Of(*c, "450 nope").transient);
}

TEST(UserRules, DestinationScope) {
  UserRule exact{.name = "exact",
                 .text_regex = "x",
                 .destination = "Example.COM",
                 .category = Category::kGreylisting};
  UserRule suffix{.name = "suffix",
                  .text_regex = "x",
                  .destination = "*.example.org",
                  .category = Category::kGreylisting};
  absl::StatusOr<Classifier> c = Classifier::Create({exact, suffix});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Of(*c, "451 x", "example.com").rule, "user:exact");
  EXPECT_EQ(Of(*c, "451 x", "EXAMPLE.com.").rule, "user:exact");
  EXPECT_NE(Of(*c, "451 x", "mx.example.com").rule, "user:exact");
  EXPECT_NE(Of(*c, "451 x", "").rule, "user:exact");
  EXPECT_EQ(Of(*c, "451 x", "mx.example.org").rule, "user:suffix");
  EXPECT_EQ(Of(*c, "451 x", "a.b.Example.Org").rule, "user:suffix");
  EXPECT_NE(Of(*c, "451 x", "example.org").rule, "user:suffix");
  EXPECT_NE(Of(*c, "451 x", "badexample.org").rule, "user:suffix");
}

TEST(UserRules, ApplyToTransportOutcomesByText) {
  UserRule u{.name = "tls",
             .text_regex = "certificate",
             .category = Category::kTlsRequired,
             .action = Action::kRetry};
  absl::StatusOr<Classifier> c = Classifier::Create({u});
  ASSERT_TRUE(c.ok());
  Classification k = c->Classify(TransportReply(Transport::kTlsFailure, "certificate expired"));
  EXPECT_EQ(k.rule, "user:tls");
  EXPECT_TRUE(k.transient);
}

// User rules use the shared code-pattern grammar: lists, ranges and '*'.
TEST(UserRules, CodePatternListsRangesAndWildcards) {
  absl::StatusOr<Classifier> c = Classifier::Create({
      UserRule{.name = "ms-block",
               .enhanced_pattern = "5.7.606-649,5.7.7xx-never-matches-not-valid"},
  });
  EXPECT_FALSE(c.ok());
  c = Classifier::Create({
      UserRule{.name = "ms-block",
               .enhanced_pattern = "5.7.606-649, 5.7.750",
               .category = Category::kReputationBlock,
               .action = Action::kSuspendDomain},
      UserRule{.name = "deferrals",
               .code_pattern = "5*1,450-452",
               .category = Category::kServerBusyCapacity,
               .action = Action::kRetry},
  });
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Of(*c, "550 5.7.612 our gateway refuses your host").rule, "user:ms-block");
  EXPECT_EQ(Of(*c, "550 5.7.750 tenant has been blocked").rule, "user:ms-block");
  EXPECT_NE(Of(*c, "550 5.7.650 something else").rule, "user:ms-block");
  EXPECT_EQ(Of(*c, "451 4.3.0 please come back").rule, "user:deferrals");
  EXPECT_EQ(Of(*c, "501 5.5.4 odd argument").rule, "user:deferrals");
  EXPECT_NE(Of(*c, "453 4.3.0 please come back").rule, "user:deferrals");
}

TEST(UserRules, Validation) {
  auto error_of = [](std::vector<UserRule> rules) {
    absl::StatusOr<Classifier> c = Classifier::Create(std::move(rules));
    EXPECT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(c.status().message());
  };
  EXPECT_THAT(error_of({UserRule{}}), HasSubstr("empty name"));
  EXPECT_THAT(error_of({UserRule{.name = "a"}, UserRule{.name = "a"}}), HasSubstr("duplicate"));
  const std::string bad_regex = error_of({UserRule{.name = "r", .text_regex = "(unclosed"}});
  EXPECT_THAT(bad_regex, HasSubstr("\"r\""));
  EXPECT_THAT(bad_regex, HasSubstr("missing )"));
  // RE2 refuses backreferences: linear time is guaranteed.
  EXPECT_THAT(error_of({UserRule{.name = "b", .text_regex = "(a)\\1"}}), HasSubstr("\"b\""));
  for (std::string_view e :
       {"4.7", "4.7.28.1", "6.7.1", "4.x.1", "4.7.1000", "4.7.9-3", "4.7.*,"}) {
    EXPECT_THAT(error_of({UserRule{.name = "e", .enhanced_pattern = std::string(e)}}),
                HasSubstr("enhanced pattern"))
        << e;
  }
  for (std::string_view p : {"4", "4xxx", "1xx", "6xx", "4y1"}) {
    EXPECT_THAT(error_of({UserRule{.name = "c", .code_pattern = std::string(p)}}),
                HasSubstr("code pattern"))
        << p;
  }
  for (std::string_view d : {"*", "*.", "a b.com", "*.*.com", "user@example.com"}) {
    EXPECT_THAT(error_of({UserRule{.name = "d", .destination = std::string(d)}}),
                HasSubstr("destination"))
        << d;
  }
}

}  // namespace
}  // namespace mailretry
