// Forwarding header, kept for one release (0.2) so that code written against
// the flat layout of 0.1 still builds. New code includes "mailretry/common/version.h".
#ifndef MAILRETRY_VERSION_H_
#define MAILRETRY_VERSION_H_

#include "mailretry/common/version.h"

#endif  // MAILRETRY_VERSION_H_
