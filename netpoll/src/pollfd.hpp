// pollfd.hpp: poll descriptors, the per-socket state the netpoller and the
// socket's fibers share (Go's pollDesc).
//
// One PollDesc per open socket, from a process-wide pool whose memory is
// never freed (type-stable): the poller, deadline timers, late wakers and
// Socket objects used after close() may touch a descriptor after its socket
// closed, and must then find that it is no longer theirs. An *incarnation*
// is one use of a descriptor by one socket, named by (index, seq). Every
// field that outlives an incarnation is checked against seq: poller events
// carry it in their key, deadline timers in their seq, waiters and system
// call brackets compare it with the seq their Socket recorded at open.
//
// The state word (atomic, 64 bits) holds everything an operation must check
// without the lock, so that one atomic read decides it:
//   bits 63..32  seq: bumped (with closing set) when the incarnation starts
//                closing, so it never returns for that incarnation (modulo
//                2^32 reuses of one descriptor, as Go's fdseq).
//   bit  31      closing
//   bit  30/29   read / write deadline expired
//   bits 28..0   system calls in flight on fd (Op brackets)
// Writers: seq, closing and the expired bits change only under `lock` (by
// atomic RMW, since the count changes concurrently); the count changes
// lock-free in op_begin/op_end.
//
// Invariants:
// - op_begin(seq) increments the count only by a CAS that saw this seq with
//   closing and (for a direction) expired clear: a stale incarnation's call
//   can never touch the count of a later one, so the fd is closed (and the
//   descriptor pooled) exactly once per incarnation, by whoever makes the
//   word "closing, count 0": close_desc if nothing was in flight, else the
//   last op_end. An fd number is thus never reused under a running call.
// - While the count is non-zero or closing is clear the descriptor is not
//   in the pool, so an op_end always decrements its own incarnation's count.
// - Waiter records live on the waiting fibers' stacks and sit in a Slot's
//   list only under `lock`; whoever dequeues a record does so under `lock`,
//   and the waiter itself takes `lock` before it leaves wait(), so no record
//   is touched after its fiber returned. close and deadline expiry dequeue
//   all of a direction; an edge dequeues one (see wait() in pollfd.cpp).
//
// Memory ordering:
// - op_begin's successful CAS is acquire, op_end's decrement and
//   close_desc's fetch_add are acq_rel: every system call of an incarnation
//   happens-before the ::close in final_close, whichever thread runs it.
// - The expired bits are set/cleared under lock; op_begin reads them in its
//   CAS. A set_deadline(past) that happens-before a call is seen by it
//   (coherence); one racing with it may or may not be (either is a valid
//   order).
// - Socket::fd() and seq() read the seq lock-free (acquire): a hint for the
//   owner, whose own close() happens-before its later reads.
// - Slot::edges, below; `error`, below. Nothing else is read lock-free.
//
// Fields and guards:
//   lock     guards rd, wr (all their fields) and the writes to state's seq,
//            closing and expired bits.
//   error    a socket error the poller's backend consumed to report an
//            event (libkqueue, poller.hpp): written under lock by the
//            dispatch of an event of this incarnation, taken (exchanged to
//            0) under lock by take_error. A caller reads it relaxed first,
//            as a hint: 0 (always, on epoll) costs no lock. Whoever was
//            woken by that event's edge took the lock after the write, so
//            sees it; a caller not woken by it may call between the
//            backend's read of SO_ERROR and the dispatch, and then sees a
//            plain EOF (libkqueue only: the kernel's error is gone by then).
//   fd, foreign, index   written under lock before the descriptor is shared
//            (open_desc), read by final_close (which then owns it) and by
//            the dump's describer (racy, informational).
// Per direction (Slot): `ready` records an edge no waiter took (consumed by
// the next wait); `head`/`tail` is the FIFO of parked fibers; `edges` counts
// the edges given (poller edges and passes), written under lock and read
// lock-free by a caller before its system call: wait() returns at once if it
// moved since (an edge came between that call's EAGAIN and the queueing, and
// may have gone to a waiter that has already passed it on to an empty
// queue). The load is ordered before the system call (acquire, and a system
// call is a full barrier), so it cannot see an edge the call did not;
// seeing an older value only costs one more call. `timer_gen` is
// bumped whenever the deadline changes, so a stale deadline timer is ignored.
// An edge is owned by one waiter at a time; after its system call it passes
// the edge to the next waiter (pass_edge), so queued waiters drain what
// one edge announced one after the other.
// io_uring runtimes (uring.hpp) park differently: a fiber's operation is
// in flight in the kernel, so its record (IoWaiter, on its stack, in the
// direction's `ops` list under lock) must outlive the completion:
// - uring_wait queues the SQE with pd->lock held (so a cancel queued by
//   close or a deadline, also under the lock, follows it in the SQ) and
//   holds its op bracket until the completion: the fd is not closed, nor
//   its number reused, while the kernel may still use it.
// - Only the completion (Netpoller::complete, under lock) sets `done`;
//   close, deadline expiry and the fiber's own cancellation only queue a
//   cancel (once: `cancelling`) and the fiber waits on, uncancellable.
//   So no kernel write lands in a buffer after the call returned.
// - wait_readable's receive fills the stash (PollDesc, above) with a
//   provided buffer, one receive at a time per descriptor (`receiving`);
//   other waiters queue on rd.q and are woken when it completes.
// - A listener's multishot accept (uring_accept, AcceptQueue) outlives the
//   accept calls: armed under lock by the call that found its queue empty,
//   it holds one op bracket (the count) until its last completion
//   (complete_accept, no IORING_CQE_F_MORE), which ends it with op_end.
//   Its completions push fds to the queue under lock, or close them when
//   the incarnation has closed (the seq in their user_data is not the
//   descriptor's). close_desc detaches the queue under lock (closing its
//   fds after unlocking), shuts the socket down and queues a cancel; the
//   fd closes at that last completion. Accept callers park on rd.q.
// Lock order: PollDesc::lock -> Ring::sq_lock_ (queueing an SQE or a
// cancel) -> nothing; the ring's kick (a system call when a worker is
// blocked in the ring's wait) comes after PollDesc::lock is released
// (AfterUnlock); PollDesc::lock -> (runtime) idle lock via unpark; the
// timer heap lock is never held while taking PollDesc::lock (callbacks
// run unlocked).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>

