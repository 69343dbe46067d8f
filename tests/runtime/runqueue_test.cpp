// runqueue_test.cpp: the bounded work-stealing run queue (runqueue.hpp), on
// its own with fake fiber pointers: FIFO order, capacity, take_half,
// steal_into, and concurrent owner pop vs thieves' steals on real threads
// (every entry is taken exactly once).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "runqueue.hpp"
#include "test_util.hpp"

using weft::rt::Fiber;
using weft::rt::RunQueue;

namespace {

Fiber* fake(std::uintptr_t i) { return reinterpret_cast<Fiber*>((i + 1) * 64); }
std::uintptr_t unfake(Fiber* f) { return reinterpret_cast<std::uintptr_t>(f) / 64 - 1; }

TEST(RunQueue, FifoPushPop) {
  RunQueue q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.pop(), nullptr);
  for (std::uintptr_t i = 0; i < 10; i++) ASSERT_TRUE(q.push(fake(i)));
  EXPECT_EQ(q.size(), 10u);
  for (std::uintptr_t i = 0; i < 10; i++) EXPECT_EQ(q.pop(), fake(i));
  EXPECT_EQ(q.pop(), nullptr);
  EXPECT_TRUE(q.empty());
}

TEST(RunQueue, PopUnsharedMatchesPop) {
  RunQueue q;
  for (std::uintptr_t i = 0; i < 5; i++) q.push(fake(i));
  for (std::uintptr_t i = 0; i < 5; i++) EXPECT_EQ(q.pop_unshared(), fake(i));
  EXPECT_EQ(q.pop_unshared(), nullptr);
}

TEST(RunQueue, BoundedAndWrapsAround) {
  RunQueue q;
  // Many laps around the ring: indices wrap, order holds.
  std::uintptr_t next_in = 0, next_out = 0;
  for (int lap = 0; lap < 10; lap++) {
    while (q.push(fake(next_in))) next_in++;
    EXPECT_EQ(q.size(), RunQueue::kSize);
    for (int k = 0; k < 100; k++) ASSERT_EQ(q.pop(), fake(next_out++));
  }
  while (Fiber* f = q.pop()) ASSERT_EQ(f, fake(next_out++));
  EXPECT_EQ(next_in, next_out);
}

TEST(RunQueue, TakeHalf) {
  RunQueue q;
  for (std::uintptr_t i = 0; i < RunQueue::kSize; i++) ASSERT_TRUE(q.push(fake(i)));
  Fiber* out[RunQueue::kSize];
  std::uint32_t n = q.take_half(out);
  ASSERT_EQ(n, RunQueue::kSize / 2);
  for (std::uint32_t i = 0; i < n; i++) EXPECT_EQ(out[i], fake(i));  // the oldest half
  EXPECT_EQ(q.size(), RunQueue::kSize / 2);
  EXPECT_EQ(q.pop(), fake(n));
}

TEST(RunQueue, StealHalf) {
  RunQueue victim, mine;
  for (std::uintptr_t i = 0; i < 9; i++) victim.push(fake(i));
  // Steals ceil(9/2) = 5: returns the last of them, queues the other 4.
  Fiber* f = victim.steal_into(mine);
  EXPECT_EQ(f, fake(4));
  EXPECT_EQ(mine.size(), 4u);
  EXPECT_EQ(victim.size(), 4u);
  for (std::uintptr_t i = 0; i < 4; i++) EXPECT_EQ(mine.pop(), fake(i));
  for (std::uintptr_t i = 5; i < 9; i++) EXPECT_EQ(victim.pop(), fake(i));
  EXPECT_EQ(victim.steal_into(mine), nullptr);
  victim.push(fake(42));
  EXPECT_EQ(victim.steal_into(mine), fake(42));  // a single entry: returned, nothing queued
  EXPECT_TRUE(mine.empty());
}

