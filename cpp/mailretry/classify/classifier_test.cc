#include "mailretry/classify/classifier.h"

#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

using ::testing::StartsWith;

Classifier Default() {
  absl::StatusOr<Classifier> c = Classifier::Create();
  EXPECT_TRUE(c.ok()) << c.status();
  return *std::move(c);
}

Classification Of(const Classifier& c, std::string_view raw, std::string_view dest = {}) {
  absl::StatusOr<Classification> k = c.ClassifyText(raw, dest);
  EXPECT_TRUE(k.ok()) << raw << ": " << k.status();
  return k.ok() ? *k : Classification{};
}

// --- names ---------------------------------------------------------------------

TEST(CategoryNames, RoundTrip) {
  for (int i = 0; i < kNumCategories; ++i) {
    const auto c = static_cast<Category>(i);
    absl::StatusOr<Category> back = ParseCategory(CategoryName(c));
    ASSERT_TRUE(back.ok()) << CategoryName(c);
    EXPECT_EQ(*back, c);
  }
  EXPECT_EQ(CategoryName(Category::kRateLimit), "rate_limit");
  EXPECT_EQ(CategoryName(Category::kUnknownPermanent), "unknown_permanent");
  EXPECT_EQ(ParseCategory("nope").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ParseCategory("Rate_Limit").ok());
}

TEST(ActionNames, RoundTrip) {
  for (int i = 0; i < kNumActions; ++i) {
    const auto a = static_cast<Action>(i);
    absl::StatusOr<Action> back = ParseAction(ActionName(a));
    ASSERT_TRUE(back.ok()) << ActionName(a);
    EXPECT_EQ(*back, a);
  }
  EXPECT_EQ(ActionName(Action::kSuspendDomain), "suspend_domain");
  EXPECT_FALSE(ParseAction("").ok());
}

// --- default rules: provider markers --------------------------------------------

TEST(DefaultRules, HeaderExample) {
  Classifier c = Default();
  absl::StatusOr<Reply> r = ParseReply("421 4.7.28 unusual rate");
  ASSERT_TRUE(r.ok());
  Classification k = c.Classify(*r, "gmail.com");
  EXPECT_EQ(k.category, Category::kRateLimit);
  EXPECT_EQ(k.action, Action::kThrottle);
  EXPECT_TRUE(k.transient);
}

TEST(DefaultRules, Gmail4728WithoutTextIsRateLimit) {
  Classification k = Of(Default(), "421 4.7.28 - gsmtp");
  EXPECT_EQ(k.category, Category::kRateLimit);
  EXPECT_EQ(k.rule, "default:enhanced/4.7.28");
}

TEST(DefaultRules, GmailUnsolicitedRateIsReputationThrottle) {
  Classification k =
      Of(Default(),
         "421-4.7.28 [192.0.2.1] Our system has detected an unusual rate of\r\n"
         "421-4.7.28 unsolicited mail originating from your IP address. To protect our\r\n"
         "421 4.7.28 users from spam, mail sent from your IP address has been temporarily rate "
         "limited.\r\n");
  EXPECT_EQ(k.category, Category::kReputationThrottle);
  EXPECT_EQ(k.action, Action::kThrottle);
  EXPECT_TRUE(k.transient);
}

TEST(DefaultRules, GmailAuthCodesBeatRateWording) {
  Classifier c = Default();
  for (std::string_view raw : {
           "421 4.7.26 This email has been rate limited because it is unauthenticated.",
           "550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's "
           "DMARC policy.",
           "421 4.7.30 some future wording",
           "550 5.7.32 some future wording",
       }) {
    Classification k = Of(c, raw);
    EXPECT_EQ(k.category, Category::kAuthSpfDkimDmarc) << raw;
    EXPECT_EQ(k.action, Action::kRemediate) << raw;
  }
  EXPECT_TRUE(Of(c, "421 4.7.30 x").transient);
  EXPECT_FALSE(Of(c, "550 5.7.30 x").transient);
}

