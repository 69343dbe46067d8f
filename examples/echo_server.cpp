// echo_server: one fiber per connection, echoing what it reads.
//   echo_server [--listen ADDR] [--workers N] [--hogs N] [--stats]   (default 127.0.0.1:9000)
// --hogs N also starts N fibers that spin in a CPU-bound loop forever and
// never park or yield: the echo latency then shows whether the runtime keeps
// serving connections while every worker is taken (bench/net_bench.py --only hogs).
// --stats: on SIGINT or SIGTERM, print the scheduler's counters (weft::stats())
// on stderr and exit (bench/net_bench.py --stats shows them per run).
#include <weft/weft.hpp>

#include "args.hpp"

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {

// A CPU-bound loop that never parks, yields, or touches a channel, mutex or
// socket: an LCG over a volatile, so that the compiler must keep every step.
[[noreturn]] void hog(std::uint64_t seed) {
  volatile std::uint64_t x = seed;
  for (;;) x = x * 6364136223846793005ull + 1442695040888963407ull;
}

// The straight-line style: the connection holds its buffer (4 KiB of
// stack) while it waits. Its own frame, so that the default style's
// fibers do not reserve it too.
[[gnu::noinline]] void echo_plain(weft::net::TcpStream& c) {
  char buf[4096];
  while (std::size_t n = c.read(buf)) c.write_all({buf, n});
}

void print_stats(const weft::Stats& s) {
  std::fprintf(stderr,
               "weft stats: switches=%llu steals=%llu parks=%llu polls=%llu polls_busy=%llu polls_spinning=%llu "
               "polls_blocking=%llu spin_rounds=%llu spins_fruitless=%llu futex_sleeps=%llu wakes_futex=%llu "
               "wakes_poller=%llu wakes_kept=%llu\n",
               static_cast<unsigned long long>(s.switches), static_cast<unsigned long long>(s.steals),
               static_cast<unsigned long long>(s.parks), static_cast<unsigned long long>(s.polls),
               static_cast<unsigned long long>(s.polls_busy), static_cast<unsigned long long>(s.polls_spinning),
               static_cast<unsigned long long>(s.polls_blocking), static_cast<unsigned long long>(s.spin_rounds),
               static_cast<unsigned long long>(s.spins_fruitless), static_cast<unsigned long long>(s.futex_sleeps),
               static_cast<unsigned long long>(s.wakes_futex), static_cast<unsigned long long>(s.wakes_poller),
               static_cast<unsigned long long>(s.wakes_kept));
  std::fflush(stderr);
}

}  // namespace

int main(int argc, char** argv) {
  ServerArgs args{"127.0.0.1:9000", 0};
  unsigned hogs = 0;
  unsigned plain_read = 0;
  bool stats = false;
  Flags flags("Echoes what each connection sends, one fiber per connection.\n");
  add_server_flags(flags, args);
  flags.number("--hogs", hogs,
               "also start N fibers that spin in a CPU-bound loop forever, never parking or yielding;\n"
               "a benchmark of echo latency while the workers are hogged",
               0, 1024);
  flags.number("--plain-read", plain_read,
               "1: each connection reads into a buffer it holds (read(), the straight-line style) instead\n"
               "of waiting for readability holding none (an idle connection then costs one stack page)",
               0, 1);
  flags.toggle("--stats", stats, "on SIGINT or SIGTERM, print the scheduler's counters (weft::stats()) and exit");
  flags.parse(argc, argv);
  try {
    return weft::run(
        [&] {
          if (stats) {
            weft::Chan<int> sigs(2);
            weft::notify_signals(sigs, {SIGINT, SIGTERM});
            weft::spawn([sigs]() mutable {
              sigs.recv();
              print_stats(weft::stats());
              std::_Exit(0);  // the connections' fibers never end: no orderly shutdown to wait for
            });
          }
          auto ln = weft::net::TcpListener::listen(args.listen);
          std::printf("echo server listening on %s", ln.local_addr().c_str());
          if (hogs) std::printf(", %u CPU hog fiber(s)", hogs);
          std::printf("\n");
          std::fflush(stdout);
          // After listen: a client can connect even if the hogs starve this fiber.
          for (unsigned i = 0; i < hogs; i++) weft::spawn([i] { hog(i + 1); });
          for (;;) {
            weft::spawn([c = ln.accept(), plain_read]() mutable {
              try {
                if (plain_read) return echo_plain(c);
                for (;;) {
                  // Park with a shallow stack, and hold a buffer only while
                  // data flows: an idle connection costs one stack page.
                  c.wait_readable();
                  auto buf = std::make_unique<char[]>(4096);
                  while (auto n = c.try_read({buf.get(), 4096})) {
                    if (*n == 0) return;  // end of stream
                    c.write_all({buf.get(), *n});
                  }
                }
              } catch (const std::system_error&) {
                // peer reset: drop the connection
              }
            });
          }
          return 0;
        },
        weft::Options{.workers = args.workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
