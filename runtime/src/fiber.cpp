// fiber.cpp: fibers' lives: creation in a stack slot, the first frame,
// exit and slot recycling, plain threads that park, spawn, join, run() and
// shutdown, and this_fiber. The switch itself: switch.hpp.
//
// Spawn runs the child first: the parent goes to the back of its worker's
// run queue and resumes as soon as the child parks or ends. A loop that
// spawns a million fibers without yielding therefore never holds more than a
// few stacks: each child runs until it parks or ends before the next is
// made, and a child that ends hands its hot stack straight to the next.
// Parallelism: an idle worker takes the parent once the queue holds a real
// backlog, or once the monitor sees this worker stuck in a long child.
// Rejected: Go's parent-first (the child in runnext), which piles up one
// stack per unstarted fiber (Boost.Fiber: 9.2 GB for 1M); and lazily
// assigned stacks, which would put the control block on the heap and cost a
// parked fiber more than its one page.
#include <unistd.h>

#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <typeinfo>

#include "switch.hpp"

namespace weft::rt {

namespace {
constexpr std::size_t kHotStacks = 16;    // per worker, kept untrimmed
constexpr std::size_t kTrimBatch = 32;
constexpr std::size_t kMaxInlineClosure = 2048;
}  // namespace

[[noreturn]] void fiber_exit(Fiber* self) noexcept;

// First frame of every fiber.
void fiber_main(bctx::transfer_t t) noexcept {
  Worker* w = current_worker();
  Fiber* self = w->current.load(std::memory_order_relaxed);
#ifdef WEFT_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
  auto* in = static_cast<Msg*>(t.data);
  *in->save_to = t.fctx;
  after_switch(w, *in);
  eh_restore(w, self->eh_state);
  *w->errno_ptr = 0;
  self->entry(self->closure);
  if (self->closure_on_heap) ::operator delete(self->closure, std::align_val_t(64));
  fiber_exit(self);
}

// ---- slots and fiber creation ---------------------------------------------------

std::uint32_t alloc_slot(Worker* w) {
  if (!w->stack_cache.empty()) {
    std::uint32_t s = w->stack_cache.back();
    w->stack_cache.pop_back();
    return s;
  }
  return w->rt->arena.alloc();
}

void free_slot(Worker* w, Fiber* f) noexcept {
  Runtime& r = *w->rt;
  std::uint32_t slot = f->slot;
  bool main = f->is_main;
#ifdef WEFT_TSAN
  __tsan_destroy_fiber(f->tsan_fiber);
#endif
#ifdef WEFT_ASAN
  // The frames the dead fiber never returned from (fiber_main, fiber_exit,
  // the switch) keep their redzones poisoned in ASan's shadow. The next fiber
  // given this slot (or a later arena mapped at the same address) writes its
  // closure and first frames there, and ASan reported a stack-buffer-overflow
  // in spawn() whenever the new closure was larger than the old one. Clear
  // them from here, on another stack, where nothing can poison them again:
  // from the dead fiber's last stack pointer (its saved context) up to its
  // control block. Deeper frames unpoisoned themselves when they returned.
  {
    char* low = r.arena.slot_base(slot) + r.arena.guard_bytes();
    char* sp = static_cast<char*>(f->ctx) - 256;
    if (sp < low) sp = low;
    __asan_unpoison_memory_region(sp, static_cast<std::size_t>(reinterpret_cast<char*>(f) - sp));
  }
#endif
  // A new generation: every Parker of the dead fiber is now stale.
  f->sync->store((f->gen + 1) << kGenShift, std::memory_order_release);
  f->~Fiber();
  if (main) {
    r.ext_exited.fetch_add(1, std::memory_order_release);
  } else {
    w->exited.fetch_add(1, std::memory_order_release);
  }
  if (w->stack_cache.size() < kHotStacks) {
    w->stack_cache.push_back(slot);
  } else {
    w->trim_batch.push_back(slot);
    if (w->trim_batch.size() >= kTrimBatch) {
      r.arena.trim(w->trim_batch.data(), w->trim_batch.size());
      r.arena.free_trimmed(w->trim_batch.data(), w->trim_batch.size());
      w->trim_batch.clear();
    }
  }
  if (main) {
    r.main_done.store(1, std::memory_order_release);
    futex_wake(&r.main_done, 1);
  } else if (r.stopping.load(std::memory_order_relaxed)) {
    r.exit_epoch.fetch_add(1, std::memory_order_release);
    futex_wake(&r.exit_epoch, 1);
  }
}

// Fiber ids: workers take blocks of 1024 from one process-wide counter.
std::atomic<std::uint64_t> g_id_source{1};

std::uint64_t next_id(Worker* w) noexcept {
  if (w->id_next == w->id_end) {
    w->id_next = g_id_source.fetch_add(1024, std::memory_order_relaxed);
    w->id_end = w->id_next + 1024;
  }
  return w->id_next++;
}

Fiber* new_fiber(Runtime& r, std::uint32_t slot) noexcept {
  char* top = r.arena.slot_top(slot);
  Fiber* f = ::new (fiber_of_slot(top)) Fiber();
  f->rt = &r;
  f->slot = slot;
  f->sync = &r.arena.sync(slot);
  cancel_word(f).store(0, std::memory_order_relaxed);  // published with the fiber
  f->gen = f->sync->load(std::memory_order_relaxed) >> kGenShift;
  f->sync->store((f->gen << kGenShift) | kLive, std::memory_order_release);
  if (r.arena.guard_mode(slot) == GuardMode::Canary) {
    f->canary = reinterpret_cast<std::uint64_t*>(r.arena.slot_base(slot) + r.arena.guard_bytes());
    *f->canary = StackArena::kCanary;
  }
  return f;
}

void start_context(Fiber* f) noexcept {
  char* sp = reinterpret_cast<char*>(f->closure_on_heap ? static_cast<void*>(f) : f->closure);
  sp = reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(sp) & ~std::uintptr_t{63});
  char* low = f->rt->arena.slot_base(f->slot) + f->rt->arena.guard_bytes();
  f->ctx = bctx::make_fcontext(sp, static_cast<std::size_t>(sp - low), fiber_main);
#ifdef WEFT_TSAN
  f->tsan_fiber = __tsan_create_fiber(0);
#endif
}

