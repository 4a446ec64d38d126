/// \file
/// Pieces shared by the quant codecs: the size contract of quantize_row /
/// dequantize_row, rounding that cannot overflow an int, and the scales of
/// symmetric int8 blocks and of k-quant super-blocks.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>

#include "tessera/core/error.hpp"
#include "tessera/core/quant_blocks.hpp"

namespace tessera::detail {

/// Throws unless n_values is a whole number of Block's blocks and equals n_blocks of them.
template <class Block>
void check_quant_sizes(const char* what, size_t n_values, size_t n_blocks) {
  constexpr auto bs = static_cast<size_t>(quant_traits<Block>::block_size);
  check(n_values % bs == 0, what, " (", quant_traits<Block>::name, "): ", n_values,
        " values is not a multiple of the block size ", bs);
  check(n_values / bs == n_blocks, what, " (", quant_traits<Block>::name, "): ", n_values, " values need ",
        n_values / bs, " blocks, got ", n_blocks);
}

/// v clamped to [lo, hi] then rounded to nearest, ties to even (the rounding
/// of cvtps2dq). NaN lands on lo, so a bad input never reaches an
/// out-of-range float-to-int conversion.
inline int round_clamp(float v, float lo, float hi) {
  return static_cast<int>(std::nearbyint(std::fmin(std::fmax(v, lo), hi)));
}

/// floor(v) clamped to [lo, hi]. q4_0 / q4_1 round as floor(v + 0.5) with
/// the 0.5 folded into their offset, as the GGUF reference quantizer does.
inline int floor_clamp(float v, float lo, float hi) {
  return static_cast<int>(std::fmin(std::fmax(std::floor(v), lo), hi));
}

/// Scale of a symmetric int8 block with largest magnitude amax: values are
/// x * inv rounded, and d * q reconstructs them. Blocks too small for 127 /
/// amax to be finite (|x| < ~1e-36) quantize to zero. The SIMD activation
/// path uses it too, so both produce identical blocks.
struct Int8Scale {
  float d = 0.f;
  float inv = 0.f;
};
inline Int8Scale int8_scale(float amax) {
  const float inv = 127.f / amax;
  if (!(amax > 0.f) || !std::isfinite(inv)) return {};
  return {amax / 127.f, inv};
}

/// f16 super-scale d = top / n_levels for sub-scales quantized as round(s / d).
/// In f16's subnormal range rounding can shrink d enough that |top / d| passes
/// |n_levels| + 0.5 and the top sub-scale would clamp; d then moves one f16
/// step away from zero (the bits are sign-magnitude, so +1 does that).
inline f16 covering_scale(float top, float n_levels) {
  f16 d(top / n_levels);
  const float df = static_cast<float>(d);
  if (df == 0.f && top != 0.f && std::isfinite(top)) return f16::from_bits(static_cast<uint16_t>(d.bits | 1));
  if (df != 0.f && std::fabs(top / df) > std::fabs(n_levels) + 0.5f)
    d = f16::from_bits(static_cast<uint16_t>(d.bits + 1));
  return d;
}

}  // namespace tessera::detail
