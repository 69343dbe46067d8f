// epoll.cpp: the Linux backend of the poller contract (poller.hpp).
// Each fd is registered once with EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET; an
// eventfd registered with a reserved key carries wake().
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "poller.hpp"

namespace weft::net::detail {

struct Backend::Raw {
  epoll_event evs[Backend::kMaxEvents];
};

namespace {
constexpr std::uint64_t kWakeKey = ~std::uint64_t{0};
}

Backend::Backend() : raw_(new Raw) {
  qfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (qfd_ < 0) throw std::system_error(errno, std::system_category(), "weft: epoll_create1");
  wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakefd_ < 0) {
    int e = errno;
    ::close(qfd_);
    throw std::system_error(e, std::system_category(), "weft: eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeKey;
  if (epoll_ctl(qfd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) {
    int e = errno;
    ::close(wakefd_);
    ::close(qfd_);
    throw std::system_error(e, std::system_category(), "weft: epoll_ctl(eventfd)");
  }
}

Backend::~Backend() {
  ::close(wakefd_);
  ::close(qfd_);
}

void Backend::arm(int fd, std::uint64_t key) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = key;
  if (epoll_ctl(qfd_, EPOLL_CTL_ADD, fd, &ev) != 0)
    throw std::system_error(errno, std::system_category(), "weft: epoll_ctl(ADD)");
}

void Backend::disarm(int fd) noexcept {
  epoll_event ev{};
  epoll_ctl(qfd_, EPOLL_CTL_DEL, fd, &ev);
}

void Backend::forget(int) noexcept {}

namespace {
// epoll_pwait2 (nanosecond timeouts, Linux 5.11) is tried once; after an
// ENOSYS every wait uses epoll_wait. Relaxed: a racing first use only makes
// one more failing call.
std::atomic<bool> g_no_pwait2{false};
// epoll_wait takes an int of milliseconds; as Go, a longer wait is clamped
// to 1e9 ms (11.6 days): the poller wakes early, finds nothing, waits again.
constexpr long kMaxWaitMs = 1'000'000'000;
}  // namespace

int Backend::wait(Clock::time_point deadline, PollEvent* out, int max) {
  auto& evs = raw_->evs;
  if (max > kMaxEvents) max = kMaxEvents;
  int n;
  if (deadline == Clock::time_point::max()) {
    n = epoll_wait(qfd_, evs, max, -1);
  } else {
    timespec ts{};
    if (deadline != Clock::time_point::min()) {
      auto now = Clock::now();
      if (deadline > now) {
        // deadline - now cannot overflow (both are non-negative ticks).
        auto d = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
        ts.tv_sec = static_cast<time_t>(d / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(d % 1'000'000'000);
      }
    }
    n = -1;
    errno = ENOSYS;
    if (!g_no_pwait2.load(std::memory_order_relaxed)) {
      n = epoll_pwait2(qfd_, evs, max, &ts, nullptr);
      if (n < 0 && errno == ENOSYS) g_no_pwait2.store(true, std::memory_order_relaxed);
    }
    if (n < 0 && errno == ENOSYS) {  // kernels before 5.11: millisecond timeout, rounded up
      long ms = ts.tv_sec >= kMaxWaitMs / 1000 ? kMaxWaitMs
                                               : static_cast<long>(ts.tv_sec) * 1000 + (ts.tv_nsec + 999'999) / 1'000'000;
      n = epoll_wait(qfd_, evs, max, static_cast<int>(ms));
    }
  }
  if (n < 0) {
    if (errno == EINTR) return 0;
    throw std::system_error(errno, std::system_category(), "weft: epoll_wait");
  }
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (evs[i].data.u64 == kWakeKey) {
      // Drain first, then clear. The other order lost wakes for good: a
      // wake() between the clear and the drain set the flag and wrote, the
      // drain ate its write, and the flag stayed set with nothing pending,
      // so every later wake() returned early (seen: a worker asleep in
      // epoll_wait(-1) forever at shutdown). In this order a wake() that
      // still sees the flag set is dropped, but this poll is returning and
      // its caller looks at the runtime's state again; seq_cst on both
      // sides orders the waker's state writes before that look.
      std::uint64_t v;
      while (::read(wakefd_, &v, sizeof v) > 0) {
      }
      wake_pending_.store(false, std::memory_order_seq_cst);
      continue;
    }
    std::uint32_t e = evs[i].events;
    bool err = e & (EPOLLERR | EPOLLHUP);
    out[k++] = PollEvent{evs[i].data.u64, err || (e & (EPOLLIN | EPOLLRDHUP)), err || (e & EPOLLOUT), 0};
  }
  return k;
}

void Backend::wake() noexcept {
  if (wake_pending_.exchange(true, std::memory_order_seq_cst)) return;
  std::uint64_t one = 1;
  ssize_t r = ::write(wakefd_, &one, sizeof one);
  (void)r;  // EAGAIN means the counter is already non-zero: awake anyway
}

}  // namespace weft::net::detail
