// The small kernels of the decode step fused with their neighbours, so a
// layer launches 11 kernels instead of 18 (docs/cuda.md): the residual add,
// rms_norm and the next GEMV's activation quantizer; SwiGLU and the down
// projection's quantizer; RoPE of Q and K and the cache store of K and V.
// Each reuses the device code of the kernels it replaces (act_quant.cuh,
// rope.cuh, kv_rows.cuh) and keeps their order of float operations, so its
// outputs are the bits the separate kernels write.
#include "act_quant.cuh"
#include "kv_rows.cuh"
#include "rope.cuh"
#include "tessera/backend/cuda/attention.hpp"
#include "tessera/backend/cuda/ops.hpp"

namespace tessera::cuda {
namespace dev {

constexpr int kFusedThreads = 256;  // rms_norm's block: the same partial sums, so the same scale

// A block per row, then a warp per quantizer block in turn.  x is read back
// after the barrier of block_sum, where the other threads' writes of x + dx
// are visible; x is therefore not __restrict__.
template <int Kind>
__global__ void __launch_bounds__(kFusedThreads)
    add_rms_norm_kernel(float* x, const float* __restrict__ dx, const float* __restrict__ w, float eps, int64_t n,
                        float* out, ActOut o) {
  pdl_launch_dependents();
  pdl_wait();
  __shared__ float scratch[32];
  float* xr = x + blockIdx.x * n;
  const float* dr = dx ? dx + blockIdx.x * n : nullptr;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += kFusedThreads) {
    float v = xr[i];
    if (dr) {
      v = v + dr[i];
      xr[i] = v;
    }
    ss = fmaf(v, v, ss);
  }
  ss = block_sum(ss, scratch);
  const float scale = 1.f / sqrtf(ss / static_cast<float>(n) + eps);
  float* orow = out ? out + blockIdx.x * n : nullptr;
  if constexpr (Kind == 0) {
    for (int64_t i = threadIdx.x; i < n; i += kFusedThreads) orow[i] = xr[i] * scale * w[i];
  } else if constexpr (Kind == 3) {
    // A warp per 256 values, lane l on values 8l .. 8l+7: the q8_K quantizer's layout.
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int64_t b = warp; b < n / 256; b += kFusedThreads / 32) {
      const int64_t e0 = b * 256 + lane * 8;
      float v[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        v[i] = xr[e0 + i] * scale * w[e0 + i];
        if (orow) orow[e0 + i] = v[i];
      }
      quantize256_warp(v, blockIdx.x * (n / 256) + b, lane, o);
    }
  } else {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int64_t b = warp; b < n / 32; b += kFusedThreads / 32) {
      const int64_t e = b * 32 + lane;
      const float v = xr[e] * scale * w[e];
      if (orow) orow[e] = v;
      quantize32_warp<Kind>(v, blockIdx.x * (n / 32) + b, lane, o);
    }
  }
}

// silu(g) * u as gated_kernel<Gate::silu> computes it.
__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.f + expf(-g)) * u; }

// Kind 0: a thread per value.  Otherwise a warp per quantizer block (32 or
// 256 values); values are not re-read after out is written, so out may alias gate.
template <int Kind>
__global__ void swiglu_quant_kernel(const float* gate, const float* __restrict__ up, float* out, int64_t total,
                                    ActOut o) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if constexpr (Kind == 0) {
    if (t < total) out[t] = silu_mul(gate[t], up[t]);
  } else if constexpr (Kind == 3) {
    const int lane = threadIdx.x % 32;
    const int64_t b = t / 32;
    if (b >= total / 256) return;
    const int64_t e0 = b * 256 + lane * 8;
    float v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = silu_mul(gate[e0 + i], up[e0 + i]);
    if (out) {
#pragma unroll
      for (int i = 0; i < 8; ++i) out[e0 + i] = v[i];
    }
    quantize256_warp(v, b, lane, o);
  } else {
    const int lane = threadIdx.x % 32;
    const int64_t b = t / 32;
    if (b >= total / 32) return;
    const float v = silu_mul(gate[t], up[t]);
    if (out) out[t] = v;
    quantize32_warp<Kind>(v, b, lane, o);
  }
}

