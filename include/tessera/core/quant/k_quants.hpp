/// \file
/// Scalar codecs of the k-quants (256-value super-blocks): q4_K and q5_K, x ~
/// d sc_j q - dmin m_j over 8 sub-blocks of 32 with 6-bit sc/m and 4- or 5-bit
/// q; q6_K, x ~ d sc_j (q - 32) over 16 sub-blocks of 16 with int8 sc and
/// 6-bit q split into ql and qh.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>

#include "tessera/core/quant/common.hpp"

namespace tessera {

namespace detail {

/// q4_K's 12 scale bytes -> 8 scales and 8 mins of 6 bits. Bytes 0-3 hold
/// sc0-3 (low 6 bits) and the top 2 bits of sc4-7; bytes 4-7 hold m0-3 and
/// the top bits of m4-7; bytes 8-11 hold the low nibbles of sc4-7 | m4-7 << 4.
inline void unpack_q4_K_scales(const uint8_t* s, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    mn[j] = s[j + 4] & 63;
    sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0x0f) | ((s[j] >> 6) << 4));
    mn[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
  }
}
/// Inverse of unpack_q4_K_scales; sc and mn must be < 64.
inline void pack_q4_K_scales(const uint8_t* sc, const uint8_t* mn, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4));
  }
}

/// The 6-bit value q (0..63) of element e of a q6_K block. In each half of
/// 128, ql[l] holds elements l (low nibble) and l+64 (high), ql[l+32] holds
/// l+32 and l+96; qh[l] holds their top 2 bits at shifts 0, 4, 2, 6.
inline int q6_K_value(const block_q6_K& b, int e) {
  const int h = e / 128, g = (e % 128) / 32, l = e % 32;
  const uint8_t lo = b.ql[64 * h + 32 * (g & 1) + l];
  const int nib = g < 2 ? (lo & 0x0f) : (lo >> 4);
  return nib | (((b.qh[32 * h + l] >> (2 * g)) & 3) << 4);
}

/// A sub-block's grid: x ~ scale * L - offset, L in [0, nmax].
struct AffineFit {
  float scale = 0.f;
  float offset = 0.f;  // >= 0: the grid's lowest value is -offset <= 0
};

inline float affine_error(const float* x, int n, int nmax, float scale, float lo) {
  float err = 0.f;
  for (int i = 0; i < n; ++i) {
    const int l = scale > 0.f ? round_clamp((x[i] - lo) / scale, 0.f, static_cast<float>(nmax)) : 0;
    const float e = scale * static_cast<float>(l) + lo - x[i];
    err += e * e;
  }
  return err;
}

/// Least-squares search of (scale, offset) for one sub-block: start from the
/// min-max grid, then for 21 stretched grids round the values and fit scale and
/// offset to those levels in closed form (2x2 normal equations), keeping a fit
/// only if its squared error is strictly smaller. The grid's lowest value is
/// capped at 0 (offsets are stored unsigned).
inline AffineFit fit_affine(const float* x, int n, int nmax) {
  float lo = 0.f, hi = x[0];
  for (int i = 0; i < n; ++i) { lo = std::fmin(lo, x[i]); hi = std::fmax(hi, x[i]); }
  if (!(hi > lo)) return {0.f, -lo};
  float best_scale = (hi - lo) / static_cast<float>(nmax), best_lo = lo;
  float best_err = affine_error(x, n, nmax, best_scale, best_lo);
  for (int t = -10; t <= 10; ++t) {
    const float inv = (static_cast<float>(nmax) + 0.1f * static_cast<float>(t)) / (hi - lo);
    float sl = 0.f, sl2 = 0.f, sx = 0.f, sxl = 0.f;
    for (int i = 0; i < n; ++i) {
      const auto l = static_cast<float>(round_clamp((x[i] - lo) * inv, 0.f, static_cast<float>(nmax)));
      sl += l; sl2 += l * l; sx += x[i]; sxl += x[i] * l;
    }
    const float det = static_cast<float>(n) * sl2 - sl * sl;
    if (!(det > 0.f)) continue;
    float scale = (static_cast<float>(n) * sxl - sx * sl) / det;
    float base = (sl2 * sx - sl * sxl) / det;
    if (base > 0.f) { base = 0.f; scale = sxl / sl2; }
    if (!(scale > 0.f)) continue;
    const float err = affine_error(x, n, nmax, scale, base);
    if (err < best_err) { best_err = err; best_scale = scale; best_lo = base; }
  }
  return {best_scale, -best_lo};
}

