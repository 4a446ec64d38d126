/// \file
/// AVX2 block kernels: Kernel<W>::unpack widens a weight block to int8 lanes,
/// accumulate multiplies it into an activation block (u8 x s8 by vpmaddubsw, or
/// vpdpbusd under VNNI), scaled to float once per block; and activation quantization.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TESSERA_QUANT_AVX2 1

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "tessera/backend/quant_act.hpp"
#include "tessera/core/quant.hpp"

namespace tessera::backend::simd::avx2 {

inline float f32(f16 h) { return _cvtsh_ss(h.bits); }
inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
#define TESSERA_QUANT_VNNI 1
/// acc + in each int32 lane the sum of 4 adjacent u8 x s8 products (vpdpbusd: no saturation).
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_dpbusd_avx_epi32(acc, u, s);
#endif
}
#endif

/// Each int32 lane gets the sum of 4 adjacent u8 x s8 products. Without VNNI
/// this goes through int16 pairs, exact while |u| <= 128 and |s| <= 127.
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(TESSERA_QUANT_VNNI)
  return dpbusd(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

/// 16 bytes of packed nibbles -> 32 bytes: low nibbles first (values 0..15),
/// then high. The bytes are loaded into both halves and only the upper half
/// shifted, so no cross-lane shuffle is needed.
inline __m256i unpack_nibbles(const uint8_t* p) {
  const __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_and_si256(_mm256_srlv_epi64(q, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0f));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/// Running sum of one (weight row, activation row) pair: 8 float lanes, plus
/// a scalar for q4_1's offset term.
struct Acc {
  __m256 v = _mm256_setzero_ps();
  float s = 0.f;
  float total() const { return hsum(v) + s; }
};

/// unpack() runs once per weight block and accumulate() once per (weight,
/// activation) block pair, so a tile of activation rows shares each unpack.
template <class W>
struct Kernel;

// Signed x signed through the unsigned x signed product: |w| * (x * sign(w)).
struct SignedBlock {
  __m256i abs_q, q;
  float d;
};
inline void accumulate_signed(const SignedBlock& u, const block_q8_0& x, Acc& acc) {
  const __m256i sx = _mm256_sign_epi8(load32(x.qs), u.q);
  const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(u.abs_q, sx));
  acc.v = _mm256_fmadd_ps(p, _mm256_set1_ps(u.d * f32(x.d)), acc.v);
}

template <>
struct Kernel<block_q8_0> {
  using Unpacked = SignedBlock;
  static Unpacked unpack(const block_q8_0& w) {
    const __m256i q = load32(w.qs);
    return {_mm256_sign_epi8(q, q), q, f32(w.d)};
  }
  static void accumulate(const Unpacked& u, const block_q8_0& x, Acc& acc) { accumulate_signed(u, x, acc); }
};

// sum (q - 8) x = sum q x - 8 sum x: the nibbles go unsigned into the
// product and the 8 sum x part depends on x alone, so a tile of weight rows
// computes it once per activation block.
template <>
struct Kernel<block_q4_0> {
  struct Unpacked {
    __m256i q;
    float d;
  };
  static Unpacked unpack(const block_q4_0& w) { return {unpack_nibbles(w.qs), f32(w.d)}; }
  static void accumulate(const Unpacked& u, const block_q8_0& x, Acc& acc) {
    const __m256i xq = load32(x.qs);
    const __m256i eights = _mm256_set1_epi8(8);
#if defined(TESSERA_QUANT_VNNI)
    const __m256i s = dpbusd(_mm256_sub_epi32(_mm256_setzero_si256(), dot_u8s8(eights, xq)), u.q, xq);
#else
    // Pairs of products stay within int16 (|15 x| + |15 x| <= 3810), so the
    // correction can be subtracted before widening.
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(u.q, xq), _mm256_maddubs_epi16(eights, xq));
    const __m256i s = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
#endif
    acc.v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(u.d * f32(x.d)), acc.v);
  }
};

// Nibbles are already unsigned, so no sign trick; m * x.s adds the offset term.
template <>
struct Kernel<block_q4_1> {
  struct Unpacked {
    __m256i q;
    float d, m;
  };
  static Unpacked unpack(const block_q4_1& w) { return {unpack_nibbles(w.qs), f32(w.d), f32(w.m)}; }
  static void accumulate(const Unpacked& u, const block_q8_1& x, Acc& acc) {
    const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(u.q, load32(x.qs)));
    acc.v = _mm256_fmadd_ps(p, _mm256_set1_ps(u.d * f32(x.d)), acc.v);
    acc.s = backend::detail::mul_add(u.m, f32(x.s), acc.s);
  }
};

