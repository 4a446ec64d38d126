/// \file
/// AVX-512 VNNI decode kernel for q8_0: two blocks per 512-bit register,
/// products by vpdpbusd. (q4_0 / q4_1 take vpdpbusd at 256 bits in
/// quant_avx2_gemv.hpp, where their nibble layout needs no shuffles.)
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include "tessera/backend/simd/quant_avx2_gemv.hpp"

#if defined(TESSERA_QUANT_AVX2) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define TESSERA_QUANT_AVX512 1

namespace tessera::backend::simd::avx512 {

inline __m512i load_pair(const int8_t* a, const int8_t* b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(avx2::load32(a)), avx2::load32(b), 1);
}

/// |w| * (x * sign(w)) summed per 4 bytes: AVX-512 has no vpsignb, so x is
/// negated under w's sign-bit mask.
inline __m512i signed_dot(__m512i w, __m512i x) {
  const __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), sx);
}

/// dot(w row, x) for q8_0 weights and activations, n_blocks blocks: four
/// blocks per step, their eight f16 scales converted by one instruction.
inline float row_dot(const block_q8_0* w, const block_q8_0* x, int64_t n_blocks) {
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  const __m512i first = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i second = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  int64_t b = 0;
  for (; b + 4 <= n_blocks; b += 4) {
    const char* ahead = reinterpret_cast<const char*>(w + b) + avx2::kPrefetchBytes;
    for (int o = 0; o < 4 * static_cast<int>(sizeof(block_q8_0)); o += 64) _mm_prefetch(ahead + o, _MM_HINT_T0);
    const __m512i s01 = signed_dot(load_pair(w[b].qs, w[b + 1].qs), load_pair(x[b].qs, x[b + 1].qs));
    const __m512i s23 = signed_dot(load_pair(w[b + 2].qs, w[b + 3].qs), load_pair(x[b + 2].qs, x[b + 3].qs));
    const __m256 d = _mm256_cvtph_ps(_mm_setr_epi16(
        static_cast<int16_t>(w[b].d.bits), static_cast<int16_t>(w[b + 1].d.bits), static_cast<int16_t>(w[b + 2].d.bits),
        static_cast<int16_t>(w[b + 3].d.bits), static_cast<int16_t>(x[b].d.bits), static_cast<int16_t>(x[b + 1].d.bits),
        static_cast<int16_t>(x[b + 2].d.bits), static_cast<int16_t>(x[b + 3].d.bits)));
    const __m512 dd = _mm512_castps128_ps512(_mm_mul_ps(_mm256_castps256_ps128(d), _mm256_extractf128_ps(d, 1)));
    acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s01), _mm512_permutexvar_ps(first, dd), acc[0]);
    acc[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s23), _mm512_permutexvar_ps(second, dd), acc[1]);
  }
  // Short rows end on a pair often (SmolLM2's 576-wide rows are 18 blocks): one more 512-bit step for it.
  if (b + 2 <= n_blocks) {
    const __m512i s01 = signed_dot(load_pair(w[b].qs, w[b + 1].qs), load_pair(x[b].qs, x[b + 1].qs));
    const __m128 d = _mm_cvtph_ps(_mm_setr_epi16(static_cast<int16_t>(w[b].d.bits), static_cast<int16_t>(w[b + 1].d.bits),
                                                 static_cast<int16_t>(x[b].d.bits), static_cast<int16_t>(x[b + 1].d.bits),
                                                 0, 0, 0, 0));
    const __m512 dd = _mm512_castps128_ps512(_mm_mul_ps(d, _mm_movehl_ps(d, d)));
    acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s01), _mm512_permutexvar_ps(first, dd), acc[0]);
    b += 2;
  }
  avx2::Acc tail;
  using K = avx2::Kernel<block_q8_0>;
  for (; b < n_blocks; ++b) K::accumulate(K::unpack(w[b]), x[b], tail);
  return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1])) + tail.total();
}

}  // namespace tessera::backend::simd::avx512

#endif  // AVX-512 F + BW + VNNI

TESSERA_SIMD_WARNINGS_ON
