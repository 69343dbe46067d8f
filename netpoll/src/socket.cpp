// socket.cpp: TcpStream, TcpListener, UdpSocket and wait_readable/writable
// on top of poll descriptors (pollfd.hpp). Every parking operation runs the
// one I/O loop below (io_loop): deadline check, system call (EINTR
// retried), EAGAIN then park, budget, all inside the op bracket; writes
// never raise SIGPIPE (MSG_NOSIGNAL, or SO_NOSIGPIPE: platform/sock.hpp).
//
// A Socket's fd_/pd_/seq_ are written only by construction, move and the
// destructor (one owner); close() leaves them in place and closes the
// descriptor's incarnation (pd_, seq_), so a fiber concurrently using the
// same socket, or any later call on it, sees SocketClosed instead of racing
// on the fields; the descriptor may meanwhile serve another socket, which
// these calls never touch (every check compares seq_, see pollfd.hpp).
#include <weft/net.hpp>
#include <weft/runtime.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <string>

#include "addr.hpp"
#include "platform/sock.hpp"
#include "pollfd.hpp"
#ifdef WEFT_IO_URING
#include <liburing.h>
#endif

namespace weft::net {

using detail::Check;
using detail::Dir;

namespace {

[[noreturn]] void throw_errno(int e, const std::string& what) {
  throw std::system_error(e, std::system_category(), "weft: " + what);
}

int new_socket(int family, int type) {
  int fd = platform::open_socket(family, type);
  if (fd < 0) throw_errno(errno, "socket");
  return fd;
}

// errno after a call that may follow a park. glibc declares
// __errno_location() const, so within one function the compiler may keep
// errno's address from before a park and, after the fiber moved to another
// worker, read that thread's errno (runtime.hpp). A call it cannot fold
// into an earlier one reads the current thread's. Seen: connect's loop
// read EINPROGRESS, left by the connect() before its first park on another
// thread, for getpeername's ENOTCONN, and waited forever on a refused
// connection (libkqueue build, 4 workers; on epoll SO_ERROR reports the
// refusal first, so the path was rarely taken).
[[gnu::noinline]] int fresh_errno() noexcept { return errno; }

// Brackets system calls on the incarnation's fd (see pollfd.hpp: the fd is
// not closed under them). Throws SocketClosed, or Timeout with a direction.
struct Op {
  detail::PollDesc* pd;
  Op(detail::PollDesc* p, std::uint32_t seq, const char* op, Check c = Check::None) : pd(p) {
    detail::op_begin(pd, seq, c, op);
  }
  ~Op() { detail::op_end(pd); }
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;
};

// One system call in the bracket, EINTR retried. Returns its result, or
// -errno (read inside the bracket: op_end may close the fd).
template <class Sys>
long call(detail::PollDesc* pd, std::uint32_t seq, Check check, const char* op, Sys&& sys) {
  Op o(pd, seq, op, check);
  long n;
  do n = static_cast<long>(sys());
  while (n < 0 && fresh_errno() == EINTR);  // io_loop parks between calls
  return n < 0 ? -fresh_errno() : n;
}

// A result that says nothing happened (a read's EOF, EAGAIN, a write's
// EPIPE) where the kernel would have reported a socket error that the
// poller's backend consumed (libkqueue, pollfd.hpp `error`): that error.
// On epoll nothing is ever consumed; this is one relaxed load.
long with_error(detail::PollDesc* pd, std::uint32_t seq, Dir d, long n) {
  if (n == 0 && d == Dir::Read) {
    if (int e = detail::settle_error(pd, seq)) return -e;
  } else if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EPIPE) {
    if (int e = detail::take_error(pd, seq)) return -e;
  }
  return n;
}

// The I/O loop of every parking operation (Go's fd.Read and friends). The
// deadline is checked before the first system call, so a passed deadline
// fails the call even when it could proceed (Go's prepareRead); after a
// park, wait() has checked close and the deadline, and the edge it returned
// with must reach a system call and then the next waiter (pass_edge), else
// a fiber queued behind could sleep through it; so the call after a park is
// made unconditionally. A completed call spends one unit of the fiber's
// budget (a socket that always has data must not starve the worker).
// Returns the result (>= 0) or -errno for errors other than EAGAIN.
template <class Sys>
long io_loop(detail::PollDesc* pd, std::uint32_t seq, Dir d, const char* op, Sys&& sys) {
  rt::cancellation_point();  // a call that may park is one, even when it could proceed
  Check check = d == Dir::Read ? Check::Read : Check::Write;
  bool edge = false;
  for (;;) {
    std::uint32_t edges = detail::edges_of(pd, d);
    long n = call(pd, seq, check, op, sys);  // throws only if closed: then every waiter was woken
    n = with_error(pd, seq, d, n);
    if (n == -EAGAIN || n == -EWOULDBLOCK) {
      WEFT_CHAOS_POINT();  // an edge (or a pass) between the EAGAIN and the queueing
      detail::wait(pd, seq, d, op, edges, edge);
      check = Check::None;
      edge = true;
      continue;
    }
    if (edge) {
      WEFT_CHAOS_POINT();  // a new caller's EAGAIN before the pass
      detail::pass_edge(pd, seq, d);
    }
    if (n >= 0) rt::spend_budget();
    return n;
  }
}

// The operation as an io_uring submission (see uring.hpp): its prep, its
// arguments, and when to try the system call first instead: `first` (a
// write: the socket usually has room), or the direction's hint that the
// last call found more than it took (a read that filled its buffer, an
// accept, a direct call that succeeded). A read that completes on the ring
// with at least `full` bytes sets the hint.
struct RingOp {
  detail::UringPrep prep = nullptr;
  int fd = -1;
  void* buf = nullptr;
  std::size_t len = 0;
  msghdr* msg = nullptr;
  bool first = false;
  std::size_t full = ~std::size_t{0};
};

// The I/O loop on an io_uring runtime: the operation goes to the ring and
// the fiber parks until its completion. A withdrawn operation (close,
// deadline: -ECANCELED) is submitted again, and the next bracket throws
// SocketClosed or Timeout; an -EAGAIN from the ring (a kernel that did not
// arm a poll for it) waits for readiness and calls again.
template <class Sys>
long ring_loop(detail::PollDesc* pd, std::uint32_t seq, Dir d, const char* op, Sys&& sys, RingOp& r) {
  Check check = d == Dir::Read ? Check::Read : Check::Write;
  std::atomic<bool>& more = detail::uring_side(pd).more[static_cast<int>(d)];
  bool direct = r.first || more.load(std::memory_order_relaxed);
  for (;;) {
    if (direct) {
      long n = with_error(pd, seq, d, call(pd, seq, check, op, sys));
      if (n != -EAGAIN && n != -EWOULDBLOCK) {
        if (n >= 0) rt::spend_budget();
        return n;
      }
      more.store(false, std::memory_order_relaxed);
    }
    long n = detail::uring_wait(pd, seq, d, op, check, r.prep, &r);
    if (n == -ECANCELED || n == -EINTR) {
      direct = false;
      continue;
    }
    if (n == -EAGAIN || n == -EWOULDBLOCK) {
      detail::wait(pd, seq, d, op, 0);
      direct = true;
      continue;
    }
    if (n >= 0) {
      if (static_cast<std::size_t>(n) >= r.full) more.store(true, std::memory_order_relaxed);
      rt::spend_budget();
    }
    return n;
  }
}

#ifdef WEFT_IO_URING
void prep_recv(io_uring_sqe* sqe, void* c) {
  auto* r = static_cast<RingOp*>(c);
  io_uring_prep_recv(sqe, r->fd, r->buf, r->len, 0);
}
void prep_send(io_uring_sqe* sqe, void* c) {
  auto* r = static_cast<RingOp*>(c);
  io_uring_prep_send(sqe, r->fd, r->buf, r->len, platform::kSendFlags);
}
void prep_accept(io_uring_sqe* sqe, void* c) {
  auto* r = static_cast<RingOp*>(c);
  io_uring_prep_accept(sqe, r->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
void prep_recvmsg(io_uring_sqe* sqe, void* c) {
  auto* r = static_cast<RingOp*>(c);
  io_uring_prep_recvmsg(sqe, r->fd, r->msg, 0);
}
#else
constexpr detail::UringPrep prep_recv = nullptr, prep_send = nullptr, prep_accept = nullptr, prep_recvmsg = nullptr;
#endif

// io_loop, or ring_loop on an io_uring runtime.
template <class Sys>
long io_op(detail::PollDesc* pd, std::uint32_t seq, Dir d, const char* op, Sys&& sys, RingOp r) {
  if (detail::current_ring()) {
    rt::cancellation_point();
    return ring_loop(pd, seq, d, op, sys, r);
  }
  return io_loop(pd, seq, d, op, sys);
}

// As io_loop, but never parks: nullopt on EAGAIN.
template <class Sys>
std::optional<std::size_t> io_once(detail::PollDesc* pd, std::uint32_t seq, Dir d, const char* op, Sys&& sys) {
  long n = with_error(pd, seq, d, call(pd, seq, d == Dir::Read ? Check::Read : Check::Write, op, sys));
  if (n >= 0) return static_cast<std::size_t>(n);
  if (n == -EAGAIN || n == -EWOULDBLOCK) return std::nullopt;
  throw_errno(static_cast<int>(-n), op);
}

int make_nonblocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) throw_errno(errno, "fcntl(O_NONBLOCK)");
  if (platform::prepare_socket(fd) < 0) throw_errno(errno, "setsockopt(SO_NOSIGPIPE)");
  return fd;
}

}  // namespace

