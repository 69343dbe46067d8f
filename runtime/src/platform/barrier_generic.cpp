// barrier_generic.cpp: heavy_barrier() as a seq_cst fence, paired with the
// seq_cst fence that light_barrier() is on these platforms (barrier.hpp has
// the argument).
#include "barrier.hpp"

namespace weft::rt::platform {

bool heavy_barrier() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return true;
}

}  // namespace weft::rt::platform
