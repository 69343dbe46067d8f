// weft/select.hpp: Go's select over channels (API.md "Select").
//
//   std::size_t i = weft::select(
//       weft::recv(in, [](std::optional<int> v) { ... }),   // v: nullopt when in is closed and drained
//       weft::send(out, std::move(x), [] { ... }),
//       weft::after(100ms, [] { ... }),
//       weft::otherwise([] { ... }));                          // Go's default
//
// select waits until one case can proceed, runs it and then its handler,
// and returns its index (in argument order). Among several ready cases one
// is chosen uniformly at random. A nil channel's case is never ready. A
// send case on a closed channel throws ChanClosed if chosen. With
// otherwise() it never parks; with only nil channels and neither after()
// nor otherwise() it parks forever.
//
// Send cases and their values. send(ch, std::move(v)) and send(ch, T{...})
// keep a reference to the rvalue they were given and move from it only if
// the case is chosen: a value offered by a case that was not chosen is not
// consumed (v is still intact after select returns). Anything else (an
// lvalue, or a value of another type convertible to T) is copied or
// converted into the case when the case is built.
//
// Stored cases. A channel case (recv or send) refers to its channel (and a
// send case to its value) without owning them: that keeps select free of
// reference counting and copies. So a channel case must be built inside the
// select(...) call, where everything it refers to outlives it. Passing one
// kept in a variable (`auto c = send(ch, std::string("x")); select(c);`,
// whose string is gone) does not compile: a static_assert says so. (An
// explicit select(std::move(c)) is a promise that what c refers to is still
// alive.) To keep cases across selects, use a weft::Selector
// (weft/selector.hpp), which owns its channels and values. after() and
// otherwise() cases own everything they hold and may be stored: a stored
// after(d) means "d after the select that uses it begins", each time.
//
// Durations: after() takes any std::chrono::duration (1.5s, a
// duration<long double>, picoseconds...), rounded up to whole nanoseconds
// and saturated: a duration too long for nanoseconds never fires, a
// negative one is ready at once; a NaN throws std::invalid_argument.
//
// Handlers: a recv handler is called with the std::optional<T> (or with
// nothing, if it takes no argument); the others with nothing. Handlers run
// after every channel lock has been released and may do anything.
//
// Cost: no allocation. The select's frame holds one waiter per channel case
// (48 bytes) plus two 16-bit orders; see channels/src/select.cpp.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <ratio>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <weft/chan.hpp>