// A warp per (token, head slot): slots [0, H) are query heads, [H, H + G) key
// heads, [H + G, H + 2G) value heads.  The warp holds its whole head (up to
// 8 values a lane) before writing it back, so a rotation partner in another
// block of 32 (neox pairs) is read before anything overwrites it.
constexpr int kMaxHeadBlocks = 8;  // head_dim <= 256
template <KvElem E>
__global__ void rope_kv_store_kernel(float* q, float* k, const float* __restrict__ v,
                                     const int32_t* __restrict__ pos, int64_t n_tokens, int64_t n_heads, RopeTable t,
                                     KvDst dst, int* bad) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t G = dst.n_kv_heads, slots = n_heads + 2 * G, D = dst.head_dim;
  const int64_t wid = blockIdx.x * int64_t{8} + threadIdx.x / 32;
  if (wid >= n_tokens * slots) return;
  const int lane = threadIdx.x % 32;
  const int64_t tok = wid / slots, slot = wid % slots;
  const int nblk = static_cast<int>(D / 32), n_rot = 2 * t.half;
  const int32_t p = pos[tok];
  const bool is_v = slot >= n_heads + G;
  float* h = slot < n_heads ? q + (tok * n_heads + slot) * D
                            : is_v ? nullptr : k + (tok * G + slot - n_heads) * D;
  float val[kMaxHeadBlocks] = {};
  if (h) {
#pragma unroll
    for (int b = 0; b < kMaxHeadBlocks; ++b) {
      const int e = b * 32 + lane;
      if (b < nblk) val[b] = e < n_rot ? rope_elem(t, h, e, p) : h[e];
    }
    warp_sync();  // every lane has read its partners
#pragma unroll
    for (int b = 0; b < kMaxHeadBlocks; ++b)
      if (b < nblk) h[b * 32 + lane] = val[b];
  } else {
    const float* src = v + (tok * G + slot - n_heads - G) * D;
#pragma unroll
    for (int b = 0; b < kMaxHeadBlocks; ++b)
      if (b < nblk) val[b] = src[b * 32 + lane];
  }
  if (slot < n_heads) return;
  if (p < 0 || p >= dst.max_keys) {  // as kv_store: flag it, write nothing
    if (lane == 0) atomicExch(bad, 1);
    return;
  }
  const int64_t head = is_v ? slot - n_heads - G : slot - n_heads;
  uint8_t* base = (is_v ? dst.v : dst.k) + (dst.row(p) * G + head) * dst.head_bytes;
#pragma unroll
  for (int b = 0; b < kMaxHeadBlocks; ++b)
    if (b < nblk) kv_put<E>(val[b], base, b, lane);
}

}  // namespace dev

namespace {
// The quantized activations' layout for a Kind, after the row-length check.
dev::ActOut act_out(const char* what, ActQuant q, int64_t rows, int64_t n, DeviceView<std::byte, 1> act) {
  const int kind = detail::act_kind(q);
  if (kind == 0) return {};
  const int64_t blk = kind == 3 ? 256 : 32;
  check(n % blk == 0, what, ": rows of ", n, " values cannot be quantized in blocks of ", blk);
  return detail::carve_act(kind, rows * n, act, what);
}
}  // namespace

void add_rms_norm(const Stream& s, DeviceView<float, 2> x, DeviceView<const float, 2> dx, DeviceView<const float, 1> w,
                  float eps, DeviceView<float, 2> out, ActQuant q, DeviceView<std::byte, 1> act) {
  const char* what = "cuda::add_rms_norm";
  TESSERA_CHECK((dx.empty() || dx.shape() == x.shape()) && (out.empty() ? q != ActQuant::none : out.shape() == x.shape()),
                what, ": x ", x.shape_str(), ", dx ", dx.shape_str(), ", out ", out.shape_str(),
                " (out may be empty only when the values are quantized)");
  check(w.dim(0) == x.dim(1), what, ": w [", w.dim(0), "] for rows of ", x.dim(1));
  check(x.dim(0) < (int64_t{1} << 31), what, ": ", x.dim(0), " rows exceed one launch's grid");
  if (x.empty()) return;
  const dev::ActOut o = act_out(what, q, x.dim(0), x.dim(1), act);
  const auto grid = static_cast<unsigned>(x.dim(0));
  const float* d = dx.empty() ? nullptr : dx.data();
  float* op = out.empty() ? nullptr : out.data();
  auto go = [&](auto kern) {
    detail::launch_pdl(kern, grid, dev::kFusedThreads, 0, detail::native(s), x.data(), d, w.data(), eps, x.dim(1), op,
                       o);
  };
  switch (q) {
    case ActQuant::none: go(dev::add_rms_norm_kernel<0>); break;
    case ActQuant::q8_0: go(dev::add_rms_norm_kernel<1>); break;
    case ActQuant::q8_1: go(dev::add_rms_norm_kernel<2>); break;
    case ActQuant::q8_K: go(dev::add_rms_norm_kernel<3>); break;
  }
  detail::check_launch(what);
}