TEST(DefaultRules, YahooTsCodesSuspend) {
  Classifier c = Default();
  Classification k =
      Of(c,
         "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
         "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes");
  EXPECT_EQ(k.category, Category::kReputationThrottle);
  EXPECT_EQ(k.action, Action::kSuspendDomain);
  EXPECT_EQ(k.rule, "default:provider/yahoo-ts");
  EXPECT_TRUE(k.transient);
  EXPECT_EQ(Of(c, "421 [TS03] All messages from 192.0.2.1 will be deferred").action,
            Action::kSuspendDomain);
  Classification tss09 =
      Of(c, "421 4.7.0 [TSS09] All messages from 192.0.2.1 will be permanently deferred");
  EXPECT_EQ(tss09.category, Category::kReputationBlock);
  EXPECT_EQ(tss09.action, Action::kSuspendDomain);
}

TEST(DefaultRules, AppleHcm1Suspends) {
  Classification k = Of(Default(), "421 [HCM1] Your mail from 192.0.2.1 was deferred.");
  EXPECT_EQ(k.category, Category::kReputationThrottle);
  EXPECT_EQ(k.action, Action::kSuspendDomain);
  EXPECT_EQ(k.rule, "default:provider/apple-hcm1");
}

TEST(DefaultRules, MicrosoftMarkers) {
  Classifier c = Default();
  Classification k = Of(c,
                        "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate "
                        "limited due to IP reputation. (S843)");
  EXPECT_EQ(k.category, Category::kReputationThrottle);
  EXPECT_EQ(k.action, Action::kThrottle);
  k = Of(c,
         "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your "
         "Internet service provider since part of their network is on our block list (S3150).");
  EXPECT_EQ(k.category, Category::kReputationBlock);
  EXPECT_EQ(k.action, Action::kSuspendDomain);
  k = Of(c, "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.");
  EXPECT_EQ(k.category, Category::kReputationBlock);
  k = Of(c, "550 5.7.511 Access denied, banned sender");
  EXPECT_EQ(k.category, Category::kReputationBlock);
  k = Of(c, "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (AS761)");
  EXPECT_EQ(k.action, Action::kThrottle);
  k = Of(
      c,
      "451 4.7.652 The mail server [192.0.2.251] has exceeded the maximum number of connections.");
  EXPECT_EQ(k.category, Category::kTooManyConnections);
  EXPECT_EQ(k.action, Action::kThrottle);
}

TEST(DefaultRules, ComcastBlockCodes) {
  Classifier c = Default();
  EXPECT_EQ(Of(c,
               "554 resimta.comcast.net 192.0.2.1 Comcast block for spam. Please see "
               "http://postmaster.comcast.net/smtp-error-codes.php#BL000000")
                .category,
            Category::kReputationBlock);
  Classification k = Of(c,
                        "554 resimta.comcast.net 192.0.2.1 found on one or more DNSBLs, see "
                        "http://postmaster.comcast.net/smtp-error-codes.php#BL000001");
  EXPECT_EQ(k.category, Category::kDnsblListed);
  EXPECT_EQ(k.action, Action::kRemediate);
}

TEST(DefaultRules, QqFrequencyLimitedIsTransientDespite550) {
  Classifier c = Default();
  Classification k = Of(c, "550 Ip frequency limited. http://service.mail.qq.com/cgi-bin/help");
  EXPECT_EQ(k.category, Category::kRateLimit);
  EXPECT_EQ(k.action, Action::kThrottle);
  EXPECT_TRUE(k.transient);
  k = Of(c, "550 Connection frequency limited. http://service.mail.qq.com/cgi-bin/help");
  EXPECT_EQ(k.category, Category::kTooManyConnections);
  EXPECT_TRUE(k.transient);
}

// --- default rules: text cues -----------------------------------------------------

struct TextCase {
  std::string_view raw;
  Category category;
  Action action;
  bool transient;
};

