// Links mailretry::core from an installed package and classifies one reply.
#include <iostream>

#include "mailretry/classify/classifier.h"
#include "mailretry/common/version.h"
#include "mailretry/reply/reply.h"

int main() {
  absl::StatusOr<mailretry::Classifier> classifier = mailretry::Classifier::Create();
  if (!classifier.ok()) {
    std::cerr << classifier.status() << "\n";
    return 1;
  }
  absl::StatusOr<mailretry::Classification> result = classifier->ClassifyText(
      "421-4.7.28 Our system has detected an unusual rate of unsolicited mail\r\n"
      "421 4.7.28 originating from your IP address. - gsmtp");
  if (!result.ok()) {
    std::cerr << result.status() << "\n";
    return 1;
  }
  std::cout << "mailretry " << mailretry::Version() << ": "
            << mailretry::CategoryName(result->category) << " / "
            << mailretry::ActionName(result->action) << " (" << result->rule << ")\n";
  return result->action == mailretry::Action::kThrottle && result->transient ? 0 : 1;
}
