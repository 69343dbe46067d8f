// hardening_test.cpp: regression tests for issue 8 ("trust at the edges"),
// netpoll part: use after close, several waiters per direction, deadlines
// checked before the system call, wait_readable on a regular file.
// Loopback only; every wait has a deadline or a bounded peer, so a broken
// build fails instead of hanging (the hang-prone cases run in a child with
// alarm()). Verdicts never depend on timing: sleeps only widen windows.
#include <gtest/gtest.h>

#include "net_util.hpp"
#include <weft/weft.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using weft::Clock;
using weft::net::SocketClosed;
using weft::net::TcpListener;
using weft::net::TcpStream;

namespace {

using net_test::open_fds;

// f() must throw SocketClosed with errc::bad_file_descriptor.
template <class F>
void expect_closed(F&& f, const char* what) {
  try {
    f();
    ADD_FAILURE() << what << ": no exception on a closed socket";
  } catch (const SocketClosed& e) {
    EXPECT_EQ(e.code(), std::make_error_code(std::errc::bad_file_descriptor)) << what;
    EXPECT_NE(std::string(e.what()).find("use of closed socket"), std::string::npos) << what << ": " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": wrong exception: " << e.what();
  }
}

// A connected pair (client, server side), each with 5 s deadlines so that
// nothing here can hang.
using net_test::Pair;
Pair connect_pair(TcpListener& ln) { return net_test::connect_pair(ln, 5s); }

// Sends msg on a and checks that b receives exactly it.
void expect_carries(TcpStream& a, TcpStream& b, const std::string& msg) {
  a.write_all(msg);
  std::string got(msg.size(), '\0');
  std::size_t n = 0;
  while (n < got.size()) {
    std::size_t k = b.read({got.data() + n, got.size() - n});
    ASSERT_GT(k, 0u) << "EOF";
    n += k;
  }
  EXPECT_EQ(got, msg);
}

class Hardening : public net_test::WorkersParam {};

// Regression: a call on a closed socket corrupted the descriptor pool.
// Interleaving (one fiber is enough): a.close() found no call in flight, so
// it set refs to "closing, 0", closed the fd and put a's descriptor D into
// the pool. a.read() then ran op_begin on D: refs went to "closing, 1", the
// closing bit made it throw, and its op_end brought refs back to
// "closing, 0": it ran final_close a second time and put D into the pool
// again. The next two sockets b and c both got D; b.close() closed "both",
// so c.write_all() threw "use of closed socket" and the program hung on c's
// peer. Now the state word carries the incarnation's seq and op_begin
// increments only a word with its own seq, so a stale call cannot touch D.
TEST_P(Hardening, UseAfterCloseNeverAffectsAnotherSocket) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        for (int round = 0; round < 3; round++) {
          auto a = connect_pair(ln);
          a.c.close();
          a.c.close();  // twice: nothing
          EXPECT_EQ(a.c.fd(), -1);
          char buf[8];
          expect_closed([&] { a.c.read(buf); }, "read");
          expect_closed([&] { a.c.write_all("x"); }, "write_all");
          expect_closed([&] { a.c.try_read(buf); }, "try_read");
          expect_closed([&] { a.c.try_write(std::string_view("x")); }, "try_write");
          expect_closed([&] { a.c.wait_readable(); }, "wait_readable");
          expect_closed([&] { a.c.wait_writable(); }, "wait_writable");
          expect_closed([&] { a.c.set_deadline(Clock::now() + 1s); }, "set_deadline");
          expect_closed([&] { a.c.shutdown_write(); }, "shutdown_write");
          expect_closed([&] { (void)a.c.peer_addr(); }, "peer_addr");
          expect_closed([&] { (void)a.c.local_addr(); }, "local_addr");
          expect_closed([&] { a.c.set_nodelay(false); }, "set_nodelay");
          // The next sockets take the pooled descriptors: each must be its own.
          auto b = connect_pair(ln);
          auto c = connect_pair(ln);
          auto d = connect_pair(ln);
          b.c.close();
          expect_closed([&] { b.c.read(buf); }, "read after close");
          expect_carries(c.c, c.s, "c" + std::to_string(round));
          expect_carries(d.s, d.c, "d" + std::to_string(round));
          expect_carries(c.s, c.c, "back");
          EXPECT_GE(c.c.fd(), 0);
          EXPECT_NE(c.c.fd(), d.c.fd());
        }
      },
      opts());
}