#include <weft/park.hpp>
#include <weft/sync.hpp>

struct io_uring_sqe;

// Chaos builds (runtime's WEFT_CHAOS_POINT, meson -Dchaos=true) widen the
// netpoller's race windows too; elsewhere, or with a runtime without it,
// nothing.
#ifndef WEFT_CHAOS_POINT
#define WEFT_CHAOS_POINT() ((void)0)
#endif

namespace weft::net::detail {

class Ring;
struct PollDesc;
struct Slot;
struct WaitList;

// A fiber parked on one direction of a descriptor; on its stack.
struct IoWaiter {
  rt::Parker parker;
  IoWaiter* next = nullptr;
  IoWaiter* prev = nullptr;
  bool queued = false;
  bool edge = false;  // woken by an edge it now owns: use it or pass it on
};

// io_uring (uring_wait): a fiber whose operation is in flight; the
// operation's user_data. Its completion sets res and done (under the
// descriptor's lock). Kept apart from IoWaiter: a fiber parked for an edge
// keeps its frame small (an idle connection's stack fits one page).
struct UringOp : IoWaiter {
  bool done = false;
  bool cancelling = false;  // a cancel for it is queued (close, deadline, the fiber's cancellation)
  int res = 0;
  char* data = nullptr;  // a provided buffer's bytes, copied out by the completion (malloc'd)
  Ring* ring = nullptr;
  WaitList* list = nullptr;  // where it is queued (UringSide::ops)
  // Read by the completion before it takes pd's lock: published with
  // release before the SQE is queued, read with acquire. The kernel orders
  // the two already (the submitter's io_uring_enter, the CQ tail's
  // release, the reaper's acquire), but a sanitizer cannot see through
  // the kernel: this edge is the one TSan sees.
  std::atomic<PollDesc*> pd{nullptr};
};

struct WaitList {
  IoWaiter* head = nullptr;
  IoWaiter* tail = nullptr;
};

struct Slot {
  WaitList q;  // fibers parked for an edge (FIFO); io_uring: for another's receive
  bool ready = false;
  std::atomic<std::uint32_t> edges{0};
  std::uint32_t timer_gen = 0;
  Clock::time_point deadline = Clock::time_point::max();
  rt::Timer timer;
};

struct PollDesc {
  static constexpr std::uint64_t kSeqOne = std::uint64_t{1} << 32;
  static constexpr std::uint64_t kClosing = std::uint64_t{1} << 31;
  static constexpr std::uint64_t kRdExpired = std::uint64_t{1} << 30;
  static constexpr std::uint64_t kWrExpired = std::uint64_t{1} << 29;
  static constexpr std::uint64_t kCount = (std::uint64_t{1} << 29) - 1;