class TextCues : public ::testing::TestWithParam<TextCase> {};

TEST_P(TextCues, Classifies) {
  static const Classifier* c = new Classifier(Default());
  const TextCase& t = GetParam();
  Classification k = Of(*c, t.raw);
  EXPECT_EQ(CategoryName(k.category), CategoryName(t.category)) << t.raw << " via " << k.rule;
  EXPECT_EQ(ActionName(k.action), ActionName(t.action)) << t.raw << " via " << k.rule;
  EXPECT_EQ(k.transient, t.transient) << t.raw << " via " << k.rule;
  EXPECT_THAT(std::string(k.rule), StartsWith("default:"));
}

// Synthetic wordings (not corpus lines) of each cause.
INSTANTIATE_TEST_SUITE_P(
    Causes, TextCues,
    ::testing::Values(
        TextCase{"421 Too many connections from your IP, slow down", Category::kTooManyConnections,
                 Action::kThrottle, true},
        TextCase{"421 4.7.0 Too many concurrent SMTP sessions", Category::kTooManyConnections,
                 Action::kThrottle, true},
        TextCase{"450 4.7.1 Sending rate limit exceeded, try later", Category::kRateLimit,
                 Action::kThrottle, true},
        TextCase{"451 4.7.1 Greylisted, please retry in 5 minutes", Category::kGreylisting,
                 Action::kRetry, true},
        TextCase{"550 5.7.1 SPF fail: sender not permitted", Category::kAuthSpfDkimDmarc,
                 Action::kRemediate, false},
        TextCase{"550 5.7.1 Message failed DKIM verification", Category::kAuthSpfDkimDmarc,
                 Action::kRemediate, false},
        TextCase{"550 5.7.1 Client host has no reverse DNS", Category::kPtrRdns, Action::kRemediate,
                 false},
        TextCase{"450 4.7.1 Client host rejected: cannot find your hostname", Category::kPtrRdns,
                 Action::kRemediate, true},
        TextCase{"554 5.7.1 Your message looks like spam", Category::kPolicyContentSpam,
                 Action::kBounce, false},
        TextCase{"552 5.2.2 Mailbox is full", Category::kMailboxFull, Action::kBounce, false},
        TextCase{"452 4.2.2 Recipient over quota", Category::kMailboxFull, Action::kRetry, true},
        TextCase{"550 No such user here", Category::kMailboxUnknown, Action::kBounce, false},
        TextCase{"550 Mailbox does not exist", Category::kMailboxUnknown, Action::kBounce, false},
        TextCase{"550 This account has been disabled", Category::kMailboxDisabled, Action::kBounce,
                 false},
        TextCase{"550 Recipient domain not found", Category::kDomainUnknown, Action::kBounce,
                 false},
        TextCase{"552 Message size exceeds the limit", Category::kMessageTooLarge, Action::kBounce,
                 false},
        TextCase{"554 Relay access denied", Category::kRelayDenied, Action::kBounce, false},
        TextCase{"530 5.7.0 Authentication required", Category::kRelayDenied, Action::kRemediate,
                 false},
        TextCase{"554 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
                 Category::kDnsblListed, Action::kRemediate, false},
        TextCase{"550 Your IP is listed on a blacklist", Category::kDnsblListed, Action::kRemediate,
                 false},
        TextCase{"421 Server going down for maintenance", Category::kMaintenanceShutdown,
                 Action::kRetry, true},
        TextCase{"530 5.7.0 Must issue a STARTTLS command first", Category::kTlsRequired,
                 Action::kRemediate, false},
        TextCase{"421 4.3.2 System busy, overloaded", Category::kServerBusyCapacity, Action::kRetry,
                 true},
        TextCase{"452 4.3.1 Insufficient system resources", Category::kServerBusyCapacity,
                 Action::kRetry, true},
        TextCase{"550 5.7.1 IP has been blocked for abuse", Category::kReputationBlock,
                 Action::kSuspendDomain, true},
        TextCase{"421 4.7.0 Deferred due to poor IP reputation", Category::kReputationThrottle,
                 Action::kThrottle, true},
        TextCase{"554 5.4.6 Hop count exceeded - possible mail loop", Category::kUnknownPermanent,
                 Action::kBounce, false},
        TextCase{"451 4.4.7 Message expired after 5 days", Category::kUnknownPermanent,
                 Action::kBounce, false},
        TextCase{"500 5.5.1 Syntax error, command unrecognized", Category::kUnknownPermanent,
                 Action::kRemediate, false},
        TextCase{"554 5.6.0 Message is malformed (RFC 5322)", Category::kPolicyContentSpam,
                 Action::kRemediate, false},
        TextCase{"452 4.5.3 Too many recipients", Category::kRateLimit, Action::kRetry, true},
        // Typographic apostrophe and odd spacing are normalized.
        TextCase{"550   The   address doesn\u2019t exist", Category::kMailboxUnknown,
                 Action::kBounce, false}));

