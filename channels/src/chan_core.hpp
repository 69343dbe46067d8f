// chan_core.hpp: the type-erased channel core shared by chan.cpp (send,
// recv, close) and select.cpp.
//
// State and who guards it (ChanCore):
//   lock                     guards everything below except refs; a leaf
//                            among channel locks except in select, which
//                            holds several channels' locks at once, always
//                            taken in increasing address order. The only
//                            calls made under a channel lock are the element
//                            moves (noexcept) and, in close() only,
//                            rt::unpark (which may take the runtime's idle
//                            and global-queue locks: HACKING.md's order is
//                            channel lock -> Runtime::idle_lock/gq_lock).
//   closed, count            written under lock (relaxed stores), also read
//                            without it by the try_send/try_recv fast paths
//                            (see chan.cpp for their argument).
//   recvq.head, sendq.head   ditto: written under lock, read lock-free only
//                            as "is this queue empty".
//   recvx, sendx, buffer     under lock.
//   refs                     atomic; the last handle frees the core.
//
// Invariants (under lock), as in Go's chan.go:
//   - At least one of sendq and recvq holds no live waiter, except for an
//     unbuffered channel on which one select waits both to send and to
//     receive (its own two waiters cannot match each other: it is parked).
//   - Buffered: count > 0 implies recvq is empty; count < cap implies sendq
//     is empty. Unbuffered: count == 0 always.
//   - closed implies sendq and recvq are empty (close wakes them all, and
//     nobody queues on a closed channel).
//   - A waiter is in at most one queue; `queued` says whether it is, and is
//     read and written only under that channel's lock.
//
// The waiter protocol. A ChanWaiter and its WaitCtx live on the parked
// fiber's stack. A waker (the operation that completes a parked one) holds
// the channel lock, unlinks the waiter (queued = false), and:
//   - for a select waiter, first claims the whole select by a CAS of
//     ctx->won from kNotWon to the case index; if that fails another case
//     (or the select's own timeout) already won, and the waker drops the
//     stale waiter and tries the next (this is Go's selectDone);
//   - moves the value (into the receiver's optional, or out of the sender's
//     T), sets ctx->ok, copies ctx->parker, unlocks, then rt::unpark()s the
//     copy. The wake's acq_rel claim publishes ok and the value to the woken
//     fiber. After the unlock the waker never touches the waiter again (its
//     fiber may already be gone), hence the copy: a stale Parker is harmless.
// A woken plain waiter with WakeReason::Event is done and never takes the
// lock. Any other reason (Cancel at shutdown; Timeout for select) means its
// waiters may still be queued: it takes each channel's lock and unlinks
// whatever is still queued before it returns or unwinds. So nobody can
// reach a waiter once its frame is gone.
//
// Lifetime of the core (API.md: a primitive may be destroyed as soon as no
// fiber is parked in it, even if fibers it woke have not returned yet). A
// woken fiber may run at once on another worker and drop the last handle,
// so nobody may touch a core after an unpark unless it holds a reference:
//   - send/recv/try_*/select's ready path: unlock, then unpark, then touch
//     neither the core nor the waiter (the caller's own handle is not enough
//     when it is a reference to the woken fiber's handle);
//   - close unparks under the lock and goes on walking the queues: it takes
//     a reference for that (chan.cpp);
//   - a parked select is woken through one channel and then unlinks its
//     waiters from the others: it holds a reference on each channel from
//     before it parks until that cleanup is done (select.cpp);
//   - a plain waiter woken by Event never touches the core again; after a
//     Cancel (shutdown) it takes the lock to withdraw, while still inside
//     the call made on the caller's handle.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <weft/chan.hpp>
#include <weft/park.hpp>
#include <weft/sync.hpp>

namespace weft::detail {

// An intrusive FIFO of waiters. All writes happen under the owning
// channel's lock; `head` is atomic only so that the fast paths may ask
// "empty?" without the lock.
struct WaitQ {
  std::atomic<ChanWaiter*> head{nullptr};
  ChanWaiter* tail = nullptr;

  bool empty_relaxed() const noexcept { return head.load(std::memory_order_relaxed) == nullptr; }
  void push(ChanWaiter* w) noexcept {
    w->next = nullptr;
    w->prev = tail;
    if (tail) tail->next = w; else head.store(w, std::memory_order_relaxed);
    tail = w;
    w->queued = true;
  }
  void remove(ChanWaiter* w) noexcept {
    if (w->prev) w->prev->next = w->next; else head.store(w->next, std::memory_order_relaxed);
    if (w->next) w->next->prev = w->prev; else tail = w->prev;
    w->prev = w->next = nullptr;
    w->queued = false;
  }
  // Unlinks and returns the first waiter that can still complete: a plain
  // waiter, or a select waiter whose select this call claims for its case.
  // Stale select waiters met on the way are unlinked and dropped.
  ChanWaiter* dequeue() noexcept {
    for (;;) {
      ChanWaiter* w = head.load(std::memory_order_relaxed);
      if (!w) return nullptr;
      remove(w);
      WaitCtx* x = w->ctx;
      if (!x->select) return w;
      std::uint32_t expect = WaitCtx::kNotWon;
      // acq_rel: orders this claim with the select's own abort claim and with
      // competing claims by other channels (whose data moves happen under
      // their own locks; the select re-takes each lock before reading).
      if (x->won.compare_exchange_strong(expect, w->index, std::memory_order_acq_rel, std::memory_order_relaxed))
        return w;
    }
  }
};

// The channel lock: test-and-test-and-set with bounded exponential backoff.
// Under contention from several workers (mpmc on a buffered channel: every
// operation is a few dozen instructions under this lock) a waiter that
// backs off lets the holder take the lock again while the line is still in
// its cache, instead of bouncing it on every operation; after many rounds
// it yields the CPU (the holder may have been preempted). One byte.
// Rejected: the runtime's SpinLock (fixed pause loop: under two-worker
// contention the lock line ping-pongs on nearly every operation).
class ChanLock {
 public:
  void lock() noexcept {
    if (!flag_.exchange(true, std::memory_order_acquire)) return;
    lock_slow();
  }
  void unlock() noexcept { flag_.store(false, std::memory_order_release); }