// A fiber parked on a socket another fiber closes, then calling again.
TEST_P(Hardening, ParkedReaderOfAClosedSocketThrowsThenStaysClosed) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto a = connect_pair(ln);
        auto r = weft::go([&] {
          char buf[4];
          expect_closed([&] { a.c.read(buf); }, "parked read");
          expect_closed([&] { a.c.read(buf); }, "read again");
        });
        weft::this_fiber::sleep_for(10ms);  // most likely parked by now (either way: closed)
        a.c.close();
        r.join();
        auto b = connect_pair(ln);
        expect_carries(b.c, b.s, "fine");
      },
      opts());
}

// Regression: a second fiber in accept() on the same listener got EBUSY
// "another fiber is already waiting in this direction" (one waiter per
// direction). Several acceptors queue, FIFO: with one worker each acceptor
// runs until it parks before the next is spawned (spawn runs the child
// first), so the connections must go to acceptors 0, 1, 2 in order. With
// two workers the parking order is not fixed: each acceptor gets one.
TEST_P(Hardening, SeveralAcceptorsQueueInOrder) {
  weft::run(
      [workers = GetParam()] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        ln.set_deadline(Clock::now() + 10s);
        constexpr int kAcceptors = 3;
        std::vector<weft::JoinHandle<void>> acceptors;
        for (int i = 0; i < kAcceptors; i++) {
          acceptors.push_back(weft::go([&ln, i] {
            auto s = ln.accept();
            s.write_all(std::string(1, static_cast<char>('0' + i)));
          }));
        }
        std::string order;
        for (int i = 0; i < kAcceptors; i++) {
          auto c = TcpStream::connect(ln.local_addr());
          c.set_read_deadline(Clock::now() + 5s);
          char id;
          ASSERT_EQ(c.read({&id, 1}), 1u);
          order += id;
        }
        for (auto& a : acceptors) a.join();
        if (workers == 1) {
          EXPECT_EQ(order, "012");
        } else {
          std::sort(order.begin(), order.end());
          EXPECT_EQ(order, "012");
        }
      },
      // No spare worker: one thread runs fibers, whatever the load.
      weft::Options{.workers = GetParam(), .spare_workers = 0});
}

// One edge can announce several connections (both were queued before the
// poller looked): the acceptor that takes the edge accepts one and passes
// the edge on, so the second acceptor accepts the other. Without the pass
// it slept until its deadline (Timeout). With one worker the clients
// connect from a plain thread while the only worker is held in join(), so
// the poller sees both connections in one edge.
TEST_P(Hardening, OneEdgeForTwoConnectionsServesTwoAcceptors) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        ln.set_deadline(Clock::now() + 5s);
        std::atomic<int> accepted{0};
        std::vector<weft::JoinHandle<void>> acceptors;
        std::vector<TcpStream> served(2);
        for (int i = 0; i < 2; i++) {
          acceptors.push_back(weft::go([&, i] {
            served[i] = ln.accept();
            accepted++;
          }));
        }
        weft::this_fiber::sleep_for(5ms);  // both acceptors parked (most likely)
        std::vector<int> raw;
        std::thread connector([&raw, addr = ln.local_addr()] {
          for (int i = 0; i < 2; i++) {
            int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in sa{};
            sa.sin_family = AF_INET;
            sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1))));
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) raw.push_back(fd);
          }
        });
        connector.join();  // holds this worker: no poll in between (one worker)
        ASSERT_EQ(raw.size(), 2u);
        for (auto& a : acceptors) EXPECT_NO_THROW(a.join());
        EXPECT_EQ(accepted.load(), 2);
        for (int fd : raw) ::close(fd);
      },
      opts());
}

