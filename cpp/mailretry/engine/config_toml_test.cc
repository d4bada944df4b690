#include "mailretry/engine/config_toml.h"

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/engine/engine.h"

namespace mailretry {
namespace {

using ::testing::HasSubstr;

absl::Status ErrorOf(const std::string& toml) { return ParseConfigToml(toml).status(); }

TEST(ConfigTomlTest, TheExampleFileLoads) {
  absl::StatusOr<ConfigFile> f =
      LoadConfigFile(std::string(MAILRETRY_SOURCE_DIR) + "/examples/mailretry.toml");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->seed, 1u);
  EXPECT_EQ(f->config.retry.initial_delay, absl::Minutes(15));
  EXPECT_EQ(f->config.destination_defaults.rate.messages, 600u);
  EXPECT_EQ(f->config.destination_defaults.rate.per, absl::Minutes(1));
  ASSERT_EQ(f->config.destinations.size(), 1u);
  EXPECT_EQ(f->config.destinations[0].max_concurrency, 4u);
  ASSERT_EQ(f->config.classifier_rules.size(), 1u);
  EXPECT_EQ(f->config.classifier_rules[0].name, "acme-overload");
  EXPECT_TRUE(Engine::Create(f->config, *f->seed).ok());
}

TEST(ConfigTomlTest, DurationsAndRates) {
  EXPECT_EQ(*ParseConfigDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseConfigDuration("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(*ParseConfigDuration("0.5h"), absl::Minutes(30));
  EXPECT_EQ(*ParseConfigDuration("2w"), absl::Hours(24 * 14));
  for (const char* bad : {"", "5", "m", "5x", "-5m", "1.2.3s", "1e400s", "9999999999999d"}) {
    EXPECT_FALSE(ParseConfigDuration(bad).ok()) << bad;
  }
  absl::StatusOr<RateLimit> r = ParseConfigRate("100/1m");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->messages, 100u);
  EXPECT_TRUE(ParseConfigRate("unlimited")->unlimited());
  // Issue 10 item 8: "0/1m" silently meant unlimited.
  EXPECT_THAT(ParseConfigRate("0/1m").status().message(), HasSubstr("unlimited"));
  for (const char* bad : {"100", "/1m", "x/1m", "100/0s", "100/", "1234567890/1m"}) {
    EXPECT_FALSE(ParseConfigRate(bad).ok()) << bad;
  }
}

// The [cluster] table belongs to the Python shared-state layer (issue 15): the
// engine accepts it unread, so one file configures a node, but not as a value.
TEST(ConfigTomlTest, ClusterTableIsLeftToThePythonLayer) {
  absl::StatusOr<ConfigFile> f =
      ParseConfigToml("[cluster]\nurl = \"redis://127.0.0.1:1/0\"\nshare = 0.5\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(ErrorOf("cluster = 3\n").message(), HasSubstr("config cluster: expected a table"));
}

TEST(ConfigTomlTest, ErrorsNameTheKey) {
  EXPECT_THAT(ErrorOf("[retry]\nmax_attempts = -1\n").message(),
              HasSubstr("config retry.max_attempts: out of range"));
  EXPECT_THAT(ErrorOf("[retry]\nmax_attempts = 5000000000\n").message(),
              HasSubstr("retry.max_attempts"));
  EXPECT_THAT(ErrorOf("[[destinations]]\nrate = \"0/1m\"\n").message(),
              HasSubstr("config destinations[0].rate"));
  EXPECT_THAT(ErrorOf("[[destinations]]\nrate = {messages = 0}\n").message(),
              HasSubstr("destinations[0].rate.messages"));
  EXPECT_THAT(ErrorOf("[classifer]\nrules = []\n").message(),
              HasSubstr("config classifer: unknown key"));
  EXPECT_THAT(ErrorOf("[classifier]\nrule = []\n").message(),
              HasSubstr("config classifier.rule: unknown key"));
  EXPECT_THAT(
      ErrorOf("[[classifier.rules]]\nname = \"x\"\ncategory = \"nope\"\naction = \"retry\"\n")
          .message(),
      HasSubstr("classifier.rules[0].category"));
  EXPECT_THAT(ErrorOf("[[classifier.rules]]\nname = \"x\"\n").message(),
              HasSubstr("classifier.rules[0].category: required"));
  EXPECT_THAT(ErrorOf("backend = \"heap\"\n").message(),
              HasSubstr("config backend: unknown timer backend"));
  EXPECT_THAT(ErrorOf("lease_timeout = -300\n").message(),
              HasSubstr("lease_timeout: a duration must not be negative"));
  EXPECT_THAT(ErrorOf("lease_timeout = nan\n").message(), HasSubstr("lease_timeout"));
  EXPECT_THAT(ErrorOf("seed = -1\n").message(), HasSubstr("config seed: out of range"));
  EXPECT_THAT(ErrorOf("seed = \"7\"\n").message(), HasSubstr("config seed: expected an integer"));
  EXPECT_THAT(ErrorOf("[retry]\nbackoff = \"linear\"\n").message(), HasSubstr("retry.backoff"));
  EXPECT_THAT(
      ErrorOf(
          "[[overrides]]\nname = \"x\"\ntransports = [\"carrier_pigeon\"]\nfixed_delay = \"5m\"\n")
          .message(),
      HasSubstr("overrides[0].transports[0]"));
  EXPECT_THAT(ErrorOf("retry = 5\n").message(), HasSubstr("config retry: expected a table"));
  // Cross-field rules (EngineConfig::Validate) still apply.
  EXPECT_THAT(ErrorOf("lease_timeout = 0\n").message(), HasSubstr("lease_timeout"));
}

TEST(ConfigTomlTest, SyntaxErrorsAndBadEncodingAreInvalidArgument) {
  absl::Status s = ParseConfigToml("[retry\n", "x.toml").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("x.toml:1:"));
  EXPECT_EQ(ParseConfigToml(std::string("seed = 1\n# \xff\xfe\n")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseConfigToml(std::string("a = \"\0\"\n", 9)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ConfigTomlTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadConfigFile("/nonexistent/mailretry.toml").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ConfigTomlTest, EmptyDocumentIsTheDefaultConfig) {
  absl::StatusOr<ConfigFile> f = ParseConfigToml("");
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->seed.has_value());
  EXPECT_EQ(f->config.lease_timeout, EngineConfig{}.lease_timeout);
}

}  // namespace
}  // namespace mailretry
