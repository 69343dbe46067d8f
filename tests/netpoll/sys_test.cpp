// sys_test.cpp: the netpoller against system calls that misbehave on
// purpose. This executable defines epoll_wait, epoll_pwait2 and connect
// itself: the definitions here take precedence over libc's (and over the
// sanitizers' weak interceptors), so a test can make them fail, return
// ENOSYS or EINTR, or record their arguments; untouched, they forward to
// the kernel with syscall(2). Tests that change process-wide state (the
// cached ENOSYS fallback) run in a child (death-test machinery). Internal
// headers (poller.hpp, addr.hpp) are used for the backend and the deadline
// split. Built with -Dpoller=kqueue on libkqueue (WEFT_LIBKQUEUE), it
// defines kevent instead (forwarding to libkqueue's through dlsym), since
// libkqueue's own epoll_wait calls must not be intercepted; the
// epoll-only tests are skipped there and the poller tests check the
// kevent timeout and error instead.
#include <gtest/gtest.h>

#include "net_util.hpp"
#include <weft/weft.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#ifdef WEFT_LIBKQUEUE
#include <dlfcn.h>
#include <sys/event.h>
#else
#include <sys/epoll.h>
#endif
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <vector>

#include "addr.hpp"
#include "poller.hpp"

using namespace std::chrono_literals;
using weft::Clock;
using weft::net::TcpListener;
using weft::net::TcpStream;

namespace {
#ifndef WEFT_LIBKQUEUE
std::atomic<bool> g_pwait2_enosys{false};  // epoll_pwait2 reports ENOSYS
std::atomic<int> g_pwait2_calls{0};
std::atomic<int> g_last_wait_ms{-2};       // the last finite epoll_wait timeout
#endif
std::atomic<int> g_wait_calls{0};          // epoll_wait (kevent) calls with a finite timeout
std::atomic<bool> g_wait_no_block{false};  // epoll_wait returns 0 at once (records only)
std::atomic<int> g_wait_errno{0};          // epoll_wait/epoll_pwait2 fail with this errno...
std::atomic<int> g_wait_fails{0};          // ...this many times (< 0: forever)
std::atomic<int> g_connect_eintr{0};       // connects to interrupt after the kernel started them

bool take_failure(int* e) {
  int n = g_wait_fails.load();
  while (n != 0) {
    if (n < 0 || g_wait_fails.compare_exchange_weak(n, n - 1)) {
      *e = g_wait_errno.load();
      return true;
    }
  }
  return false;
}
}  // namespace

#ifdef WEFT_LIBKQUEUE
std::atomic<long long> g_last_kevent_ms{-2};  // the last finite wait's timeout, ms

extern "C" int kevent(int kq, const struct kevent* changes, int nchanges, struct kevent* events, int nevents,
                      const struct timespec* timeout) {
  using Fn = int (*)(int, const struct kevent*, int, struct kevent*, int, const struct timespec*);
  static Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "kevent"));
  if (nevents > 0 && nchanges == 0) {  // a wait, not a change
    if (int e; take_failure(&e)) {
      errno = e;
      return -1;
    }
    if (timeout) {
      g_wait_calls++;
      g_last_kevent_ms = static_cast<long long>(timeout->tv_sec) * 1000 + timeout->tv_nsec / 1'000'000;
    }
    if (g_wait_no_block.load() && timeout) return 0;
  }
  return real(kq, changes, nchanges, events, nevents, timeout);
}
#else
extern "C" int epoll_pwait2(int epfd, struct epoll_event* events, int maxevents, const struct timespec* timeout,
                            const sigset_t* sigmask) {
  g_pwait2_calls++;
  if (int e; take_failure(&e)) {
    errno = e;
    return -1;
  }
  if (g_pwait2_enosys.load()) {
    errno = ENOSYS;
    return -1;
  }
  return static_cast<int>(::syscall(SYS_epoll_pwait2, epfd, events, maxevents, timeout, sigmask, 8));
}

extern "C" int epoll_wait(int epfd, struct epoll_event* events, int maxevents, int timeout) {
  if (int e; take_failure(&e)) {
    errno = e;
    return -1;
  }
  if (timeout >= 0) {
    g_wait_calls++;
    g_last_wait_ms = timeout;
  }
  if (g_wait_no_block.load()) return 0;
  return static_cast<int>(::syscall(SYS_epoll_pwait, epfd, events, maxevents, timeout, nullptr, 8));
}
#endif

extern "C" int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  long rc = ::syscall(SYS_connect, fd, addr, len);
  int n = g_connect_eintr.load();
  if (n > 0 && (rc == 0 || errno == EINPROGRESS) && g_connect_eintr.compare_exchange_strong(n, n - 1)) {
    errno = EINTR;  // as if a signal came after the kernel started connecting
    return -1;
  }
  return static_cast<int>(rc);
}