/// 32 bits -> byte j = 0x10 where bit j is set: the fifth bit of each q5
/// value, to OR onto unpack_nibbles' bytes.
inline __m256i bit_bytes(uint32_t h) {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  return _mm256_maskz_mov_epi8(h, _mm256_set1_epi8(0x10));
#else
  // Byte j takes byte j / 8 of h (in-lane shuffle of the broadcast word), then tests bit j % 8.
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(h)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
#endif
}
inline __m256i q5_high_bits(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return bit_bytes(h);
}

inline __m256i unpack_q5(const uint8_t* qs, const uint8_t* qh) {
  return _mm256_or_si256(unpack_nibbles(qs), q5_high_bits(qh));
}

// q - 16 fits int8, so q5_0 takes q8_0's signed path.
template <>
struct Kernel<block_q5_0> {
  using Unpacked = SignedBlock;
  static Unpacked unpack(const block_q5_0& w) {
    const __m256i q = _mm256_sub_epi8(unpack_q5(w.qs, w.qh), _mm256_set1_epi8(16));
    return {_mm256_sign_epi8(q, q), q, f32(w.d)};
  }
  static void accumulate(const Unpacked& u, const block_q8_0& x, Acc& acc) { accumulate_signed(u, x, acc); }
};

// Unsigned 5-bit values and an offset, as q4_1.
template <>
struct Kernel<block_q5_1> {
  using Unpacked = Kernel<block_q4_1>::Unpacked;
  static Unpacked unpack(const block_q5_1& w) { return {unpack_q5(w.qs, w.qh), f32(w.d), f32(w.m)}; }
  static void accumulate(const Unpacked& u, const block_q8_1& x, Acc& acc) {
    Kernel<block_q4_1>::accumulate(u, x, acc);
  }
};

// Sub-block scales ride in vpmaddwd's second operand, so a super-block's
// integer sum needs one conversion to float. The offset term pairs each
// min m_j with the activations' per-16 sums: mins16 holds m0 m0 m1 m1 ... m7 m7.
template <>
struct Kernel<block_q4_K> {
  struct Unpacked {
    __m256i q[8];      // values 32j .. 32j+31, unsigned nibbles
    __m256i scale[8];  // sc_j in every int16 lane
    __m256i mins16;
    float d, dmin;
  };
  /// The 12 scale bytes -> sc0..sc7, m0..m7 in 32-bit word operations (the
  /// layout of tessera::detail::unpack_q4_K_scales, four bytes at a time).
  static __m128i scales_and_mins(const uint8_t* s) {
    uint32_t u[3];
    std::memcpy(u, s, 12);
    const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, top2 = 0x03030303;
    const uint32_t sc_hi = (u[2] & low4) | (((u[0] >> 6) & top2) << 4);
    const uint32_t mn_hi = ((u[2] >> 4) & low4) | (((u[1] >> 6) & top2) << 4);
    return _mm_setr_epi32(static_cast<int>(u[0] & low6), static_cast<int>(sc_hi), static_cast<int>(u[1] & low6),
                          static_cast<int>(mn_hi));
  }
  /// q4_K and q5_K alike: the low 4 bits of the values (qs) and the header (scales, mins, super-scales).
  template <class B>
  static void unpack_low(const B& w, Unpacked& u) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int c = 0; c < 4; ++c) {
      const __m256i q = load32(w.qs + 32 * c);
      u.q[2 * c] = _mm256_and_si256(q, m4);
      u.q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    }
    const __m256i sm = _mm256_cvtepu8_epi16(scales_and_mins(w.scales));  // sc0..7 | m0..7 as int16
    const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);
    for (int j = 0; j < 8; ++j)  // int16 lane j to every lane: bytes 2j, 2j+1 repeated
      u.scale[j] = _mm256_shuffle_epi8(sc, _mm256_set1_epi16(static_cast<int16_t>(0x0100 + 0x0202 * j)));
    const __m128i m = _mm256_extracti128_si256(sm, 1);
    u.mins16 = _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
    u.d = f32(w.d);
    u.dmin = f32(w.dmin);
  }
  static Unpacked unpack(const block_q4_K& w) {
    Unpacked u;
    unpack_low(w, u);
    return u;
  }
  static void accumulate(const Unpacked& u, const block_q8_K& x, Acc& acc) {
    __m256i s = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j)
      s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u.q[j], load32(x.qs + 32 * j)), u.scale[j]));
    const __m256i s_min = _mm256_madd_epi16(u.mins16, load32(x.bsums));
    acc.v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(u.d * x.d), acc.v);
    acc.v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s_min), _mm256_set1_ps(-u.dmin * x.d), acc.v);
  }
};

