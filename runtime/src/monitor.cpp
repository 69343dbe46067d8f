// monitor.cpp: the runtime's monitor thread (Go's sysmon): stuck workers,
// spare workers, deadlock detection, SIGQUIT dumps, the coarse clock.
//
// Every tick (1 ms while fibers run, 10 ms once the runtime has been idle
// for a while) it looks at each started worker:
// - Stuck: a worker whose switch counter has not moved for a whole tick
//   while fibers wait behind it is running one fiber for too long (a
//   CPU-bound loop, a blocking system call). The monitor records that switch
//   count in Worker::stuck_at, which lets thieves take even a single queued
//   fiber from it, wakes an idle worker to do so, and rescues what thieves
//   cannot take (the lifo slot, and the whole queue of a one-worker
//   runtime, whose owner pops without a CAS) to the global queue's head.
// - Once a worker has run one fiber for Options::stuck_threshold, the monitor
//   reports that fiber once on stderr (id, name, spawn site, how long).
// - When every started worker has been stuck that long and fibers are
//   waiting, it starts a spare worker thread (at most Options::spare_workers
//   over the runtime's life; spares stay until the runtime stops).
// - Deadlock: when every worker is idle, no timer is armed, nothing is
//   queued, no wake from outside is in flight, no thread outside the
//   runtime exists that could wake a fiber, and every live fiber is parked
//   on something only another fiber could signal (not a socket, a sleep or a
//   blocking() call), on two ticks in a row with no switch in between, it
//   reports "weft: all fibers are asleep - deadlock!" and the fiber dump,
//   and makes run() unwind everything and throw weft::Deadlock (or aborts).
// The rescue of a stuck worker's lifo slot and unshared queue: lifo.hpp.
//
// Shared state: reads workers' counters, queue sizes and `current` (relaxed,
// hints); writes stuck_at and reported (relaxed), coarse_ms, and the
// global queue (under gq_lock). It is the only thread that starts spares
// (nstarted, release, after the Worker is ready).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_set>

#include "lifo.hpp"
#include "switch.hpp"
#include "symbolize.hpp"