namespace {

// Found by reading, proved: after epoll_pwait2 reported ENOSYS (kernels
// before 5.11), every timed poll tried it again before falling back (one
// wasted system call per idle wait). Now the first ENOSYS is remembered.
#ifndef WEFT_LIBKQUEUE
void pwait2_fallback_child() {
  g_pwait2_enosys = true;
  weft::run(
      [] {
        TcpListener::listen("127.0.0.1:0");                               // installs the netpoller
        for (int i = 0; i < 20; i++) weft::this_fiber::sleep_for(2ms);  // idle, timed polls
      },
      {.workers = 1, .poller = weft::Options::Poller::Epoll});
  // The old code called epoll_pwait2 once per timed poll (20 here unless
  // the machine is very loaded; 2 or more in any case).
  int pw = g_pwait2_calls.load(), w = g_wait_calls.load();
  std::fprintf(stderr, "pwait2 calls %d, timed epoll_wait calls %d\n", pw, w);
  std::_Exit(pw == 1 && w >= 1 ? 0 : 1);
}

TEST(NetSys, Pwait2FallbackIsCached) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(pwait2_fallback_child(), ::testing::ExitedWithCode(0), "pwait2 calls");
}
#endif

// Found by reading, proved: with the epoll_wait fallback a deadline more
// than ~24.8 days away overflowed the int of milliseconds (30 days became
// -1702967296: wait forever). As Go, it is clamped to 1e9 ms.
#ifdef WEFT_LIBKQUEUE
// The kqueue backend clamps a wait to 1e6 s (Darwin's kevent refuses more
// than 1e8 s with EINVAL), as Go does.
TEST(NetSys, HugeTimeoutIsClampedNotInfinite) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        g_wait_no_block = true;
        weft::net::detail::Backend b;
        weft::net::detail::PollEvent out[8];
        int bad = 0;
        b.wait(Clock::now() + std::chrono::hours(24 * 365 * 100), out, 8);
        long long huge = g_last_kevent_ms.load();
        if (huge <= 0 || huge > 1'000'000'000LL) bad |= 1;
        b.wait(Clock::now() + 1500ms, out, 8);
        long long normal = g_last_kevent_ms.load();
        if (normal < 0 || normal > 1500) bad |= 2;
        b.wait(Clock::time_point::min(), out, 8);
        if (g_last_kevent_ms.load() != 0) bad |= 4;
        std::fprintf(stderr, "timeouts: 100 years -> %lld ms, 1.5 s -> %lld ms\n", huge, normal);
        std::_Exit(bad);
      },
      ::testing::ExitedWithCode(0), "timeouts: ");
}
#else
TEST(NetSys, HugeTimeoutIsClampedNotInfinite) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        g_pwait2_enosys = true;
        g_wait_no_block = true;
        weft::net::detail::Backend b;
        weft::net::detail::PollEvent out[8];
        int bad = 0;
        b.wait(Clock::now() + std::chrono::hours(24 * 30), out, 8);
        int huge = g_last_wait_ms.load();
        if (huge <= 0 || huge > 1'000'000'000) bad |= 1;
        b.wait(Clock::now() + 1500ms, out, 8);
        int normal = g_last_wait_ms.load();
        if (normal < 1 || normal > 1500) bad |= 2;
        b.wait(Clock::time_point::min(), out, 8);
        if (g_last_wait_ms.load() != 0) bad |= 4;
        std::fprintf(stderr, "timeouts: 30 days -> %d ms, 1.5 s -> %d ms\n", huge, normal);
        std::_Exit(bad);
      },
      ::testing::ExitedWithCode(0), "timeouts: ");
}
#endif

// Every descriptor the poller opens is close-on-exec, so a program started
// with exec inherits none (the kqueue descriptor had no FD_CLOEXEC; on
// libkqueue its pipe end happens to have it, on BSD/macOS kqueue() sets
// none). Counts the descriptors that appear with a Backend and one armed
// socket (on libkqueue: its own, and the socket's duplicate).
TEST(NetSys, PollerDescriptorsAreCloseOnExec) {
  auto fds = [] {
    std::vector<int> v;
    if (DIR* d = ::opendir("/proc/self/fd")) {
      while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') v.push_back(std::atoi(e->d_name));
      ::closedir(d);
    }
    return v;
  };
  std::vector<int> before = fds();
  weft::net::detail::Backend b;
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(s, 0);
  b.arm(s, 1);
  int checked = 0;
  for (int fd : fds()) {
    if (std::find(before.begin(), before.end(), fd) != before.end() || ::fcntl(fd, F_GETFD) < 0) continue;
    EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC) << "descriptor " << fd << " inherits across exec";
    checked++;
  }
  EXPECT_GE(checked, 2);  // the poller's own and the socket at least
  b.disarm(s);
  ::close(s);
}

