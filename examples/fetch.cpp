// fetch: a concurrent HTTP/1.1 client. Fetches every URL given at once, one
// fiber each, with a deadline per request, and prints status and size.
//   fetch [--timeout MS] http://HOST:PORT/PATH ...
#include <weft/weft.hpp>

#include "args.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

struct Result {
  std::string url;
  std::string status;  // the status line, or the error
  std::size_t bytes = 0;
  double ms = 0;
};

Result fetch(const std::string& url, std::chrono::milliseconds timeout) {
  Result r{url, "", 0, 0};
  auto t0 = weft::Clock::now();
  try {
    if (url.rfind("http://", 0) != 0) throw std::invalid_argument("only http:// URLs are supported");
    std::string rest = url.substr(7);
    auto slash = rest.find('/');
    std::string host = rest.substr(0, slash);
    std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
    if (host.find(':') == std::string::npos || host.back() == ']') host += ":80";
    auto deadline = t0 + timeout;
    auto c = weft::net::TcpStream::connect(host, timeout);
    c.set_deadline(deadline);
    c.write_all("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
    std::string resp;
    char buf[16384];
    while (auto n = c.read(buf)) resp.append(buf, n);
    r.status = resp.substr(0, resp.find("\r\n"));
    r.bytes = resp.size();
  } catch (const std::exception& e) {
    r.status = std::string("error: ") + e.what();
  }
  r.ms = std::chrono::duration<double, std::milli>(weft::Clock::now() - t0).count();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> urls;
  long timeout_ms = 5000;
  Flags flags("Fetches every URL at once, one fiber each, with a deadline per request;\n"
              "prints status and size. Exits 1 if any fetch failed.\n");
  flags.number("--timeout", timeout_ms, "deadline per request, in milliseconds", 1, 3'600'000);
  flags.positional(urls, "http://HOST:PORT/PATH ...");
  flags.parse(argc, argv);
  if (urls.empty()) {
    std::fprintf(stderr, "%s: no URL given (try --help)\n", argv[0]);
    return 2;
  }
  return weft::run([&] {
    auto results = weft::make_chan<Result>(urls.size());
    for (auto& u : urls) weft::spawn([&, u] { results.send(fetch(u, std::chrono::milliseconds(timeout_ms))); });
    int failures = 0;
    for (std::size_t i = 0; i < urls.size(); i++) {
      Result r = *results.recv();
      bool ok = r.status.rfind("HTTP/", 0) == 0;
      failures += !ok;
      std::printf("%-40s %8.1f ms %8zu B  %s\n", r.url.c_str(), r.ms, r.bytes, r.status.c_str());
    }
    return failures ? 1 : 0;
  });
}
