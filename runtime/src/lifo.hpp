// lifo.hpp: the lifo slot and unshared run queues, and the monitor's rescue
// of them (Worker::lifo, Worker::local_seq, Worker::contended).
//
// The lifo slot holds the fiber just woken by the running fiber; it runs
// next on this worker (message-passing locality) and is not stealable. A
// one-worker runtime's run queue is not stealable either: its owner pops
// without a CAS. When the owner is stuck in a long fiber, only the monitor
// can move these fibers elsewhere (the rescue, monitor.cpp calls it).
//
// The protocol (taking the lifo slot or an unshared queue's fibers
// while the owner is stuck, without making the owner pay for atomic RMWs on
// its hot path). The owner brackets each *take* from them with local_seq
// (odd inside) and reads `contended` after entering; putting a fiber into an
// empty lifo slot is a plain store and needs no bracket (the monitor only
// swaps fibers out: whichever of the two comes first, the fiber ends up
// exactly once in the slot or in the monitor's hands), displacing one is an
// exchange. The monitor:
//   1. reads local_seq = s0; gives up if odd (owner inside);
//   2. sets contended = true;
//   3. issues platform::heavy_barrier(), the pair of the owner's
//      light_barrier() between its local_seq store and its contended load
//      (platform/barrier.hpp: membarrier against a compiler-only fence on
//      Linux, two seq_cst fences elsewhere): the owner's earlier stores
//      are visible and its later loads see step 2;
//   4. re-reads local_seq: if it still equals s0, the owner entered no
//      bracket before the barrier that it may still be in, and every
//      bracket it enters later sees contended and uses RMWs; so the monitor
//      may exchange the lifo slot and CAS-pop the queue. Otherwise it gives
//      up for this tick.
//   5. clears contended (release: the owner's next acquire of it sees the
//      monitor's takes), after which the owner is alone again.
// This is the asymmetric Dekker pattern: the fence cost moves entirely to
// the rare side (on Linux; the generic fallback pays a fence on both). If
// heavy_barrier() fails (Linux without membarrier) the rescue is skipped and
// a stuck worker's lifo fiber waits for it.
//
#pragma once

#include "internal.hpp"
#include "platform/barrier.hpp"

namespace weft::rt {

// The owner's bracket around taking from lifo and popping an unshared queue
// (the protocol above): odd local_seq while inside; the
// returned flag says whether the monitor may be taking too (then use atomic
// RMWs). Putting a fiber into lifo needs no bracket (lifo_put).
inline bool enter_local(Worker* w) noexcept {
  w->local_seq.store(w->local_seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // The store must stay before the load: on Linux the monitor's membarrier
  // orders them on the CPU and this is a compiler-only barrier (no
  // instruction: nothing forbade the compiler to sink a relaxed store below
  // an acquire load); elsewhere a seq_cst fence (platform/barrier.hpp).
  platform::light_barrier();
  return w->contended.load(std::memory_order_acquire);
}
inline void leave_local(Worker* w) noexcept {
  w->local_seq.store(w->local_seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}
inline Fiber* take_lifo(Worker* w, bool contended) noexcept {
  if (contended) return w->lifo.exchange(nullptr, std::memory_order_acq_rel);
  Fiber* f = w->lifo.load(std::memory_order_acquire);
  if (f) w->lifo.store(nullptr, std::memory_order_relaxed);
  return f;
}

// Owner side: puts f in the lifo slot; returns the fiber it displaced, if
// any (the caller queues it). Into an empty slot a plain store is safe: the
// monitor only ever swaps a fiber out of the slot, and only the owner puts
// one in. Displacing a fiber races with the monitor's rescue of it, so that
// (rare) case swaps atomically.
inline Fiber* lifo_put(Worker* w, Fiber* f) noexcept {
  if (!w->lifo.load(std::memory_order_relaxed)) {
    w->lifo.store(f, std::memory_order_release);
    return nullptr;
  }
  return w->lifo.exchange(f, std::memory_order_acq_rel);
}

// Monitor side: moves what thieves cannot take from a stuck worker (its
// lifo slot; its whole queue if unshared) to the global queue.
void rescue(Runtime& r, Worker& w) noexcept;

}  // namespace weft::rt
