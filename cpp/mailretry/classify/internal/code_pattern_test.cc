#include "mailretry/classify/internal/code_pattern.h"

#include <optional>
#include <string_view>

#include "gtest/gtest.h"
#include "mailretry/reply/reply.h"

namespace mailretry::internal {
namespace {

BasicCodePattern Basic(std::string_view p) {
  absl::StatusOr<BasicCodePattern> c = BasicCodePattern::Parse(p);
  EXPECT_TRUE(c.ok()) << p << ": " << c.status();
  return c.ok() ? *c : BasicCodePattern();
}

EnhancedCodePattern Enhanced(std::string_view p) {
  absl::StatusOr<EnhancedCodePattern> c = EnhancedCodePattern::Parse(p);
  EXPECT_TRUE(c.ok()) << p << ": " << c.status();
  return c.ok() ? *c : EnhancedCodePattern();
}

Reply WithCode(int code, std::optional<EnhancedCode> e = std::nullopt) {
  Reply r;
  r.code = code;
  r.enhanced = e;
  return r;
}

TEST(BasicCodePattern, ExactWildcardsRangesAndLists) {
  EXPECT_TRUE(Basic("421").MatchesCode(421));
  EXPECT_FALSE(Basic("421").MatchesCode(451));
  for (std::string_view p : {"4xx", "4XX", "4**", "4*x"}) {
    EXPECT_TRUE(Basic(p).MatchesCode(452)) << p;
    EXPECT_FALSE(Basic(p).MatchesCode(552)) << p;
  }
  EXPECT_TRUE(Basic("5*4").MatchesCode(554));
  EXPECT_FALSE(Basic("5*4").MatchesCode(550));
  EXPECT_TRUE(Basic("x21").MatchesCode(421));
  EXPECT_TRUE(Basic("450-452").MatchesCode(450));
  EXPECT_TRUE(Basic("450-452").MatchesCode(452));
  EXPECT_FALSE(Basic("450-452").MatchesCode(453));
  const BasicCodePattern list = Basic("421, 450-452,55x");
  for (int c : {421, 451, 550, 554}) EXPECT_TRUE(list.MatchesCode(c)) << c;
  for (int c : {420, 453, 530, 250}) EXPECT_FALSE(list.MatchesCode(c)) << c;
}

TEST(BasicCodePattern, EmptyMatchesEverythingIncludingTransportOutcomes) {
  const BasicCodePattern any = Basic("");
  EXPECT_TRUE(any.empty());
  EXPECT_TRUE(any.Matches(TransportReply(Transport::kConnectTimeout)));
  EXPECT_TRUE(any.MatchesCode(0));
  EXPECT_FALSE(Basic("4xx").Matches(TransportReply(Transport::kConnectTimeout)));
}

TEST(BasicCodePattern, ReplyWithoutBasicCodeMatchesOnlyClassPatterns) {
  const Reply logged = WithCode(0, EnhancedCode{5, 1, 1});
  EXPECT_TRUE(Basic("5xx").Matches(logged));
  EXPECT_TRUE(Basic("4xx,5xx").Matches(logged));
  EXPECT_FALSE(Basic("4xx").Matches(logged));
  EXPECT_FALSE(Basic("550").Matches(logged));  // its basic code is unknown
  EXPECT_FALSE(Basic("55x").Matches(logged));
  EXPECT_FALSE(Basic("5xx").Matches(WithCode(0)));
}

TEST(BasicCodePattern, RejectsMalformedPatterns) {
  for (std::string_view p : {"42", "4211", "4y1", "621", "121", "452-450", "45-46", "421,", ",421",
                             "421,,450", "399-401"}) {
    EXPECT_FALSE(BasicCodePattern::Parse(p).ok()) << p;
  }
  absl::Status st = BasicCodePattern::Parse("421,4z1").status();
  EXPECT_NE(st.message().find("4z1"), std::string_view::npos) << st;
}

TEST(EnhancedCodePattern, ExactWildcardsRangesAndLists) {
  EXPECT_TRUE(Enhanced("4.7.28").Matches(EnhancedCode{4, 7, 28}));
  EXPECT_FALSE(Enhanced("4.7.28").Matches(EnhancedCode{5, 7, 28}));
  EXPECT_TRUE(Enhanced("*.7.28").Matches(EnhancedCode{5, 7, 28}));
  EXPECT_TRUE(Enhanced("4.7.*").Matches(EnhancedCode{4, 7, 650}));
  EXPECT_FALSE(Enhanced("4.7.*").Matches(EnhancedCode{4, 2, 2}));
  EXPECT_TRUE(Enhanced("5.*.*").Matches(EnhancedCode{5, 3, 4}));
  const EnhancedCodePattern range = Enhanced("5.7.606-649");
  EXPECT_TRUE(range.Matches(EnhancedCode{5, 7, 606}));
  EXPECT_TRUE(range.Matches(EnhancedCode{5, 7, 649}));
  EXPECT_FALSE(range.Matches(EnhancedCode{5, 7, 650}));
  EXPECT_FALSE(range.Matches(EnhancedCode{5, 7, 1}));
  EXPECT_TRUE(Enhanced("4.1-2.*").Matches(EnhancedCode{4, 2, 2}));
  const EnhancedCodePattern list = Enhanced("5.7.1, 5.7.606-649 ,*.4.7");
  EXPECT_TRUE(list.Matches(EnhancedCode{5, 7, 1}));
  EXPECT_TRUE(list.Matches(EnhancedCode{5, 7, 620}));
  EXPECT_TRUE(list.Matches(EnhancedCode{4, 4, 7}));
  EXPECT_FALSE(list.Matches(EnhancedCode{5, 7, 2}));
}

TEST(EnhancedCodePattern, AbsentCodeMatchesOnlyTheEmptyPattern) {
  EXPECT_TRUE(Enhanced("").Matches(std::optional<EnhancedCode>()));
  EXPECT_FALSE(Enhanced("5.*.*").Matches(std::optional<EnhancedCode>()));
  EXPECT_TRUE(Enhanced("5.*.*").Matches(std::optional<EnhancedCode>(EnhancedCode{5, 0, 0})));
}

TEST(EnhancedCodePattern, RejectsMalformedPatterns) {
  for (std::string_view p : {"4.7", "4.7.28.1", "3.7.1", "45.7.1", "4.x.1", "4.7.1000",
                             "5.7.649-606", "5.7.-1", "5.7.1,", "4..1", "4.7.28-"}) {
    EXPECT_FALSE(EnhancedCodePattern::Parse(p).ok()) << p;
  }
}

}  // namespace
}  // namespace mailretry::internal
