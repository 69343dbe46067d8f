// echo_server: one fiber per connection, echoing what it reads.
//   echo_server [--listen ADDR] [--workers N]     (default 127.0.0.1:9000)
#include <weft/weft.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:9000";
  unsigned workers = 0;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s [--listen HOST:PORT] [--workers N]\n", argv[0]);
      return 0;
    } else if (a == "--listen" && i + 1 < argc) {
      addr = argv[++i];
    } else if (a == "--workers" && i + 1 < argc) {
      workers = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else {
      std::fprintf(stderr, "%s: unknown argument %s (try --help)\n", argv[0], a.c_str());
      return 2;
    }
  }
  try {
    return weft::run(
        [&] {
          auto ln = weft::net::TcpListener::listen(addr);
          std::printf("echo server listening on %s\n", ln.local_addr().c_str());
          std::fflush(stdout);
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
        weft::Options{.workers = workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
