// uring_test.cpp: choosing the io_uring poller, falling back to epoll, and
// the completion model's own promises (built only with liburing). The
// netpoll suites themselves run again with WEFT_POLLER=io_uring (meson
// tests *-uring).
#include <gtest/gtest.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "net_util.hpp"

using namespace std::chrono_literals;
using weft::Clock;
using weft::Options;
using weft::net::TcpListener;
using weft::net::TcpStream;

namespace {

// What the runtime's poller descriptor is: "anon_inode:[io_uring]" or
// "anon_inode:[eventpoll]" among the process's descriptors.
bool has_fd_of(const char* what) {
  bool found = false;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) {
      char path[300], target[128];
      std::snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
      ssize_t n = ::readlink(path, target, sizeof target - 1);
      if (n > 0 && std::string(target, static_cast<std::size_t>(n)) == what) found = true;
    }
    ::closedir(d);
  }
  return found;
}

// One round trip on loopback: the poller works.
void echo_once() {
  auto ln = TcpListener::listen("127.0.0.1:0");
  auto h = weft::go([&] {
    auto s = ln.accept();
    char b[5];
    std::size_t n = 0;
    while (n < 5) n += s.read({b + n, 5 - n});
    s.write_all({b, 5});
  });
  auto c = TcpStream::connect(ln.local_addr());
  c.write_all("hello");
  char b[5];
  std::size_t n = 0;
  while (n < 5) n += c.read({b + n, 5 - n});
  EXPECT_EQ(std::string(b, 5), "hello");
  h.join();
}

TEST(Uring, OptionsChooseThePoller) {
  weft::run(
      [] {
        echo_once();
        EXPECT_TRUE(has_fd_of("anon_inode:[io_uring]"));
        EXPECT_FALSE(has_fd_of("anon_inode:[eventpoll]"));
      },
      {.workers = 2, .poller = Options::Poller::IoUring});
  weft::run(
      [] {
        echo_once();
        EXPECT_TRUE(has_fd_of("anon_inode:[eventpoll]"));
        EXPECT_FALSE(has_fd_of("anon_inode:[io_uring]"));
      },
      {.workers = 2, .poller = Options::Poller::Epoll});
}

TEST(Uring, BadEnvironmentValueIsAClearError) {
  const char* old = std::getenv("WEFT_POLLER");
  std::string saved = old ? old : "";
  ::setenv("WEFT_POLLER", "iouring", 1);
  try {
    weft::run([] {});
    ADD_FAILURE() << "WEFT_POLLER=iouring accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("WEFT_POLLER must be \"epoll\" or \"io_uring\", got \"iouring\""),
              std::string::npos)
        << e.what();
  }
  if (old) ::setenv("WEFT_POLLER", saved.c_str(), 1); else ::unsetenv("WEFT_POLLER");
}

// As a container's seccomp profile does: io_uring_setup fails with EPERM.
// The runtime falls back to epoll with one line on stderr and works.
void seccomp_child() {
  sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof f / sizeof f[0]), f};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    std::fprintf(stderr, "seccomp: %s\n", std::strerror(errno));
    std::_Exit(2);
  }
  bool epoll = false;
  weft::run(
      [&] {
        echo_once();
        epoll = has_fd_of("anon_inode:[eventpoll]");
      },
      {.workers = 2, .poller = Options::Poller::IoUring});
  std::fprintf(stderr, "echo done\n");
  std::_Exit(epoll && !::testing::Test::HasFailure() ? 0 : 1);
}

TEST(UringDeath, UnavailableFallsBackToEpollWithOneLine) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(seccomp_child(), ::testing::ExitedWithCode(0),
              "weft: io_uring unavailable \\(io_uring_setup: Operation not permitted\\): using epoll\n(.|\n)*echo done");
}

class Completion : public ::testing::TestWithParam<Options::Poller> {};

