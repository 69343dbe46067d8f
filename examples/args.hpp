// args.hpp: the one command-line parser every example uses (no copies per
// program). Declare each flag with the variable it sets, then parse:
//
//   unsigned long count = 100;
//   Flags f("Prints the first N primes.\n");
//   f.number("--count", count, "how many primes", 1, 1'000'000);
//   f.parse(argc, argv);
//
// --help (-h) prints the usage, every flag with its default, and the text
// given, then exits 0; an unknown flag, a missing or bad value exits 2 with a
// message on stderr. Positional arguments are refused unless positional()
// names where they go.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

class Flags {
 public:
  explicit Flags(std::string about = "") : about_(std::move(about)) {}

  // An integer flag: --name N with min <= N <= max.
  template <class U>
  Flags& number(const char* name, U& out, const char* help, unsigned long min, unsigned long max) {
    static_assert(std::is_integral_v<U>);
    std::string range = std::to_string(min) + ".." + std::to_string(max);
    flags_.push_back({name, "N", std::string(help) + " (" + range + ", default " + std::to_string(out) + ")",
                      [&out, min, max, range](const char* prog, const char* flag, const char* s) {
                        char* end = nullptr;
                        unsigned long v = std::strtoul(s, &end, 10);
                        if (!*s || *end || *s == '-' || v < min || v > max) {
                          std::fprintf(stderr, "%s: %s needs a number in %s, got \"%s\"\n", prog, flag, range.c_str(), s);
                          std::exit(2);
                        }
                        out = static_cast<U>(v);
                      }});
    return *this;
  }

  // A string flag: --name VALUE.
  Flags& text(const char* name, std::string& out, const char* meta, const char* help) {
    flags_.push_back({name, meta, std::string(help) + (out.empty() ? "" : " (default " + out + ")"),
                      [&out](const char*, const char*, const char* s) { out = s; }});
    return *this;
  }

  // A switch: --name, no value; sets out to true.
  Flags& toggle(const char* name, bool& out, const char* help) {
    flags_.push_back({name, "", help, [&out](const char*, const char*, const char*) { out = true; }, false});
    return *this;
  }

  // Accept positional arguments (shown as `meta` in the usage) into out.
  Flags& positional(std::vector<std::string>& out, const char* meta) {
    positional_ = &out;
    positional_meta_ = meta;
    return *this;
  }

  void usage(const char* prog, std::FILE* to) const {
    std::fprintf(to, "usage: %s", prog);
    for (const auto& f : flags_) std::fprintf(to, " [%s%s%s]", f.name.c_str(), f.has_value ? " " : "", f.meta.c_str());
    if (positional_) std::fprintf(to, " %s", positional_meta_.c_str());
    std::fprintf(to, "\n%s", about_.c_str());
    for (const auto& f : flags_) {
      std::string help = f.help;  // a help text's own lines line up under its first
      for (std::size_t i = 0; (i = help.find('\n', i)) != std::string::npos; i += 1 + kColumn + 3)
        help.insert(i + 1, kColumn + 3, ' ');
      std::fprintf(to, "  %-*s %s\n", kColumn, (f.name + (f.has_value ? " " : "") + f.meta).c_str(), help.c_str());
    }
  }

  void parse(int argc, char** argv) {
    const char* prog = argv[0];
    for (int i = 1; i < argc; i++) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        usage(prog, stdout);
        std::exit(0);
      }
      const Flag* f = nullptr;
      for (const auto& g : flags_)
        if (g.name == a) f = &g;
      if (f && !f->has_value) {
        f->set(prog, a.c_str(), nullptr);
      } else if (f) {
        if (i + 1 >= argc) {
          std::fprintf(stderr, "%s: %s needs a value (try --help)\n", prog, a.c_str());
          std::exit(2);
        }
        f->set(prog, a.c_str(), argv[++i]);
      } else if (positional_ && (a.empty() || a[0] != '-')) {
        positional_->push_back(a);
      } else {
        std::fprintf(stderr, "%s: unknown argument %s (try --help)\n", prog, a.c_str());
        std::exit(2);
      }
    }
  }

 private:
  static constexpr int kColumn = 20;  // the width of "--flag VALUE" in the usage
  struct Flag {
    std::string name, meta, help;
    std::function<void(const char* prog, const char* flag, const char* value)> set;
    bool has_value = true;  // false: a switch (toggle)
  };
  std::string about_;
  std::vector<Flag> flags_;
  std::vector<std::string>* positional_ = nullptr;
  std::string positional_meta_;
};

// The flags every server example shares: --listen HOST:PORT, --workers N.
struct ServerArgs {
  std::string listen;
  unsigned workers = 0;  // 0: $WEFT_WORKERS, else the hardware threads
};

inline void add_server_flags(Flags& f, ServerArgs& a) {
  f.text("--listen", a.listen, "HOST:PORT", "address to listen on; port 0 picks a free one");
  f.number("--workers", a.workers, "OS worker threads (0: $WEFT_WORKERS, else one per core)", 0, 1024);
}

// Parses [--listen HOST:PORT] [--workers N] [--help]; more_help is printed
// under the usage line. Exits with 0 after --help, with 2 on a bad argument.
inline ServerArgs parse_server_args(int argc, char** argv, const char* default_listen, const char* more_help = "") {
  ServerArgs a{default_listen, 0};
  Flags f(more_help);
  add_server_flags(f, a);
  f.parse(argc, argv);
  return a;
}

// Parses a count for `flag` (1..max) into out; false, with a message, when s
// is not one. For a parser of its own; prefer Flags::number.
template <class U>
bool parse_count(const char* prog, const std::string& flag, const char* s, U& out, unsigned long max) {
  char* end = nullptr;
  unsigned long v = std::strtoul(s, &end, 10);
  if (!*s || *end || *s == '-' || v == 0 || v > max) {
    std::fprintf(stderr, "%s: bad value for %s: %s (1..%lu)\n", prog, flag.c_str(), s, max);
    return false;
  }
  out = static_cast<U>(v);
  return true;
}
