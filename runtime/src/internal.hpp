// internal.hpp: the scheduler's shared state (Runtime, Worker, TimerHeap).
//
// Lock order (the whole library's list is in HACKING.md):
//   primitive queue lock (Mutex::qlock_, a parking-lot bucket of CondVar/
//   WaitGroup, a channel's lock)  ->  Runtime::idle_lock
//   TimerHeap::lock  (a leaf: callbacks run after it is released)
//   Runtime::gq_lock (a leaf)
//   StackArena::lock_ (a leaf)
//
// Invariants:
// - A runnable fiber is in exactly one place: a worker's lifo slot, a
//   worker's run queue, or the global queue. A running fiber is in none and
//   is Worker::current of exactly one worker.
// - nspinning counts workers with spinning == true; a worker sleeping in the
//   idle list is not spinning. wakep() increments nspinning on behalf of the
//   worker it wakes (Go's rule), so at most one wake is in flight per spinner.
// - live fibers = sum(spawned) - sum(exited) over the workers, plus the main
//   fiber until it ends (counted in ext_spawned).
// - Worker::lifo, and the run queue of an unshared worker (the lone worker
//   of a one-worker runtime), are taken from by their owner only, inside a
//   local_seq bracket, except by the monitor's rescue, which follows the
//   protocol in lifo.hpp (its fences: platform/barrier.hpp). Only the owner
//   puts fibers in.
// - workers holds nworkers + spare_workers Worker objects from the start;
//   only the first nstarted have threads (the monitor starts spares, and
//   publishes each with a release store of nstarted once it is ready).
// - No fiber runs before every worker thread and the monitor finished their
//   setup (threads_ready): user code may start with a resource limit that
//   leaves a late thread's setup nothing to allocate (glibc aborts a thread
//   that cannot register a thread_local destructor).
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <weft/park.hpp>
#include <weft/runtime.hpp>
#include <weft/sync.hpp>

#include "fiber.hpp"
#include "platform/thread.hpp"
#include "runqueue.hpp"
#include "stack.hpp"

// Diagnostics that read other fibers' fields while they may run (fiber.hpp:
// best effort, validated afterwards): not instrumented by TSan, and never
// inlined into an instrumented caller (which would instrument them again).
#define WEFT_RACY_READER __attribute__((no_sanitize("thread"), noinline))

