// sync.cpp: SpinLock, WaitList, Mutex, CondVar, WaitGroup. Invariants and
// lock order: see weft/sync.hpp and lot.hpp.
#include <weft/sync.hpp>

#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <weft/runtime.hpp>

#include "lot.hpp"

namespace weft {
namespace detail {

void SpinLock::lock_contended() noexcept {
  for (unsigned spins = 0; flag_.load(std::memory_order_relaxed); spins++) {
    if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      sched_yield();  // the holder was preempted: let it run
    }
  }
}

void WaitList::push_back(Waiter* w) noexcept {
  w->next = nullptr;
  w->prev = tail_;
  if (tail_) tail_->next = w; else head_ = w;
  tail_ = w;
  w->queued = true;
}

void WaitList::push_front(Waiter* w) noexcept {
  w->prev = nullptr;
  w->next = head_;
  if (head_) head_->prev = w; else tail_ = w;
  head_ = w;
  w->queued = true;
}

void WaitList::remove(Waiter* w) noexcept {
  if (w->prev) w->prev->next = w->next; else head_ = w->next;
  if (w->next) w->next->prev = w->prev; else tail_ = w->prev;
  w->prev = w->next = nullptr;
  w->queued = false;
}

Waiter* WaitList::pop_front() noexcept {
  Waiter* w = head_;
  if (w) remove(w);
  return w;
}

}  // namespace detail

// ---- Mutex -----------------------------------------------------------------------
// The protocol follows Go's sync.Mutex (written anew for the park API):
// - Normal mode: unlock drops kLocked with one atomic add, and wakes one
//   waiter only if there are waiters, nobody holds the lock again already,
//   and no waiter is awake yet (kWoken). The woken waiter competes with
//   running fibers (barging keeps the lock hot in one cache) and re-queues at
//   the front if it loses. A fiber spinning for the lock sets kWoken too, so
//   that unlock does not wake a waiter it is about to beat anyway.
// - Starvation mode (kStarving): set by a waiter that has waited more than
//   1 ms. Unlock hands ownership to the first waiter (Waiter::handoff; it
//   sets kLocked itself) and newcomers queue instead of barging. The mode
//   ends when the receiving waiter is the last one or waited less than 1 ms.
// Every wake is claimed through rt::unpark under qlock_; a waiter that lost
// its claim to a cancellation is skipped and never handed the lock.

bool Mutex::try_lock() noexcept {
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  while (!(s & (kLocked | kStarving)))
    if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  return false;
}

