// uring_test.cpp: choosing the io_uring poller, falling back to epoll, and
// the completion model's own promises (built only with liburing). The
// netpoll suites themselves run again with WEFT_POLLER=io_uring (meson
// tests *-uring).
#include <gtest/gtest.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
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
#include <string>

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

INSTANTIATE_TEST_SUITE_P(Pollers, Completion, ::testing::Values(Options::Poller::Epoll, Options::Poller::IoUring),
                         [](const auto& info) { return info.param == Options::Poller::Epoll ? "epoll" : "io_uring"; });

}  // namespace
