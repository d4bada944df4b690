// Forwarding header, kept for one release (0.2) so that code written against
// the flat layout of 0.1 still builds. New code includes "mailretry/reply/reply.h".
#ifndef MAILRETRY_REPLY_H_
#define MAILRETRY_REPLY_H_

#include "mailretry/reply/reply.h"

#endif  // MAILRETRY_REPLY_H_
