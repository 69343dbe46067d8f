// weft/park.hpp: the runtime's low-level blocking interface.
//
// This is the only interface that channels/, netpoll/ and the sync primitives
// build on: park the current fiber, unpark it from anywhere, arm timers, and
// register an idle poller. User code rarely needs it.
//
// The park protocol (why there is no "unlock after switch" hook as in Go's
// gopark): every park of a fiber has a generation number, its *token*. A
// waiter first calls prepare_park(), which opens a new generation, publishes
// the (fiber, token) pair wherever wakers will find it (a wait queue, a
// timer), releases its own locks, then calls park(). Any number of wakers
// may race to unpark(parker): exactly one wins the claim (a CAS on the
// fiber's sync word), whichever order the claim and the switch-out happen in,
// and stale tokens (from an earlier park of the same fiber, or of a fiber
// that has ended and whose control block was reused) never match. So a waiter
// never holds a lock across the switch, and a timer and an event racing to
// wake one fiber wake it exactly once; the loser learns it lost (unpark
// returns false) and moves on, e.g. to the next waiter in a queue.
//
// Memory safety of the claim: fiber sync words live in a side table that
// lives as long as the runtime, so unpark() on a stale parker is harmless.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

// Chaos builds (meson -Dchaos=true) inject random yields and short delays at
// the runtime's internal race windows (park, unpark, steal, poll, timer
// arm, deferred wakes), so that interleavings a quiet machine almost never
// produces show up in the test suites (run under TSan in CI). Elsewhere
// WEFT_CHAOS_POINT() compiles to nothing.
#ifdef WEFT_CHAOS
namespace weft::rt {
void chaos_point() noexcept;
}
#define WEFT_CHAOS_POINT() ::weft::rt::chaos_point()
#else
#define WEFT_CHAOS_POINT() ((void)0)
#endif

