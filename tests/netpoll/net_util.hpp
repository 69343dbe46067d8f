// net_util.hpp: helpers shared by the netpoll test suites.
#pragma once

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <string>
#include <thread>

#include <weft/weft.hpp>

#ifndef WEFT_STRESS_SCALE
#define WEFT_STRESS_SCALE 100
#endif

namespace net_test {

// n scaled by -Dstress_scale (percent), at least `floor`.
inline int scaled(int n, int floor = 1) { return std::max(floor, n * WEFT_STRESS_SCALE / 100); }

// Waits until at least n fibers of the current runtime are switched out in
// a park (the caller, running, is not one of them). Bounded: 10 s, then a
// test failure.
inline void wait_parked(std::uint64_t n) {
  auto t0 = std::chrono::steady_clock::now();
  while (weft::stats().fibers_parked < n) {
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(10)) {
      ADD_FAILURE() << "fewer than " << n << " fibers parked after 10 s";
      return;
    }
    weft::this_fiber::sleep_for(std::chrono::microseconds(100));
  }
}

// Descriptors open in this process (a leak check: compare before and after).
inline std::size_t open_fds() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d)) n++;
    ::closedir(d);
  }
  return n;
}

// libkqueue frees a closed kqueue's descriptors later, on its monitor
// thread, so a count taken right after a runtime ended may still hold
// them. stable_fds: the count once two looks 20 ms apart agree (1 s at
// most). settled_fds(want): the count once it reached want (2 s at most).
// Elsewhere stable_fds is open_fds(). An io_uring runtime closes a
// listener's fd when its multishot accept's last completion is reaped (a
// poll after the close): settled_fds waits for that too, on any poller.
inline std::size_t stable_fds() {
  std::size_t n = open_fds();
#ifdef WEFT_LIBKQUEUE
  for (int i = 0; i < 50; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::size_t m = open_fds();
    if (m == n) break;
    n = m;
  }
#endif
  return n;
}
inline std::size_t settled_fds(std::size_t want) {
  std::size_t n = open_fds();
  for (int i = 0; i < 200 && n != want; i++) {
    // On a fiber, parked (a blocked worker would poll nobody's completion).
    if (weft::in_fiber()) weft::this_fiber::sleep_for(std::chrono::milliseconds(10));
    else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    n = open_fds();
  }
  return n;
}

// A plain (blocking, not weft's) listening socket on 127.0.0.1 with a
// backlog of 0 that nobody accepts from: connects to it soon stop
// completing. Returns its fd and "127.0.0.1:port"; the caller closes fd.
struct RawListener {
  int fd;
  std::string addr;
};
inline RawListener full_backlog_listener() {
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  EXPECT_EQ(::listen(lfd, 0), 0);
  socklen_t len = sizeof sa;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len);
  return {lfd, std::string("127.0.0.1:").append(std::to_string(ntohs(sa.sin_port)))};
}

// Parameterised over worker counts.
class WorkersParam : public ::testing::TestWithParam<unsigned> {
 protected:
  weft::Options opts() const { return {.workers = GetParam()}; }
};

// A connected pair (client, accepted server side), each side with a
// deadline `bound` from now so that no test can hang on it.
struct Pair {
  weft::net::TcpStream c, s;
};
inline Pair connect_pair(weft::net::TcpListener& ln, std::chrono::nanoseconds bound = std::chrono::seconds(10)) {
  Pair p;
  p.c = weft::net::TcpStream::connect(ln.local_addr());
  p.s = ln.accept();
  for (weft::net::TcpStream* t : {&p.c, &p.s}) t->set_deadline(weft::Clock::now() + bound);
  return p;
}

// A blocking client socket connected to "127.0.0.1:port", with 5 s
// timeouts on both directions. Returns -1 on failure.
inline int raw_connect(const std::string& addr) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1))));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // The timeouts only after the connect: on an io_uring runtime this
  // worker thread may have submitted the listener's multishot accept, and
  // our own SYN makes the kernel queue the accept's task work to this
  // thread, which interrupts a blocking connect. Without a send timeout
  // the kernel restarts the connect transparently; with one it fails with
  // EINTR (net/ipv4/af_inet.c, sock_intr_errno).
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

}  // namespace net_test
