// scope.cpp: weft::Scope (weft/scope.hpp).
//
// Shared state (ScopeCore): the list of running children, `cancelled` and
// `first`, guarded by `lock` (a spin lock held for list and flag updates
// only: cancellations, stop requests and wakes happen after it is
// released). `running` counts children not yet ended; a child's done() on
// it is its last touch of the scope (WaitGroup's lifetime rule), so the
// owner may destroy the scope as soon as wait() returns.
//
// A child has a ScopeChild record (its links) beside its JoinState: one
// allocation (ScopedJoinState) for Scope::go, whose state its fiber and its
// handle share; none for Scope::spawn, whose state and record live in the
// fiber's closure (scope.hpp: no handle, so nothing outlives the fiber).
// The scope holds no reference: a child in the list has not reached
// scope_child_end, so its fiber still holds the state. Whoever sets
// `cancelled` first (cancel(), or the first child to fail) pins every
// running child under the lock (join_pin: the child cannot end meanwhile,
// though it may leave the list), chains them through ScopeChild::pinned,
// and cancels them after the unlock; the record lives as long as the state,
// which outlives join_finish (it waits for those pins). Children started
// later start cancelled.
#include <weft/scope.hpp>

#include "switch.hpp"

namespace weft {

namespace detail {

namespace {

void link(ScopeCore* sc, ScopeChild* ch) noexcept {
  ch->prev = nullptr;
  ch->next = sc->children;
  if (sc->children) sc->children->prev = ch;
  sc->children = ch;
}

void unlink(ScopeCore* sc, ScopeChild* ch) noexcept {
  if (ch->prev) ch->prev->next = ch->next;
  else sc->children = ch->next;
  if (ch->next) ch->next->prev = ch->prev;
  ch->prev = ch->next = nullptr;
}

// With sc->lock held, by whoever set sc->cancelled: pins the running
// children and returns them chained.
ScopeChild* pin_all(ScopeCore* sc) noexcept {
  ScopeChild* chain = nullptr;
  for (ScopeChild* c = sc->children; c; c = c->next) {
    if (!join_pin(c->st)) continue;
    c->pinned = chain;
    chain = c;
  }
  return chain;
}

void cancel_chain(ScopeCore* sc, ScopeChild* chain) noexcept {
  sc->src.request_stop();
  while (chain) {
    ScopeChild* next = chain->pinned;  // read first: unpinned, it may go
    JoinStateBase* st = chain->st;
    rt::cancel_fiber(st->fiber, 0);
    join_unpin(st);
    chain = next;
  }
}

}  // namespace

void scope_child_begin(ScopeChild* ch, JoinStateBase* st) noexcept {
  ScopeCore* sc = ch->scope;
  ch->st = st;
  st->child = ch;
  st->quiet = true;  // its failure goes to the scope: never a panic
  sc->running.add(1);
  bool pre;
  {
    std::lock_guard<SpinLock> g(sc->lock);
    link(sc, ch);
    pre = sc->cancelled;
  }
  // Not started yet: spawn_commit publishes this to the fiber.
  if (pre) rt::cancel_word(st->fiber).fetch_or(1, std::memory_order_relaxed);
}

void scope_child_end(JoinStateBase* st) noexcept {
  ScopeChild* ch = st->child;
  ScopeCore* sc = ch->scope;
  bool failed = st->error && !st->by_cancel;
  ScopeChild* chain = nullptr;
  bool cancel_all = false;
  {
    std::lock_guard<SpinLock> g(sc->lock);
    unlink(sc, ch);
    if (failed && !sc->first) sc->first = st->error;
    if (failed && !sc->cancelled) {
      sc->cancelled = cancel_all = true;
      chain = pin_all(sc);
    }
  }
  if (cancel_all) cancel_chain(sc, chain);
  sc->running.done();   // our last touch of the scope
}

}  // namespace detail

void Scope::cancel() noexcept {
  detail::ScopeChild* chain;
  {
    std::lock_guard<detail::SpinLock> g(core_.lock);
    if (core_.cancelled) return;  // whoever set it cancels what was running then
    core_.cancelled = true;
    chain = detail::pin_all(&core_);
  }
  detail::cancel_chain(&core_, chain);
}

bool Scope::cancelled() const noexcept {
  std::lock_guard<detail::SpinLock> g(const_cast<detail::SpinLock&>(core_.lock));
  return core_.cancelled;
}

void Scope::wait() {
  core_.running.wait();
  std::exception_ptr e;
  {
    std::lock_guard<detail::SpinLock> g(core_.lock);
    e = core_.first;
  }
  if (e) std::rethrow_exception(e);
}

Scope::~Scope() {
  bool any;
  {
    std::lock_guard<detail::SpinLock> g(core_.lock);
    any = core_.children != nullptr;
  }
  if (any) cancel();
  CancelShield shield;
  for (;;) {
    try {
      core_.running.wait();
      return;
    } catch (const detail::FiberUnwind&) {
      // Shutdown reached us while we wait (we were not yet unwinding): our
      // children are being unwound too; wait for them, now unwinding.
    }
  }
}

}  // namespace weft
