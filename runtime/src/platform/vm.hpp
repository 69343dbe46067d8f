// platform/vm.hpp: the virtual-memory calls of the stack arenas
// (stack.cpp), header-inline. No shared state.
//
// - kMapNoReserve: MAP_NORESERVE where it exists (Linux, macOS): reserve
//   address space without committing swap. FreeBSD has no such flag (it
//   never reserves swap for anonymous memory up front): 0 there.
// - install_guard_page(p, len): Linux 6.13+'s MADV_GUARD_INSTALL (a guard
//   inside one mapping, no split). Elsewhere, and in the generic build,
//   it fails with ENOSYS, so the arena falls back to mprotect(PROT_NONE)
//   guards, then canaries, the regimes of stack.hpp.
// - release_pages(p, len): give the pages back; their contents may be lost
//   (a reused slot needs no clean stack). madvise(MADV_DONTNEED) frees at
//   once on Linux (and is what the generic build uses there too: Linux's
//   MADV_FREE frees only under memory pressure, which the tests that count
//   committed pages would see as a leak). On FreeBSD and macOS
//   MADV_DONTNEED is only a hint, so MADV_FREE, which frees.
// - resident(p, len, vec): mincore, whose vector is unsigned char* on
//   Linux and char* on the BSDs and macOS.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>

namespace weft::rt::platform {

#ifdef MAP_NORESERVE
inline constexpr int kMapNoReserve = MAP_NORESERVE;
#else
inline constexpr int kMapNoReserve = 0;
#endif

inline int install_guard_page(void* p, std::size_t len) noexcept {
#if defined(WEFT_PLATFORM_LINUX)
  constexpr int kMadvGuardInstall = 102;  // Linux 6.13; Debian 12's headers lack it
  return madvise(p, len, kMadvGuardInstall);
#else
  (void)p;
  (void)len;
  errno = ENOSYS;
  return -1;
#endif
}

inline void release_pages(void* p, std::size_t len) noexcept {
#if defined(__linux__) || !defined(MADV_FREE)
  madvise(p, len, MADV_DONTNEED);
#else
  madvise(p, len, MADV_FREE);
#endif
}

namespace detail {
template <class R, class A, class L, class V>
V mincore_vec(R (*)(A, L, V));
template <class R, class A, class L, class V>
A mincore_addr(R (*)(A, L, V));
}  // namespace detail

inline int resident(void* p, std::size_t len, unsigned char* vec) noexcept {
  using Vec = decltype(detail::mincore_vec(&::mincore));
  using Addr = decltype(detail::mincore_addr(&::mincore));
  return ::mincore(static_cast<Addr>(p), len, reinterpret_cast<Vec>(vec));
}

}  // namespace weft::rt::platform