// A read that timed out returned only after its operation was withdrawn:
// nothing the peer sends afterwards lands in its buffer, and nothing is
// lost: the next read gets it. The interleaving: the reader's operation is
// in flight (io_uring) or it is parked for readiness (epoll); the deadline
// fires; the read throws Timeout; only then does the peer write. On a
// ring, a cancellation that the kernel had not yet carried out when the
// call returned would let that write land in the old buffer (checked by
// its guard bytes) and vanish from the stream (checked by the next read).
TEST_P(Completion, TimedOutReadLeavesNoLateWriteAndLosesNothing) {
  const int rounds = net_test::scaled(200, 20);
  weft::run(
      [rounds] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto c = TcpStream::connect(ln.local_addr());
        auto s = ln.accept();
        for (int i = 0; i < rounds; i++) {
          char buf[8];
          std::memset(buf, '#', sizeof buf);
          s.set_read_deadline(Clock::now() + 200us);
          try {
            std::size_t n = s.read(buf);
            FAIL() << "round " << i << ": read " << n << " bytes nobody sent";
          } catch (const weft::Timeout&) {
          }
          char want = static_cast<char>('a' + i % 26);
          c.write_all({&want, 1});
          weft::this_fiber::sleep_for(50us);  // time for a late completion to land
          EXPECT_EQ(std::string(buf, sizeof buf), std::string(sizeof buf, '#')) << "round " << i;
          s.set_read_deadline(Clock::now() + 5s);
          char got = 0;
          ASSERT_EQ(s.read({&got, 1}), 1u) << "round " << i;
          ASSERT_EQ(got, want) << "round " << i;
        }
      },
      {.workers = 2, .poller = GetParam()});
}

// A socket closed by another fiber while a read is in flight: the reader
// throws SocketClosed, and the descriptor number is not reused while the
// kernel may still touch it (the read's bracket holds the close).
TEST_P(Completion, CloseWithReadsInFlightWakesEveryReader) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto c = TcpStream::connect(ln.local_addr());
        auto s = ln.accept();
        weft::WaitGroup wg;
        std::atomic<int> closed{0};
        for (int i = 0; i < 4; i++) {
          wg.add(1);
          weft::go([&] {
            char b[16];
            try {
              (void)s.read(b);
            } catch (const weft::net::SocketClosed&) {
              closed++;
            }
            wg.done();
          });
        }
        net_test::wait_parked(4);  // all four parked (ring: in flight)
        s.close();
        wg.wait();
        EXPECT_EQ(closed.load(), 4);
      },
      {.workers = 2, .poller = GetParam()});
}

// main returns while a detached fiber's read is in flight (one worker, so
// nobody else polls). Shutdown wakes the fiber with Cancel; on a ring it
// must withdraw the read and wait for the completion before unwinding,
// and that wait must itself be immune to shutdown's cancel: park() cancels
// every park of a fiber not yet unwinding, so a reader that re-parked
// without marking itself unwinding spun on its own cancel and the one
// worker never polled for the completion it waited for (seen: run() never
// returned).
TEST_P(Completion, ShutdownUnwindsAFiberWithAReadInFlight) {
  for (unsigned workers : {1u, 2u}) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    std::atomic<bool> unwound{false};
    weft::run(
        [&] {
          weft::spawn([&] {
            struct Mark {
              std::atomic<bool>& u;
              ~Mark() { u = true; }
            } mark{unwound};
            auto s = TcpStream::adopt(sv[0]);
            char b[8];
            (void)s.read(b);  // in flight until shutdown withdraws it
            ADD_FAILURE() << "read returned with nothing sent";
          });
          net_test::wait_parked(1);  // the read is in flight
        },
        {.workers = workers, .poller = GetParam()});
    EXPECT_TRUE(unwound.load()) << workers << " workers";
    ::close(sv[1]);
  }
}

// wait_readable on a ring takes what arrived into the socket's stash;
// reads then drain the stash before the kernel's queue. A stream larger
// than one provided buffer, read in small pieces after each wait, must
// arrive whole and in order, and the end of stream after it.
TEST_P(Completion, WaitReadableThenSmallReadsKeepTheStreamInOrder) {
  const std::size_t total = static_cast<std::size_t>(net_test::scaled(200000, 20000));
  weft::run(
      [total] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto c = TcpStream::connect(ln.local_addr());
        auto s = ln.accept();
        auto writer = weft::go([&c, total] {
          std::string chunk(1000, '\0');
          for (std::size_t off = 0; off < total; off += chunk.size()) {
            for (std::size_t i = 0; i < chunk.size(); i++) chunk[i] = static_cast<char>((off + i) % 251);
            c.write_all({chunk.data(), std::min(chunk.size(), total - off)});
          }
          c.shutdown_write();
        });
        std::size_t got = 0;
        bool eof = false, ordered = true;
        while (!eof) {
          s.wait_readable();
          char b[97];  // odd-sized: pieces straddle the stash's end
          while (auto n = s.try_read(b)) {
            if (*n == 0) {
              eof = true;
              break;
            }
            for (std::size_t i = 0; i < *n; i++) ordered &= b[i] == static_cast<char>((got + i) % 251);
            got += *n;
          }
        }
        writer.join();
        EXPECT_TRUE(ordered);
        EXPECT_EQ(got, total);
        char b[8];
        EXPECT_EQ(s.read(b), 0u);  // still the end
      },
      {.workers = 2, .poller = GetParam()});
}

