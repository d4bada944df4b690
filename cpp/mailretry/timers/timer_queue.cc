#include "mailretry/timers/timer_queue.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "mailretry/common/internal/strings.h"
#include "mailretry/timers/internal/boost_heap_queue.h"
#include "mailretry/timers/internal/quad_heap.h"
#include "mailretry/timers/internal/timing_wheel.h"

namespace mailretry {

std::string_view TimerBackendName(TimerBackend b) {
  switch (b) {
    case TimerBackend::kWheel:
      return "wheel";
    case TimerBackend::kBoostHeap:
      return "boost_heap";
    case TimerBackend::kQuadHeap:
      return "quad_heap";
  }
  return "unknown";
}

absl::StatusOr<TimerBackend> ParseTimerBackend(std::string_view name) {
  for (TimerBackend b : {TimerBackend::kWheel, TimerBackend::kBoostHeap, TimerBackend::kQuadHeap}) {
    if (TimerBackendName(b) == name) return b;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown timer backend '", internal::ToAbsl(name),
                                                 "' (wheel, boost_heap, quad_heap)"));
}

std::unique_ptr<TimerQueue> MakeTimerQueue(TimerBackend backend, const TimerOptions& options) {
  switch (backend) {
    case TimerBackend::kBoostHeap:
      return std::make_unique<internal::BoostHeapQueue>(options);
    case TimerBackend::kQuadHeap:
      return std::make_unique<internal::QuadHeap>(options);
    case TimerBackend::kWheel:
      return std::make_unique<internal::TimingWheel>(options);
  }
  return nullptr;
}

}  // namespace mailretry
