// weft/chan.hpp: typed CSP channels with Go's semantics (API.md "Channels").
//
// Chan<T> is a thin typed handle (one pointer) over one type-erased core,
// detail::ChanCore (channels/src/chan_core.hpp): a ring buffer, a queue of
// parked senders, a queue of parked receivers, one spin lock. Copies of a
// handle name the same channel (the core is reference counted); a
// default-constructed handle is Go's nil channel.
//
// Values: T travels by move only, never by copy, so T may be move-only. An
// unbuffered send moves the value once, straight from the sender's argument
// into the receiver's std::optional<T>; a buffered one moves it into the
// ring and out again. T's move constructor must be noexcept, checked at
// compile time (static_assert in Chan): values move under the channel lock
// and inside a waker's hand-off to a parked fiber, where an exception has
// no sane recovery (the sender's value half-moved, the receiver already
// dequeued), and the moves are noexcept wrappers, so a throwing move would
// terminate the process. A T whose move may throw (libstdc++'s std::deque,
// say) travels as std::unique_ptr<T>.
//
// Waiters (detail::ChanWaiter, detail::WaitCtx) live on the parked fiber's
// stack; nothing is allocated per operation. Their fields are documented in
// channels/src/chan_core.hpp, which owns the protocol; they are declared here
// only so that select() can keep them in its own frame.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <weft/park.hpp>

