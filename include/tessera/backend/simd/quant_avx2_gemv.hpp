/// \file
/// AVX2 decode kernels for q4_0, q4_1, q5_0 and q5_1 with two weight blocks per 256-bit
/// register, against activations rearranged once per gemv to match (PairedX).
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include "tessera/backend/simd/quant_avx2.hpp"

#if defined(TESSERA_QUANT_AVX2)

#include <cstring>
#include <type_traits>

namespace tessera::backend::simd::avx2 {

/// Two activation blocks arranged to meet two 4-bit weight blocks, so a pair
/// of weight blocks costs one load, three bit operations, two vpmaddubsw, one
/// vpmaddwd and one FMA, with both blocks' scales converted together.
struct alignas(32) PairedX {
  __m256i lo;          // values 0..15 of block 0, then of block 1
  __m256i hi;          // values 16..31 likewise
  __m256i eight_sums;  // q4_0's -8 offset: int16 pair sums of 8 x (vpmaddubsw); with VNNI
                       // int32 quad sums of -8 x, vpdpbusd's starting value. 0 for q8_1.
  __m128 scale;        // d_0, s_0, d_1, s_1 (s: q8_1's d * sum; 0 for q8_0)
};

template <class A>
PairedX pair_activations(const A& x0, const A& x1) {
  const auto* p0 = reinterpret_cast<const __m128i*>(x0.qs);
  const auto* p1 = reinterpret_cast<const __m128i*>(x1.qs);
  PairedX p;
  p.lo = _mm256_set_m128i(_mm_loadu_si128(p1), _mm_loadu_si128(p0));
  p.hi = _mm256_set_m128i(_mm_loadu_si128(p1 + 1), _mm_loadu_si128(p0 + 1));
  if constexpr (std::is_same_v<A, block_q8_1>) {
    p.eight_sums = _mm256_setzero_si256();
    p.scale = _mm_setr_ps(f32(x0.d), f32(x0.s), f32(x1.d), f32(x1.s));
  } else {
    const __m256i eights = _mm256_set1_epi8(8);
#if defined(TESSERA_QUANT_VNNI)
    p.eight_sums = _mm256_sub_epi32(_mm256_setzero_si256(), dpbusd(dot_u8s8(eights, p.lo), eights, p.hi));
#else
    p.eight_sums = _mm256_add_epi16(_mm256_maddubs_epi16(eights, p.lo), _mm256_maddubs_epi16(eights, p.hi));
#endif
    p.scale = _mm_setr_ps(f32(x0.d), 0.f, f32(x1.d), 0.f);
  }
  return p;
}

/// Pairs activation blocks 2i, 2i+1 into out[i] for i < n_blocks / 2.
template <class A>
void pair_activations(const A* x, int64_t n_blocks, PairedX* out) {
  for (int64_t i = 0; i < n_blocks / 2; ++i) out[i] = pair_activations(x[2 * i], x[2 * i + 1]);
}

/// The first 4 bytes of two blocks as 4 floats: [d_0, m_0, d_1, m_1] for
/// q4_1 / q5_1; for q4_0 / q5_0 lanes 1 and 3 are other bytes read as f16, never used.
template <class W>
inline __m128 leading_halves(const W* w) {
  int32_t a, b;
  std::memcpy(&a, w, 4);
  std::memcpy(&b, w + 1, 4);
  return _mm_cvtph_ps(_mm_setr_epi32(a, b, 0, 0));
}

template <class W>
inline constexpr bool kFiveBit = std::is_same_v<W, block_q5_0> || std::is_same_v<W, block_q5_1>;
template <class W>
inline constexpr bool kBlockMin = std::is_same_v<W, block_q4_1> || std::is_same_v<W, block_q5_1>;

/// Sum over a pair of weight blocks into acc (and q4_1 / q5_1's offset terms
/// into acc_m lanes 1, 3). q5 blocks OR their fifth bits onto the nibbles;
/// q5_0's offset of 16 takes twice q4_0's -8 sum x correction.
template <class W>
inline void accumulate_pair(const W* w, const PairedX& x, __m256& acc, __m128& acc_m) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i v = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[1].qs)),
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[0].qs)));
  __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
  if constexpr (kFiveBit<W>) {
    uint32_t h0, h1;
    std::memcpy(&h0, w[0].qh, 4);
    std::memcpy(&h1, w[1].qh, 4);
    lo = _mm256_or_si256(lo, bit_bytes((h0 & 0xffffu) | (h1 << 16)));        // values 0..15 of both
    hi = _mm256_or_si256(hi, bit_bytes((h0 >> 16) | (h1 & 0xffff0000u)));    // values 16..31 of both
  }
  // int32 lanes 0-3 hold block 0, 4-7 block 1.
