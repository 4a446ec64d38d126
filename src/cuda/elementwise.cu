// Row and element kernels of the decode step: rms_norm, layer_norm, rope,
// SwiGLU / GeGLU, residual add, softmax, argmax and top-k. One block per row
// where the row is reduced; one thread per element (or rotated pair) otherwise.
// Sums are float tree reductions (a block's 256 partial sums, then a warp's),
// whose error grows as log2(n) rather than n.
#include <cmath>

#include "common.cuh"
#include "rope.cuh"
#include "tessera/backend/cuda/ops.hpp"

namespace tessera::cuda {
namespace dev {

constexpr int kRowThreads = 256;

__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, float eps, int64_t n,
                                float* out) {
  pdl_launch_dependents();
  pdl_wait();
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * n;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
  ss = block_sum(ss, scratch);
  const float scale = 1.f / sqrtf(ss / static_cast<float>(n) + eps);
  float* o = out + blockIdx.x * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i] * scale * w[i];
}

__global__ void layer_norm_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                  const float* __restrict__ b, float eps, int64_t n, float* out) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * n;
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i];
  const float mean = block_sum(sum, scratch) / static_cast<float>(n);
  float ss = 0.f;  // two passes: the variance of x - mean, not E[x^2] - mean^2, which cancels
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss = fmaf(xr[i] - mean, xr[i] - mean, ss);
  const float scale = 1.f / sqrtf(block_sum(ss, scratch) / static_cast<float>(n) + eps);
  float* o = out + blockIdx.x * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = (xr[i] - mean) * scale * w[i] + (b ? b[i] : 0.f);
}

// One thread per (token, head, pair).
__global__ void rope_kernel(float* x, const int32_t* __restrict__ pos, int64_t n_tokens, int64_t n_heads,
                            int64_t head_dim, RopeTable t) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n_tokens * n_heads * t.half) return;
  const int pair = static_cast<int>(i % t.half);
  const int64_t row = i / t.half, tok = row / n_heads;
  float* h = x + row * head_dim;
  const int ia = t.neox ? pair : 2 * pair, ib = t.neox ? pair + t.half : 2 * pair + 1;
  const float a = rope_elem(t, h, ia, pos[tok]), b = rope_elem(t, h, ib, pos[tok]);
  h[ia] = a;
  h[ib] = b;
}

enum class Gate { silu, gelu };
template <Gate G>
__global__ void gated_kernel(const float* __restrict__ gate, const float* __restrict__ up, float* out, int64_t n) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  float a;
  if constexpr (G == Gate::silu) {
    a = g / (1.f + expf(-g));
  } else {
    a = 0.5f * g * (1.f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
  }
  out[i] = a * up[i];
}

__global__ void add_kernel(const float* __restrict__ a, const float* __restrict__ b, float* out, int64_t n) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

__global__ void softmax_kernel(const float* __restrict__ x, int64_t n, float* out) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * n;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, xr[i]);
  mx = block_max(mx, scratch);
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += expf(xr[i] - mx);
  const float inv = 1.f / block_sum(sum, scratch);
  float* o = out + blockIdx.x * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = expf(xr[i] - mx) * inv;
}

// The total order of argmax and top-k: numbers before NaN, larger first, then lower index.
struct Cand {
  float v;
  int i;
};
__device__ __forceinline__ bool before(Cand a, Cand b) {
  const bool an = isnan(a.v), bn = isnan(b.v);
  if (an != bn) return bn;
  if (!an && a.v != b.v) return a.v > b.v;
  return a.i < b.i;
}
__device__ __forceinline__ Cand warp_best(Cand c) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Cand other{shfl_xor(c.v, o), shfl_xor(c.i, o)};
    if (before(other, c)) c = other;
  }
  return c;
}
// Best candidate over the block; every thread gets it.
__device__ __forceinline__ Cand block_best(Cand c, Cand* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  c = warp_best(c);
  if (lane == 0) scratch[warp] = c;
  __syncthreads();
  c = lane < static_cast<int>(blockDim.x / 32) ? scratch[lane] : Cand{NAN, INT32_MAX};
  c = warp_best(c);
  __syncthreads();
  return c;
}

