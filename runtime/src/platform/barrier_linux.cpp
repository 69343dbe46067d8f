// barrier_linux.cpp: heavy_barrier() on membarrier (barrier.hpp has the
// argument). Shared state: the command chosen once (call_once).
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

#include "barrier.hpp"

namespace weft::rt::platform {
namespace {
int g_barrier_cmd = -1;  // set once (call_once)
std::once_flag g_barrier_once;
}  // namespace

bool heavy_barrier() noexcept {
  std::call_once(g_barrier_once, [] {
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
      g_barrier_cmd = MEMBARRIER_CMD_PRIVATE_EXPEDITED;
    else if (syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) > 0)
      g_barrier_cmd = MEMBARRIER_CMD_GLOBAL;
  });
  return g_barrier_cmd >= 0 && syscall(SYS_membarrier, g_barrier_cmd, 0, 0) == 0;
}

}  // namespace weft::rt::platform
