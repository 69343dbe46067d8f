// symbolize.hpp: code addresses to text, for dumps and monitor reports.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

namespace weft::rt {

// "0x55d0c4a1b9f5 in weft::rt::park(weft::rt::Parker)+0x65 (/srv/server+0x3f9f5)":
// the exported symbol (dladdr) and the module offset, for addr2line.
std::string symbolize(const void* pc);

// Where each spawn-site return address is in the source, "file:line in
// function" (the outermost frame outside weft's spawn headers), else
// symbolize()'s text. Symbolized with addr2line (binutils; one process per
// module and batch) the first time a site is asked for, then cached for
// the process's life. Call with no runtime lock held: it may take 100 ms.
std::unordered_map<const void*, std::string> spawn_sites(const std::vector<const void*>& pcs);

// spawn_sites' text if a dump has already symbolized pc, else symbolize()'s
// (dladdr only). Starts no process: for the monitor, a background thread of
// the user's program, which must not open descriptors or fork children
// (that would show in the program's fd counts and SIGCHLD/wait()).
std::string spawn_site_cached(const void* pc);

}  // namespace weft::rt
