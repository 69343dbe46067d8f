// deadlock_skip.hpp: shared by the runtime and channel test helpers.
#pragma once

#include <gtest/gtest.h>

// Deadlock detection needs the list of the process's threads, which only
// Linux's platform layer gives (runtime/src/platform/thread.hpp): elsewhere,
// and with -Dplatform=generic, it is off and a test that expects
// weft::Deadlock is skipped.
#if defined(WEFT_PLATFORM_LINUX)
#define WEFT_SKIP_WITHOUT_DEADLOCK_DETECTION() static_cast<void>(0)
#else
#define WEFT_SKIP_WITHOUT_DEADLOCK_DETECTION() \
  GTEST_SKIP() << "no deadlock detection on this platform (it cannot list threads)"
#endif
