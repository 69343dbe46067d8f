// chan.cpp: channel creation, send, recv, try_send, try_recv, close.
//
// Shared state, invariants, lock order and the waiter protocol: see
// chan_core.hpp. This file adds the two lock-free fast paths (try_send and
// try_recv answering "not ready" without the lock), argued where they are.
//
// Rejected alternatives:
//   - A lock-free ring (Vyukov MPMC) for buffered channels: fast while the
//     ring is neither full nor empty, but close, parked senders/receivers
//     and select all need one linearisation point per channel, and the
//     lock-free ring would have to be re-checked under a lock anyway (Go
//     reached the same conclusion; its lock-free channel proposal died).
//   - Waking parked fibers under the lock (simpler): it lengthens the
//     critical section by a scheduler call on every hand-off; only close()
//     does it, because there the waiters cannot be reached after the unlock
//     (see close below).
#include <sched.h>

#include <cstdlib>
#include <new>

#include "chan_core.hpp"

namespace weft::detail {

void ChanLock::lock_slow() noexcept {
  unsigned backoff = 4;
  for (unsigned round = 0;; round++) {
    for (unsigned i = 0; i < backoff; i++) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      asm volatile("yield");
#endif
    }
    if (!flag_.load(std::memory_order_relaxed) && !flag_.exchange(true, std::memory_order_acquire)) return;
    // Cap 64 pauses: 4 made two-worker mpmc ~6x slower (the line bounced on
    // every operation), 128 made select producers wait long past the release.
    if (backoff < 64) backoff <<= 1;
    else if (round > 64) sched_yield();
  }
}

void throw_closed(const char* what) { throw ChanClosed(what); }

void park_forever(WaitKind kind) {
  // Nothing can wake this park but a cancellation or the shutdown sweep.
  rt::cancellation_point();
  for (;;)
    if (rt::park(rt::prepare_park(kind, nullptr)) == WakeReason::Cancel) rt::throw_unwind();
}

ChanCore* chan_create(std::size_t capacity, const ElemOps* ops) {
  std::size_t align = ChanCore::align_for(ops), head = ChanCore::buf_offset(ops);
  if (capacity > (SIZE_MAX - head) / ops->size) throw std::length_error("weft: channel capacity too large");
  std::size_t bytes = head + capacity * ops->size;
  void* mem = align > __STDCPP_DEFAULT_NEW_ALIGNMENT__ ? ::operator new(bytes, std::align_val_t(align))
                                                       : ::operator new(bytes);
  auto* c = ::new (mem) ChanCore;
  c->cap = capacity;
  c->ops = ops;
  return c;
}

void chan_retain(ChanCore* c) noexcept { c->refs.fetch_add(1, std::memory_order_relaxed); }

void chan_release(ChanCore* c) noexcept {
  // acq_rel: the last owner sees every other owner's writes before freeing.
  if (c->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (c->ops->destroy) {
    std::size_t n = c->count.load(std::memory_order_relaxed), x = c->recvx;
    for (; n > 0; n--, c->advance(x)) c->ops->destroy(c->slot(x));
  }
  std::size_t align = ChanCore::align_for(c->ops);
  c->~ChanCore();
  if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__)
    ::operator delete(static_cast<void*>(c), std::align_val_t(align));
  else
    ::operator delete(static_cast<void*>(c));
}

std::size_t chan_size(const ChanCore* c) noexcept { return c->count.load(std::memory_order_relaxed); }
std::size_t chan_capacity(const ChanCore* c) noexcept { return c->cap; }

// Parks the calling fiber on `q` until a waker completes `w`, and returns
// ctx.ok. Called with c->lock held (released here before parking).
static bool park_on(ChanCore* c, WaitQ& q, void* data, WaitKind kind) {
  WaitCtx ctx;
  ChanWaiter w;
  w.ctx = &ctx;
  w.data = data;
  ctx.parker = rt::prepare_park(kind, c);
  q.push(&w);
  c->lock.unlock();
  WakeReason r = rt::park(ctx.parker);
  if (r != WakeReason::Event) {
    // Only Cancel can get here (no timer is armed): withdraw and throw if
    // nobody completed us meanwhile. If a peer did (it dequeued us and
    // moved the value, and its unpark lost the claim to our Cancel), the
    // operation happened: report it, and the next cancellation point
    // throws. So a cancelled send delivered nothing, a cancelled recv
    // consumed nothing, and no value is lost.
    c->lock.lock();
    bool withdrawn = w.queued;
    if (withdrawn) q.remove(&w);
    c->lock.unlock();
    if (withdrawn || rt::shutting_down()) rt::throw_unwind();  // at shutdown: unwind regardless
  }
  return ctx.ok;
}