void fiber_exit(Fiber* self) noexcept {
  Worker* w = current_worker();
  Fiber* next = pick_local(w);
  switch_to(w, self, next, Action::Exit);
  __builtin_unreachable();
}

// ---- plain threads that park -----------------------------------------------------
// Their control blocks come from a pool that is never freed (stale Parkers
// may still point at them), recycled when the thread exits.
struct ThreadFiberPool {
  detail::SpinLock lock;
  std::vector<Fiber*> free;
};
ThreadFiberPool& thread_pool() {
  static auto* p = new ThreadFiberPool;  // intentionally immortal
  return *p;
}
struct ThreadFiberHolder {
  Fiber* f = nullptr;
  ~ThreadFiberHolder() {
    if (!f) return;
    f->sync->store((f->gen + 1) << kGenShift, std::memory_order_release);
    auto& p = thread_pool();
    std::lock_guard<detail::SpinLock> g(p.lock);
    p.free.push_back(f);
  }
};
Fiber* thread_fiber() {
  thread_local ThreadFiberHolder h;
  if (!h.f) {
    auto& p = thread_pool();
    {
      std::lock_guard<detail::SpinLock> g(p.lock);
      if (!p.free.empty()) {
        h.f = p.free.back();
        p.free.pop_back();
      }
    }
    if (!h.f) {
      // Memory for the block and its sync word, never freed.
      struct Block {
        Fiber f;
        SyncCell cell;
      };
      auto* b = new Block;
      h.f = &b->f;
      h.f->sync = &b->cell.sync;
      h.f->is_thread = true;
      refresh_park_flags(h.f);
    }
    h.f->gen = h.f->sync->load() >> kGenShift;
  }
  return h.f;
}

}  // namespace weft::rt

