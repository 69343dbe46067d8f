// weft/sync.hpp: Mutex, CondVar, WaitGroup, RWMutex, Semaphore and Once
// that park the calling fiber, never its OS thread (API.md
// "Synchronisation"). They also work from plain threads, which then block on
// a futex.
//
// Waiters are intrusive FIFO records on the waiting fibers' stacks. CondVar,
// WaitGroup, Semaphore and Once keep them in the runtime's parking lot
// (runtime/src/lot.hpp), outside the object, so that the object may be
// destroyed as soon as its waiters were woken (API.md "Lifetime"): a woken
// waiter never touches it again. Mutex and RWMutex keep their own lists
// under their spin lock `qlock_` (a woken waiter owns the lock, so the
// object is alive until it unlocks). A waker that still touches the object
// after a wake (Mutex, RWMutex and Semaphore slow paths) does so only under
// the queue lock, and their destructors take that lock once: destroying the
// object waits out such a waker. Queue locks are leaves: held for a few
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
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>

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
  Waiter* front() const noexcept { return head_; }

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

// A reader/writer lock for fibers (Go's sync.RWMutex), usable with
// std::unique_lock / std::lock_guard (writers) and std::shared_lock
// (readers). Not recursive; a reader must not upgrade. A writer that waits
// is not starved: once it is queued, new readers queue behind it (they get
// in after it unlocks); the readers that arrived while a writer held the
// lock get in before the next writer. Writers are served in FIFO order. An
// uncontended lock_shared/unlock_shared is one atomic read-modify-write
// each. lock() and lock_shared() are not cancellation points (API.md).
// The cooperative budget (park.hpp) is spent on the uncontended unlocks,
// so that a fiber whose budget runs out yields without holding the lock.
// At most 2^32 - 1 readers at once.
class RWMutex {
 public:
  RWMutex() = default;
  RWMutex(const RWMutex&) = delete;
  RWMutex& operator=(const RWMutex&) = delete;
  ~RWMutex() { qlock_.lock(); }  // waits out a slow unlock still inside

  void lock() {
    std::uint64_t expected = 0;
    if (state_.compare_exchange_strong(expected, kWriter, std::memory_order_acquire, std::memory_order_relaxed)) return;
    lock_slow();
  }
  bool try_lock() noexcept {
    std::uint64_t expected = 0;
    return state_.compare_exchange_strong(expected, kWriter, std::memory_order_acquire, std::memory_order_relaxed);
  }
  void unlock() {
    // Fast path: no reader arrived and no writer queued during the hold.
    // The CAS is then the last touch of *this.
    std::uint64_t expected = kWriter;
    if (state_.compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed)) {
      rt::spend_budget();
      return;
    }
    unlock_slow();
  }

  void lock_shared() {
    // One RMW: counted as a reader; without a writer present or waiting,
    // that is the read lock (sync.cpp, "RWMutex").
    if (!(state_.fetch_add(1, std::memory_order_acquire) & kWriter)) [[likely]]
      return;
    lock_shared_slow();
  }
  bool try_lock_shared() noexcept {
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    while (!(s & kWriter))
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
    return false;
  }
  void unlock_shared() {
    // One RMW; the slow path only when a writer waits for us to leave.
    std::uint64_t s = state_.fetch_sub(1, std::memory_order_release);
    if (!(s & kWriter) && (s & kReaderMask)) [[likely]] {
      rt::spend_budget();
      return;
    }
    unlock_shared_slow(s);
  }

 private:
  // state_: bits 0-31: readers counted (holding, or arrived while a writer
  // was present and waiting for it); kWriter: a writer holds the lock or
  // waits for the counted readers to leave; kWriters: writers are queued.
  static constexpr std::uint64_t kReaderMask = 0xFFFFFFFFull;
  static constexpr std::uint64_t kWriter = 1ull << 32;
  static constexpr std::uint64_t kWriters = 1ull << 33;
  void lock_slow();
  void unlock_slow();
  void lock_shared_slow();
  void unlock_shared_slow(std::uint64_t before);
  void release_writer_locked() noexcept;
  void grant_readers_locked(std::uint64_t units) noexcept;
  void grant_pending_locked() noexcept;
  void depart_locked() noexcept;
  std::atomic<std::uint64_t> state_{0};
  detail::SpinLock qlock_;
  // Guarded by qlock_:
  detail::WaitList readers_;            // readers waiting for a writer to finish
  detail::WaitList writers_;            // writers waiting for the exclusivity
  detail::Waiter* pending_ = nullptr;   // the writer that set kWriter and waits for readers to leave
  std::uint64_t rwait_ = 0;             // readers the pending writer still waits for
  std::uint64_t rsem_ = 0;              // read units granted to counted readers not yet queued
};

