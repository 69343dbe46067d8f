// args.hpp: command-line helpers the examples share.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

struct ServerArgs {
  std::string listen;
  unsigned workers = 0;  // 0: $WEFT_WORKERS, else the hardware threads
};

// Parses [--listen HOST:PORT] [--workers N] [--help]. Exits with 0 after
// --help, with 2 on a bad argument.
inline ServerArgs parse_server_args(int argc, char** argv, const char* default_listen, const char* more_help = "") {
  ServerArgs a{default_listen, 0};
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("usage: %s [--listen HOST:PORT] [--workers N]   (default %s)\n%s", argv[0], default_listen, more_help);
      std::exit(0);
    } else if (arg == "--listen" && i + 1 < argc) {
      a.listen = argv[++i];
    } else if (arg == "--workers" && i + 1 < argc) {
      char* end = nullptr;
      unsigned long w = std::strtoul(argv[++i], &end, 10);
      if (*end || w > 1024) {
        std::fprintf(stderr, "%s: --workers needs a number in 0..1024, got %s\n", argv[0], argv[i]);
        std::exit(2);
      }
      a.workers = static_cast<unsigned>(w);
    } else {
      std::fprintf(stderr, "%s: unknown argument %s (try --help)\n", argv[0], arg.c_str());
      std::exit(2);
    }
  }
  return a;
}

// Parses a positive count for `flag` (at most max) into out; false, with a
// message, when s is not one.
template <class U>
bool parse_count(const char* prog, const std::string& flag, const char* s, U& out, unsigned long max) {
  char* end = nullptr;
  unsigned long v = std::strtoul(s, &end, 10);
  if (*end || v == 0 || v > max) {
    std::fprintf(stderr, "%s: bad value for %s: %s (1..%lu)\n", prog, flag.c_str(), s, max);
    return false;
  }
  out = static_cast<U>(v);
  return true;
}
