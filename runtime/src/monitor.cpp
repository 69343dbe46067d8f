// monitor.cpp: the runtime's monitor thread (Go's sysmon, first part).
//
// Every tick (1 ms while fibers run, 10 ms once the runtime has been idle
// for a while) it looks at each worker: a worker whose switch counter has
// not moved since the previous tick while fibers wait in its run queue is
// running one fiber for too long (a CPU-bound loop, a blocking system call).
// The monitor records that switch count in Worker::stuck_at, which lets
// thieves take even a single queued fiber from it, and wakes an idle worker
// to do so. It never touches a worker's queue itself.
//
// Shared state: reads workers' counters and queue sizes (relaxed, hints);
// writes stuck_at (relaxed; a stale value only delays or allows one steal,
// and steal_into's CAS keeps the queue itself consistent).
#include "internal.hpp"

namespace weft::rt {

void monitor_loop(Runtime& r) noexcept {
  std::vector<std::uint64_t> last(r.nworkers, 0);
  std::vector<bool> backlog(r.nworkers, false);
  unsigned idle_ticks = 0;
  while (!r.exiting.load(std::memory_order_acquire)) {
    std::int64_t tick_ns = idle_ticks > 50 ? 10'000'000 : 1'000'000;
    futex_wait(&r.monitor_word, 0, to_ns(Clock::now()) + tick_ns);
    bool any_busy = false;
    for (unsigned i = 0; i < r.nworkers; i++) {
      Worker& w = *r.workers[i];
      std::uint64_t s = w.switches.load(std::memory_order_relaxed);
      bool queued = w.q.size() > 0;
      if (s != last[i]) any_busy = true;
      if (s == last[i] && queued && w.stuck_at.load(std::memory_order_relaxed) != s) {
        w.stuck_at.store(s, std::memory_order_relaxed);
        r.wakep();
        any_busy = true;
      } else if (w.q.size() > 1 && backlog[i]) {
        r.wakep();  // a backlog two ticks running: an idle worker should share it
      }
      backlog[i] = w.q.size() > 1;
      last[i] = s;
    }
    idle_ticks = any_busy ? 0 : idle_ticks + 1;
  }
}

}  // namespace weft::rt
