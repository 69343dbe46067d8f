// kv_server: a tiny line-protocol key-value server, one fiber per
// connection reading requests with weft::net::BufReader.
//   kv_server [--listen ADDR] [--workers N] [--max-line BYTES]   (default 127.0.0.1:9002)
// Requests, one per line ("\n" or "\r\n"), answered with one line each:
//   SET key value   -> OK               (the value is the rest of the line)
//   GET key         -> VALUE value  |  NOT_FOUND
//   DEL key         -> DELETED      |  NOT_FOUND
//   QUIT            -> BYE, and the server closes the connection
//   anything else   -> ERR ...
// A line longer than --max-line gets "ERR line too long" and the connection
// is closed. Try it with: nc 127.0.0.1 9002
//
// Shared state: the store (a map), guarded by one weft::Mutex held only
// while the map is read or changed, never across a socket call. No other
// lock.
#include <weft/weft.hpp>

#include "args.hpp"

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace {

class Store {
 public:
  void set(const std::string& k, std::string v) {
    std::lock_guard<weft::Mutex> g(m_);
    map_[k] = std::move(v);
  }
  bool get(const std::string& k, std::string& v) {
    std::lock_guard<weft::Mutex> g(m_);
    auto it = map_.find(k);
    if (it == map_.end()) return false;
    v = it->second;
    return true;
  }
  bool del(const std::string& k) {
    std::lock_guard<weft::Mutex> g(m_);
    return map_.erase(k) > 0;
  }

 private:
  weft::Mutex m_;
  std::map<std::string, std::string> map_;
};

// The next space-separated word of s from pos (pos moves past it and one space).
std::string word(std::string_view s, std::size_t& pos) {
  std::size_t end = s.find(' ', pos);
  if (end == std::string_view::npos) end = s.size();
  std::string w(s.substr(pos, end - pos));
  pos = end < s.size() ? end + 1 : end;
  return w;
}

// The answer to one request line; empty for QUIT.
std::string handle(Store& store, std::string_view line) {
  std::size_t pos = 0;
  std::string cmd = word(line, pos);
  std::string key = word(line, pos);
  if (cmd == "QUIT") return {};
  if (cmd != "SET" && cmd != "GET" && cmd != "DEL") return "ERR unknown command (SET, GET, DEL, QUIT)";
  if (key.empty()) return "ERR " + cmd + " needs a key";
  if (cmd == "SET") {
    store.set(key, std::string(line.substr(pos)));
    return "OK";
  }
  if (pos < line.size()) return "ERR " + cmd + " takes only a key";
  std::string value;
  if (cmd == "GET") return store.get(key, value) ? "VALUE " + value : "NOT_FOUND";
  return store.del(key) ? "DELETED" : "NOT_FOUND";
}

void serve(Store& store, weft::net::TcpStream conn, std::size_t max_line) {
  weft::net::BufReader in(conn, max_line);
  std::string line;
  try {
    while (in.read_line(line)) {
      std::string answer = handle(store, line);
      if (answer.empty()) {
        conn.write_all("BYE\n");
        return;
      }
      conn.write_all(answer + "\n");
    }
  } catch (const weft::net::LineTooLong&) {
    try {
      conn.write_all("ERR line too long\n");
      // Closing with unread input would reset the connection, and the
      // client could lose the answer: end our side, then drain (for 1 s
      // at most) until the client closes.
      conn.shutdown_write();
      conn.set_read_deadline(weft::Clock::now() + std::chrono::seconds(1));
      char sink[4096];
      while (conn.read(sink) > 0) {
      }
    } catch (const std::system_error&) {
    }
  } catch (const std::system_error&) {
    // peer reset: drop the connection
  }
}

}  // namespace

int main(int argc, char** argv) {
  ServerArgs args{"127.0.0.1:9002", 0};
  unsigned long max_line = 4096;
  Flags flags(
      "A key-value server over lines: SET key value | GET key | DEL key | QUIT,\n"
      "one answer line each (OK, VALUE v, NOT_FOUND, DELETED, BYE, ERR ...).\n");
  add_server_flags(flags, args);
  flags.number("--max-line", max_line, "longest request line, in bytes", 1, 1 << 20);
  flags.parse(argc, argv);
  try {
    return weft::run(
        [&] {
          auto ln = weft::net::TcpListener::listen(args.listen);
          std::printf("kv server listening on %s\n", ln.local_addr().c_str());
          std::fflush(stdout);
          Store store;
          for (;;) {
            weft::spawn([&store, max_line](weft::net::TcpStream c) { serve(store, std::move(c), max_line); },
                        ln.accept());
          }
          return 0;
        },
        weft::Options{.workers = args.workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kv_server: %s\n", e.what());
    return 1;
  }
}
