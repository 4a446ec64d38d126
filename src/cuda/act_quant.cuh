// The int8 activations of the quantized GEMVs: one warp per block of 32
// (q8_0 / q8_1) or 256 values (q8_K), and where they sit in the caller's
// workspace. Shared by the GEMV's own quantizer and the kernels that quantize
// their output for the next GEMV (fused.cu), so both write the same bytes.
#pragma once

#include "formats.cuh"

namespace tessera::cuda::dev {

// Exactly as tessera::quantize_row makes them: d = amax / 127,
// q = round-to-even(clamp(x * 127 / amax)); q8_0 and q8_1 keep f16(d) (and
// q8_1 f16(d * sum q)), q8_K the float d and per-16 sums.
__device__ __forceinline__ int quant8(float x, float inv) {
  return __float2int_rn(fminf(fmaxf(x * inv, -127.f), 127.f));
}
__device__ __forceinline__ void int8_scale(float amax, float& d, float& inv) {
  inv = 127.f / amax;
  d = amax / 127.f;
  if (!(amax > 0.f) || !isfinite(inv)) d = inv = 0.f;
}

/// Where a call's quantized activations go (the layout Act reads back).
struct ActOut {
  int8_t* qs;
  float* d;
  float* s;         // q8_1 only
  int16_t* bsum;    // per 32 values (q8_0 / q8_1) or per 16 (q8_K)
};

/// Lane l of the warp holds value l of 32-value block blk; Kind 1: q8_0, 2: q8_1.
template <int Kind>
__device__ __forceinline__ void quantize32_warp(float v, int64_t blk, int lane, const ActOut& o) {
  float d, inv;
  int8_scale(warp_max(fabsf(v)), d, inv);
  const int q = quant8(v, inv);
  o.qs[blk * 32 + lane] = static_cast<int8_t>(q);
  const int sum = warp_sum(q);
  if (lane == 0) {
    o.bsum[blk] = static_cast<int16_t>(sum);
    o.d[blk] = f16_bits_to_float(float_to_f16_bits(d));
    if (Kind == 2) o.s[blk] = f16_bits_to_float(float_to_f16_bits(d * static_cast<float>(sum)));
  }
}

/// Lane l of the warp holds values 8l .. 8l+7 of 256-value block blk (q8_K);
/// lanes 2j, 2j+1 make the sum of values 16j .. 16j+15.
__device__ __forceinline__ void quantize256_warp(const float (&v)[8], int64_t blk, int lane, const ActOut& o) {
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(v[i]));
  float d, inv;
  int8_scale(warp_max(amax), d, inv);
  int sum = 0;
  uint32_t packed[2] = {0, 0};
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int q = quant8(v[i], inv);
    sum += q;
    packed[i / 4] |= (static_cast<uint32_t>(q) & 0xffu) << (8 * (i % 4));
  }
  *reinterpret_cast<uint2*>(o.qs + blk * 256 + lane * 8) = make_uint2(packed[0], packed[1]);
  sum += shfl_xor(sum, 1);
  if (lane % 2 == 0) o.bsum[blk * 16 + lane / 2] = static_cast<int16_t>(sum);
  if (lane == 0) o.d[blk] = d;
}

inline Act act_of(const ActOut& o) { return {o.qs, o.d, o.s, o.bsum, nullptr}; }

}  // namespace tessera::cuda::dev

namespace tessera::cuda::detail {

/// The int8 format number the kernels use (0 none, 1 q8_0, 2 q8_1, 3 q8_K).
inline int act_kind(ActQuant q) { return static_cast<int>(q); }

/// The pieces of mk quantized activations in a workspace, 256-byte aligned:
/// qs, d, then q8_1's s and the block sums (q8_K: d, then the per-16 sums).
/// gemv, gemv_split and the fused kernels all carve it this way.
inline dev::ActOut carve_act(int kind, int64_t mk, DeviceView<std::byte, 1> ws, const char* what) {
  Carver c(ws, what);
  dev::ActOut o{};
  o.qs = c.take<int8_t>(mk);
  o.d = c.take<float>(mk / 32);
  if (kind == 3) {
    o.bsum = c.take<int16_t>(mk / 16);
  } else {
    o.s = kind == 2 ? c.take<float>(mk / 32) : nullptr;
    o.bsum = c.take<int16_t>(mk / 32);
  }
  return o;
}

}  // namespace tessera::cuda::detail