// ---- fibers, join, run -----------------------------------------------------------

namespace weft {
namespace detail {

using namespace weft::rt;

void set_name(Fiber* f, std::string_view name) noexcept {
  std::size_t n = std::min(name.size(), sizeof f->name - 1);
  std::memcpy(f->name, name.data(), n);
  f->name[n] = 0;
}

SpawnSlot spawn_begin(std::size_t size, std::size_t align, std::string_view name) {
  const void* site = __builtin_return_address(0);
  Worker* w = current_worker();
  if (!w || !w->current.load(std::memory_order_relaxed)) throw std::logic_error("weft::go() must be called on a fiber of a running runtime");
  std::size_t a = std::max<std::size_t>(align, 16);
  if (a > 64) throw std::invalid_argument("weft::go(): closures aligned beyond 64 bytes are not supported");
  // A closure too big for the stack's top goes on the heap, allocated
  // before the slot so that a bad_alloc leaves nothing behind.
  void* heap = size > kMaxInlineClosure ? ::operator new(size, std::align_val_t(64)) : nullptr;
  std::uint32_t slot;
  try {
    slot = alloc_slot(w);  // throws std::system_error when out of address space
  } catch (...) {
    if (heap) ::operator delete(heap, std::align_val_t(64));
    throw;
  }
  Fiber* f = new_fiber(*w->rt, slot);
  f->id = next_id(w);
  f->spawn_pc = site;
  if (!name.empty()) set_name(f, name);
  char* p = static_cast<char*>(heap);
  if (!heap) p = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(f) - size) & ~(a - 1));
  f->closure_on_heap = heap != nullptr;
  f->closure = p;
  return SpawnSlot{f, p, f->id};
}

void spawn_abort(Fiber* f) noexcept {
  Worker* w = current_worker();
  if (f->closure_on_heap) ::operator delete(f->closure, std::align_val_t(64));
  std::uint32_t slot = f->slot;
  f->sync->store((f->gen + 1) << kGenShift, std::memory_order_release);
  f->~Fiber();
  w->stack_cache.push_back(slot);
}

