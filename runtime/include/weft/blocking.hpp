// weft/blocking.hpp: weft::blocking(f), for calls that must block an OS
// thread (API.md: file I/O, name resolution, third-party clients): f runs
// on a separate, bounded, growable thread pool while the calling fiber
// parks. A runtime facility (runtime/src/blocking.cpp); the netpoller uses
// it to resolve host names.
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include <weft/park.hpp>
#include <weft/sync.hpp>

namespace weft {

namespace detail {
// A job shared by the calling fiber and a pool thread (two references).
struct BlockingJob {
  void (*run)(BlockingJob*) = nullptr;              // runs f, keeps its result (may throw)
  void (*destroy)(BlockingJob*) noexcept = nullptr;
  std::exception_ptr error;                          // what run threw
  SpinLock lock;
  bool done = false;       // guarded by lock
  bool abandoned = false;  // guarded by lock: the caller was cancelled and left
  rt::Parker parker;       // guarded by lock
  std::atomic<int> refs{2};
};
// Runs j on the blocking pool while the calling fiber parks. Returns once j
// is done. If the fiber is cancelled first, gives j to the pool (which
// drops it, result and all, once f returns) and throws Cancelled; at
// shutdown it waits for j instead, then unwinds.
void run_blocking(BlockingJob* j);
void blocking_release(BlockingJob* j) noexcept;  // drops one reference
}  // namespace detail

// Runs f() on a separate, bounded, growable thread pool while the calling
// fiber parks, and returns its result or rethrows its exception. For calls
// that block a thread: file I/O, name resolution, third-party clients.
// A cancellation point: a cancelled fiber throws Cancelled at once, and f
// runs on to its end on its thread, its result dropped. So f is moved (or
// copied) into the job and must not refer to the caller's locals: capture
// by value what it uses. Off the runtime (a plain thread) f runs inline.
template <class F>
auto blocking(F&& f) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  if (!rt::current_fiber()) return std::invoke(f);
  struct Job : detail::BlockingJob {
    std::decay_t<F> fn;
    std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> out{};
    explicit Job(F&& g) : fn(std::forward<F>(g)) {
      run = [](detail::BlockingJob* b) {
        auto* j = static_cast<Job*>(b);
        if constexpr (std::is_void_v<R>) {
          std::invoke(j->fn);
        } else {
          j->out.emplace(std::invoke(j->fn));
        }
      };
      destroy = [](detail::BlockingJob* b) noexcept { delete static_cast<Job*>(b); };
    }
  };
  auto* j = new Job(std::forward<F>(f));
  detail::run_blocking(j);  // on a throw, j is the pool's alone
  struct Release {
    Job* j;
    ~Release() { detail::blocking_release(j); }
  } rel{j};
  if (j->error) std::rethrow_exception(j->error);
  if constexpr (!std::is_void_v<R>) return std::move(*j->out);
}

}  // namespace weft
