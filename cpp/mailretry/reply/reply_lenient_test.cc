#include "gtest/gtest.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

TEST(ParseReplyLenient, StrictRepliesAreUnchanged) {
  absl::StatusOr<Reply> r = ParseReplyLenient("421 4.7.0 Try again later");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->code, 421);
  ASSERT_TRUE(r->enhanced.has_value());
  EXPECT_EQ(r->enhanced->ToString(), "4.7.0");
  EXPECT_EQ(r->text, "Try again later");
}

TEST(ParseReplyLenient, EnhancedCodeWithoutBasicCode) {
  absl::StatusOr<Reply> r = ParseReplyLenient("5.1.1 <x@example.com>: User unknown");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->code, 0);
  ASSERT_TRUE(r->enhanced.has_value());
  EXPECT_EQ(r->enhanced->ToString(), "5.1.1");
  EXPECT_EQ(r->text, "<x@example.com>: User unknown");
  EXPECT_FALSE(r->transient());

  absl::StatusOr<Reply> t = ParseReplyLenient("  4.4.316 Connection refused");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->code, 0);
  EXPECT_TRUE(t->transient());
}

TEST(ParseReplyLenient, NoCodeAtAll) {
  absl::StatusOr<Reply> r = ParseReplyLenient("BL000101 This IP is on a blocklist");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->code, 0);
  EXPECT_FALSE(r->enhanced.has_value());
  EXPECT_EQ(r->text, "BL000101 This IP is on a blocklist");
  EXPECT_TRUE(r->transient());
}

TEST(ParseReplyLenient, StillRejectsGarbage) {
  EXPECT_FALSE(ParseReplyLenient("").ok());
  EXPECT_FALSE(ParseReplyLenient("   ").ok());
  EXPECT_FALSE(ParseReplyLenient(std::string_view("abc\0def", 7)).ok());
  EXPECT_FALSE(ParseReplyLenient("caf\xc3 invalid utf-8").ok());
  EXPECT_FALSE(ParseReplyLenient("999 out of range").ok());
  EXPECT_FALSE(ParseReplyLenient(std::string(kMaxReplyBytes + 1, 'x')).ok());
}

TEST(ParseReplyLenient, ClassifiesByEnhancedCodeAndText) {
  absl::StatusOr<Classifier> c = Classifier::Create();
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<Reply> r = ParseReplyLenient("5.1.1 The email account does not exist");
  ASSERT_TRUE(r.ok());
  const Classification k = c->Classify(*r);
  EXPECT_EQ(k.category, Category::kMailboxUnknown);
  EXPECT_FALSE(k.transient);
}

}  // namespace
}  // namespace mailretry

namespace mailretry {
namespace {

TEST(ParseReplyInferringCode, InfersTheBasicCodeFromTheEnhancedClass) {
  bool inferred = true;
  absl::StatusOr<Reply> strict =
      ParseReplyInferringCode("452 4.2.2 box is over its limit", &inferred);
  ASSERT_TRUE(strict.ok()) << strict.status();
  EXPECT_FALSE(inferred);
  EXPECT_EQ(strict->code, 452);

  absl::StatusOr<Reply> r = ParseReplyInferringCode("  5.1.1 nobody by that name here", &inferred);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(inferred);
  EXPECT_EQ(r->code, 500);
  ASSERT_TRUE(r->enhanced.has_value());
  EXPECT_EQ(r->enhanced->ToString(), "5.1.1");
  EXPECT_EQ(r->text, "nobody by that name here");

  r = ParseReplyInferringCode("4.4.1 host did not answer", &inferred);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(inferred);
  EXPECT_EQ(r->code, 400);
  EXPECT_TRUE(r->transient());
}

TEST(ParseReplyInferringCode, UnwrapsDiagnosticCodeAndPostfixLogLines) {
  bool inferred = true;
  absl::StatusOr<Reply> r = ParseReplyInferringCode(
      "Diagnostic-Code: SMTP; 550 5.1.1 <a@b.example>... no such user", &inferred);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(inferred);
  EXPECT_EQ(r->code, 550);
  EXPECT_EQ(r->enhanced->ToString(), "5.1.1");
  r = ParseReplyInferringCode("smtp; 452 4.2.2 over quota", &inferred);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->code, 452);
  r = ParseReplyInferringCode(
      "host mx1.example.net[192.0.2.25] said: 450 4.7.1 Client host rejected: cannot find your "
      "hostname (in reply to RCPT TO command)",
      &inferred);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->code, 450);
  EXPECT_FALSE(inferred);
  // Not a wrapper: refused as before.
  EXPECT_FALSE(ParseReplyInferringCode("host is down, said nothing", &inferred).ok());
  EXPECT_FALSE(ParseReplyInferringCode("smtp; no code here", &inferred).ok());
}

TEST(ParseReplyInferringCode, TextWithoutAnyCodeIsStillRefused) {
  bool inferred = true;
  EXPECT_FALSE(ParseReplyInferringCode("mailbox is gone", &inferred).ok());
  EXPECT_FALSE(inferred);
  EXPECT_FALSE(ParseReplyInferringCode("", &inferred).ok());
  EXPECT_FALSE(ParseReplyInferringCode("999 5.1.1 bad code", &inferred).ok());
}

}  // namespace
}  // namespace mailretry
