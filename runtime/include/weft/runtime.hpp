// weft/runtime.hpp: the runtime, fibers and join handles (API.md "Runtime and
// fibers").
//
// A note on migration: a fiber may resume on another OS thread after any call
// that parks or yields. thread_local variables are per thread, not per fiber;
// do not keep the address of one across such a call. errno is saved and
// restored per fiber, as is the C++ exception-handling state (so a fiber may
// park inside a catch block). One caveat: glibc declares __errno_location()
// const, so within one function the compiler may keep errno's address across
// a park and, after a migration, read the previous thread's errno. Read errno
// right after the call that set it, before parking (as one should anyway).
//
// Shutdown: once run()'s main function returns, every fiber still alive is
// unwound: the next (or current) park, sleep or yield of each throws an
// internal marker that is not a std::exception. Code that catches (...) must
// rethrow it, as with thread cancellation.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iosfwd>
#include <string_view>
#include <vector>
#include <memory>
#include <new>
#include <optional>
#include <stop_token>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include <weft/cancel.hpp>
#include <weft/park.hpp>

namespace weft {

struct Options {
  unsigned workers = 0;         // OS threads; 0: $WEFT_WORKERS, else hardware_concurrency()
  std::size_t stack_size = 0;   // max stack per fiber (virtual); 0: library default (256 KiB)
  // The monitor (HACKING.md "The monitor"): a worker that runs one fiber
  // longer than stuck_threshold without switching is reported once on
  // stderr and the fibers queued behind it move to other workers; when
  // every worker is stuck it starts a spare worker thread, at most
  // spare_workers of them over the runtime's life.
  std::chrono::milliseconds stuck_threshold{10};
  unsigned spare_workers = 4;
  // When every fiber is parked and nothing can wake any of them, run()
  // prints "weft: all fibers are asleep - deadlock!" and the fiber dump on
  // stderr, unwinds every fiber and throws weft::Deadlock; or aborts.
  enum class OnDeadlock : std::uint8_t { Throw, Abort } on_deadlock = OnDeadlock::Throw;
  // Print the fiber dump (weft::dump) on stderr when the process gets SIGQUIT.
  bool dump_on_sigquit = false;
  // The netpoller's kernel interface (Linux): Default reads $WEFT_POLLER
  // ("epoll" or "io_uring"), else epoll. IoUring needs a build with
  // liburing (meson -Dio_uring); where io_uring is unavailable (no support
  // built, kernel.io_uring_disabled, seccomp, an old kernel) the runtime
  // falls back to epoll and says so in one line on stderr. Other systems
  // have one poller (kqueue) and ignore the choice.
  enum class Poller : std::uint8_t { Default, Epoll, IoUring } poller = Poller::Default;
};

// Thrown by run() when every fiber was parked with nothing able to wake them.
struct Deadlock : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A fiber's name for dumps and monitor reports: go(Named{"acceptor"}, f, args...).
// Up to 31 bytes are kept.
struct Named {
  std::string_view name;
};

// Runtime counters (weft::stats()). Counters are sums over the workers
// since the runtime started; read while it runs, they are a snapshot of
// values that keep moving.
struct Stats {
  std::uint64_t fibers_live = 0, fibers_spawned = 0;
  // Live fibers switched out in a park and not yet woken (neither running,
  // nor runnable, nor in a yield). fibers_parked + 1 == fibers_live, read
  // on a one-worker runtime, means: every fiber but the caller is parked and
  // nothing is runnable (tests use it to wait for quiescence).
  std::uint64_t fibers_parked = 0;
  std::uint64_t switches = 0, steals = 0, parks = 0, polls = 0;
  std::uint64_t budget_yields = 0;   // yields forced by the cooperative budget
  // What idle workers cost (polls = polls_busy + polls_spinning + polls_blocking):
  std::uint64_t polls_busy = 0;      // non-blocking polls by a busy worker between fibers
  std::uint64_t polls_spinning = 0;  // non-blocking polls by a spinning (idle) worker
  std::uint64_t polls_blocking = 0;  // polls an idle worker slept in, until I/O, a timer or a wake
  std::uint64_t spin_rounds = 0;     // rounds of idle workers' spin loops (each tries to steal)
  std::uint64_t spins_fruitless = 0; // spin phases that found nothing (the worker then slept)
  std::uint64_t futex_sleeps = 0;    // sleeps of idle workers on their futex (not in the poller)
  std::uint64_t wakes_futex = 0;     // idle workers woken from their futex
  std::uint64_t wakes_poller = 0;    // idle workers woken out of the poller
  std::uint64_t wakes_kept = 0;      // fibers readied by a poll or timer that their worker kept without a wake
  std::uint64_t stuck_reports = 0;   // fibers the monitor reported for hogging a worker
  std::size_t stack_reserved = 0;    // bytes of address space held for stacks
  std::size_t stack_committed = 0;   // bytes of stack memory resident
  unsigned spare_workers = 0;        // spare worker threads started by the monitor
  enum class WorkerState : std::uint8_t { Running, Searching, Idle, Polling };
  struct Worker {
    WorkerState state = WorkerState::Idle;
    std::uint64_t fiber = 0;         // the running fiber's id (Running)
    std::uint64_t switches = 0;
    bool spare = false;
    bool stuck = false;              // the monitor found it running one fiber too long
  };
  std::vector<Worker> workers;
};

// Counters of the current runtime. Call on one of its fibers (std::logic_error otherwise).
Stats stats();

// Writes one entry per live fiber of the current runtime: id, name, state
// (running / runnable / parked), what a parked fiber waits on and for how
// long, its spawn site, and, where the build keeps frame pointers, a
// backtrace of each parked fiber. HACKING.md shows how to read it. Call on
// a fiber (std::logic_error otherwise). Other fibers keep running: entries
// of fibers that change state meanwhile are best effort.
void dump(std::ostream& out);

namespace detail {

// Thrown through a fiber's frames to unwind it at shutdown. Not a
// std::exception on purpose: catch (const std::exception&) lets it pass.
struct FiberUnwind {};

struct ScopeCore;
struct ScopeChild;

// Shared between a fiber and its JoinHandle. Two references: the fiber's and
// the handle's; the last one to let go frees it (and, if the fiber's
// exception was never observed, panics: an exception never disappears).
// join() takes the exception out of `error` before it lets go, so an error
// left there when the last reference goes is one nobody observed, whichever
// side lets go last (the joiner may be woken and let go before the fiber).
struct JoinStateBase {
  // state = phase (the low 2 bits) + kCanceller * (cancellers in flight).
  // Phase kWaking: the fiber ended and is unparking the joiner; kDone follows.
  static constexpr std::uintptr_t kRunning = 0, kDone = 1, kJoinerWaiting = 2, kWaking = 3, kPhase = 3;
  // A canceller (join_cancel) counts itself in while the phase is kRunning
  // or kJoinerWaiting, touches the fiber's control block, and counts itself
  // out; the fiber leaves those phases only with no canceller in flight
  // (join_finish waits), so a canceller never touches a control block
  // that has been reused.
  static constexpr std::uintptr_t kCanceller = 4;
  // Written by the fiber (kDone or kWaking, CAS, acq_rel), the joiner
  // (kJoinerWaiting, CAS, acq_rel) and cancellers (CAS, fetch_sub); each
  // reads the others' writes (acquire): the result fields and `joiner` are
  // published by these operations.
  // Kept small (80 bytes; JoinState<void> 88, a 96-byte malloc chunk): a
  // million live handles grown by 40 bytes cost spawn/join 27% (page faults).
  std::atomic<std::uintptr_t> state{kRunning};
  std::atomic<std::uint32_t> refs{2};
  bool cancelled = false;     // unwound at shutdown
  bool quiet = false;         // `error` is a Cancelled (or a Scope holds it): never a panic
  bool by_cancel = false;     // `error` is a Cancelled
  rt::Parker joiner;          // valid while the phase is kJoinerWaiting
  std::exception_ptr error;   // written by the fiber before kDone
  std::uint64_t fiber_id = 0;
  rt::Fiber* fiber = nullptr;  // the fiber's control block, valid while it runs
  void (*destroy)(JoinStateBase*) = nullptr;
  ScopeChild* child = nullptr;  // a Scope's child: its record (scope.cpp)
};

// A Scope's child, beside its join state: its scope, and its links in the
// scope's list of running children (guarded by the scope's lock). Freed by
// the child after join_finish, when no canceller can still hold it.
struct ScopeChild {
  ScopeCore* scope;
  JoinStateBase* st = nullptr;
  ScopeChild* prev = nullptr;
  ScopeChild* next = nullptr;
  ScopeChild* pinned = nullptr;  // the chain of children one canceller pinned
};

template <class T>
struct JoinState : JoinStateBase {
  std::conditional_t<std::is_void_v<T>, std::monostate, std::optional<T>> value;
  JoinState() { destroy = [](JoinStateBase* b) { delete static_cast<JoinState*>(b); }; }
};

// A scope child's join state and its ScopeChild record in one allocation
// (plain go() children stay at JoinState's size). The record lives as
// long as the state: past join_finish, which waits out the cancellers
// that pinned it, and past the child's leaving the scope's list.
template <class T>
struct ScopedJoinState : JoinState<T> {
  ScopeChild rec;
  explicit ScopedJoinState(ScopeCore* sc) : rec{sc} {
    this->destroy = [](JoinStateBase* b) { delete static_cast<ScopedJoinState*>(static_cast<JoinState<T>*>(b)); };
  }
};

void join_wait(JoinStateBase* s);                  // parks until the fiber ended
void join_finish(JoinStateBase* s) noexcept;       // the fiber's last act
void join_release(JoinStateBase* s) noexcept;      // handle side: drop after join
void join_detach(JoinStateBase* s) noexcept;       // handle side: drop without join
void join_cancel(JoinStateBase* s) noexcept;       // cancels the fiber unless it ended
// The two halves of join_cancel: pin keeps the fiber from ending (false: it
// ended already); unpin lets it end. Between them cancel_fiber(s->fiber, 0).
bool join_pin(JoinStateBase* s) noexcept;
void join_unpin(JoinStateBase* s) noexcept;
// scope.cpp: a child joins its scope before it starts (pre-cancelled if the
// scope is) and leaves it when it has ended (its error reported).
void scope_child_begin(ScopeChild* ch, JoinStateBase* st) noexcept;
void scope_child_end(JoinStateBase* st) noexcept;
[[noreturn]] void throw_cancelled(std::uint64_t fiber_id);
// Ends the process: "weft: panic: fiber <id> exited with an uncaught exception: <what>".
[[noreturn]] void panic(std::exception_ptr e, std::uint64_t fiber_id = 0) noexcept;

struct SpawnSlot {
  rt::Fiber* fiber;
  void* storage;    // room for the fiber's closure
  std::uint64_t id;
};
// Takes a stack slot for a new fiber. Records its own return address as
// the fiber's spawn site (shown in dumps, symbolized only then, as Go
// does): go_impl and spawn_impl are always inlined into the user's call.
[[gnu::noinline]] SpawnSlot spawn_begin(std::size_t size, std::size_t align, std::string_view name);
// Starts the fiber. When called on a fiber, the child runs at once and the
// caller is queued to continue right after (see scheduler.cpp for why).
void spawn_commit(rt::Fiber* f, void (*entry)(void*)) noexcept;
void spawn_abort(rt::Fiber* f) noexcept;

// Runs `entry(arg)` as the main fiber of a new runtime and returns once it
// and every other fiber have ended. Its return address is main's spawn site.
[[gnu::noinline]] void run_main(const Options& opts, void (*entry)(void*), void* arg);

template <class R, class Fn>
void store_result(JoinState<R>* st, Fn&& fn) noexcept {
  try {
    if constexpr (std::is_void_v<R>) {
      std::forward<Fn>(fn)();
    } else {
      st->value.emplace(std::forward<Fn>(fn)());
    }
  } catch (const FiberUnwind&) {
    st->cancelled = true;
  } catch (const Cancelled&) {
    st->error = std::current_exception();
    st->quiet = st->by_cancel = true;  // ending with Cancelled is not a panic
  } catch (...) {
    st->error = std::current_exception();
  }
}

}  // namespace detail

template <class T>
class JoinHandle {
 public:
  JoinHandle() = default;
  explicit JoinHandle(detail::JoinState<T>* s) noexcept : st_(s) {}
  JoinHandle(JoinHandle&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
  JoinHandle& operator=(JoinHandle&& o) noexcept {
    if (this != &o) {
      detach();
      st_ = std::exchange(o.st_, nullptr);
    }
    return *this;
  }
  JoinHandle(const JoinHandle&) = delete;
  JoinHandle& operator=(const JoinHandle&) = delete;
  ~JoinHandle() { detach(); }

  // Parks until the fiber ends; returns its value or rethrows its exception.
  T join() {
    if (!st_) throw std::logic_error("weft: join() on an empty or already joined JoinHandle");
    detail::join_wait(st_);
    struct Release {
      detail::JoinState<T>* s;
      ~Release() { detail::join_release(s); }
    } rel{std::exchange(st_, nullptr)};
    // Taken out before the release: the fiber may still hold its reference
    // (it unparks us before dropping it) and, if it lets go last, it panics
    // on an error still in the state ("nobody saw it").
    if (auto e = std::exchange(rel.s->error, nullptr)) std::rethrow_exception(e);
    if (rel.s->cancelled) detail::throw_cancelled(rel.s->fiber_id);
    if constexpr (!std::is_void_v<T>) return std::move(*rel.s->value);
  }
  bool done() const noexcept {
    if (!st_) return false;
    auto v = st_->state.load(std::memory_order_acquire) & detail::JoinStateBase::kPhase;
    return v == detail::JoinStateBase::kDone || v == detail::JoinStateBase::kWaking;
  }
  // Requests cancellation of the fiber (weft/cancel.hpp) and returns at
  // once. Idempotent; does nothing once the fiber has ended (or on an empty
  // handle). join() then returns the fiber's value if it finished anyway,
  // or rethrows Cancelled. Any thread.
  void cancel() noexcept {
    if (st_) detail::join_cancel(st_);
  }
  bool joinable() const noexcept { return st_ != nullptr; }
  void detach() noexcept {
    if (st_) detail::join_detach(std::exchange(st_, nullptr));
  }
  // The fiber's id (this_fiber::id() inside it); 0 for an empty handle.
  std::uint64_t id() const noexcept { return st_ ? st_->fiber_id : 0; }

 private:
  detail::JoinState<T>* st_ = nullptr;
};

// Starts a runtime, runs main as its first fiber and returns its result (or
// rethrows its exception) once every fiber has ended.
template <class F>
WEFT_ALWAYS_INLINE auto run(F&& main, Options opts = {}) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  detail::JoinState<R> st;
  struct Ctx {
    std::remove_reference_t<F>* f;  // run(lvalue) deduces F as a reference
    detail::JoinState<R>* st;
  } ctx{&main, &st};
  detail::run_main(
      opts,
      [](void* p) {
        auto* c = static_cast<Ctx*>(p);
        detail::store_result(c->st, [c]() -> R { return std::invoke(*c->f); });
      },
      &ctx);
  if (st.error) std::rethrow_exception(st.error);
  if constexpr (!std::is_void_v<R>) return std::move(*st.value);
}

namespace detail {

// go(f, args...) calls f(args...), or f(token, args...) when f takes a
// std::stop_token first (the fiber's: this_fiber::stop_token()), as
// std::jthread does.
template <class F, class... A>
inline constexpr bool kTakesToken = std::is_invocable_v<std::decay_t<F>, std::stop_token, std::decay_t<A>...>;
template <class F, class... A>
inline constexpr bool kCallable = kTakesToken<F, A...> || std::is_invocable_v<std::decay_t<F>, std::decay_t<A>...>;
// What go() returns a handle to; NotCallable when f cannot be called with
// the arguments, so that the static_assert in go_impl is the error a user
// reads (not a missing invoke_result deep in a template).
struct NotCallable {};
template <class F, class... A>
struct ResultOf {
  using type = NotCallable;
};
template <class F, class... A>
  requires(kTakesToken<F, A...>)
struct ResultOf<F, A...> {
  using type = std::invoke_result_t<std::decay_t<F>, std::stop_token, std::decay_t<A>...>;
};
template <class F, class... A>
  requires(!kTakesToken<F, A...> && std::is_invocable_v<std::decay_t<F>, std::decay_t<A>...>)
struct ResultOf<F, A...> {
  using type = std::invoke_result_t<std::decay_t<F>, std::decay_t<A>...>;
};
template <class F, class... A>
using Result = typename ResultOf<F, A...>::type;

template <class F, class... A>
constexpr bool check_spawnable() {
  static_assert(kCallable<F, A...>,
                "weft::go / weft::spawn / Scope::go(f, args...): f cannot be called with these arguments. "
                "Each argument is copied (decayed) into the fiber and passed to f as an rvalue, as std::thread "
                "does, so a parameter taken as T& cannot bind to it: pass std::ref(x) (and keep x alive until "
                "the fiber has ended), or take the parameter by value or by const&.");
  static_assert(std::is_move_constructible_v<std::decay_t<F>> && (std::is_move_constructible_v<std::decay_t<A>> && ...),
                "weft::go / weft::spawn: f and every argument must be movable or copyable into the fiber");
  return kCallable<F, A...>;
}

// Calls a fiber's callable with its stored arguments, the fiber's stop
// token first when f takes one (go, spawn and Scope::spawn share it).
template <class F, class... A, class Fn, class Args>
WEFT_ALWAYS_INLINE decltype(auto) invoke_fiber_fn(Fn& fn, Args& args) {
  if constexpr (kTakesToken<F, A...>) {
    return std::apply(std::move(fn), std::tuple_cat(std::make_tuple(this_fiber::stop_token()), std::move(args)));
  } else {
    return std::apply(std::move(fn), std::move(args));
  }
}

template <class F, class... A>
WEFT_ALWAYS_INLINE JoinHandle<Result<F, A...>> go_impl(ScopeCore* scope, std::string_view name, F&& f, A&&... args) {
  using R = Result<F, A...>;
  if constexpr (!check_spawnable<F, A...>()) {
    return {};
  } else {
  struct Closure {
    std::decay_t<F> fn;
    std::tuple<std::decay_t<A>...> args;
    detail::JoinState<R>* st;
    static void run(void* p) noexcept {
      auto* c = static_cast<Closure*>(p);
      auto* st = c->st;
      detail::store_result(st, [c]() -> R { return invoke_fiber_fn<F, A...>(c->fn, c->args); });
      c->~Closure();
      if (st->child) detail::scope_child_end(st);
      detail::join_finish(st);
    }
  };
  detail::JoinState<R>* st;
  detail::ScopeChild* child = nullptr;
  if (scope) {
    auto* sst = new detail::ScopedJoinState<R>(scope);
    child = &sst->rec;
    st = sst;
  } else {
    st = new detail::JoinState<R>();
  }
  detail::SpawnSlot slot;
  try {
    slot = detail::spawn_begin(sizeof(Closure), alignof(Closure), name);
  } catch (...) {
    st->destroy(st);
    throw;
  }
  try {
    ::new (slot.storage) Closure{std::forward<F>(f), {std::forward<A>(args)...}, st};
  } catch (...) {
    detail::spawn_abort(slot.fiber);
    st->destroy(st);
    throw;
  }
  st->fiber_id = slot.id;
  st->fiber = slot.fiber;
  if (child) detail::scope_child_begin(child, st);
  detail::spawn_commit(slot.fiber, &Closure::run);
  return JoinHandle<R>(st);
  }
}

template <class F, class... A>
WEFT_ALWAYS_INLINE void spawn_impl(std::string_view name, F&& f, A&&... args) {
  if constexpr (check_spawnable<F, A...>()) {
  struct Closure {
    std::decay_t<F> fn;
    std::tuple<std::decay_t<A>...> args;
    static void run(void* p) noexcept {
      auto* c = static_cast<Closure*>(p);
      try {
        (void)invoke_fiber_fn<F, A...>(c->fn, c->args);
      } catch (const detail::FiberUnwind&) {
      } catch (const Cancelled&) {
      } catch (...) {
        detail::panic(std::current_exception());
      }
      c->~Closure();
    }
  };
  detail::SpawnSlot slot = detail::spawn_begin(sizeof(Closure), alignof(Closure), name);
  try {
    ::new (slot.storage) Closure{std::forward<F>(f), {std::forward<A>(args)...}};
  } catch (...) {
    detail::spawn_abort(slot.fiber);
    throw;
  }
  detail::spawn_commit(slot.fiber, &Closure::run);
  }
}

}  // namespace detail

// Starts a fiber running f(args...) (decayed copies, invoked as rvalues, as
// std::thread does) on the current runtime, and returns its JoinHandle. Must
// be called on a fiber. go(Named{"name"}, f, args...) names the fiber.
// Dumps show where it was spawned: the return address of the spawn, which
// costs nothing here and is symbolized only when a dump is printed.
template <class F, class... A>
WEFT_ALWAYS_INLINE JoinHandle<detail::Result<F, A...>> go(F&& f, A&&... args) {
  return detail::go_impl(nullptr, {}, std::forward<F>(f), std::forward<A>(args)...);
}
template <class F, class... A>
WEFT_ALWAYS_INLINE JoinHandle<detail::Result<F, A...>> go(Named n, F&& f, A&&... args) {
  return detail::go_impl(nullptr, n.name, std::forward<F>(f), std::forward<A>(args)...);
}

// Starts a detached fiber running f(args...): go() without a JoinHandle, and
// without the handle's shared state (one allocation less; a parked detached
// fiber costs its stack page only). An exception escaping it ends the
// process with a message naming the fiber, as a panic does in Go.
// spawn(Named{"name"}, f, args...) names it.
template <class F, class... A>
WEFT_ALWAYS_INLINE void spawn(F&& f, A&&... args) {
  detail::spawn_impl({}, std::forward<F>(f), std::forward<A>(args)...);
}
template <class F, class... A>
WEFT_ALWAYS_INLINE void spawn(Named n, F&& f, A&&... args) {
  detail::spawn_impl(n.name, std::forward<F>(f), std::forward<A>(args)...);
}

// True when called on a weft fiber.
bool in_fiber() noexcept;

namespace this_fiber {
void yield();
void sleep_for(std::chrono::nanoseconds d);
void sleep_until(Clock::time_point t);
// Unique for the process lifetime, never 0 for a fiber; 0 on a plain thread.
std::uint64_t id() noexcept;
}  // namespace this_fiber

}  // namespace weft
