// switch_avx512_test.cpp: the context switch's clobber list covers the
// AVX-512 registers (issue 8: built with -mavx512f, GCC 12 and clang 14 kept
// live doubles in xmm16/xmm17 across jump_fcontext, and the other context's
// vector code overwrote them).
//
// This file is built with -mavx512f. Context A keeps eight doubles live
// across a switch to context B, which overwrites xmm16-31 and k1 and jumps
// back. With those registers in the clobber list the compiler keeps A's
// values in memory across the switch; without them it puts them in
// xmm16-31 and A computes with B's garbage. Skipped on a CPU without
// AVX-512F.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "switch.hpp"

namespace {

namespace bctx = boost::context::detail;

bctx::fcontext_t g_back = nullptr;

void other_context(bctx::transfer_t t) {
  g_back = t.fctx;
  for (;;) {
    // Vector code of another fiber: all of xmm16-31 and k1 overwritten.
    asm volatile(
        "vpternlogq $0xff, %%zmm16, %%zmm16, %%zmm16\n\t"
        "vmovdqa64 %%zmm16, %%zmm17\n\t" "vmovdqa64 %%zmm16, %%zmm18\n\t" "vmovdqa64 %%zmm16, %%zmm19\n\t"
        "vmovdqa64 %%zmm16, %%zmm20\n\t" "vmovdqa64 %%zmm16, %%zmm21\n\t" "vmovdqa64 %%zmm16, %%zmm22\n\t"
        "vmovdqa64 %%zmm16, %%zmm23\n\t" "vmovdqa64 %%zmm16, %%zmm24\n\t" "vmovdqa64 %%zmm16, %%zmm25\n\t"
        "vmovdqa64 %%zmm16, %%zmm26\n\t" "vmovdqa64 %%zmm16, %%zmm27\n\t" "vmovdqa64 %%zmm16, %%zmm28\n\t"
        "vmovdqa64 %%zmm16, %%zmm29\n\t" "vmovdqa64 %%zmm16, %%zmm30\n\t" "vmovdqa64 %%zmm16, %%zmm31\n\t"
        "kxnorw %%k1, %%k1, %%k1\n\t" ::
            : "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25",
              "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k1");
    bctx::transfer_t r = weft::rt::jump(g_back, nullptr);
    g_back = r.fctx;
  }
}

// Eight doubles live across the switch. Every legacy vector register is
// clobbered by it, so the compiler keeps them in memory, or (if the clobber
// list forgot them) in xmm16-31, where the other context destroys them.
[[gnu::noinline]] double roundtrip(bctx::fcontext_t* other, const volatile double* in) {
  double a = in[0] * 1.5, b = in[0] * 2.5, c = in[0] * 3.5, d = in[0] * 4.5;
  double e = in[0] + 1.0, f = in[0] + 2.0, g = in[0] + 3.0, h = in[0] + 4.0;
  bctx::transfer_t r = weft::rt::jump(*other, nullptr);
  *other = r.fctx;
  return a + b * 2 + c * 3 + d * 4 + e * 5 + f * 6 + g * 7 + h * 8;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define WEFT_TEST_SANITIZED 1
#endif
#endif

TEST(SwitchAvx512, LiveVectorRegistersSurviveTheSwitch) {
  if (!__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "no AVX-512F on this CPU";
#ifdef WEFT_TEST_SANITIZED
  // The bare switch here is not annotated for the sanitizers (the runtime's
  // is); the property tested is code generation, checked by the plain build.
  GTEST_SKIP() << "sanitizer build";
#endif
  std::vector<char> stack(64 * 1024);
  bctx::fcontext_t other = bctx::make_fcontext(stack.data() + stack.size(), stack.size(), other_context);
  for (int i = 0; i < 1000; i++) {
    volatile double x = 1.0 + i;
    double expect = x * 1.5 + x * 2.5 * 2 + x * 3.5 * 3 + x * 4.5 * 4 + (x + 1) * 5 + (x + 2) * 6 + (x + 3) * 7 + (x + 4) * 8;
    ASSERT_DOUBLE_EQ(roundtrip(&other, &x), expect) << "a live double in xmm16-31 did not survive the switch";
  }
}

}  // namespace
