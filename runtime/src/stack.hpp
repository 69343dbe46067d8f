// stack.hpp: fiber stacks, carved from large MAP_NORESERVE arenas.
//
// Layout of one slot (slot_bytes, a multiple of the page size):
//   [guard page][ ...... stack, grows down ...... ][Fiber control block]
//   low                                                                high
// Pages are committed by the kernel on first touch, so a parked fiber costs
// the pages it used (usually one: control block, closure and frames share the
// top page). Slots are grouped in chunks of kChunkSlots, one mmap each, so a
// million stacks cost a few hundred kernel mappings, not a million.
//
// Guard regimes, chosen once per arena (README "Stacks"):
//   Madvise: MADV_GUARD_INSTALL (Linux 6.13+) puts a guard page in each slot
//            without splitting the mapping: full protection for any count.
//   Mprotect: older kernels: mprotect(PROT_NONE) guard pages, each splitting
//            the mapping, while a budget taken from vm.max_map_count lasts...
//   Canary:  ...then a canary word at the bottom of the stack, checked at
//            every switch: overflow is detected (and reported) after the fact.
//
// Shared state: free lists are guarded by `lock_` (a leaf lock). The chunk
// table is append-only: `nchunks_` is published with release after the chunk
// entry is written, so the signal handler and the side-table readers (acquire)
// see complete entries. Sync words (one per slot, see park.hpp) live in a
// side table that is never trimmed or freed before the arena dies.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include <weft/park.hpp>

namespace weft::rt {

enum class GuardMode : std::uint8_t { Madvise, Mprotect, Canary };

class StackArena {
 public:
  static constexpr std::size_t kChunkSlots = 1024;
  static constexpr std::size_t kMaxChunks = 16384;
  static constexpr std::uint64_t kCanary = 0x57ef7ca9a12e5eedULL;

  explicit StackArena(std::size_t slot_bytes);
  ~StackArena();
  StackArena(const StackArena&) = delete;
  StackArena& operator=(const StackArena&) = delete;

  // A free slot (its guard in place). Throws std::system_error (ENOMEM, or
  // the errno of the failed call) when a new chunk cannot be mapped or its
  // guard cannot be installed; the message names the call, the size and the
  // limits (RLIMIT_AS, vm.max_map_count) with their current values. A failed
  // alloc() changes nothing: the next one retries from the same state.
  std::uint32_t alloc();
  // Returns slots. Small batches from a worker's cache, trimmed first.
  void free_trimmed(const std::uint32_t* slots, std::size_t n) noexcept;

  char* slot_base(std::uint32_t s) const noexcept {
    return chunks_[s / kChunkSlots].base + (s % kChunkSlots) * slot_bytes_;
  }
  char* slot_top(std::uint32_t s) const noexcept { return slot_base(s) + slot_bytes_; }
  std::atomic<std::uint64_t>& sync(std::uint32_t s) const noexcept {
    return chunks_[s / kChunkSlots].sync[s % kChunkSlots].sync;
  }
  GuardMode guard_mode(std::uint32_t s) const noexcept;
  std::size_t slot_bytes() const noexcept { return slot_bytes_; }
  std::size_t guard_bytes() const noexcept { return page_; }
  std::uint32_t slot_count() const noexcept {
    return static_cast<std::uint32_t>(nchunks_.load(std::memory_order_acquire) * kChunkSlots);
  }
  // Trims [first, first+count) slot ranges back to the kernel (MADV_DONTNEED).
  void trim(std::uint32_t* slots, std::size_t n) noexcept;

  // Async-signal-safe: the slot whose guard region holds addr.
  bool guard_hit(const void* addr, std::uint32_t* slot) const noexcept;
  static const StackArena* find(const void* addr) noexcept;  // signal-safe registry

  // Accounting for weft::stats(). reserved_bytes: address space of the
  // mapped chunks (the side tables of sync words are not counted).
  // committed_bytes: those chunks' resident pages, counted with mincore():
  // exact at the moment of each call, but it walks every page of every
  // chunk (64K pages per chunk of 256 KiB slots): for diagnostics, not hot
  // paths. Callable from any thread, without the arena's lock.
  std::size_t reserved_bytes() const noexcept { return slot_count() * slot_bytes_; }
  std::size_t committed_bytes() const noexcept;
  // Accounting for teardown checks: slots ever handed out, and slots back on
  // the free list now.
  std::size_t carved_slots() const noexcept;
  std::size_t free_slots() noexcept;

  // Test hook (process-wide): while on, every chunk mapping fails as if
  // mmap returned ENOMEM, so tests can exhaust an arena where address-space
  // limits do not work (sanitizers reserve terabytes of shadow).
  static void fail_maps_for_testing(bool on) noexcept;

 private:
  struct Chunk {
    char* base = nullptr;
    SyncCell* sync = nullptr;  // a slot's sync word and cancel word
    std::uint32_t carved = 0;       // slots handed out at least once (guard installed)
  };
  int add_chunk() noexcept;                   // requires lock_; 0 or the errno
  int install_guard(std::uint32_t s) noexcept;  // requires lock_; 0 or the errno

  std::size_t page_;
  std::size_t slot_bytes_;
  std::mutex lock_;
  std::vector<std::uint32_t> free_;  // guarded by lock_
  Chunk* chunks_;                    // kMaxChunks entries, append-only
  std::atomic<std::size_t> nchunks_{0};
  GuardMode mode_;
  std::size_t mprotect_budget_ = 0;  // guarded by lock_
  std::uint32_t first_canary_slot_ = UINT32_MAX;  // slots >= this use Canary
};

// Installs the SIGSEGV handler (once per process) and an alternate signal
// stack for the calling thread (once per thread).
void install_overflow_handler();
void install_altstack();

}  // namespace weft::rt
