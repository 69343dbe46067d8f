// uring.hpp: the io_uring ring of one runtime (Linux, built with liburing:
// meson -Dio_uring; chosen per runtime by Options::poller / $WEFT_POLLER).
//
// Completion-based I/O: a fiber that would block puts one submission (SQE)
// on the ring carrying its waiter record (pollfd.hpp, IoWaiter, on its own
// stack) and parks; the completion (CQE) carries the system call's result
// back and wakes it. The fiber's stack does not move while it is parked, so
// the buffer it passed stays valid until the kernel is done with it, and the
// fiber never leaves before its completion arrived (pollfd.cpp, uring_wait).
//
// One ring per runtime, as the runtime has one poller: any worker's fiber
// queues submissions (under sq_lock_); the worker that polls (one at a
// time, the runtime serialises polls) hands everything queued since the
// last poll to the kernel and collects completions in one io_uring_enter.
// A defended alternative to one ring per worker: the runtime already
// elects one poller at a time, a fiber resumes on any worker anyway, and a
// per-worker ring would need its idle owner's wait to be interruptible by
// every other worker's submissions.
//
// Invariants and ordering:
// - The SQ (liburing's sqe_tail/sqe_head and the kernel's tail) is touched
//   only under sq_lock_: get_sqe + prep in queue(), the tail's publication
//   in flush(). io_uring_enter runs outside the lock; concurrent enters are
//   serialised by the kernel, which consumes what was published, whatever
//   to_submit says (an upper bound).
// - The CQ is read only by the one polling thread (poller_busy in the
//   runtime), so head/tail need liburing's acquire/release only.
// - A submission must not wait for a poll that will not come: a worker
//   blocked in the ring's wait (waiting_) would sleep through it. The
//   queuer stores its SQE (under the lock), then loads waiting_ (seq_cst);
//   the poller stores waiting_ (seq_cst), then flushes under the lock. In
//   either order one side sees the other: the queuer submits itself (kick)
//   or the poller's flush carries the SQE into its wait.
// - Cooperative task work (IORING_SETUP_COOP_TASKRUN, 5.19+): the kernel
//   finishes a request (a receive whose data arrived) in task work of the
//   thread that submitted it, and no longer interrupts that thread to run
//   it: it runs on the thread's next return from the kernel (any system
//   call, or the return to user mode after the timer tick, so a submitter
//   busy in user code delays its completions by at most a tick; a sleeping
//   one, in a futex or the ring's wait, is woken for it, as before). The
//   kernel flags pending task work in the SQ ring (IORING_SQ_TASKRUN,
//   TASKRUN_FLAG); a non-blocking poll that finds no completion but the
//   flag enters the kernel to run it. The flag is read relaxed, a hint: a
//   stale read only leaves the work to the thread's next system call.
// - wake(): an eventfd the ring always has a read queued on; wakes coalesce
//   through wake_pending_ as in epoll.cpp.
// - Provided buffers (kernel 5.19+): a pool of kPoolBufs buffers the kernel
//   picks from when a receive that names none completes (TcpStream's
//   wait_readable, pollfd.cpp): a connection waiting for data holds no
//   buffer. The application side of the buffer ring (returning buffers) is
//   touched only under pool_lock_; the kernel consumes from it on its own,
//   and io_uring_buf_ring_advance publishes returned entries with release.
// - Multishot accept (5.19): a listener's one accept request stays armed
//   and posts a completion (IORING_CQE_F_MORE) per connection; the
//   descriptor's accept queue (pollfd.hpp, AcceptQueue) keeps what no
//   fiber has taken yet. multishots_ counts the armed ones (armed by any
//   worker, ended by the polling thread: an atomic counter, relaxed, read
//   with acquire only at teardown, when no worker runs), so that the
//   runtime's teardown (drain) reaps their last completions.
// Lock order: PollDesc::lock -> sq_lock_ (a waiter queues its SQE with its
// descriptor's lock held, so that close and deadline cancels, queued under
// the same lock, always follow the operation they cancel in the SQ).
#pragma once

#include <liburing.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <weft/park.hpp>
#include <weft/sync.hpp>

namespace weft::net::detail {

class Ring {
 public:
  // user_data of completions that carry no waiter.
  static constexpr std::uint64_t kIgnore = 0;
  static constexpr std::uint64_t kWake = 1;

  // A ring, or nullptr with *why set when the kernel refuses one (ENOSYS,
  // EPERM under seccomp or kernel.io_uring_disabled, missing features).
  static std::unique_ptr<Ring> create(std::string* why);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Queues one SQE: prep(sqe) fills it, user_data is set after. Never
  // fails: a full SQ is submitted first. Any thread.
  template <class Prep>
  void queue(std::uint64_t user_data, Prep&& prep) {
    std::lock_guard<weft::detail::SpinLock> g(sq_lock_);
    io_uring_sqe* sqe = next_sqe();
    prep(sqe);
    io_uring_sqe_set_data64(sqe, user_data);
    pending_.store(true, std::memory_order_relaxed);
  }
  // Queues the cancellation of the operation whose user_data is target.
  void cancel(std::uint64_t target);
  // After queueing, with no lock held: submits now if a worker is blocked
  // in the ring's wait (see above), else leaves it to the next poll.
  void kick() noexcept;

