// Writing one value of a new key / value row into the cache (f16, bf16 or
// q8_0, contiguous or paged), shared by kv_store() and the fused rope +
// kv_store kernel so both write the same bytes.
#pragma once

#include "common.cuh"
#include "tessera/backend/cuda/attention.hpp"

namespace tessera::cuda::dev {

struct KvDst {
  uint8_t* k;
  uint8_t* v;
  const int32_t* block_table;
  int64_t max_keys, page_size, n_kv_heads, head_dim, head_bytes;
  /// The cache row of position p (0 <= p < max_keys).
  __device__ __forceinline__ int64_t row(int64_t p) const {
    return block_table ? static_cast<int64_t>(block_table[p / page_size]) * page_size + p % page_size : p;
  }
};

/// Value `lane` of 32-value block blk of a head row starting at base; every
/// lane of the warp calls it with its value of the same block.
template <KvElem E>
__device__ __forceinline__ void kv_put(float x, uint8_t* base, int64_t blk, int lane) {
  if constexpr (E == KvElem::q8_0) {
    // As quantize_row<block_q8_0>: d = amax / 127 kept as f16, q = round-to-even(x * 127 / amax).
    const float amax = warp_max(fabsf(x));
    float inv = 127.f / amax, d = amax / 127.f;
    if (!(amax > 0.f) || !isfinite(inv)) d = inv = 0.f;
    uint8_t* b = base + blk * 34;
    b[2 + lane] = static_cast<uint8_t>(static_cast<int8_t>(__float2int_rn(fminf(fmaxf(x * inv, -127.f), 127.f))));
    if (lane == 0) *reinterpret_cast<uint16_t*>(b) = float_to_f16_bits(d);
  } else {
    const uint16_t bits = E == KvElem::f16 ? float_to_f16_bits(x) : float_to_bf16_bits(x);
    reinterpret_cast<uint16_t*>(base)[blk * 32 + lane] = bits;
  }
}

}  // namespace tessera::cuda::dev

namespace tessera::cuda::detail {
/// kv_store's argument checks (k, v [T, n_kv_heads, head_dim] into dst), and the kernels' copy of dst.
inline dev::KvDst kv_dst(const char* what, const DeviceView<const float, 3>& k, const DeviceView<const float, 3>& v,
                         const DeviceView<const int32_t, 1>& pos, const DeviceKvRows& dst,
                         const DeviceView<int32_t, 1>& fault) {
  TESSERA_CHECK(v.shape() == k.shape(), what, ": k ", k.shape_str(), " but v ", v.shape_str());
  check(pos.dim(0) == k.dim(0), what, ": ", k.dim(0), " rows but ", pos.dim(0), " positions");
  check(k.dim(1) == dst.n_kv_heads && k.dim(2) == dst.head_dim, what, ": rows ", k.shape_str(),
        " into a cache of ", dst.n_kv_heads, " heads x ", dst.head_dim);
  check(dst.head_dim % 32 == 0 && dst.head_dim > 0, what, ": head_dim ", dst.head_dim, " is not a multiple of 32");
  check(dst.k && dst.v && dst.max_keys > 0, what, ": null cache or no rows");
  check(!dst.block_table || dst.page_size > 0, what, ": a paged cache needs page_size");
  check(fault.dim(0) >= 1, what, ": needs a fault flag");
  const int64_t hb = dst.elem == KvElem::q8_0 ? dst.head_dim / 32 * 34 : dst.head_dim * 2;
  return {static_cast<uint8_t*>(dst.k), static_cast<uint8_t*>(dst.v), dst.block_table, dst.max_keys,
          dst.page_size, dst.n_kv_heads, dst.head_dim, hb};
}
}  // namespace tessera::cuda::detail
