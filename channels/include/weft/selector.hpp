// weft/selector.hpp: a select whose cases are known only at run time (Go's
// reflect.Select; API.md "Dynamic select").
//
//   weft::Selector sel;
//   for (auto& ch : inputs) sel.add(weft::recv(ch, [&](std::optional<Msg> m) { ... }));
//   sel.add(weft::after(1s, [] { ... }));
//   for (;;) std::size_t i = sel.wait();   // as select(): a ready case at random, its handler, its index
//
// Cases are made by recv/send/after/otherwise, as for select(), and built
// inside the add(...) call. add() copies what the case needs into the
// Selector: a reference to the channel (a Chan handle's worth: the channel
// lives as long as the Selector holds the case), a send case's value (moved
// in: send(ch, std::move(v)) leaves v moved-from at add(), not at wait()),
// the handler. Element types may differ between cases.
//
// wait() behaves as select() with those cases, in add order: uniform choice
// among ready cases, nil channels never ready, otherwise() makes it never
// park, it is a cancellation point when it may park (throws Cancelled, and
// then sent nothing, received nothing, and left no waiter). After a case's
// clock starts when wait() is called, every time; among several afters the
// earliest fires (the first added among equal ones). At most one
// otherwise(): a second add(otherwise()) throws std::invalid_argument.
// A send case that was chosen has delivered its value: it is never ready
// again until clear() (Go's reflect.Select would send a zero value; we have
// none to send). A send case chosen on a closed channel throws ChanClosed
// and keeps its value.
//
// Cost: add() allocates (one node per case, and grows the Selector's
// arrays); wait() never does: it reuses the waiters and the select's
// scratch orders built for the cases, rebuilding them in place only after
// add(), clear() or a send case spent. The waiters are kept sorted by
// channel address, which is select's lock order, so each wait sorts in
// linear time.
//
// A Selector is one fiber's object (like a std::vector): no concurrent
// calls. A handler may add() cases to the Selector it runs in, but must
// not clear() or destroy it (the handler itself lives in the Selector).
// Movable, not copyable.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <weft/select.hpp>

namespace weft {

namespace detail {

// One case owned by a Selector. Channel cases hold one reference on their
// channel (released by the destructor); data points into the derived node.
struct SelNode {
  ChanCore* core = nullptr;      // channel cases: nullptr for a nil channel
  void* data = nullptr;          // recv: the std::optional<T> to fill; send: the T to move from
  std::chrono::nanoseconds d{};  // after
  CaseKind kind;
  ChanWaiter::Kind op = ChanWaiter::Recv;
  bool spent = false;  // send: its value was taken

