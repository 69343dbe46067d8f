// timer.cpp: per-worker timer heaps.
//
// Each worker owns a 4-ary min-heap of caller-owned Timer records (a million
// pending timers cost one pointer each here). A timer is armed on the heap of
// the worker that arms it; any thread may cancel it, and any worker may fire
// it: idle workers run the expired timers of every heap, so a busy worker's
// timers are not held back while another worker is idle.
//
// Shared state: heap_, and each armed Timer's `index`, are guarded by lock_.
// Timer::heap is written under lock_ (release) and read by timer_cancel
// without it (acquire) to find which heap to lock; it is re-checked under
// that lock. A fired timer's fn/a/b/seq are copied under lock_ and the
// callback runs after the unlock: the Timer is never touched again.
// Rejected: a hierarchical timing wheel (cheaper insert, but cancellation
// and "next deadline" for the idle sleep are clumsier; a heap of 1M timers
// is ~20 levels at 4-ary ~10, fast enough).
#include <weft/runtime.hpp>

#include <cstdio>
#include <cstdlib>

#include "internal.hpp"

namespace weft::rt {

void TimerHeap::sift_up(std::uint32_t i) noexcept {
  Timer* t = heap_[i];
  while (i > 0) {
    std::uint32_t p = (i - 1) / 4;
    if (heap_[p]->when <= t->when) break;
    place(i, heap_[p]);
    i = p;
  }
  place(i, t);
}

void TimerHeap::sift_down(std::uint32_t i) noexcept {
  Timer* t = heap_[i];
  auto n = static_cast<std::uint32_t>(heap_.size());
  for (;;) {
    std::uint32_t c = 4 * i + 1;
    if (c >= n) break;
    std::uint32_t best = c;
    for (std::uint32_t k = c + 1; k < c + 4 && k < n; k++)
      if (heap_[k]->when < heap_[best]->when) best = k;
    if (t->when <= heap_[best]->when) break;
    place(i, heap_[best]);
    i = best;
  }
  place(i, t);
}

void TimerHeap::erase_at(std::uint32_t i) noexcept {
  Timer* last = heap_.back();
  heap_.pop_back();
  if (i < heap_.size()) {
    place(i, last);
    sift_down(i);
    sift_up(last->index);
  }
  size_.store(heap_.size(), std::memory_order_relaxed);
  next_.store(heap_.empty() ? kNoDeadline : to_ns(heap_[0]->when), std::memory_order_relaxed);
}

// At runtime teardown (every worker has stopped) a timer may still be armed
// only if its owner outlives the runtime (fibers are all unwound first, so
// a fiber's own timers are gone): a weft::Timer kept in a static, say. Its
// callback will never run; its owner must still be able to cancel it
// safely, and to tell that the callback will not run (to release what the
// callback would have). So: fn = nullptr first, then heap = nullptr
// (release: a later timer_cancel's acquire load of heap sees fn too).
TimerHeap::~TimerHeap() {
  std::lock_guard<detail::SpinLock> g(lock_);
  for (Timer* t : heap_) {
    t->fn = nullptr;
    t->heap.store(nullptr, std::memory_order_release);
  }
}

void TimerHeap::add(Timer* t) noexcept {
  std::lock_guard<detail::SpinLock> g(lock_);
  heap_.push_back(t);
  sift_up(static_cast<std::uint32_t>(heap_.size() - 1));
  t->heap.store(this, std::memory_order_release);
  size_.store(heap_.size(), std::memory_order_relaxed);
  next_.store(to_ns(heap_[0]->when), std::memory_order_relaxed);
}

bool TimerHeap::remove(Timer* t) noexcept {
  std::lock_guard<detail::SpinLock> g(lock_);
  if (t->heap.load(std::memory_order_relaxed) != this) return false;  // fired meanwhile
  t->heap.store(nullptr, std::memory_order_relaxed);
  erase_at(t->index);
  return true;
}

int TimerHeap::run_expired(std::int64_t now_ns, bool try_only) noexcept {
  int fired = 0;
  for (;;) {
    if (next_.load(std::memory_order_relaxed) > now_ns) return fired;
    struct {
      void (*fn)(void*, void*, std::uint64_t);
      void *a, *b;
      std::uint64_t seq;
    } cb;
    {
      std::unique_lock<detail::SpinLock> g(lock_, std::defer_lock);
      if (try_only) {
        if (!g.try_lock()) return fired;
      } else {
        g.lock();
      }
      if (heap_.empty() || to_ns(heap_[0]->when) > now_ns) return fired;
      Timer* t = heap_[0];
      cb = {t->fn, t->a, t->b, t->seq};
      t->heap.store(nullptr, std::memory_order_release);
      erase_at(0);
    }
    cb.fn(cb.a, cb.b, cb.seq);
    fired++;
  }
}

void timer_start(Timer& t) noexcept {
  Worker* w = current_worker();
  if (!w) {
    std::fputs("weft: timer_start() called outside the runtime\n", stderr);
    std::abort();
  }
  TimerHeap* h = &w->timers;
  std::int64_t before = h->next_ns();
  h->add(&t);
  WEFT_CHAOS_POINT();
  // A new earliest deadline that the sleeping workers may not know about:
  // wake one so that it sleeps until this one instead. The fence pairs with
  // publish_sleep_deadline's (scheduler.cpp): either that sleeper's second
  // scan sees our heap's new next_, or we see its published deadline here.
  std::int64_t when = to_ns(t.when);
  Runtime* r = w->rt;
  if (when >= before) return;  // not a new earliest here: whoever armed `before` did this
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (when < r->sleepers_deadline.load(std::memory_order_seq_cst) && r->nidle.load(std::memory_order_seq_cst) > 0)
    r->wakep();
}

bool timer_cancel(Timer& t) noexcept {
  for (;;) {
    auto* h = static_cast<TimerHeap*>(t.heap.load(std::memory_order_acquire));
    if (!h) return false;
    if (h->remove(&t)) return true;
    // It fired (heap == nullptr now) or, never in practice, moved: re-check.
  }
}

void timer_start_unpark(Timer& t, Clock::time_point when, Parker p) noexcept {
  t.when = when;
  t.fn = [](void* a, void* b, std::uint64_t seq) {
    unpark(Parker{static_cast<Fiber*>(a), static_cast<std::atomic<std::uint64_t>*>(b), seq}, WakeReason::Timeout);
  };
  t.a = p.fiber;
  t.b = p.sync;
  t.seq = p.token;
  timer_start(t);
}

}  // namespace weft::rt