Socket::Socket(int fd) : fd_(fd) {
  try {
    pd_ = detail::open_desc(fd, &seq_);
  } catch (...) {
    ::close(fd);
    throw;
  }
}

Socket::Socket(Socket&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), pd_(std::exchange(o.pd_, nullptr)), seq_(o.seq_) {}

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    pd_ = std::exchange(o.pd_, nullptr);
    seq_ = o.seq_;
  }
  return *this;
}

Socket::~Socket() { close(); }

void Socket::close() {
  if (pd_) detail::close_desc(pd_, seq_);
}

int Socket::fd() const noexcept {
  return pd_ && pd_->seq() == seq_ ? fd_ : -1;  // closing bumps the seq
}

bool Socket::is_open() const noexcept { return fd() >= 0; }

detail::PollDesc* Socket::desc(const char* op) const {
  if (!pd_) detail::throw_closed(op);
  return pd_;
}

void Socket::wait_read(const char* op) {
  detail::PollDesc* pd = desc(op);
  detail::wait(pd, seq_, Dir::Read, op, detail::edges_of(pd, Dir::Read));
}
void Socket::wait_write(const char* op) {
  detail::PollDesc* pd = desc(op);
  detail::wait(pd, seq_, Dir::Write, op, detail::edges_of(pd, Dir::Write));
}