TEST(DefaultRules, EnhancedCodeFallbacks) {
  Classifier c = Default();
  Classification k = Of(c, "550 5.1.1 ...");
  EXPECT_EQ(k.category, Category::kMailboxUnknown);
  EXPECT_EQ(k.rule, "default:enhanced/x.1.1");
  EXPECT_EQ(Of(c, "550 5.1.2 ...").category, Category::kDomainUnknown);
  EXPECT_EQ(Of(c, "550 5.2.1 ...").category, Category::kMailboxDisabled);
  Classification full4 = Of(c, "452 4.2.2 ...");
  EXPECT_EQ(full4.category, Category::kMailboxFull);
  EXPECT_EQ(full4.action, Action::kRetry);
  Classification full5 = Of(c, "552 5.2.2 ...");
  EXPECT_EQ(full5.action, Action::kBounce);
  EXPECT_FALSE(full5.transient);
  EXPECT_EQ(Of(c, "552 5.3.4 ...").category, Category::kMessageTooLarge);
  EXPECT_EQ(Of(c, "550 5.7.25 ...").category, Category::kPtrRdns);
  EXPECT_EQ(Of(c, "550 5.7.1 ...").category, Category::kPolicyContentSpam);
}

TEST(DefaultRules, BasicCodeIsTheLastResort) {
  Classifier c = Default();
  Classification k = Of(c, "451 Something odd happened");
  EXPECT_EQ(k.category, Category::kUnknownTransient);
  EXPECT_EQ(k.action, Action::kRetry);
  EXPECT_TRUE(k.transient);
  EXPECT_EQ(k.rule, "default:code/4xx");
  k = Of(c, "554 Transaction failed");
  EXPECT_EQ(k.category, Category::kUnknownPermanent);
  EXPECT_EQ(k.action, Action::kBounce);
  EXPECT_FALSE(k.transient);
  EXPECT_EQ(k.rule, "default:code/5xx");
  k = Of(c, "250 OK");
  EXPECT_EQ(k.rule, "default:code/2xx");
  EXPECT_EQ(k.category, Category::kDelivered);
  EXPECT_FALSE(k.transient);
  // The text of a success never turns it into a failure.
  k = Of(c, "250 2.0.0 queued; note: your mailbox is full of greetings, rate limit ok");
  EXPECT_EQ(k.category, Category::kDelivered);
  EXPECT_EQ(CategoryName(k.category), "delivered");
  EXPECT_EQ(*ParseCategory("delivered"), Category::kDelivered);
}

