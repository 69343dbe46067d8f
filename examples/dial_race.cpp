// dial_race: "first of N dials wins, the rest are cancelled" (happy eyeballs,
// hedged requests), with a weft::Scope.
//   dial_race [--servers N] [--workers W]
//   dial_race HOST:PORT HOST:PORT ...
// Each dialer connects and reads the server's one-line greeting; the first
// greeting wins. The winner cancels the scope: the other dialers, parked in
// connect or read, throw weft::Cancelled and their sockets close as they
// unwind; the scope waits for them. With no addresses it starts N loopback
// servers that greet after different delays, and races them.
#include <weft/weft.hpp>

#include "args.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;

struct Win {
  std::string addr, greeting;
};

// Races dials to every address; returns the first greeting, or nothing if
// every dial failed.
std::optional<Win> race(const std::vector<std::string>& addrs, int& cancelled, int& failed) {
  std::atomic<int> n_cancelled{0}, n_failed{0};
  weft::Chan<Win> first(1);  // room for the winner: it never parks in send
  weft::Scope dialers;
  for (const std::string& addr : addrs) {
    dialers.spawn([&, addr] {
      try {
        auto c = weft::net::TcpStream::connect(addr, 5s);
        weft::net::BufReader in(c, 256);
        std::string line;
        in.read_line(line);  // the greeting (what came before the end, if it has no newline)
        if (first.try_send(Win{addr, line})) dialers.cancel();  // we won
      } catch (const weft::Cancelled&) {
        n_cancelled++;
        throw;
      } catch (const std::exception& e) {
        std::printf("  %s failed: %s\n", addr.c_str(), e.what());
        n_failed++;
      }
    });
  }
  dialers.wait();
  cancelled = n_cancelled;
  failed = n_failed;
  return first.try_recv();
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long servers = 5, workers = 0;
  std::vector<std::string> addrs;
  Flags flags("Dials every address at once; the first greeting wins and the other dials are cancelled.\n"
              "Without addresses, races N loopback servers that greet after random delays.\n");
  flags.number("--servers", servers, "loopback servers to race (without addresses)", 1, 1000);
  flags.number("--workers", workers, "OS worker threads (0: one per core)", 0, 1024);
  flags.positional(addrs, "[HOST:PORT...]");
  flags.parse(argc, argv);
  try {
    return weft::run(
        [&] {
          weft::Scope local;  // the demo servers, if any: stopped when we are done
          if (addrs.empty()) {
            std::mt19937 rng(std::random_device{}());
            for (unsigned long i = 0; i < servers; i++) {
              auto ln = std::make_shared<weft::net::TcpListener>(weft::net::TcpListener::listen("127.0.0.1:0"));
              auto delay = std::chrono::milliseconds(20 + rng() % 300);
              std::printf("server %s greets after %lld ms\n", ln->local_addr().c_str(),
                          static_cast<long long>(delay.count()));
              addrs.push_back(ln->local_addr());
              local.spawn([ln, delay, i] {
                for (;;) {
                  auto c = ln->accept();
                  weft::this_fiber::sleep_for(delay);
                  c.write_all("hello from server " + std::to_string(i) + "\n");
                }
              });
            }
          }
          int cancelled = 0, failed = 0;
          auto t0 = weft::Clock::now();
          auto win = race(addrs, cancelled, failed);
          auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(weft::Clock::now() - t0).count();
          local.cancel();
          if (!win) {
            std::printf("every dial failed\n");
            return 1;
          }
          std::printf("%s won in %lld ms: \"%s\"; %d dials cancelled, %d failed\n", win->addr.c_str(),
                      static_cast<long long>(ms), win->greeting.c_str(), cancelled, failed);
          return 0;
        },
        {.workers = static_cast<unsigned>(workers)});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dial_race: %s\n", e.what());
    return 1;
  }
}
