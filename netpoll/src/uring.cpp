// uring.cpp: the ring's setup, submission and wait (uring.hpp states the
// invariants and the memory-ordering argument).
#include "uring.hpp"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace weft::net::detail {

namespace {
// SQ entries: a poll submits at most this many at once (more are submitted
// as the SQ fills). CQ entries: completions a burst can post before a poll
// reaps them; the kernel keeps overflow (IORING_FEAT_NODROP), so this only
// sizes the fast path. 16 bytes each.
constexpr unsigned kSqEntries = 1024;
constexpr unsigned kCqEntries = 16384;

// The wake read's buffer. Never freed: at teardown the kernel cancels the
// read asynchronously after the ring's descriptor is closed.
std::uint64_t g_wake_sink;
}  // namespace

std::unique_ptr<Ring> Ring::create(std::string* why) {
  std::unique_ptr<Ring> r(new Ring);
  io_uring_params p{};
  // Cooperative task work (5.19; uring.hpp): 20-30% less CPU per echo
  // round trip (bench/README.md). Older kernels refuse the flags: retried
  // without them.
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  p.cq_entries = kCqEntries;
  int e = io_uring_queue_init_params(kSqEntries, &r->ring_, &p);
  r->multishot_accept_ = e == 0;
  if (e == -EINVAL) {
    p = io_uring_params{};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = kCqEntries;
    e = io_uring_queue_init_params(kSqEntries, &r->ring_, &p);
  }
  if (e < 0) {
    *why = std::string("io_uring_setup: ") + std::strerror(-e);
    return nullptr;
  }
  // Timeouts on the wait without an SQE (5.11), no dropped completions
  // (5.5): everything older lacks something relied on here.
  constexpr unsigned kNeeded = IORING_FEAT_EXT_ARG | IORING_FEAT_NODROP;
  if ((p.features & kNeeded) != kNeeded) {
    io_uring_queue_exit(&r->ring_);
    *why = "the kernel's io_uring lacks IORING_FEAT_EXT_ARG or IORING_FEAT_NODROP (Linux 5.11 or later)";
    return nullptr;
  }
  r->wakefd_ = eventfd(0, EFD_CLOEXEC);
  if (r->wakefd_ < 0) {
    e = errno;
    io_uring_queue_exit(&r->ring_);
    throw std::system_error(e, std::system_category(), "weft: eventfd");
  }
  r->arm_wake();
  r->setup_pool();
  return r;
}

