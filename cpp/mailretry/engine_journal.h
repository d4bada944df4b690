// Forwarding header, kept for one release (0.2) so that code written against
// the flat layout of 0.1 still builds. New code includes "mailretry/engine/durable/journal.h".
#ifndef MAILRETRY_ENGINE_JOURNAL_H_
#define MAILRETRY_ENGINE_JOURNAL_H_

#include "mailretry/engine/durable/journal.h"

#endif  // MAILRETRY_ENGINE_JOURNAL_H_
