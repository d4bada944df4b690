// Forwarding header, kept for one release (0.2) so that code written against
// the flat layout of 0.1 still builds. New code includes "mailretry/timers/timer_queue.h".
#ifndef MAILRETRY_TIMER_QUEUE_H_
#define MAILRETRY_TIMER_QUEUE_H_

#include "mailretry/timers/timer_queue.h"

#endif  // MAILRETRY_TIMER_QUEUE_H_
