/// \file
/// Compiler-specific switches shared by the headers.
#pragma once

// GCC < 13's AVX-512 intrinsics start from _mm512_undefined_*() (a
// self-initialised local, GCC bug 105593, fixed in 13). Once inlined into
// Eigen, xsimd or our kernels, -W(maybe-)uninitialized reports it in the user's
// build on every AVX-512 target, and Eigen 3.4's AVX headers have unused
// locals. Headers that include SIMD intrinsics open with OFF and close with ON,
// so a consumer's -Wall -Wextra build stays quiet while their own code keeps
// every warning. Clang has neither problem.
#if defined(__GNUC__) && !defined(__clang__)
#define TESSERA_SIMD_WARNINGS_OFF                                                           \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")     \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")                          \
          _Pragma("GCC diagnostic ignored \"-Wunused-variable\"")
#define TESSERA_SIMD_WARNINGS_ON _Pragma("GCC diagnostic pop")
#else
#define TESSERA_SIMD_WARNINGS_OFF
#define TESSERA_SIMD_WARNINGS_ON
#endif
