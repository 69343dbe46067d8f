// pollfd.cpp: the descriptor pool, the runtime's idle poller, waits and
// deadlines. Invariants, memory ordering and lock order: see pollfd.hpp.
//
// Waiting (Go's pollDesc wait, with a queue instead of one waiter per
// direction): a fiber that got EAGAIN calls wait(). Under pd->lock it takes
// a recorded edge (`ready`) if there is one, else queues an IoWaiter on its
// stack (FIFO) and parks. An edge from the poller dequeues the first waiter
// whose park it can still claim and marks it `edge` (that waiter now owns
// the edge and goes straight to its system call); a waiter whose claim was
// lost (woken by the runtime's Cancel) is skipped, so the edge passes on;
// with no waiter left the edge is recorded in `ready`. The owner of an edge
// passes it to the next waiter after its system call (pass_edge): an edge
// announces "something arrived", maybe more than one call takes. Close and deadline
// expiry dequeue every waiter of the direction; those re-check under the
// lock and throw. A waiter the runtime cancelled while still queued
// dequeues itself.
#include "pollfd.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <weft/cancel.hpp>
#include <weft/net.hpp>
#include <weft/runtime.hpp>

#include "poller.hpp"
#ifdef WEFT_IO_URING
#include "uring.hpp"
#endif

namespace weft::net::detail {

namespace {

// ---- the descriptor pool (process-wide, immortal) ---------------------------------

class Pool {
 public:
  static constexpr std::uint32_t kChunk = 256;
  static constexpr std::uint32_t kMaxChunks = 65536;

  PollDesc* get() {
    std::lock_guard<std::mutex> g(mu_);
    if (free_.empty()) {
      std::uint32_t n = nchunks_.load(std::memory_order_relaxed);
      if (n == kMaxChunks)
        throw std::system_error(std::make_error_code(std::errc::too_many_files_open), "weft: too many sockets");
      auto* c = new PollDesc[kChunk];
      for (std::uint32_t i = 0; i < kChunk; i++) {
        c[i].index = n * kChunk + i;
        free_.push_back(&c[kChunk - 1 - i]);
      }
      chunks_[n] = c;
      nchunks_.store(n + 1, std::memory_order_release);
    }
    PollDesc* pd = free_.back();
    free_.pop_back();
    return pd;
  }
  void put(PollDesc* pd) {
    std::lock_guard<std::mutex> g(mu_);
    free_.push_back(pd);
  }
  // Any thread, no lock: chunks are never freed and published with release.
  PollDesc* at(std::uint32_t index) const noexcept {
    std::uint32_t c = index / kChunk;
    if (c >= nchunks_.load(std::memory_order_acquire)) return nullptr;
    return &chunks_[c][index % kChunk];
  }
  // The io_uring side of a descriptor (pollfd.hpp, UringSide): one array per
  // chunk, made on first use and published with a release CAS (a loser
  // frees its copy); immortal, as the chunks.
  UringSide* side_if(const PollDesc* pd) const noexcept {
    UringSide* a = sides_[pd->index / kChunk].load(std::memory_order_acquire);
    return a ? &a[pd->index % kChunk] : nullptr;
  }
  UringSide& side(const PollDesc* pd) {
    std::atomic<UringSide*>& slot = sides_[pd->index / kChunk];
    UringSide* a = slot.load(std::memory_order_acquire);
    if (!a) {
      auto* made = new UringSide[kChunk];
      if (slot.compare_exchange_strong(a, made, std::memory_order_acq_rel, std::memory_order_acquire)) a = made;
      else delete[] made;
    }
    return a[pd->index % kChunk];
  }