// Several readers on one stream: each byte goes to one reader; all finish.
TEST_P(Hardening, SeveralReadersShareOneStream) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto p = connect_pair(ln);
        constexpr int kReaders = 4;
        std::atomic<int> got{0};
        std::vector<weft::JoinHandle<void>> readers;
        for (int i = 0; i < kReaders; i++) {
          readers.push_back(weft::go([&] {
            char b;
            if (p.c.read({&b, 1}) == 1 && b == 'r') got++;
          }));
        }
        for (int i = 0; i < kReaders; i++) {
          p.s.write_all("r");
          weft::this_fiber::sleep_for(2ms);  // one byte at a time, most likely
        }
        for (auto& r : readers) r.join();
        EXPECT_EQ(got.load(), kReaders);
      },
      opts());
}

// Close wakes every waiter of both directions; deadline expiry wakes every
// waiter of its direction (and only those).
TEST_P(Hardening, CloseAndExpiryWakeAllWaiters) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        constexpr int kWaiters = 3;
        {
          auto p = connect_pair(ln);
          std::atomic<int> closed{0};
          std::vector<weft::JoinHandle<void>> ws;
          for (int i = 0; i < kWaiters; i++) {
            ws.push_back(weft::go([&] {
              char b[4];
              try {
                p.c.read(b);
              } catch (const SocketClosed&) {
                closed++;
              }
            }));
          }
          weft::this_fiber::sleep_for(10ms);
          p.c.close();
          for (auto& w : ws) w.join();
          EXPECT_EQ(closed.load(), kWaiters);
        }
        {
          auto p = connect_pair(ln);
          p.c.set_read_deadline(Clock::now() + 30ms);
          std::atomic<int> timeouts{0};
          std::vector<weft::JoinHandle<void>> ws;
          for (int i = 0; i < kWaiters; i++) {
            ws.push_back(weft::go([&] {
              char b[4];
              try {
                p.c.read(b);
              } catch (const weft::Timeout&) {
                timeouts++;
              }
            }));
          }
          for (auto& w : ws) w.join();
          EXPECT_EQ(timeouts.load(), kWaiters);
          // The write direction was not affected, and clearing the deadline
          // makes the read side usable again.
          expect_carries(p.c, p.s, "w");
          p.c.set_read_deadline(Clock::time_point::max());
          expect_carries(p.s, p.c, "r");
        }
        {
          ln.set_deadline(Clock::now() + 30ms);
          std::atomic<int> timeouts{0};
          std::vector<weft::JoinHandle<void>> ws;
          for (int i = 0; i < kWaiters; i++) {
            ws.push_back(weft::go([&] {
              try {
                ln.accept();
              } catch (const weft::Timeout&) {
                timeouts++;
              }
            }));
          }
          for (auto& w : ws) w.join();
          EXPECT_EQ(timeouts.load(), kWaiters);
        }
      },
      opts());
}

// Found by reading, proved: a deadline that had passed did not fail a read,
// write, try_read or accept that could proceed (the system call came first
// and succeeded). Go's prepareRead checks the deadline before the call.
TEST_P(Hardening, PassedDeadlineFailsACallThatCouldProceed) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto p = connect_pair(ln);
        p.s.write_all("xy");
        char b;
        ASSERT_EQ(p.c.read({&b, 1}), 1u);  // "y" has arrived too (one segment)
        p.c.set_read_deadline(Clock::now() - 1s);
        EXPECT_THROW(p.c.read({&b, 1}), weft::Timeout);
        EXPECT_THROW(p.c.try_read({&b, 1}), weft::Timeout);
        p.c.set_write_deadline(Clock::now() - 1s);
        EXPECT_THROW(p.c.write(std::string_view("z")), weft::Timeout);
        EXPECT_THROW(p.c.try_write(std::string_view("z")), weft::Timeout);
        p.c.set_deadline(Clock::time_point::max());
        ASSERT_EQ(p.c.read({&b, 1}), 1u);
        EXPECT_EQ(b, 'y');
        expect_carries(p.c, p.s, "ok");

        auto pending = TcpStream::connect(ln.local_addr());  // queued in the backlog
        ln.set_deadline(Clock::now() - 1s);
        EXPECT_THROW(ln.accept(), weft::Timeout);
        ln.set_deadline(Clock::time_point::max());
        auto s = ln.accept();
        EXPECT_GE(s.fd(), 0);
      },
      opts());
}

