// scheduler.cpp: the work-stealing scheduler (run queues, stealing, idle
// workers and their wakes, the worker loop). Park, unpark and ready():
// park.cpp; the lifo slot and its rescue: lifo.hpp; context switches:
// switch.hpp; fibers, spawn, join and shutdown: fiber.cpp. Shared state and
// lock order: internal.hpp; the sync-word protocol: fiber.hpp and park.hpp.
//
// Scheduling decisions, and the alternatives rejected:
// - Spawn runs the child first (fiber.cpp explains why).
// - Idle workers take work only where it is stealable: a run queue with two
//   or more fibers, or a single one behind a worker the monitor found stuck.
//   A lone queued fiber on a busy worker (a spawning parent whose child runs
//   for 20 ns) runs there a moment later; moving it would only bounce it
//   across cores. Wakes of idle workers follow the same rule: a poll or a
//   timer run that readies one fiber wakes nobody (the worker that polled
//   runs it: park.cpp, ready), a second one queued wakes a helper.
// - A fiber woken by a running fiber goes to that worker's lifo slot and runs
//   next (message-passing locality, as Go's runnext and Tokio's LIFO slot).
//   Like Tokio's, the slot is not stealable and waking into it does not wake
//   another worker (that would just bounce a ping-pong across cores); at most
//   kLifoCap lifo picks in a row, then the run queue goes first.
// - The global queue is checked every 61st pick (as Go) so that it cannot
//   starve behind busy local queues. While it holds a backlog (an overflow),
//   what a poll or a timer run readies joins the backlog's tail (park.cpp,
//   ready) instead of the local queue, which is served first: a socket that
//   became ready later must not be served before one that waits there.
// - Idle workers spin (steal from random victims, run due timers, poll) while
//   fewer than half are spinning, then sleep on a futex (or block in the idle
//   poller, one worker at a time) until the earliest timer deadline. A new
//   runnable fiber wakes a sleeper only when no worker is spinning.
#include <sched.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

#include <cxxabi.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <typeinfo>

#include "switch.hpp"

namespace weft::rt {

namespace {

constexpr std::int64_t kSpinNs = 5'000;   // how long an idle worker looks for work before sleeping
constexpr int kSpinPauses = 32;
constexpr std::int64_t kBusyPollNs = 1'000'000;  // busy workers poll I/O at most this often
constexpr std::size_t kDefaultStack = 256 * 1024;

}  // namespace

}  // namespace weft::rt

// The running worker, with C linkage: current_worker() (internal.hpp) names
// it in asm.
extern "C" {
[[gnu::tls_model("initial-exec")]] thread_local weft::rt::WorkerBase* weft_rt_tl_worker = nullptr;
}

namespace weft::rt {

#ifdef WEFT_CHAOS
// One in eight points does something: mostly a yield of the OS thread or a
// spin of up to ~2 us, sometimes a sleep of up to 50 us (long enough for
// another worker to run a whole park/unpark round). Per-thread xorshift,
// seeded from the thread id and the clock; nothing here takes a lock or
// touches the runtime, so it is safe on any stack and inside any window.
[[gnu::noinline]] void chaos_point() noexcept {
  thread_local std::uint64_t s = 0;
  if (s == 0) s = ((static_cast<std::uint64_t>(platform::thread_id()) << 32) ^ static_cast<std::uint64_t>(to_ns(Clock::now()))) | 1;
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  std::uint64_t r = s;
  if (r % 8 != 0) return;
  r >>= 3;
  switch (r % 8) {
    case 0:
    case 1:
    case 2:
      sched_yield();
      break;
    case 3: {
      timespec ts{0, static_cast<long>(1000 + (r >> 3) % 49000)};
      nanosleep(&ts, nullptr);
      break;
    }
    default:
      for (std::uint64_t i = (r >> 3) % 512; i > 0; i--) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
  }
}
#endif

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::fflush(stderr);
  std::abort();
}

// ---- run queues ---------------------------------------------------------------

