// server_args.hpp: the command line the example servers share.
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