  explicit SelNode(CaseKind k, ChanCore* c = nullptr) noexcept : core(c), kind(k) {
    if (core) chan_retain(core);
  }
  SelNode(const SelNode&) = delete;
  SelNode& operator=(const SelNode&) = delete;
  virtual ~SelNode() {
    if (core) chan_release(core);
  }
  // Runs the case's handler (a recv's with the value received). The node
  // is left ready for the next wait before the handler runs.
  virtual void fire() = 0;
};

template <class T, class F>
struct SelRecv final : SelNode {
  std::optional<T> out;
  [[no_unique_address]] F f;
  SelRecv(ChanCore* c, F&& fn) : SelNode(CaseKind::Chan, c), f(std::move(fn)) {
    data = &out;
    op = ChanWaiter::Recv;
  }
  void fire() override {
    struct Reset {  // empty for the next wait, even if the handler throws
      std::optional<T>& o;
      ~Reset() { o.reset(); }
    } reset{out};
    call_handler(f, std::move(out));
  }
};

template <class T, class F>
struct SelSend final : SelNode {
  std::optional<T> v;
  [[no_unique_address]] F f;
  SelSend(ChanCore* c, T&& x, F&& fn) : SelNode(CaseKind::Chan, c), v(std::move(x)), f(std::move(fn)) {
    data = &*v;
    op = ChanWaiter::Send;
  }
  void fire() override {
    v.reset();  // moved-from by the channel: ours to destroy
    call_handler(f);
  }
};

template <class F>
struct SelPlain final : SelNode {  // after / otherwise
  [[no_unique_address]] F f;
  SelPlain(CaseKind k, F fn) : SelNode(k), f(std::move(fn)) {}
  void fire() override { call_handler(f); }
};

// A copy of m for an lvalue case, a move for an rvalue one.
template <class Case, class M>
std::remove_const_t<M> take_member(M& m) {
  if constexpr (std::is_lvalue_reference_v<Case>) return m; else return std::move(m);
}

}  // namespace detail

class Selector {
 public:
  Selector() = default;
  // Moving takes every case; the moved-from Selector is empty.
  Selector(Selector&& o) noexcept
      : nodes_(std::move(o.nodes_)),
        ws_(std::move(o.ws_)),
        scratch_(std::move(o.scratch_)),
        chans_(o.chans_),
        after_index_(o.after_index_),
        after_d_(o.after_d_),
        default_index_(o.default_index_) {
    o.clear();
  }
  Selector& operator=(Selector&& o) noexcept {
    if (this != &o) {
      clear();
      Selector tmp(std::move(o));
      swap(tmp);
    }
    return *this;
  }
  ~Selector() = default;
  void swap(Selector& o) noexcept {
    std::swap(nodes_, o.nodes_);
    std::swap(ws_, o.ws_);
    std::swap(scratch_, o.scratch_);
    std::swap(chans_, o.chans_);
    std::swap(after_index_, o.after_index_);
    std::swap(after_d_, o.after_d_);
    std::swap(default_index_, o.default_index_);
    std::swap(stale_, o.stale_);
  }

  // Adds a case made by recv/send/after/otherwise; returns its index (0, 1, ...).
  template <class Case>
  std::size_t add(Case&& c);
  // Waits as select() does; runs the chosen case's handler; returns its index.
  std::size_t wait();
  std::size_t size() const noexcept { return nodes_.size(); }
  // Removes every case (releasing their channels, values and handlers).
  void clear() noexcept;

 private:
  static constexpr std::size_t kNone = SIZE_MAX;
  static constexpr std::size_t kMaxCases = 0x7ffe;  // select_impl's 16-bit orders
  std::size_t push(std::unique_ptr<detail::SelNode> n);
  void rebuild() noexcept;

  std::vector<std::unique_ptr<detail::SelNode>> nodes_;  // by case index
  std::vector<detail::ChanWaiter> ws_;     // the live channel cases, by channel address (capacity: chans_)
  std::vector<std::uint16_t> scratch_;     // select_impl's orders (2 * chans_ + 1)
  std::size_t chans_ = 0;                  // channel cases added
  std::size_t after_index_ = kNone;        // the after that fires first
  std::chrono::nanoseconds after_d_{};
  std::size_t default_index_ = kNone;
  bool stale_ = true;                      // ws_ must be rebuilt
};

template <class Case>
std::size_t Selector::add(Case&& c) {
  static_assert(detail::SelectCase<Case>,
                "weft::Selector::add: the argument must be a case made by weft::recv, send, after or otherwise");
  using C = std::remove_cvref_t<Case>;
  if constexpr (C::kKind == detail::CaseKind::Chan) {
    static_assert(!std::is_lvalue_reference_v<Case> && !std::is_const_v<std::remove_reference_t<Case>>,
                  "weft::Selector::add: build the recv/send case inside the add(...) call "
                  "(sel.add(weft::recv(ch, f))): it refers to its channel and value until add() has copied them");
    using T = typename C::value_type;
    if constexpr (requires { c.out; })
      return push(std::make_unique<detail::SelRecv<T, decltype(c.f)>>(c.core, std::move(c.f)));
    else
      return push(std::make_unique<detail::SelSend<T, decltype(c.f)>>(c.core, std::move(c.value()), std::move(c.f)));
  } else {
    using F = decltype(c.f);
    auto n = std::make_unique<detail::SelPlain<F>>(C::kKind, detail::take_member<Case>(c.f));
    if constexpr (C::kKind == detail::CaseKind::After) n->d = c.d;
    return push(std::move(n));
  }
}

}  // namespace weft
