// Forwarding header, kept for one release (0.2) so that code written against
// the flat layout of 0.1 still builds. New code includes "mailretry/engine/engine.h".
#ifndef MAILRETRY_ENGINE_H_
#define MAILRETRY_ENGINE_H_

#include "mailretry/engine/engine.h"

#endif  // MAILRETRY_ENGINE_H_
