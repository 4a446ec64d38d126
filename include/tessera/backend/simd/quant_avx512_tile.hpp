/// \file
/// AVX-512 VNNI gemm (prefill) for the 32-value weight formats (q8_0, q4_0,
/// q4_1, q5_0, q5_1) against 8-bit activations.
///
/// A panel of 16 weight rows is unpacked once per chunk of 32 blocks into the
/// layout vpdpbusd wants: for each block and each group of 4 values, one
/// 64-byte vector holding those 4 values of all 16 rows. The kernel then
/// multiplies that vector by 4 activation bytes broadcast from memory, so one
/// vpdpbusd is 64 multiply-adds for 16 rows, and the int32 lanes hold whole
/// block sums, one row per lane: after a block's 8 steps one conversion and
/// one FMA per activation row apply the 16 rows' scales. The unpacking is
/// paid once per panel and shared by every activation row.
///
/// Weights enter vpdpbusd's unsigned operand as stored plus an offset
/// (q8_0: w + 128; q4_0: q = w + 8; q5_0: q = w + 16; q4_1 / q5_1: q): the
/// offset's share off * sum(x) depends on the activation block alone and is
/// the block sum's starting value. q4_1 / q5_1 add m * s (q8_1's s) instead.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include "tessera/backend/simd/quant_avx512.hpp"

// TESSERA_NO_AVX512_TILE keeps the AVX2-width tile kernels (for side-by-side measurement).
#if defined(TESSERA_QUANT_AVX512) && defined(__AVX512DQ__) && defined(__AVX512VL__) && !defined(TESSERA_NO_AVX512_TILE)
#define TESSERA_QUANT_AVX512_TILE 1

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>


namespace tessera::backend::simd::avx512 {

/// Weight formats with the panel kernel.
template <class W>
inline constexpr bool kTiled = std::is_same_v<W, block_q8_0> || std::is_same_v<W, block_q4_0> ||
                               std::is_same_v<W, block_q4_1> || std::is_same_v<W, block_q5_0> ||
                               std::is_same_v<W, block_q5_1>;

/// Stored value minus weight value.
template <class W>
inline constexpr int kOffset = std::is_same_v<W, block_q8_0>   ? 128
                               : std::is_same_v<W, block_q4_0> ? 8
                               : std::is_same_v<W, block_q5_0> ? 16
                                                               : 0;
template <class W>
inline constexpr bool kHasMin = std::is_same_v<W, block_q4_1> || std::is_same_v<W, block_q5_1>;

inline constexpr int kPanelRows = 16;     // one int32 lane per row
inline constexpr int64_t kPanelBlocks = 32;  // blocks per unpacked chunk: 16 rows x 32 blocks = 20 KB, in L1
inline constexpr int kCols = 8;            // activation rows per kernel call: 8 int + 8 float accumulators

/// Two blocks' 32 unsigned values each (stored + offset) in one register: [a | b].
template <class W>
inline __m512i values_pair(const W& a, const W& b) {
  if constexpr (std::is_same_v<W, block_q8_0>) {
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(avx2::load32(a.qs)), avx2::load32(b.qs), 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80)));
  } else {
    // [qs_a, qs_a, qs_b, qs_b] with the second copy of each shifted by 4: low nibbles then high.
    const __m128i qa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.qs));
    const __m128i qb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
    __m512i z = _mm512_inserti32x4(_mm512_castsi128_si512(qa), qa, 1);
    z = _mm512_inserti32x4(_mm512_inserti32x4(z, qb, 2), qb, 3);
    z = _mm512_and_si512(_mm512_srlv_epi64(z, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)), _mm512_set1_epi8(0x0f));
    if constexpr (std::is_same_v<W, block_q5_0> || std::is_same_v<W, block_q5_1>) {
      uint32_t ha, hb;
      std::memcpy(&ha, a.qh, 4);
      std::memcpy(&hb, b.qh, 4);
      const __mmask64 high = static_cast<__mmask64>(ha) | (static_cast<__mmask64>(hb) << 32);
      z = _mm512_or_si512(z, _mm512_maskz_mov_epi8(high, _mm512_set1_epi8(0x10)));
    }
    return z;
  }
}

