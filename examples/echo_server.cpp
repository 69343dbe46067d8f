// echo_server: one fiber per connection, echoing what it reads.
//   echo_server [--listen ADDR] [--workers N] [--hogs N]     (default 127.0.0.1:9000)
// --hogs N also starts N fibers that spin in a CPU-bound loop forever and
// never park or yield: the echo latency then shows whether the runtime keeps
// serving connections while every worker is taken (bench/net_bench.py --only hogs).
#include <weft/weft.hpp>

#include "args.hpp"

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

}  // namespace

int main(int argc, char** argv) {
  // --hogs is this example's own flag; the rest goes to the shared parser.
  unsigned hogs = 0;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; i++) {
    if (std::string(argv[i]) == "--hogs" && i + 1 < argc) {
      char* end = nullptr;
      unsigned long n = std::strtoul(argv[++i], &end, 10);
      if (*end || n > 1024) {
        std::fprintf(stderr, "%s: --hogs needs a number in 0..1024, got %s\n", argv[0], argv[i]);
        return 2;
      }
      hogs = static_cast<unsigned>(n);
    } else {
      rest.push_back(argv[i]);
    }
  }
  ServerArgs args = parse_server_args(
      static_cast<int>(rest.size()), rest.data(), "127.0.0.1:9000",
      "  --hogs N  also start N fibers that each spin in a CPU-bound loop forever, never parking\n"
      "            or yielding (default 0); a benchmark of echo latency while the workers are hogged\n");
  try {
    return weft::run(
        [&] {
          auto ln = weft::net::TcpListener::listen(args.listen);
          std::printf("echo server listening on %s", ln.local_addr().c_str());
          if (hogs) std::printf(", %u CPU hog fiber(s)", hogs);
          std::printf("\n");
          std::fflush(stdout);
          // After listen: a client can connect even if the hogs starve this fiber.
          for (unsigned i = 0; i < hogs; i++) weft::spawn([i] { hog(i + 1); });
          for (;;) {
            weft::spawn([c = ln.accept()]() mutable {
              try {
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