namespace weft::rt {

void dump_runtime(Runtime& r, std::ostream& out);

namespace {

// ---- threads that belong to weft --------------------------------------------
std::mutex g_threads_mu;
std::vector<platform::ThreadId>& internal_threads() {
  static auto* v = new std::vector<platform::ThreadId>;  // immortal: detached pool threads may outlive statics
  return *v;
}

struct InternalMark {
  platform::ThreadId tid = 0;
  ~InternalMark() {
    if (!tid) return;
    std::lock_guard<std::mutex> g(g_threads_mu);
    auto& v = internal_threads();
    v.erase(std::remove(v.begin(), v.end(), tid), v.end());
  }
};

// ---- is a worker really stuck? -------------------------------------------------
std::int64_t cpu_ms(const Worker& w) noexcept {
  timespec ts{};
  if (w.tid.load(std::memory_order_acquire) == 0 || !w.has_cpu_clock || clock_gettime(w.cpu_clock, &ts) != 0) return -1;
  return std::int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

// True if the worker's thread sleeps in the kernel (a blocking system call),
// as opposed to running or waiting for a CPU; true when the platform cannot
// tell (platform/thread.hpp: a report too many, never a stuck worker missed).
bool blocked_in_kernel(const Worker& w) noexcept {
  return platform::thread_sleeping(w.tid.load(std::memory_order_acquire)) != platform::Sleeping::No;
}

// ---- SIGQUIT ---------------------------------------------------------------------
std::atomic<int> g_sigquit{0};
extern "C" void on_sigquit(int) { g_sigquit.store(1, std::memory_order_relaxed); }

std::int64_t ms_since(const Runtime& r) noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - r.start_time).count();
}

// Reports the fiber running on w, once per fiber.
WEFT_RACY_READER void report_stuck(Runtime& r, Worker& w, std::int64_t ms,
                                                  std::unordered_set<std::uint64_t>& done) {
  Fiber* f = w.current.load(std::memory_order_relaxed);
  if (!f) return;
  std::uint64_t switches = w.switches.load(std::memory_order_relaxed);
  std::uint64_t id = f->id;
  if (done.count(id)) return;
  char name[sizeof f->name];
  std::memcpy(name, f->name, sizeof name);
  name[sizeof name - 1] = 0;
  const void* site = f->spawn_pc;
  if (w.switches.load(std::memory_order_relaxed) != switches) return;  // it moved on: nothing to report
  if (done.size() >= 65536) done.clear();  // bounded: a long-lived server may report many fibers
  done.insert(id);
  // file:line if a dump symbolized this site already, else the symbol
  // and module offset (addr2line -e MODULE OFFSET): the monitor starts no
  // process.
  std::string where = site ? spawn_site_cached(site) : std::string("?");
  std::fprintf(stderr,
               "weft: fiber %" PRIu64 "%s%s%s has run for %lld ms on worker %u without parking or yielding "
               "(spawned at %s); the fibers queued behind it move to other workers\n",
               id, name[0] ? " \"" : "", name, name[0] ? "\"" : "", static_cast<long long>(ms), w.index,
               where.c_str());
  std::fflush(stderr);
  r.stuck_reports.fetch_add(1, std::memory_order_relaxed);
}

void start_spare(Runtime& r) noexcept {
  unsigned i = r.nstarted.load(std::memory_order_relaxed);
  if (i >= r.workers.size() || r.exiting.load(std::memory_order_acquire)) return;
  Worker* w = r.workers[i].get();
  try {
    w->thread = std::thread([w] { worker_loop(w); });
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "weft: could not start a spare worker thread: %s\n", e.what());
    return;
  }
  r.nstarted.store(i + 1, std::memory_order_release);
  r.wakep();
}

// Every live fiber parked on something only another fiber could signal?
WEFT_RACY_READER bool all_parked_for_good(Runtime& r) noexcept {
  std::uint32_t n = r.arena.slot_count();
  bool any = false;
  for (std::uint32_t i = 0; i < n; i++) {
    std::uint64_t v = r.arena.sync(i).load(std::memory_order_acquire);
    if (!(v & kLive)) continue;
    if ((v & (kSwitched | kWoken)) != kSwitched) return false;  // running or runnable
    switch (fiber_of_slot(r.arena.slot_top(i))->wait_kind) {
      case WaitKind::Io:
      case WaitKind::IoRead:
      case WaitKind::IoWrite:
      case WaitKind::Blocking:
      case WaitKind::Sleep:
        return false;
      default:
        break;
    }
    any = true;
  }
  return any;
}

// Names of helper threads that count as weft's own (mark_internal_thread_name).
std::vector<std::string>& internal_names() {  // under g_threads_mu
  static auto* v = new std::vector<std::string>;
  return *v;
}

// Any thread of the process but weft's own and the one blocked in run()
// might wake a fiber (a std::thread holding a channel or a CondVar).
// Threads marked by name are looked up by name each time: such a thread
// may come and go (libkqueue's ends with the last kqueue, the next
// kqueue() starts another) and a tid may be reused.
bool foreign_threads(platform::ThreadId run_caller) {
  std::vector<platform::ThreadId> now, unknown;
  // A platform that cannot list threads cannot rule a foreign one out.
  if (!platform::list_threads(now)) return true;
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> g(g_threads_mu);
    const auto& mine = internal_threads();
    for (platform::ThreadId t : now)
      if (t != run_caller && std::find(mine.begin(), mine.end(), t) == mine.end()) unknown.push_back(t);
    names = internal_names();
  }
  for (platform::ThreadId t : unknown) {
    if (names.empty()) return true;
    std::string n = platform::thread_name(t);
    if (!n.empty() && std::find(names.begin(), names.end(), n) == names.end()) return true;
  }
  return false;
}