/// Unpacks block b of 16 rows (row pointers rp) into q[8][16] dwords (step s, row r) and d[16] (and m[16]).
/// P_r = [row r | row r + 8] is transposed as two 8 x 8 dword matrices at once.
template <class W>
inline void unpack_block(const W* const* rp, int64_t b, uint32_t* q, float* d, float* m) {
  __m512i p[8], t[8];
  for (int r = 0; r < 8; ++r) p[r] = values_pair(rp[r][b], rp[r + 8][b]);
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(p[2 * i], p[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(p[2 * i], p[2 * i + 1]);
  }
  // u[0..3]: rows 0-3 (and 8-11), u[4..7]: rows 4-7 (and 12-15); u[k] holds steps k % 4 and k % 4 + 4.
  __m512i u[8];
  for (int h = 0; h < 2; ++h) {
    u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
    u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
    u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
    u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
  }
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  auto* qv = reinterpret_cast<__m512i*>(q);
  for (int k = 0; k < 4; ++k) {
    _mm512_store_si512(qv + k, _mm512_permutex2var_epi64(u[k], lo, u[k + 4]));
    _mm512_store_si512(qv + k + 4, _mm512_permutex2var_epi64(u[k], hi, u[k + 4]));
  }
  // Every format starts with f16 d (then m for q4_1 / q5_1).
  alignas(64) uint32_t head[16];
  for (int r = 0; r < 16; ++r) std::memcpy(&head[r], &rp[r][b], 4);
  const __m512i hv = _mm512_load_si512(head);
  _mm512_store_ps(d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hv)));
  if constexpr (kHasMin<W>) _mm512_store_ps(m, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(hv, 16))));
}

/// Per activation block: its scale, and the start of the block sum (-off * sum q) or q8_1's s.
struct XAux {
  float d;
  union {
    int32_t start;
    float s;
  };
};

template <class W, class A>
inline XAux x_aux(const A& x) {
  XAux a;
  a.d = avx2::f32(x.d);
  if constexpr (kHasMin<W>) {
    a.s = avx2::f32(x.s);
  } else {
    const int sum = avx2::hsum_i32(avx2::dot_u8s8(_mm256_set1_epi8(1), avx2::load32(x.qs)));
    a.start = -kOffset<W> * sum;
  }
  return a;
}

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

/// Y[c][0..16) (+)= panel rows times activation rows c < RX over kb blocks; mask: rows present.
template <class W, class A, int RX>
void panel_kernel(const uint32_t* q, const float* d, const float* m, int64_t kb, const A* const* x, const XAux* const* aux,
                  float* const* y, __mmask16 mask, bool accumulate) {
  __m512 af[RX];
  for (int c = 0; c < RX; ++c) af[c] = _mm512_setzero_ps();
  for (int64_t b = 0; b < kb; ++b) {
    __m512i ai[RX];
    for (int c = 0; c < RX; ++c) ai[c] = kHasMin<W> ? _mm512_setzero_si512() : _mm512_set1_epi32(aux[c][b].start);
    const auto* qb = reinterpret_cast<const __m512i*>(q + b * 8 * kPanelRows);
    for (int s = 0; s < 8; ++s) {
      const __m512i wv = _mm512_load_si512(qb + s);
      for (int c = 0; c < RX; ++c) ai[c] = _mm512_dpbusd_epi32(ai[c], wv, bcast4(x[c][b].qs + 4 * s));
    }
    const __m512 dv = _mm512_load_ps(d + b * kPanelRows);
    for (int c = 0; c < RX; ++c) {
      af[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[c]), _mm512_mul_ps(dv, _mm512_set1_ps(aux[c][b].d)), af[c]);
      if constexpr (kHasMin<W>) af[c] = _mm512_fmadd_ps(_mm512_load_ps(m + b * kPanelRows), _mm512_set1_ps(aux[c][b].s), af[c]);
    }
  }
  for (int c = 0; c < RX; ++c) {
    const __m512 v = accumulate ? _mm512_add_ps(af[c], _mm512_maskz_loadu_ps(mask, y[c])) : af[c];
    _mm512_mask_storeu_ps(y[c], mask, v);
  }
}

