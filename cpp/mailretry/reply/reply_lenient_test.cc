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
