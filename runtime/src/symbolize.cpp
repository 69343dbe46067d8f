// symbolize.cpp: code addresses to text (see symbolize.hpp).
//
// A fiber's spawn site is a return address recorded at spawn (free), as Go
// records the caller's PC; it becomes "file:line in function" only when a
// dump or a report is printed. weft carries no DWARF reader: it asks
// binutils' addr2line, which every machine with a compiler has, and falls
// back to dladdr's exported symbol and the module offset.
//
// Shared state: g_cache (address -> text), guarded by g_lock, a leaf lock
// held only to read or fill the map, never while addr2line runs.
#include "symbolize.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>

extern char** environ;

namespace weft::rt {

namespace {

std::mutex g_lock;
std::unordered_map<const void*, std::string>* g_cache = new std::unordered_map<const void*, std::string>;  // never freed: dumps may run at exit

// Runs `addr2line -a -f -C -i -e module addrs...` and returns its output ("" on failure).
std::string run_addr2line(const std::string& module, const std::vector<std::string>& addrs) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return {};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> args{"addr2line", "-a", "-f", "-C", "-i", "-e", module};
  args.insert(args.end(), addrs.begin(), addrs.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, "addr2line", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  std::string out;
  if (rc == 0) {
    char buf[4096];
    for (;;) {
      ssize_t n = read(fds[0], buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  close(fds[0]);
  return out;
}

bool weft_spawn_header(const std::string& file) {
  return file.ends_with("weft/runtime.hpp") || file.ends_with("weft/scope.hpp");
}

}  // namespace

std::string symbolize(const void* pc) {
  char buf[64];
  Dl_info info{};
  std::snprintf(buf, sizeof buf, "%p", pc);
  std::string out = buf;
  if (dladdr(pc, &info) == 0 || !info.dli_fname) return out;
  if (info.dli_sname) {
    int st = 0;
    char* d = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &st);
    out += " in ";
    out += d ? d : info.dli_sname;
    std::free(d);
    std::snprintf(buf, sizeof buf, "+0x%zx", static_cast<std::size_t>(static_cast<const char*>(pc) -
                                                                        static_cast<const char*>(info.dli_saddr)));
    out += buf;
  }
  // The module and offset, for addr2line -e MODULE OFFSET where no symbol is exported.
  std::snprintf(buf, sizeof buf, "+0x%zx)",
                static_cast<std::size_t>(static_cast<const char*>(pc) - static_cast<const char*>(info.dli_fbase)));
  return out + " (" + info.dli_fname + buf;
}

std::string spawn_site_cached(const void* pc) {
  {
    std::lock_guard<std::mutex> g(g_lock);
    if (auto it = g_cache->find(pc); it != g_cache->end()) return it->second;
  }
  return symbolize(pc);
}

std::unordered_map<const void*, std::string> spawn_sites(const std::vector<const void*>& pcs) {
  std::unordered_map<const void*, std::string> out;
  // module -> (address as addr2line wants it -> pc)
  std::map<std::string, std::map<std::uintptr_t, const void*>> todo;
  {
    std::lock_guard<std::mutex> g(g_lock);
    for (const void* pc : pcs) {
      if (!pc || out.count(pc)) continue;
      if (auto it = g_cache->find(pc); it != g_cache->end()) {
        out[pc] = it->second;
        continue;
      }
      out[pc] = "";
    }
  }
  for (auto& [pc, text] : out) {
    if (!text.empty()) continue;
    text = symbolize(pc);
    Dl_info info{};
    if (dladdr(pc, &info) == 0 || !info.dli_fname || !info.dli_fbase) continue;
    // A return address: the call is the byte before it. Offsets are from the
    // load base, except in a fixed-address (ET_EXEC) executable.
    auto a = reinterpret_cast<std::uintptr_t>(pc) - 1;
    if (static_cast<const Elf64_Ehdr*>(info.dli_fbase)->e_type != ET_EXEC) a -= reinterpret_cast<std::uintptr_t>(info.dli_fbase);
    std::string module = info.dli_fname;
    if (module.empty() || module.find('/') == std::string::npos) {
      char self[4096];
      ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
      if (n <= 0) continue;
      module.assign(self, static_cast<std::size_t>(n));
    }
    todo[module][a] = pc;
  }
  for (auto& [module, addrs] : todo) {
    std::vector<std::string> hex;
    for (auto& kv : addrs) {
      char b[32];
      std::snprintf(b, sizeof b, "0x%jx", static_cast<std::uintmax_t>(kv.first));
      hex.push_back(b);
      if (hex.size() < 256 && &kv != &*addrs.rbegin()) continue;
      // Output: per address, "0x<addr>" then function/file:line pairs, innermost first.
      std::istringstream in(run_addr2line(module, hex));
      hex.clear();
      std::string line, func, pick;
      const void* cur = nullptr;
      auto finish = [&] {
        if (cur && !pick.empty()) out[cur] = pick;
        pick.clear();
      };
      bool want_func = true;
      while (std::getline(in, line)) {
        if (line.starts_with("0x")) {
          finish();
          auto it = addrs.find(std::strtoull(line.c_str(), nullptr, 16));
          cur = it == addrs.end() ? nullptr : it->second;
          want_func = true;
          continue;
        }
        if (want_func) {
          func = line;
          want_func = false;
          continue;
        }
        want_func = true;
        std::string file = line.substr(0, line.find(" (discriminator"));
        if (file.starts_with("??")) continue;
        // The innermost frames are weft's own go()/spawn() (always inlined):
        // the site is the first frame outside them.
        auto colon = file.rfind(':');
        std::string path = file.substr(0, colon);
        if (pick.empty() && !weft_spawn_header(path))
          pick = std::filesystem::path(path).lexically_normal().string() + file.substr(colon) + " in " + func;
      }
      finish();
    }
  }
  std::lock_guard<std::mutex> g(g_lock);
  for (auto& [pc, text] : out) g_cache->emplace(pc, text);
  return out;
}

}  // namespace weft::rt
