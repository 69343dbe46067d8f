// kqueue.cpp: the BSD/macOS backend of the poller contract (poller.hpp), also
// built on Linux against libkqueue (meson -Dpoller=kqueue). Each fd gets an
// EVFILT_READ and an EVFILT_WRITE filter with EV_CLEAR (edge-triggered);
// wake() triggers an EVFILT_USER event.
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "poller.hpp"

namespace weft::net::detail {

struct Backend::Raw {
  struct kevent evs[Backend::kMaxEvents];
};

namespace {
constexpr uintptr_t kWakeIdent = 0x77656674;  // "weft"
}

Backend::Backend() : raw_(new Raw) {
  qfd_ = kqueue();
  if (qfd_ < 0) throw std::system_error(errno, std::system_category(), "weft: kqueue");
  struct kevent ev;
  EV_SET(&ev, kWakeIdent, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, nullptr);
  if (kevent(qfd_, &ev, 1, nullptr, 0, nullptr) < 0) {
    int e = errno;
    ::close(qfd_);
    throw std::system_error(e, std::system_category(), "weft: kevent(EVFILT_USER)");
  }
}

Backend::~Backend() { ::close(qfd_); }

void Backend::arm(int fd, std::uint64_t key) {
  struct kevent ev[2];
  void* udata = reinterpret_cast<void*>(static_cast<uintptr_t>(key));
  EV_SET(&ev[0], fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, udata);
  EV_SET(&ev[1], fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, udata);
  if (kevent(qfd_, ev, 2, nullptr, 0, nullptr) < 0)
    throw std::system_error(errno, std::system_category(), "weft: kevent(EV_ADD)");
}

void Backend::disarm(int fd) noexcept {
  struct kevent ev[2];
  EV_SET(&ev[0], fd, EVFILT_READ, EV_DELETE, 0, 0, nullptr);
  EV_SET(&ev[1], fd, EVFILT_WRITE, EV_DELETE, 0, 0, nullptr);
  kevent(qfd_, ev, 2, nullptr, 0, nullptr);
}

int Backend::wait(Clock::time_point deadline, PollEvent* out, int max) {
  auto& evs = raw_->evs;
  if (max > kMaxEvents) max = kMaxEvents;
  timespec ts{};
  timespec* tp = &ts;
  if (deadline == Clock::time_point::max()) {
    tp = nullptr;
  } else if (deadline != Clock::time_point::min()) {
    auto d = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now()).count();
    // Darwin's kevent fails with EINVAL past 1e8 s; as Go, clamp to 1e6 s
    // (the poller wakes early, finds nothing, waits again).
    constexpr std::int64_t kMaxWaitNs = 1'000'000LL * 1'000'000'000LL;
    if (d > kMaxWaitNs) d = kMaxWaitNs;
    if (d > 0) {
      ts.tv_sec = d / 1'000'000'000;
      ts.tv_nsec = d % 1'000'000'000;
    }
  }
  int n = kevent(qfd_, nullptr, 0, evs, max, tp);
  if (n < 0) {
    if (errno == EINTR) return 0;
    throw std::system_error(errno, std::system_category(), "weft: kevent(wait)");
  }
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (evs[i].filter == EVFILT_USER) {
      wake_pending_.store(false, std::memory_order_relaxed);
      continue;
    }
    bool err = evs[i].flags & (EV_EOF | EV_ERROR);
    auto key = static_cast<std::uint64_t>(reinterpret_cast<uintptr_t>(evs[i].udata));
    out[k++] = PollEvent{key, err || evs[i].filter == EVFILT_READ, err || evs[i].filter == EVFILT_WRITE};
  }
  return k;
}

void Backend::wake() noexcept {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  struct kevent ev;
  EV_SET(&ev, kWakeIdent, EVFILT_USER, 0, NOTE_TRIGGER, 0, nullptr);
  kevent(qfd_, &ev, 1, nullptr, 0, nullptr);
}

}  // namespace weft::net::detail