void Ring::setup_pool() noexcept {
  std::size_t ring_bytes = kPoolBufs * sizeof(io_uring_buf);
  void* rb = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* bufs = ::mmap(nullptr, std::size_t{kPoolBufs} * kPoolBufSize, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (rb == MAP_FAILED || bufs == MAP_FAILED) {
    if (rb != MAP_FAILED) ::munmap(rb, ring_bytes);
    if (bufs != MAP_FAILED) ::munmap(bufs, std::size_t{kPoolBufs} * kPoolBufSize);
    return;
  }
  auto* br = static_cast<io_uring_buf_ring*>(rb);
  io_uring_buf_ring_init(br);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(br);
  reg.ring_entries = kPoolBufs;
  reg.bgid = kPoolGroup;
  if (io_uring_register_buf_ring(&ring_, &reg, 0) != 0) {  // before 5.19: wait_readable polls instead
    ::munmap(rb, ring_bytes);
    ::munmap(bufs, std::size_t{kPoolBufs} * kPoolBufSize);
    return;
  }
  int mask = io_uring_buf_ring_mask(kPoolBufs);
  for (unsigned i = 0; i < kPoolBufs; i++)
    io_uring_buf_ring_add(br, static_cast<char*>(bufs) + std::size_t{i} * kPoolBufSize, kPoolBufSize,
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  io_uring_buf_ring_advance(br, static_cast<int>(kPoolBufs));
  pool_ring_ = br;
  pool_ = static_cast<char*>(bufs);
}

void Ring::pool_copy_and_return(std::uint32_t cqe_flags, char* dst, std::size_t n) noexcept {
  auto bid = static_cast<unsigned short>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
  char* b = pool_ + std::size_t{bid} * kPoolBufSize;
  if (n) std::memcpy(dst, b, n);
  std::lock_guard<weft::detail::SpinLock> g(pool_lock_);
  io_uring_buf_ring_add(pool_ring_, b, kPoolBufSize, bid, io_uring_buf_ring_mask(kPoolBufs), 0);
  io_uring_buf_ring_advance(pool_ring_, 1);
}

Ring::~Ring() {
  io_uring_queue_exit(&ring_);
  ::close(wakefd_);
  // Every receive that could pick a pool buffer has completed (its fiber
  // waited for it), so the kernel holds none of them now.
  if (pool_) {
    ::munmap(pool_ring_, kPoolBufs * sizeof(io_uring_buf));
    ::munmap(pool_, std::size_t{kPoolBufs} * kPoolBufSize);
  }
}

io_uring_sqe* Ring::next_sqe() {
  for (;;) {
    if (io_uring_sqe* s = io_uring_get_sqe(&ring_)) return s;
    // Full: hand the queue to the kernel (it copies SQEs at submission).
    unsigned n = flush();
    int r = enter(n, 0, Clock::time_point::min());
    if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN)
      throw std::system_error(-r, std::system_category(), "weft: io_uring_enter (submit)");
  }
}

unsigned Ring::flush() noexcept {
  io_uring_sq* sq = &ring_.sq;
  unsigned tail = sq->sqe_tail;
  if (sq->sqe_head != tail) {
    sq->sqe_head = tail;
    io_uring_smp_store_release(sq->ktail, tail);
  }
  pending_.store(false, std::memory_order_relaxed);
  return tail - io_uring_smp_load_acquire(sq->khead);
}

int Ring::enter(unsigned submit, unsigned wait, Clock::time_point deadline, bool get_events) noexcept {
  unsigned flags = get_events ? IORING_ENTER_GETEVENTS : 0;
  io_uring_getevents_arg arg{};
  __kernel_timespec ts{};
  if (wait > 0) {
    flags |= IORING_ENTER_GETEVENTS;
    if (deadline != Clock::time_point::max()) {
      auto now = Clock::now();
      if (deadline > now) {
        auto d = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
        ts.tv_sec = d / 1'000'000'000;
        ts.tv_nsec = d % 1'000'000'000;
      }
      arg.ts = reinterpret_cast<std::uint64_t>(&ts);
      flags |= IORING_ENTER_EXT_ARG;
    }
  }
  int r = (flags & IORING_ENTER_EXT_ARG)
              ? io_uring_enter2(ring_.ring_fd, submit, wait, flags, reinterpret_cast<sigset_t*>(&arg), sizeof arg)
              : io_uring_enter(ring_.ring_fd, submit, wait, flags, nullptr);
  return r;  // liburing's wrappers return -errno
}

void Ring::cancel(std::uint64_t target) {
  queue(kIgnore, [&](io_uring_sqe* s) { io_uring_prep_cancel64(s, target, 0); });
}

void Ring::kick() noexcept {
  if (!waiting_.load(std::memory_order_seq_cst)) return;
  unsigned n;
  {
    std::lock_guard<weft::detail::SpinLock> g(sq_lock_);
    n = flush();
  }
  if (n > 0) (void)enter(n, 0, Clock::time_point::min());
}

void Ring::arm_wake() {
  queue(kWake, [&](io_uring_sqe* s) { io_uring_prep_read(s, wakefd_, &g_wake_sink, sizeof g_wake_sink, 0); });
}

void Ring::wake() noexcept {
  if (wake_pending_.exchange(true, std::memory_order_seq_cst)) return;
  std::uint64_t one = 1;
  ssize_t r = ::write(wakefd_, &one, sizeof one);
  (void)r;
}

}  // namespace weft::net::detail