 private:
  void lock_slow() noexcept;
  std::atomic<bool> flag_{false};
};

struct ChanCore {
  ChanLock lock;
  std::atomic<bool> closed{false};
  std::atomic<std::uint32_t> refs{1};
  std::atomic<std::size_t> count{0};   // values in the ring
  std::size_t cap = 0;
  std::size_t recvx = 0;               // next slot to receive from
  std::size_t sendx = 0;               // next slot to send into
  WaitQ recvq;
  WaitQ sendq;
  const ElemOps* ops = nullptr;
  // The ring (cap * ops->size bytes) follows the core in the same block, at
  // buf_offset(ops). No pointer to it is stored: 88 bytes per core keep an
  // unbuffered channel in a 96-byte malloc chunk (a parked fiber with its
  // own channel costs its stack page, its page-table share and this).

  static std::size_t align_for(const ElemOps* o) noexcept {
    return o->align > alignof(ChanCore) ? o->align : alignof(ChanCore);
  }
  static std::size_t buf_offset(const ElemOps* o) noexcept {
    std::size_t a = align_for(o);
    return (sizeof(ChanCore) + a - 1) / a * a;
  }
  void* slot(std::size_t i) const noexcept {
    return const_cast<unsigned char*>(reinterpret_cast<const unsigned char*>(this)) + buf_offset(ops) + i * ops->size;
  }
  void advance(std::size_t& x) const noexcept {
    if (++x == cap) x = 0;
  }
};

static_assert(sizeof(ChanCore) <= 88, "keep an unbuffered channel in a 96-byte malloc chunk");

enum class Ready : std::uint8_t { No, Done, Closed };

// With c->lock held: completes a receive into `out` (a std::optional<T>) now
// if it can. Done: a value was received; Closed: closed and drained (out
// untouched); No: would block. *wake gets the parker to unpark after the
// unlock (left alone if none; rt::DeferredWake pins the parked fiber's
// runtime when we are outside it, so a shutdown racing our late unpark
// cannot free the sync word it reads).
inline Ready recv_locked(ChanCore* c, void* out, rt::DeferredWake* wake) noexcept {
  if (ChanWaiter* w = c->sendq.dequeue()) {
    const ElemOps* ops = c->ops;
    if (c->cap == 0) {
      ops->to_out(out, w->data);  // straight from the sender
    } else {
      // The ring is full (a sender waits): take its head, and put the
      // sender's value at its tail, which is the same slot.
      void* s = c->slot(c->recvx);
      ops->to_out(out, s);
      if (ops->destroy) ops->destroy(s);
      ops->to_buf(s, w->data);
      c->advance(c->recvx);
      c->sendx = c->recvx;
    }
    w->ctx->ok = true;
    wake->set(w->ctx->parker);
    return Ready::Done;
  }
  std::size_t n = c->count.load(std::memory_order_relaxed);
  if (n > 0) {
    const ElemOps* ops = c->ops;
    void* s = c->slot(c->recvx);
    ops->to_out(out, s);
    if (ops->destroy) ops->destroy(s);
    c->advance(c->recvx);
    c->count.store(n - 1, std::memory_order_relaxed);
    return Ready::Done;
  }
  if (c->closed.load(std::memory_order_relaxed)) return Ready::Closed;
  return Ready::No;
}

// With c->lock held: completes a send of `src` (a T) now if it can. Closed:
// the channel is closed (the caller throws ChanClosed after unlocking).
inline Ready send_locked(ChanCore* c, void* src, rt::DeferredWake* wake) noexcept {
  if (c->closed.load(std::memory_order_relaxed)) return Ready::Closed;
  if (ChanWaiter* w = c->recvq.dequeue()) {
    c->ops->to_out(w->data, src);  // straight to the receiver
    w->ctx->ok = true;
    wake->set(w->ctx->parker);
    return Ready::Done;
  }
  std::size_t n = c->count.load(std::memory_order_relaxed);
  if (n < c->cap) {
    c->ops->to_buf(c->slot(c->sendx), src);
    c->advance(c->sendx);
    c->count.store(n + 1, std::memory_order_relaxed);
    return Ready::Done;
  }
  return Ready::No;
}

[[noreturn]] void throw_closed(const char* what);
[[noreturn]] void park_forever(WaitKind kind);

}  // namespace weft::detail
