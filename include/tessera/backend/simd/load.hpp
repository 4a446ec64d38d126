/// \file
/// Loading float-like elements (f32, f16, bf16) as xsimd float batches. f16 goes
/// through F16C / AVX-512 conversion instructions where the target has them;
/// bf16 is a 16-bit shift. Other targets convert through a small stack buffer.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <xsimd/xsimd.hpp>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tessera/core/half.hpp"

namespace tessera::backend::simd {

/// The xsimd architecture of the build target (AVX-512, AVX2, NEON, SSE2, ...).
using arch = xsimd::default_arch;
/// A batch of floats at the target's full SIMD width.
using fbatch = xsimd::batch<float, arch>;
/// Floats per fbatch (16 on AVX-512, 8 on AVX2, 4 on NEON / SSE2).
inline constexpr size_t kWidth = fbatch::size;

/// kWidth floats from p (unaligned).
inline fbatch load(const float* p) { return fbatch::load_unaligned(p); }

/// kWidth f16 values from p (unaligned), widened to float.
inline fbatch load(const f16* p) {
#if defined(__AVX512F__)
  return fbatch(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#elif defined(__AVX2__) && defined(__F16C__)
  return fbatch(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#else
  alignas(64) float tmp[kWidth];
  for (size_t i = 0; i < kWidth; ++i) tmp[i] = static_cast<float>(p[i]);
  return fbatch::load_aligned(tmp);
#endif
}

/// kWidth bf16 values from p (unaligned), widened to float (exact: a 16-bit shift).
inline fbatch load(const bf16* p) {
#if defined(__AVX512F__)
  return fbatch(_mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16)));
#elif defined(__AVX2__)
  return fbatch(_mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16)));
#else
  alignas(64) float tmp[kWidth];
  for (size_t i = 0; i < kWidth; ++i) tmp[i] = static_cast<float>(p[i]);
  return fbatch::load_aligned(tmp);
#endif
}

/// Converts n elements to float: SIMD body, scalar tail.
template <class T>
void to_float(const T* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + kWidth <= n; i += kWidth) load(src + i).store_unaligned(dst + i);
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

}  // namespace tessera::backend::simd

TESSERA_SIMD_WARNINGS_ON