  weft::detail::SpinLock lock;
  std::atomic<std::uint64_t> state{0};
  std::uint32_t index = 0;
  int fd = -1;
  bool foreign = false;  // a dup of a caller's fd: unregister explicitly on close
  bool armed = false;  // registered with an epoll/kqueue backend (io_uring runtimes register nothing)
  // io_uring: the stash (UringSide) holds something; a hint read lock-free
  // by the read paths first (relaxed: a read ordered after the
  // wait_readable that stashed sees it by happens-before; a concurrent one
  // races anyway). Written under lock.
  std::atomic<bool> stashed{false};
  std::atomic<int> error{0};
  Slot rd, wr;

  std::uint32_t seq() const noexcept { return static_cast<std::uint32_t>(state.load(std::memory_order_acquire) >> 32); }
  std::uint64_t key(std::uint32_t s) const noexcept { return (std::uint64_t{s} << 32) | index; }
};

enum class Dir : std::uint8_t { Read, Write };

// A listener's multishot accept (uring_accept), under its descriptor's
// lock: the connections the kernel accepted that no fiber has taken yet
// (closed with the queue), the error that ended the request, whether it is
// armed (it holds the descriptor's op bracket until its last completion)
// and whether a cancel is queued for it (the queue is full: the kernel's
// backlog holds the rest until fibers catch up).
struct AcceptQueue {
  static constexpr std::size_t kMax = 64;  // stop accepting ahead beyond this
  Ring* ring = nullptr;
  std::deque<int> fds;
  int err = 0;
  bool armed = false;
  bool stopping = false;
  AcceptQueue() = default;
  AcceptQueue(const AcceptQueue&) = delete;
  AcceptQueue& operator=(const AcceptQueue&) = delete;
  ~AcceptQueue();
};

// What only io_uring runtimes use of a descriptor, beside it rather than
// in it (a descriptor of an epoll runtime stays as small as it was: its
// size is part of every idle connection's cost). Allocated per chunk of
// descriptors on first use, immortal as the descriptors. Under the
// descriptor's lock, except `more`.
struct UringSide {
  WaitList ops[2];  // per Dir: fibers whose operation is in flight (UringOp)
  // What a wait_readable's receive took from the kernel and no read has
  // consumed yet (`stash`, malloc'd, from stash_off to stash_len), or the
  // end of stream / error it found; `receiving` while that receive is in
  // flight (one at a time); `drained` when it took all there was (a short
  // receive), so the next try_read says "would block" without asking.
  char* stash = nullptr;
  std::uint32_t stash_off = 0, stash_len = 0;
  int stash_end = 0;  // 1: end of stream; < 0: -errno
  bool receiving = false;
  bool drained = false;
  // Per Dir: try the system call before submitting (the last call found
  // more than it took); a hint, relaxed, any incarnation.
  std::atomic<bool> more[2] = {false, false};
  AcceptQueue* accq = nullptr;  // a listener's (uring_accept), made by its first accept, freed by close
};
UringSide& uring_side(PollDesc* pd);  // allocates its chunk's on first use (throws bad_alloc)

// Registers a non-blocking fd with the current runtime's poller and returns
// its descriptor and the incarnation's seq. Throws std::system_error (and
// closes nothing) on failure.
PollDesc* open_desc(int fd, std::uint32_t* seq, bool foreign = false);
// Starts closing: wakes the waiters with an error, cancels the timers, and
// closes the fd now or when the last in-flight call ends. Idempotent; does
// nothing for a stale seq.
void close_desc(PollDesc* pd, std::uint32_t seq) noexcept;

// Brackets a system call on the incarnation's fd. begin() throws
// SocketClosed if the incarnation is closed or closing, and, with a
// direction, weft::Timeout if that direction's deadline has expired.
enum class Check : std::uint8_t { None, Read, Write };
void op_begin(PollDesc* pd, std::uint32_t seq, Check check, const char* op);
void op_end(PollDesc* pd) noexcept;

// Parks until the direction is ready (after an EAGAIN). Several fibers may
// wait on one direction (FIFO). Throws weft::Timeout once the deadline has
// passed, SocketClosed if the socket closes. Returns with an edge the
// caller owns: once its system call is done (whatever its result, except
// EAGAIN) it must call pass_edge, since one edge may stand for more than
// its call consumed (two connections, more bytes) and the next waiter
// would otherwise sleep through it (Go's fdMutex lets the next reader try
// the call; here the edge is passed on and the next waiter tries).
// `edges_seen`: edges_of() read before the caller's system call. `again`:
// the caller waited before and its call after that edge found nothing
// (EAGAIN): it goes back to the front of the queue, so a passed edge does
// not reorder the waiters.
void wait(PollDesc* pd, std::uint32_t seq, Dir d, const char* op, std::uint32_t edges_seen, bool again = false);
std::uint32_t edges_of(PollDesc* pd, Dir d) noexcept;
// Wakes the next waiter of the direction, if any, with the edge.
void pass_edge(PollDesc* pd, std::uint32_t seq, Dir d) noexcept;
void set_deadline(PollDesc* pd, std::uint32_t seq, Dir d, Clock::time_point t);
// The direction's deadline (min() once expired). Throws SocketClosed.
Clock::time_point deadline_of(PollDesc* pd, std::uint32_t seq, Dir d, const char* op);

// The socket error the poller consumed for this incarnation (see `error`),
// else 0; a second call returns 0 (the kernel reports an error once too).
// For calls whose result says nothing happened where the kernel would have
// reported the error: a read's EOF, an EAGAIN, a write's EPIPE, a connect
// still not connected.
int take_error(PollDesc* pd, std::uint32_t seq) noexcept;

// As take_error, for a read's EOF: on a backend that consumes errors
// (libkqueue) and with none recorded, first waits for the poll that may be
// copying it out (yields, at most ~10 ms); elsewhere exactly take_error.
int settle_error(PollDesc* pd, std::uint32_t seq) noexcept;

// io_uring (uring.hpp): the current runtime's ring, or nullptr when it
// polls with epoll/kqueue (or io_uring is not built).
Ring* current_ring() noexcept;

// Fills one SQE for the operation (its fd, buffer, flags).
using UringPrep = void (*)(io_uring_sqe* sqe, void* ctx);

// Puts one operation on the ring and parks until its completion, inside
// the op bracket (the fd stays open while the kernel may use it). Returns
// the completion's result (>= 0, or -errno; -ECANCELED when a close, a
// deadline or the fiber's cancellation withdrew it: the caller's next
// op_begin throws for the first two). Throws SocketClosed or Timeout
// before submitting, and weft::Cancelled (throw_unwind) when the fiber was
// cancelled and the operation did not complete. Never returns before the
// completion arrived, so the kernel is done with the caller's buffer.
// data: where to store what a receive into a provided buffer brought (the
// completion copies it out, malloc'd, and hands the buffer back at once;
// the caller frees it; a call that throws frees it).
long uring_wait(PollDesc* pd, std::uint32_t seq, Dir d, const char* op, Check check, UringPrep prep, void* ctx,
                char** data = nullptr);

// io_uring: TcpStream::wait_readable. Parks until data arrived, taking it
// from the kernel into the descriptor's stash with a provided buffer (no
// buffer is held while waiting); with no pool, a poll. Throws as wait().
void uring_wait_readable(PollDesc* pd, std::uint32_t seq, const char* op);
// The stashed bytes for a read of up to len: their count (0: end of
// stream; -errno: the error the receive found), or -EAGAIN when the last
// receive drained the socket and try_read may say so without asking
// (`may_skip`), else nothing stashed: ~0L.
constexpr long kNoStash = ~0L;
long take_stash(PollDesc* pd, std::uint32_t seq, char* buf, std::size_t len, bool may_skip) noexcept;

// io_uring: TcpListener::accept with the listener's multishot accept: the
// next connection's fd, or -errno (the error that ended the request: the
// caller decides, and the next call arms it again); kSingleShot when the
// kernel has no multishot accept (the caller submits one accept). Parks
// until a connection comes; throws as wait().
constexpr long kSingleShot = ~0L;
long uring_accept(PollDesc* pd, std::uint32_t seq, const char* op);

[[noreturn]] void throw_closed(const char* op);
[[noreturn]] void throw_timeout(const char* op);

}  // namespace weft::net::detail