void Mutex::lock_slow() {
  using std::chrono::milliseconds;
  Clock::time_point first_wait{};
  bool awoke = false;    // we own the kWoken bit (set by the unlocker or by our spin)
  bool requeue = false;  // we have waited before: queue at the front
  int spins = 0;
  for (;;) {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    if (!(s & (kLocked | kStarving))) {
      if (state_.compare_exchange_weak(s, (s | kLocked) & ~(awoke ? kWoken : 0u), std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return;
      continue;
    }
    // The holder may be running on another worker: spin a little first.
    if ((s & kLocked) && !(s & kStarving) && spins < 8 && rt::can_spin()) {
      if (!awoke && !(s & kWoken) && (s & kWaiters) &&
          state_.compare_exchange_weak(s, s | kWoken, std::memory_order_relaxed, std::memory_order_relaxed))
        awoke = true;
      for (int i = 0; i < 16; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      spins++;
      continue;
    }
    detail::Waiter w;
    {
      std::lock_guard<detail::SpinLock> g(qlock_);
      s = state_.load(std::memory_order_relaxed);
      bool queued = false;
      while (!queued) {
        if (!(s & (kLocked | kStarving))) break;  // free again: retry outside
        std::uint32_t ns = (s | kWaiters) & ~(awoke ? kWoken : 0u);
        if (requeue && (s & kLocked) && Clock::now() - first_wait > milliseconds(1)) ns |= kStarving;
        queued = state_.compare_exchange_weak(s, ns, std::memory_order_relaxed, std::memory_order_relaxed);
      }
      if (!queued) continue;
      awoke = false;
      w.parker = rt::prepare_park(WaitKind::Mutex, this);
      if (requeue) waiters_.push_front(&w); else waiters_.push_back(&w);
    }
    if (!requeue) first_wait = Clock::now();
    requeue = true;
    WakeReason r = rt::park(w.parker);
    if (r != WakeReason::Event) {
      std::lock_guard<detail::SpinLock> g(qlock_);
      if (w.queued) {
        waiters_.remove(&w);
        if (waiters_.empty()) state_.fetch_and(~kWaiters, std::memory_order_relaxed);
      }
      // Our claim was lost before any unlocker could hand us the lock.
      rt::throw_unwind();
    }
    if (w.handoff) {
      // Starvation mode: ownership is ours. Leave the mode if we are the
      // last waiter or did not wait long.
      std::uint32_t add = kLocked;
      std::uint32_t clear = 0;
      bool last = !(state_.load(std::memory_order_relaxed) & kWaiters);
      if (last || Clock::now() - first_wait < milliseconds(1)) clear = kStarving;
      std::uint32_t cur = state_.load(std::memory_order_relaxed);
      while (!state_.compare_exchange_weak(cur, (cur | add) & ~clear, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
      }
      return;
    }
    awoke = true;  // the unlocker set kWoken for us
    spins = 0;
  }
}

void Mutex::unlock_slow() {
  // Nobody to wake (no waiters, or one already awake) and not starving:
  // release by CAS, touching nothing afterwards. Otherwise release under
  // qlock_, which the destructor waits for.
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  while (!(s & kStarving) && (!(s & kWaiters) || (s & kWoken)) && (s & kLocked))
    if (state_.compare_exchange_weak(s, s - kLocked, std::memory_order_release, std::memory_order_relaxed)) return;
  std::lock_guard<detail::SpinLock> g(qlock_);
  s = state_.fetch_sub(kLocked, std::memory_order_release) - kLocked;
  if (s & kLocked) {
    std::fputs("weft: Mutex::unlock() of an unlocked mutex\n", stderr);
    std::abort();
  }
  // The mode this unlock released in decides its duty, as in Go's
  // unlockSlow: only an unlock that released with kStarving set hands the
  // lock off. (Deciding from a later load once let a delayed normal-mode
  // unlock hand off too: holder H released in normal mode and headed here;
  // barger B took the lock, a waiter set kStarving, B unlocked and handed
  // the lock to waiter W1; then H took qlock_, saw kStarving and no kLocked,
  // and handed it to W2 as well: two owners. Releasing under qlock_ now also
  // closes that window.)
  const bool starving = s & kStarving;
  for (;;) {
    s = state_.load(std::memory_order_relaxed);
    // Taken again since our fetch_sub (a barger): its unlock wakes or hands
    // off. In starvation mode nobody can take it, so this is for the normal
    // path, where also nothing is to do if nobody waits, a waiter is
    // already awake (it will find the lock free), or the mode turned to
    // starvation meanwhile (whoever holds or last released it hands off).
    if (s & kLocked) return;
    if (!starving && (!(s & kWaiters) || (s & (kWoken | kStarving)))) return;
    detail::Waiter* w = waiters_.pop_front();
    if (!w) {
      state_.fetch_and(~(kWaiters | kStarving), std::memory_order_relaxed);
      return;
    }
    std::uint32_t set = starving ? 0 : kWoken;
    std::uint32_t clear = waiters_.empty() ? kWaiters : 0;
    state_.fetch_or(set, std::memory_order_relaxed);
    if (clear) state_.fetch_and(~clear, std::memory_order_relaxed);
    w->handoff = starving;
    if (rt::unpark(w->parker)) return;
    // That waiter was cancelled meanwhile: undo and try the next one.
    w->handoff = false;
    if (set) state_.fetch_and(~set, std::memory_order_relaxed);
  }
}

// ---- CondVar -------------------------------------------------------------------
// Waiters are queued in the parking lot under the CondVar's address (lot.hpp
// explains why: the CondVar may be destroyed once its waiters were notified,
// before they return). A notify touches only the lot; a woken waiter never
// touches the CondVar again; one that timed out or was cancelled unlinks
// itself under the bucket lock.

std::cv_status CondVar::wait_until(std::unique_lock<Mutex>& lock, Clock::time_point deadline) {
  if (!lock.owns_lock()) throw std::logic_error("weft: CondVar::wait() needs a locked unique_lock");
  rt::cancellation_point();
  detail::LotWaiter w;
  w.key = this;
  detail::LotBucket& b = detail::lot_bucket(this);
  {
    std::lock_guard<detail::SpinLock> g(b.lock);
    w.parker = rt::prepare_park(WaitKind::CondVar, this);
    detail::lot_push(b, &w);
  }
  lock.unlock();
  WakeReason r = rt::park_until(w.parker, deadline);
  if (r != WakeReason::Event) {
    std::lock_guard<detail::SpinLock> g(b.lock);
    // Not queued any more: a notify popped us after our timeout or
    // cancellation had won the claim. Nothing to pass on: that notify's
    // unpark failed, so lot_wake_one went on to the next waiter (notify_all
    // woke them all). Passing it on again here woke a second waiter for one
    // notify_one (cancel_test: NotifyOneRacingCancelWakesExactlyOne).
    if (w.queued) detail::lot_remove(b, &w);
  }
  if (r == WakeReason::Cancel) {
    // std's rule: the lock is held again when wait() throws. At shutdown
    // the fiber unwinds instead and does not queue for the mutex.
    if (!rt::shutting_down()) lock.lock();
    rt::throw_unwind();
  }
  lock.lock();
  return r == WakeReason::Timeout ? std::cv_status::timeout : std::cv_status::no_timeout;
}

void CondVar::wait(std::unique_lock<Mutex>& lock) {
  (void)wait_until(lock, Clock::time_point::max());
}

void CondVar::notify_one() noexcept {
  detail::LotBucket& b = detail::lot_bucket(this);
  std::lock_guard<detail::SpinLock> g(b.lock);
  detail::lot_wake_one(b, this);
}

void CondVar::notify_all() noexcept {
  detail::LotBucket& b = detail::lot_bucket(this);
  std::lock_guard<detail::SpinLock> g(b.lock);
  detail::lot_wake_all(b, this);
}

// ---- WaitGroup -----------------------------------------------------------------
// Every move of the counter to zero, and every locked look at it by a
// waiter, happen under the lot bucket's lock of this WaitGroup; other moves
// are a lock-free CAS. So either a waiter sees zero, or it is queued before
// the waker looks.
//
// Lifetime (API.md; lot.hpp): `wg.wait()` may return, and its caller free
// wg, while the fiber that made the counter zero is still inside add(). The
// zero move is that fiber's last touch of *this: the wakes that follow touch
// only the lot. A waiter that sees zero (with or without the lock) returns
// at once; a woken one returns without touching *this. (Before, a woken
// waiter re-took a spin lock inside the WaitGroup to let the waker finish:
// Go's "WaitGroup with a timeout" idiom, where a helper fiber waits and the
// owner also waits and then frees the WaitGroup, left the helper spinning
// forever on freed memory.)

void WaitGroup::add(int n) {
  std::int64_t v = count_.load(std::memory_order_relaxed);
  for (;;) {
    std::int64_t nv = v + n;
    if (nv < 0) throw std::logic_error("weft: WaitGroup counter would go negative");
    if (nv == 0 && n != 0) break;  // the move to zero: under the bucket lock
    if (count_.compare_exchange_weak(v, nv, std::memory_order_acq_rel, std::memory_order_relaxed)) return;
  }
  detail::LotBucket& b = detail::lot_bucket(this);
  std::lock_guard<detail::SpinLock> g(b.lock);
  v = count_.load(std::memory_order_relaxed);
  std::int64_t nv;
  do {
    nv = v + n;
    if (nv < 0) throw std::logic_error("weft: WaitGroup counter would go negative");
  } while (!count_.compare_exchange_weak(v, nv, std::memory_order_acq_rel, std::memory_order_relaxed));
  // From here on *this may be freed by a waiter that sees zero: the key is
  // only compared, never dereferenced.
  if (nv == 0) detail::lot_wake_all(b, this);
}

void WaitGroup::wait() { (void)wait_until(Clock::time_point::max()); }

bool WaitGroup::wait_until(Clock::time_point deadline) {
  rt::cancellation_point();
  // acquire: pairs with the acq_rel move to zero, so the work of the fibers
  // that called done() happens-before our return.
  if (count_.load(std::memory_order_acquire) == 0) return true;
  detail::LotWaiter w;
  w.key = this;
  detail::LotBucket& b = detail::lot_bucket(this);
  {
    std::lock_guard<detail::SpinLock> g(b.lock);
    if (count_.load(std::memory_order_acquire) == 0) return true;
    w.parker = rt::prepare_park(WaitKind::WaitGroup, this);
    detail::lot_push(b, &w);
  }
  WakeReason r = rt::park_until(w.parker, deadline);
  if (r == WakeReason::Event) return true;
  bool reached;
  {
    std::lock_guard<detail::SpinLock> g(b.lock);
    // Still queued: no zero move came. Unlinked: one did (its wake lost
    // the claim to our timeout or cancellation).
    reached = !w.queued;
    if (w.queued) detail::lot_remove(b, &w);
  }
  if (r == WakeReason::Cancel) rt::throw_unwind();
  return reached;
}

}  // namespace weft