// Several fibers in wait_readable on one socket (one receive in flight on
// a ring, the others queued behind it): each wakes, and what they read
// together is what was sent.
TEST_P(Completion, SeveralWaitersOnOneSocketShareWhatArrives) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto c = TcpStream::connect(ln.local_addr());
        auto s = ln.accept();
        std::atomic<std::size_t> got{0};
        weft::WaitGroup wg;
        for (int i = 0; i < 3; i++) {
          wg.add(1);
          weft::go([&] {
            for (;;) {
              s.wait_readable();
              char b[64];
              std::size_t n = 0;
              while (auto k = s.try_read(b)) {
                if (*k == 0) {
                  got += n;
                  wg.done();
                  return;
                }
                n += *k;
              }
              got += n;
            }
          });
        }
        net_test::wait_parked(3);  // all three waiting
        for (int i = 0; i < 50; i++) {
          c.write_all("0123456789");
          weft::this_fiber::sleep_for(100us);
        }
        c.shutdown_write();
        wg.wait();
        EXPECT_EQ(got.load(), 500u);
      },
      {.workers = 2, .poller = GetParam()});
}

// A completion owed to a worker that makes no system call. On an io_uring
// runtime the kernel finishes a receive in task work of the thread that
// submitted it, and (cooperative task work, uring.hpp) no longer
// interrupts that thread to do so. Here the one worker submitted the
// receive, in its poll while main slept; then main only yields, which
// makes no system call, while a thread outside the runtime sends the
// byte. The worker's polls between fibers must still bring the receive's
// completion (they see the kernel's task-work flag and enter for it; the
// timer tick's return to user mode would run it too): the reader runs
// while main yields.
TEST_P(Completion, ACompletionOwedToAWorkerThatOnlySwitchesFibersArrives) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        std::string addr = ln.local_addr();
        std::atomic<bool> send{false}, done{false};
        std::thread peer([&] {
          int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          sockaddr_in sa{};
          sa.sin_family = AF_INET;
          sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1))));
          sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
          auto give_up = std::chrono::steady_clock::now() + 20s;
          while (ok && !send.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(1ms);
          if (ok) ok = ::write(fd, "x", 1) == 1;
          while (ok && !done.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(1ms);
          if (fd >= 0) ::close(fd);
        });
        ln.set_deadline(Clock::now() + 10s);  // a failed connect ends the test with Timeout, not a hang
        auto s = ln.accept();
        std::atomic<bool> got{false};
        auto reader = weft::go([&] {
          char b = 0;
          s.set_read_deadline(Clock::now() + 15s);
          if (s.read({&b, 1}) == 1 && b == 'x') got = true;
        });
        net_test::wait_parked(1);                // the reader's receive is queued
        weft::this_fiber::sleep_for(20ms);       // the worker, idle, submits it in its poll
        send = true;
        auto until = Clock::now() + 10s;
        while (!got.load() && Clock::now() < until) weft::this_fiber::yield();
        EXPECT_TRUE(got.load()) << "the byte's completion did not arrive in 10 s while the worker only switched fibers";
        done = true;
        reader.join();
        peer.join();
      },
      {.workers = 1, .poller = GetParam()});
}

// ---- a listener's multishot accept (io_uring) and the same contract on epoll ----

