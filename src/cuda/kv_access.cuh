// Addressing of cached keys and values (contiguous or paged) and the online
// softmax step shared by decode and flash attention: the running max m and
// sum l of one query row absorb a tile of scores, returning the factor that
// rescales the row's accumulated output.
#pragma once

#include "common.cuh"
#include "tessera/backend/cuda/attention.hpp"

namespace tessera::cuda::dev {

/// Plain-data copy of DeviceKv for kernels, with the byte sizes precomputed.
struct KvRef {
  const uint8_t* k;
  const uint8_t* v;
  const int32_t* seq_lens;
  const int32_t* block_table;
  int64_t max_keys, page_size, max_pages;
  int64_t n_kv_heads;
  int64_t head_bytes;  // bytes of one head's row
  /// Byte offset of key j of sequence b, KV head g (the same for k and v).
  __device__ __forceinline__ int64_t offset(int64_t b, int64_t j, int64_t g) const {
    int64_t row;
    if (block_table) {  // 32-bit division: a 64-bit one costs tens of instructions per row
      const int jj = static_cast<int>(j), ps = static_cast<int>(page_size);
      row = static_cast<int64_t>(block_table[b * max_pages + jj / ps]) * page_size + jj % ps;
    } else {
      row = b * max_keys + j;
    }
    return (row * n_kv_heads + g) * head_bytes;
  }
};

/// Visible keys [lo, hi) of a query at position p in a sequence of n keys.
__device__ __forceinline__ void visible_keys(DeviceMask mask, int64_t p, int64_t n, int64_t& lo, int64_t& hi) {
  hi = mask.kind == DeviceMask::Kind::none ? n : (p + 1 < n ? p + 1 : n);
  lo = mask.kind == DeviceMask::Kind::sliding ? p - mask.window + 1 : 0;
  if (lo < 0) lo = 0;
}

/// 2^x by ex2.approx (2 ulp; one instruction where exp2f takes several).
__device__ __forceinline__ float fast_exp2(float x) {
#if defined(TESSERA_HIP_BACKEND)
  return exp2f(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#endif
}

/// Scores are in log2 units (q was scaled by log2 e). The row's running max m
/// takes in a tile whose largest score is tile_max; l is rescaled to the new
/// max, and the factor is returned for the accumulated output. The caller
/// then adds the tile's exp2(s - m) (softmax_weight) to l. While every score
/// so far is -inf, m stays -inf and the factor is 1.
__device__ __forceinline__ float online_softmax_rescale(float tile_max, float& m, float& l) {
  const float m_new = fmaxf(m, tile_max);
  const float corr = m_new == -INFINITY ? 1.f : fast_exp2(m - m_new);
  l *= corr;
  m = m_new;
  return corr;
}

/// exp2(s - m), 0 for a masked score or while nothing is visible yet.
__device__ __forceinline__ float softmax_weight(float s, float m) { return m == -INFINITY ? 0.f : fast_exp2(s - m); }

}  // namespace tessera::cuda::dev
