/// \file
/// 16-bit floats: f16 (IEEE binary16) and bf16 (bfloat16). Both convert from
/// float with round-to-nearest-even and back to float exactly; NaN, Inf and
/// subnormals are handled. The *_ref functions are the bit-exact reference.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <bit>
#include <cstdint>
#include <type_traits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace tessera {

namespace detail {

/// float -> binary16 bits, round to nearest even. NaNs are quieted, payload top bits kept.
constexpr uint16_t f32_to_f16_ref(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // Inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0u));
  }
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to Inf
  if (ax < 0x38800000u) {                                              // below 2^-14: subnormal or zero
    if (ax < 0x33000000u) return static_cast<uint16_t>(sign);           // <= 2^-25 rounds to zero
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // value / 2^-24 = m * 2^(e-126)
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal: still right
    return static_cast<uint16_t>(sign | q);
  }
  const uint32_t r = ax - (112u << 23);  // rebias the exponent from 127 to 15
  uint32_t q = r >> 13;
  const uint32_t rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;
  return static_cast<uint16_t>(sign | q);
}

/// binary16 bits -> float, exact. NaNs come back quiet, as hardware converters do.
constexpr float f16_to_f32_ref(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0u));
  if (exp == 0) {
    if (man == 0) return std::bit_cast<float>(sign);
    uint32_t e = 113;  // normalise the subnormal
    while (!(man & 0x400u)) { man <<= 1; --e; }
    return std::bit_cast<float>(sign | (e << 23) | ((man & 0x3ffu) << 13));
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
}

/// float -> bfloat16 bits, round to nearest even; NaNs quieted.
constexpr uint16_t f32_to_bf16_ref(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

constexpr float bf16_to_f32_ref(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

}  // namespace detail

/// IEEE binary16. Trivially copyable, 2 bytes: usable as the element of mmap'd weights.
struct f16 {
  uint16_t bits = 0;  ///< Raw binary16 bits: sign, 5-bit exponent, 10-bit mantissa.

  f16() = default;
  /// Rounds `f` to the nearest f16 (ties to even); magnitudes >= 65520 give +-Inf.
  explicit f16(float f) : bits(from_float(f)) {}
  /// The f16 with these raw bits, unchanged.
  static constexpr f16 from_bits(uint16_t b) { f16 h; h.bits = b; return h; }
  /// The exact float value (NaNs come back quiet).
  explicit operator float() const { return to_float(bits); }

  /// float -> binary16 bits, round to nearest even. Uses F16C when compiled
  /// with it, otherwise (and in constant evaluation) the bit-exact reference.
  static constexpr uint16_t from_float(float f) {
#if defined(__F16C__)
    if (!std::is_constant_evaluated())
      return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    return detail::f32_to_f16_ref(f);
  }
  /// binary16 bits -> float, exact. F16C when available, else the reference.
  static constexpr float to_float(uint16_t b) {
#if defined(__F16C__)
    if (!std::is_constant_evaluated()) return _cvtsh_ss(b);
#endif
    return detail::f16_to_f32_ref(b);
  }
};

/// bfloat16: the top half of a float. No hardware path: AVX-512 BF16's
/// vcvtneps2bf16 flushes subnormals to zero, and the integer rounding above is
/// already a handful of instructions (the SIMD backend vectorises it).
struct bf16 {
  uint16_t bits = 0;  ///< Raw bits: the upper 16 bits of the float (sign, 8-bit exponent, 7-bit mantissa).

  bf16() = default;
  /// Rounds `f` to the nearest bf16 (ties to even); NaNs are quieted.
  explicit bf16(float f) : bits(detail::f32_to_bf16_ref(f)) {}
  /// The bf16 with these raw bits, unchanged.
  static constexpr bf16 from_bits(uint16_t b) { bf16 h; h.bits = b; return h; }
  /// The exact float value (the bits shifted into the top half).
  explicit operator float() const { return detail::bf16_to_f32_ref(bits); }
};

static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2);

/// Any element type to float (float itself, f16, bf16).
template <class T>
inline float to_float(T v) { return static_cast<float>(v); }

}  // namespace tessera

TESSERA_SIMD_WARNINGS_ON