void spawn_commit(Fiber* f, void (*entry)(void*)) noexcept {
  f->entry = entry;
  start_context(f);
  Worker* w = current_worker();
  w->spawned.store(w->spawned.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // Child first: the parent is queued (stealable) and resumes after it.
  switch_to(w, w->current.load(std::memory_order_relaxed), f, Action::SpawnParent);
}

// Runs what is already queued on this worker first; if nothing is, carries
// on (an OS yield off the runtime). Never throws, even at shutdown. True
// when another fiber ran meanwhile.
bool yield_nothrow() noexcept {
  Worker* w = current_worker();
  Fiber* f = w ? w->current.load(std::memory_order_relaxed) : nullptr;
  if (!f) {
    std::this_thread::yield();
    return false;
  }
  Fiber* next = pick_local(w);
  if (!next) return false;
  switch_to(w, f, next, Action::Yield);
  return true;
}

[[gnu::noinline]] static void join_wait_slow(JoinStateBase* s, std::uintptr_t cur);

void join_wait(JoinStateBase* s) {
  cancellation_point();
  std::uintptr_t cur = s->state.load(std::memory_order_acquire);
  if ((cur & JoinStateBase::kPhase) == JoinStateBase::kDone) return;  // the fast path: no frame to set up
  join_wait_slow(s, cur);
}

static void join_wait_slow(JoinStateBase* s, std::uintptr_t cur) {
  using S = JoinStateBase;
  s->joiner = prepare_park(WaitKind::Join, s);
  do {
    if ((cur & S::kPhase) != S::kRunning) return;  // finished meanwhile
  } while (!s->state.compare_exchange_weak(cur, cur + S::kJoinerWaiting, std::memory_order_acq_rel,
                                           std::memory_order_acquire));
  if (park(s->joiner) == WakeReason::Event) return;
  // Cancelled: withdraw, unless the fiber finished and is waking us anyway.
  // Then wait until its unpark is over (kDone): that unpark reads our sync
  // word, and if we unwound and exited first our runtime could end and free
  // it (a joiner in another runtime than the fiber it joins). The fiber is
  // running the few instructions between its two stores meanwhile. A join
  // whose fiber finished so is complete: it returns, and our next
  // cancellation point throws.
  cur = s->state.load(std::memory_order_acquire);
  do {
    if ((cur & S::kPhase) != S::kJoinerWaiting) {
      while ((s->state.load(std::memory_order_acquire) & S::kPhase) != S::kDone) std::this_thread::yield();
      if (shutting_down()) throw_unwind();
      return;
    }
  } while (!s->state.compare_exchange_weak(cur, cur - S::kJoinerWaiting, std::memory_order_acq_rel,
                                           std::memory_order_acquire));
  throw_unwind();
}

bool join_pin(JoinStateBase* s) noexcept {
  using S = JoinStateBase;
  std::uintptr_t cur = s->state.load(std::memory_order_acquire);
  do {
    std::uintptr_t phase = cur & S::kPhase;
    if (phase == S::kDone || phase == S::kWaking || !s->fiber) return false;  // ended (or run()'s main)
  } while (!s->state.compare_exchange_weak(cur, cur + S::kCanceller, std::memory_order_acq_rel,
                                           std::memory_order_acquire));
  return true;
}

void join_unpin(JoinStateBase* s) noexcept {
  s->state.fetch_sub(JoinStateBase::kCanceller, std::memory_order_release);
}

void join_cancel(JoinStateBase* s) noexcept {
  if (!join_pin(s)) return;
  cancel_fiber(s->fiber, 0);
  join_unpin(s);
}

[[noreturn]] void panic(std::exception_ptr e, std::uint64_t fiber_id) noexcept {
  if (fiber_id == 0) fiber_id = this_fiber::id();
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& e) {
    what = std::string(typeid(e).name()) + ": " + e.what();
    int st = 0;
    if (char* d = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &st)) {
      what = std::string(d) + ": " + e.what();
      std::free(d);
    }
  } catch (...) {
  }
  // The fiber's name, when the panic runs on that fiber (a detached fiber's
  // own end; a handle dropped before its fiber ended). A handle dropped
  // after the end panics on the dropper: the name is gone by then.
  std::string name;
  if (Fiber* f = current_fiber(); f && f->id == fiber_id && f->name[0])
    name = std::string(" \"") + std::string(f->name, strnlen(f->name, sizeof f->name)) + "\"";
  std::fprintf(stderr, "weft: panic: fiber %llu%s exited with an uncaught exception: %s\n",
               static_cast<unsigned long long>(fiber_id), name.c_str(), what.c_str());
  std::fflush(stderr);
  std::abort();
}

void join_finish(JoinStateBase* s) noexcept {
  using S = JoinStateBase;
  std::uintptr_t cur = s->state.load(std::memory_order_acquire);
  for (;;) {
    if (cur >= S::kCanceller) {
      // A canceller is touching our control block: let it finish first (a
      // fiber yield: on one worker it may be a fiber parked mid-cancel).
      WEFT_CHAOS_POINT();
      if (!yield_nothrow()) std::this_thread::yield();
      cur = s->state.load(std::memory_order_acquire);
      continue;
    }
    if (s->state.compare_exchange_weak(cur, cur == S::kJoinerWaiting ? S::kWaking : S::kDone,
                                       std::memory_order_acq_rel, std::memory_order_acquire))
      break;
  }
  if (cur == JoinStateBase::kJoinerWaiting) {
    unpark(s->joiner);
    s->state.store(JoinStateBase::kDone, std::memory_order_release);
    WEFT_CHAOS_POINT();  // the woken joiner may let go of the state before we do
  }
  // A count of 1 is ours alone: nobody else holds or can take a reference
  // (the acquire pairs with the handle's acq_rel release), so the RMW is
  // skipped, as it always is for Scope::spawn's children (no handle).
  if (s->refs.load(std::memory_order_acquire) == 1 || s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    if (s->error && !s->quiet) panic(s->error, s->fiber_id);  // the handle was dropped without join
    s->destroy(s);
  }
}