inline float symmetric_error(const float* x, int n, float scale) {
  float err = 0.f;
  for (int i = 0; i < n; ++i) {
    const int l = scale != 0.f ? round_clamp(x[i] / scale, -32.f, 31.f) : 0;
    const float e = scale * static_cast<float>(l) - x[i];
    err += e * e;
  }
  return err;
}

/// Least-squares search of a signed scale for x ~ scale * L, L in [-32, 31]:
/// the value of largest magnitude goes to -32 (the wider side), and 21
/// stretched grids are tried with the scale refit as sum(x L) / sum(L^2),
/// keeping a fit only if strictly better.
inline float fit_symmetric_q6(const float* x, int n) {
  float amax = 0.f, max = 0.f;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) { amax = std::fabs(x[i]); max = x[i]; }
  if (!(amax > 0.f)) return 0.f;
  float best_scale = max / -32.f;
  float best_err = symmetric_error(x, n, best_scale);
  for (int t = -10; t <= 10; ++t) {
    const float inv = -(32.f + 0.1f * static_cast<float>(t)) / max;
    float sxl = 0.f, sl2 = 0.f;
    for (int i = 0; i < n; ++i) {
      const auto l = static_cast<float>(round_clamp(x[i] * inv, -32.f, 31.f));
      sxl += x[i] * l; sl2 += l * l;
    }
    if (!(sl2 > 0.f)) continue;
    const float scale = sxl / sl2;
    const float err = symmetric_error(x, n, scale);
    if (err < best_err) { best_err = err; best_scale = scale; }
  }
  return best_scale;
}

/// Largest |v| over n floats and its index (0 when all are zero or NaN).
inline int arg_abs_max(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (std::fabs(v[i]) > std::fabs(v[best])) best = i;
  return best;
}

/// q4_K's and q5_K's shared fit: per sub-block least-squares (scale, offset) on
/// levels 0..nmax, 6-bit sub-scales against f16 super-scales, then every level
/// re-rounded on the grid actually stored.  Writes d, dmin, the packed scales and q.
template <class B>
void quantize_affine_K(const float* x, int nmax, B& out, uint8_t* q) {
  AffineFit fit[8];
  float max_scale = 0.f, max_offset = 0.f;
  for (int j = 0; j < 8; ++j) {
    fit[j] = fit_affine(x + 32 * j, 32, nmax);
    max_scale = std::fmax(max_scale, fit[j].scale);
    max_offset = std::fmax(max_offset, fit[j].offset);
  }
  out.d = covering_scale(max_scale, 63.f);
  out.dmin = covering_scale(max_offset, 63.f);
  const float d = static_cast<float>(out.d), dmin = static_cast<float>(out.dmin);
  uint8_t sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {  // 6-bit levels against the stored (f16) super-scales
    sc[j] = static_cast<uint8_t>(d > 0.f ? round_clamp(fit[j].scale / d, 0.f, 63.f) : 0);
    mn[j] = static_cast<uint8_t>(dmin > 0.f ? round_clamp(fit[j].offset / dmin, 0.f, 63.f) : 0);
  }
  pack_q4_K_scales(sc, mn, out.scales);
  for (int j = 0; j < 8; ++j) {
    const float s = d * sc[j], off = dmin * mn[j];
    for (int i = 0; i < 32; ++i)
      q[32 * j + i] = static_cast<uint8_t>(
          s > 0.f ? round_clamp((x[32 * j + i] + off) / s, 0.f, static_cast<float>(nmax)) : 0);
  }
}

inline void quantize_q4_K_block(const float* x, block_q4_K& out) {
  uint8_t q[QK_K];
  quantize_affine_K(x, 15, out, q);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) out.qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
}

/// The 5-bit value (0..31) of element e of a q5_K block (layout: block_q5_K).
inline int q5_K_value(const block_q5_K& b, int e) {
  const int c = e / 64, h = (e % 64) / 32, l = e % 32;
  const int nib = h ? b.qs[32 * c + l] >> 4 : b.qs[32 * c + l] & 0x0f;
  return nib | (((b.qh[l] >> (2 * c + h)) & 1) << 4);
}

inline void quantize_q5_K_block(const float* x, block_q5_K& out) {
  uint8_t q[QK_K];
  quantize_affine_K(x, 31, out, q);
  std::memset(out.qh, 0, sizeof out.qh);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      const uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];
      out.qs[32 * c + l] = static_cast<uint8_t>((lo & 0x0f) | ((hi & 0x0f) << 4));
      out.qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
    }
}