#if defined(TESSERA_QUANT_VNNI)
  const __m256i start =
      std::is_same_v<W, block_q5_0> ? _mm256_add_epi32(x.eight_sums, x.eight_sums) : x.eight_sums;
  const __m256i s = dpbusd(dpbusd(start, lo, x.lo), hi, x.hi);
#else
  // int16 pair sums: |31 x| * 4 + |16 x| * 4 <= 23876, no saturation.
  __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, x.lo), _mm256_maddubs_epi16(hi, x.hi));
  if constexpr (std::is_same_v<W, block_q4_0>) p = _mm256_sub_epi16(p, x.eight_sums);
  if constexpr (std::is_same_v<W, block_q5_0>) p = _mm256_sub_epi16(p, _mm256_slli_epi16(x.eight_sums, 1));
  const __m256i s = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
#endif
  const __m128 scales = _mm_mul_ps(leading_halves(w), x.scale);   // d_w d_x, m s, d_w d_x, m s
  const __m256i lanes = _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2);
  const __m256 dd = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(scales), lanes);
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), dd, acc);
  if constexpr (kBlockMin<W>) acc_m = _mm_add_ps(acc_m, scales);
}

/// Bytes ahead of the current weight block to prefetch. The weights stream
/// from DRAM once per token; the hardware prefetchers stop at 4 KB pages, so
/// without this every page start waits for memory (measured here: +15% GB/s
/// for q4_0 and +40% for q8_0 on one core).
inline constexpr int kPrefetchBytes = 2048;

/// dot(w row, x) for a q4_0 / q4_1 row of n_blocks blocks; xp holds n_blocks / 2
/// pairs, x the original blocks (for an odd last block).
template <class W, class A>
float paired_row_dot(const W* w, const PairedX* xp, const A* x, int64_t n_blocks) {
  // One chain, as each row of paired_row_dot2 has: a row's sum must not depend
  // on whether it was paired (decode and small batches give the same bits).
  __m256 acc = _mm256_setzero_ps();
  __m128 acc_m = _mm_setzero_ps();
  const int64_t n_pairs = n_blocks / 2;
  for (int64_t i = 0; i < n_pairs; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(w + 2 * i) + kPrefetchBytes, _MM_HINT_T0);
    accumulate_pair(w + 2 * i, xp[i], acc, acc_m);
  }
  Acc tail;
  if (n_blocks & 1) Kernel<W>::accumulate(Kernel<W>::unpack(w[n_blocks - 1]), x[n_blocks - 1], tail);
  tail.v = _mm256_add_ps(tail.v, acc);
  const __m128 m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));  // lane 1: offsets of both pair slots
  tail.s += _mm_cvtss_f32(_mm_shuffle_ps(m, m, 1));
  return tail.total();
}

/// paired_row_dot for two rows at once (w0, w1): each activation pair is
/// loaded once for both, and the two rows' chains run side by side.
template <class W, class A>
void paired_row_dot2(const W* w0, const W* w1, const PairedX* xp, const A* x, int64_t n_blocks, float& y0,
                     float& y1) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m128 m0 = _mm_setzero_ps(), m1 = _mm_setzero_ps();
  const int64_t n_pairs = n_blocks / 2;
  for (int64_t i = 0; i < n_pairs; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(w0 + 2 * i) + kPrefetchBytes, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w1 + 2 * i) + kPrefetchBytes, _MM_HINT_T0);
    accumulate_pair(w0 + 2 * i, xp[i], acc0, m0);
    accumulate_pair(w1 + 2 * i, xp[i], acc1, m1);
  }
  Acc t0, t1;
  if (n_blocks & 1) {
    Kernel<W>::accumulate(Kernel<W>::unpack(w0[n_blocks - 1]), x[n_blocks - 1], t0);
    Kernel<W>::accumulate(Kernel<W>::unpack(w1[n_blocks - 1]), x[n_blocks - 1], t1);
  }
  t0.v = _mm256_add_ps(t0.v, acc0);
  t1.v = _mm256_add_ps(t1.v, acc1);
  const __m128 s0 = _mm_add_ps(m0, _mm_movehl_ps(m0, m0)), s1 = _mm_add_ps(m1, _mm_movehl_ps(m1, m1));
  t0.s += _mm_cvtss_f32(_mm_shuffle_ps(s0, s0, 1));
  t1.s += _mm_cvtss_f32(_mm_shuffle_ps(s1, s1, 1));
  y0 = t0.total();
  y1 = t1.total();
}

}  // namespace tessera::backend::simd::avx2

#endif  // TESSERA_QUANT_AVX2

TESSERA_SIMD_WARNINGS_ON