std::string Socket::local_addr() const {
  Op op(desc("local_addr"), seq_, "local_addr");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) throw_errno(errno, "getsockname");
  return detail::format(reinterpret_cast<sockaddr*>(&ss));
}

// ---- TcpStream -----------------------------------------------------------------

TcpStream TcpStream::connect(std::string_view addr) { return connect_until(addr, Clock::time_point::max()); }

TcpStream TcpStream::connect(std::string_view addr, std::chrono::nanoseconds timeout) {
  auto now = Clock::now();
  auto deadline = timeout >= Clock::time_point::max() - now ? Clock::time_point::max()
                                                             : now + std::chrono::duration_cast<Clock::duration>(timeout);
  return connect_until(addr, deadline);
}

TcpStream TcpStream::connect_to(const void* sa_ptr, unsigned len, Clock::time_point deadline) {
  auto* sa = static_cast<const sockaddr*>(sa_ptr);
  TcpStream s(new_socket(sa->sa_family, SOCK_STREAM));
  s.set_nodelay(true);
  int rc, e;
  {
    // Not retried on EINTR: the kernel goes on connecting, and a second
    // connect() would report EALREADY. EINTR means "in progress" (as Go).
    Op op(s.pd_, s.seq_, "connect");
    rc = ::connect(s.fd_, sa, len);
    e = errno;
  }
  if (rc == 0) return s;
  if (e != EINPROGRESS && e != EINTR) throw_errno(e, "connect " + detail::format(sa));
  s.set_write_deadline(deadline);
  // Writability can be stale: the socket was registered with the poller
  // before connect, and an unconnected TCP socket reports OUT|HUP, which a
  // worker polling at that moment records as readiness. So, as Go does,
  // each wake is checked: SO_ERROR for failure, getpeername for success,
  // and anything else waits again (the stale readiness is consumed).
  for (;;) {
    try {
      s.wait_write("connect");
    } catch (const Timeout&) {
      throw Timeout("weft: connect " + detail::format(sa) + ": timed out");
    }
    int err = 0;
    socklen_t elen = sizeof err;
    sockaddr_storage peer{};
    socklen_t plen = sizeof peer;
    Op op(s.pd_, s.seq_, "connect");
    if (::getsockopt(s.fd_, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) err = fresh_errno();
    if (err == 0 || err == EISCONN) {
      if (::getpeername(s.fd_, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) break;
      err = fresh_errno();
      // Not connected and no error: still connecting, or the error was
      // consumed by the poller's backend (libkqueue) to report the wake.
      if (err == ENOTCONN) err = detail::take_error(s.pd_, s.seq_);
      if (err == 0) continue;
    }
    if (err == EINPROGRESS || err == EALREADY || err == EINTR) continue;
    throw_errno(err, "connect " + detail::format(sa));
  }
  s.set_write_deadline(Clock::time_point::max());
  return s;
}

TcpStream TcpStream::connect_until(std::string_view addr, Clock::time_point deadline) {
  rt::cancellation_point();
  auto eps = detail::resolve(addr, false, SOCK_STREAM);
  std::exception_ptr first;
  for (std::size_t i = 0; i < eps.size(); i++) {
    auto now = Clock::now();
    if (deadline <= now) {
      if (first) break;  // report the first address's error, as Go does
      throw Timeout("weft: connect " + std::string(addr) + ": timed out");
    }
    try {
      return connect_to(&eps[i].ss, eps[i].len, detail::partial_deadline(now, deadline, eps.size() - i));
    } catch (const Timeout&) {
      if (Clock::now() >= deadline) throw;  // the whole deadline: no time for the rest
      if (!first) first = std::current_exception();
    } catch (const Cancelled&) {
      throw;  // not an address's failure: no next address
    } catch (const weft::detail::FiberUnwind&) {
      throw;
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  std::rethrow_exception(first);
}

// What a wait_readable took from the kernel on an io_uring runtime comes
// first (pollfd.hpp, stash), inside a bracket (closed, deadline). kNoStash:
// nothing there, make the call.
static long stashed(detail::PollDesc* pd, std::uint32_t seq, std::span<char> buf, bool may_skip, const char* op) {
  if (!pd->stashed.load(std::memory_order_relaxed)) return detail::kNoStash;
  Op o(pd, seq, op, Check::Read);
  return detail::take_stash(pd, seq, buf.data(), buf.size(), may_skip);
}

std::optional<std::size_t> TcpStream::try_read(std::span<char> buf) {
  detail::PollDesc* pd = desc("read");
  long n = stashed(pd, seq_, buf, true, "read");
  if (n == -EAGAIN) return std::nullopt;
  if (n < 0 && n != detail::kNoStash) throw_errno(static_cast<int>(-n), "read");
  if (n >= 0) return static_cast<std::size_t>(n);
  return io_once(pd, seq_, Dir::Read, "read", [&] { return ::recv(fd_, buf.data(), buf.size(), 0); });
}

std::optional<std::size_t> TcpStream::try_write(std::span<const char> buf) {
  return io_once(desc("write"), seq_, Dir::Write, "write",
                 [&] { return ::send(fd_, buf.data(), buf.size(), platform::kSendFlags); });
}

// Every fiber parked here wakes on an edge (one after the other): none of
// them makes the call that would show whether more is there.
// On an io_uring runtime the wait takes what arrived into the socket's
// stash with a provided buffer (read and try_read return it first), so a
// waiting connection holds no buffer and the data costs no further call.
void TcpStream::wait_readable() {
  if (detail::current_ring()) return detail::uring_wait_readable(desc("wait_readable"), seq_, "wait_readable");
  wait_read("wait_readable");
  detail::pass_edge(pd_, seq_, Dir::Read);
}
void TcpStream::wait_writable() {
  wait_write("wait_writable");
  detail::pass_edge(pd_, seq_, Dir::Write);
}

std::size_t TcpStream::read(std::span<char> buf) {
  detail::PollDesc* pd = desc("read");
  long n = stashed(pd, seq_, buf, false, "read");
  if (n == detail::kNoStash)
    n = io_op(pd, seq_, Dir::Read, "read", [&] { return ::recv(fd_, buf.data(), buf.size(), 0); },
              {.prep = prep_recv, .fd = fd_, .buf = buf.data(), .len = buf.size(), .full = buf.size()});
  if (n < 0) throw_errno(static_cast<int>(-n), "read");
  return static_cast<std::size_t>(n);
}

std::size_t TcpStream::write(std::span<const char> buf) {
  long n = io_op(desc("write"), seq_, Dir::Write, "write",
                 [&] { return ::send(fd_, buf.data(), buf.size(), platform::kSendFlags); },
                 {.prep = prep_send, .fd = fd_, .buf = const_cast<char*>(buf.data()), .len = buf.size(), .first = true});
  if (n < 0) throw_errno(static_cast<int>(-n), "write");
  return static_cast<std::size_t>(n);
}

void TcpStream::write_all(std::string_view data) {
  while (!data.empty()) data.remove_prefix(write({data.data(), data.size()}));
}

void TcpStream::shutdown_write() {
  Op op(desc("shutdown_write"), seq_, "shutdown_write");
  if (::shutdown(fd_, SHUT_WR) != 0) throw_errno(errno, "shutdown");
}

void TcpStream::set_deadline(Clock::time_point t) {
  set_read_deadline(t);
  set_write_deadline(t);
}
void TcpStream::set_read_deadline(Clock::time_point t) { detail::set_deadline(desc("set_read_deadline"), seq_, Dir::Read, t); }
void TcpStream::set_write_deadline(Clock::time_point t) { detail::set_deadline(desc("set_write_deadline"), seq_, Dir::Write, t); }

std::string TcpStream::peer_addr() const {
  Op op(desc("peer_addr"), seq_, "peer_addr");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) throw_errno(errno, "getpeername");
  return detail::format(reinterpret_cast<sockaddr*>(&ss));
}

void TcpStream::set_nodelay(bool on) {
  Op op(desc("set_nodelay"), seq_, "set_nodelay");
  int v = on ? 1 : 0;
  if (::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) != 0) throw_errno(errno, "setsockopt(TCP_NODELAY)");
}

TcpStream TcpStream::adopt(int fd) { return TcpStream(make_nonblocking(fd)); }

// ---- TcpListener ---------------------------------------------------------------

TcpListener TcpListener::adopt(int fd) { return TcpListener(make_nonblocking(fd)); }

TcpListener TcpListener::listen(std::string_view addr, int backlog, bool reuse_port) {
  auto eps = detail::resolve(addr, true, SOCK_STREAM);
  const auto& ep = eps.front();
  TcpListener l(new_socket(ep.family(), SOCK_STREAM));
  Op op(l.pd_, l.seq_, "listen");
  int one = 1;
  ::setsockopt(l.fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port && ::setsockopt(l.fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    throw_errno(errno, "setsockopt(SO_REUSEPORT)");
  if (::bind(l.fd_, ep.sa(), ep.len) != 0) throw_errno(errno, "listen " + std::string(addr));
  if (::listen(l.fd_, backlog) != 0) throw_errno(errno, "listen " + std::string(addr));
  return l;
}

TcpStream TcpListener::accept() {
  detail::PollDesc* pd = desc("accept");
  auto backoff = std::chrono::milliseconds(5);
  for (;;) {
    long fd = detail::kSingleShot;
    if (detail::current_ring()) fd = detail::uring_accept(pd, seq_, "accept");
    if (fd == detail::kSingleShot)
      fd = io_op(pd, seq_, Dir::Read, "accept", [&] { return platform::accept_socket(fd_); },
                 {.prep = prep_accept, .fd = fd_, .full = 0});
    else if (fd >= 0)
      rt::spend_budget();
    if (fd >= 0) {
      TcpStream s(static_cast<int>(fd));
      s.set_nodelay(true);
      return s;
    }
    int e = static_cast<int>(-fd);
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
      // Out of descriptors or memory: the pending connection stays queued.
      // Sleep (parking only this fiber) and retry, backing off to 1 s, but
      // never past the accept deadline, which no poller wait checks here.
      // io_loop then checks close and the deadline again.
      Clock::time_point deadline = detail::deadline_of(pd, seq_, Dir::Read, "accept");
      auto now = Clock::now();
      if (deadline <= now) detail::throw_timeout("accept");
      this_fiber::sleep_until(deadline - now < backoff ? deadline : now + backoff);
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(1));
      continue;
    }
    if (e == ECONNABORTED || e == EPROTO) continue;  // the peer gave up first
    throw_errno(e, "accept");
  }
}

void TcpListener::set_deadline(Clock::time_point t) { detail::set_deadline(desc("set_deadline"), seq_, Dir::Read, t); }

// ---- UdpSocket -----------------------------------------------------------------

UdpSocket UdpSocket::bind(std::string_view addr) {
  auto eps = detail::resolve(addr, true, SOCK_DGRAM);
  const auto& ep = eps.front();
  UdpSocket u(new_socket(ep.family(), SOCK_DGRAM));
  Op op(u.pd_, u.seq_, "bind");
  if (::bind(u.fd_, ep.sa(), ep.len) != 0) throw_errno(errno, "bind " + std::string(addr));
  return u;
}

std::size_t UdpSocket::send_to(std::span<const char> buf, std::string_view addr) {
  auto eps = detail::resolve(addr, false, SOCK_DGRAM);
  detail::PollDesc* pd = desc("send_to");
  int family = 0;
  {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    Op op(pd, seq_, "send_to");
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) family = ss.ss_family;
  }
  auto it = std::find_if(eps.begin(), eps.end(), [&](const auto& e) { return e.family() == family; });
  const auto& ep = it != eps.end() ? *it : eps.front();
  long n = io_loop(pd, seq_, Dir::Write, "send_to",
                   [&] { return ::sendto(fd_, buf.data(), buf.size(), platform::kSendFlags, ep.sa(), ep.len); });
  if (n < 0) throw_errno(static_cast<int>(-n), "send_to " + std::string(addr));
  return static_cast<std::size_t>(n);
}

std::size_t UdpSocket::recv_from(std::span<char> buf, std::string* from) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_name = &ss;
  msg.msg_namelen = sizeof ss;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  long n = io_op(
      desc("recv_from"), seq_, Dir::Read, "recv_from",
      [&] {
        len = sizeof ss;
        return ::recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&ss), &len);
      },
      {.prep = prep_recvmsg, .fd = fd_, .msg = &msg});
  if (n < 0) throw_errno(static_cast<int>(-n), "recv_from");
  if (from) *from = detail::format(reinterpret_cast<sockaddr*>(&ss));
  return static_cast<std::size_t>(n);
}

