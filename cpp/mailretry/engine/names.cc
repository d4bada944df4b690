// File: engine/names.cc
// The stable names of the engine's enums, and the remediation steps that
// structural events carry, per failure category; Event's small helpers.
#include <string>
#include <string_view>
#include <vector>

#include "mailretry/engine/engine.h"

namespace mailretry {

std::string_view DecisionActionName(DecisionAction a) {
  switch (a) {
    case DecisionAction::kDelivered:
      return "delivered";
    case DecisionAction::kRetry:
      return "retry";
    case DecisionAction::kBounced:
      return "bounced";
    case DecisionAction::kExpired:
      return "expired";
  }
  return "retry";
}

std::string_view EventKindName(EventKind k) {
  switch (k) {
    case EventKind::kDelivered:
      return "delivered";
    case EventKind::kDeferred:
      return "deferred";
    case EventKind::kBounced:
      return "bounced";
    case EventKind::kExpired:
      return "expired";
    case EventKind::kLeaseExpired:
      return "lease_expired";
    case EventKind::kDestinationThrottled:
      return "destination_throttled";
    case EventKind::kDestinationSuspended:
      return "destination_suspended";
    case EventKind::kDestinationResumed:
      return "destination_resumed";
    case EventKind::kDestinationWarning:
      return "destination_warning";
    case EventKind::kStructuralFailure:
      return "structural_failure";
    case EventKind::kStructuralCleared:
      return "structural_cleared";
  }
  return "delivered";
}

std::string_view HealthName(Health h) {
  switch (h) {
    case Health::kHealthy:
      return "healthy";
    case Health::kWarning:
      return "warning";
    case Health::kStructural:
      return "structural";
  }
  return "healthy";
}

std::vector<std::string> RemediationSteps(Category c) {
  switch (c) {
    case Category::kRateLimit:
    case Category::kTooManyConnections:
    case Category::kServerBusyCapacity:
    case Category::kReputationThrottle:
      return {
          "Lower concurrency to 1-2 connections per sending IP and cut the message rate; "
          "ramp back up slowly (receivers never signal 'speed up')."};
    case Category::kReputationBlock:
      return {
          "Check the sending IP's and domain's reputation (Google Postmaster Tools, Microsoft "
          "SNDS) "
          "and reduce volume until it recovers.",
          "Check the sending IP against the major DNSBLs and request delisting where listed."};
    case Category::kDnsblListed:
      return {
          "Check the sending IP against the major DNSBLs, fix the cause and request delisting."};
    case Category::kAuthSpfDkimDmarc:
      return {
          "Make SPF include the actual sending IP, make DKIM signatures validate, and align DMARC "
          "with one of them."};
    case Category::kPtrRdns:
      return {
          "Make the sending IP's PTR record resolve and match the HELO/EHLO hostname "
          "(forward-confirmed reverse DNS)."};
    case Category::kPolicyContentSpam:
      return {"Review content, links and list hygiene; check complaint rates."};
    case Category::kTlsRequired:
      return {"Enable STARTTLS with a valid certificate towards this destination."};
    case Category::kRelayDenied:
      return {"Check the relay/smarthost configuration and its credentials."};
    case Category::kUnknownTransient:
      return {"Read the text after the code: it names the real cause.",
              "Lower concurrency to 1-2 connections per sending IP.",
              "Confirm the sending IP's PTR resolves and matches HELO/EHLO.",
              "Check IP reputation (DNSBLs, Google Postmaster Tools).",
              "Verify SPF, DKIM and DMARC alignment."};
    default:
      return {};
  }
}

const DestinationEventInfo& Event::info() const {
  static const DestinationEventInfo kNone;
  return destination_info != nullptr ? *destination_info : kNone;
}

OwnedEvent::OwnedEvent(const Event& e)
    : kind(e.kind),
      category(e.category),
      attempt(e.attempt),
      time(e.time),
      msg_id(e.msg_id),
      destination(e.destination),
      source(e.source),
      next_attempt(e.next_attempt),
      status(e.status),
      reply(e.reply),
      detail(e.detail),
      rule(e.rule),
      info(e.info()) {}

Event OwnedEvent::view() const {
  Event e;
  e.kind = kind;
  e.category = category;
  e.attempt = attempt;
  e.time = time;
  e.msg_id = msg_id;
  e.destination = destination;
  e.source = source;
  e.next_attempt = next_attempt;
  e.status = status;
  e.reply = reply;
  e.detail = detail;
  e.rule = rule;
  if (info.until || info.concurrency_limit != 0 || info.rate_per_second ||
      !info.categories.empty() || !info.samples.empty() || !info.remediation.empty()) {
    e.destination_info = &info;
  }
  return e;
}

}  // namespace mailretry