void swiglu_quant(const Stream& s, DeviceView<const float, 2> gate, DeviceView<const float, 2> up,
                  DeviceView<float, 2> out, ActQuant q, DeviceView<std::byte, 1> act) {
  const char* what = "cuda::swiglu_quant";
  TESSERA_CHECK(gate.shape() == up.shape() && (out.empty() ? q != ActQuant::none : out.shape() == gate.shape()),
                what, ": gate ", gate.shape_str(), ", up ", up.shape_str(), ", out ", out.shape_str(),
                " (out may be empty only when the values are quantized)");
  if (gate.empty()) return;
  const dev::ActOut o = act_out(what, q, gate.dim(0), gate.dim(1), act);
  const int64_t total = gate.numel();
  const int kind = detail::act_kind(q);
  // Kind 0: a thread per value; otherwise a warp per block of 32 or 256 values.
  const int64_t threads = kind == 0 ? total : kind == 3 ? total / 8 : total;
  const auto grid = static_cast<unsigned>(detail::ceil_div(threads, 256));
  float* op = out.empty() ? nullptr : out.data();
  auto go = [&](auto kern) {
    detail::launch_pdl(kern, grid, 256, 0, detail::native(s), gate.data(), up.data(), op, total, o);
  };
  switch (q) {
    case ActQuant::none: go(dev::swiglu_quant_kernel<0>); break;
    case ActQuant::q8_0: go(dev::swiglu_quant_kernel<1>); break;
    case ActQuant::q8_1: go(dev::swiglu_quant_kernel<2>); break;
    case ActQuant::q8_K: go(dev::swiglu_quant_kernel<3>); break;
  }
  detail::check_launch(what);
}

void rope_kv_store(const Stream& s, DeviceView<float, 3> q, DeviceView<float, 3> k, DeviceView<const float, 3> v,
                   DeviceView<const int32_t, 1> pos, const RopeParams& p, const DeviceKvRows& dst,
                   DeviceView<int32_t, 1> fault) {
  const char* what = "cuda::rope_kv_store";
  const dev::KvDst d = detail::kv_dst(what, k, v, pos, dst, fault);
  const int64_t T = q.dim(0), H = q.dim(1), D = q.dim(2);
  check(T == k.dim(0) && D == k.dim(2), what, ": q ", q.shape_str(), " with k ", k.shape_str());
  check(D <= 32 * dev::kMaxHeadBlocks, what, ": head_dim ", D, " (at most ", 32 * dev::kMaxHeadBlocks, ")");
  check(p.n_dims > 0 && p.n_dims % 2 == 0 && p.n_dims <= D && p.n_dims / 2 <= dev::kMaxRopePairs, what,
        ": n_dims ", p.n_dims, " for head_dim ", D);
  if (T == 0) return;
  const dev::RopeTable t = detail::rope_table(p);
  const int64_t warps = T * (H + 2 * dst.n_kv_heads);
  const auto grid = static_cast<unsigned>(detail::ceil_div(warps, 8));
  auto go = [&]<KvElem E>() {
    detail::launch_pdl(dev::rope_kv_store_kernel<E>, grid, 256, 0, detail::native(s), q.data(), k.data(), v.data(),
                       pos.data(), T, H, t, d, fault.data());
  };
  if (dst.elem == KvElem::f16) go.template operator()<KvElem::f16>();
  else if (dst.elem == KvElem::bf16) go.template operator()<KvElem::bf16>();
  else go.template operator()<KvElem::q8_0>();
  detail::check_launch(what);
}

}  // namespace tessera::cuda