void UdpSocket::set_read_deadline(Clock::time_point t) { detail::set_deadline(desc("set_read_deadline"), seq_, Dir::Read, t); }
void UdpSocket::set_write_deadline(Clock::time_point t) { detail::set_deadline(desc("set_write_deadline"), seq_, Dir::Write, t); }

// ---- foreign descriptors ---------------------------------------------------------

namespace {
void wait_foreign(int fd, Clock::time_point deadline, Dir d, const char* op) {
  if (fd < 0) throw_errno(EBADF, op);
  if (deadline <= Clock::now()) detail::throw_timeout(op);
  // Regular files and directories are always ready (poll(2); Go's
  // pollable() is false for them): no poller is asked (epoll refuses them
  // with EPERM; kqueue would watch a file's offset against its end).
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(errno, op);
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return;
  // Register a duplicate: the caller keeps ownership and registration of its
  // own fd, and closing the duplicate unregisters it from the poller.
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) throw_errno(errno, op);
  std::uint32_t seq;
  detail::PollDesc* pd;
  try {
    pd = detail::open_desc(dup, &seq, /*foreign=*/true);
  } catch (const std::system_error& e) {
    ::close(dup);  // open_desc closes nothing on failure
    // epoll refuses other files without poll support with EPERM: they are
    // always ready (poll(2); Go's pollable() false for files).
    if (e.code() == std::error_code(EPERM, std::system_category())) return;
    throw;
  }
  struct Closer {
    detail::PollDesc* pd;
    std::uint32_t seq;
    ~Closer() { detail::close_desc(pd, seq); }
  } closer{pd, seq};
  if (deadline != Clock::time_point::max()) detail::set_deadline(pd, seq, d, deadline);
  detail::wait(pd, seq, d, op, detail::edges_of(pd, d));
}
}  // namespace

void wait_readable(int fd, Clock::time_point deadline) { wait_foreign(fd, deadline, Dir::Read, "wait_readable"); }
void wait_writable(int fd, Clock::time_point deadline) { wait_foreign(fd, deadline, Dir::Write, "wait_writable"); }

}  // namespace weft::net
