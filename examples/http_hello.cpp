// http_hello: an HTTP/1.1 keep-alive server answering "Hello, World!" to
// every request, one fiber per connection.
//   http_hello [--listen ADDR] [--workers N]      (default 127.0.0.1:8080)
// Structured: every connection is a child of one weft::Scope, so nothing
// outlives the server (leaving the scope cancels and joins them all). Each
// request has a deadline (kRequestTimeout, from the moment the server
// starts waiting for it, so it bounds an idle keep-alive connection too):
// with_timeout cancels the reads of a slow client, and it gets a 408.
#include <weft/weft.hpp>

#include "args.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "Hello, World!";
constexpr std::string_view kClose =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "Connection: close\r\n"
    "\r\n"
    "Hello, World!";
constexpr std::string_view kBad = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
constexpr std::string_view kTimeout = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
constexpr auto kRequestTimeout = std::chrono::seconds(10);

bool wants_close(std::string_view head) {
  std::string h(head);
  for (auto& ch : h) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
  if (h.find("connection: close") != std::string::npos) return true;
  std::string_view line = std::string_view(h).substr(0, h.find("\r\n"));
  return line.ends_with("http/1.0") && h.find("connection: keep-alive") == std::string::npos;
}

enum class Request { Ok, Close, Bad, Eof };

// Reads one request into buf (keeping what follows it) and drops its body.
Request read_request(weft::net::TcpStream& c, std::string& buf) {
  char chunk[8192];
  std::size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (buf.size() > 64 * 1024) return Request::Bad;
    auto n = c.read(chunk);
    if (n == 0) return Request::Eof;
    buf.append(chunk, n);
  }
  std::string_view head(buf.data(), end);
  // Requests with a body: this server ignores bodies, so it reads
  // Content-Length bytes and drops them.
  std::size_t body = 0;
  if (auto p = head.find("Content-Length:"); p != std::string_view::npos)
    body = std::strtoul(std::string(head.substr(p + 15, 20)).c_str(), nullptr, 10);
  bool close = wants_close(head);
  std::size_t need = end + 4 + body;
  while (buf.size() < need) {
    auto n = c.read(chunk);
    if (n == 0) return Request::Eof;
    buf.append(chunk, n);
  }
  buf.erase(0, need);
  return close ? Request::Close : Request::Ok;
}

void serve(weft::net::TcpStream c) {
  std::string buf;
  try {
    for (;;) {
      Request r = weft::with_timeout(kRequestTimeout, [&] { return read_request(c, buf); });
      switch (r) {
        case Request::Eof:
          return;
        case Request::Bad:
          c.write_all(kBad);
          return;
        case Request::Close:
          c.write_all(kClose);
          return;
        case Request::Ok:
          c.write_all(kResponse);
      }
    }
  } catch (const weft::Timeout&) {
    c.write_all(kTimeout);
  } catch (const std::system_error&) {
    // reset or closed by the peer
  }
}

}  // namespace

int main(int argc, char** argv) {
  ServerArgs args = parse_server_args(argc, argv, "127.0.0.1:8080");
  try {
    return weft::run(
        [&] {
          auto ln = weft::net::TcpListener::listen(args.listen);
          std::printf("http_hello listening on http://%s/\n", ln.local_addr().c_str());
          std::fflush(stdout);
          weft::Scope connections;  // leaving it cancels and joins every connection
          for (;;) connections.spawn(serve, ln.accept());
          return 0;
        },
        weft::Options{.workers = args.workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_hello: %s\n", e.what());
    return 1;
  }
}
