// platform/sock.hpp: creating and accepting non-blocking, close-on-exec
// sockets, and sending without SIGPIPE, on each platform. Header-inline:
// on Linux each function is the one system call socket.cpp made before
// this layer existed. No shared state.
//
//   Linux, FreeBSD  socket(type | SOCK_NONBLOCK | SOCK_CLOEXEC), accept4.
//   generic         (and macOS, OpenBSD, NetBSD here: not built) socket()
//                   and accept(), then fcntl(FD_CLOEXEC) and
//                   fcntl(O_NONBLOCK). Between the two calls a fork+exec
//                   on another thread may inherit the descriptor: the
//                   price of POSIX before 2024's accept4.
//   SIGPIPE         send(MSG_NOSIGNAL) (POSIX 2008) where MSG_NOSIGNAL
//                   exists; where not (macOS), every socket gets
//                   SO_NOSIGPIPE when created, accepted or adopted
//                   (prepare_socket) and kSendFlags is 0.
// Each returns the descriptor, or -1 with errno set (and nothing left
// open), as the system calls do.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace weft::net::platform {

#ifdef MSG_NOSIGNAL
inline constexpr int kSendFlags = MSG_NOSIGNAL;
#else
inline constexpr int kSendFlags = 0;
#endif

// Per-socket setup where SIGPIPE cannot be refused per call. Returns fd,
// or -1 with errno (fd closed).
inline int prepare_socket(int fd) noexcept {
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
  int one = 1;
  if (fd >= 0 && ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
#endif
  return fd;
}

#if defined(WEFT_PLATFORM_LINUX) || defined(WEFT_PLATFORM_FREEBSD)

inline int open_socket(int family, int type) noexcept {
  return ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}
inline int accept_socket(int fd) noexcept { return ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC); }

#else

// Makes fd close-on-exec and non-blocking; on failure closes it (-1, errno).
inline int cloexec_nonblock(int fd) noexcept {
  if (fd < 0) return fd;
  int fl = ::fcntl(fd, F_GETFL);
  if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return prepare_socket(fd);
}
inline int open_socket(int family, int type) noexcept { return cloexec_nonblock(::socket(family, type, 0)); }
inline int accept_socket(int fd) noexcept { return cloexec_nonblock(::accept(fd, nullptr, nullptr)); }

#endif

}  // namespace weft::net::platform
