// chan_lifetime_test.cpp: "a woken waiter destroys the primitive" (API.md:
// a primitive may be destroyed as soon as no fiber is parked in it, even if
// fibers it woke have not returned yet; Go's WaitGroup-with-timeout idiom).
// A fiber woken by a channel operation may run at once on another worker
// and drop the channel's last handle; whoever woke it must not touch the
// core after the unpark without a reference of its own. The peers here
// reach the channel through a pointer to the owner's handle, as a lambda
// capturing by reference does, so the owner's handle is the only reference.
// Run under ASan (a freed core touched) and TSan (a free racing an access).
#include <memory>
#include <thread>
#include <vector>

#include "test_util.hpp"

using weft::Chan;

namespace {

class ChanLifetime : public chantest::WorkersTest {};

// The brief's shape: the receiver takes the last value and drops the last
// handle while the sender is still returning from send. The interleaving:
// the owner parks in recv; the sender (holding only a pointer) hands the
// value over under the lock, unlocks, unparks the owner; the owner runs on
// another worker and frees the core while the sender is between that unpark
// and its return. The same with a buffered channel whose sender is parked
// (the receiver is then the waker and the sender the one woken), and with
// the woken fiber parked in a select.
TEST_P(ChanLifetime, WokenFiberDropsLastHandleWhileWakerReturns) {
  weft::run([] {
    for (std::size_t t = 0; t < chantest::scaled(300, 20); t++) {
      for (bool in_select : {false, true}) {
        auto own = std::make_unique<Chan<int>>(0);
        Chan<int>* ch = own.get();
        auto owner = weft::go([own = std::move(own), in_select]() mutable {
          int v = -1;
          if (in_select) weft::select(weft::recv(*own, [&](std::optional<int> x) { v = *x; }));
          else v = *own->recv();
          own.reset();  // the last handle: frees the core
          return v;
        });
        chantest::wait_others_parked();
        ch->send(42);  // wakes the owner, which may free the core at once
        EXPECT_EQ(owner.join(), 42);
      }
      // Buffered, the sender is the one woken: it is parked on a full ring
      // through a pointer; the owner receives (making room, waking it) and
      // drops the last handle.
      auto own = std::make_unique<Chan<int>>(1);
      Chan<int>* ch = own.get();
      ch->send(1);
      auto sender = weft::go([ch] { ch->send(2); });
      chantest::wait_others_parked();
      EXPECT_EQ(*own->recv(), 1);  // the sender's 2 moves into the ring; it is woken
      own.reset();                 // the sender may still be returning from send
      sender.join();
    }
  }, opts());
}

// close() wakes every parked fiber, under the lock, one after the other. The
// interleaving that freed the core under close: the owner (holding the only
// handle) parks in recv first, then 500 more receivers park through a
// pointer; the closer, also through a pointer, unparks the owner first and
// goes on with the 500 others; meanwhile a worker runs the owner, which
// returns nullopt and drops the last handle; close then read the freed
// queues and stored to the freed lock. Now close holds a reference of its
// own until it has unlocked. The closer is a plain thread so that the owner
// can run while close goes on (a fiber's wakes go to its own worker's
// queue without waking another worker; a thread's go to the global queue
// and wake one).
TEST_P(ChanLifetime, CloseWakesOwnerWhoDropsLastHandle) {
  weft::run([] {
    for (std::size_t t = 0; t < chantest::scaled(20, 5); t++) {
      auto own = std::make_unique<Chan<int>>(0);
      Chan<int>* ch = own.get();
      auto owner = weft::go([own = std::move(own)]() mutable {
        bool got = own->recv().has_value();
        own.reset();
        return got;
      });
      chantest::wait_others_parked();
      std::vector<weft::JoinHandle<bool>> others;
      for (int i = 0; i < 500; i++) others.push_back(weft::go([ch] { return ch->recv().has_value(); }));
      chantest::wait_others_parked();
      std::thread closer([ch] { ch->close(); });
      EXPECT_FALSE(owner.join());
      for (auto& h : others) EXPECT_FALSE(h.join());
      closer.join();  // close has returned: all it woke have run
    }
  }, opts());
}

// A parked select woken through one channel still has a waiter queued on
// the others until it unlinks them. The interleaving that freed a core
// under the select: B parks in select(recv(data), recv(quit)), where quit
// is A's (B holds a pointer); A sends on data, which claims B's select and
// unparks it, and A, knowing that nobody is parked any more, drops quit's
// last handle; then B runs (on one worker: only now, deterministically) and
// locks quit to unlink its waiter: a freed core. Now the select holds a
// reference on each of its channels from before it parks until that
// cleanup is done. Also with close (of data) as the waker.
TEST_P(ChanLifetime, SelectWokenOnOneChannelWhileOtherIsDropped) {
  weft::run([] {
    for (std::size_t t = 0; t < chantest::scaled(300, 20); t++) {
      for (int how = 0; how < 2; how++) {
        Chan<int> data(0);
        auto quit = std::make_unique<Chan<int>>(0);
        Chan<int>* q = quit.get();
        auto b = weft::go([&data, q] { return weft::select(weft::recv(data), weft::recv(*q)); });
        chantest::wait_others_parked();
        if (how == 0) data.send(1); else data.close();
        quit.reset();  // B is no longer parked: the last handle goes
        EXPECT_EQ(b.join(), 0u);
      }
    }
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, ChanLifetime, chantest::kWorkers, chantest::workers_name);

}  // namespace
