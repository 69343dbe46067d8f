// lot.cpp: the parking lot. Invariants and lock order: lot.hpp.
#include "lot.hpp"

namespace weft::detail {

namespace {
constinit LotBucket g_buckets[256];

LotWaiter* find_queue(LotBucket& b, const void* key) noexcept {
  for (LotWaiter* h = b.queues; h; h = h->knext)
    if (h->key == key) return h;
  return nullptr;
}

// Puts n in h's place in the bucket's list of queues (n becomes the head).
void replace_head(LotBucket& b, LotWaiter* h, LotWaiter* n) noexcept {
  n->head = true;
  n->knext = h->knext;
  n->kprev = h->kprev;
  if (n->kprev) n->kprev->knext = n; else b.queues = n;
  if (n->knext) n->knext->kprev = n;
  h->head = false;
  h->knext = h->kprev = nullptr;
}
}  // namespace

LotBucket& lot_bucket(const void* key) noexcept {
  auto k = reinterpret_cast<std::uintptr_t>(key);
  return g_buckets[(k * 0x9E3779B97F4A7C15ull) >> 56];
}

void lot_push(LotBucket& b, LotWaiter* w) noexcept {
  w->queued = true;
  LotWaiter* h = find_queue(b, w->key);
  if (!h) {
    w->next = w->prev = w;
    w->head = true;
    w->kprev = nullptr;
    w->knext = b.queues;
    if (b.queues) b.queues->kprev = w;
    b.queues = w;
    return;
  }
  w->head = false;
  w->next = h;
  w->prev = h->prev;
  h->prev->next = w;
  h->prev = w;
}

void lot_remove(LotBucket& b, LotWaiter* w) noexcept {
  if (w->next == w) {  // the queue's only waiter: drop the queue
    if (w->kprev) w->kprev->knext = w->knext; else b.queues = w->knext;
    if (w->knext) w->knext->kprev = w->kprev;
    w->knext = w->kprev = nullptr;
    w->head = false;
  } else {
    if (w->head) replace_head(b, w, w->next);
    w->prev->next = w->next;
    w->next->prev = w->prev;
  }
  w->next = w->prev = nullptr;
  w->queued = false;
}

LotWaiter* lot_pop(LotBucket& b, const void* key) noexcept {
  LotWaiter* h = find_queue(b, key);
  if (h) lot_remove(b, h);
  return h;
}

bool lot_has_waiters(LotBucket& b, const void* key) noexcept { return find_queue(b, key) != nullptr; }

bool lot_wake_one(LotBucket& b, const void* key, WakeReason r) noexcept {
  while (LotWaiter* w = lot_pop(b, key))
    if (rt::unpark(w->parker, r)) return true;
  return false;
}

std::size_t lot_wake_all(LotBucket& b, const void* key) noexcept {
  LotWaiter* h = find_queue(b, key);
  if (!h) return 0;
  // Unlink the whole queue at once, then walk it: every record stays valid
  // until we release the bucket lock (lot.hpp), and nobody else can reach
  // them meanwhile since they are no longer queued.
  LotWaiter* first = h;
  if (h->kprev) h->kprev->knext = h->knext; else b.queues = h->knext;
  if (h->knext) h->knext->kprev = h->kprev;
  h->knext = h->kprev = nullptr;
  h->head = false;
  std::size_t n = 0;
  LotWaiter* w = first;
  do {
    LotWaiter* next = w->next;
    w->next = w->prev = nullptr;
    w->queued = false;
    if (rt::unpark(w->parker)) n++;
    w = next;
  } while (w != first);
  return n;
}

}  // namespace weft::detail
