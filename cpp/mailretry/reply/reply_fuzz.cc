// libFuzzer target: parses and classifies arbitrary bytes and checks the
// invariants callers rely on. Build with -DMAILRETRY_FUZZ=ON and clang.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mailretry/classify/classifier.h"
#include "mailretry/reply/reply.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

const mailretry::Classifier& Default() {
  static const auto* c = new mailretry::Classifier(*mailretry::Classifier::Create());
  return *c;
}

// A failure category, or kDelivered (which lies past kNumCategories) for a
// 2xx reply, and nothing else. code < 0: the basic code is not known.
void CheckClassification(const mailretry::Classification& k, int code) {
  const bool success = code >= 200 && code < 300;
  if (code < 0) {
    Check(static_cast<int>(k.category) < mailretry::kNumCategoriesWithDelivered);
  } else if (success) {
    Check(k.category == mailretry::Category::kDelivered);
  } else {
    Check(static_cast<int>(k.category) < mailretry::kNumCategories);
  }
  Check(static_cast<int>(k.action) < mailretry::kNumActions);
  Check(!k.rule.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  const mailretry::Classifier& c = Default();
  absl::StatusOr<mailretry::Reply> r = mailretry::ParseReply(raw);
  if (!r.ok()) {
    Check(r.status().code() == absl::StatusCode::kInvalidArgument);
    // classify also reads what the strict parser refuses: text that starts
    // with an enhanced code, and replies wrapped in log or NDR lines. Either
    // way it is an InvalidArgument or a well-formed classification.
    absl::StatusOr<mailretry::Classification> t = c.ClassifyText(raw);
    if (t.ok()) {
      CheckClassification(*t, -1);
    } else {
      Check(t.status().code() == absl::StatusCode::kInvalidArgument);
    }
  } else {
    Check(r->transport == mailretry::Transport::kReply);
    Check(r->code >= 200 && r->code <= 599);
    Check(r->text.size() <= raw.size());
    if (r->enhanced.has_value()) {
      const int k = r->enhanced->klass;
      Check(k == 2 || k == 4 || k == 5);
      Check(r->enhanced->subject <= 999 && r->enhanced->detail <= 999);
    }
    const std::string line = r->ToString();
    Check(line.find('\n') == std::string::npos);
    absl::StatusOr<mailretry::Reply> again = mailretry::ParseReply(line);
    Check(again.ok());
    Check(again->code == r->code);
    Check(again->enhanced == r->enhanced);
    const mailretry::Classification k = c.Classify(*r, "example.com");
    CheckClassification(k, r->code);
    Check(k.transient == c.Classify(*again, "example.com").transient || again->text != r->text);
  }
  // The classifier must also be total on caller-built replies that no parser
  // produced: no code, odd codes, arbitrary text.
  mailretry::Reply odd;
  odd.code = size > 0 ? data[0] * 3 : 0;
  odd.text = std::string(raw);
  CheckClassification(c.Classify(odd), odd.code);
  CheckClassification(
      c.Classify(mailretry::TransportReply(
          static_cast<mailretry::Transport>(size % mailretry::kNumTransports), raw)),
      0);
  return 0;
}
