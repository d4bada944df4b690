// The 0.1 flat include paths still compile and name the same declarations as
// the concept folders they forward to.
#include <type_traits>

#include "gtest/gtest.h"
#include "mailretry/classifier.h"
#include "mailretry/engine.h"
#include "mailretry/engine_journal.h"
#include "mailretry/reply.h"
#include "mailretry/retry_policy.h"
#include "mailretry/sim.h"
#include "mailretry/timer_queue.h"
#include "mailretry/version.h"

namespace mailretry {
namespace {

TEST(ForwardingHeaders, DeclareThePublicTypes) {
  EXPECT_TRUE(std::is_class_v<Engine>);
  EXPECT_TRUE(std::is_class_v<Classifier>);
  EXPECT_TRUE(std::is_class_v<TimerQueue>);
  EXPECT_TRUE(std::is_class_v<Reply>);
  EXPECT_FALSE(Version().empty());
}

}  // namespace
}  // namespace mailretry