// The connections waiting in a listening socket's kernel accept queue
// (TCP_INFO reports it as tcpi_unacked for a listener).
int kernel_backlog(int listen_fd) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (::getsockopt(listen_fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return -1;
  return static_cast<int>(ti.tcpi_unacked);
}

// Parks (bounded) until the listener's kernel queue holds `want` (or, with
// `or_less`, at most that); true if it did.
bool backlog_reaches(const TcpListener& ln, int want, bool or_less = false) {
  auto until = Clock::now() + 10s;
  for (int n; (n = kernel_backlog(ln.fd())) != want && !(or_less && n >= 0 && n < want);) {
    if (Clock::now() > until) return false;
    weft::this_fiber::sleep_for(1ms);
  }
  return true;
}

// Waits on a fiber (bounded) for a plain thread's flag.
bool flag_set(const std::atomic<bool>& f) {
  auto until = Clock::now() + 20s;
  while (!f.load() && Clock::now() < until) weft::this_fiber::sleep_for(1ms);
  return f.load();
}

// On io_uring the first accept arms the listener's multishot accept and
// the kernel accepts ahead into the listener's queue, which stops the
// request (a cancel) once it holds 64 connections and arms it again when
// a later accept finds the queue empty. The interleaving: 70 peers
// connect; the first accept takes one and arms the request; the kernel
// takes at least 64 of the other 69 (what is left in its own queue:
// checked; it takes all 69 when they came in one batch of completions),
// which stops the request; then 80 more peers connect, while the server
// takes the queued ones and, the queue empty, arms the request again for
// the rest. Every connection is accepted exactly once, each carrying its
// own id. On epoll the kernel keeps all 69 in its queue (checked) and the
// same accepts follow.
TEST_P(Completion, AcceptAheadBeyondItsBoundStopsRearmsAndTakesEveryConnectionOnce) {
  weft::run(
      [] {
        const bool ring = GetParam() == Options::Poller::IoUring;
        auto ln = TcpListener::listen("127.0.0.1:0");
        ln.set_deadline(Clock::now() + 20s);  // a failed peer ends the test with Timeout, not a hang
        const std::string addr = ln.local_addr();
        constexpr int kFirst = 70, kTotal = 150;
        std::atomic<bool> first_in{false}, go_on{false};
        std::atomic<int> failed{0};
        std::vector<int> peer(kTotal, -1);
        std::thread peers([&] {
          auto open = [&](int i) {
            peer[i] = net_test::raw_connect(addr);
            std::uint32_t id = static_cast<std::uint32_t>(i);
            if (peer[i] < 0 || ::write(peer[i], &id, sizeof id) != sizeof id) failed++;
          };
          for (int i = 0; i < kFirst; i++) open(i);
          first_in = true;
          auto until = std::chrono::steady_clock::now() + 20s;
          while (!go_on.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
          for (int i = kFirst; i < kTotal; i++) open(i);
        });
        std::vector<TcpStream> conns;
        conns.push_back(ln.accept());
        ASSERT_TRUE(flag_set(first_in));
        constexpr int kAhead = 64;  // AcceptQueue::kMax
        EXPECT_TRUE(ring ? backlog_reaches(ln, kFirst - 1 - kAhead, true) : backlog_reaches(ln, kFirst - 1))
            << "kernel queue: " << kernel_backlog(ln.fd());
        go_on = true;
        while (static_cast<int>(conns.size()) < kTotal) conns.push_back(ln.accept());
        std::vector<int> seen(kTotal, 0);
        for (auto& c : conns) {
          std::uint32_t id = 0;
          std::size_t got = 0;
          c.set_read_deadline(Clock::now() + 10s);
          while (got < sizeof id) got += c.read({reinterpret_cast<char*>(&id) + got, sizeof id - got});
          ASSERT_LT(id, static_cast<std::uint32_t>(kTotal));
          seen[id]++;
        }
        peers.join();
        EXPECT_EQ(failed.load(), 0);
        for (int i = 0; i < kTotal; i++) EXPECT_EQ(seen[i], 1) << "connection " << i;
        for (int fd : peer)
          if (fd >= 0) ::close(fd);
      },
      {.workers = 2, .poller = GetParam()});
}

// Closing a listener the kernel accepted ahead for (io_uring): the
// connections no fiber took are closed with it (each peer reads end of
// stream or a reset, not a timeout), the port is free at once (the socket
// stops listening in close: a new listener binds it), and every
// descriptor goes (the listener's own when the request's last completion
// is reaped, a poll later). On epoll the same holds of the kernel's queue.
TEST_P(Completion, ClosingAListenerClosesWhatItAcceptedAheadAndFreesThePort) {
  weft::run(
      [] {
        const bool ring = GetParam() == Options::Poller::IoUring;
        TcpListener::listen("127.0.0.1:0");  // the poller's own descriptors exist from here on
        const std::size_t fds_before = net_test::stable_fds();
        constexpr int kPeers = 10;
        std::vector<int> peer(kPeers, -1);
        std::vector<int> verdict(kPeers, -2);  // -2: not read
        std::atomic<bool> connected{false}, closed{false}, read_done{false};
        {
          auto ln = TcpListener::listen("127.0.0.1:0");
          ln.set_deadline(Clock::now() + 20s);
          const std::string addr = ln.local_addr();
          std::thread peers([&] {
            for (int i = 0; i < kPeers; i++) peer[i] = net_test::raw_connect(addr);
            connected = true;
            auto until = std::chrono::steady_clock::now() + 20s;
            while (!closed.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
            for (int i = 1; i < kPeers; i++) {  // peer 0 is the accepted one
              char c;
              ssize_t r = peer[i] < 0 ? -1 : ::recv(peer[i], &c, 1, 0);
              verdict[i] = r == 0 ? 0 : r < 0 ? errno : 1;
            }
            read_done = true;
          });
          TcpStream first = ln.accept();
          ASSERT_TRUE(flag_set(connected));
          EXPECT_TRUE(backlog_reaches(ln, ring ? 0 : kPeers - 1)) << "kernel queue: " << kernel_backlog(ln.fd());
          ln.close();
          EXPECT_NO_THROW(TcpListener::listen(addr).close())
              << "the port is still taken after the listener closed";
          closed = true;
          EXPECT_TRUE(flag_set(read_done));
          peers.join();
          for (int i = 1; i < kPeers; i++)
            EXPECT_TRUE(verdict[i] == 0 || verdict[i] == ECONNRESET) << "peer " << i << ": " << verdict[i];
          first.close();
          for (int fd : peer)
            if (fd >= 0) ::close(fd);
        }
        EXPECT_EQ(net_test::settled_fds(fds_before), fds_before);
      },
      {.workers = 2, .poller = GetParam()});
}

// A runtime that ends while a listener's multishot accept is armed, with
// a connection accepted ahead in its queue, and the listener closed only
// after the runtime: the runtime's teardown reaps the request's last
// completion (its bracket ends, no ring is touched later), and the close
// closes the queued connection and the listener. No descriptor is left.
TEST_P(Completion, ARuntimeEndingWithAnAcceptArmedLeavesNoDescriptor) {
  const std::size_t fds_before = net_test::open_fds();
  std::optional<TcpListener> ln;
  int peer[2] = {-1, -1};
  weft::run(
      [&] {
        const bool ring = GetParam() == Options::Poller::IoUring;
        ln.emplace(TcpListener::listen("127.0.0.1:0"));
        ln->set_deadline(Clock::now() + 20s);
        const std::string addr = ln->local_addr();
        std::atomic<bool> connected{false};
        std::thread peers([&] {
          for (int& p : peer) p = net_test::raw_connect(addr);
          connected = true;
        });
        ASSERT_TRUE(flag_set(connected));
        peers.join();
        ln->accept().close();
        EXPECT_TRUE(backlog_reaches(*ln, ring ? 0 : 1)) << "kernel queue: " << kernel_backlog(ln->fd());
      },
      {.workers = 2, .poller = GetParam()});
  ln->close();
  char c;
  ssize_t r = ::recv(peer[1], &c, 1, 0);  // end of stream (closed from weft's queue) or a reset (the kernel's)
  EXPECT_TRUE(r == 0 || (r < 0 && errno == ECONNRESET)) << "the waiting connection was not closed: " << r;
  for (int fd : peer) ::close(fd);
  ln.reset();
  EXPECT_EQ(net_test::open_fds(), fds_before);
}

INSTANTIATE_TEST_SUITE_P(Pollers, Completion, ::testing::Values(Options::Poller::Epoll, Options::Poller::IoUring),
                         [](const auto& info) { return info.param == Options::Poller::Epoll ? "epoll" : "io_uring"; });

}  // namespace
