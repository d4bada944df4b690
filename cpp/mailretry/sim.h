// Forwarding header, kept for one release (0.2) so that code written against
// the flat layout of 0.1 still builds. New code includes "mailretry/sim/sim.h".
#ifndef MAILRETRY_SIM_H_
#define MAILRETRY_SIM_H_

#include "mailretry/sim/sim.h"

#endif  // MAILRETRY_SIM_H_
