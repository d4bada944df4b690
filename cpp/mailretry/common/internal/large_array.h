// File: common/internal/large_array.h
// -----------------------------------------------------------------------------
// Allocation for large arrays that are touched at random: the timing wheel's
// per-slot records (80 MB at 10M timers) and the simulator's per-message
// records (1M messages over 10k destinations). With 4 KiB pages almost every
// such access also misses the TLB, and on a VM a TLB miss is a nested page
// walk. Arrays of 2 MiB or more are therefore 2 MiB-aligned and advised for
// transparent huge pages (effective when THP is in "madvise" or "always" mode,
// a no-op elsewhere); smaller ones use plain operator new.
#ifndef MAILRETRY_COMMON_INTERNAL_LARGE_ARRAY_H_
#define MAILRETRY_COMMON_INTERNAL_LARGE_ARRAY_H_

#include <cstddef>
#include <vector>

namespace mailretry::internal {

void* AllocateLarge(size_t bytes);
void FreeLarge(void* p, size_t bytes);

template <typename T>
struct LargeArrayAllocator {
  using value_type = T;
  LargeArrayAllocator() = default;
  template <typename U>
  LargeArrayAllocator(const LargeArrayAllocator<U>&) {}  // NOLINT: allocator rebind
  T* allocate(size_t n) { return static_cast<T*>(AllocateLarge(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { FreeLarge(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const LargeArrayAllocator<U>&) const {
    return true;
  }
};

template <typename T>
using LargeVector = std::vector<T, LargeArrayAllocator<T>>;

}  // namespace mailretry::internal

#endif  // MAILRETRY_COMMON_INTERNAL_LARGE_ARRAY_H_