// Found by reading, proved: a poller error (the epoll descriptor broken)
// was thrown from Netpoller::poll into the scheduler's noexcept idle path:
// std::terminate, with libstdc++'s generic "terminate called after
// throwing" line and no word of where. Now it is a clear message and an
// abort.
void poller_error_child() {
  ::alarm(10);
  weft::run(
      [] {
        TcpListener::listen("127.0.0.1:0");
        g_wait_errno = EBADF;
        g_wait_fails = -1;
        weft::this_fiber::sleep_for(5ms);  // the idle worker polls
      },
      {.workers = 1, .poller = weft::Options::Poller::Epoll});
}

#ifdef WEFT_LIBKQUEUE
constexpr const char* kPollerFatal =
    "weft: netpoller: fatal: weft: kevent\\(wait\\): Bad file descriptor \\(polling for I/O on a worker's idle path\\)";
#else
constexpr const char* kPollerFatal =
    "weft: netpoller: fatal: weft: epoll_wait: Bad file descriptor \\(polling for I/O on a worker's idle path\\)";
#endif

TEST(NetSysDeath, PollerErrorIsAClearFatalMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(poller_error_child(), kPollerFatal);
}

// EINTR from the poller is survivable: it returns no events and the worker
// polls again; timers and sockets keep working.
TEST(NetSys, PollerEintrIsRetried) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        g_wait_errno = EINTR;
        g_wait_fails = 10;
        for (int i = 0; i < 5; i++) weft::this_fiber::sleep_for(1ms);
        auto c = TcpStream::connect(ln.local_addr());
        auto s = ln.accept();
        c.write_all("ok");
        char b[2];
        std::size_t n = 0;
        s.set_read_deadline(Clock::now() + 5s);
        while (n < 2) n += s.read({b + n, 2 - n});
        EXPECT_EQ(std::string(b, 2), "ok");
        g_wait_fails = 0;
      },
      {.workers = 1, .poller = weft::Options::Poller::Epoll});
}

// Found by reading, proved: connect() retried itself after EINTR; the
// kernel was already connecting, so the retry reported EALREADY and connect
// threw it. Now EINTR means in progress, as in Go. On loopback the
// handshake has usually completed by the retry (which then returns 0, so
// the old code passed the first half); against a listener whose backlog is
// full (SYNs dropped) it is still pending: the old code threw EALREADY at
// once, the fixed one waits and times out.
TEST(NetSys, ConnectInterruptedIsInProgress) {
  weft::run(
      [] {
        auto raw = net_test::full_backlog_listener();
        int lfd = raw.fd;
        std::string addr = raw.addr;
        std::vector<TcpStream> fill;
        bool full = false;
        for (int i = 0; i < 16 && !full; i++) {
          try {
            fill.push_back(TcpStream::connect(addr, 100ms));
          } catch (const weft::Timeout&) {
            full = true;
          }
        }
        ASSERT_TRUE(full);
        g_connect_eintr = 1;
        try {
          TcpStream::connect(addr, 100ms);
          ADD_FAILURE() << "connected to a full backlog";
        } catch (const weft::Timeout&) {
        } catch (const std::exception& e) {
          ADD_FAILURE() << "interrupted connect: " << e.what();
        }
        EXPECT_EQ(g_connect_eintr.load(), 0);
        ::close(lfd);
      },
      {.workers = 1});
  for (unsigned workers : {1u, 2u}) {
    weft::run(
        [] {
          auto ln = TcpListener::listen("127.0.0.1:0");
          g_connect_eintr = 1;
          auto c = TcpStream::connect(ln.local_addr());
          EXPECT_EQ(g_connect_eintr.load(), 0);  // the interruption happened
          auto s = ln.accept();
          s.set_read_deadline(Clock::now() + 5s);
          c.write_all("x");
          char b;
          EXPECT_EQ(s.read({&b, 1}), 1u);
          EXPECT_EQ(b, 'x');
        },
        {.workers = workers});
  }
}

// Found by reading, proved (on the function connect_until now uses): the
// whole connect deadline went to the first address, so an address that
// never answers left nothing for the others. Go's partialDeadline splits
// the time left evenly among the addresses left, with a 2 s floor.
TEST(NetSys, PartialDeadlineSplitsTheTimeLeft) {
  using weft::net::detail::partial_deadline;
  const auto t = Clock::now();
  EXPECT_EQ(partial_deadline(t, t + 10s, 2), t + 5s);
  EXPECT_EQ(partial_deadline(t, t + 10s, 10), t + 2s);  // floor
  EXPECT_EQ(partial_deadline(t, t + 1s, 3), t + 1s);    // less than the floor left: all of it
  EXPECT_EQ(partial_deadline(t, t + 10s, 1), t + 10s);  // the last address gets the rest
  EXPECT_EQ(partial_deadline(t, Clock::time_point::max(), 3), Clock::time_point::max());
  EXPECT_EQ(partial_deadline(t, t - 1s, 3), t - 1s);  // passed: the caller times out
}

}  // namespace
