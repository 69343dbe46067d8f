// select.cpp: the type-erased core of select() (weft/select.hpp).
//
// Algorithm (Go's selectgo, with the timer folded in):
//   1. Shuffle the channel cases into a random poll order, and sort them by
//      channel address into a lock order (duplicates adjacent: a channel in
//      several cases is locked once). An `after` whose deadline has already
//      passed joins the poll order as one more ready case.
//   2. Lock every channel in lock order and walk the poll order: the first
//      case that can proceed now runs (under the locks) and wins. Every
//      ready case is first in a uniformly random permutation with the same
//      probability, so the choice among ready cases is uniform.
//   3. Nothing ready: with otherwise(), unlock and return it. Else open one
//      park (one Parker for the whole select), queue one waiter per case on
//      its channel in poll order (all share one WaitCtx), take a reference
//      on each channel (released after step 4), unlock everything, and park,
//      with the after deadline if any (rt::park_until: its timer lives in
//      park_until's frame and is cancelled there unless it fired, so no
//      timer outlives the select).
//   4. Wake: a channel operation that found one of our waiters claimed the
//      select by CAS on ctx.won (chan_core.hpp) and completed that case
//      before unparking us. On a Timeout or Cancel wake we claim ctx.won
//      ourselves (kAborted); if that CAS fails, a case won after all, and we
//      honour it. Then we take each channel's lock in turn (not all at once:
//      the claim already excludes further winners) and unlink whatever is
//      still queued. Taking the winner's lock also waits out a winner that
//      claimed us but had not finished its move when the timer woke us.
//
// State: everything lives in the caller's frame (select.hpp): the waiters,
// the orders, the WaitCtx. Lock order: channel locks by increasing address;
// no other lock is taken while they are held (the unpark of a completed
// peer happens after the unlock).
//
// Rejected: holding all channel locks again on wake, as Go does (sellock
// twice): with the won claim it is not needed, and taking one lock at a
// time keeps other fibers' operations on those channels flowing.
#include <weft/select.hpp>

#include <cstdio>
#include <cstdlib>

#include "chan_core.hpp"

namespace weft::detail {

namespace {

// wyrand, per thread. Not inlined into select_impl: a fiber may migrate
// across the park in between, and a thread_local address must not be
// cached across it.
[[gnu::noinline]] std::uint64_t fastrand() noexcept {
  thread_local std::uint64_t s = 0;
  if (s == 0) s = reinterpret_cast<std::uintptr_t>(&s) ^ static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) ^ 0x9E3779B97F4A7C15ull;
  s += 0xa0761d6478bd642full;
  __uint128_t m = static_cast<__uint128_t>(s) * (s ^ 0xe7037ed1a0b428dbull);
  return static_cast<std::uint64_t>(m >> 64) ^ static_cast<std::uint64_t>(m);
}

// Uniform in [0, n) (Lemire's multiply-shift; the bias for n < 2^16 is
// below 2^-16, far under what any test can see).
inline std::uint32_t rand_below(std::uint64_t& bits, int& avail, std::uint32_t n) noexcept {
  if (avail == 0) {
    bits = fastrand();
    avail = 2;
  }
  auto r = static_cast<std::uint32_t>(bits);
  bits >>= 32;
  avail--;
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(r) * n) >> 32);
}

struct Locks {
  ChanWaiter* ws;
  const std::uint16_t* order;
  std::uint32_t n;
  void lock() const noexcept {
    ChanCore* prev = nullptr;
    for (std::uint32_t i = 0; i < n; i++) {
      ChanCore* c = ws[order[i]].core;
      if (c != prev) c->lock.lock();
      prev = c;
    }
  }
  void unlock() const noexcept {
    ChanCore* prev = nullptr;
    for (std::uint32_t i = n; i-- > 0;) {
      ChanCore* c = ws[order[i]].core;
      if (c != prev) c->lock.unlock();
      prev = c;
    }
  }
  // One reference per distinct channel, held while the select is parked
  // and cleaning up (see step 3).
  void retain() const noexcept {
    for (std::uint32_t i = 0; i < n; i++)
      if (i == 0 || ws[order[i]].core != ws[order[i - 1]].core) chan_retain(ws[order[i]].core);
  }
  void release() const noexcept {
    for (std::uint32_t i = 0; i < n; i++)
      if (i == 0 || ws[order[i]].core != ws[order[i - 1]].core) chan_release(ws[order[i]].core);
  }
};

}  // namespace

