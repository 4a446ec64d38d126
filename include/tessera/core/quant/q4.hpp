/// \file
/// Scalar codecs of the 32-value 4-bit formats: q4_0 (x ~ d (q - 8)) and
/// q4_1 (x ~ d q + m). Value j sits in the low nibble of qs[j], value j + 16
/// in the high nibble.
#pragma once

#include <cmath>
#include <span>

#include "tessera/core/quant/common.hpp"

namespace tessera {

/// out[b*32 + j] = d (lo(qs[j]) - 8), out[b*32 + j + 16] = d (hi(qs[j]) - 8).  blocks [n], out [n * 32].
inline void dequantize_row(std::span<const block_q4_0> blocks, std::span<float> out) {
  detail::check_quant_sizes<block_q4_0>("dequantize_row", out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const float d = static_cast<float>(blocks[b].d);
    float* o = out.data() + b * QK4_0;
    for (int j = 0; j < QK4_0 / 2; ++j) {
      o[j] = d * static_cast<float>((blocks[b].qs[j] & 0x0f) - 8);
      o[j + QK4_0 / 2] = d * static_cast<float>((blocks[b].qs[j] >> 4) - 8);
    }
  }
}

/// x [n * 32] -> out [n].  d = -max/8 where max is the value of largest
/// magnitude, so max itself is exact and the opposite end (+8) clamps to +7:
/// |error| <= |d|/2 except within |d| of -max, where it is <= |d| (plus f16(d) rounding).
inline void quantize_row(std::span<const float> x, std::span<block_q4_0> out) {
  detail::check_quant_sizes<block_q4_0>("quantize_row", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x.data() + b * QK4_0;
    float max = 0.f, amax = 0.f;
    for (int i = 0; i < QK4_0; ++i)
      if (std::fabs(xb[i]) > amax) { amax = std::fabs(xb[i]); max = xb[i]; }
    const float d = max / -8.f;
    const float inv = d != 0.f ? 1.f / d : 0.f;
    out[b].d = f16(d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      const int lo = detail::floor_clamp(xb[j] * inv + 8.5f, 0.f, 15.f);
      const int hi = detail::floor_clamp(xb[j + QK4_0 / 2] * inv + 8.5f, 0.f, 15.f);
      out[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

/// out[b*32 + j] = d lo(qs[j]) + m, out[b*32 + j + 16] = d hi(qs[j]) + m.  blocks [n], out [n * 32].
inline void dequantize_row(std::span<const block_q4_1> blocks, std::span<float> out) {
  detail::check_quant_sizes<block_q4_1>("dequantize_row", out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const float d = static_cast<float>(blocks[b].d), m = static_cast<float>(blocks[b].m);
    float* o = out.data() + b * QK4_1;
    for (int j = 0; j < QK4_1 / 2; ++j) {
      o[j] = d * static_cast<float>(blocks[b].qs[j] & 0x0f) + m;
      o[j + QK4_1 / 2] = d * static_cast<float>(blocks[b].qs[j] >> 4) + m;
    }
  }
}

/// x [n * 32] -> out [n].  m = min, d = (max - min) / 15:
/// |error| <= d/2 + 15 |d - f16(d)| + |m - f16(m)| per element.
inline void quantize_row(std::span<const float> x, std::span<block_q4_1> out) {
  detail::check_quant_sizes<block_q4_1>("quantize_row", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x.data() + b * QK4_1;
    float min = xb[0], max = xb[0];
    for (int i = 1; i < QK4_1; ++i) {
      min = std::fmin(min, xb[i]);
      max = std::fmax(max, xb[i]);
    }
    const float d = (max - min) / 15.f;
    const float inv = d != 0.f ? 1.f / d : 0.f;
    out[b].d = f16(d);
    out[b].m = f16(min);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      const int lo = detail::floor_clamp((xb[j] - min) * inv + 0.5f, 0.f, 15.f);
      const int hi = detail::floor_clamp((xb[j + QK4_1 / 2] - min) * inv + 0.5f, 0.f, 15.f);
      out[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

}  // namespace tessera
