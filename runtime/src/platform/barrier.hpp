// platform/barrier.hpp: an asymmetric pair of fences for the monitor's
// rescue of a stuck worker's lifo slot and unshared queue (lifo.hpp).
//
// The protocol needs a store-load (Dekker) ordering between two threads:
//   owner:   local_seq = odd (relaxed);  light_barrier();  load contended
//   monitor: contended = true (relaxed); heavy_barrier();  load local_seq
// and what it must guarantee: it cannot happen that the owner reads
// contended == false AND the monitor reads the old local_seq. Then either
// the owner sees the monitor coming (and takes with atomic RMWs) or the
// monitor sees the owner inside or past a bracket (and gives up this tick).
//
// light_barrier() is on the owner's hot path (every take from the lifo
// slot); heavy_barrier() runs at most once per stuck worker per monitor tick.
//   Linux    light: a compiler-only fence (no instruction; it keeps the
//            store before the load in program order). heavy: membarrier
//            (MEMBARRIER_CMD_PRIVATE_EXPEDITED, else the GLOBAL command):
//            the kernel makes every running thread of the process execute
//            a full barrier, so the owner's store is visible and its next
//            load sees ours, whatever point of its code it was at. If the
//            kernel has no membarrier (before 4.3), heavy_barrier() returns
//            false and the rescue is skipped: a stuck worker's lifo fiber
//            then waits for it (the light side has no fence to fall back
//            on). barrier_linux.cpp.
//   generic  (and FreeBSD, macOS: no equivalent used here) light and heavy
//            are both std::atomic_thread_fence(seq_cst): the two seq_cst
//            fences are ordered in the single total order S; if the
//            owner's fence comes first, the monitor's later load of
//            local_seq sees the owner's store, else the owner's load of
//            contended sees the monitor's ([atomics.order]: fence-fence
//            store-buffering is forbidden). Always correct; the cost is one
//            full fence (an mfence or locked instruction on x86-64, a dmb
//            ish on arm64: tens of cycles) on each owner take from the lifo
//            slot. barrier_generic.cpp.
// (An mprotect-based process-wide barrier, which relies on TLB-shootdown
// IPIs, was rejected: arm64 invalidates TLBs by broadcast without
// interrupting the other cores, so it is no barrier there.)
#pragma once

#include <atomic>

namespace weft::rt::platform {

inline void light_barrier() noexcept {
#if defined(WEFT_PLATFORM_LINUX)
  std::atomic_signal_fence(std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

// False if no barrier was made (then the caller must not rely on one).
bool heavy_barrier() noexcept;

}  // namespace weft::rt::platform