#ifdef WEFT_TSAN
// TSan starts a background thread of its own at the first thread creation:
// find it before main() runs (no user thread exists yet) and count it as ours.
[[gnu::constructor]] void find_tsan_thread() {
  std::vector<platform::ThreadId> before, after;
  if (!platform::list_threads(before)) return;
  std::thread([] {}).join();
  std::lock_guard<std::mutex> g(g_threads_mu);
  platform::list_threads(after);
  for (platform::ThreadId t : after)
    if (std::find(before.begin(), before.end(), t) == before.end()) internal_threads().push_back(t);
}
#endif

bool quiet(Runtime& r) noexcept {
  unsigned nw = r.started_workers();
  if (r.stopping.load(std::memory_order_acquire) || r.main_done.load(std::memory_order_acquire)) return false;
  if (r.nidle.load(std::memory_order_seq_cst) != static_cast<int>(nw)) return false;
  if (r.gq_size.load(std::memory_order_seq_cst) != 0 || r.ext_inflight.load(std::memory_order_acquire) != 0)
    return false;
  for (unsigned i = 0; i < nw; i++) {
    Worker& w = *r.workers[i];
    if (!w.q.empty() || w.lifo.load(std::memory_order_relaxed)) return false;
  }
  return r.earliest_timer() == kNoDeadline;
}

void declare_deadlock(Runtime& r) {
  // Once per runtime, and never once shutdown began: after the report run()
  // unwinds every fiber, and an unwinding fiber that parks for good in a
  // destructor must not make the monitor report (and wake run()) again.
  if (r.deadlocked.load(std::memory_order_acquire) || r.stopping.load(std::memory_order_acquire)) return;
  std::ostringstream out;
  out << "weft: all fibers are asleep - deadlock!\n\n";
  dump_runtime(r, out);
  std::fputs(out.str().c_str(), stderr);
  std::fflush(stderr);
  if (r.opts.on_deadlock == Options::OnDeadlock::Abort) std::abort();
  r.deadlocked.store(true, std::memory_order_release);
  futex_wake(&r.main_done, 1);
}

}  // namespace

void mark_internal_thread() noexcept {
  thread_local InternalMark mark;
  if (mark.tid) return;
  mark.tid = platform::thread_id();
  std::lock_guard<std::mutex> g(g_threads_mu);
  internal_threads().push_back(mark.tid);
}

void mark_internal_thread_name(const char* comm) noexcept {
  try {
    std::lock_guard<std::mutex> g(g_threads_mu);
    auto& v = internal_names();
    if (std::find(v.begin(), v.end(), comm) == v.end()) v.emplace_back(comm);
  } catch (...) {
    // Out of memory: the thread stays foreign, which only turns the
    // deadlock check off (no false report).
  }
}

// Installs the SIGQUIT handler; returns the disposition to restore after run().
struct sigaction install_sigquit_dump() noexcept {
  struct sigaction sa {}, old {};
  sa.sa_handler = on_sigquit;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGQUIT, &sa, &old);
  return old;
}

