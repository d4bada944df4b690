// Forwarding header, kept for one release (0.2) so that code written against
// the flat layout of 0.1 still builds. New code includes "mailretry/policy/retry_policy.h".
#ifndef MAILRETRY_RETRY_POLICY_H_
#define MAILRETRY_RETRY_POLICY_H_

#include "mailretry/policy/retry_policy.h"

#endif  // MAILRETRY_RETRY_POLICY_H_
