// http_hello: an HTTP/1.1 keep-alive server answering "Hello, World!" to
// every request, one fiber per connection.
//   http_hello [--listen ADDR] [--workers N] [--grace DURATION]   (default 127.0.0.1:8080, 5s)
// Structured: every connection is a child of one weft::Scope, so nothing
// outlives the server (leaving the scope cancels and joins them all). Each
// request has a deadline (kRequestTimeout, from the moment the server
// starts waiting for it, so it bounds an idle keep-alive connection too):
// with_timeout cancels the reads of a slow client, and it gets a 408.
//
// Graceful shutdown (Go's http.Server.Shutdown), on SIGINT or SIGTERM
// (weft::notify_signals relays them to a channel; main waits on it):
//   1. the listener closes: no new connections (the acceptor fiber ends);
//   2. idle connections (waiting for the first byte of their next request)
//      are cancelled at once; a connection in the middle of a request
//      finishes it, answers with "Connection: close" and ends;
//   3. after --grace (default 5s) whatever is left is cancelled (its
//      scope's cancel());
//   4. the program exits with status 0.
// A second SIGINT/SIGTERM during that exits at once with status 128 + the
// signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports a
// program killed by it. A request that arrives at the very moment of the
// signal may be cut (as with Go's Shutdown): clients retry.
#include <weft/weft.hpp>

#include "args.hpp"

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

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
// Calls started() once the request's first bytes are in buf.
template <class F>
Request read_request(weft::net::TcpStream& c, std::string& buf, F started) {
  char chunk[8192];
  std::size_t end;
  if (!buf.empty()) started();
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (buf.size() > 64 * 1024) return Request::Bad;
    auto n = c.read(chunk);
    if (n == 0) return Request::Eof;
    if (buf.empty()) started();
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

// The live connections, for the shutdown: each is a fiber of one Scope;
// `idle` while it waits for the first byte of its next request.
class Server {
 public:
  // Starts a connection's fiber (the acceptor calls it).
  void start(weft::Scope& scope, weft::net::TcpStream c);

  // The first signal: from now on every response closes its connection, and
  // the idle connections are cancelled. Returns how many are mid-request.
  std::size_t drain() {
    std::lock_guard<weft::Mutex> g(mu_);
    draining_ = true;
    std::size_t busy = 0;
    for (auto& [id, c] : conns_) {
      if (c.idle) c.fiber.cancel();
      else busy++;
    }
    return busy;
  }

  std::size_t live() {
    std::lock_guard<weft::Mutex> g(mu_);
    return conns_.size();
  }

 private:
  struct Conn {
    weft::JoinHandle<void> fiber;
    bool idle = true;
  };

  // The connection's state before each request: false means "end now"
  // (idle while draining).
  bool set_idle(std::uint64_t id, bool idle) {
    std::lock_guard<weft::Mutex> g(mu_);
    if (idle && draining_) return false;
    conns_[id].idle = idle;
    return true;
  }
  bool draining() {
    std::lock_guard<weft::Mutex> g(mu_);
    return draining_;
  }
  void forget(std::uint64_t id) {
    std::lock_guard<weft::Mutex> g(mu_);
    conns_.erase(id);  // drops (detaches) the handle; the scope still waits for the fiber
  }

  void serve(std::uint64_t id, weft::net::TcpStream c);

  weft::Mutex mu_;
  std::unordered_map<std::uint64_t, Conn> conns_;
  std::uint64_t next_ = 0;
  bool draining_ = false;
};

void Server::start(weft::Scope& scope, weft::net::TcpStream c) {
  // Under the lock, so the fiber's first set_idle finds its entry.
  std::lock_guard<weft::Mutex> g(mu_);
  std::uint64_t id = next_++;
  conns_[id].fiber = scope.go([this, id](weft::net::TcpStream s) { serve(id, std::move(s)); }, std::move(c));
}

void Server::serve(std::uint64_t id, weft::net::TcpStream c) {
  struct Forget {
    Server* s;
    std::uint64_t id;
    ~Forget() { s->forget(id); }  // also when cancelled (weft::Mutex::lock is no cancellation point)
  } forget{this, id};
  std::string buf;
  try {
    for (;;) {
      if (!set_idle(id, buf.empty())) return;  // shutting down: an idle connection just ends
      Request r = weft::with_timeout(kRequestTimeout,
                                     [&] { return read_request(c, buf, [&] { set_idle(id, false); }); });
      bool last = draining();
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
          c.write_all(last ? kClose : kResponse);
          if (last) return;
      }
    }
  } catch (const weft::Timeout&) {
    c.write_all(kTimeout);
  } catch (const std::system_error&) {
    // reset or closed by the peer
  }
}