void join_release(JoinStateBase* s) noexcept {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) s->destroy(s);
}

void join_detach(JoinStateBase* s) noexcept {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    if (s->error && !s->quiet) panic(s->error, s->fiber_id);  // ended with an exception nobody will see
    s->destroy(s);
  }
}

void throw_cancelled(std::uint64_t id) {
  throw std::runtime_error("weft: fiber " + std::to_string(id) + " was unwound at runtime shutdown");
}

std::mutex g_teardown_lock;
TeardownStats g_teardown;  // guarded by g_teardown_lock

// Wakes every parked fiber that is not already unwinding, with Cancel.
static void sweep(Runtime& r) {
  std::uint32_t n = r.arena.slot_count();
  for (std::uint32_t i = 0; i < n; i++) {
    std::uint64_t v = r.arena.sync(i).load(std::memory_order_acquire);
    if ((v & (kSwitched | kWoken | kUnwinding)) != kSwitched) continue;
    unpark(Parker{fiber_of_slot(r.arena.slot_top(i)), &r.arena.sync(i), v >> kGenShift}, WakeReason::Cancel);
  }
}

// Teardown accounting (see TeardownStats): every worker has exited, so
// their slot caches are quiescent.
static void record_teardown(Runtime& r) noexcept {
  std::size_t held = r.arena.free_slots();
  for (auto& w : r.workers) held += w->stack_cache.size() + w->trim_batch.size();
  std::size_t carved = r.arena.carved_slots();
  std::lock_guard<std::mutex> g(g_teardown_lock);
  g_teardown.runs++;
  g_teardown.leaked_fibers += r.live_fibers();
  g_teardown.leaked_slots += carved > held ? carved - held : 0;
}

