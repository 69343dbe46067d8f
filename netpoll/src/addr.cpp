// addr.cpp: see addr.hpp.
#include "addr.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <system_error>

#include <weft/net.hpp>

namespace weft::net::detail {

namespace {

[[noreturn]] void bad(std::string_view addr, const char* why) {
  throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                          "weft: bad address \"" + std::string(addr) + "\": " + why);
}

bool all_digits_or_dots(std::string_view s) {
  for (char c : s)
    if (!(c == '.' || (c >= '0' && c <= '9'))) return false;
  return !s.empty();
}

}  // namespace

std::vector<Endpoint> resolve(std::string_view addr, bool passive, int socktype) {
  if (addr.empty()) bad(addr, "empty");
  std::string_view host, port;
  bool bracketed = false;
  if (addr.front() == '[') {
    auto close = addr.find(']');
    if (close == std::string_view::npos) bad(addr, "missing ']'");
    host = addr.substr(1, close - 1);
    if (close + 1 >= addr.size() || addr[close + 1] != ':') bad(addr, "missing port");
    port = addr.substr(close + 2);
    bracketed = true;
  } else {
    auto colon = addr.rfind(':');
    if (colon == std::string_view::npos) bad(addr, "missing port");
    host = addr.substr(0, colon);
    port = addr.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) bad(addr, "too many colons (IPv6 addresses go in brackets)");
  }
  if (port.empty() || port.size() > 5) bad(addr, "port must be a number in 0..65535");
  unsigned long p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') bad(addr, "port must be a number in 0..65535");
    p = p * 10 + static_cast<unsigned>(c - '0');
  }
  if (p > 65535) bad(addr, "port must be a number in 0..65535");
  auto nport = htons(static_cast<std::uint16_t>(p));

  std::vector<Endpoint> out;
  std::string h(host);
  if (h.empty()) {
    Endpoint e;
    auto* in = reinterpret_cast<sockaddr_in*>(&e.ss);
    in->sin_family = AF_INET;
    in->sin_port = nport;
    in->sin_addr.s_addr = passive ? htonl(INADDR_ANY) : htonl(INADDR_LOOPBACK);
    e.len = sizeof(sockaddr_in);
    out.push_back(e);
    return out;
  }
  Endpoint e;
  auto* in4 = reinterpret_cast<sockaddr_in*>(&e.ss);
  if (!bracketed && inet_pton(AF_INET, h.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = nport;
    e.len = sizeof(sockaddr_in);
    out.push_back(e);
    return out;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&e.ss);
  if (inet_pton(AF_INET6, h.c_str(), &in6->sin6_addr) == 1) {
    if (!bracketed) bad(addr, "IPv6 addresses go in brackets");
    in6->sin6_family = AF_INET6;
    in6->sin6_port = nport;
    e.len = sizeof(sockaddr_in6);
    out.push_back(e);
    return out;
  }
  if (bracketed) bad(addr, "not an IPv6 address");
  if (all_digits_or_dots(h)) bad(addr, "not a valid IPv4 address");
  // A name: getaddrinfo blocks, so it runs on the blocking pool.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_ADDRCONFIG | (passive ? AI_PASSIVE : 0);
  // The job owns its inputs and its result: a cancelled caller leaves it
  // running on the pool, and its result (the list) is then freed unseen.
  struct Freer {
    void operator()(addrinfo* a) const noexcept { freeaddrinfo(a); }
  };
  using List = std::unique_ptr<addrinfo, Freer>;
  auto [rc, list] = weft::blocking([host = std::string(h), hints] {
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    return std::pair<int, List>(rc, List(res));
  });
  addrinfo* res = list.get();
  if (rc != 0) {
    throw std::system_error(std::make_error_code(std::errc::host_unreachable),
                            "weft: lookup \"" + h + "\": " + gai_strerror(rc));
  }
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    Endpoint r;
    std::memcpy(&r.ss, ai->ai_addr, ai->ai_addrlen);
    r.len = static_cast<socklen_t>(ai->ai_addrlen);
    if (ai->ai_family == AF_INET) reinterpret_cast<sockaddr_in*>(&r.ss)->sin_port = nport;
    else reinterpret_cast<sockaddr_in6*>(&r.ss)->sin6_port = nport;
    out.push_back(r);
  }
  if (out.empty())
    throw std::system_error(std::make_error_code(std::errc::host_unreachable), "weft: lookup \"" + h + "\": no address");
  return out;
}

std::string format(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    std::string out = "[";  // built piecewise: GCC 12 warns falsely (-Wrestrict) on "[" + string
    out += buf;
    out += "]:";
    out += std::to_string(ntohs(in6->sin6_port));
    return out;
  }
  return "?";
}

std::chrono::steady_clock::time_point partial_deadline(std::chrono::steady_clock::time_point now,
                                                       std::chrono::steady_clock::time_point deadline,
                                                       std::size_t remaining) {
  using std::chrono::steady_clock;
  if (deadline == steady_clock::time_point::max() || deadline <= now || remaining <= 1) return deadline;
  constexpr steady_clock::duration kSaneMinimum = std::chrono::seconds(2);
  auto left = deadline - now;
  auto each = left / static_cast<steady_clock::rep>(remaining);
  if (each < kSaneMinimum) each = left < kSaneMinimum ? left : kSaneMinimum;
  return now + each;
}

}  // namespace weft::net::detail
