// weft/blocking.hpp: weft::blocking(f), for calls that must block an OS
// thread (API.md: file I/O, name resolution, third-party clients): f runs
// on a separate, bounded, growable thread pool while the calling fiber
// parks. A runtime facility (runtime/src/blocking.cpp); the netpoller uses
// it to resolve host names.
#pragma once

#include <optional>
#include <type_traits>
#include <utility>

#include <weft/park.hpp>

namespace weft {

namespace detail {
// Runs job(arg) on the blocking pool while the calling fiber parks (or
// directly when called off the runtime). Rethrows what job threw.
void run_blocking(void (*job)(void*), void* arg);
}  // namespace detail

// Runs f() on a separate, bounded, growable thread pool while the calling
// fiber parks, and returns its result or rethrows its exception. For calls
// that block a thread: file I/O, name resolution, third-party clients.
// If the runtime shuts down meanwhile, the fiber unwinds and the result is
// dropped once f returns.
template <class F>
auto blocking(F&& f) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  struct Job {
    F* f;
    std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> out{};
    static void run(void* p) {
      auto* j = static_cast<Job*>(p);
      if constexpr (std::is_void_v<R>) {
        (*j->f)();
      } else {
        j->out.emplace((*j->f)());
      }
    }
  } job{&f};
  detail::run_blocking(&Job::run, &job);
  if constexpr (!std::is_void_v<R>) return std::move(*job.out);
}

}  // namespace weft
