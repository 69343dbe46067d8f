// weft/weft.hpp: everything (API.md).
#pragma once

#include <weft/park.hpp>
#include <weft/runtime.hpp>
#include <weft/sync.hpp>