// Full run queue: move half of it, plus f, to the global queue in one batch.
[[gnu::noinline]] void push_overflow(Worker* w, Fiber* f) noexcept {
  Fiber* batch[RunQueue::kSize / 2 + 1];
  std::uint32_t n = w->q.take_half(batch);
  batch[n++] = f;
  for (std::uint32_t i = 0; i + 1 < n; i++) batch[i]->next = batch[i + 1];
  batch[n - 1]->next = nullptr;
  Runtime& r = *w->rt;
  std::lock_guard<detail::SpinLock> g(r.gq_lock);
  if (r.gq_tail) r.gq_tail->next = batch[0]; else r.gq_head = batch[0];
  r.gq_tail = batch[n - 1];
  r.gq_size.store(r.gq_size.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

std::uint64_t next_rand(Worker* w) noexcept {
  std::uint64_t x = w->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return w->rng = x;
}

// Steals half of a random victim's run queue. A victim with a single queued
// fiber is left alone while it keeps switching: it will run that fiber
// itself very soon, and taking it would only bounce it across cores (e.g. a
// spawning parent whose child runs for 20 ns). The monitor marks a worker
// whose switch count has not moved for a tick (stuck_at == switches): then
// even its single queued fiber is fair game.
bool stealable(const Worker* v) noexcept {
  std::uint32_t size = v->q.size();
  return size > 1 ||
         (size == 1 && v->stuck_at.load(std::memory_order_relaxed) == v->switches.load(std::memory_order_relaxed));
}

Fiber* steal(Worker* w) noexcept {
  Runtime& r = *w->rt;
  unsigned n = r.started_workers();
  if (n < 2) return nullptr;
  unsigned start = static_cast<unsigned>(next_rand(w) % n);
  for (unsigned i = 0; i < n; i++) {
    Worker* v = r.workers[(start + i) % n].get();
    if (v == w || !v->shared) continue;  // an unshared queue is rescued by the monitor only
    if (!stealable(v)) continue;
    WEFT_CHAOS_POINT();
    if (Fiber* f = v->q.steal_into(w->q)) {
      w->steals.store(w->steals.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return f;
    }
  }
  return nullptr;
}

// The rarer half of pick_local: due timers every time some are armed, the
// global queue every 61st pick (fairness, as Go).
[[gnu::noinline]] Fiber* pick_periodic(Worker* w) noexcept {
  Runtime& r = *w->rt;
  // Timer and poller wakes made here, between fibers, are queued and shared
  // rather than put in the lifo slot (park.cpp: ready).
  if (w->timers.next_ns() != kNoDeadline) {
    w->batch_wake = true;
    w->timers.run_expired(to_ns(Clock::now()));
    w->batch_wake = false;
  }
  if (w->countdown == 0) {
    w->countdown = 61;
    // Busy workers poll for I/O now and then (non-blocking), so ready
    // sockets are not starved while no worker is idle to block in the poller.
    if (IdlePoller* p = r.poller.load(std::memory_order_acquire)) {
      std::int64_t now = to_ns(Clock::now());
      if ((now - r.last_poll_ns.load(std::memory_order_relaxed) > kBusyPollNs || p->has_pending()) &&
          !r.poller_busy.exchange(true, std::memory_order_acquire)) {
        r.last_poll_ns.store(now, std::memory_order_relaxed);
        r.polls.fetch_add(1, std::memory_order_relaxed);
        bump(w->polls_busy);
        WEFT_CHAOS_POINT();
        w->batch_wake = true;
        p->poll(Clock::time_point::min());
        w->batch_wake = false;
        r.poller_busy.store(false, std::memory_order_release);
      }
    }
    // A batch when there is room for it: fibers that overflowed to the global
    // queue (a poll that woke hundreds, say) must not wait for the local
    // queue to drain while it keeps being refilled (p99 of 67 ms at 1000
    // echo connections when this took one fiber per 61 picks).
    if (r.gq_size.load(std::memory_order_relaxed) > 0) return r.pop_global(w, w->q.size() < RunQueue::kSize / 2);
  }
  return nullptr;
}

void reset_spinning(Worker* w) noexcept {
  if (!w->spinning) return;
  w->spinning = false;
  // The last spinner found work: there may be more, so start another (Go).
  if (w->rt->nspinning.fetch_sub(1, std::memory_order_seq_cst) == 1) w->rt->wakep();
}

void run_all_timers(Runtime& r, bool try_only) noexcept {
  std::int64_t now = to_ns(Clock::now());
  for (auto& v : r.workers)
    if (v->timers.next_ns() <= now) v->timers.run_expired(now, try_only);
}

bool remove_from_idle(Runtime& r, Worker* w) noexcept {
  std::lock_guard<detail::SpinLock> g(r.idle_lock);
  if (!w->in_idle_list) return false;
  r.idle.erase(std::find(r.idle.begin(), r.idle.end(), w));
  w->in_idle_list = false;
  w->in_poller = false;
  r.nidle.store(static_cast<int>(r.idle.size()), std::memory_order_seq_cst);
  return true;
}

void sleep_worker(Runtime& r, Worker* w, std::int64_t deadline) noexcept {
  IdlePoller* p = r.poller.load(std::memory_order_acquire);
  if (p && !r.poller_busy.exchange(true, std::memory_order_acq_rel)) {
    {
      std::lock_guard<detail::SpinLock> g(r.idle_lock);
      w->in_poller = w->in_idle_list;
    }
    r.polls.fetch_add(1, std::memory_order_relaxed);
    bump(w->polls_blocking);
    WEFT_CHAOS_POINT();
    if (w->sleep_word.load(std::memory_order_acquire) == 0)
      p->poll(deadline == kNoDeadline ? Clock::time_point::max() : Clock::time_point(std::chrono::nanoseconds(deadline)));
    r.last_poll_ns.store(to_ns(Clock::now()), std::memory_order_relaxed);
    r.poller_busy.store(false, std::memory_order_release);
    return;
  }
  bump(w->futex_sleeps);
  futex_wait(&w->sleep_word, 0, deadline);
}

// The deadline a worker about to sleep uses: the earliest armed timer. A
// store-buffering (Dekker) pair with timer_start: the sleeper publishes its
// deadline, fences, then scans the heaps again; the armer adds its timer,
// fences, then reads the published deadline. With both fences seq_cst one
// of them sees the other: the sleeper finds the new timer, or the armer
// finds a later deadline and wakes a worker. (Scanning first and publishing
// after left a window: a timer armed between the scan and the store was
// seen by neither, and if the arming worker then ran a long fiber, the
// timer fired late, at that worker's next switch.)
std::int64_t publish_sleep_deadline(Runtime& r) noexcept {
  std::int64_t deadline = r.earliest_timer();
  for (;;) {
    WEFT_CHAOS_POINT();  // widen the window between the scan and the publication
    r.sleepers_deadline.store(deadline, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::int64_t again = r.earliest_timer();
    if (again >= deadline) return deadline;
    deadline = again;
  }
}

// The idle path, on the worker's own stack: steal, run timers, then sleep.
// Returns nullptr when the runtime exits.
Fiber* find_work(Worker* w) noexcept {
  Runtime& r = *w->rt;
  for (;;) {
    if (r.exiting.load(std::memory_order_acquire)) return nullptr;
    if (Fiber* f = pick_local(w)) {
      reset_spinning(w);
      return f;
    }
    run_all_timers(r, true);
    if (Fiber* f = pick_local(w)) {
      reset_spinning(w);
      return f;
    }
    // Spin only where there is someone to steal from: with one worker the
    // next work can only come from the poller, a timer or outside, and the
    // sleep below blocks in the poller itself.
    unsigned nw = r.started_workers();
    if (!w->spinning && nw > 1 && 2 * r.nspinning.load(std::memory_order_relaxed) < static_cast<int>(nw)) {
      w->spinning = true;
      r.nspinning.fetch_add(1, std::memory_order_seq_cst);
    }
    if (w->spinning) {
      // Spin for a short while before sleeping: a futex sleep and wake
      // costs both sides microseconds, more than most gaps between bursts.
      // Each round steals; every 16th also polls for I/O without blocking
      // (Go's findrunnable checks netpoll before it steals, too).
      std::int64_t spin_until = to_ns(Clock::now()) + kSpinNs;
      for (unsigned round = 0;; round++) {
        bump(w->spin_rounds);
        if (Fiber* f = steal(w)) {
          reset_spinning(w);
          return f;
        }
        IdlePoller* p = round % 16 == 0 ? r.poller.load(std::memory_order_acquire) : nullptr;
        if (p) {  // every ~16 us: a poll is a system call
          if (!r.poller_busy.exchange(true, std::memory_order_acq_rel)) {
            r.polls.fetch_add(1, std::memory_order_relaxed);
            bump(w->polls_spinning);
            WEFT_CHAOS_POINT();
            p->poll(Clock::time_point::min());
            r.last_poll_ns.store(to_ns(Clock::now()), std::memory_order_relaxed);
            r.poller_busy.store(false, std::memory_order_release);
            if (Fiber* f = pick_local(w)) {
              reset_spinning(w);
              return f;
            }
          }
        }
        if (r.gq_size.load(std::memory_order_relaxed) > 0 || w->lifo.load(std::memory_order_relaxed)) break;
        if (round % 4 == 3 && to_ns(Clock::now()) > spin_until) break;
        // Pace the polling (~1 us a round): every look at a victim's queue
        // pulls cache lines its owner is writing.
        for (int k = 0; k < kSpinPauses; k++) {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
        }
      }
      w->spinning = false;
      r.nspinning.fetch_sub(1, std::memory_order_seq_cst);
      bump(w->spins_fruitless);
    }
    // Going to sleep. Register first, then look once more: a waker either
    // sees us in the idle list or we see its work (both sides seq_cst).
    {
      std::lock_guard<detail::SpinLock> g(r.idle_lock);
      w->sleep_word.store(0, std::memory_order_relaxed);
      w->in_idle_list = true;
      r.idle.push_back(w);
      r.nidle.store(static_cast<int>(r.idle.size()), std::memory_order_seq_cst);
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (r.exiting.load(std::memory_order_seq_cst) || r.work_available()) {
      if (!remove_from_idle(r, w)) w->spinning = true;  // a waker picked us: we count as spinning
      continue;
    }
    sleep_worker(r, w, publish_sleep_deadline(r));
    if (!remove_from_idle(r, w)) w->spinning = true;
  }
}

void worker_loop(Worker* w) {
  mark_internal_thread();
  w->has_cpu_clock = platform::thread_cpu_clock(&w->cpu_clock);
  w->tid.store(platform::thread_id(), std::memory_order_release);
  weft_rt_tl_worker = w;
  w->eh_globals = abi::__cxa_get_globals();
  w->errno_ptr = &errno;
  install_altstack();
#ifdef WEFT_TSAN
  w->tsan_ctx = __tsan_get_current_fiber();
#endif
  platform::thread_stack(&w->thread_stack_bottom, &w->thread_stack_size);
  w->rt->thread_ready();  // a spare's, later, is counted and ignored
  while (Fiber* f = find_work(w)) {
    switch_to(w, nullptr, f, Action::None);
    // Back on the worker's own stack: the fiber that switched here parked,
    // yielded or ended with nothing else runnable locally.
  }
  weft_rt_tl_worker = nullptr;
}

// ---- the public low-level interface -------------------------------------------

Fiber* current_fiber() noexcept {
  Worker* w = current_worker();
  return w ? w->current.load(std::memory_order_relaxed) : nullptr;
}

IdlePoller* current_idle_poller() noexcept {
  Worker* w = current_worker();
  return w ? w->rt->poller.load(std::memory_order_acquire) : nullptr;
}

IdlePoller* install_idle_poller(IdlePoller* (*make)()) {
  Worker* w = current_worker();
  if (!w) throw std::logic_error("weft: the netpoller is only available on a fiber of a running runtime");
  Runtime& r = *w->rt;
  if (IdlePoller* p = r.poller.load(std::memory_order_acquire)) return p;
  std::lock_guard<std::mutex> g(r.poller_mu);
  if (!r.poller_owner) {
    r.poller_owner.reset(make());
    r.poller.store(r.poller_owner.get(), std::memory_order_release);
  }
  return r.poller_owner.get();
}

// ---- Runtime ---------------------------------------------------------------------

static unsigned default_workers() {
  if (const char* e = std::getenv("WEFT_WORKERS")) {
    char* end = nullptr;
    long v = std::strtol(e, &end, 10);
    if (end != e && *end == 0 && v > 0 && v <= 1024) return static_cast<unsigned>(v);
    throw std::invalid_argument(std::string("weft: WEFT_WORKERS must be an integer in 1..1024, got \"") + e + "\"");
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

// Options::poller resolved: Default takes $WEFT_POLLER, else epoll.
static Options::Poller resolve_poller(Options::Poller p) {
  if (p != Options::Poller::Default) return p;
  const char* e = std::getenv("WEFT_POLLER");
  if (!e || !*e || std::strcmp(e, "epoll") == 0) return Options::Poller::Epoll;
  if (std::strcmp(e, "io_uring") == 0) return Options::Poller::IoUring;
  throw std::invalid_argument(std::string("weft: WEFT_POLLER must be \"epoll\" or \"io_uring\", got \"") + e + "\"");
}

static Options resolved(Options o) {
  o.poller = resolve_poller(o.poller);
  return o;
}

bool io_uring_requested() noexcept {
  Worker* w = current_worker();
  return w && w->rt->opts.poller == Options::Poller::IoUring;
}

Runtime::Runtime(const Options& o)
    : opts(resolved(o)),
      nworkers(o.workers ? o.workers : default_workers()),
      arena(o.stack_size ? o.stack_size : kDefaultStack) {
  if (nworkers > 1024) throw std::invalid_argument("weft: Options::workers must be at most 1024");
  if (o.stack_size && o.stack_size < 16 * 4096)
    throw std::invalid_argument("weft: Options::stack_size must be at least 64 KiB");
  if (o.spare_workers > 1024) throw std::invalid_argument("weft: Options::spare_workers must be at most 1024");
  if (o.stuck_threshold.count() < 1) throw std::invalid_argument("weft: Options::stuck_threshold must be at least 1 ms");
  for (unsigned i = 0; i < nworkers + o.spare_workers; i++) {
    auto w = std::make_unique<Worker>();
    w->rt = this;
    w->runtime = this;
    w->index = i;
    // A lone worker pops without a CAS; the monitor rescues its fibers if
    // it gets stuck. Workers of a larger runtime, and spares, are stolen from.
    w->shared = nworkers > 1 || i >= nworkers;
    w->rng = 0x9e3779b97f4a7c15ULL * (i + 1);
    w->stuck_at.store(UINT64_MAX, std::memory_order_relaxed);
    workers.push_back(std::move(w));
  }
}

Runtime::~Runtime() = default;

void Runtime::inject(Fiber* f) noexcept {
  f->next = nullptr;
  {
    std::lock_guard<detail::SpinLock> g(gq_lock);
    if (gq_tail) gq_tail->next = f; else gq_head = f;
    gq_tail = f;
    gq_size.store(gq_size.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  wakep();
}

// The monitor's rescue of a stuck worker's queue (lifo.cpp): those fibers
// were next in line on their worker, ahead of the global backlog, so they
// keep that place rather than wait behind the whole backlog (a one-worker
// runtime whose thread was descheduled for a monitor tick sent up to 257
// fibers behind a fiber readied after them).
void Runtime::inject_front(Fiber** fs, unsigned n) noexcept {
  if (n == 0) return;
  for (unsigned i = 0; i + 1 < n; i++) fs[i]->next = fs[i + 1];
  {
    std::lock_guard<detail::SpinLock> g(gq_lock);
    fs[n - 1]->next = gq_head;
    if (!gq_head) gq_tail = fs[n - 1];
    gq_head = fs[0];
    gq_size.store(gq_size.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  wakep();
}

void Runtime::thread_ready() noexcept {
  threads_ready.fetch_add(1, std::memory_order_release);
  futex_wake(&threads_ready, 1);
}

Fiber* Runtime::pop_global(Worker* w, bool batch) noexcept {
  std::lock_guard<detail::SpinLock> g(gq_lock);
  std::size_t n = gq_size.load(std::memory_order_relaxed);
  if (n == 0) return nullptr;
  std::size_t take = batch ? std::min<std::size_t>({n, n / started_workers() + 1, RunQueue::kSize / 2}) : 1;
  Fiber* first = gq_head;
  gq_head = first->next;
  for (std::size_t i = 1; i < take && gq_head; i++) {
    Fiber* f = gq_head;
    gq_head = f->next;
    w->q.push(f);  // room: take <= kSize/2 and callers batch only into a queue at most half full
  }
  if (!gq_head) gq_tail = nullptr;
  gq_size.store(n - take, std::memory_order_relaxed);
  return first;
}

void Runtime::wakep() noexcept {
  // The only worker is the caller: it finds the work itself. (Only a worker
  // of this runtime: a fiber of another runtime waking one of ours must wake
  // our sleeping worker. The check once read `current_worker()` alone, and
  // a one-worker runtime woken from another runtime slept on.)
  if (started_workers() == 1) {
    Worker* me = current_worker();
    if (me && me->rt == this) return;
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (nspinning.load(std::memory_order_seq_cst) != 0 || nidle.load(std::memory_order_seq_cst) == 0) return;
  int zero = 0;
  if (!nspinning.compare_exchange_strong(zero, 1, std::memory_order_seq_cst)) return;
  Worker* v = nullptr;
  bool via_poller = false;
  {
    std::lock_guard<detail::SpinLock> g(idle_lock);
    if (!idle.empty()) {
      // Prefer a futex sleeper: the poller sleeper keeps watching I/O.
      auto it = std::find_if(idle.begin(), idle.end(), [](Worker* x) { return !x->in_poller; });
      if (it == idle.end()) it = idle.begin();
      v = *it;
      idle.erase(it);
      v->in_idle_list = false;
      via_poller = v->in_poller;
      v->in_poller = false;
      nidle.store(static_cast<int>(idle.size()), std::memory_order_seq_cst);
      v->sleep_word.store(1, std::memory_order_release);
    }
  }
  if (!v) {
    nspinning.fetch_sub(1, std::memory_order_seq_cst);
    return;
  }
  if (via_poller) {
    wakes_poller.fetch_add(1, std::memory_order_relaxed);
    if (IdlePoller* p = poller.load(std::memory_order_acquire)) p->wake();
  } else {
    wakes_futex.fetch_add(1, std::memory_order_relaxed);
    futex_wake(&v->sleep_word, 1);
  }
}

void Runtime::wake_all_workers() noexcept {
  {
    std::lock_guard<detail::SpinLock> g(idle_lock);
    for (auto& w : workers) w->sleep_word.store(1, std::memory_order_release);
  }
  for (auto& w : workers) futex_wake(&w->sleep_word, 1);
  if (IdlePoller* p = poller.load(std::memory_order_acquire)) p->wake();
}

bool Runtime::work_available() const noexcept {
  if (gq_size.load(std::memory_order_seq_cst) > 0) return true;
  // Only what an idle worker could take: counting a busy worker's lone
  // queued fiber would keep idle workers spinning forever beside it.
  for (auto& w : workers)
    if (w->shared && stealable(w.get())) return true;  // an unshared queue is the monitor's to rescue
  std::int64_t now = to_ns(Clock::now());
  for (auto& w : workers)
    if (w->timers.next_ns() <= now) return true;
  return false;
}

std::int64_t Runtime::earliest_timer() const noexcept {
  std::int64_t d = kNoDeadline;
  for (auto& w : workers) d = std::min(d, w->timers.next_ns());
  return d;
}

// Exits first, then spawns. Every exit counted in the first pass happened
// after its fiber's spawn was counted (the spawner's counter store is
// sequenced before the child can run, and the exit's release increment is
// read with acquire), so the second pass counts that spawn too: the result
// never undercounts a fiber that stays live throughout (at worst it counts a
// fiber that exits meanwhile). Summing worker by worker, spawns and exits
// together, once read 0 while a fiber was parked: a fiber spawned on a
// worker already summed and exited on one not yet summed cancelled it out,
// and shutdown stopped the workers without unwinding it.
std::uint64_t Runtime::live_fibers() const noexcept {
  std::uint64_t e = ext_exited.load(std::memory_order_acquire);
  for (auto& w : workers) e += w->exited.load(std::memory_order_acquire);
  std::uint64_t s = ext_spawned.load(std::memory_order_acquire);
  for (auto& w : workers) s += w->spawned.load(std::memory_order_acquire);
  return s - e;
}

}  // namespace weft::rt