// "5s", "500ms", "1.5" (seconds), "2m"; false if s is none of them.
bool parse_duration(const char* s, std::chrono::nanoseconds& out) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || !(v >= 0) || v > 86400) return false;
  std::string_view unit(end);
  double scale = unit == "ms" ? 1e6 : unit == "s" || unit.empty() ? 1e9 : unit == "m" ? 60e9 : -1;
  if (scale < 0) return false;
  out = std::chrono::nanoseconds(static_cast<std::int64_t>(v * scale));
  return true;
}

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

constexpr const char* kHelp =
    "  --grace DURATION  on SIGINT/SIGTERM, how long in-flight requests may take to\n"
    "                    finish (e.g. 5s, 500ms; default 5s)\n"
    "Graceful shutdown: on SIGINT or SIGTERM the server stops accepting, closes idle\n"
    "connections, lets requests in flight finish within --grace, cancels the rest and\n"
    "exits with status 0. A second SIGINT/SIGTERM exits at once with status 128 + the\n"
    "signal number (130 for SIGINT, 143 for SIGTERM).\n";

}  // namespace

int main(int argc, char** argv) {
  // --grace is this program's own flag; the rest are the servers' common ones.
  std::chrono::nanoseconds grace = std::chrono::seconds(5);
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--grace") == 0 && i + 1 < argc) {
      if (!parse_duration(argv[++i], grace)) {
        std::fprintf(stderr, "%s: bad value for --grace: %s (e.g. 5s, 500ms)\n", argv[0], argv[i]);
        return 2;
      }
    } else {
      rest.push_back(argv[i]);
    }
  }
  ServerArgs args = parse_server_args(static_cast<int>(rest.size()), rest.data(), "127.0.0.1:8080", kHelp);
  try {
    return weft::run(
        [&] {
          weft::Chan<int> sigs(2);  // room for the second signal while main is busy
          weft::notify_signals(sigs, {SIGINT, SIGTERM});
          auto ln = weft::net::TcpListener::listen(args.listen);
          std::printf("http_hello listening on http://%s/\n", ln.local_addr().c_str());
          std::fflush(stdout);

          Server server;
          weft::Scope connections;  // leaving it cancels and joins every connection
          auto acceptor = weft::go([&] {
            try {
              for (;;) server.start(connections, ln.accept());
            } catch (const weft::net::SocketClosed&) {
              // the shutdown below closed the listener
            }
          });

          int sig = sigs.recv().value_or(0);
          ln.close();
          acceptor.join();
          auto second = weft::go([sigs] {
            int again = sigs.recv().value_or(0);
            std::fprintf(stderr, "http_hello: %s again: exiting now\n", signal_name(again));
            std::fflush(stderr);
            std::_Exit(128 + again);
          });
          std::size_t busy = server.drain();
          std::fprintf(stderr,
                       "http_hello: %s: shutting down (%zu request%s in flight, grace %lld ms; another "
                       "signal exits at once)\n",
                       signal_name(sig), busy, busy == 1 ? "" : "s",
                       static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(grace).count()));
          std::fflush(stderr);
          try {
            weft::with_timeout(grace, [&] { connections.wait(); });
          } catch (const weft::Timeout&) {
            std::fprintf(stderr, "http_hello: grace period over: cancelling %zu connection(s)\n", server.live());
            connections.cancel();
            connections.wait();
          }
          second.cancel();
          try {
            second.join();
          } catch (const weft::Cancelled&) {
          }
          weft::stop_signals(sigs);
          std::fprintf(stderr, "http_hello: stopped\n");
          return 0;
        },
        weft::Options{.workers = args.workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_hello: %s\n", e.what());
    return 1;
  }
}