void run_main(const Options& opts, void (*entry)(void*), void* arg) {
  const void* site = __builtin_return_address(0);
  if (current_worker()) throw std::logic_error("weft::run() called on a fiber: runtimes do not nest");
  install_overflow_handler();
  Runtime r(opts);
  std::uint32_t slot = r.arena.alloc();
  Fiber* f = new_fiber(r, slot);
  f->id = g_id_source.fetch_add(1, std::memory_order_relaxed);
  f->is_main = true;
  f->spawn_pc = site;
  set_name(f, "main");
  f->entry = entry;
  f->closure = arg;
  f->closure_on_heap = false;
  // The closure lives on this thread's stack: the fiber's frames start just
  // below its control block.
  f->ctx = nullptr;
  {
    char* low = r.arena.slot_base(slot) + r.arena.guard_bytes();
    char* sp = reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(f) & ~std::uintptr_t{63});
    f->ctx = bctx::make_fcontext(sp, static_cast<std::size_t>(sp - low), fiber_main);
#ifdef WEFT_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
  }
  r.ext_spawned.fetch_add(1, std::memory_order_relaxed);
  struct sigaction old_quit {};
  if (r.opts.dump_on_sigquit) old_quit = install_sigquit_dump();
  r.nstarted.store(r.nworkers, std::memory_order_release);
  for (unsigned i = 0; i < r.nworkers; i++) {
    Worker* wp = r.workers[i].get();
    wp->thread = std::thread([wp] { worker_loop(wp); });
  }
  std::thread monitor([&r, caller = platform::thread_id()] { monitor_loop(r, caller); });
  // Main's fiber is queued once every thread above has set itself up
  // (internal.hpp: threads_ready); meanwhile the workers go idle. The
  // monitor cannot take that wait for a deadlock: main's fiber, created
  // but never switched out, counts as runnable (all_parked_for_good).
  for (std::uint32_t v; (v = r.threads_ready.load(std::memory_order_acquire)) < r.nworkers + 1;)
    futex_wait(&r.threads_ready, v, kNoDeadline);
  r.inject(f);
  while (r.main_done.load(std::memory_order_acquire) == 0 && !r.deadlocked.load(std::memory_order_acquire)) {
#ifdef WEFT_TSAN
    // TSan runs the handler of an asynchronous signal only inside or on the
    // way out of a call it intercepts, and a raw futex is none; the kernel
    // gives a signal sent to the process (kill) to the main thread first,
    // which waits here. So wake every 10 ms and make one (usleep), or a
    // relayed SIGTERM (weft/signal.hpp) would wait for run() to return.
    futex_wait(&r.main_done, 0, to_ns(Clock::now()) + 10'000'000);
    usleep(0);
#else
    futex_wait(&r.main_done, 0, kNoDeadline);
#endif
  }
  // Unwind whatever is still alive: parked fibers are woken with Cancel,
  // running and runnable ones unwind at their next park or yield.
  r.stopping.store(true, std::memory_order_seq_cst);
  while (r.live_fibers() != 0) {
    std::uint32_t epoch = r.exit_epoch.load(std::memory_order_acquire);
    sweep(r);
    if (r.live_fibers() == 0) break;
    futex_wait(&r.exit_epoch, epoch, to_ns(Clock::now()) + 2'000'000);
  }
  r.exiting.store(true, std::memory_order_seq_cst);
  futex_wake(&r.monitor_word, 1);
  monitor.join();  // first: it starts spares
  r.wake_all_workers();
  for (unsigned i = 0; i < r.started_workers(); i++) r.workers[i]->thread.join();
  // Outside wakes still in flight (park.cpp: ready) end before the poller
  // goes: their inject()'s wakep() may wake it (found by TSan: a
  // blocking-pool thread wrote the poller's eventfd while this thread
  // closed it). Each was counted before its fiber could end.
  while (r.ext_inflight.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  r.poller.store(nullptr, std::memory_order_release);
  r.poller_owner.reset();
  if (r.opts.dump_on_sigquit) sigaction(SIGQUIT, &old_quit, nullptr);
  record_teardown(r);
  if (r.deadlocked.load(std::memory_order_acquire))
    throw Deadlock("weft: all fibers are asleep - deadlock! (the fiber dump is on stderr)");
}

}  // namespace detail

bool in_fiber() noexcept { return rt::current_fiber() != nullptr; }

rt::TeardownStats rt::teardown_stats() noexcept {
  std::lock_guard<std::mutex> g(detail::g_teardown_lock);
  return detail::g_teardown;
}

namespace this_fiber {

void yield() {
  using namespace weft::rt;
  Worker* w = current_worker();
  Fiber* f = w ? w->current.load(std::memory_order_relaxed) : nullptr;
  if (!f) {
    std::this_thread::yield();
    return;
  }
  if (!f->unwinding && f->rt->stopping.load(std::memory_order_acquire)) throw_unwind();
  // Run what is already queued here first; if nothing is, carry on.
  Fiber* next = pick_local(w);
  if (!next) return;
  switch_to(w, f, next, Action::Yield);
}

void sleep_until(Clock::time_point t) {
  using namespace weft::rt;
  Fiber* f = current_fiber();
  if (!f) {
    std::this_thread::sleep_until(t);
    return;
  }
  cancellation_point();
  if (t <= Clock::now()) {
    yield();
    return;
  }
  if (park_until(prepare_park(WaitKind::Sleep, &t), t) == WakeReason::Cancel) throw_unwind();
}

void sleep_for(std::chrono::nanoseconds d) {
  auto now = Clock::now();
  if (d > Clock::time_point::max() - now) d = Clock::time_point::max() - now;
  sleep_until(now + std::chrono::duration_cast<Clock::duration>(d));
}

std::uint64_t id() noexcept {
  rt::Fiber* f = rt::current_fiber();
  return f ? f->id : 0;
}

}  // namespace this_fiber
}  // namespace weft
