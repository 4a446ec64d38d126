// RoPE on the device, shared by rope() and the fused rope + kv_store kernel
// so both rotate with the same operations: the rotation is written with
// explicit fused multiply-adds, since a compiler may contract a * c - b * s
// either way and the two kernels must give the same bits.
#pragma once

#include "common.cuh"
#include "tessera/backend/rope_params.hpp"

namespace tessera::cuda::dev {

constexpr int kMaxRopePairs = 256;
struct RopeTable {
  float freq[kMaxRopePairs];  // per pair, scaling applied on the host (RopeParams::freq)
  float mscale;
  int half;
  bool neox;
};

/// The value of element e (< 2 half) of a head after the rotation at position
/// pos; h is the head's row before it.
__device__ __forceinline__ float rope_elem(const RopeTable& t, const float* h, int e, int32_t pos) {
  const bool first = t.neox ? e < t.half : e % 2 == 0;
  const int pair = t.neox ? (first ? e : e - t.half) : e / 2;
  const int ia = t.neox ? pair : 2 * pair, ib = t.neox ? pair + t.half : 2 * pair + 1;
  const float theta = static_cast<float>(pos) * t.freq[pair];
  float sn, cs;
  sincosf(theta, &sn, &cs);
  cs *= t.mscale;
  sn *= t.mscale;
  const float a = h[ia], b = h[ib];
  return first ? fmaf(a, cs, -(b * sn)) : fmaf(a, sn, b * cs);
}

}  // namespace tessera::cuda::dev

namespace tessera::cuda::detail {
/// The device table of p: the CPU's own frequencies, bit for bit.
inline dev::RopeTable rope_table(const RopeParams& p) {
  dev::RopeTable t{};
  t.half = p.n_dims / 2;
  for (int i = 0; i < t.half; ++i) t.freq[i] = p.freq(i);
  t.mscale = p.mscale();
  t.neox = p.style == RopeStyle::neox;
  return t;
}
}  // namespace tessera::cuda::detail
