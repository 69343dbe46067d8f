// weft/weft.hpp: everything (API.md).
#pragma once

#include <weft/park.hpp>
#include <weft/runtime.hpp>
#include <weft/sync.hpp>
#include <weft/chan.hpp>
#include <weft/select.hpp>
#include <weft/net.hpp>
