/// \file
/// Scalar codecs of the 32-value 5-bit formats: q5_0 (x ~ d (q - 16)) and
/// q5_1 (x ~ d q + m). The low 4 bits sit as in q4_0 (value j in the low
/// nibble of qs[j], value j + 16 in the high nibble); bit 4 of value j is bit
/// j of qh, read as a little-endian uint32. llama.cpp's quantizer falls back
/// to q5_0 / q5_1 for rows that are not a multiple of 256 in a k-quant file,
/// so "Q4_K" files of small models are mostly these.
#pragma once

#include <cmath>
#include <cstring>
#include <span>

#include "tessera/core/quant/common.hpp"

namespace tessera {

namespace detail {

inline uint32_t q5_high_bits(const uint8_t (&qh)[4]) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return h;
}

/// The 5-bit value j (0..31) of a q5 block.
template <class B>
int q5_value(const B& b, int j) {
  const int nib = j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4);
  return nib | static_cast<int>(((q5_high_bits(b.qh) >> j) & 1u) << 4);
}

/// Packs 32 values in 0..31 into b.qs / b.qh.
template <class B>
void q5_pack(const int (&q)[32], B& b) {
  uint32_t h = 0;
  for (int j = 0; j < 16; ++j) {
    b.qs[j] = static_cast<uint8_t>((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
    h |= static_cast<uint32_t>(q[j] >> 4) << j;
    h |= static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
  }
  std::memcpy(b.qh, &h, 4);
}

}  // namespace detail

/// out[b*32 + j] = d (q_j - 16).  blocks [n], out [n * 32].
inline void dequantize_row(std::span<const block_q5_0> blocks, std::span<float> out) {
  detail::check_quant_sizes<block_q5_0>("dequantize_row", out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const float d = static_cast<float>(blocks[b].d);
    for (int j = 0; j < QK5_0; ++j) out[b * QK5_0 + j] = d * static_cast<float>(detail::q5_value(blocks[b], j) - 16);
  }
}

/// x [n * 32] -> out [n].  d = -max/16 where max is the value of largest
/// magnitude (as q4_0 with 16 levels a side): |error| <= |d|/2, except
/// within |d| of -max where +16 clamps to +15 (plus f16(d) rounding).
inline void quantize_row(std::span<const float> x, std::span<block_q5_0> out) {
  detail::check_quant_sizes<block_q5_0>("quantize_row", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x.data() + b * QK5_0;
    float max = 0.f, amax = 0.f;
    for (int i = 0; i < QK5_0; ++i)
      if (std::fabs(xb[i]) > amax) { amax = std::fabs(xb[i]); max = xb[i]; }
    const float d = max / -16.f;
    const float inv = d != 0.f ? 1.f / d : 0.f;
    out[b].d = f16(d);
    int q[32];
    for (int i = 0; i < QK5_0; ++i) q[i] = detail::floor_clamp(xb[i] * inv + 16.5f, 0.f, 31.f);
    detail::q5_pack(q, out[b]);
  }
}

/// out[b*32 + j] = d q_j + m.  blocks [n], out [n * 32].
inline void dequantize_row(std::span<const block_q5_1> blocks, std::span<float> out) {
  detail::check_quant_sizes<block_q5_1>("dequantize_row", out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const float d = static_cast<float>(blocks[b].d), m = static_cast<float>(blocks[b].m);
    for (int j = 0; j < QK5_1; ++j) out[b * QK5_1 + j] = d * static_cast<float>(detail::q5_value(blocks[b], j)) + m;
  }
}

/// x [n * 32] -> out [n].  m = min, d = (max - min) / 31:
/// |error| <= d/2 + 31 |d - f16(d)| + |m - f16(m)| per element.
inline void quantize_row(std::span<const float> x, std::span<block_q5_1> out) {
  detail::check_quant_sizes<block_q5_1>("quantize_row", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x.data() + b * QK5_1;
    float min = xb[0], max = xb[0];
    for (int i = 1; i < QK5_1; ++i) {
      min = std::fmin(min, xb[i]);
      max = std::fmax(max, xb[i]);
    }
    const float d = (max - min) / 31.f;
    const float inv = d != 0.f ? 1.f / d : 0.f;
    out[b].d = f16(d);
    out[b].m = f16(min);
    int q[32];
    for (int i = 0; i < QK5_1; ++i) q[i] = detail::floor_clamp((xb[i] - min) * inv + 0.5f, 0.f, 31.f);
    detail::q5_pack(q, out[b]);
  }
}

}  // namespace tessera