namespace weft {

namespace detail {

struct NoHandler {};

struct SelectResult {
  enum Kind : std::uint8_t { Chan, Timeout, Default } kind;
  bool ok;              // Chan: a value was passed (false: closed)
  std::uint32_t index;  // Chan: the winning case's argument index
};

// ws[0..n): the non-nil channel cases (data/core/index/kind set);
// scratch: 2n+1 entries. Throws ChanClosed when a chosen send case's channel
// is closed.
SelectResult select_impl(ChanWaiter* ws, std::uint32_t n, std::uint16_t* scratch,
                         const Clock::time_point* deadline, bool has_default);

enum class CaseKind { Chan, After, Otherwise };

template <class T, class F>
struct RecvCase {
  static constexpr CaseKind kKind = CaseKind::Chan;
  using value_type = T;
  ChanCore* core;
  [[no_unique_address]] F f;
  std::optional<T> out{};
  void* data() noexcept { return &out; }
  static constexpr auto kOp = ChanWaiter::Recv;
};

template <class T, class F, bool Ref>
struct SendCase {
  static constexpr CaseKind kKind = CaseKind::Chan;
  using value_type = T;
  ChanCore* core;
  std::conditional_t<Ref, T*, T> v;
  [[no_unique_address]] F f;
  void* data() noexcept {
    if constexpr (Ref) return v; else return &v;
  }
  T& value() noexcept {
    if constexpr (Ref) return *v; else return v;
  }
  static constexpr auto kOp = ChanWaiter::Send;
};

template <class F>
struct AfterCase {
  static constexpr CaseKind kKind = CaseKind::After;
  std::chrono::nanoseconds d;
  [[no_unique_address]] F f;
};

template <class F>
struct OtherwiseCase {
  static constexpr CaseKind kKind = CaseKind::Otherwise;
  [[no_unique_address]] F f;
};

// Is C (cv/ref stripped) a case made by recv/send/after/otherwise?
template <class C>
concept SelectCase = requires {
  { std::remove_cvref_t<C>::kKind } -> std::convertible_to<CaseKind>;
};

template <class C>
inline constexpr CaseKind case_kind = std::remove_cvref_t<C>::kKind;

template <class C>
struct IsChan : std::false_type {};
template <class T>
struct IsChan<Chan<T>> : std::true_type {};

template <class C>
struct IsDuration : std::false_type {};
template <class R, class P>
struct IsDuration<std::chrono::duration<R, P>> : std::true_type {};

template <class...>
inline constexpr bool kAlwaysFalse = false;

// d rounded up to whole nanoseconds, saturated to nanoseconds' range (so a
// huge d never fires and a very negative one is ready at once). Integer
// reps: exact, in 128 bits. Floating reps: NaN is a bad argument.
template <class Rep, class Period>
constexpr std::chrono::nanoseconds to_nanoseconds(std::chrono::duration<Rep, Period> d) {
  static_assert(std::is_arithmetic_v<Rep>, "weft::after: the duration's rep must be an arithmetic type");
  using NsRep = std::chrono::nanoseconds::rep;
  constexpr NsRep kMax = std::numeric_limits<NsRep>::max(), kMin = std::numeric_limits<NsRep>::min();
  using R = std::ratio_divide<Period, std::nano>;  // d in ns = count * R::num / R::den
  if constexpr (std::is_floating_point_v<Rep>) {
    long double x = static_cast<long double>(d.count()) * R::num / R::den;
    if (x != x) throw std::invalid_argument("weft::after: the duration is NaN");
    if (x >= 0x1p63L) return std::chrono::nanoseconds(kMax);
    if (x <= -0x1p63L) return std::chrono::nanoseconds(kMin);
    auto i = static_cast<NsRep>(x);  // toward zero; then up
    return std::chrono::nanoseconds(static_cast<long double>(i) < x ? i + 1 : i);
  } else {
    static_assert(sizeof(Rep) <= 8, "weft::after: integer duration reps wider than 64 bits are not supported");
    __int128_t c;
    if constexpr (std::is_unsigned_v<Rep> && sizeof(Rep) == 8)
      c = d.count() > static_cast<std::uint64_t>(kMax) ? __int128_t{kMax} : __int128_t{static_cast<NsRep>(d.count())};
    else
      c = static_cast<__int128_t>(d.count());
    // |c| <= 2^63 and R::num < 2^63: the product fits in 127 bits.
    __int128_t p = c * R::num;
    __int128_t q = p / R::den;
    if (p % R::den > 0) q++;  // ceil (division truncates toward zero: a negative p is already rounded up)
    if (q > kMax) return std::chrono::nanoseconds(kMax);
    if (q < kMin) return std::chrono::nanoseconds(kMin);
    return std::chrono::nanoseconds(static_cast<NsRep>(q));
  }
}

template <class F, class... A>
void call_handler(F& f, A&&... a) {
  if constexpr (std::is_same_v<F, NoHandler>) {
    ((void)a, ...);
  } else if constexpr (std::is_invocable_v<F&, A&&...>) {
    std::invoke(f, std::forward<A>(a)...);
  } else {
    static_assert(std::is_invocable_v<F&>, "weft::select: a handler must take the case's value or nothing");
    std::invoke(f);
  }
}

template <class T, class F>
inline constexpr bool kRecvHandlerOk = std::is_same_v<std::decay_t<F>, NoHandler> ||
    std::is_invocable_v<std::decay_t<F>&, std::optional<T>&&> || std::is_invocable_v<std::decay_t<F>&>;
template <class F>
inline constexpr bool kPlainHandlerOk = std::is_same_v<std::decay_t<F>, NoHandler> || std::is_invocable_v<std::decay_t<F>&>;

struct SelectBuild {
  ChanWaiter* ws;
  std::uint32_t n = 0;
  Clock::time_point start{};
  Clock::time_point deadline = Clock::time_point::max();
  std::size_t after_index = 0;
  std::size_t default_index = 0;

  template <class C>
  void add(C& c, std::size_t i) noexcept {
    if constexpr (C::kKind == CaseKind::Chan) {
      if (!c.core) return;  // nil: never ready
      ChanWaiter& w = ws[n++];
      w.core = c.core;
      w.data = c.data();
      w.index = static_cast<std::uint32_t>(i);
      w.kind = C::kOp;
    } else if constexpr (C::kKind == CaseKind::After) {
      Clock::time_point t = deadline_of(start, c.d);
      if (t < deadline || (t == deadline && after_index == SIZE_MAX)) {
        deadline = t;
        after_index = i;
      }
    } else {
      default_index = i;
    }
  }

