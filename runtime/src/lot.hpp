// lot.hpp: the parking lot: wait queues keyed by a primitive's address,
// kept outside the primitive (as Go's semtable, WebKit's ParkingLot, a
// kernel's futex hash).
//
// Why outside. std::condition_variable's rule, which API.md adopts for every
// primitive: the object may be destroyed as soon as every fiber parked in it
// was woken, even before those fibers return from their wait. Go's idiom
//     helper: wg.wait(); done.close();      owner: wg.wait(); return;
// relies on it: the owner returns and frees wg while the helper's wake is
// still in flight. With the queue and its lock inside the primitive, some
// party always touched the object after that point: the waker released the
// lock after its first unpark, a woken waiter re-took the lock to let the
// waker finish, a timed-out waiter took it to unlink itself. Here the waker
// makes its last touch of the primitive (the state change: counter to zero,
// notify) under the bucket lock and then touches only the bucket, which is
// immortal; woken waiters never touch the primitive again; a timed-out or
// cancelled waiter unlinks itself under the bucket lock. So nothing but the
// primitive's own callers ever touches its memory.
//
// Layout. 256 buckets (cache-line aligned, static, never freed), chosen by a
// hash of the key. A bucket holds a doubly linked list of *queues*, one per
// key with waiters; a queue is a circular doubly linked FIFO of LotWaiters
// whose first element (head == true) also carries the queue's links in the
// bucket list. Waiters live on the parked fibers' stacks.
//
// Invariants (all under the bucket's lock):
//   - a waiter is in a queue iff `queued`; exactly one waiter per queue has
//     `head`, and only heads are linked through knext/kprev;
//   - every waiter in a queue has the queue's key;
//   - whoever unlinks a waiter (a waker that pops it, or the waiter itself
//     after a timeout or cancellation) does so under the lock, so the other
//     party sees `queued == false` and never touches the record again once
//     the lock is released. Wakers unpark under the bucket lock: a waiter
//     whose claim was lost (its timeout won) cannot return and free its
//     record until the waker has released the lock.
// Lock order: a bucket lock is a primitive's queue lock (HACKING.md level 1):
// taken before Runtime::idle_lock and gq_lock (through unpark), never while
// holding another bucket lock.
#pragma once

#include <cstdint>

#include <weft/park.hpp>
#include <weft/sync.hpp>

namespace weft::detail {

struct LotWaiter {
  rt::Parker parker;
  const void* key = nullptr;
  LotWaiter* next = nullptr;   // circular FIFO of this key's queue
  LotWaiter* prev = nullptr;
  LotWaiter* knext = nullptr;  // the bucket's list of queues (heads only)
  LotWaiter* kprev = nullptr;
  bool queued = false;
  bool head = false;
};

struct alignas(64) LotBucket {
  SpinLock lock;
  LotWaiter* queues = nullptr;  // guarded by lock
};

LotBucket& lot_bucket(const void* key) noexcept;

// The bucket lock must be held for all of these.
void lot_push(LotBucket& b, LotWaiter* w) noexcept;           // at the tail of w->key's queue
void lot_remove(LotBucket& b, LotWaiter* w) noexcept;         // w->queued must be true
LotWaiter* lot_pop(LotBucket& b, const void* key) noexcept;   // the oldest waiter of key, or null
bool lot_has_waiters(LotBucket& b, const void* key) noexcept;
// Pops waiters of key until one is woken with r (true) or none is left.
bool lot_wake_one(LotBucket& b, const void* key, WakeReason r = WakeReason::Event) noexcept;
// Pops and wakes every waiter of key; returns how many were woken.
std::size_t lot_wake_all(LotBucket& b, const void* key) noexcept;

}  // namespace weft::detail