SelectResult select_impl(ChanWaiter* ws, std::uint32_t n, std::uint16_t* scratch,
                         const Clock::time_point* deadline, bool has_default) {
  if (!has_default) rt::cancellation_point();  // with otherwise() a select never parks: not one
  // Only nil channels: nothing can ever be ready but the timer or otherwise.
  // An after() already due is ready, so it goes before otherwise() (as it
  // does below, where it joins the poll order).
  if (n == 0) {
    if (deadline && Clock::now() >= *deadline) return {SelectResult::Timeout, false, 0};
    if (has_default) return {SelectResult::Default, false, 0};
    if (!deadline) park_forever(WaitKind::Select);
    for (;;) {
      if (Clock::now() >= *deadline) return {SelectResult::Timeout, false, 0};
      WakeReason r = rt::park_until(rt::prepare_park(WaitKind::Select, nullptr), *deadline);
      if (r == WakeReason::Cancel) rt::throw_unwind();
      if (r == WakeReason::Timeout) return {SelectResult::Timeout, false, 0};
    }
  }

  // 1. Orders. poll: a random permutation (inside-out Fisher-Yates), with
  // the virtual index n for an expired after. lock: by channel address.
  std::uint16_t* poll = scratch;
  std::uint16_t* lockorder = scratch + n + 1;
  bool expired = deadline && Clock::now() >= *deadline;
  std::uint32_t npoll = n + (expired ? 1 : 0);
  std::uint64_t bits = 0;
  int avail = 0;
  for (std::uint32_t i = 0; i < npoll; i++) {
    std::uint32_t j = rand_below(bits, avail, i + 1);
    if (j != i) poll[i] = poll[j];
    poll[j] = static_cast<std::uint16_t>(i);
  }
  for (std::uint32_t i = 0; i < n; i++) {  // insertion sort: n is small
    std::uint32_t j = i;
    auto key = reinterpret_cast<std::uintptr_t>(ws[i].core);
    for (; j > 0 && reinterpret_cast<std::uintptr_t>(ws[lockorder[j - 1]].core) > key; j--) lockorder[j] = lockorder[j - 1];
    lockorder[j] = static_cast<std::uint16_t>(i);
  }
  Locks locks{ws, lockorder, n};

  // 2a. Probe, in poll order, without locks; try the first case that looks
  // ready under its own channel's lock only. A case that completes under
  // its lock was ready at that instant, so running it alone is a valid
  // outcome of the whole select (linearised there); the probe only decides
  // which lock to try first, and every "no" falls through to the locked
  // pass below, which decides alone. Uniformity: every ready case is first
  // among the ready ones in the permutation with equal probability, exactly
  // as in the locked pass. This turns the common "something is ready"
  // select into one lock round trip instead of one per channel (on two
  // workers the lock cache lines bouncing were a third of select's cost).
  // The loads are relaxed: a wrong guess costs one lock, never a result.
  for (std::uint32_t k = 0; k < npoll; k++) {
    std::uint32_t i = poll[k];
    if (i == n) return {SelectResult::Timeout, false, 0};
    ChanWaiter& w = ws[i];
    ChanCore* c = w.core;
    std::size_t cnt = c->count.load(std::memory_order_relaxed);
    bool maybe = c->closed.load(std::memory_order_relaxed) ||
                 (w.kind == ChanWaiter::Recv ? !c->sendq.empty_relaxed() || cnt > 0
                                             : !c->recvq.empty_relaxed() || cnt < c->cap);
    if (!maybe) continue;
    rt::DeferredWake wake;
    c->lock.lock();
    Ready r = w.kind == ChanWaiter::Recv ? recv_locked(c, w.data, &wake) : send_locked(c, w.data, &wake);
    c->lock.unlock();
    if (r == Ready::No) continue;
    wake.fire();
    if (r == Ready::Closed && w.kind == ChanWaiter::Send) throw_closed("weft: send on closed channel");
    rt::spend_budget();  // ready without parking (park.hpp: the budget)
    return {SelectResult::Chan, r == Ready::Done, w.index};
  }

  // 2b. Anything ready now, all channels locked?
  locks.lock();
  for (std::uint32_t k = 0; k < npoll; k++) {
    std::uint32_t i = poll[k];
    if (i == n) {
      locks.unlock();
      return {SelectResult::Timeout, false, 0};
    }
    ChanWaiter& w = ws[i];
    rt::DeferredWake wake;
    Ready r = w.kind == ChanWaiter::Recv ? recv_locked(w.core, w.data, &wake) : send_locked(w.core, w.data, &wake);
    if (r == Ready::No) continue;
    locks.unlock();
    wake.fire();
    if (r == Ready::Closed && w.kind == ChanWaiter::Send) throw_closed("weft: send on closed channel");
    rt::spend_budget();  // ready without parking (park.hpp: the budget)
    return {SelectResult::Chan, r == Ready::Done, w.index};
  }

  // 3. Nothing ready.
  if (has_default) {
    locks.unlock();
    rt::spend_budget();
    return {SelectResult::Default, false, 0};
  }
  WaitCtx ctx;
  ctx.select = true;
  ctx.parker = rt::prepare_park(WaitKind::Select, ws);
  // Queue in poll order (npoll == n here: an expired after returned above),
  // not argument order: cases on one channel then sit in its queue in a
  // random order, so a later peer picks among them uniformly (Go gets the
  // same from its lock order, which follows the shuffled poll order). The
  // order across channels does not matter: every lock is held.
  for (std::uint32_t k = 0; k < n; k++) {
    ChanWaiter& w = ws[poll[k]];
    w.ctx = &ctx;
    (w.kind == ChanWaiter::Recv ? w.core->recvq : w.core->sendq).push(&w);
  }
  // A reference on every channel until step 4 is done with them: the case
  // that wins may wake us through channel A while our waiter still sits in
  // channel B, and whoever woke us may then drop B's last handle (it only
  // knows that nobody is parked any more) before we unlink from B.
  locks.retain();
  locks.unlock();
  WakeReason why = deadline ? rt::park_until(ctx.parker, *deadline) : rt::park(ctx.parker);

  // 4. Wake.
  if (why != WakeReason::Event) {
    std::uint32_t expect = WaitCtx::kNotWon;
    ctx.won.compare_exchange_strong(expect, WaitCtx::kAborted, std::memory_order_acq_rel, std::memory_order_acquire);
  }
  // An Event wake means the winner has finished with our waiters: it
  // unlinked its own before claiming us. So the winner's channel needs no
  // visit unless another of our cases waits on it too.
  std::uint32_t won_early = why == WakeReason::Event ? ctx.won.load(std::memory_order_relaxed) : WaitCtx::kNotWon;
  for (std::uint32_t k = 0; k < n;) {
    ChanCore* c = ws[lockorder[k]].core;
    if (ws[lockorder[k]].index == won_early && (k + 1 == n || ws[lockorder[k + 1]].core != c) &&
        (k == 0 || ws[lockorder[k - 1]].core != c)) {
      k++;
      continue;
    }
    c->lock.lock();
    for (; k < n && ws[lockorder[k]].core == c; k++) {
      ChanWaiter& w = ws[lockorder[k]];
      if (w.queued) (w.kind == ChanWaiter::Recv ? c->recvq : c->sendq).remove(&w);
    }
    c->lock.unlock();
  }
  locks.release();  // may free a channel: nothing below touches one
  std::uint32_t won = ctx.won.load(std::memory_order_acquire);
  // Cancelled with no case won: nothing happened. A case that won first is
  // honoured below, and the next cancellation point throws (at shutdown
  // the fiber unwinds regardless).
  if (why == WakeReason::Cancel && (won == WaitCtx::kAborted || rt::shutting_down())) rt::throw_unwind();
  if (won == WaitCtx::kAborted) return {SelectResult::Timeout, false, 0};
  for (std::uint32_t i = 0; i < n; i++) {
    if (ws[i].index != won) continue;
    if (ws[i].kind == ChanWaiter::Send && !ctx.ok) throw_closed("weft: send on closed channel");
    return {SelectResult::Chan, ctx.ok, won};
  }
  // A waker claimed a case index this select does not have: a protocol
  // slip. Stop here rather than run on with undefined behaviour.
  std::fprintf(stderr, "weft: select: internal error: woken for case %u, which this select (%u channel cases) does not have\n",
               won, n);
  std::abort();
}

}  // namespace weft::detail