  // start + d, saturated (d <= 0: start).
  static Clock::time_point deadline_of(Clock::time_point start, std::chrono::nanoseconds d) noexcept {
    return d <= std::chrono::nanoseconds::zero()      ? start
           : d >= Clock::time_point::max() - start ? Clock::time_point::max()
                                                   : start + std::chrono::duration_cast<Clock::duration>(d);
  }
};

template <class C>
void fire(C& c, bool ok) {
  (void)ok;
  if constexpr (requires { c.out; }) {
    call_handler(c.f, std::move(c.out));
  } else {
    call_handler(c.f);
  }
}

}  // namespace detail

// A receive case: no handler (the value, if any, is dropped), or f(std::optional<T>).
template <class T>
detail::RecvCase<T, detail::NoHandler> recv(const Chan<T>& ch) {
  return {ch.core(), {}};
}
template <class T, class F>
detail::RecvCase<T, std::decay_t<F>> recv(const Chan<T>& ch, F&& f) {
  static_assert(detail::kRecvHandlerOk<T, F>,
                "weft::recv(ch, f): f must be callable as f(std::optional<T>) (nullopt: ch closed and drained) or f()");
  return {ch.core(), std::forward<F>(f)};
}
template <class C, class... F>
  requires(!detail::IsChan<std::remove_cvref_t<C>>::value)
void recv(C&&, F&&...) {
  static_assert(detail::kAlwaysFalse<C>, "weft::recv(ch[, f]): ch must be a weft::Chan<T>");
}

// A send case (see the header comment for when v is referenced or copied).
template <class T, class U = T>
  requires std::constructible_from<T, U&&>
auto send(const Chan<T>& ch, U&& v) {
  if constexpr (std::is_same_v<U, T>)
    return detail::SendCase<T, detail::NoHandler, true>{ch.core(), &v, {}};
  else
    return detail::SendCase<T, detail::NoHandler, false>{ch.core(), T(std::forward<U>(v)), {}};
}
template <class T, class U, class F>
  requires std::constructible_from<T, U&&>
auto send(const Chan<T>& ch, U&& v, F&& f) {
  static_assert(detail::kPlainHandlerOk<F>, "weft::send(ch, v, f): f must be callable as f()");
  if constexpr (std::is_same_v<U, T>)
    return detail::SendCase<T, std::decay_t<F>, true>{ch.core(), &v, std::forward<F>(f)};
  else
    return detail::SendCase<T, std::decay_t<F>, false>{ch.core(), T(std::forward<U>(v)), std::forward<F>(f)};
}
template <class C, class U, class... F>
  requires(!detail::IsChan<std::remove_cvref_t<C>>::value ||
           !std::constructible_from<typename std::remove_cvref_t<C>::value_type, U&&>)
void send(C&&, U&&, F&&...) {
  static_assert(detail::IsChan<std::remove_cvref_t<C>>::value, "weft::send(ch, v[, f]): ch must be a weft::Chan<T>");
  static_assert(!detail::IsChan<std::remove_cvref_t<C>>::value, "weft::send(ch, v[, f]): v must be convertible to the channel's T");
}

// Fires once d has passed since select began (d <= 0: ready at once). Any
// std::chrono::duration: rounded up to nanoseconds, saturated (see above).
template <class Rep, class Period, class F = detail::NoHandler>
detail::AfterCase<std::decay_t<F>> after(std::chrono::duration<Rep, Period> d, F&& f = {}) {
  static_assert(detail::kPlainHandlerOk<F>, "weft::after(d, f): f must be callable as f()");
  return {detail::to_nanoseconds(d), std::forward<F>(f)};
}
template <class D, class... F>
  requires(!detail::IsDuration<std::remove_cvref_t<D>>::value)
void after(D&&, F&&...) {
  static_assert(detail::kAlwaysFalse<D>, "weft::after(d[, f]): d must be a std::chrono::duration (100ms, 1.5s, ...)");
}

// Go's default: taken when nothing else is ready; select then never parks.
template <class F = detail::NoHandler>
detail::OtherwiseCase<std::decay_t<F>> otherwise(F&& f = {}) {
  static_assert(detail::kPlainHandlerOk<F>, "weft::otherwise(f): f must be callable as f()");
  return {std::forward<F>(f)};
}

template <class... Cases>
std::size_t select(Cases&&... cases) {
  using detail::CaseKind;
  static_assert((detail::SelectCase<Cases> && ...),
                "weft::select: every argument must be a case made by weft::recv, send, after or otherwise");
  static_assert(((detail::case_kind<Cases> != CaseKind::Chan || !std::is_lvalue_reference_v<Cases>) && ...),
                "weft::select: a recv/send case refers to its channel (and a send case to its value) and must be "
                "built inside the select(...) call; to keep cases across selects, add them to a weft::Selector");
  constexpr std::size_t kChans = (std::size_t{0} + ... + (detail::case_kind<Cases> == CaseKind::Chan ? 1 : 0));
  constexpr std::size_t kAfters = (std::size_t{0} + ... + (detail::case_kind<Cases> == CaseKind::After ? 1 : 0));
  constexpr std::size_t kDefaults = (std::size_t{0} + ... + (detail::case_kind<Cases> == CaseKind::Otherwise ? 1 : 0));
  static_assert(kDefaults <= 1, "weft::select: at most one otherwise()");
  static_assert(sizeof...(Cases) < 0x7fff, "weft::select: too many cases");

  detail::ChanWaiter ws[kChans ? kChans : 1];
  std::uint16_t scratch[2 * kChans + 1];
  detail::SelectBuild b{ws};
  if constexpr (kAfters > 0) {
    b.start = Clock::now();
    b.after_index = SIZE_MAX;
  }
  std::size_t i = 0;
  (b.add(cases, i++), ...);
  detail::SelectResult r = detail::select_impl(ws, b.n, scratch, kAfters ? &b.deadline : nullptr, kDefaults > 0);
  std::size_t chosen = r.kind == detail::SelectResult::Chan      ? r.index
                       : r.kind == detail::SelectResult::Timeout ? b.after_index
                                                                 : b.default_index;
  i = 0;
  ((i++ == chosen ? detail::fire(cases, r.ok) : void()), ...);
  return chosen;
}

}  // namespace weft
