// weft/net.hpp: sockets that park the calling fiber, never its thread
// (API.md "Networking"). weft::blocking() (weft/blocking.hpp, a runtime
// facility) is included for the code that found it here.
//
// Every call parks only the calling fiber. Errors throw std::system_error
// with the errno; a passed deadline throws weft::Timeout (a system_error
// with std::errc::timed_out). Addresses are "host:port": "127.0.0.1:8080",
// "[::1]:0", "localhost:80"; port 0 binds an ephemeral port. Host names are
// resolved on the blocking pool, never on a worker.
//
// A socket object may be used by several fibers at once (as a Go net.Conn):
// fibers waiting in one direction (several in accept(), several readers)
// queue in FIFO order; closing the socket wakes them all with SocketClosed.
// A deadline that has already passed fails the call with weft::Timeout even
// when it could proceed. Every call on a closed socket throws SocketClosed,
// and never affects another socket.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <weft/blocking.hpp>
#include <weft/cancel.hpp>
#include <weft/park.hpp>

namespace weft {

// weft::Timeout (a passed deadline): weft/cancel.hpp.

namespace net {

// Use of a closed socket or listener (std::errc::bad_file_descriptor), e.g.
// a fiber parked in accept() when another fiber closes the listener.
// Use of a closed socket or listener (Go's net.ErrClosed). what() is the
// message alone ("weft: accept: use of closed socket"); code() is
// std::errc::bad_file_descriptor.
struct SocketClosed : std::system_error {
  explicit SocketClosed(const std::string& what)
      : std::system_error(std::make_error_code(std::errc::bad_file_descriptor), what), msg_(what) {}
  const char* what() const noexcept override { return msg_.what(); }

 private:
  std::runtime_error msg_;
};

namespace detail {
struct PollDesc;
}

// A socket file descriptor registered with the netpoller. Base of the
// socket types; move-only; the destructor closes.
class Socket {
 public:
  Socket() = default;
  Socket(Socket&& o) noexcept;
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket();

  void close();  // idempotent; wakes fibers parked on this socket with an error
  int fd() const noexcept;  // -1 once closed
  bool is_open() const noexcept;
  std::string local_addr() const;

 protected:
  explicit Socket(int fd);  // takes ownership of a non-blocking fd
  detail::PollDesc* desc(const char* op) const;
  void wait_read(const char* op);
  void wait_write(const char* op);
  int fd_ = -1;
  detail::PollDesc* pd_ = nullptr;
  std::uint32_t seq_ = 0;  // the descriptor's identity when this socket opened it
};

class TcpStream : public Socket {
 public:
  TcpStream() = default;
  static TcpStream connect(std::string_view addr);
  static TcpStream connect(std::string_view addr, std::chrono::nanoseconds timeout);
  // Takes ownership of a connected socket fd (made non-blocking).
  static TcpStream adopt(int fd);

  std::size_t read(std::span<char> buf);           // parks until >= 1 byte; 0 at end of stream
  std::size_t write(std::span<const char> buf);    // parks until >= 1 byte written
  void write_all(std::string_view data);           // parks until all is written
  // Never park: nullopt when the call would block (Tokio's try_read/try_write).
  // A passed read (write) deadline fails them with weft::Timeout, as read().
  std::optional<std::size_t> try_read(std::span<char> buf);
  std::optional<std::size_t> try_write(std::span<const char> buf);
  // Park until reading (writing) may make progress, without a buffer: a
  // server can wait with a shallow stack and take a buffer only while data
  // flows, so an idle connection costs its fiber's one stack page. May
  // return spuriously; throws weft::Timeout after the deadline set with
  // set_read_deadline (set_write_deadline).
  void wait_readable();
  void wait_writable();
  void shutdown_write();
  void set_deadline(Clock::time_point t);          // read and write; time_point::max() clears
  void set_read_deadline(Clock::time_point t);
  void set_write_deadline(Clock::time_point t);
  std::string peer_addr() const;
  void set_nodelay(bool on);                       // on by default, as in Go

 private:
  friend class TcpListener;
  explicit TcpStream(int fd) : Socket(fd) {}
  static TcpStream connect_until(std::string_view addr, Clock::time_point deadline);
  static TcpStream connect_to(const void* sockaddr, unsigned len, Clock::time_point deadline);
};

class TcpListener : public Socket {
 public:
  TcpListener() = default;
  // SO_REUSEADDR is set; reuse_port adds SO_REUSEPORT (several listeners
  // on one port, balanced by the kernel).
  static TcpListener listen(std::string_view addr, int backlog = 1024, bool reuse_port = false);
  // Takes ownership of a listening socket fd (socket activation, fds
  // inherited from a parent); it is made non-blocking.
  static TcpListener adopt(int fd);
  // Parks until a connection arrives. Running out of file descriptors
  // (EMFILE/ENFILE) does not fail: accept backs off (5 ms doubling to 1 s)
  // and retries, as Go's servers do, and never spins; a close() during a
  // back-off sleep is seen when it ends.
  TcpStream accept();
  void set_deadline(Clock::time_point t);          // for accept(); max() clears

 private:
  explicit TcpListener(int fd) : Socket(fd) {}
};

class UdpSocket : public Socket {
 public:
  UdpSocket() = default;
  static UdpSocket bind(std::string_view addr);
  std::size_t send_to(std::span<const char> buf, std::string_view addr);
  std::size_t recv_from(std::span<char> buf, std::string* from = nullptr);
  void set_read_deadline(Clock::time_point t);
  void set_write_deadline(Clock::time_point t);

 private:
  explicit UdpSocket(int fd) : Socket(fd) {}
};

// Park the calling fiber until a file descriptor of the caller's (set
// O_NONBLOCK) is readable / writable: the hook for third-party non-blocking
// libraries. Throws weft::Timeout once the deadline has passed. A regular
// file (which epoll cannot watch) is always ready, as poll(2) says and as
// Go treats files: these return at once.
void wait_readable(int fd, Clock::time_point deadline = Clock::time_point::max());
void wait_writable(int fd, Clock::time_point deadline = Clock::time_point::max());

}  // namespace net
}  // namespace weft