// Found by reading, proved: wait_readable() on a regular file leaked its
// dup (epoll_ctl refuses regular files with EPERM; open_desc closed
// nothing and wait_foreign did not either) and threw EPERM. A regular file
// is now always ready, as poll(2) reports it and Go treats files.
TEST(HardeningForeign, WaitOnARegularFileIsReadyAndLeaksNothing) {
  weft::run([] {
    TcpListener::listen("127.0.0.1:0");  // the netpoller's own descriptors exist from here on
    char path[] = "/tmp/weft-hardening-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::unlink(path);
    std::size_t before = open_fds();
    for (int i = 0; i < 5; i++) {
      EXPECT_NO_THROW(weft::net::wait_readable(fd));
      EXPECT_NO_THROW(weft::net::wait_writable(fd, Clock::now() + 1s));
    }
    EXPECT_THROW(weft::net::wait_readable(fd, Clock::now() - 1s), weft::Timeout);
    EXPECT_EQ(open_fds(), before);
    ::close(fd);
  });
}

// Regression: the accept back-off from EMFILE racing a close of the
// listener. Interleaving: accept() got EMFILE and slept (5 ms back-off);
// meanwhile main closed the listener (its descriptor went to the pool).
// The back-off loop then ran op_begin on that descriptor: refs went from
// "closing, 0" to "closing, 1" and its op_end ran final_close a second
// time, pooling the descriptor twice (two later sockets shared it). Now the
// stale accept throws SocketClosed and later sockets are unaffected. In a
// child (the descriptor limit must not leak into other tests), with alarm()
// so that a hang fails.
TEST_P(Hardening, AcceptBackoffRacingCloseLeavesThePoolSound) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const unsigned workers = GetParam();
  EXPECT_EXIT(
      {
        ::alarm(20);
        int rc = weft::run(
            [] {
              auto ln = TcpListener::listen("127.0.0.1:0");
              auto ln2 = TcpListener::listen("127.0.0.1:0");
              auto client = TcpStream::connect(ln.local_addr());  // pending: accept gets EMFILE
              rlimit rl{};
              getrlimit(RLIMIT_NOFILE, &rl);
              rlimit low = rl;
              low.rlim_cur = 64;
              if (setrlimit(RLIMIT_NOFILE, &low) != 0) return 10;
              std::vector<int> hog;
              hog.reserve(64);
              for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) hog.push_back(fd);
              auto acceptor = weft::go([&] {
                try {
                  ln.accept();
                  return 1;
                } catch (const SocketClosed&) {
                  return 0;
                } catch (...) {
                  return 2;
                }
              });
              weft::this_fiber::sleep_for(20ms);  // the acceptor is backing off
              ln.close();
              for (int fd : hog) ::close(fd);
              setrlimit(RLIMIT_NOFILE, &rl);
              if (int r = acceptor.join(); r != 0) return 20 + r;
              // The pool hands out sound descriptors: pairs carry their own
              // bytes, and closing one socket affects no other. (The doubly
              // pooled descriptor went to both ends of the first pair: closing
              // the client made the server end "closed" too.)
              std::vector<Pair> pairs;
              for (int i = 0; i < 6; i++) pairs.push_back(connect_pair(ln2));
              pairs[0].c.close();
              try {
                char b;
                if (pairs[0].s.read({&b, 1}) != 0) return 31;
              } catch (const std::exception& e) {
                std::fprintf(stderr, "after closing its peer: %s\n", e.what());
                return 32;
              }
              for (int i = 1; i < 6; i++) {
                std::string m = "p" + std::to_string(i);
                pairs[i].c.write_all(m);
              }
              for (int i = 1; i < 6; i++) {
                char b[2];
                std::size_t n = 0;
                while (n < 2) n += pairs[i].s.read({b + n, 2 - n});
                if (std::string(b, 2) != "p" + std::to_string(i)) return 30;
              }
              return 0;
            },
            {.workers = workers});
        std::_Exit(rc);
      },
      ::testing::ExitedWithCode(0), "");
}

INSTANTIATE_TEST_SUITE_P(Workers, Hardening, ::testing::Values(1u, 2u), [](const auto& info) {
  return std::string("w") + std::to_string(info.param);
});

}  // namespace