namespace weft::rt {

inline std::int64_t to_ns(Clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
inline constexpr std::int64_t kNoDeadline = INT64_MAX;

// A min-heap of armed timers ordered by deadline (4-ary, intrusive index).
class TimerHeap {
 public:
  TimerHeap() = default;
  TimerHeap(const TimerHeap&) = delete;
  TimerHeap& operator=(const TimerHeap&) = delete;
  ~TimerHeap();  // drops the timers still armed (park.hpp: timer_cancel)
  void add(Timer* t) noexcept;
  bool remove(Timer* t) noexcept;  // t->heap == this was observed; locks
  // Fires every timer due at `now`; returns how many fired. Callbacks run
  // with no lock held. With try_only, gives up if the lock is busy.
  int run_expired(std::int64_t now_ns, bool try_only = false) noexcept;
  // Earliest deadline, kNoDeadline if none. Relaxed: a hint, re-checked
  // under the lock before anything fires.
  std::int64_t next_ns() const noexcept { return next_.load(std::memory_order_relaxed); }
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

 private:
  void sift_up(std::uint32_t i) noexcept;
  void sift_down(std::uint32_t i) noexcept;
  void erase_at(std::uint32_t i) noexcept;
  void place(std::uint32_t i, Timer* t) noexcept {
    heap_[i] = t;
    t->index = i;
  }
  detail::SpinLock lock_;
  std::vector<Timer*> heap_;   // guarded by lock_
  std::atomic<std::int64_t> next_{kNoDeadline};  // written under lock_
  std::atomic<std::size_t> size_{0};             // written under lock_
};

struct Worker : WorkerBase {
  Runtime* rt = nullptr;
  unsigned index = 0;
  RunQueue q;                     // owner pushes/pops, thieves steal
  // The fiber just woken here. The owner takes it with plain accesses inside
  // a local_seq bracket and puts one in with a plain store (an exchange when
  // it displaces one); only the monitor's rescue takes it from outside, with
  // the protocol in monitor.cpp.
  std::atomic<Fiber*> lifo{nullptr};
  unsigned lifo_streak = 0;       // consecutive lifo picks (capped)
  // Owner-side bracket around every access to lifo and (in a one-worker
  // runtime) the unshared run-queue pop: odd while inside. `contended` is
  // set by the monitor while it rescues; the owner then uses atomic RMWs.
  std::atomic<std::uint32_t> local_seq{0};
  std::atomic<bool> contended{false};
  bool shared = false;            // thieves may steal from q (pop must CAS)
  std::uint32_t countdown = 61;   // picks until the next global-queue check
  bool spinning = false;          // owner only; counted in Runtime::nspinning
  // Owner only: set while this worker runs timers or polls between fibers,
  // so the wakes they make go to the run queue and wake a worker instead of
  // taking the lifo slot (park.cpp: ready).
  bool batch_wake = false;
  bctx::fcontext_t sched_ctx = nullptr;  // the worker thread's own context
  // current (the running fiber): in WorkerBase (park.hpp).
  TimerHeap timers;
  std::vector<std::uint32_t> stack_cache;  // hot slots, not trimmed
  std::vector<std::uint32_t> trim_batch;   // slots to trim, then free
  std::atomic<std::uint32_t> sleep_word{0};  // futex: 0 asleep, 1 woken
  bool in_idle_list = false;                 // guarded by Runtime::idle_lock
  bool in_poller = false;                    // guarded by Runtime::idle_lock
  std::uint64_t id_next = 0, id_end = 0;
  std::uint64_t rng = 0;
  // Written by the monitor: the switch count at which it found this worker
  // stuck with fibers queued behind the running one (thieves compare).
  std::atomic<std::uint64_t> stuck_at{UINT64_MAX};
  std::atomic<bool> reported{false};  // the monitor reported its current fiber as stuck
  std::atomic<platform::ThreadId> tid{0};  // the worker thread (set when it starts)
  clockid_t cpu_clock{};              // its CPU-time clock (valid once tid is set, if has_cpu_clock)
  bool has_cpu_clock = false;         // written before tid (release)
  // Counters: written by the owner only (relaxed), read by anyone.
  std::atomic<std::uint64_t> spawned{0}, exited{0}, switches{0}, steals{0}, parks{0}, budget_yields{0};
  // Where an idle or between-fibers worker spends itself (weft::Stats has
  // their meaning): rounds of the spin loop, spin phases that found nothing,
  // polls by path, futex sleeps, and poller/timer wakes kept for itself.
  std::atomic<std::uint64_t> spin_rounds{0}, spins_fruitless{0}, polls_busy{0}, polls_spinning{0}, polls_blocking{0},
      futex_sleeps{0}, wakes_kept{0};
  // Per-context state saved across switches for the scheduler context.
  void* sched_eh[2] = {nullptr, nullptr};
  void* eh_globals = nullptr;     // this thread's __cxa_eh_globals
  int* errno_ptr = nullptr;       // this thread's errno
  void* sched_fake_stack = nullptr;
  const void* thread_stack_bottom = nullptr;
  std::size_t thread_stack_size = 0;
  void* tsan_ctx = nullptr;
  std::thread thread;
};

class Runtime {
 public:
  explicit Runtime(const Options& opts);
  ~Runtime();

  Options opts;
  unsigned nworkers;               // configured workers; spares come after them
  std::vector<std::unique_ptr<Worker>> workers;  // nworkers + opts.spare_workers, built up front
  std::atomic<unsigned> nstarted{0};   // workers whose threads run (spares started by the monitor)
  unsigned started_workers() const noexcept { return nstarted.load(std::memory_order_acquire); }
  std::atomic<std::uint64_t> stuck_reports{0};
  std::atomic<bool> deadlocked{false};  // set by the monitor; run() throws weft::Deadlock
  StackArena arena;

  // The global queue: overflow from full run queues, wakes from outside.
  detail::SpinLock gq_lock;
  Fiber* gq_head = nullptr;        // guarded by gq_lock
  Fiber* gq_tail = nullptr;        // guarded by gq_lock
  std::atomic<std::size_t> gq_size{0};  // written under gq_lock; read as a hint

  // Idle workers.
  std::atomic<int> nspinning{0};
  std::atomic<int> nidle{0};               // written under idle_lock
  detail::SpinLock idle_lock;
  std::vector<Worker*> idle;               // guarded by idle_lock
  std::atomic<std::int64_t> sleepers_deadline{kNoDeadline};  // earliest timeout a sleeper uses
  std::atomic<IdlePoller*> poller{nullptr};        // published once, owned by poller_owner
  std::atomic<bool> poller_busy{false};            // a worker is in poller->poll
  std::atomic<std::int64_t> last_poll_ns{0};       // when a poll last ran (hint)
  std::mutex poller_mu;                            // serialises installation
  std::unique_ptr<IdlePoller> poller_owner;        // guarded by poller_mu

  // Lifecycle.
  std::atomic<bool> stopping{false};       // main ended: fibers unwind
  std::atomic<bool> exiting{false};        // workers leave their loops
  std::atomic<std::uint32_t> main_done{0}; // futex
  // Threads (workers, then the monitor) done with their own setup, which
  // allocates and registers thread_local destructors: run() waits for all
  // of them before main's fiber is queued (futex; thread_ready()). Each
  // counts itself with release after its setup and run() reads with
  // acquire, so a fiber (queued after, through gq_lock) sees every setup.
  std::atomic<std::uint32_t> threads_ready{0};
  void thread_ready() noexcept;
  std::atomic<std::uint32_t> exit_epoch{0};// futex, bumped per exit while stopping
  std::atomic<std::uint64_t> ext_spawned{0}, ext_exited{0};
  std::atomic<std::uint32_t> ext_inflight{0};  // unparks from outside still touching this runtime
  std::atomic<std::uint32_t> monitor_word{0};  // futex: interrupts the monitor's sleep at exit
  // Milliseconds since the runtime started, advanced by the monitor every
  // tick (1-10 ms): parks stamp it for dumps without reading a clock.
  std::atomic<std::int64_t> coarse_ms{0};
  Clock::time_point start_time = Clock::now();
  std::atomic<std::uint64_t> polls{0};
  // wakep() calls that woke a worker, by how (any thread may wake: RMWs,
  // paid only beside the futex or poller wake itself).
  std::atomic<std::uint64_t> wakes_futex{0}, wakes_poller{0};

  void inject(Fiber* f) noexcept;                  // global queue + wakep
  void inject_front(Fiber** fs, unsigned n) noexcept;  // ahead of the global queue, in order, + wakep
  Fiber* pop_global(Worker* w, bool batch) noexcept;
  void wakep() noexcept;
  void wake_all_workers() noexcept;
  bool work_available() const noexcept;
  std::int64_t earliest_timer() const noexcept;
  std::uint64_t live_fibers() const noexcept;
};

// Teardown accounting of every run() in this process, for the test suite:
// after each run, fibers still counted live and stack slots neither cached
// by a worker nor back on the arena's free list are leaks.
struct TeardownStats {
  std::uint64_t runs = 0;
  std::uint64_t leaked_fibers = 0;
  std::uint64_t leaked_slots = 0;
};
TeardownStats teardown_stats() noexcept;

// The running worker. A fiber may resume on another thread, so no code may
// keep the TLS address across a switch. On x86-64 the variable is read with
// one volatile asm (its initial-exec offset from the GOT, then %fs-relative),
// which the compiler can neither cache nor hoist, and which works before any
// static initialiser has run (park.hpp: current_worker_base).
// One more on an owner-written counter (a plain relaxed store: no RMW).
inline void bump(std::atomic<std::uint64_t>& c) noexcept {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

inline Worker* current_worker() noexcept { return static_cast<Worker*>(current_worker_base()); }
void monitor_loop(Runtime& r, platform::ThreadId run_caller) noexcept;
struct sigaction install_sigquit_dump() noexcept;  // returns the previous disposition
void worker_loop(Worker* w);
void ready(Fiber* f) noexcept;   // after winning its claim (park.cpp)
void futex_wait(std::atomic<std::uint32_t>* w, std::uint32_t val, std::int64_t deadline_ns) noexcept;
void futex_wake(std::atomic<std::uint32_t>* w, int n) noexcept;

}  // namespace weft::rt
