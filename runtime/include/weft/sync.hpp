// weft/sync.hpp: Mutex, CondVar and WaitGroup that park the calling fiber,
// never its OS thread (API.md "Synchronisation"). They also work from plain
// threads, which then block on a futex.
//
// Waiters are intrusive FIFO records on the waiting fibers' stacks. CondVar
// and WaitGroup keep them in the runtime's parking lot (runtime/src/lot.hpp),
// outside the object, so that the object may be destroyed as soon as its
// waiters were woken (API.md "Lifetime"): nothing touches it after that.
// Mutex keeps its own list under its spin lock `qlock_` (a woken waiter is
// still inside lock(), so the mutex is alive; the destructor waits out an
// unlock still inside). Queue locks are leaves: held for a few
// instructions, never across a park, and the only call made under them is
// rt::unpark (which may take a worker's idle lock: see HACKING.md's order).
// A waiter is removed from its list by whoever dequeues it under the queue
// lock: the waker (then `queued` is false when the waiter resumes) or the
// waiter itself after a timeout or cancellation. Its record therefore stays
// valid for as long as anyone can reach it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include <weft/park.hpp>

namespace weft {

namespace detail {

// now + d, saturated at time_point::max().
template <class Rep, class Period>
Clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) {
  auto now = Clock::now();
  if (d > Clock::time_point::max() - now) return Clock::time_point::max();
  return now + std::chrono::duration_cast<Clock::duration>(d);
}

// Test-and-test-and-set lock for very short critical sections.
class SpinLock {
 public:
  void lock() noexcept {
    while (flag_.exchange(true, std::memory_order_acquire)) lock_contended();
  }
  bool try_lock() noexcept { return !flag_.exchange(true, std::memory_order_acquire); }
  void unlock() noexcept { flag_.store(false, std::memory_order_release); }

 private:
  void lock_contended() noexcept;
  std::atomic<bool> flag_{false};
};

struct Waiter {
  rt::Parker parker;
  Waiter* prev = nullptr;
  Waiter* next = nullptr;
  bool queued = false;
  bool handoff = false;   // Mutex: ownership passed straight to this waiter
};

class WaitList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  void push_back(Waiter* w) noexcept;
  void push_front(Waiter* w) noexcept;
  void remove(Waiter* w) noexcept;
  Waiter* pop_front() noexcept;

 private:
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

}  // namespace detail

// A mutual-exclusion lock for fibers, usable with std::lock_guard and
// std::unique_lock. Not recursive. Like Go's sync.Mutex it lets a running
// fiber barge in ahead of parked ones (throughput) until some waiter has
// waited more than 1 ms; then the lock is handed to waiters in FIFO order
// (starvation mode) until the queue drains. A contended lock() spins briefly
// when the holder may be running on another worker.
class Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() {
    std::uint32_t expected = 0;
    if (state_.compare_exchange_weak(expected, kLocked, std::memory_order_acquire, std::memory_order_relaxed)) {
      rt::spend_budget();  // an uncontended lock in a loop must not starve the worker
      return;
    }
    lock_slow();
  }
  bool try_lock() noexcept;
  void unlock() {
    // Fast path: nothing but kLocked set. Otherwise the release happens
    // inside unlock_slow, under qlock_, so no unlock touches the mutex after
    // a new owner could have taken and destroyed it (the destructor waits
    // for qlock_).
    std::uint32_t expected = kLocked;
    if (state_.compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed)) return;
    unlock_slow();
  }
  ~Mutex() { qlock_.lock(); }  // waits out an unlock_slow still inside

 private:
  // state_ bits (see sync.cpp). kLocked: held. kWoken: a waiter is awake or
  // a fiber spins for the lock, so unlock need not wake anyone. kStarving:
  // hand-off mode. kWaiters: the list is non-empty (changed under qlock_).
  static constexpr std::uint32_t kLocked = 1, kWoken = 2, kStarving = 4, kWaiters = 8;
  void lock_slow();
  void unlock_slow();
  std::atomic<std::uint32_t> state_{0};
  detail::SpinLock qlock_;
  detail::WaitList waiters_;   // guarded by qlock_
};

// A condition variable for weft::Mutex.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void wait(std::unique_lock<Mutex>& lock);
  template <class Pred>
  void wait(std::unique_lock<Mutex>& lock, Pred pred) {
    while (!pred()) wait(lock);
  }
  std::cv_status wait_until(std::unique_lock<Mutex>& lock, Clock::time_point deadline);
  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<Mutex>& lock, std::chrono::duration<Rep, Period> d) {
    return wait_until(lock, detail::deadline_after(d));
  }
  template <class Rep, class Period, class Pred>
  bool wait_for(std::unique_lock<Mutex>& lock, std::chrono::duration<Rep, Period> d, Pred pred) {
    auto deadline = detail::deadline_after(d);
    while (!pred())
      if (wait_until(lock, deadline) == std::cv_status::timeout) return pred();
    return true;
  }
  void notify_one() noexcept;
  void notify_all() noexcept;

 private:
  // Stateless: its waiters are queued in the parking lot under its address.
  // One byte of padding keeps distinct CondVars at distinct addresses.
  [[maybe_unused]] char unused_ = 0;
};

// Waits for a collection of fibers to finish, as Go's sync.WaitGroup.
class WaitGroup {
 public:
  WaitGroup() = default;
  WaitGroup(const WaitGroup&) = delete;
  WaitGroup& operator=(const WaitGroup&) = delete;

  // Adds n (may be negative). Throws std::logic_error if the counter would go
  // negative. Reaching zero wakes every waiter.
  void add(int n = 1);
  void done() { add(-1); }
  void wait();
  // Waits at most d; true when the counter reached zero.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) {
    return wait_until(detail::deadline_after(d));
  }
  bool wait_until(Clock::time_point deadline);

 private:
  // The counter changes by atomic RMW anywhere; the transition to zero and
  // the waiters (in the parking lot, keyed by this) are ordered by the
  // lot bucket's lock (see sync.cpp).
  std::atomic<std::int64_t> count_{0};
};

}  // namespace weft
