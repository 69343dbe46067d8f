// thread_linux.cpp: platform/thread.hpp on Linux (gettid, /proc). No shared
// state.
#include <dirent.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "thread.hpp"

namespace weft::rt::platform {

ThreadId thread_id() noexcept { return static_cast<ThreadId>(syscall(SYS_gettid)); }

bool list_threads(std::vector<ThreadId>& out) {
  DIR* d = opendir("/proc/self/task");
  if (!d) return false;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') out.push_back(static_cast<ThreadId>(std::atoll(e->d_name)));
  closedir(d);
  return true;
}

Sleeping thread_sleeping(ThreadId t) noexcept {
  char path[64], buf[512];
  std::snprintf(path, sizeof path, "/proc/self/task/%lld/stat", static_cast<long long>(t));
  FILE* f = std::fopen(path, "re");
  if (!f) return Sleeping::No;  // gone (or no /proc): as if running
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  // The state follows the command name, which may itself hold ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p || p[1] != ' ') return Sleeping::No;
  return p[2] == 'S' || p[2] == 'D' ? Sleeping::Yes : Sleeping::No;
}

std::string thread_name(ThreadId t) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%lld/comm", static_cast<long long>(t));
  std::string name;
  if (FILE* f = std::fopen(path, "re")) {
    char buf[32] = {};
    if (std::fgets(buf, sizeof buf, f)) name = buf;
    std::fclose(f);
  }
  if (!name.empty() && name.back() == '\n') name.pop_back();
  return name;
}

bool thread_cpu_clock(clockid_t* out) noexcept { return pthread_getcpuclockid(pthread_self(), out) == 0; }

bool thread_stack(const void** bottom, std::size_t* size) noexcept {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return false;
  void* addr = nullptr;
  bool ok = pthread_attr_getstack(&attr, &addr, size) == 0;
  pthread_attr_destroy(&attr);
  *bottom = addr;
  return ok;
}

}  // namespace weft::rt::platform