// A counting semaphore for fibers (std::counting_semaphore's roles, Go's
// x/sync/semaphore with weight 1). acquire() takes a unit, parking while
// none is free; waiters are served in FIFO order: a released unit goes to
// the oldest waiter, and try_acquire/acquire never overtake a waiter.
// acquire() and try_acquire_for/until() are cancellation points: a
// cancelled waiter throws weft::Cancelled and took no unit (one that was
// handed a unit before the cancellation won keeps it and returns).
class Semaphore {
 public:
  // n < 0 or n > max(): std::invalid_argument.
  explicit Semaphore(std::ptrdiff_t n);
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;
  ~Semaphore();  // waits out a release() still waking waiters

  static constexpr std::ptrdiff_t max() noexcept { return PTRDIFF_MAX >> 1; }

  void acquire() {
    rt::cancellation_point();
    if (try_take()) [[likely]] {
      rt::spend_budget();
      return;
    }
    (void)acquire_slow(Clock::time_point::max());
  }
  // Never parks; not a cancellation point.
  bool try_acquire() noexcept { return try_take(); }
  // Waits at most d (any duration; <= 0: does not park). True: a unit was taken.
  template <class Rep, class Period>
  bool try_acquire_for(std::chrono::duration<Rep, Period> d) {
    return try_acquire_until(detail::deadline_after(d));
  }
  template <class Duration>
  bool try_acquire_until(std::chrono::time_point<Clock, Duration> deadline) {
    rt::cancellation_point();
    if (try_take()) return true;
    return acquire_slow(std::chrono::time_point_cast<Clock::duration>(deadline));
  }
  // Adds n units, handing them to the oldest waiters first (waking up to n).
  // n < 0, or a count that would pass max(): std::invalid_argument, and
  // nothing is released.
  void release(std::ptrdiff_t n = 1);

  // Units free now (a snapshot).
  std::ptrdiff_t available() const noexcept {
    return static_cast<std::ptrdiff_t>(state_.load(std::memory_order_relaxed) >> 1);
  }

 private:
  // state_ = free units << 1 | kWaiters. kWaiters: the lot holds waiters
  // of this semaphore (changed under the lot bucket's lock); while it is
  // set, no unit is free and every change of state_ is made under that lock.
  static constexpr std::int64_t kWaiters = 1;
  bool try_take() noexcept {
    std::int64_t s = state_.load(std::memory_order_relaxed);
    while (s >= 2)
      if (state_.compare_exchange_weak(s, s - 2, std::memory_order_acquire, std::memory_order_relaxed)) return true;
    return false;
  }
  bool acquire_slow(Clock::time_point deadline);
  std::atomic<std::int64_t> state_;
};

// Runs a function once (Go's sync.Once, with std::call_once's rule for
// exceptions). The first call runs f; calls made meanwhile park until it
// has run, and they are cancellation points while they wait. If f throws,
// the exception reaches its caller and the Once stays not done: a waiting
// or later caller runs f again. f may itself park; calling call() on the
// same Once from inside f deadlocks (as in Go). Once done, call() is one
// acquire load.
class Once {
 public:
  Once() = default;
  Once(const Once&) = delete;
  Once& operator=(const Once&) = delete;

  template <class F, class... A>
  void call(F&& f, A&&... args) {
    if (state_.load(std::memory_order_acquire) == kDone) [[likely]]
      return;
    auto thunk = [&] { std::invoke(std::forward<F>(f), std::forward<A>(args)...); };
    call_slow(&run_thunk<decltype(thunk)>, &thunk);
  }
  // True once a call of f has returned normally.
  bool done() const noexcept { return state_.load(std::memory_order_acquire) == kDone; }

 private:
  static constexpr std::uint32_t kIdle = 0, kRunning = 1, kDone = 2;
  template <class T>
  static void run_thunk(void* p) {
    (*static_cast<T*>(p))();
  }
  void call_slow(void (*fn)(void*), void* arg);
  void run(void (*fn)(void*), void* arg);
  std::atomic<std::uint32_t> state_{kIdle};
};

}  // namespace weft
