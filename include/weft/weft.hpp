// weft/weft.hpp: everything (API.md). It lives at the top of the tree, not
// in runtime/include: it names every part, and the runtime's own headers
// include nothing of the parts built on it (channels/, netpoll/).
#pragma once

#include <weft/park.hpp>
#include <weft/runtime.hpp>
#include <weft/sync.hpp>
#include <weft/blocking.hpp>
#include <weft/cancel.hpp>
#include <weft/scope.hpp>
#include <weft/chan.hpp>
#include <weft/select.hpp>
#include <weft/signal.hpp>
#include <weft/selector.hpp>
#include <weft/timer.hpp>
#include <weft/net.hpp>
#include <weft/bufio.hpp>