namespace weft {

using Clock = std::chrono::steady_clock;

// Why park() returned.
enum class WakeReason : std::uint8_t {
  Event = 1,    // the awaited event happened (notify, send, data ready...)
  Timeout = 2,  // a deadline timer fired
  Cancel = 3,   // the fiber was cancelled, or the runtime shuts down and unwinds it
};

// What a parked fiber waits on: kept per fiber for dumps and deadlock checks.
// The object passed to prepare_park with it: Join: the JoinStateBase; Sleep:
// the Clock::time_point deadline (on the sleeper's stack); channels: the
// channel core; IoRead/IoWrite: the netpoller's descriptor (described by a
// describer the netpoller registers); others: the primitive.
// Fibers parked on Io*, Blocking and Sleep (or with any timer armed) can be
// woken by the world outside: the deadlock check never counts them stuck.
enum class WaitKind : std::uint8_t {
  None, Join, Mutex, CondVar, WaitGroup, Sleep, ChanSend, ChanRecv, Select, Io, Blocking, Other, IoRead, IoWrite,
  RWMutex, Semaphore, Once
};

// Forces a function into its caller, even at -O0: go(), spawn() and
// Scope::go() are inlined into the user's function so that the spawn
// site (the return address spawn_begin records) is the user's call.
#define WEFT_ALWAYS_INLINE __attribute__((always_inline)) inline

namespace rt {

struct Fiber;  // opaque control block

// A claim ticket on one park of one fiber. `sync` points at the fiber's sync
// word, which outlives the fiber, so a stale Parker is harmless.
struct Parker {
  Fiber* fiber = nullptr;
  std::atomic<std::uint64_t>* sync = nullptr;
  std::uint64_t token = 0;
};

// The runtime a fiber belongs to (nullptr: a plain thread's parking block).
// The control block's first member (fiber.hpp asserts it), read here so that
// hot paths need not call into the runtime.
inline const void* runtime_of(const Fiber* f) noexcept { return *reinterpret_cast<const void* const*>(f); }

// Opens a new park generation for the current fiber and records what it waits
// on. Must be called on a fiber. Publish the result, then call park().
// Every park is a cancellation point (weft/cancel.hpp) except a Mutex's or
// an RWMutex's and those made inside a CancelShield (or while unwinding at shutdown): a
// cancellation reaching the fiber while it is parked at a cancellation
// point wakes it with WakeReason::Cancel. The caller then withdraws what it
// published (or, if a waker completed its operation first, keeps the
// result: the operation happened and the next cancellation point throws)
// and calls throw_unwind().
Parker prepare_park(WaitKind kind, const void* object) noexcept;

// Switches the current fiber out until some unpark(p) wins the claim, and
// returns the winner's reason. Returns at once if a waker already won.
WakeReason park(const Parker& p) noexcept;

// As park(), but also wakes with WakeReason::Timeout once `deadline` has
// passed (a runtime timer on fibers, a futex timeout on plain threads).
WakeReason park_until(const Parker& p, Clock::time_point deadline) noexcept;

// Wakes the fiber of p if p is still its current park and nobody else won it.
// Callable from any thread, including plain threads outside the runtime.
// Returns true when this call won the claim.
// p is read before the claim only, so it may be the Parker inside the
// woken fiber's own waiter record (by reference: no copy on the hot path).
bool unpark(const Parker& p, WakeReason reason = WakeReason::Event) noexcept;

// True when a fiber waiting for a lock may spin briefly instead of parking:
// on a fiber of a runtime with more than one worker and nothing else queued
// locally (Go's canSpin, simplified). False on plain threads.
bool can_spin() noexcept;

// A wake decided under the waker's lock and carried out after the unlock
// (channels move the value under the lock and unpark after it). The fiber
// woken may belong to a runtime the waker is not a worker of (the waker is
// a plain thread, a blocking-pool thread, another runtime's fiber). Then,
// between the unlock and the unpark, that fiber could be cancelled at
// shutdown, unwind, and let its runtime free the sync table the unpark is
// about to read. set() is called with the lock still held, while the lock
// keeps the fiber from finishing: it pins the fiber's runtime (counts the
// wake in the runtime's in-flight count, which run() waits out before it
// frees anything) when the waker is outside it. fire() unparks and unpins.
// A wake between fibers of one runtime's own workers pins nothing (the
// runtime outlives its running workers): two loads on the hot path.
class DeferredWake {
 public:
  DeferredWake() = default;
  DeferredWake(const DeferredWake&) = delete;
  DeferredWake& operator=(const DeferredWake&) = delete;
  ~DeferredWake() { fire(); }
  inline void set(Parker p) noexcept;  // with the waker's lock held
  bool pending() const noexcept { return p_.sync != nullptr; }
  void fire() noexcept {
    if (!p_.sync) return;
    WEFT_CHAOS_POINT();  // the window between the waker's unlock and its unpark
    unpark(p_);
    p_.sync = nullptr;
    if (pin_) unpin();
  }

 private:
  void pin(const void* runtime) noexcept;  // counts the wake in that runtime's in-flight wakes
  void unpin() noexcept;
  Parker p_;
  const void* pin_ = nullptr;  // the pinned runtime
};

// The current fiber, or nullptr on a plain thread.
Fiber* current_fiber() noexcept;

// Writes a short description of what `object` is for a parked fiber's dump
// entry (e.g. "fd 7"); registered by the part that parks with that kind.
// Marks the calling thread as weft's own (a blocking-pool thread, say) until
// it exits: the deadlock check counts any other thread that appeared after
// run() began as a possible waker and then never reports a deadlock.
void mark_internal_thread() noexcept;
// Marks every thread named `comm` (its Linux name, at most 15 characters,
// as prctl(PR_SET_NAME) sets it) as weft's own too, now and later: for a
// library's helper thread weft cannot run code on and that never wakes a
// fiber (libkqueue's "libkqueue_mon"). Names are kept for the process's life.
void mark_internal_thread_name(const char* comm) noexcept;

using WaitDescriber = void (*)(WaitKind kind, const void* object, char* buf, std::size_t size) noexcept;
void set_wait_describer(WaitKind kind, WaitDescriber fn) noexcept;

// ---- the cooperative budget --------------------------------------------------
// A fiber whose operations keep completing without parking (a channel that
// always has room, an uncontended mutex, a socket that always has data)
// would otherwise never let the other fibers of its worker run. Each such
// completion spends one unit of a per-run budget (reset whenever a fiber is
// switched in); when it runs out the fiber yields to what is queued
// locally, as Tokio's coop budget does. Call spend_budget() after the
// operation, with no lock held. Never throws.
struct WorkerBase {
  std::int32_t budget = 0;
  const void* runtime = nullptr;  // the worker's runtime (set once)
  // The fiber running on this worker. Written by the owner (relaxed: a plain
  // store); read by the owner, and by dump/stats as a hint.
  std::atomic<Fiber*> current{nullptr};
};
inline constexpr std::int32_t kBudget = 128;
void budget_exhausted() noexcept;

}  // namespace rt
}  // namespace weft