namespace weft {

// Thrown by a send on a closed channel (also a sender parked when the channel
// is closed), and by close() of a closed or nil channel.
struct ChanClosed : std::logic_error {
  using std::logic_error::logic_error;
  ChanClosed() : std::logic_error("weft: send on closed channel") {}
};

template <class T>
class Chan;

namespace detail {

struct ChanCore;

// How the core moves a T without knowing it. `src` is always a T that is
// left moved-from (its owner destroys it); `out` is always a std::optional<T>.
struct ElemOps {
  void (*to_out)(void* out, void* src) noexcept;  // out->emplace(std::move(*src))
  void (*to_buf)(void* dst, void* src) noexcept;  // ::new (dst) T(std::move(*src))
  void (*destroy)(void* p) noexcept;              // p->~T(); null when trivial
  std::size_t size;
  std::size_t align;
};

template <class T>
inline constexpr ElemOps kElemOps = {
    +[](void* out, void* src) noexcept {
      static_cast<std::optional<T>*>(out)->emplace(std::move(*static_cast<T*>(src)));
    },
    +[](void* dst, void* src) noexcept { ::new (dst) T(std::move(*static_cast<T*>(src))); },
    std::is_trivially_destructible_v<T> ? nullptr : +[](void* p) noexcept { static_cast<T*>(p)->~T(); },
    sizeof(T),
    alignof(T),
};

// One park of one fiber in a channel operation or a select. Lives on the
// waiting fiber's stack. See chan_core.hpp for who writes which field when.
struct WaitCtx {
  static constexpr std::uint32_t kNotWon = 0xffffffffu;
  static constexpr std::uint32_t kAborted = 0xfffffffeu;
  rt::Parker parker;
  std::atomic<std::uint32_t> won{kNotWon};  // select only: the winning case
  bool select = false;
  bool ok = false;  // set by the waker: value passed (false: channel closed)
};

// One queued operation: a plain send/recv, or one case of a select.
struct ChanWaiter {
  enum Kind : std::uint8_t { Recv, Send };
  ChanWaiter* prev = nullptr;
  ChanWaiter* next = nullptr;
  WaitCtx* ctx = nullptr;
  void* data = nullptr;        // Send: the T to move from; Recv: the std::optional<T> to fill
  ChanCore* core = nullptr;    // select: the case's channel
  std::uint32_t index = 0;     // select: the case's argument index
  Kind kind = Recv;
  bool queued = false;
};

ChanCore* chan_create(std::size_t capacity, const ElemOps* ops);
void chan_retain(ChanCore* c) noexcept;
void chan_release(ChanCore* c) noexcept;
void chan_send(ChanCore* c, void* src);             // throws ChanClosed; nil parks forever
bool chan_recv(ChanCore* c, void* out);             // false: closed and drained
bool chan_try_send(ChanCore* c, void* src);         // throws ChanClosed
bool chan_try_recv(ChanCore* c, void* out) noexcept;
void chan_close(ChanCore* c);
std::size_t chan_size(const ChanCore* c) noexcept;
std::size_t chan_capacity(const ChanCore* c) noexcept;

}  // namespace detail

template <class T>
class Chan {
  static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_array_v<T>,
                "weft::Chan<T>: T must be a non-const object type");
  static_assert(std::is_move_constructible_v<T>, "weft::Chan<T>: T must be move-constructible");
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "weft::Chan<T>: T's move constructor (and destructor) must be noexcept: values move under the "
                "channel lock, where an exception cannot be recovered; send a std::unique_ptr<T> instead");

 public:
  using value_type = T;

  Chan() noexcept = default;
  explicit Chan(std::size_t capacity) : c_(detail::chan_create(capacity, &detail::kElemOps<T>)) {}
  Chan(const Chan& o) noexcept : c_(o.c_) {
    if (c_) detail::chan_retain(c_);
  }
  Chan(Chan&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Chan& operator=(const Chan& o) noexcept {
    Chan(o).swap(*this);
    return *this;
  }
  Chan& operator=(Chan&& o) noexcept {
    Chan(std::move(o)).swap(*this);
    return *this;
  }
  ~Chan() {
    if (c_) detail::chan_release(c_);
  }
  void swap(Chan& o) noexcept { std::swap(c_, o.c_); }

  // Parks until the value is taken (unbuffered) or buffered. Throws
  // ChanClosed if the channel is closed, or gets closed while we wait.
  void send(T v) const { detail::chan_send(c_, &v); }
  // Parks until a value arrives; std::nullopt once closed and drained.
  std::optional<T> recv() const {
    std::optional<T> r;
    detail::chan_recv(c_, &r);
    return r;
  }
  // Never parks. On false, v is untouched. Throws ChanClosed when closed.
  bool try_send(T& v) const { return c_ && detail::chan_try_send(c_, &v); }
  bool try_send(T&& v) const { return try_send(v); }
  // Never parks; std::nullopt when nothing is ready now (or closed and drained).
  std::optional<T> try_recv() const noexcept {
    std::optional<T> r;
    if (c_) detail::chan_try_recv(c_, &r);
    return r;
  }
  // Wakes every parked receiver (they get nullopt once the buffer is
  // drained) and sender (they throw ChanClosed). Throws ChanClosed on a
  // second close or on a nil channel.
  void close() const { detail::chan_close(c_); }

  std::size_t size() const noexcept { return c_ ? detail::chan_size(c_) : 0; }
  std::size_t capacity() const noexcept { return c_ ? detail::chan_capacity(c_) : 0; }
  explicit operator bool() const noexcept { return c_ != nullptr; }
  friend bool operator==(const Chan& a, const Chan& b) noexcept { return a.c_ == b.c_; }

  // for (T v : ch) { ... } receives until the channel is closed and drained.
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(detail::ChanCore* c) : c_(c) { ++*this; }
    T&& operator*() { return std::move(*cur_); }
    T* operator->() { return &*cur_; }
    iterator& operator++() {
      cur_.reset();
      detail::chan_recv(c_, &cur_);
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const noexcept { return !cur_.has_value(); }

   private:
    detail::ChanCore* c_ = nullptr;
    std::optional<T> cur_;
  };
  iterator begin() const { return iterator(c_); }
  std::default_sentinel_t end() const noexcept { return {}; }

  // The type-erased core (nullptr for a nil channel): for select().
  detail::ChanCore* core() const noexcept { return c_; }

 private:
  detail::ChanCore* c_ = nullptr;
};

template <class T>
Chan<T> make_chan(std::size_t capacity = 0) {
  return Chan<T>(capacity);
}

}  // namespace weft
