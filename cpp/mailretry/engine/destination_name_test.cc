#include "mailretry/engine/destination_name.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace mailretry {
namespace {

TEST(DestinationNameTest, OneSpellingPerDomain) {
  EXPECT_EQ(*NormalizeDestination("example.com"), "example.com");
  EXPECT_EQ(*NormalizeDestination("Example.COM"), "example.com");
  EXPECT_EQ(*NormalizeDestination("example.com."), "example.com");
  EXPECT_EQ(*NormalizeDestination("XN--BCHER-KVA.example."), "xn--bcher-kva.example");
  EXPECT_TRUE(IsNormalDestination("example.com"));
  EXPECT_FALSE(IsNormalDestination("example.com."));
  EXPECT_FALSE(IsNormalDestination("Example.com"));
}

TEST(DestinationNameTest, RejectsWhatCannotBeADomainOrBeHandedBack) {
  for (const std::string& bad :
       {std::string(""), std::string("."), std::string("a\0b.example", 11),
        std::string("a\nb.example"), std::string("a\x7f.example"), std::string("\xff\xfe.example"),
        std::string("\xed\xa0\x80.example"),
        std::string("b\xc3\xbc"
                    "cher.example"),
        std::string(300, 'a')}) {
    absl::StatusOr<std::string> r = NormalizeDestination(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(DestinationNameTest, SourcesKeepTheirSpellingButMustBeCleanText) {
  EXPECT_TRUE(ValidateSourceName("").ok());
  EXPECT_TRUE(ValidateSourceName("Pool-A \xc3\xa9").ok());
  EXPECT_FALSE(ValidateSourceName(std::string("x\0y", 3)).ok());
  EXPECT_FALSE(ValidateSourceName("\xc3").ok());
  EXPECT_FALSE(ValidateSourceName("\xc2\x85").ok());  // C1 control NEL
}

}  // namespace
}  // namespace mailretry