inline void quantize_q6_K_block(const float* x, block_q6_K& out) {
  out = block_q6_K{};
  float scale[16];
  for (int j = 0; j < 16; ++j) scale[j] = fit_symmetric_q6(x + 16 * j, 16);
  const float max_scale = scale[arg_abs_max(scale, 16)];
  out.d = covering_scale(max_scale, -128.f);  // the largest sub-scale takes int8's wider side, -128
  const float d = static_cast<float>(out.d);
  for (int j = 0; j < 16; ++j)
    out.scales[j] = static_cast<int8_t>(d != 0.f ? round_clamp(scale[j] / d, -128.f, 127.f) : 0);
  for (int e = 0; e < QK_K; ++e) {
    const float s = d * out.scales[e / 16];
    const int q = (s != 0.f ? round_clamp(x[e] / s, -32.f, 31.f) : 0) + 32;
    const int h = e / 128, g = (e % 128) / 32, l = e % 32;
    out.ql[64 * h + 32 * (g & 1) + l] |= static_cast<uint8_t>((q & 0x0f) << (g < 2 ? 0 : 4));
    out.qh[32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * g));
  }
}

}  // namespace detail

/// Value 32j + i = d sc_j q - dmin m_j, q the nibble of element 64c + 32h + l
/// in qs[32c + l] (h = 0 low, 1 high).  blocks [n], out [n * 256].
inline void dequantize_row(std::span<const block_q4_K> blocks, std::span<float> out) {
  detail::check_quant_sizes<block_q4_K>("dequantize_row", out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const block_q4_K& blk = blocks[b];
    const float d = static_cast<float>(blk.d), dmin = static_cast<float>(blk.dmin);
    uint8_t sc[8], mn[8];
    detail::unpack_q4_K_scales(blk.scales, sc, mn);
    float* o = out.data() + b * QK_K;
    for (int c = 0; c < 4; ++c) {
      const float d_lo = d * sc[2 * c], m_lo = dmin * mn[2 * c];
      const float d_hi = d * sc[2 * c + 1], m_hi = dmin * mn[2 * c + 1];
      for (int l = 0; l < 32; ++l) {
        o[64 * c + l] = d_lo * static_cast<float>(blk.qs[32 * c + l] & 0x0f) - m_lo;
        o[64 * c + 32 + l] = d_hi * static_cast<float>(blk.qs[32 * c + l] >> 4) - m_hi;
      }
    }
  }
}

/// x [n * 256] -> out [n].  Per sub-block least-squares fit of scale and
/// offset, then 6-bit scales relative to the largest; see tests for the bounds.
inline void quantize_row(std::span<const float> x, std::span<block_q4_K> out) {
  detail::check_quant_sizes<block_q4_K>("quantize_row", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) detail::quantize_q4_K_block(x.data() + b * QK_K, out[b]);
}

/// Value 32j + i = d sc_j q - dmin m_j, q as in detail::q5_K_value.  blocks [n], out [n * 256].
inline void dequantize_row(std::span<const block_q5_K> blocks, std::span<float> out) {
  detail::check_quant_sizes<block_q5_K>("dequantize_row", out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const block_q5_K& blk = blocks[b];
    const float d = static_cast<float>(blk.d), dmin = static_cast<float>(blk.dmin);
    uint8_t sc[8], mn[8];
    detail::unpack_q4_K_scales(blk.scales, sc, mn);
    for (int e = 0; e < QK_K; ++e)
      out[b * QK_K + e] = d * sc[e / 32] * static_cast<float>(detail::q5_K_value(blk, e)) - dmin * mn[e / 32];
  }
}

/// x [n * 256] -> out [n].  As q4_K's, on 32 levels.
inline void quantize_row(std::span<const float> x, std::span<block_q5_K> out) {
  detail::check_quant_sizes<block_q5_K>("quantize_row", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) detail::quantize_q5_K_block(x.data() + b * QK_K, out[b]);
}

/// Value e = d sc_{e/16} (q_e - 32), q_e as in detail::q6_K_value.  blocks [n], out [n * 256].
inline void dequantize_row(std::span<const block_q6_K> blocks, std::span<float> out) {
  detail::check_quant_sizes<block_q6_K>("dequantize_row", out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const float d = static_cast<float>(blocks[b].d);
    for (int e = 0; e < QK_K; ++e)
      out[b * QK_K + e] = d * blocks[b].scales[e / 16] * static_cast<float>(detail::q6_K_value(blocks[b], e) - 32);
  }
}

/// x [n * 256] -> out [n].  Per sub-block least-squares signed scale, then
/// int8 scales relative to the largest (which lands on -128).
inline void quantize_row(std::span<const float> x, std::span<block_q6_K> out) {
  detail::check_quant_sizes<block_q6_K>("quantize_row", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) detail::quantize_q6_K_block(x.data() + b * QK_K, out[b]);
}

}  // namespace tessera
