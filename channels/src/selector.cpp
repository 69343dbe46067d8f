// selector.cpp: weft::Selector's wait (weft/selector.hpp), on select()'s
// type-erased core (select.cpp).
//
// State: a Selector belongs to one fiber at a time (no locks; no shared
// state of its own). Its waiters (ws_) are handed to select_impl, which
// queues them on channels while it parks and unlinks every one of them
// before it returns or throws (select.cpp, step 4), so between waits no
// channel refers to them and they may be rewritten or reallocated. The
// channels they name are kept alive by the nodes' references.
#include <weft/selector.hpp>

#include <algorithm>
#include <stdexcept>

namespace weft {

std::size_t Selector::push(std::unique_ptr<detail::SelNode> n) {
  if (nodes_.size() >= kMaxCases) throw std::invalid_argument("weft::Selector::add: too many cases (at most 32766)");
  if (n->kind == detail::CaseKind::Otherwise && default_index_ != kNone)
    throw std::invalid_argument("weft::Selector::add: at most one otherwise() case");
  // Everything that may allocate first, so that a throw leaves the Selector as it was.
  std::size_t chans = chans_ + (n->kind == detail::CaseKind::Chan ? 1 : 0);
  if (nodes_.size() == nodes_.capacity()) nodes_.reserve(nodes_.empty() ? 4 : 2 * nodes_.size());
  if (ws_.capacity() < chans) ws_.reserve(std::max(chans, 2 * ws_.capacity()));
  if (scratch_.size() < 2 * chans + 1) scratch_.resize(std::max(2 * chans + 1, 2 * scratch_.size()));
  std::size_t i = nodes_.size();
  switch (n->kind) {
    case detail::CaseKind::Chan:
      chans_ = chans;
      break;
    case detail::CaseKind::After:
      // select()'s rule: the earliest fires; among equal ones the first.
      if (after_index_ == kNone || n->d < after_d_) {
        after_index_ = i;
        after_d_ = n->d;
      }
      break;
    case detail::CaseKind::Otherwise:
      default_index_ = i;
      break;
  }
  nodes_.push_back(std::move(n));
  stale_ = true;
  return i;
}

void Selector::clear() noexcept {
  nodes_.clear();
  ws_.clear();
  chans_ = 0;
  after_index_ = kNone;
  default_index_ = kNone;
  stale_ = true;
}

// The waiters of the channel cases that can still be ready (not nil, not a
// spent send), sorted by channel address: select_impl's insertion sort into
// lock order then does one comparison per case. Never allocates (ws_ has
// room for every channel case).
void Selector::rebuild() noexcept {
  ws_.clear();
  for (std::size_t i = 0; i < nodes_.size(); i++) {
    detail::SelNode& n = *nodes_[i];
    if (n.kind != detail::CaseKind::Chan || !n.core || n.spent) continue;
    detail::ChanWaiter w;
    w.core = n.core;
    w.data = n.data;
    w.index = static_cast<std::uint32_t>(i);
    w.kind = n.op;
    ws_.push_back(w);
  }
  std::sort(ws_.begin(), ws_.end(), [](const detail::ChanWaiter& a, const detail::ChanWaiter& b) {
    return a.core != b.core ? std::less<>()(a.core, b.core) : a.index < b.index;
  });
  stale_ = false;
}

std::size_t Selector::wait() {
  if (stale_) rebuild();
  Clock::time_point deadline;
  if (after_index_ != kNone) deadline = detail::SelectBuild::deadline_of(Clock::now(), after_d_);
  detail::SelectResult r = detail::select_impl(ws_.data(), static_cast<std::uint32_t>(ws_.size()), scratch_.data(),
                                               after_index_ != kNone ? &deadline : nullptr, default_index_ != kNone);
  std::size_t chosen = r.kind == detail::SelectResult::Chan      ? r.index
                       : r.kind == detail::SelectResult::Timeout ? after_index_
                                                                 : default_index_;
  detail::SelNode& n = *nodes_[chosen];
  if (n.kind == detail::CaseKind::Chan && n.op == detail::ChanWaiter::Send) {
    n.spent = true;  // its value is gone: out of the waiters from the next wait on
    stale_ = true;
  }
  n.fire();  // last: the handler may add() cases
  return chosen;
}

}  // namespace weft
