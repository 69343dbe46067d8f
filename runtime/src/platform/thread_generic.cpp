// thread_generic.cpp: platform/thread.hpp with POSIX only (what it cannot
// do, and what that costs, is in thread.hpp). Shared state: the id counter
// (relaxed fetch_add: only uniqueness matters).
#include <pthread.h>
#include <unistd.h>

#include <atomic>

#include "thread.hpp"

namespace weft::rt::platform {

namespace {
std::atomic<ThreadId> g_next_id{1};
}

ThreadId thread_id() noexcept {
  thread_local ThreadId id = g_next_id.fetch_add(1, std::memory_order_relaxed);
  return id;
}

bool list_threads(std::vector<ThreadId>&) { return false; }

Sleeping thread_sleeping(ThreadId) noexcept { return Sleeping::Unknown; }

std::string thread_name(ThreadId) { return {}; }

bool thread_cpu_clock(clockid_t* out) noexcept {
#if defined(_POSIX_THREAD_CPUTIME) && _POSIX_THREAD_CPUTIME >= 0
  return pthread_getcpuclockid(pthread_self(), out) == 0;
#else
  (void)out;
  return false;
#endif
}

bool thread_stack(const void**, std::size_t*) noexcept { return false; }

}  // namespace weft::rt::platform