// The owner pushes and pops while thieves steal on real threads. Every
// entry must come out exactly once, whoever takes it.
TEST(RunQueue, ConcurrentStealVsPop) {
  const std::size_t total = weft_test::scaled(2'000'000);
  const int nthieves = 3;
  auto seen = std::make_unique<std::atomic<std::uint8_t>[]>(total);
  RunQueue owner_q;
  std::atomic<bool> done{false};
  std::atomic<std::size_t> taken{0};
  auto take = [&](Fiber* f) {
    std::uintptr_t i = unfake(f);
    ASSERT_LT(i, total);
    ASSERT_EQ(seen[i].fetch_add(1, std::memory_order_relaxed), 0) << "entry " << i << " taken twice";
    taken.fetch_add(1, std::memory_order_relaxed);
  };
  std::vector<std::thread> thieves;
  for (int t = 0; t < nthieves; t++) {
    thieves.emplace_back([&] {
      RunQueue mine;  // a thief owns its own queue and drains it itself
      for (;;) {
        bool finished = done.load(std::memory_order_acquire);
        if (Fiber* f = owner_q.steal_into(mine)) {
          take(f);
          while (Fiber* g = mine.pop()) take(g);
        } else if (finished) {
          return;
        }
      }
    });
  }
  std::size_t pushed = 0;
  std::uint64_t rng = 88172645463325252ULL;
  while (pushed < total) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    // Bursts of pushes, then some pops: the queue runs full, empty and in between.
    unsigned burst = rng % 64;
    for (unsigned k = 0; k < burst && pushed < total; k++) {
      if (!owner_q.push(fake(pushed))) {
        Fiber* out[RunQueue::kSize];
        std::uint32_t n = owner_q.take_half(out);
        for (std::uint32_t j = 0; j < n; j++) take(out[j]);
        continue;
      }
      pushed++;
    }
    unsigned pops = (rng >> 8) % 48;
    for (unsigned k = 0; k < pops; k++)
      if (Fiber* f = owner_q.pop()) take(f);
  }
  while (Fiber* f = owner_q.pop()) take(f);
  done.store(true, std::memory_order_release);
  for (auto& t : thieves) t.join();
  EXPECT_EQ(taken.load(), total);
  for (std::size_t i = 0; i < total; i++) ASSERT_EQ(seen[i].load(), 1) << "entry " << i;
}

// Thieves racing each other on a queue the owner only refills: with a
// tiny queue (1-2 entries) every steal contends for the same head.
TEST(RunQueue, ConcurrentThievesOnSmallQueue) {
  const std::size_t total = weft_test::scaled(500'000);
  auto seen = std::make_unique<std::atomic<std::uint8_t>[]>(total);
  RunQueue q;
  std::atomic<bool> done{false};
  std::atomic<std::size_t> taken{0};
  std::vector<std::thread> thieves;
  for (int t = 0; t < 2; t++) {
    thieves.emplace_back([&] {
      RunQueue mine;
      for (;;) {
        bool finished = done.load(std::memory_order_acquire);
        Fiber* f = q.steal_into(mine);
        if (!f) {
          if (finished) return;
          continue;
        }
        for (; f; f = mine.pop()) {
          std::uintptr_t i = unfake(f);
          ASSERT_EQ(seen[i].fetch_add(1), 0);
          taken.fetch_add(1);
        }
      }
    });
  }
  for (std::size_t i = 0; i < total; i++) {
    while (q.size() >= 2) {
      if (Fiber* f = q.pop()) {
        ASSERT_EQ(seen[unfake(f)].fetch_add(1), 0);
        taken.fetch_add(1);
      }
    }
    q.push(fake(i));
  }
  while (Fiber* f = q.pop()) {
    ASSERT_EQ(seen[unfake(f)].fetch_add(1), 0);
    taken.fetch_add(1);
  }
  done.store(true);
  for (auto& t : thieves) t.join();
  EXPECT_EQ(taken.load(), total);
}

}  // namespace