void monitor_loop(Runtime& r, platform::ThreadId run_caller) noexcept {
  mark_internal_thread();
  const std::size_t nmax = r.workers.size();
  std::vector<std::uint64_t> last(nmax, UINT64_MAX);
  std::vector<std::int64_t> since(nmax, 0);   // when `last` was first seen
  // CPU time of the worker's thread when it was first seen not switching:
  // a worker the OS merely keeps off the CPU (more workers than cores: it
  // got under a third of the wall time) is not reported, and no spare is
  // started for it; one that burns CPU or sleeps in a system call is. On
  // a machine so loaded that a hog gets under a third of a core, the hog is
  // still one once it has burned a whole threshold of CPU without a switch
  // (the third alone would hide it, and a one-worker runtime's other
  // fibers with it, for as long as the load lasts).
  std::vector<std::int64_t> cpu_base(nmax, -1);
  std::vector<bool> backlog(nmax, false);
  std::unordered_set<std::uint64_t> reported;  // fiber ids reported stuck
  const std::int64_t threshold = r.opts.stuck_threshold.count();
  unsigned idle_ticks = 0;
  std::uint64_t quiet_switches = UINT64_MAX;   // activity at the last quiet tick
  std::uint64_t swept_switches = UINT64_MAX;   // activity when a sweep last found a fiber the world can wake
  r.thread_ready();
  while (!r.exiting.load(std::memory_order_acquire)) {
    std::int64_t tick_ns = idle_ticks > 50 ? 10'000'000 : 1'000'000;
    futex_wait(&r.monitor_word, 0, to_ns(Clock::now()) + tick_ns);
    std::int64_t now = ms_since(r);
    r.coarse_ms.store(now, std::memory_order_relaxed);
    if (r.opts.dump_on_sigquit && g_sigquit.exchange(0, std::memory_order_relaxed)) dump_runtime(r, std::cerr);
    bool any_busy = false;
    unsigned nw = r.started_workers(), stuck_long = 0;
    bool waiting = r.gq_size.load(std::memory_order_relaxed) > 0;
    std::uint64_t total = 0;
    std::vector<std::pair<Worker*, std::int64_t>> to_report;  // printed after the rescues
    for (unsigned i = 0; i < nw; i++) {
      Worker& w = *r.workers[i];
      std::uint64_t s = w.switches.load(std::memory_order_relaxed);
      total += s;
      bool running = w.current.load(std::memory_order_relaxed) != nullptr;
      bool queued = w.q.size() > 0 || w.lifo.load(std::memory_order_relaxed);
      if (s != last[i]) {
        any_busy = true;
        last[i] = s;
        since[i] = now;
        cpu_base[i] = -1;
        w.reported.store(false, std::memory_order_relaxed);
      } else if (running) {
        if (cpu_base[i] < 0) cpu_base[i] = cpu_ms(w);
        any_busy = true;
        if (queued && w.stuck_at.load(std::memory_order_relaxed) != s) {
          w.stuck_at.store(s, std::memory_order_relaxed);
          r.wakep();
        }
        if (queued) rescue(r, w);
        waiting = waiting || queued;
        std::int64_t cpu = cpu_ms(w) - cpu_base[i];
        if (now - since[i] >= threshold && (cpu >= (now - since[i]) / 3 || cpu >= threshold || blocked_in_kernel(w))) {
          stuck_long++;
          if (!w.reported.exchange(true, std::memory_order_relaxed)) to_report.emplace_back(&w, now - since[i]);
        }
      }
      if (w.q.size() > 1 && backlog[i]) r.wakep();  // a backlog two ticks running: share it
      backlog[i] = w.q.size() > 1;
    }
    if (stuck_long == nw && nw < nmax && waiting) start_spare(r);
    // The reports come last: writing to stderr must not hold up a rescue
    // or a spare worker.
    for (auto& [w, ms] : to_report) report_stuck(r, *w, ms, reported);
    // Deadlock: quiet on two ticks in a row with no switch in between.
    // Cheapest checks first: the sweep reads every slot's sync word, so a
    // runtime idle with many parked fibers (and some thread outside that
    // keeps detection off) does not sweep on every tick; and a sweep that
    // found a fiber waiting on the world is not repeated until something
    // switches.
    bool candidate = !any_busy && quiet(r) && !foreign_threads(run_caller);
    if (candidate && swept_switches == total) candidate = false;  // same verdict as last sweep
    if (candidate && !all_parked_for_good(r)) {
      swept_switches = total;
      candidate = false;
    }
    if (candidate) {
      if (quiet_switches == total) {
        declare_deadlock(r);
        quiet_switches = UINT64_MAX;
      } else {
        quiet_switches = total;
      }
    } else {
      quiet_switches = UINT64_MAX;
    }
    idle_ticks = any_busy ? 0 : idle_ticks + 1;
  }
}

}  // namespace weft::rt