// The running worker (internal.hpp explains the asm: no TLS address may be
// cached across a switch, and a fiber may migrate at any park).
extern "C" [[gnu::tls_model("initial-exec")]] thread_local weft::rt::WorkerBase* weft_rt_tl_worker;

namespace weft {
namespace rt {

inline WorkerBase* current_worker_base() noexcept {
#if defined(__x86_64__) && defined(__linux__)
  WorkerBase* w;
  asm volatile(
      "movq weft_rt_tl_worker@gottpoff(%%rip), %0\n\t"
      "movq %%fs:(%0), %0"
      : "=r"(w));
  return w;
#else
  WorkerBase* w = weft_rt_tl_worker;
  asm volatile("" : "+r"(w));  // not cached across a switch
  return w;
#endif
}

// A plain thread's block (runtime == nullptr) is immortal; a fiber's runtime
// needs a pin unless we run on one of its workers. The parker's fields were
// published under the waker's lock, and the fiber cannot finish under it.
inline void DeferredWake::set(Parker p) noexcept {
  p_ = p;
  const void* r = runtime_of(p.fiber);
  if (!r) return;
  WorkerBase* w = current_worker_base();
  if (!w || w->runtime != r) pin(r);
}

inline void spend_budget() noexcept {
  WorkerBase* w = current_worker_base();
  if (w && --w->budget <= 0) [[unlikely]]
    budget_exhausted();
}

// ---- cancellation (weft/cancel.hpp is the user's side) -------------------------
// A fiber's cancellation state.
//   The cancel word, beside the fiber's sync word in its slot's SyncCell
//   (so that it is never reconstructed while a late reader looks at it):
//   bit 0: cancelled from outside (JoinHandle::cancel, a Scope), sticky;
//   bits 1-31: the depth of the outermost with_timeout/with_deadline frame
//   whose deadline passed (0: none), cleared when that frame ends. Set by
//   cancel_fiber() (any thread, seq_cst RMW), reset when a fiber is created
//   in the slot, cleared by the fiber. Nonzero: the fiber is cancelled.
//   The shield: CancelShield depth, in the control block; the fiber's own.
struct SyncCell {
  std::atomic<std::uint64_t> sync{0};    // the park protocol (fiber.hpp)
  std::atomic<std::uint32_t> cancel{0};  // the cancel word
  std::uint32_t unused = 0;
};
// The first members of a fiber's control block (fiber.hpp asserts them).
struct FiberHead {
  const void* runtime;
  std::atomic<std::uint64_t>* sync;  // &SyncCell::sync of the fiber's cell
  std::uint32_t shield;
};
inline std::atomic<std::uint32_t>& cancel_word(Fiber* f) noexcept {
  return reinterpret_cast<SyncCell*>(reinterpret_cast<FiberHead*>(f)->sync)->cancel;
}
inline std::uint32_t& cancel_shield(Fiber* f) noexcept { return reinterpret_cast<FiberHead*>(f)->shield; }

// Throws weft::Cancelled.
[[noreturn]] void throw_cancelled();

// Set (for good) by the first cancel_fiber() of the process. Until then no
// fiber can be cancelled and cancellation points skip their check: a
// program that never cancels pays one load per operation. If a cancel
// happens-before a fiber's check (say, the canceller then sent it a
// message), the check's relaxed load sees the flag by coherence, since
// cancel_fiber sets it before the fiber's word; a cancel concurrent with
// the check is caught by the park, whose path does not depend on it.
// Library-internal (hidden: one RIP-relative compare, no GOT load).
extern __attribute__((visibility("hidden"))) std::atomic<bool> g_cancel_seen;

void cancellation_point_slow();

// The check at the entry of every cancellation point (API.md: it throws even
// when the operation could proceed).
inline void cancellation_point() {
  if (g_cancel_seen.load(std::memory_order_relaxed)) [[unlikely]]
    cancellation_point_slow();
}

// Cancels fiber f: from outside (deadline_depth 0) or by the deadline of its
// with_timeout frame at that depth. Requests stop on the fiber's stop
// tokens and wakes it if it is parked at a cancellation point. The caller
// guarantees that f does not end meanwhile (JoinStateBase's in-flight
// count, or f waiting for this very call). Any thread.
void cancel_fiber(Fiber* f, std::uint32_t deadline_depth) noexcept;

// Called by primitives after they cleaned up from a WakeReason::Cancel wake:
// throws weft::Cancelled, or at shutdown the runtime's (non-std::exception)
// unwind marker. Do not swallow the latter.
[[noreturn]] void throw_unwind();

// True when a Cancel wake of the current fiber means shutdown (unwinding),
// not a cancellation: cleanup that would park for long (CondVar re-locking
// its mutex) is skipped then.
bool shutting_down() noexcept;

// Marks the current fiber as unwinding without throwing: later parks are not
// cancelled (used by a fiber that must first wait for something that still
// references its stack, then call throw_unwind()).
void begin_unwinding() noexcept;

// True while the runtime shuts down and this fiber should unwind.
bool should_unwind() noexcept;

// A one-shot timer owned by the caller. fn(a, b, seq) runs on some worker
// thread, with no lock held, once `when` has passed, unless timer_cancel()
// removed it first. The callback may still be running when timer_cancel()
// returns false, so it must touch only memory that outlives the timer (for
// example: unpark() a Parker by value, which is safe even when stale). The
// Timer object itself is never touched once its callback has been taken.
// A timer still armed when its runtime is torn down (its owner outlived
// run()) is dropped without running: the teardown sets its fn to nullptr
// and removes it, so a later timer_cancel() returns false and the owner can
// tell from fn == nullptr that the callback will never run.
struct Timer {
  Clock::time_point when{};
  void (*fn)(void* a, void* b, std::uint64_t seq) = nullptr;
  void* a = nullptr;
  void* b = nullptr;
  std::uint64_t seq = 0;
  // Internal: the heap holding the timer (nullptr when not armed) and its slot.
  std::atomic<void*> heap{nullptr};
  std::uint32_t index = 0;
};

// Arms t (fields when/fn/a/b/seq set by the caller) on the current worker's
// timer heap. Must be called on a fiber or a worker.
void timer_start(Timer& t) noexcept;
// Disarms t. True if it was armed and is now removed before firing.
bool timer_cancel(Timer& t) noexcept;
// Arms t to unpark p with WakeReason::Timeout at `when`.
void timer_start_unpark(Timer& t, Clock::time_point when, Parker p) noexcept;

// The idle poller (the netpoller) that idle workers block in instead of a
// futex, as Go's findrunnable blocks in netpoll. At most one worker blocks
// in poll() at a time, with the next timer deadline as its timeout.
class IdlePoller {
 public:
  virtual ~IdlePoller() = default;
  // Waits for I/O readiness until `deadline` (Clock::time_point::min():
  // do not block) and unparks the fibers whose I/O is ready.
  virtual void poll(Clock::time_point deadline) = 0;
  // Makes a concurrent or next poll() return promptly. Any thread.
  virtual void wake() noexcept = 0;
  // True when the poller holds work only a poll() hands to the kernel (a
  // completion-based poller's queued submissions): busy workers then poll
  // at their next periodic check rather than after the busy-poll interval.
  virtual bool has_pending() const noexcept { return false; }
};

// Returns the current runtime's idle poller, creating it with make() the
// first time (at most once per runtime, under a lock). The runtime owns it
// and deletes it after its workers have stopped. Call on a fiber.
IdlePoller* install_idle_poller(IdlePoller* (*make)());
// The current runtime's idle poller, or nullptr (none yet, or off-runtime).
IdlePoller* current_idle_poller() noexcept;
// The poller the current runtime was asked for (Options::poller, resolved
// with $WEFT_POLLER when Default): true for io_uring. Call on a fiber.
bool io_uring_requested() noexcept;

}  // namespace rt
}  // namespace weft
