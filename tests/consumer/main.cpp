// A program built against an installed weft (pkg-config and CMake), as a
// user's would be: see check.sh. A fiber echoes lines over a loopback socket
// and a channel carries the results back; prints "consumer ok: ..." on
// success, exits 1 otherwise.
#include <weft/weft.hpp>

#include <cstdio>
#include <string>

int main() {
  return weft::run([] {
    auto ln = weft::net::TcpListener::listen("127.0.0.1:0");
    auto results = weft::make_chan<std::string>(4);
    auto server = weft::go([&] {
      auto conn = ln.accept();
      weft::net::BufReader in(conn);
      std::string line;
      while (in.read_line(line)) conn.write_all("echo: " + line + "\n");
    });
    auto client = weft::go([&] {
      auto c = weft::net::TcpStream::connect(ln.local_addr());
      weft::net::BufReader in(c);
      std::string line;
      for (const char* msg : {"hello", "weft"}) {
        c.write_all(std::string(msg) + "\n");
        in.read_line(line);
        results.send(line);
      }
      c.shutdown_write();
      results.close();
    });
    std::string got;
    for (const std::string& r : results) got += r + ";";
    client.join();
    server.join();
    bool ok = got == "echo: hello;echo: weft;";
    std::printf("%s: %s\n", ok ? "consumer ok" : "consumer FAILED", got.c_str());
    return ok ? 0 : 1;
  });
}