  // Submits what is queued and waits until `deadline` (min(): not at all)
  // for completions; calls on_cqe(user_data, res) for each. Returns their
  // number. Only the runtime's polling thread calls it.
  template <class OnCqe>
  int poll(Clock::time_point deadline, OnCqe&& on_cqe);

  // Provided buffers: whether the kernel took the pool, its group id, the
  // size of each buffer; a buffer named by a completion's flags is copied
  // out (at most n bytes) and handed back at once.
  // 1,024 x 2 KiB (2 MiB of address space, resident as used): enough for
  // what 1,000 echo connections bring between two polls; a receive that
  // finds the pool empty fails with ENOBUFS and its waiter polls instead.
  static constexpr unsigned kPoolBufs = 1024;
  static constexpr unsigned kPoolBufSize = 2048;
  static constexpr unsigned short kPoolGroup = 0;
  bool has_pool() const noexcept { return pool_ != nullptr; }
  void pool_copy_and_return(std::uint32_t cqe_flags, char* dst, std::size_t n) noexcept;
  void wake() noexcept;
  bool has_pending() const noexcept { return pending_.load(std::memory_order_relaxed); }

  // Multishot accept: whether the kernel has it (it came in the release
  // that brought cooperative task work, which create() asks for first),
  // and the count of those armed.
  bool multishot_accept() const noexcept { return multishot_accept_; }
  void multishot_armed() noexcept { multishots_.fetch_add(1, std::memory_order_relaxed); }
  void multishot_ended() noexcept { multishots_.fetch_sub(1, std::memory_order_relaxed); }
  // Teardown, no worker running: cancels everything in flight and polls
  // (at most 1 s) until every multishot's last completion went to on_cqe,
  // so that a listener's request ends its descriptor's bracket and no
  // accepted connection stays unreaped in the CQ.
  template <class OnCqe>
  void drain(OnCqe&& on_cqe);

 private:
  Ring() = default;
  io_uring_sqe* next_sqe();           // under sq_lock_
  unsigned flush() noexcept;          // under sq_lock_: publishes the SQ tail, returns SQEs unsubmitted
  // -errno on failure; get_events: run this thread's pending task work
  // (completions) even with nothing to wait for.
  int enter(unsigned submit, unsigned wait, Clock::time_point deadline, bool get_events = false) noexcept;
  void arm_wake();                    // queues the read on the wake eventfd
  void setup_pool() noexcept;         // provided buffers, where the kernel has them

  io_uring ring_{};
  weft::detail::SpinLock sq_lock_;
  std::atomic<bool> pending_{false};  // SQEs queued since the last flush (a hint)
  std::atomic<bool> waiting_{false};  // a poller is (about to be) blocked in enter
  std::atomic<bool> wake_pending_{false};
  bool multishot_accept_ = false;
  std::atomic<int> multishots_{0};
  int wakefd_ = -1;
  weft::detail::SpinLock pool_lock_;
  io_uring_buf_ring* pool_ring_ = nullptr;  // the buffer ring (mmap), kPoolBufs entries
  char* pool_ = nullptr;                    // kPoolBufs * kPoolBufSize bytes (mmap)
};

template <class OnCqe>
int Ring::poll(Clock::time_point deadline, OnCqe&& on_cqe) {
  const bool may_block = deadline != Clock::time_point::min();
  if (may_block) waiting_.store(true, std::memory_order_seq_cst);
  unsigned submit;
  {
    std::lock_guard<weft::detail::SpinLock> g(sq_lock_);
    submit = flush();
  }
  bool none = io_uring_cq_ready(&ring_) == 0;
  bool block = may_block && none;
  // Completions this thread's task work owes (cooperative task work, see
  // above): a non-blocking poll that finds none ready enters to run it.
  bool owed = !block && none && (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN);
  if (submit > 0 || block || owed) {
    int r = enter(submit, block ? 1 : 0, deadline, owed);
    (void)r;  // -ETIME, -EINTR: nothing arrived; -EBUSY: the CQ overflowed, reaped below
  }
  if (may_block) waiting_.store(false, std::memory_order_relaxed);
  int n = 0;
  unsigned head;
  io_uring_cqe* cqe;
  bool rearm = false;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    n++;
    std::uint64_t ud = io_uring_cqe_get_data64(cqe);
    if (ud == kWake) {
      // The read consumed the eventfd's count: clear the flag, then queue
      // the next read (epoll.cpp explains the order).
      wake_pending_.store(false, std::memory_order_seq_cst);
      rearm = true;
    } else if (ud != kIgnore) {
      on_cqe(ud, cqe->res, cqe->flags);
    }
  }
  io_uring_cq_advance(&ring_, static_cast<unsigned>(n));
  if (rearm) arm_wake();
  return n;
}

template <class OnCqe>
void Ring::drain(OnCqe&& on_cqe) {
  if (multishots_.load(std::memory_order_acquire) == 0) return;
  queue(kIgnore, [](io_uring_sqe* s) { io_uring_prep_cancel64(s, 0, IORING_ASYNC_CANCEL_ANY); });
  const auto until = Clock::now() + std::chrono::seconds(1);
  while (multishots_.load(std::memory_order_acquire) > 0) {
    auto now = Clock::now();
    if (now >= until) break;
    poll(std::min(until, now + std::chrono::milliseconds(10)), on_cqe);
  }
}

}  // namespace weft::net::detail