void chan_send(ChanCore* c, void* src) {
  rt::cancellation_point();
  if (!c) park_forever(WaitKind::ChanSend);
  rt::DeferredWake wake;
  c->lock.lock();
  switch (send_locked(c, src, &wake)) {
    case Ready::Done:
      c->lock.unlock();
      wake.fire();
      rt::spend_budget();  // completed without parking (park.hpp: the budget)
      return;
    case Ready::Closed:
      c->lock.unlock();
      throw_closed("weft: send on closed channel");
    case Ready::No:
      break;
  }
  if (!park_on(c, c->sendq, src, WaitKind::ChanSend)) throw_closed("weft: send on closed channel");
}

bool chan_recv(ChanCore* c, void* out) {
  rt::cancellation_point();
  if (!c) park_forever(WaitKind::ChanRecv);
  rt::DeferredWake wake;
  c->lock.lock();
  switch (recv_locked(c, out, &wake)) {
    case Ready::Done:
      c->lock.unlock();
      wake.fire();
      rt::spend_budget();
      return true;
    case Ready::Closed:
      c->lock.unlock();
      rt::spend_budget();
      return false;
    case Ready::No:
      break;
  }
  return park_on(c, c->recvq, out, WaitKind::ChanRecv);
}

// Fast path of try_send (Go's chansend "check for failed non-blocking
// operation without acquiring the lock"). Two single-word observations, in
// this order: (1) the channel is not ready for a send (unbuffered: recvq is
// empty; buffered: the ring is full), then (2) it is not closed. A channel
// never reopens, so "not closed" at (2) implies "not closed" at (1): at the
// instant of (1) the channel was open and not ready, and we linearise the
// try_send there and report false. The first load is an acquire so that the
// second cannot be satisfied before it (on x86 both are plain loads). No
// data is read on this path, so nothing more needs ordering; a stale "not
// ready" is indistinguishable from a send that came a moment earlier, and
// the locked path below is taken whenever either observation fails.
bool chan_try_send(ChanCore* c, void* src) {
  bool not_ready = c->cap == 0 ? c->recvq.head.load(std::memory_order_acquire) == nullptr
                               : c->count.load(std::memory_order_acquire) == c->cap;
  rt::spend_budget();  // a loop of try_send must not starve the worker either
  if (not_ready && !c->closed.load(std::memory_order_relaxed)) return false;
  rt::DeferredWake wake;
  c->lock.lock();
  Ready r = send_locked(c, src, &wake);
  c->lock.unlock();
  if (r == Ready::Closed) throw_closed("weft: send on closed channel");
  wake.fire();
  return r == Ready::Done;
}

// Fast path of try_recv (Go's chanrecv fast path, simpler because try_recv
// answers std::nullopt both for "nothing now" and for "closed and drained",
// so the closed flag need not be read). One single-word observation: no
// value is available (unbuffered: sendq is empty; buffered: count == 0,
// which by the invariant count < cap => sendq empty also means no parked
// sender). We linearise the try_recv at that load and return nullopt.
// Relaxed is enough: nothing is read on this path, and coherence guarantees
// that a send which happens-before this call (through any synchronisation)
// is visible to this load, since its store to count/head happened-before.
bool chan_try_recv(ChanCore* c, void* out) noexcept {
  rt::spend_budget();
  bool empty = c->cap == 0 ? c->sendq.empty_relaxed() : c->count.load(std::memory_order_relaxed) == 0;
  if (empty) return false;
  rt::DeferredWake wake;
  c->lock.lock();
  Ready r = recv_locked(c, out, &wake);
  c->lock.unlock();
  wake.fire();
  return r == Ready::Done;
}

// Close wakes every parked receiver (ok = false: closed) and sender (ok =
// false: it throws). The unparks happen under the lock: once unlinked, a
// plain waiter can still be woken by a shutdown Cancel, after which it would
// take the lock, find itself unlinked and return, freeing its frame; holding
// the lock until every unpark is done keeps the frames valid without a
// separate list. Close is rare, and unpark takes no channel lock.
//
// Close holds a reference of its own meanwhile: a fiber it woke may run at
// once on another worker and drop the last handle (Go's "close(done) wakes
// the owner, which returns": the closer often reaches the channel through a
// reference to the owner's handle), and close still walks the queues and
// unlocks after that unpark. Its release may be the last one.
void chan_close(ChanCore* c) {
  if (!c) throw_closed("weft: close of nil channel");
  c->lock.lock();
  if (c->closed.load(std::memory_order_relaxed)) {
    c->lock.unlock();
    throw_closed("weft: close of closed channel");
  }
  chan_retain(c);  // the caller's handle is alive until the first unpark below
  c->closed.store(true, std::memory_order_release);
  for (WaitQ* q : {&c->recvq, &c->sendq}) {
    while (ChanWaiter* w = q->dequeue()) {
      w->ctx->ok = false;
      rt::unpark(w->ctx->parker);
    }
  }
  c->lock.unlock();
  chan_release(c);
}

}  // namespace weft::detail
