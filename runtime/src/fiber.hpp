// fiber.hpp: the fiber control block and its sync word.
//
// A Fiber lives in the top bytes of its stack slot (fiber_of_slot), so a
// parked fiber that used little stack costs one page. Plain threads that
// park (a std::thread using a weft Mutex or channel) get a thread-local
// Fiber with is_thread set, parked on a futex instead of switched out.
//
// Ownership: all fields but `sync` are touched only by the thread currently
// running the fiber, or by the scheduler that holds it (switched out, in a
// queue). Handing a fiber between threads goes through a run queue or the
// sync word, whose release/acquire pairs publish the fields.
//
// The sync word (an atomic<uint64_t> in the arena's side table, outliving
// the fiber) = generation << 8 | flags:
//   kSwitched  set by the scheduler (fetch_or, acq_rel) once a parking fiber's
//              context is saved: from then on a waker may queue it.
//   kWoken     set by the winning unpark (CAS, acq_rel) with the reason in
//              bits 2-3. Exactly one waker per generation wins.
//   kUnwinding set while the fiber unwinds at shutdown: the shutdown sweep
//              leaves it alone (its destructors may park normally).
//   kThread    the parker is a plain thread (immortal block, futex wake).
//   kLive      the slot holds a fiber (set at creation, cleared with the
//              generation bump at exit): dumps and the deadlock check find
//              live fibers by sweeping the side table.
//   kCancellable  this park is a cancellation point (prepare_park): a
//              cancellation wakes it (see "Cancellation" below).
// A parked fiber is: kLive and kSwitched set, kWoken clear. A free slot: no
// flag set.
//
// Diagnostics (dump, monitor reports) read other fibers' name, site,
// wait_kind, wait_obj and park_ms without synchronisation while those fibers
// may run; they re-read the sync word afterwards and discard the entry if
// its generation moved. Such reads are best effort by design (as Go's
// goroutine dump of a running program) and are marked no_sanitize("thread").
// Whoever of {unparker, switch-out} comes second makes the fiber runnable.
//
// Cancellation (park.hpp: CancelState). A canceller sets the fiber's cancel
// word (seq_cst RMW) and then loads its sync word (seq_cst); if that shows
// a cancellable park switched out and not woken, it unparks that token
// with Cancel. The scheduler, after its kSwitched fetch_or (seq_cst RMW) on
// a parking fiber whose park is cancellable, loads the cancel word
// (seq_cst) and, if set, claims the park with Cancel itself. This is Dekker's
// pattern on two locations with sequentially consistent operations: the
// two RMWs are ordered in the single total order, so at least one side
// sees the other's write, and a cancellation can never slip between a
// fiber's last look at its word and its switch-out. (Both may act: the
// claim CAS lets one win.) A fiber not yet parking sees the word at its
// next cancellation point (cancellation_point() or this check).
// The canceller touches the control block only while the fiber cannot end
// (JoinStateBase's in-flight cancellers, or the fiber itself waiting for
// the canceller, as a with_timeout frame waits for its timer); stop sources
// and deadline frames are listed under cancel_lock (a spin lock held for a
// few instructions, never across a callback: sources are copied out and
// their stop is requested after the unlock).
#pragma once

#include <boost/context/detail/fcontext.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stop_token>

#include <weft/park.hpp>

namespace weft::rt {

namespace bctx = boost::context::detail;

class Runtime;
struct Worker;

inline constexpr std::uint64_t kSwitched = 1;
inline constexpr std::uint64_t kWoken = 2;
inline constexpr std::uint64_t kReasonShift = 2;  // 2 bits
inline constexpr std::uint64_t kUnwinding = 16;
inline constexpr std::uint64_t kThread = 32;  // the parker is a plain thread
inline constexpr std::uint64_t kLive = 64;    // the slot holds a fiber
inline constexpr std::uint64_t kCancellable = 128;  // this park is a cancellation point
inline constexpr int kGenShift = 8;

struct DeadlineFrame;

struct Fiber {
  // The head (park.hpp: FiberHead, runtime_of, cancel_word, cancel_shield).
  Runtime* rt = nullptr;
  std::atomic<std::uint64_t>* sync = nullptr;  // &SyncCell::sync of this slot
  std::uint32_t shield = 0;         // CancelShield depth (owner only)
  bctx::fcontext_t ctx = nullptr;   // saved context while switched out
  Fiber* next = nullptr;            // intrusive link for the global queue
  std::uint64_t gen = 0;            // current park generation (owner only)
  std::uint64_t id = 0;
  std::uint32_t slot = 0;
  bool is_thread = false;           // a plain thread's parking block
  bool unwinding = false;           // set for good (park.cpp: mark_unwinding); shields it
  // The flags every park of this fiber publishes in its sync word (kLive,
  // kUnwinding, kThread, kCancellable when not shielded): kept in step with
  // unwinding, is_thread and shield by refresh_park_flags, so prepare_park
  // only ORs them in.
  std::uint64_t park_flags = kLive | kCancellable;
  bool is_main = false;
  WaitKind wait_kind = WaitKind::None;
  const void* wait_obj = nullptr;
  void (*entry)(void*) = nullptr;
  void* closure = nullptr;
  bool closure_on_heap = false;
  int saved_errno = 0;
  void* eh_state[2] = {nullptr, nullptr};  // __cxa_eh_globals of this fiber
  std::atomic<std::uint32_t> thread_wake{0};  // is_thread only: futex word
  void* asan_fake_stack = nullptr;
  void* tsan_fiber = nullptr;
  std::uint64_t* canary = nullptr;  // Canary guard regime only
  // Diagnostics: set at spawn (name, site) or at each park (park_ms, from the
  // runtime's coarse clock: no clock read on the park path).
  std::int64_t park_ms = 0;
  const void* spawn_pc = nullptr;  // a return address in the spawning call (introspect.cpp symbolizes it)
  char name[32] = {};
  // Cancellation (see above): guarded by cancel_lock. The fiber's own stop
  // source (made on the first this_fiber::stop_token()) and its live
  // with_timeout frames, innermost first.
  std::atomic<bool> cancel_lock{false};
  DeadlineFrame* frames = nullptr;
  std::stop_source stop_src{std::nostopstate};
};

inline void refresh_park_flags(Fiber* f) noexcept {
  f->park_flags = kLive | (f->unwinding ? kUnwinding : 0) | (f->is_thread ? kThread : 0) |
                  (f->shield == 0 ? kCancellable : 0);
}

static_assert(offsetof(Fiber, rt) == offsetof(FiberHead, runtime) && offsetof(Fiber, sync) == offsetof(FiberHead, sync) &&
                  offsetof(Fiber, shield) == offsetof(FiberHead, shield),
              "park.hpp reads the control block's head as a FiberHead");

// The control block sits at the top of the slot, 64-byte aligned.
inline constexpr std::size_t kFiberBlock = (sizeof(Fiber) + 63) / 64 * 64;
inline Fiber* fiber_of_slot(char* slot_top) noexcept {
  return reinterpret_cast<Fiber*>(slot_top - kFiberBlock);
}

inline WakeReason reason_of(std::uint64_t v) noexcept {
  return static_cast<WakeReason>((v >> kReasonShift) & 3);
}

}  // namespace weft::rt
