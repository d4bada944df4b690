#include "mailretry/reply/reply.h"

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mailretry {
namespace {

using ::testing::HasSubstr;

Reply MustParse(std::string_view raw) {
  absl::StatusOr<Reply> r = ParseReply(raw);
  EXPECT_TRUE(r.ok()) << raw << ": " << r.status();
  return r.ok() ? *std::move(r) : Reply{};
}

std::string ErrorOf(std::string_view raw) {
  absl::StatusOr<Reply> r = ParseReply(raw);
  EXPECT_FALSE(r.ok()) << raw;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

TEST(ParseReply, SingleLineWithEnhancedCode) {
  Reply r = MustParse("550 5.1.1 User unknown");
  EXPECT_EQ(r.transport, Transport::kReply);
  EXPECT_EQ(r.code, 550);
  ASSERT_TRUE(r.enhanced.has_value());
  EXPECT_EQ(*r.enhanced, (EnhancedCode{5, 1, 1}));
  EXPECT_EQ(r.text, "User unknown");
  EXPECT_FALSE(r.transient());
  EXPECT_FALSE(r.success());
}

TEST(ParseReply, WithoutEnhancedCode) {
  Reply r = MustParse("421 Too many connections");
  EXPECT_EQ(r.code, 421);
  EXPECT_FALSE(r.enhanced.has_value());
  EXPECT_EQ(r.text, "Too many connections");
  EXPECT_TRUE(r.transient());
}

TEST(ParseReply, CodeOnly) {
  Reply r = MustParse("421");
  EXPECT_EQ(r.code, 421);
  EXPECT_EQ(r.text, "");
  r = MustParse("250 ");
  EXPECT_EQ(r.code, 250);
  EXPECT_TRUE(r.success());
  r = MustParse("550 5.7.1");
  ASSERT_TRUE(r.enhanced.has_value());
  EXPECT_EQ(r.text, "");
}

TEST(ParseReply, MultiLineCrlfStripsRepeatedEnhancedCode) {
  Reply r = MustParse(
      "421-4.7.28 [192.0.2.1] Our system has detected an unusual rate of\r\n"
      "421-4.7.28 unsolicited mail originating from your IP address.\r\n"
      "421 4.7.28  Please visit https://support.google.com/mail/?p=x - gsmtp\r\n");
  EXPECT_EQ(r.code, 421);
  EXPECT_EQ(*r.enhanced, (EnhancedCode{4, 7, 28}));
  EXPECT_EQ(r.text,
            "[192.0.2.1] Our system has detected an unusual rate of\n"
            "unsolicited mail originating from your IP address.\n"
            "Please visit https://support.google.com/mail/?p=x - gsmtp");
}

TEST(ParseReply, MultiLineLfAndMissingRepeats) {
  Reply r = MustParse(
      "550-5.1.1 The email account that you tried to reach does not exist.\n"
      "550-Please try double-checking the recipient's email address\n"
      "550 5.1.1 https://support.google.com/mail/?p=NoSuchUser\n");
  EXPECT_EQ(*r.enhanced, (EnhancedCode{5, 1, 1}));
  EXPECT_EQ(r.text,
            "The email account that you tried to reach does not exist.\n"
            "Please try double-checking the recipient's email address\n"
            "https://support.google.com/mail/?p=NoSuchUser");
}

TEST(ParseReply, YahooShape) {
  Reply r = MustParse(
      "421-4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred\r\n"
      "421 4.7.0 due to user complaints - 4.16.55.1");
  EXPECT_EQ(*r.enhanced, (EnhancedCode{4, 7, 0}));
  EXPECT_EQ(
      r.text,
      "[TSS04] Messages from 192.0.2.1 temporarily deferred\ndue to user complaints - 4.16.55.1");
}

TEST(ParseReply, DifferentEnhancedOnContinuationStaysInText) {
  Reply r = MustParse("550-5.7.1 first\r\n550 5.7.2 second");
  EXPECT_EQ(*r.enhanced, (EnhancedCode{5, 7, 1}));
  EXPECT_EQ(r.text, "first\n5.7.2 second");
}

TEST(ParseReply, WhitespaceBlankLinesAndTrailingDash) {
  Reply r = MustParse("  \r\n\t 451 4.3.0 Try later \r\n\r\n");
  EXPECT_EQ(r.code, 451);
  EXPECT_EQ(r.text, "Try later");
  r = MustParse("550-SPF-check failed: 550 example.com doesn't allow sending mails");
  EXPECT_EQ(r.code, 550);
  EXPECT_FALSE(r.enhanced.has_value());
  EXPECT_EQ(r.text, "SPF-check failed: 550 example.com doesn't allow sending mails");
  r = MustParse("421\t4.4.2 timeout");
  EXPECT_EQ(*r.enhanced, (EnhancedCode{4, 4, 2}));
}

TEST(ParseReply, EnhancedCodeOnFirstLineWithContent) {
  Reply r = MustParse("550-\r\n550 5.1.1 user unknown");
  EXPECT_EQ(*r.enhanced, (EnhancedCode{5, 1, 1}));
  EXPECT_EQ(r.text, "user unknown");
  r = MustParse("550\n4.4.55");
  EXPECT_EQ(*r.enhanced, (EnhancedCode{4, 4, 55}));
  EXPECT_EQ(r.text, "");
  r = MustParse("550 foo\n5.1.1 bar");
  EXPECT_FALSE(r.enhanced.has_value());
  EXPECT_EQ(r.text, "foo\n5.1.1 bar");
}

TEST(ParseReply, ContinuationWithoutCodeIsText) {
  Reply r = MustParse("554 5.7.1 Rejected\nsee https://example.com/why");
  EXPECT_EQ(r.text, "Rejected\nsee https://example.com/why");
}

TEST(ParseReply, EnhancedLookalikesStayInText) {
  // Three-digit subject/detail only; class must be 2/4/5; must end at a space.
  for (std::string_view raw :
       {"550 5.7.606-649 Access denied", "451 4.16.55.1 deferred", "550 #5.1.1 bad address",
        "550 3.1.1 odd", "550 5.7.1000 odd", "550 5.7 odd", "550 5..1 odd", "550 5.1.1.x odd"}) {
    Reply r = MustParse(raw);
    EXPECT_FALSE(r.enhanced.has_value()) << raw;
    EXPECT_EQ(r.text, raw.substr(4)) << raw;
  }
  Reply r = MustParse("550 5.7.606 Access denied");
  EXPECT_EQ(*r.enhanced, (EnhancedCode{5, 7, 606}));
}

TEST(ParseReply, ClassMismatchIsKept) {
  // Real servers send these; the basic code decides transient().
  Reply r = MustParse("550 4.4.7 QUEUE.Expired; message expired");
  EXPECT_EQ(r.code, 550);
  EXPECT_EQ(*r.enhanced, (EnhancedCode{4, 4, 7}));
  EXPECT_FALSE(r.transient());
  r = MustParse("421 5.7.32 Your email was blocked");
  EXPECT_TRUE(r.transient());
  EXPECT_EQ(r.enhanced->klass, 5);
}

TEST(ParseReply, Errors) {
  EXPECT_THAT(ErrorOf(""), HasSubstr("empty"));
  EXPECT_THAT(ErrorOf(" \r\n\t"), HasSubstr("empty"));
  EXPECT_THAT(ErrorOf("hello"), HasSubstr("3-digit code"));
  EXPECT_THAT(ErrorOf("55 short"), HasSubstr("3-digit code"));
  EXPECT_THAT(ErrorOf("5500 four digits"), HasSubstr("3-digit code"));
  EXPECT_THAT(ErrorOf("550x glued"), HasSubstr("3-digit code"));
  EXPECT_THAT(ErrorOf("5.1.1 no basic code"), HasSubstr("3-digit code"));
  EXPECT_THAT(ErrorOf("199 too low"), HasSubstr("outside 200..599"));
  EXPECT_THAT(ErrorOf("600 too high"), HasSubstr("outside 200..599"));
  EXPECT_THAT(ErrorOf("000"), HasSubstr("outside 200..599"));
  EXPECT_THAT(ErrorOf(std::string_view("550 a\0b", 7)), HasSubstr("NUL"));
  EXPECT_THAT(ErrorOf("550 caf\xC3"), HasSubstr("UTF-8"));
  EXPECT_THAT(ErrorOf("550 \xC0\xAF overlong"), HasSubstr("UTF-8"));
  EXPECT_THAT(ErrorOf("550 \xED\xA0\x80 surrogate"), HasSubstr("UTF-8"));
  EXPECT_THAT(ErrorOf("550 \xF4\x90\x80\x80 too big"), HasSubstr("UTF-8"));
  EXPECT_THAT(ErrorOf("550 latin1 \xE9t\xE9"), HasSubstr("UTF-8"));
  EXPECT_THAT(ErrorOf("421-4.7.0 first\r\n450 4.7.0 second"), HasSubstr("continuation"));
  EXPECT_THAT(ErrorOf(std::string(kMaxReplyBytes + 1, ' ')), HasSubstr("limit"));
}

// CheckBytes skips eight ASCII bytes at a time: a bad byte anywhere in or
// between those words is still found, at its own offset.
TEST(ParseReply, FindsABadByteAtEveryOffset) {
  const std::string clean = "550 5.1.1 mailbox unavailable here, try later";
  for (size_t at = 4; at < clean.size(); ++at) {
    for (std::string_view bad :
         {std::string_view("\0", 1), std::string_view("\xFF"), std::string_view("\xC3")}) {
      std::string raw = clean;
      raw.replace(at, 1, bad);
      EXPECT_THAT(ErrorOf(raw), HasSubstr(absl::StrCat("at byte ", at))) << at;
    }
    std::string ok = clean;
    ok.replace(at, 1, "\xC3\xA9");
    EXPECT_TRUE(ParseReply(ok).ok()) << at;
  }
}

TEST(ParseReply, AcceptsValidUtf8AndMaxSize) {
  Reply r = MustParse("550 Usu\xC3\xA1rio inexistente \xE2\x80\x94 \xF0\x9F\x90\x88");
  EXPECT_EQ(r.text, "Usu\xC3\xA1rio inexistente \xE2\x80\x94 \xF0\x9F\x90\x88");
  std::string big = "550 " + std::string(kMaxReplyBytes - 4, 'a');
  EXPECT_TRUE(ParseReply(big).ok());
}

TEST(Reply, ToStringRoundTrips) {
  for (std::string_view raw : {"550 5.1.1 User unknown", "421 busy", "250",
                               "421-4.7.0 a\r\n421 4.7.0 b", "550 4.4.7 expired"}) {
    Reply r = MustParse(raw);
    const std::string s = r.ToString();
    EXPECT_EQ(s.find('\n'), std::string::npos) << s;
    Reply back = MustParse(s);
    EXPECT_EQ(back.code, r.code) << s;
    EXPECT_EQ(back.enhanced, r.enhanced) << s;
  }
  EXPECT_EQ(MustParse("421-4.7.0 a\r\n421 4.7.0 b").ToString(), "421 4.7.0 a b");
  EXPECT_EQ(MustParse("250").ToString(), "250");
  EXPECT_EQ(EnhancedCode({4, 7, 28}).ToString(), "4.7.28");
}

TEST(Transport, NamesRoundTrip) {
  for (int i = 0; i < kNumTransports; ++i) {
    const auto t = static_cast<Transport>(i);
    absl::StatusOr<Transport> back = ParseTransport(TransportName(t));
    ASSERT_TRUE(back.ok()) << TransportName(t);
    EXPECT_EQ(*back, t);
  }
  EXPECT_EQ(TransportName(Transport::kConnectTimeout), "connect_timeout");
  EXPECT_EQ(ParseTransport("timeout").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Transport, TransportReply) {
  Reply r = TransportReply(Transport::kConnectionRefused, "mx1.example.com:25");
  EXPECT_EQ(r.transport, Transport::kConnectionRefused);
  EXPECT_EQ(r.code, 0);
  EXPECT_FALSE(r.enhanced.has_value());
  EXPECT_TRUE(r.transient());
  EXPECT_FALSE(r.success());
  EXPECT_EQ(r.ToString(), "<connection_refused> mx1.example.com:25");
  EXPECT_EQ(TransportReply(Transport::kDnsFailure).ToString(), "<dns_failure>");
}

}  // namespace
}  // namespace mailretry