// Pass p of top-k finds the best element ordered after the previous winner, so
// nothing needs marking: k passes over the row (it stays in L2 between them).
__global__ void top_k_kernel(const float* __restrict__ x, int64_t n, int k, int32_t* idx, float* val) {
  __shared__ Cand scratch[32];
  const float* xr = x + blockIdx.x * n;
  Cand prev{INFINITY, -1};
  bool first = true;
  for (int p = 0; p < k; ++p) {
    Cand best{NAN, INT32_MAX};
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const Cand c{xr[i], static_cast<int>(i)};
      if ((first || before(prev, c)) && before(c, best)) best = c;
    }
    best = block_best(best, scratch);
    if (threadIdx.x == 0) {
      idx[blockIdx.x * int64_t{k} + p] = best.i == INT32_MAX ? -1 : best.i;
      val[blockIdx.x * int64_t{k} + p] = best.v;
    }
    prev = best;
    first = false;
  }
}

__global__ void argmax_kernel(const float* __restrict__ x, int64_t n, int32_t* out) {
  pdl_launch_dependents();
  pdl_wait();
  __shared__ Cand scratch[32];
  const float* xr = x + blockIdx.x * n;
  Cand best{NAN, INT32_MAX};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const Cand c{xr[i], static_cast<int>(i)};
    if (before(c, best)) best = c;
  }
  best = block_best(best, scratch);
  // All NaN: index 0, as the CPU's argmax_last.
  if (threadIdx.x == 0) out[blockIdx.x] = isnan(best.v) || best.i == INT32_MAX ? 0 : best.i;
}

}  // namespace dev

namespace {
void check_rows(const char* what, const DeviceView<const float, 2>& x, const DeviceView<float, 2>& out) {
  TESSERA_CHECK(x.shape() == out.shape(), what, ": x ", x.shape_str(), " but out ", out.shape_str());
}
unsigned grid_for(int64_t n, int threads) { return static_cast<unsigned>(detail::ceil_div(n, threads)); }
unsigned rows_grid(int64_t rows) {
  check(rows < (int64_t{1} << 31), "cuda: ", rows, " rows exceed one launch's grid");
  return static_cast<unsigned>(rows);
}
}  // namespace

void rms_norm(const Stream& s, DeviceView<const float, 2> x, DeviceView<const float, 1> w, float eps,
              DeviceView<float, 2> out) {
  check_rows("cuda::rms_norm", x, out);
  check(w.dim(0) == x.dim(1), "cuda::rms_norm: w [", w.dim(0), "] for rows of ", x.dim(1));
  if (x.empty()) return;
  detail::launch_pdl(dev::rms_norm_kernel, rows_grid(x.dim(0)), dev::kRowThreads, 0, detail::native(s), x.data(),
                     w.data(), eps, x.dim(1), out.data());
  detail::check_launch("cuda::rms_norm");
}

void layer_norm(const Stream& s, DeviceView<const float, 2> x, DeviceView<const float, 1> w,
                DeviceView<const float, 1> b, float eps, DeviceView<float, 2> out) {
  check_rows("cuda::layer_norm", x, out);
  check(w.dim(0) == x.dim(1) && (b.empty() || b.dim(0) == x.dim(1)), "cuda::layer_norm: w [", w.dim(0), "], b [",
        b.dim(0), "] for rows of ", x.dim(1));
  if (x.empty()) return;
  dev::layer_norm_kernel<<<rows_grid(x.dim(0)), dev::kRowThreads, 0, detail::native(s)>>>(
      x.data(), w.data(), b.empty() ? nullptr : b.data(), eps, x.dim(1), out.data());
  detail::check_launch("cuda::layer_norm");
}

void rope(const Stream& s, DeviceView<float, 3> x, DeviceView<const int32_t, 1> pos, const RopeParams& p) {
  check(x.dim(0) == pos.dim(0), "cuda::rope: x ", x.shape_str(), " with ", pos.dim(0), " positions");
  check(p.n_dims > 0 && p.n_dims % 2 == 0 && p.n_dims <= x.dim(2) && p.n_dims / 2 <= dev::kMaxRopePairs,
        "cuda::rope: n_dims ", p.n_dims, " for head_dim ", x.dim(2));
  const dev::RopeTable t = detail::rope_table(p);
  const int64_t n = x.dim(0) * x.dim(1) * t.half;
  if (n == 0) return;
  detail::launch_pdl(dev::rope_kernel, grid_for(n, 256), 256, 0, detail::native(s), x.data(), pos.data(), x.dim(0),
                     x.dim(1), x.dim(2), t);
  detail::check_launch("cuda::rope");
}

