// addr.hpp: "host:port" parsing, name resolution and formatting.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace weft::net::detail {

struct Endpoint {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const noexcept { return ss.ss_family; }
  const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&ss); }
};

// Resolves addr ("127.0.0.1:80", "[::1]:0", "localhost:80", ":8080").
// Numeric hosts are parsed in place; names are resolved with getaddrinfo on
// the blocking pool. An empty host means the wildcard address when
// `passive` (listen, bind) and the loopback address otherwise. Throws
// std::system_error(invalid_argument) for malformed input and
// std::system_error(host_unreachable) when a name does not resolve.
std::vector<Endpoint> resolve(std::string_view addr, bool passive, int socktype);

// The deadline for one of `remaining` addresses still to try (Go's
// partialDeadline): the time left split evenly, but at least 2 s each (or
// all that is left when less), so a first address that never answers
// cannot eat the whole deadline. max() stays max().
std::chrono::steady_clock::time_point partial_deadline(std::chrono::steady_clock::time_point now,
                                                       std::chrono::steady_clock::time_point deadline,
                                                       std::size_t remaining);

// "127.0.0.1:41234" or "[::1]:5000".
std::string format(const sockaddr* sa);

}  // namespace weft::net::detail
