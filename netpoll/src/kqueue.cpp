// kqueue.cpp: the BSD/macOS backend of the poller contract (poller.hpp), also
// built on Linux against the libkqueue emulation (meson -Dpoller=kqueue,
// which defines WEFT_LIBKQUEUE there). Each fd gets an EVFILT_READ and an
// EVFILT_WRITE filter with EV_CLEAR (edge-triggered); wake() triggers an
// EVFILT_USER event. Platforms without EVFILT_USER (OpenBSD, NetBSD < 10)
// are refused by meson: no pipe wake is written.
//
// libkqueue differs from a kernel kqueue in three ways this file deals with
// (all measured on libkqueue master f966089, see README "kqueue on Linux"):
// 1. A knote outlives close(fd) (its BUGS.md): EV_ADD on a reused fd number
//    then only modifies the stale knote, the new file is never watched, and
//    its fibers sleep forever. So every fd is disarmed (EV_DELETE) before it
//    is closed (kDisarmBeforeClose, pollfd.cpp's final_close), and an fd
//    closed without that (a socket closed off any worker of the runtime) is
//    remembered, and its stale knotes are deleted before the number is
//    armed again.
// 2. One epoll event of an fd watched for both directions is copied out as
//    two kevents, into as many slots as epoll events were asked for: when
//    the slots run out, the rest of the epoll events (already consumed,
//    edge-triggered) are dropped for good: lost edges, lost wakes (seen:
//    echo tests with more than 64 busy connections hung). So on libkqueue
//    EVFILT_WRITE watches a duplicate of the fd (F_DUPFD_CLOEXEC): each
//    epoll registration then has one filter, each epoll event is one kevent,
//    and nothing overflows. It costs one descriptor per socket, closed by
//    disarm(). The table fd -> duplicate is process-wide (aux_table, below).
// 3. On EPOLLERR it reads SO_ERROR into the event's fflags, which clears
//    the socket's error: the next recv/send/SO_ERROR no longer reports it
//    (a reset read as a clean EOF, a refused connect waited forever). The
//    error goes out in PollEvent::error (on every event of that fd in the
//    batch); pollfd.cpp keeps it for the incarnation and the socket calls
//    surface it (take_error, settle_error).
//
// Shared state: wake_pending_ (see wake() and wait()); aux_table (libkqueue
// only), guarded by g_aux_mu, a leaf lock taken by arm/disarm/forget with
// nothing else held.
#include <fcntl.h>
#include <sys/event.h>
#ifdef WEFT_LIBKQUEUE
#include <sys/prctl.h>
#endif
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <system_error>
#include <utility>
#include <vector>

#include <weft/park.hpp>

#include "poller.hpp"