template <class W, class A>
void panel_kernel_rx(int rx, const uint32_t* q, const float* d, const float* m, int64_t kb, const A* const* x,
                     const XAux* const* aux, float* const* y, __mmask16 mask, bool acc) {
  switch (rx) {
    case 1: return panel_kernel<W, A, 1>(q, d, m, kb, x, aux, y, mask, acc);
    case 2: return panel_kernel<W, A, 2>(q, d, m, kb, x, aux, y, mask, acc);
    case 3: return panel_kernel<W, A, 3>(q, d, m, kb, x, aux, y, mask, acc);
    case 4: return panel_kernel<W, A, 4>(q, d, m, kb, x, aux, y, mask, acc);
    case 5: return panel_kernel<W, A, 5>(q, d, m, kb, x, aux, y, mask, acc);
    case 6: return panel_kernel<W, A, 6>(q, d, m, kb, x, aux, y, mask, acc);
    case 7: return panel_kernel<W, A, 7>(q, d, m, kb, x, aux, y, mask, acc);
    default: return panel_kernel<W, A, 8>(q, d, m, kb, x, aux, y, mask, acc);
  }
}

/// y[c * ldy + r] = dot(w row r, x row c) for rows [r0, r1) and all m activation rows:
/// w rows of nb blocks at stride ldw, x rows of nb blocks at stride ldx.
template <class W, class A>
void gemm_rows(const W* w, int64_t ldw, int64_t r0, int64_t r1, const A* x, int64_t ldx, int64_t m, int64_t nb,
               float* y, int64_t ldy) {
  if (nb == 0) {  // an empty sum: no chunk would write y
    for (int64_t c = 0; c < m; ++c) std::fill(y + c * ldy + r0, y + c * ldy + r1, 0.f);
    return;
  }
  // The activations' scales and offset starts, once per call and thread (grown, never shrunk).
  thread_local std::vector<XAux> aux_buf;
  if (aux_buf.size() < static_cast<size_t>(m * nb)) aux_buf.resize(static_cast<size_t>(m * nb));
  for (int64_t c = 0; c < m; ++c)
    for (int64_t b = 0; b < nb; ++b) aux_buf[c * nb + b] = x_aux<W>(x[c * ldx + b]);

  alignas(64) uint32_t q[kPanelBlocks * 8 * kPanelRows];
  alignas(64) float d[kPanelBlocks * kPanelRows], mn[kPanelBlocks * kPanelRows];
  for (int64_t p0 = r0; p0 < r1; p0 += kPanelRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kPanelRows, r1 - p0));
    const __mmask16 mask = static_cast<__mmask16>((1u << rows) - 1);
    const W* rp[kPanelRows];
    for (int r = 0; r < kPanelRows; ++r) rp[r] = w + (p0 + (r < rows ? r : 0)) * ldw;  // missing rows repeat row 0
    for (int64_t k0 = 0; k0 < nb; k0 += kPanelBlocks) {
      const int64_t kb = std::min(kPanelBlocks, nb - k0);
      for (int64_t b = 0; b < kb; ++b) unpack_block(rp, k0 + b, q + b * 8 * kPanelRows, d + b * kPanelRows, mn + b * kPanelRows);
      for (int64_t c0 = 0; c0 < m; c0 += kCols) {
        const int rx = static_cast<int>(std::min<int64_t>(kCols, m - c0));
        const A* xs[kCols];
        const XAux* as[kCols];
        float* ys[kCols];
        for (int c = 0; c < rx; ++c) {
          xs[c] = x + (c0 + c) * ldx + k0;
          as[c] = aux_buf.data() + (c0 + c) * nb + k0;
          ys[c] = y + (c0 + c) * ldy + p0;
        }
        panel_kernel_rx<W, A>(rx, q, d, mn, kb, xs, as, ys, mask, k0 > 0);
      }
    }
  }
}

}  // namespace tessera::backend::simd::avx512


#endif  // TESSERA_QUANT_AVX512 + DQ + VL

TESSERA_SIMD_WARNINGS_ON
