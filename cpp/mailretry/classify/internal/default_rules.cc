#include "mailretry/classify/internal/default_rules.h"

#include <vector>

#include "mailretry/classify/classifier.h"

namespace mailretry::internal {
namespace {

using C = Category;
using A = Action;

}  // namespace

Action DefaultAction(Category category, int klass) {
  const bool temp = klass == 4;
  switch (category) {
    case C::kRateLimit:
    case C::kTooManyConnections:
    case C::kReputationThrottle:
      return A::kThrottle;
    case C::kReputationBlock:
      return A::kSuspendDomain;
    case C::kServerBusyCapacity:
    case C::kGreylisting:
    case C::kMaintenanceShutdown:
    case C::kUnknownTransient:
    case C::kDelivered:  // nothing to do; kRetry is the neutral answer
      return A::kRetry;
    case C::kAuthSpfDkimDmarc:
    case C::kPtrRdns:
    case C::kDnsblListed:
    case C::kTlsRequired:
      return A::kRemediate;
    case C::kRelayDenied:
      return A::kBounce;
    case C::kPolicyContentSpam:
    case C::kMailboxFull:
    case C::kMailboxUnknown:
    case C::kMailboxDisabled:
    case C::kDomainUnknown:
    case C::kMessageTooLarge:
    case C::kUnknownPermanent:
      return temp ? A::kRetry : A::kBounce;
  }
  return temp ? A::kRetry : A::kBounce;
}

bool DefaultTransient(Action action, int klass) {
  switch (action) {
    case A::kRetry:
    case A::kThrottle:
    case A::kSuspendDomain:
      return true;
    case A::kBounce:
      return false;
    case A::kRemediate:
      return klass == 4;
  }
  return klass == 4;
}

const std::vector<DefaultRuleSpec>& DefaultRuleSpecs() {
  // The layers live in one file each (default_rules_<layer>.cc); the order of
  // the calls is the table's priority order.
  static const auto* specs = [] {
    auto* all = new std::vector<DefaultRuleSpec>;
    AppendStockRules(all);
    AppendPhraseRules(all);
    AppendWordRules(all);
    AppendIntlRules(all);
    AppendContentRules(all);
    AppendCodeRules(all);
    return all;
  }();
  return *specs;
}

}  // namespace mailretry::internal
