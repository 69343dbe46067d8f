// weft/scope.hpp: structured concurrency (API.md "Cancellation and
// structured concurrency"): a Scope is a nursery, or Go's errgroup with its
// context built in. Its children never outlive it: the destructor cancels
// those still running and waits for all of them.
//
//   weft::Scope s;
//   for (auto& url : urls) s.go([&, url] { fetch(url); });
//   s.wait();  // the first child to fail cancels the others; its exception is rethrown here
#pragma once

#include <exception>
#include <memory>
#include <tuple>
#include <stop_token>
#include <utility>

#include <weft/cancel.hpp>
#include <weft/runtime.hpp>
#include <weft/sync.hpp>

namespace weft {

namespace detail {
// The scope's shared state (scope.cpp). Lock order: lock is taken alone
// (cancellations and stop requests happen after it is released).
struct ScopeCore {
  SpinLock lock;
  ScopeChild* children = nullptr;     // running children (guarded by lock)
  bool cancelled = false;             // guarded by lock
  std::exception_ptr first;           // the first failure (guarded by lock)
  WaitGroup running;                  // children not yet ended
  std::stop_source src;               // stop requested on cancel()
};

// Scope::spawn: a child without a handle keeps its join state and scope
// record in its closure, in the fiber's own stack slot: no allocation, and
// only the fiber's reference (the state dies in join_finish, after every
// canceller that pinned it let go; nothing else can reach it).
template <class F, class... A>
WEFT_ALWAYS_INLINE void scope_spawn_impl(ScopeCore* scope, std::string_view name, F&& f, A&&... args) {
  if constexpr (check_spawnable<F, A...>()) {
    struct Closure {
      std::decay_t<F> fn;
      std::tuple<std::decay_t<A>...> args;
      JoinState<void> st;
      ScopeChild rec;
      static void run(void* p) noexcept {
        auto* c = static_cast<Closure*>(p);
        store_result(&c->st, [c] { (void)invoke_fiber_fn<F, A...>(c->fn, c->args); });
        std::destroy_at(&c->args);
        std::destroy_at(&c->fn);
        scope_child_end(&c->st);
        join_finish(&c->st);  // destroys st in place (its exception) and lets the slot go
      }
    };
    SpawnSlot slot = spawn_begin(sizeof(Closure), alignof(Closure), name);
    Closure* c;
    try {
      c = ::new (slot.storage) Closure{std::forward<F>(f), {std::forward<A>(args)...}, {}, {scope}};
    } catch (...) {
      spawn_abort(slot.fiber);
      throw;
    }
    c->st.refs.store(1, std::memory_order_relaxed);  // the fiber's; published by spawn_commit
    c->st.destroy = [](JoinStateBase* b) { std::destroy_at(static_cast<JoinState<void>*>(b)); };
    c->st.fiber_id = slot.id;
    c->st.fiber = slot.fiber;
    scope_child_begin(&c->rec, &c->st);
    spawn_commit(slot.fiber, &Closure::run);
  }
}
}  // namespace detail

class Scope {
 public:
  Scope() = default;
  // Cancels children still running and waits for all of them (a
  // cancellation-shielded wait); never throws. A failure nobody waited for
  // stays here and is dropped.
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

  // Starts a child running f(args...) (as weft::go, std::stop_token first
  // parameter included). Its exception reaches both its join() and wait().
  // Started after cancel(): it starts cancelled. Call on a fiber.
  template <class F, class... A>
  WEFT_ALWAYS_INLINE auto go(F&& f, A&&... args) -> JoinHandle<detail::Result<F, A...>> {
    return detail::go_impl(&core_, {}, std::forward<F>(f), std::forward<A>(args)...);
  }
  template <class F, class... A>
  WEFT_ALWAYS_INLINE auto go(Named n, F&& f, A&&... args) -> JoinHandle<detail::Result<F, A...>> {
    return detail::go_impl(&core_, n.name, std::forward<F>(f), std::forward<A>(args)...);
  }
  // A child without a handle (its value, if any, is dropped).
  template <class F, class... A>
  WEFT_ALWAYS_INLINE void spawn(F&& f, A&&... args) {
    detail::scope_spawn_impl(&core_, {}, std::forward<F>(f), std::forward<A>(args)...);
  }
  template <class F, class... A>
  WEFT_ALWAYS_INLINE void spawn(Named n, F&& f, A&&... args) {
    detail::scope_spawn_impl(&core_, n.name, std::forward<F>(f), std::forward<A>(args)...);
  }

  // Parks until every child has ended. The first child to end with an
  // exception other than Cancelled cancels the others, and wait() rethrows
  // it once all have ended. A cancellation point: throws Cancelled only when
  // the calling fiber itself is cancelled (the children run on; leaving the
  // scope cancels them).
  void wait();
  // Cancels every child, and children started later. Idempotent; any thread.
  void cancel() noexcept;
  bool cancelled() const noexcept;
  // Stop is requested when the scope is cancelled (by cancel() or a failure).
  std::stop_token stop_token() const noexcept { return core_.src.get_token(); }

 private:
  detail::ScopeCore core_;
};

}  // namespace weft