namespace {
template <dev::Gate G>
void gated(const char* what, const Stream& s, DeviceView<const float, 2> gate, DeviceView<const float, 2> up,
           DeviceView<float, 2> out) {
  TESSERA_CHECK(gate.shape() == up.shape() && up.shape() == out.shape(), what, ": gate ", gate.shape_str(), ", up ",
                up.shape_str(), ", out ", out.shape_str());
  if (out.empty()) return;
  detail::launch_pdl(dev::gated_kernel<G>, grid_for(out.numel(), 256), 256, 0, detail::native(s), gate.data(),
                     up.data(), out.data(), out.numel());
  detail::check_launch(what);
}
}  // namespace

void swiglu(const Stream& s, DeviceView<const float, 2> gate, DeviceView<const float, 2> up, DeviceView<float, 2> out) {
  gated<dev::Gate::silu>("cuda::swiglu", s, gate, up, out);
}
void geglu(const Stream& s, DeviceView<const float, 2> gate, DeviceView<const float, 2> up, DeviceView<float, 2> out) {
  gated<dev::Gate::gelu>("cuda::geglu", s, gate, up, out);
}

void add(const Stream& s, DeviceView<const float, 2> a, DeviceView<const float, 2> b, DeviceView<float, 2> out) {
  TESSERA_CHECK(a.shape() == b.shape() && b.shape() == out.shape(), "cuda::add: a ", a.shape_str(), ", b ",
                b.shape_str(), ", out ", out.shape_str());
  if (out.empty()) return;
  detail::launch_pdl(dev::add_kernel, grid_for(out.numel(), 256), 256, 0, detail::native(s), a.data(), b.data(),
                     out.data(), out.numel());
  detail::check_launch("cuda::add");
}

void softmax(const Stream& s, DeviceView<const float, 2> x, DeviceView<float, 2> out) {
  check_rows("cuda::softmax", x, out);
  if (x.empty()) return;
  dev::softmax_kernel<<<rows_grid(x.dim(0)), dev::kRowThreads, 0, detail::native(s)>>>(x.data(), x.dim(1),
                                                                                        out.data());
  detail::check_launch("cuda::softmax");
}

void argmax(const Stream& s, DeviceView<const float, 2> x, DeviceView<int32_t, 1> out) {
  check(out.dim(0) == x.dim(0), "cuda::argmax: x ", x.shape_str(), " into out ", out.shape_str());
  check(x.dim(1) < INT32_MAX, "cuda::argmax: rows of ", x.dim(1), " exceed int32 indices");
  if (x.dim(0) == 0) return;
  detail::launch_pdl(dev::argmax_kernel, rows_grid(x.dim(0)), dev::kRowThreads, 0, detail::native(s), x.data(),
                     x.dim(1), out.data());
  detail::check_launch("cuda::argmax");
}

void top_k(const Stream& s, DeviceView<const float, 2> x, DeviceView<int32_t, 2> idx, DeviceView<float, 2> val) {
  const int64_t k = idx.dim(1);
  TESSERA_CHECK(idx.shape() == val.shape() && idx.dim(0) == x.dim(0) && k >= 1 && k <= 64 && k <= x.dim(1),
                "cuda::top_k: x ", x.shape_str(), " into idx ", idx.shape_str(), ", val ", val.shape_str(),
                " (1 <= k <= min(64, n))");
  if (x.dim(0) == 0) return;
  dev::top_k_kernel<<<rows_grid(x.dim(0)), dev::kRowThreads, 0, detail::native(s)>>>(x.data(), x.dim(1),
                                                                                       static_cast<int>(k), idx.data(),
                                                                                       val.data());
  detail::check_launch("cuda::top_k");
}

}  // namespace tessera::cuda
