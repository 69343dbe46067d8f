// lifo.cpp: the monitor's side of the rescue protocol (lifo.hpp).
#include "lifo.hpp"

namespace weft::rt {

// Moves what thieves cannot take from a stuck worker (its lifo slot; its
// whole queue if unshared) to the head of the global queue. See lifo.hpp.
void rescue(Runtime& r, Worker& w) noexcept {
  std::uint32_t s0 = w.local_seq.load(std::memory_order_acquire);
  if ((s0 & 1) || (!w.lifo.load(std::memory_order_relaxed) && (w.shared || w.q.empty()))) return;
  w.contended.store(true, std::memory_order_relaxed);
  if (platform::heavy_barrier() && w.local_seq.load(std::memory_order_acquire) == s0) {
    Fiber* got[RunQueue::kSize + 1];
    unsigned n = 0;
    if (Fiber* f = w.lifo.exchange(nullptr, std::memory_order_acq_rel)) got[n++] = f;
    // The owner may keep pushing meanwhile (a stuck fiber waking others):
    // take at most one queue's worth.
    while (!w.shared && n < RunQueue::kSize + 1) {
      Fiber* f = w.q.pop();
      if (!f) break;
      got[n++] = f;
    }
    r.inject_front(got, n);  // the lifo fiber first, then the queue in its order: as the owner would run them
  }
  w.contended.store(false, std::memory_order_release);
}

}  // namespace weft::rt
