/// \file
/// Scalar codecs of the symmetric 8-bit formats q8_0, q8_1 (+ block sum) and
/// q8_K (+ per-16 sums): x ~ d * q with d = amax / 127, q = x * 127 / amax
/// rounded to nearest, ties to even.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>

#include "tessera/core/quant/common.hpp"

namespace tessera {

namespace detail {
inline float abs_max(const float* x, int n) {
  float amax = 0.f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}
/// Quantizes n values with scale s into q; returns the sum of the q.
inline int quantize_int8(const float* x, int n, Int8Scale s, int8_t* q) {
  int sum = 0;
  for (int i = 0; i < n; ++i) {
    q[i] = static_cast<int8_t>(round_clamp(x[i] * s.inv, -127.f, 127.f));
    sum += q[i];
  }
  return sum;
}
}  // namespace detail

/// out[b*32 + i] = d_b * qs_b[i].  blocks [n], out [n * 32].  Error if the sizes disagree.
inline void dequantize_row(std::span<const block_q8_0> blocks, std::span<float> out) {
  detail::check_quant_sizes<block_q8_0>("dequantize_row", out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const float d = static_cast<float>(blocks[b].d);
    for (int i = 0; i < QK8_0; ++i) out[b * QK8_0 + i] = d * blocks[b].qs[i];
  }
}

/// x [n * 32] -> out [n]; |x - d q| <= d/2 + 127 |d - f16(d)| per element.  Error if sizes disagree.
inline void quantize_row(std::span<const float> x, std::span<block_q8_0> out) {
  detail::check_quant_sizes<block_q8_0>("quantize_row", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x.data() + b * QK8_0;
    const detail::Int8Scale s = detail::int8_scale(detail::abs_max(xb, QK8_0));
    out[b].d = f16(s.d);
    detail::quantize_int8(xb, QK8_0, s, out[b].qs);
  }
}

/// As q8_0 (the s field is only used by dot products).  blocks [n], out [n * 32].
inline void dequantize_row(std::span<const block_q8_1> blocks, std::span<float> out) {
  detail::check_quant_sizes<block_q8_1>("dequantize_row", out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const float d = static_cast<float>(blocks[b].d);
    for (int i = 0; i < QK8_0; ++i) out[b * QK8_0 + i] = d * blocks[b].qs[i];
  }
}

/// As q8_0, plus s = f16(d * sum(q)) with the unrounded float d.  x [n * 32] -> out [n].
inline void quantize_row(std::span<const float> x, std::span<block_q8_1> out) {
  detail::check_quant_sizes<block_q8_1>("quantize_row", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x.data() + b * QK8_0;
    const detail::Int8Scale s = detail::int8_scale(detail::abs_max(xb, QK8_0));
    const int sum = detail::quantize_int8(xb, QK8_0, s, out[b].qs);
    out[b].d = f16(s.d);
    out[b].s = f16(s.d * static_cast<float>(sum));
  }
}

/// out[b*256 + i] = d_b * qs_b[i] (d is a float here).  blocks [n], out [n * 256].
inline void dequantize_row(std::span<const block_q8_K> blocks, std::span<float> out) {
  detail::check_quant_sizes<block_q8_K>("dequantize_row", out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b)
    for (int i = 0; i < QK_K; ++i) out[b * QK_K + i] = blocks[b].d * blocks[b].qs[i];
}

/// x [n * 256] -> out [n]; |x - d q| <= d/2 per element (float d); bsums[j] = sum of qs[16j .. 16j+15].
inline void quantize_row(std::span<const float> x, std::span<block_q8_K> out) {
  detail::check_quant_sizes<block_q8_K>("quantize_row", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x.data() + b * QK_K;
    const detail::Int8Scale s = detail::int8_scale(detail::abs_max(xb, QK_K));
    out[b].d = s.d;
    for (int j = 0; j < QK_K / 16; ++j)
      out[b].bsums[j] = static_cast<int16_t>(detail::quantize_int8(xb + 16 * j, 16, s, out[b].qs + 16 * j));
  }
}

}  // namespace tessera