TEST(DefaultRules, EnhancedCodeWithoutBasicCodeIsAcceptedAndMarked) {
  Classifier c = Default();
  absl::StatusOr<Classification> k = c.ClassifyText("5.1.1 that person does not exist here");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_TRUE(k->basic_code_inferred);
  EXPECT_EQ(k->category, Category::kMailboxUnknown);
  EXPECT_FALSE(k->transient);
  k = c.ClassifyText("4.2.2 storage allotment used up, try later");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_TRUE(k->basic_code_inferred);
  EXPECT_EQ(k->category, Category::kMailboxFull);
  EXPECT_TRUE(k->transient);
  k = c.ClassifyText("2.0.0 accepted for delivery");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->category, Category::kDelivered);
  k = c.ClassifyText("550 5.1.1 no such person");
  ASSERT_TRUE(k.ok());
  EXPECT_FALSE(k->basic_code_inferred);
  EXPECT_FALSE(c.ClassifyText("no code at all").ok());
}

TEST(DefaultRules, CallerBuiltReplyWithoutBasicCodeIsNeverDelivered) {
  // Only a real 2xx is delivered: the engine routes 2xx replies before it
  // classifies, and counts failures per category up to kNumCategories.
  Reply r;
  r.enhanced = EnhancedCode{2, 0, 0};
  r.text = "ok";
  const Classification k = Default().Classify(r);
  EXPECT_NE(k.category, Category::kDelivered);
  EXPECT_LT(static_cast<int>(k.category), kNumCategories);
}

TEST(UserRules, CannotProduceDelivered) {
  absl::StatusOr<Classifier> c = Classifier::Create(
      {UserRule{.name = "x", .text_regex = "ok", .category = Category::kDelivered}});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("delivered"), std::string_view::npos);
}

TEST(DefaultRules, ReplyWithoutBasicCodeUsesEnhancedClass) {
  Classifier c = Default();
  Reply r;
  r.enhanced = EnhancedCode{4, 4, 316};
  r.text = "Connection refused";
  Classification k = c.Classify(r);
  EXPECT_EQ(k.category, Category::kUnknownTransient);
  EXPECT_TRUE(k.transient);
  r.enhanced = EnhancedCode{5, 1, 10};
  r.text = "Recipient not found";
  k = c.Classify(r);
  EXPECT_EQ(k.category, Category::kMailboxUnknown);
  EXPECT_EQ(k.action, Action::kBounce);
  EXPECT_FALSE(k.transient);
  Reply bare;
  EXPECT_EQ(c.Classify(bare).rule, "default:code/none");
}

TEST(DefaultRules, TransportOutcomes) {
  Classifier c = Default();
  Classification k = c.Classify(TransportReply(Transport::kConnectionRefused));
  EXPECT_EQ(k.category, Category::kUnknownTransient);
  EXPECT_EQ(k.action, Action::kRetry);
  EXPECT_TRUE(k.transient);
  EXPECT_EQ(k.rule, "default:transport/connection_refused");
  k = c.Classify(TransportReply(Transport::kTlsFailure, "certificate verify failed"));
  EXPECT_EQ(k.category, Category::kTlsRequired);
  EXPECT_EQ(k.action, Action::kRemediate);
  for (int t = 1; t < kNumTransports; ++t) {
    Classification kt = c.Classify(TransportReply(static_cast<Transport>(t)));
    EXPECT_TRUE(kt.transient);
    EXPECT_THAT(std::string(kt.rule), StartsWith("default:transport/"));
  }
}

TEST(DefaultRules, EveryReportedRuleIsListed) {
  Classifier c = Default();
  std::vector<std::string> names = c.RuleNames();
  for (std::string_view raw : {"421 4.7.28 x", "550 5.1.1 x", "451 x", "550 x", "250 ok",
                               "421 [HCM1] x", "550 user unknown"}) {
    Classification k = Of(c, raw);
    EXPECT_THAT(names, ::testing::Contains(std::string(k.rule))) << raw;
  }
}

TEST(Classifier, CopiesShareRulesAndClassifyTextReportsParseErrors) {
  Classifier a = Default();
  Classifier b = a;
  EXPECT_EQ(Of(b, "550 5.1.1 x").rule, Of(a, "550 5.1.1 x").rule);
  EXPECT_EQ(a.ClassifyText("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.ClassifyText("hello").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mailretry