 private:
  std::mutex mu_;
  std::vector<PollDesc*> free_;        // guarded by mu_
  PollDesc* chunks_[kMaxChunks] = {};  // append-only
  std::atomic<UringSide*> sides_[kMaxChunks] = {};
  std::atomic<std::uint32_t> nchunks_{0};
};

Pool& pool() {
  static Pool* p = new Pool;  // immortal: late timers and events may still look
  return *p;
}

Slot& slot(PollDesc* pd, Dir d) { return d == Dir::Read ? pd->rd : pd->wr; }
std::uint64_t expired_bit(Dir d) { return d == Dir::Read ? PollDesc::kRdExpired : PollDesc::kWrExpired; }
// The seq, read under pd->lock (its writers hold the lock).
std::uint32_t seq_locked(const PollDesc* pd) {
  return static_cast<std::uint32_t>(pd->state.load(std::memory_order_relaxed) >> 32);
}

// The user_data of a listener's multishot accept: its incarnation's key,
// tagged (low bits 2: a UringOp's address has them 0, kIgnore and kWake are
// 0 and 1), so that one cancel finds it and a late completion knows whom
// it was for.
#ifdef WEFT_IO_URING
constexpr std::uint64_t kAcceptTag = 2;
std::uint64_t accept_ud(const PollDesc* pd, std::uint32_t seq) {
  return (std::uint64_t{seq} << 32) | (std::uint64_t{pd->index} << 3) | kAcceptTag;
}
static_assert(alignof(UringOp) >= 8 && Pool::kChunk * Pool::kMaxChunks <= (1u << 29));
#endif

// ---- the waiter queue of a direction (all under pd->lock) ----------------------------

void push_front(WaitList& s, IoWaiter* w) noexcept {
  w->prev = nullptr;
  w->next = s.head;
  if (s.head) s.head->prev = w; else s.tail = w;
  s.head = w;
  w->queued = true;
}

void push_back(WaitList& s, IoWaiter* w) noexcept {
  w->next = nullptr;
  w->prev = s.tail;
  if (s.tail) s.tail->next = w; else s.head = w;
  s.tail = w;
  w->queued = true;
}

void remove(WaitList& s, IoWaiter* w) noexcept {
  if (w->prev) w->prev->next = w->next; else s.head = w->next;
  if (w->next) w->next->prev = w->prev; else s.tail = w->prev;
  w->prev = w->next = nullptr;
  w->queued = false;
}

IoWaiter* pop_front(WaitList& s) noexcept {
  IoWaiter* w = s.head;
  if (w) remove(s, w);
  return w;
}

// An edge: the first waiter still parked owns it; else it is recorded.
void give_edge(Slot& s) noexcept {
  s.edges.store(s.edges.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  while (IoWaiter* w = pop_front(s.q)) {
    if (rt::unpark(w->parker, WakeReason::Event)) {
      w->edge = true;  // read by the waiter only after it takes the lock we hold
      return;
    }
  }
  s.ready = true;
}

// What wake_all leaves for after pd->lock is released: the kick of a ring
// it queued cancels on (a system call, kept out of the spinlock).
struct AfterUnlock {
#ifdef WEFT_IO_URING
  Ring* ring = nullptr;
  void run() const noexcept {
    if (ring) ring->kick();
  }
#else
  void run() const noexcept {}
#endif
};

// Close and deadline expiry, under pd->lock: every fiber parked for an edge
// wakes (and throws); every io_uring operation in flight is cancelled, and
// its fiber wakes with the completion (uring_wait), never before. The
// caller runs `after` once it has released the lock.
void wake_all(PollDesc* pd, Dir d, WakeReason r, [[maybe_unused]] AfterUnlock& after) noexcept {
  while (IoWaiter* w = pop_front(slot(pd, d).q)) rt::unpark(w->parker, r);
#ifdef WEFT_IO_URING
  UringSide* u = pool().side_if(pd);
  for (IoWaiter* q = u ? u->ops[static_cast<int>(d)].head : nullptr; q; q = q->next) {
    auto* w = static_cast<UringOp*>(q);
    if (w->cancelling) continue;
    w->cancelling = true;
    w->ring->cancel(reinterpret_cast<std::uint64_t>(w));
    after.ring = w->ring;  // one ring per runtime: the same for every op
  }
#endif
}

// ---- the runtime's idle poller ------------------------------------------------------

// One per runtime: the epoll/kqueue backend, or (Options::poller) an
// io_uring ring, never both.
class Netpoller final : public rt::IdlePoller {
 public:
  Netpoller() {
    if (rt::io_uring_requested()) {
#ifdef WEFT_IO_URING
      std::string why;
      ring_ = Ring::create(&why);
      if (ring_) return;
#else
      std::string why = "this build has no io_uring support (meson -Dio_uring=enabled, liburing)";
#endif
      std::fprintf(stderr, "weft: io_uring unavailable (%s): using %s\n", why.c_str(), kBackendName);
    }
    backend_.emplace();
  }
  ~Netpoller() override {
#ifdef WEFT_IO_URING
    if (ring_) ring_->drain([r = ring_.get()](std::uint64_t ud, int res, std::uint32_t flags) { complete(r, ud, res, flags); });
#endif
  }
  // Called by the scheduler's idle and periodic paths, which are noexcept:
  // an exception here would be std::terminate without context. The backend
  // retries nothing itself but returns 0 events on EINTR; any other error
  // (EBADF, EINVAL, EFAULT: the poller's own descriptor is gone or broken)
  // leaves no way to wait for I/O, so it ends the process with a message.
  void poll(Clock::time_point deadline) noexcept override {
#ifdef WEFT_IO_URING
    if (ring_) {
      try {
        ring_->poll(deadline,
                    [r = ring_.get()](std::uint64_t ud, int res, std::uint32_t flags) { complete(r, ud, res, flags); });
      } catch (const std::exception& e) {
        fatal(e);
      }
      return;
    }
#endif
    int n = 0;
    try {
      n = backend_->wait(deadline, events_, Backend::kMaxEvents);
    } catch (const std::exception& e) {
      fatal(e);
    }
    for (int i = 0; i < n; i++) dispatch(events_[i]);
    // Only settle_error reads it, only on a backend that consumes errors:
    // epoll's poll pays nothing for it.
    if constexpr (Backend::kConsumesErrors) rounds_.fetch_add(1, std::memory_order_release);
  }
  // Polls completed (each after its dispatch): see settle_error.
  std::uint64_t rounds() const noexcept { return rounds_.load(std::memory_order_acquire); }
  void wake() noexcept override {
#ifdef WEFT_IO_URING
    if (ring_) return ring_->wake();
#endif
    backend_->wake();
  }
  bool has_pending() const noexcept override {
#ifdef WEFT_IO_URING
    return ring_ && ring_->has_pending();
#else
    return false;
#endif
  }
  Backend* backend() noexcept { return backend_ ? &*backend_ : nullptr; }
  Ring* ring() noexcept {
#ifdef WEFT_IO_URING
    return ring_.get();
#else
    return nullptr;
#endif
  }

 private:
#ifdef WEFT_BACKEND_KQUEUE
  static constexpr const char* kBackendName = "kqueue";
#else
  static constexpr const char* kBackendName = "epoll";
#endif
  [[noreturn]] static void fatal(const std::exception& e) noexcept {
    std::fprintf(stderr, "weft: netpoller: fatal: %s (polling for I/O on a worker's idle path); aborting\n", e.what());
    std::fflush(stderr);
    std::abort();
  }
  static void dispatch(const PollEvent& ev) noexcept {
    PollDesc* pd = pool().at(static_cast<std::uint32_t>(ev.key));
    if (!pd) return;
    std::lock_guard<weft::detail::SpinLock> g(pd->lock);
    if (seq_locked(pd) != static_cast<std::uint32_t>(ev.key >> 32)) return;  // stale
    if (ev.error) pd->error.store(ev.error, std::memory_order_relaxed);
    if (ev.readable) give_edge(pd->rd);
    if (ev.writable) give_edge(pd->wr);
  }
#ifdef WEFT_IO_URING
  // An io_uring completion: its waiter is still parked in uring_wait (it
  // leaves only once `done`, read under the same lock), so the record and
  // its descriptor are valid here.
  static void complete(Ring* ring, std::uint64_t ud, int res, std::uint32_t flags) noexcept {
    if ((ud & 7) == kAcceptTag) return complete_accept(ring, ud, res, flags);
    auto* w = reinterpret_cast<UringOp*>(ud);
    PollDesc* pd = w->pd.load(std::memory_order_acquire);
    std::lock_guard<weft::detail::SpinLock> g(pd->lock);
    w->res = res;
    // A receive into a provided buffer: copy it out and hand the buffer
    // back now, while it is reaped, not when the fiber runs, so the pool
    // covers what arrives between two polls, not what waits to run.
    if (flags & IORING_CQE_F_BUFFER) {
      w->data = res > 0 ? static_cast<char*>(std::malloc(static_cast<std::size_t>(res))) : nullptr;
      if (res > 0 && !w->data) w->res = -ENOMEM;
      w->ring->pool_copy_and_return(flags, w->data, w->data ? static_cast<std::size_t>(res) : 0);
    }
    w->done = true;
    if (w->queued) remove(*w->list, w);
    rt::unpark(w->parker, WakeReason::Event);
  }
  // A listener's multishot accept posted a connection (or ended: no
  // IORING_CQE_F_MORE). Its incarnation may have closed meanwhile (the
  // seq moved on): the connection is closed, and the last completion still
  // ends the request's bracket, which lets the close finish.
  static void complete_accept(Ring* ring, std::uint64_t ud, int res, std::uint32_t flags) noexcept {
    PollDesc* pd = pool().at(static_cast<std::uint32_t>(ud >> 3) & ((1u << 29) - 1));
    const bool last = !(flags & IORING_CQE_F_MORE);
    int orphan = -1;
    {
      std::lock_guard<weft::detail::SpinLock> g(pd->lock);
      UringSide* u = pool().side_if(pd);
      AcceptQueue* q = u && seq_locked(pd) == static_cast<std::uint32_t>(ud >> 32) ? u->accq : nullptr;
      if (res >= 0) {
        orphan = res;
        if (q) {
          try {
            q->fds.push_back(res);
            orphan = -1;
          } catch (const std::bad_alloc&) {  // the connection goes; the peer sees a reset
          }
        }
      }
      if (q) {
        if (last) {
          q->armed = q->stopping = false;
          if (res < 0 && res != -ECANCELED) q->err = -res;
        } else if (q->fds.size() >= AcceptQueue::kMax && !q->stopping) {
          q->stopping = true;  // flushed by this thread's next poll
          ring->cancel(ud);
        }
        // One fiber per event: a connection to take, or a request to arm again.
        while (IoWaiter* w = pop_front(pd->rd.q))
          if (rt::unpark(w->parker, WakeReason::Event)) break;
      }
    }
    if (orphan >= 0) ::close(orphan);
    if (last) {
      ring->multishot_ended();
      op_end(pd);
    }
  }
#endif
  std::optional<Backend> backend_;
#ifdef WEFT_IO_URING
  std::unique_ptr<Ring> ring_;
#endif
  std::atomic<std::uint64_t> rounds_{0};
  PollEvent events_[Backend::kMaxEvents];  // only the one polling thread uses it
};

// Dump entries of fibers parked on a socket name its fd.
void describe_io(WaitKind, const void* obj, char* buf, std::size_t size) noexcept {
  std::snprintf(buf, size, "fd %d", static_cast<const PollDesc*>(obj)->fd);
}

Netpoller& netpoller() {
  static const bool described = [] {
    rt::set_wait_describer(WaitKind::IoRead, describe_io);
    rt::set_wait_describer(WaitKind::IoWrite, describe_io);
    return true;
  }();
  (void)described;
  return *static_cast<Netpoller*>(rt::install_idle_poller([]() -> rt::IdlePoller* { return new Netpoller; }));
}

// Deadline timer callback: a = descriptor, seq = descriptor seq << 32 |
// timer generation << 1 | direction.
void on_deadline(void* a, void*, std::uint64_t seq) {
  auto* pd = static_cast<PollDesc*>(a);
  Dir d = (seq & 1) ? Dir::Write : Dir::Read;
  AfterUnlock after;
  {
    std::lock_guard<weft::detail::SpinLock> g(pd->lock);
    if (seq_locked(pd) != static_cast<std::uint32_t>(seq >> 32)) return;
    Slot& s = slot(pd, d);
    if (s.timer_gen != static_cast<std::uint32_t>(seq >> 1) % (1u << 31)) return;  // superseded
    pd->state.fetch_or(expired_bit(d), std::memory_order_relaxed);
    wake_all(pd, d, WakeReason::Timeout, after);
  }
  after.run();
}

// Under pd->lock.
void drop_stash(PollDesc* pd) noexcept {
  pd->stashed.store(false, std::memory_order_relaxed);
  UringSide* u = pool().side_if(pd);
  if (!u) return;
  std::free(u->stash);
  u->stash = nullptr;
  u->stash_off = u->stash_len = 0;
  u->stash_end = 0;
  u->drained = false;
  u->receiving = false;
}

// Close, under pd->lock: detaches the listener's accept queue (the caller
// deletes it after unlocking) and ends its multishot accept, whose last
// completion then ends the bracket it holds (complete_accept): the fd
// closes then, a poll later. The socket stops listening now, though: shut
// down (pending connections are reset, the port is free for a new listener
// at once), which also ends the request (EINVAL) where the kernel had it
// armed already; the cancel covers the rest. Not a foreign descriptor's:
// the caller's fd shares the socket. Under the lock: while the request is
// armed its last completion has not been handled, so the fd is open.
AcceptQueue* take_accept_queue([[maybe_unused]] PollDesc* pd, [[maybe_unused]] std::uint32_t seq,
                               [[maybe_unused]] AfterUnlock& after) noexcept {
#ifdef WEFT_IO_URING
  UringSide* u = pool().side_if(pd);
  AcceptQueue* q = u ? std::exchange(u->accq, nullptr) : nullptr;
  if (q && q->armed) {
    if (!pd->foreign) ::shutdown(pd->fd, SHUT_RDWR);
    if (!q->stopping) q->ring->cancel(accept_ud(pd, seq));
    after.ring = q->ring;
  }
  return q;
#else
  return nullptr;
#endif
}

// Runs once per incarnation (see pollfd.hpp), with no lock held.
void final_close(PollDesc* pd) noexcept {
  // Closing a dup does not unregister it while the caller's fd refers to the
  // same file: remove it from the poller first. libkqueue keeps a closed
  // fd's knotes (poller.hpp): there every fd is disarmed first. The poller
  // is the closing thread's runtime's; off any runtime, forget() releases
  // what the backend holds for the fd without a poller.
  if (pd->armed && (pd->foreign || Backend::kDisarmBeforeClose)) {
    auto* p = static_cast<Netpoller*>(rt::current_idle_poller());
    if (Backend* b = p ? p->backend() : nullptr) b->disarm(pd->fd);
    else Backend::forget(pd->fd);
  }
  ::close(pd->fd);
  pd->fd = -1;
  pool().put(pd);
}

}  // namespace

[[noreturn]] void throw_closed(const char* op) { throw SocketClosed(std::string("weft: ") + op + ": use of closed socket"); }
[[noreturn]] void throw_timeout(const char* op) { throw Timeout(std::string("weft: ") + op + ": deadline exceeded"); }

PollDesc* open_desc(int fd, std::uint32_t* seq_out, bool foreign) {
  Netpoller& np = netpoller();
  PollDesc* pd = pool().get();
  std::uint32_t seq;
  {
    std::lock_guard<weft::detail::SpinLock> g(pd->lock);
    // A pooled descriptor's word is "seq, closing, count 0" (or 0 when
    // new): the new incarnation keeps that seq and clears everything else.
    seq = seq_locked(pd);
    pd->state.store(std::uint64_t{seq} << 32, std::memory_order_release);
    pd->fd = fd;
    pd->foreign = foreign;
    pd->armed = false;
    drop_stash(pd);
    pd->error.store(0, std::memory_order_relaxed);
    for (Slot* s : {&pd->rd, &pd->wr}) {
      s->ready = false;
      s->deadline = Clock::time_point::max();
      s->timer_gen = (s->timer_gen + 1) % (1u << 31);
    }
  }
  try {
    if (Backend* b = np.backend()) {
      b->arm(fd, pd->key(seq));
      pd->armed = true;  // before the descriptor is shared: the socket's owner publishes it
    }
  } catch (...) {
    {
      std::lock_guard<weft::detail::SpinLock> g(pd->lock);
      pd->state.fetch_add(PollDesc::kSeqOne | PollDesc::kClosing, std::memory_order_acq_rel);
      pd->fd = -1;
    }
    pool().put(pd);
    throw;
  }
  *seq_out = seq;
  return pd;
}

void close_desc(PollDesc* pd, std::uint32_t seq) noexcept {
  std::uint64_t prev;
  AfterUnlock after;
  AcceptQueue* accq = nullptr;
  {
    std::lock_guard<weft::detail::SpinLock> g(pd->lock);
    if (seq_locked(pd) != seq) return;  // already closed (or a stale socket)
    prev = pd->state.fetch_add(PollDesc::kSeqOne | PollDesc::kClosing, std::memory_order_acq_rel);
    drop_stash(pd);
    accq = take_accept_queue(pd, seq, after);
    for (Dir d : {Dir::Read, Dir::Write}) {
      rt::timer_cancel(slot(pd, d).timer);
      wake_all(pd, d, WakeReason::Event, after);  // each waiter sees the new seq and throws
    }
  }
  delete accq;  // closes the connections no fiber took: their peers see the close
  // Before final_close: an operation in flight holds the bracket, so the
  // descriptor cannot be closed under the kernel before its cancel is in.
  after.run();
  if ((prev & PollDesc::kCount) == 0) final_close(pd);
}

void op_begin(PollDesc* pd, std::uint32_t seq, Check check, const char* op) {
  const std::uint64_t expired = check == Check::Read    ? PollDesc::kRdExpired
                                : check == Check::Write ? PollDesc::kWrExpired
                                                        : 0;
  std::uint64_t v = pd->state.load(std::memory_order_relaxed);
  for (;;) {
    if (static_cast<std::uint32_t>(v >> 32) != seq || (v & PollDesc::kClosing)) throw_closed(op);
    if (v & expired) throw_timeout(op);
    if (pd->state.compare_exchange_weak(v, v + 1, std::memory_order_acquire, std::memory_order_relaxed)) return;
  }
}

void op_end(PollDesc* pd) noexcept {
  std::uint64_t prev = pd->state.fetch_sub(1, std::memory_order_acq_rel);
  if ((prev & (PollDesc::kClosing | PollDesc::kCount)) == (PollDesc::kClosing | 1)) final_close(pd);
}

int take_error(PollDesc* pd, std::uint32_t seq) noexcept {
  if (pd->error.load(std::memory_order_relaxed) == 0) return 0;
  std::lock_guard<weft::detail::SpinLock> g(pd->lock);
  if (seq_locked(pd) != seq) return 0;
  return pd->error.exchange(0, std::memory_order_relaxed);
}

int settle_error(PollDesc* pd, std::uint32_t seq) noexcept {
  if (int e = take_error(pd, seq)) return e;
  if (!Backend::kConsumesErrors) return 0;
  // libkqueue may have taken the error from the socket in a poll still
  // copying out its events: wait (yielding, at most ~10 ms) for the next
  // poll to complete (wake() starts one if a worker sleeps in the poller);
  // that one, or the one in progress, has dispatched it. The release
  // increment after each dispatch and the acquire load order the record
  // before the look.
  auto* p = static_cast<Netpoller*>(rt::current_idle_poller());
  if (!p) return 0;
  std::uint64_t r0 = p->rounds();
  p->wake();
  auto until = Clock::now() + std::chrono::milliseconds(10);
  try {
    while (p->rounds() == r0 && Clock::now() < until) this_fiber::yield();
  } catch (...) {
    return 0;  // unwinding or cancelled: the caller's next point throws
  }
  return take_error(pd, seq);
}

std::uint32_t edges_of(PollDesc* pd, Dir d) noexcept { return slot(pd, d).edges.load(std::memory_order_acquire); }

// Under pd->lock (held by g): throws SocketClosed if the incarnation
// closed, Timeout if the direction's deadline expired (unlocking first).
static void check_open(std::unique_lock<weft::detail::SpinLock>& g, const PollDesc* pd, std::uint32_t seq, Dir d,
                const char* op) {
  std::uint64_t v = pd->state.load(std::memory_order_relaxed);
  if (static_cast<std::uint32_t>(v >> 32) != seq) {
    g.unlock();
    throw_closed(op);
  }
  if (v & expired_bit(d)) {
    g.unlock();
    throw_timeout(op);
  }
}

Ring* current_ring() noexcept {
#ifdef WEFT_IO_URING
  auto* p = static_cast<Netpoller*>(rt::current_idle_poller());
  return p ? p->ring() : nullptr;
#else
  return nullptr;
#endif
}

#ifdef WEFT_IO_URING
namespace {
void prep_poll(io_uring_sqe* sqe, void* ctx) {
  auto* pd = static_cast<PollDesc*>(ctx);
  io_uring_prep_poll_add(sqe, pd->fd, POLLIN | POLLRDHUP);
}
void prep_poll_out(io_uring_sqe* sqe, void* ctx) {
  auto* pd = static_cast<PollDesc*>(ctx);
  io_uring_prep_poll_add(sqe, pd->fd, POLLOUT);
}
}  // namespace

long uring_wait(PollDesc* pd, std::uint32_t seq, Dir d, const char* op, Check check, UringPrep prep, void* ctx,
                char** data) {
  Ring* ring = current_ring();
  op_begin(pd, seq, check, op);
  struct End {
    PollDesc* pd;
    ~End() { op_end(pd); }
  } end{pd};
  const WaitKind kind = d == Dir::Read ? WaitKind::IoRead : WaitKind::IoWrite;
  UringOp w;
  w.ring = ring;
  w.list = &uring_side(pd).ops[static_cast<int>(d)];
  w.pd.store(pd, std::memory_order_release);
  std::unique_lock<weft::detail::SpinLock> g(pd->lock);
  check_open(g, pd, seq, d, op);
  w.parker = rt::prepare_park(kind, pd);
  push_back(*w.list, &w);
  // Queued under pd->lock: a close or deadline that cancels it (also under
  // the lock) comes after it in the SQ, so the kernel finds it.
  ring->queue(reinterpret_cast<std::uint64_t>(&w), [&](io_uring_sqe* sqe) { prep(sqe, ctx); });
  g.unlock();
  ring->kick();
  bool cancelled = false, unwinding = false;
  std::optional<CancelShield> shield;
  for (;;) {
    WEFT_CHAOS_POINT();  // a completion before the switch-out
    WakeReason r = rt::park(w.parker);
    g.lock();
    if (w.done) break;
    // Not completed, so the runtime's Cancel woke us (only the completion
    // sets done). The kernel may still write into the caller's buffer:
    // withdraw the operation and wait for its completion, uncancellable:
    // shielded from further cancels, or at shutdown (where park() cancels
    // every park of a fiber not yet unwinding) marked unwinding, as the
    // blocking pool's waiter does.
    if (r == WakeReason::Cancel) {
      cancelled = true;
      if (!unwinding && rt::shutting_down()) {
        unwinding = true;
        rt::begin_unwinding();
      }
    }
    if (!w.cancelling) {
      w.cancelling = true;
      ring->cancel(reinterpret_cast<std::uint64_t>(&w));
    }
    if (!shield) shield.emplace();
    w.parker = rt::prepare_park(kind, pd);
    g.unlock();
    ring->kick();
  }
  long res = w.res;
  g.unlock();
  shield.reset();
  // Completed anyway (the data arrived first): the result stands and the
  // fiber's next cancellation point throws; at shutdown it unwinds now.
  if (unwinding || (cancelled && res == -ECANCELED)) {
    std::free(w.data);
    rt::throw_unwind();
  }
  if (data) *data = w.data;
  else std::free(w.data);
  return res;
}
namespace {
void prep_recv_pool(io_uring_sqe* sqe, void* ctx) {
  io_uring_prep_recv(sqe, static_cast<PollDesc*>(ctx)->fd, nullptr, 0, 0);  // 0: the whole buffer
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = Ring::kPoolGroup;
}

// Parks on rd.q, g (pd->lock) held on entry and on return: until a
// completion wakes one waiter, or a close or deadline every waiter
// (wake_all); the caller looks again. Throws weft::Cancelled (unlocked)
// when the fiber is cancelled. kick: a ring to kick once unlocked.
void park_on_rd(std::unique_lock<weft::detail::SpinLock>& g, PollDesc* pd, Ring* kick) {
  IoWaiter w;
  w.parker = rt::prepare_park(WaitKind::IoRead, pd);
  push_back(pd->rd.q, &w);
  g.unlock();
  if (kick) kick->kick();
  WakeReason r = rt::park(w.parker);
  g.lock();
  if (w.queued) remove(pd->rd.q, &w);
  if (r == WakeReason::Cancel) {
    g.unlock();
    rt::throw_unwind();
  }
}

// Under pd->lock: the fibers waiting for another's receive look again.
void wake_receivers(PollDesc* pd) noexcept {
  while (IoWaiter* w = pop_front(pd->rd.q)) rt::unpark(w->parker, WakeReason::Event);
}
}  // namespace

void uring_wait_readable(PollDesc* pd, std::uint32_t seq, const char* op) {
  rt::cancellation_point();
  Ring* ring = current_ring();
  if (!ring->has_pool()) return wait(pd, seq, Dir::Read, op, 0);  // a poll
  UringSide* u = &uring_side(pd);
  for (;;) {
    {
      std::unique_lock<weft::detail::SpinLock> g(pd->lock);
      check_open(g, pd, seq, Dir::Read, op);
      if (u->stash || u->stash_end) return;  // something to read
      if (u->receiving) {
        // Another fiber's receive is in flight: wait for its completion
        // (it wakes this queue), then look again.
        park_on_rd(g, pd, nullptr);
        continue;
      }
      u->receiving = true;
    }
    long r;
    char* data = nullptr;
    try {
      r = uring_wait(pd, seq, Dir::Read, op, Check::None, prep_recv_pool, pd, &data);
    } catch (...) {
      std::lock_guard<weft::detail::SpinLock> g(pd->lock);
      u->receiving = false;
      wake_receivers(pd);
      throw;
    }
    bool poll = false, done = false;
    {
      std::lock_guard<weft::detail::SpinLock> g(pd->lock);
      u->receiving = false;
      if (seq_locked(pd) == seq) {
        if (r >= 0 || (r != -ECANCELED && r != -EINTR && r != -ENOBUFS)) {
          if (data) {
            u->stash = data;
            u->stash_off = 0;
            u->stash_len = static_cast<std::uint32_t>(r);
            data = nullptr;
          } else {
            u->stash_end = r == 0 ? 1 : static_cast<int>(r);
          }
          u->drained = r >= 0 && r < static_cast<long>(Ring::kPoolBufSize);
          pd->stashed.store(true, std::memory_order_relaxed);
          done = true;
        }
        poll = r == -ENOBUFS;  // the pool ran dry: wait for readiness instead
      }
      wake_receivers(pd);
    }
    std::free(data);  // closed meanwhile: the bytes go with the socket
    if (done) return;
    if (poll) return wait(pd, seq, Dir::Read, op, 0);
    // Withdrawn (close, deadline: the checks above throw) or cancelled by
    // the kernel: again.
  }
}

long uring_accept(PollDesc* pd, std::uint32_t seq, const char* op) {
  rt::cancellation_point();
  Ring* ring = current_ring();
  if (!ring->multishot_accept()) return kSingleShot;
  UringSide* u = &uring_side(pd);
  std::unique_ptr<AcceptQueue> made;
  for (;;) {
    std::unique_lock<weft::detail::SpinLock> g(pd->lock);
    check_open(g, pd, seq, Dir::Read, op);
    if (!u->accq) {
      if (!made) {
        g.unlock();
        made = std::make_unique<AcceptQueue>();
        continue;
      }
      u->accq = made.release();
      u->accq->ring = ring;
    }
    AcceptQueue* q = u->accq;
    if (q->ring != ring) return kSingleShot;  // armed by another runtime's ring
    if (!q->fds.empty()) {
      int fd = q->fds.front();
      q->fds.pop_front();
      return fd;
    }
    if (q->err) return -std::exchange(q->err, 0);
    bool kick = false;
    if (!q->armed) {
      // The request holds the op bracket (as an operation in flight does)
      // until its last completion: a close cannot close the fd under it.
      // Seq checked under the lock, so the incarnation is not closing.
      pd->state.fetch_add(1, std::memory_order_relaxed);
      q->armed = true;
      ring->multishot_armed();
      ring->queue(accept_ud(pd, seq), [&](io_uring_sqe* sqe) {
        io_uring_prep_multishot_accept(sqe, pd->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      });
      kick = true;
    }
    // Parked until a connection comes, the request ends, or a close or
    // deadline wakes every waiter (wake_all): look again.
    park_on_rd(g, pd, kick ? ring : nullptr);
  }
}
#else
long uring_accept(PollDesc*, std::uint32_t, const char*) { std::abort(); }
long uring_wait(PollDesc*, std::uint32_t, Dir, const char*, Check, UringPrep, void*, char**) { std::abort(); }
void uring_wait_readable(PollDesc*, std::uint32_t, const char*) { std::abort(); }
#endif

UringSide& uring_side(PollDesc* pd) { return pool().side(pd); }

AcceptQueue::~AcceptQueue() {
  for (int fd : fds) ::close(fd);
}

long take_stash(PollDesc* pd, std::uint32_t seq, char* buf, std::size_t len, bool may_skip) noexcept {
  if (!pd->stashed.load(std::memory_order_relaxed)) return kNoStash;
  std::lock_guard<weft::detail::SpinLock> g(pd->lock);
  UringSide* u = pool().side_if(pd);
  if (seq_locked(pd) != seq || !u) return kNoStash;  // the caller's bracket throws
  if (u->stash) {
    std::size_t n = std::min<std::size_t>(len, u->stash_len - u->stash_off);
    std::memcpy(buf, u->stash + u->stash_off, n);
    u->stash_off += static_cast<std::uint32_t>(n);
    if (u->stash_off == u->stash_len) {
      std::free(u->stash);
      u->stash = nullptr;
      if (!u->stash_end && !u->drained) pd->stashed.store(false, std::memory_order_relaxed);
    }
    return static_cast<long>(n);
  }
  if (u->stash_end > 0) return 0;  // end of stream, for every later read too
  if (u->stash_end < 0) {
    long e = u->stash_end;
    u->stash_end = 0;  // an error is reported once
    if (!u->drained) pd->stashed.store(false, std::memory_order_relaxed);
    return e;
  }
  bool skip = u->drained && may_skip;
  u->drained = false;
  pd->stashed.store(false, std::memory_order_relaxed);
  return skip ? -EAGAIN : kNoStash;
}

namespace {
// Readiness through the ring: one POLL_ADD, the caller's next system call
// does the work. A withdrawn poll (close, deadline) throws at the next
// try; one the kernel cancelled for its own reasons is retried. Out of
// line, as arm_late: wait()'s frame is on every idle connection's stack.
#ifdef WEFT_IO_URING
[[gnu::noinline]] void uring_poll(PollDesc* pd, std::uint32_t seq, Dir d, const char* op) {
  for (;;) {
    long r = uring_wait(pd, seq, d, op, Check::None, d == Dir::Read ? prep_poll : prep_poll_out, pd);
    if (r != -ECANCELED) return;
  }
}
#endif

// Opened on an io_uring runtime, waited for on an epoll one: registers it
// here (once; pd->lock, held by g, orders racing first waits).
[[gnu::noinline]] void arm_late(std::unique_lock<weft::detail::SpinLock>& g, PollDesc* pd, std::uint32_t seq) {
  auto* p = static_cast<Netpoller*>(rt::current_idle_poller());
  Backend* b = p ? p->backend() : nullptr;
  if (b && seq_locked(pd) == seq) {
    try {
      b->arm(pd->fd, pd->key(seq));
    } catch (...) {
      g.unlock();
      throw;
    }
    pd->armed = true;
  }
}
}  // namespace

void wait(PollDesc* pd, std::uint32_t seq, Dir d, const char* op, std::uint32_t edges_seen, bool again) {
  rt::cancellation_point();
#ifdef WEFT_IO_URING
  if (current_ring()) return uring_poll(pd, seq, d, op);
#endif
  Slot& s = slot(pd, d);
  IoWaiter w;
  std::unique_lock<weft::detail::SpinLock> g(pd->lock);
  if (!pd->armed) arm_late(g, pd, seq);
  for (;;) {
    check_open(g, pd, seq, d, op);
    if (s.ready || s.edges.load(std::memory_order_relaxed) != edges_seen) {
      s.ready = false;
      return;
    }
    w.parker = rt::prepare_park(d == Dir::Read ? WaitKind::IoRead : WaitKind::IoWrite, pd);
    w.edge = false;
    if (again) push_front(s.q, &w); else push_back(s.q, &w);
    g.unlock();
    WEFT_CHAOS_POINT();  // a wake before the switch-out
    WakeReason r = rt::park(w.parker);
    g.lock();
    if (w.queued) remove(s.q, &w);  // the runtime's Cancel won the claim: nobody dequeued us
    if (r == WakeReason::Cancel) {
      g.unlock();
      rt::throw_unwind();
    }
    if (w.edge) return;  // the caller's system call uses the edge
    edges_seen = s.edges.load(std::memory_order_relaxed);
    // Woken by close or deadline expiry: the checks above throw (or, if the
    // deadline was reset meanwhile, wait again).
  }
}

void pass_edge(PollDesc* pd, std::uint32_t seq, Dir d) noexcept {
  Slot& s = slot(pd, d);
  std::lock_guard<weft::detail::SpinLock> g(pd->lock);
  if (seq_locked(pd) == seq && s.q.head) give_edge(s);
}

void set_deadline(PollDesc* pd, std::uint32_t seq, Dir d, Clock::time_point t) {
  Slot& s = slot(pd, d);
  AfterUnlock after;
  {
    std::unique_lock<weft::detail::SpinLock> g(pd->lock);
    if (seq_locked(pd) == seq) {
      rt::timer_cancel(s.timer);
      s.timer_gen = (s.timer_gen + 1) % (1u << 31);
      s.deadline = t;
      pd->state.fetch_and(~expired_bit(d), std::memory_order_relaxed);
      if (t == Clock::time_point::max()) return;
      if (t <= Clock::now()) {
        pd->state.fetch_or(expired_bit(d), std::memory_order_relaxed);
        wake_all(pd, d, WakeReason::Timeout, after);
        g.unlock();
        after.run();
        return;
      }
      s.timer.when = t;
      s.timer.fn = on_deadline;
      s.timer.a = pd;
      s.timer.b = nullptr;
      s.timer.seq = (std::uint64_t{seq} << 32) | (std::uint64_t{s.timer_gen} << 1) | (d == Dir::Write ? 1 : 0);
      rt::timer_start(s.timer);
      return;
    }
  }
  throw_closed("set_deadline");
}

Clock::time_point deadline_of(PollDesc* pd, std::uint32_t seq, Dir d, const char* op) {
  {
    std::lock_guard<weft::detail::SpinLock> g(pd->lock);
    std::uint64_t v = pd->state.load(std::memory_order_relaxed);
    if (static_cast<std::uint32_t>(v >> 32) == seq) return (v & expired_bit(d)) ? Clock::time_point::min() : slot(pd, d).deadline;
  }
  throw_closed(op);
}

}  // namespace weft::net::detail
