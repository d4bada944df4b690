// Forwarding header, kept for one release (0.2) so that code written against
// the flat layout of 0.1 still builds. New code includes "mailretry/classify/classifier.h".
#ifndef MAILRETRY_CLASSIFIER_H_
#define MAILRETRY_CLASSIFIER_H_

#include "mailretry/classify/classifier.h"

#endif  // MAILRETRY_CLASSIFIER_H_
