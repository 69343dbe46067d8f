// runqueue.hpp: a worker's bounded run queue (single owner, many thieves).
//
// A ring of kSize fiber pointers indexed by two free-running 32-bit counters:
//   head: the next entry to take. Advanced by CAS, by the owner (pop) and by
//         thieves (steal). Only a successful CAS owns the entries it skips.
//   tail: the next free entry. Written by the owner only (push).
// Invariant: 0 <= tail - head <= kSize (unsigned arithmetic).
//
// Memory ordering:
// - push writes the slot (relaxed atomic store), then publishes it with a
//   release store of tail. pop/steal read tail with acquire, so the slot
//   contents they read are the owner's.
// - pop and steal read their slots *before* the CAS on head; the CAS (acq_rel)
//   validates that nobody took those entries meanwhile. If it fails the copy
//   is discarded. The owner only overwrites slot `tail % kSize` when
//   tail - head < kSize, i.e. a slot no longer between head and tail, and a
//   thief whose stale head lies before that slot fails its CAS. Slots are
//   atomics so these benign, validated-later reads are not data races.
// - The owner's release CAS on head in pop, and the thieves' acq_rel CAS, make
//   the owner see that entries taken by thieves are free before reusing them.
// The design follows Go's runq (runqput/runqget/runqgrab), written anew.
#pragma once

#include <atomic>
#include <cassert>
#include <cstdint>

namespace weft::rt {

struct Fiber;

class RunQueue {
 public:
  static constexpr std::uint32_t kSize = 256;

  // Owner only. False when full (the caller moves half to the global queue).
  bool push(Fiber* f) noexcept {
    std::uint32_t t = tail_.load(std::memory_order_relaxed);
    std::uint32_t h = head_.load(std::memory_order_acquire);
    if (t - h >= kSize) return false;
    slots_[t % kSize].store(f, std::memory_order_relaxed);
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }

  // Owner only: takes up to n = half of the entries for overflow to the
  // global queue. Returns how many were written to out.
  std::uint32_t take_half(Fiber** out) noexcept {
    for (;;) {
      std::uint32_t h = head_.load(std::memory_order_acquire);
      std::uint32_t t = tail_.load(std::memory_order_relaxed);
      std::uint32_t n = (t - h) / 2;
      for (std::uint32_t i = 0; i < n; i++) out[i] = slots_[(h + i) % kSize].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(h, h + n, std::memory_order_acq_rel)) return n;
    }
  }

  // The owner, or the monitor rescuing a stuck owner's fibers (hence the
  // acquire on tail: the slot contents must be the owner's).
  Fiber* pop() noexcept {
    for (;;) {
      std::uint32_t h = head_.load(std::memory_order_acquire);
      std::uint32_t t = tail_.load(std::memory_order_acquire);
      if (t == h) return nullptr;
      Fiber* f = slots_[h % kSize].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(h, h + 1, std::memory_order_acq_rel)) return f;
    }
  }

  // Owner only, and only when no thief can exist (a one-worker runtime):
  // the same as pop() without the CAS, which dominates a yield's cost.
  Fiber* pop_unshared() noexcept {
    std::uint32_t h = head_.load(std::memory_order_relaxed);
    if (tail_.load(std::memory_order_relaxed) == h) return nullptr;
    Fiber* f = slots_[h % kSize].load(std::memory_order_relaxed);
    head_.store(h + 1, std::memory_order_relaxed);
    return f;
  }

  // Any thread: moves half of this queue's entries into `dst` (whose owner is
  // the caller) and returns one of them to run, or nullptr.
  Fiber* steal_into(RunQueue& dst) noexcept {
    // dst must be the thief's own queue, empty: the copied entries start at
    // its tail and only its owner (the caller) pushes to it.
    assert(dst.empty() && "steal_into needs an empty destination queue");
    std::uint32_t dt = dst.tail_.load(std::memory_order_relaxed);
    for (;;) {
      std::uint32_t h = head_.load(std::memory_order_acquire);
      std::uint32_t t = tail_.load(std::memory_order_acquire);
      std::uint32_t n = t - h;
      n -= n / 2;
      if (n == 0) return nullptr;
      if (n > kSize / 2) continue;  // inconsistent snapshot (head moved past an old tail)
      for (std::uint32_t i = 0; i < n; i++)
        dst.slots_[(dt + i) % kSize].store(slots_[(h + i) % kSize].load(std::memory_order_relaxed),
                                           std::memory_order_relaxed);
      if (head_.compare_exchange_weak(h, h + n, std::memory_order_acq_rel)) {
        // The last copied entry is returned to run; the others are published.
        Fiber* f = dst.slots_[(dt + n - 1) % kSize].load(std::memory_order_relaxed);
        if (n > 1) dst.tail_.store(dt + n - 1, std::memory_order_release);
        return f;
      }
    }
  }

  bool empty() const noexcept {
    return tail_.load(std::memory_order_acquire) == head_.load(std::memory_order_acquire);
  }
  std::uint32_t size() const noexcept {
    return tail_.load(std::memory_order_acquire) - head_.load(std::memory_order_acquire);
  }

 private:
  alignas(64) std::atomic<std::uint32_t> head_{0};
  alignas(64) std::atomic<std::uint32_t> tail_{0};
  std::atomic<Fiber*> slots_[kSize] = {};
};

}  // namespace weft::rt
