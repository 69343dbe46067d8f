// echo_server: one fiber per connection, echoing what it reads.
//   echo_server [--listen ADDR] [--workers N]     (default 127.0.0.1:9000)
#include <weft/weft.hpp>

#include "args.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

int main(int argc, char** argv) {
  ServerArgs args = parse_server_args(argc, argv, "127.0.0.1:9000");
  try {
    return weft::run(
        [&] {
          auto ln = weft::net::TcpListener::listen(args.listen);
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
        weft::Options{.workers = args.workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