// q4_K's kernel on 5-bit values: bit j of every qh byte is bit 4 of sub-block j's values.
template <>
struct Kernel<block_q5_K> {
  using Unpacked = Kernel<block_q4_K>::Unpacked;
  static Unpacked unpack(const block_q5_K& w) {
    Unpacked u;
    Kernel<block_q4_K>::unpack_low(w, u);
    const __m256i one = _mm256_set1_epi8(1), qh = load32(w.qh);
    for (int j = 0; j < 8; ++j)  // bit j of every qh byte: 16 into sub-block j's values
      u.q[j] = _mm256_or_si256(u.q[j], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, j), one), 4));
    return u;
  }
  static void accumulate(const Unpacked& u, const block_q8_K& x, Acc& acc) { Kernel<block_q4_K>::accumulate(u, x, acc); }
};

// sum (q - 32) x = sum q x - 32 sum x: the unsigned 6-bit q go straight into
// vpmaddubsw and the activations' per-16 sums pay for the -32.
template <>
struct Kernel<block_q6_K> {
  struct Unpacked {
    __m256i q[8];      // values 32k .. 32k+31, 0..63
    __m256i scale[8];  // sc_{2k} in the low 128 bits' int16 lanes, sc_{2k+1} in the high
    __m256i scales16;  // the 16 scales as int16
    float d;
  };
  static Unpacked unpack(const block_q6_K& w) {
    Unpacked u;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load32(w.ql + 64 * h), ql1 = load32(w.ql + 64 * h + 32), qh = load32(w.qh + 32 * h);
      u.q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
      u.q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
      u.q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2));
      u.q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
    }
    for (int k = 0; k < 8; ++k)
      u.scale[k] = _mm256_set_m128i(_mm_set1_epi16(w.scales[2 * k + 1]), _mm_set1_epi16(w.scales[2 * k]));
    u.scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales)));
    u.d = f32(w.d);
    return u;
  }
  static void accumulate(const Unpacked& u, const block_q8_K& x, Acc& acc) {
    __m256i s = _mm256_setzero_si256();
    for (int k = 0; k < 8; ++k)
      s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u.q[k], load32(x.qs + 32 * k)), u.scale[k]));
    const __m256i s32 = _mm256_slli_epi32(_mm256_madd_epi16(u.scales16, load32(x.bsums)), 5);
    acc.v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s, s32)), _mm256_set1_ps(u.d * x.d), acc.v);
  }
};

// ---- activation quantization ------------------------------------------------

inline float abs_max(const float* x, int n) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

/// Quantizes 32 floats with scale inv (round to nearest even, as the scalar
/// codec) into q; returns the int32 sums of values 0..15 and 16..31.
inline void quantize32(const float* x, __m256 inv, int8_t* q, int& sum_lo, int& sum_hi) {
  __m256i i[4];
  for (int k = 0; k < 4; ++k) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), inv));
  // packs interleave the 128-bit lanes; the permute puts the 32 bytes back in order.
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
  const __m256i in_order = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), in_order);
  sum_lo = hsum_i32(_mm256_add_epi32(i[0], i[1]));
  sum_hi = hsum_i32(_mm256_add_epi32(i[2], i[3]));
}

inline void quantize_block(const float* x, block_q8_0& out) {
  const tessera::detail::Int8Scale s = tessera::detail::int8_scale(abs_max(x, QK8_0));
  int lo, hi;
  quantize32(x, _mm256_set1_ps(s.inv), out.qs, lo, hi);
  out.d = f16(s.d);
}

inline void quantize_block(const float* x, block_q8_1& out) {
  const tessera::detail::Int8Scale s = tessera::detail::int8_scale(abs_max(x, QK8_0));
  int lo, hi;
  quantize32(x, _mm256_set1_ps(s.inv), out.qs, lo, hi);
  out.d = f16(s.d);
  out.s = f16(s.d * static_cast<float>(lo + hi));
}

inline void quantize_block(const float* x, block_q8_K& out) {
  const tessera::detail::Int8Scale s = tessera::detail::int8_scale(abs_max(x, QK_K));
  const __m256 inv = _mm256_set1_ps(s.inv);
  for (int k = 0; k < QK_K / 32; ++k) {
    int lo, hi;
    quantize32(x + 32 * k, inv, out.qs + 32 * k, lo, hi);
    out.bsums[2 * k] = static_cast<int16_t>(lo);
    out.bsums[2 * k + 1] = static_cast<int16_t>(hi);
  }
  out.d = s.d;
}

}  // namespace tessera::backend::simd::avx2

#endif  // AVX2 + FMA + F16C

TESSERA_SIMD_WARNINGS_ON
