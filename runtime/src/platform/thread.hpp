// platform/thread.hpp: what the runtime asks the OS about threads: an id,
// the list of the process's threads (the deadlock detector's "no thread
// but weft's own"), whether a thread sleeps in the kernel (the monitor's
// stuck reports), a thread's CPU-time clock and the bounds of its stack
// (ASan's switch annotations).
//
// Implementations: thread_linux.cpp (gettid, /proc/self/task, /proc's stat
// state, pthread_getattr_np) and thread_generic.cpp (POSIX only; FreeBSD and
// macOS use it too for now). What the generic one cannot do, and what that
// costs:
// - list_threads() returns false: the monitor cannot know that no foreign
//   thread exists, so deadlock detection is off (no false alarm; a
//   deadlocked program hangs as it would without weft's detector). A port
//   can add FreeBSD's sysctl(KERN_PROC_PID | KERN_PROC_INC_THREAD) or
//   macOS's task_threads() here.
// - thread_sleeping() returns Unknown: the monitor then treats a worker
//   that has run one fiber for the threshold as stuck even when it was only
//   kept off the CPU (more runnable threads than cores): a report too many,
//   never a stuck worker missed.
// - thread_stack() returns false: the scheduler context's bounds are
//   unknown to ASan's fiber annotations (only ASan builds use them).
// No shared state: the generic thread_id() is a thread_local drawn from a
// process-wide counter (relaxed: only uniqueness matters).
#pragma once

#include <time.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace weft::rt::platform {

using ThreadId = std::int64_t;  // nonzero, unique among live threads

ThreadId thread_id() noexcept;
// The ids of every thread of the process; false if the OS cannot say.
bool list_threads(std::vector<ThreadId>& out);
enum class Sleeping { No, Yes, Unknown };
// Whether thread t (of this process) is asleep in a system call.
Sleeping thread_sleeping(ThreadId t) noexcept;
// Thread t's name (as pthread_setname_np sets it), or "" if it is gone or
// the OS cannot say (generic: always "").
std::string thread_name(ThreadId t);
// The calling thread's CPU-time clock; false if none.
bool thread_cpu_clock(clockid_t* out) noexcept;
// The calling thread's stack (lowest address, size); false if unknown.
bool thread_stack(const void** bottom, std::size_t* size) noexcept;

}  // namespace weft::rt::platform