namespace weft::net::detail {

struct Backend::Raw {
  struct kevent evs[Backend::kMaxEvents];
};

namespace {
constexpr uintptr_t kWakeIdent = 0x77656674;  // "weft"

[[noreturn]] void throw_sys(int e, const char* what) { throw std::system_error(e, std::system_category(), what); }

#ifdef WEFT_LIBKQUEUE
// What libkqueue holds for an fd number: the duplicate watched for writes
// and the Backend that armed it; `stale` when the number was closed
// without EV_DELETE (forget, or a disarm through another runtime's
// Backend), so knotes may remain in the kqueue that armed it.
struct Aux {
  int wfd = -1;
  const Backend* owner = nullptr;
  bool stale = false;
};
std::mutex g_aux_mu;
std::vector<Aux>& aux_table() {
  static auto* v = new std::vector<Aux>;  // immortal: sockets may close during static destruction
  return *v;
}
Aux& aux(int fd) {  // under g_aux_mu
  auto& v = aux_table();
  if (static_cast<std::size_t>(fd) >= v.size()) v.resize(static_cast<std::size_t>(fd) + 1);
  return v[static_cast<std::size_t>(fd)];
}
#endif

// Removes fd's read filter and the write filter of wfd (the fd itself, or
// on libkqueue its duplicate); returns how many were there.
int delete_filters(int qfd, int rfd, int wfd) noexcept {
  struct kevent ev[2];
  EV_SET(&ev[0], rfd, EVFILT_READ, EV_DELETE, 0, 0, nullptr);
  EV_SET(&ev[1], wfd, EVFILT_WRITE, EV_DELETE, 0, 0, nullptr);
  // One at a time: a failed change (ENOENT: never added) must not keep the
  // other from being applied.
  int ok = 0;
  for (auto& e : ev) ok += kevent(qfd, &e, 1, nullptr, 0, nullptr) == 0;
  return ok;
}
}  // namespace

Backend::Backend() : raw_(new Raw) {
#ifdef WEFT_LIBKQUEUE
  // libkqueue starts up to two threads of its own inside kqueue(), and
  // waits for both to run: "libkqueue_mon" (names itself; frees kqueues
  // whose descriptor was closed) and the EVFILT_SIGNAL dispatcher (unnamed:
  // it inherits the name of the thread that called kqueue()). Neither ever
  // touches a fiber, but the deadlock check counts any thread it does not
  // know as a possible waker, which would switch it off for good
  // (HACKING.md, Deadlock detection). So this thread carries a name of its
  // own across the call, the dispatcher inherits it, and both names are
  // weft's own. A dispatcher started by the program's own use of libkqueue
  // stays foreign (the check is then off: no false report).
  char own[17] = {};
  bool renamed = ::prctl(PR_GET_NAME, own, 0, 0, 0) == 0 && ::prctl(PR_SET_NAME, "libkqueue_sig", 0, 0, 0) == 0;
  rt::mark_internal_thread_name("libkqueue_mon");
  rt::mark_internal_thread_name("libkqueue_sig");
  qfd_ = kqueue();
  int kq_errno = errno;
  if (renamed) ::prctl(PR_SET_NAME, own, 0, 0, 0);
  errno = kq_errno;
#else
  qfd_ = kqueue();
#endif
  if (qfd_ < 0) throw_sys(errno, "weft: kqueue");
  // kqueue() takes no close-on-exec flag (FreeBSD's kqueuex and NetBSD's
  // kqueue1 do, not everywhere): set it, as Go does, so a program started
  // by exec does not inherit the descriptor (libkqueue's pipe end has it
  // already: harmless there).
  if (::fcntl(qfd_, F_SETFD, FD_CLOEXEC) != 0) {
    int e = errno;
    ::close(qfd_);
    throw_sys(e, "weft: fcntl(kqueue, FD_CLOEXEC)");
  }
  struct kevent ev;
  EV_SET(&ev, kWakeIdent, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, nullptr);
  if (kevent(qfd_, &ev, 1, nullptr, 0, nullptr) < 0) {
    int e = errno;
    ::close(qfd_);
    throw_sys(e, "weft: kevent(EVFILT_USER)");
  }
}

Backend::~Backend() { ::close(qfd_); }

void Backend::arm(int fd, std::uint64_t key) {
  int wfd = fd;
#ifdef WEFT_LIBKQUEUE
  wfd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (wfd < 0) throw_sys(errno, "weft: kevent(EV_ADD): dup");
  bool stale_fd, stale_wfd;
  {
    std::lock_guard<std::mutex> g(g_aux_mu);
    stale_fd = aux(fd).stale;
    stale_wfd = aux(wfd).stale;
    aux(fd).stale = aux(wfd).stale = false;
  }
  // Stale knotes of a number closed without EV_DELETE: delete them first,
  // else EV_ADD below would only modify them (point 1 above).
  if (stale_fd) delete_filters(qfd_, fd, fd);
  if (stale_wfd) delete_filters(qfd_, wfd, wfd);
#endif
  struct kevent ev[2];
  void* udata = reinterpret_cast<void*>(static_cast<uintptr_t>(key));
  EV_SET(&ev[0], fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, udata);
  EV_SET(&ev[1], wfd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, udata);
  if (kevent(qfd_, ev, 2, nullptr, 0, nullptr) < 0) {
    // Never half a registration: the read filter may be in while the
    // write filter failed (the changes apply in order).
    int e = errno;
    delete_filters(qfd_, fd, wfd);
    if (wfd != fd) ::close(wfd);
    throw_sys(e, "weft: kevent(EV_ADD)");
  }
#ifdef WEFT_LIBKQUEUE
  std::lock_guard<std::mutex> g(g_aux_mu);
  aux(fd) = Aux{wfd, this, false};
#endif
}

void Backend::disarm(int fd) noexcept {
#ifdef WEFT_LIBKQUEUE
  int wfd;
  {
    std::lock_guard<std::mutex> g(g_aux_mu);
    Aux& a = aux(fd);
    if (a.owner != this || a.wfd < 0) {
      wfd = -1;
    } else {
      wfd = a.wfd;
      a = Aux{};
    }
  }
  if (wfd < 0) {  // armed by another runtime's Backend (or never)
    forget(fd);
    return;
  }
  delete_filters(qfd_, fd, wfd);
  ::close(wfd);
#else
  delete_filters(qfd_, fd, fd);
#endif
}

void Backend::forget(int fd) noexcept {
#ifdef WEFT_LIBKQUEUE
  // No kqueue at hand (closed off the runtime's workers): close the
  // duplicate, or the socket would never really close, and remember that
  // both numbers' knotes are stale.
  Aux a;
  {
    std::lock_guard<std::mutex> g(g_aux_mu);
    a = std::exchange(aux(fd), Aux{});
    if (a.wfd >= 0) aux(fd).stale = aux(a.wfd).stale = true;
  }
  if (a.wfd >= 0) ::close(a.wfd);
#else
  (void)fd;
#endif
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
    if (d > kMaxWaitNs) d = kMaxWaitNs;
    if (d > 0) {
      ts.tv_sec = static_cast<time_t>(d / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(d % 1'000'000'000);
    }
  }
  int n = kevent(qfd_, nullptr, 0, evs, max, tp);
  if (n < 0) {
    if (errno == EINTR) return 0;
    throw_sys(errno, "weft: kevent(wait)");
  }
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (evs[i].filter == EVFILT_USER) {
      // EV_CLEAR has reset the trigger as this event was returned, before
      // the clear below. A wake() between the two sees the flag still set
      // and triggers nothing, but this poll is returning and its caller
      // looks at the runtime's state again; seq_cst here and in wake()'s
      // exchange orders the waker's state writes before that look (the
      // argument of epoll.cpp, whose drain is the trigger's reset here). A
      // wake() after the clear triggers again: never lost.
      wake_pending_.store(false, std::memory_order_seq_cst);
      continue;
    }
    bool eof = evs[i].flags & (EV_EOF | EV_ERROR);
    int err = 0;
    // EV_EOF's fflags hold the socket's error (EV_ERROR's data, a failed
    // change, is not asked for here: changes are applied without an event
    // list). On libkqueue that error is gone from the socket (point 3).
    if ((evs[i].flags & EV_EOF) && evs[i].fflags != 0) err = static_cast<int>(evs[i].fflags);
    auto key = static_cast<std::uint64_t>(reinterpret_cast<uintptr_t>(evs[i].udata));
    out[k++] = PollEvent{key, eof || evs[i].filter == EVFILT_READ, eof || evs[i].filter == EVFILT_WRITE, err};
  }
  // libkqueue puts the consumed error in one of an fd's two events (the
  // first copied out); the other may be dispatched first and wake a fiber
  // whose call then finds neither the error nor data. Every event of the
  // fd in this batch carries it, so whichever is dispatched first records
  // it before its edge. (A later batch's EV_EOF event gives both edges.)
  for (int i = 0; i < k; i++)
    if (out[i].error)
      for (int j = 0; j < k; j++)
        if (out[j].key == out[i].key) out[j].error = out[i].error;
  return k;
}

void Backend::wake() noexcept {
  if (wake_pending_.exchange(true, std::memory_order_seq_cst)) return;
  struct kevent ev;
  EV_SET(&ev, kWakeIdent, EVFILT_USER, 0, NOTE_TRIGGER, 0, nullptr);
  kevent(qfd_, &ev, 1, nullptr, 0, nullptr);
}

}  // namespace weft::net::detail
