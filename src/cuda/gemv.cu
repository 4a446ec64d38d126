// Decode GEMV y = W x over GGUF weights, and the activation quantizer it uses.
// Each block of 8 warps owns 8 weight rows; it streams them through shared
// memory in slices of at most 4 KB per row with 16-byte asynchronous copies
// (so every format, whatever its block size, reads memory in full coalesced
// lines), then each warp reduces one row with integer dot products (dp4a)
// against the 8-bit activations, or float ones for f32/f16/bf16 weights.
#include <algorithm>
#include <numeric>

#include "act_quant.cuh"
#include "async_copy.cuh"
#include "formats.cuh"
#include "split.cuh"
#include "tessera/backend/cuda/ops.hpp"

namespace tessera::cuda {
namespace dev {

// One warp per 32 values (kind 1: q8_0, 2: q8_1).
template <int Kind>
__global__ void quantize32_kernel(const float* __restrict__ x, int64_t n_blocks, ActOut o) {
  pdl_launch_dependents();
  pdl_wait();  // x comes from the kernel before; the outputs may still be read by the one before that
  const int64_t blk = blockIdx.x * int64_t{8} + threadIdx.x / 32;
  if (blk >= n_blocks) return;
  const int lane = threadIdx.x % 32;
  quantize32_warp<Kind>(x[blk * 32 + lane], blk, lane, o);
}

// One warp per 256 values (q8_K): lane l holds values 8l .. 8l+7.
__global__ void quantize256_kernel(const float* __restrict__ x, int64_t n_blocks, ActOut o) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t blk = blockIdx.x * int64_t{8} + threadIdx.x / 32;
  if (blk >= n_blocks) return;
  const int lane = threadIdx.x % 32;
  const float4* p = reinterpret_cast<const float4*>(x + blk * 256 + lane * 8);
  const float4 a = p[0], b = p[1];
  const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
  quantize256_warp(v, blk, lane, o);
}

// One row per warp measured faster than two rows sharing activation loads
// (f32: 0.87 against 0.69 of copy bandwidth; see docs/cuda.md), so R = 1.
constexpr int kWarps = 8, kRowsPerWarp = 1, kRowsPerBlock = kWarps * kRowsPerWarp;

// Each warp owns kRowsPerWarp rows and streams them through two shared-memory
// slices each (copy slice s+1 while reducing slice s); warps never wait for
// each other. Rows of one warp share every activation load.
template <class W, int M>
__global__ void __launch_bounds__(256) gemv_kernel(const uint8_t* __restrict__ w, int64_t n_rows, int64_t row_bytes,
                                                   int64_t unit_bytes, int64_t units_per_slice, int width, Act a,
                                                   int64_t k, int m, float* __restrict__ y) {
  pdl_launch_dependents();
  pdl_wait();
  using F = Fmt<W>;
  constexpr int R = kRowsPerWarp;
  constexpr int64_t unit_elems = F::block_elems > F::item_elems ? F::block_elems : F::item_elems;
  constexpr int64_t items_per_unit = unit_elems / F::item_elems;
  extern __shared__ __align__(16) uint8_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row0 = (blockIdx.x * int64_t{kWarps} + warp) * R;
  if (row0 >= n_rows) return;  // no block-wide barrier below
  const int rows_here = static_cast<int>(min64(R, n_rows - row0));
  const int64_t slice_bytes = units_per_slice * unit_bytes, pitch = (slice_bytes + 15) / 16 * 16;
  uint8_t* bufs = smem + warp * 2 * R * pitch;  // [slice parity][row][pitch]
  const int64_t units = row_bytes / unit_bytes;
  const int64_t n_slices = (units + units_per_slice - 1) / units_per_slice;
  auto issue = [&](int64_t sl) {
    const int64_t b0 = sl * slice_bytes, bytes = min64(slice_bytes, row_bytes - b0);
    for (int r = 0; r < rows_here; ++r) {
      uint8_t* dst = bufs + ((sl & 1) * R + r) * pitch;
      const uint8_t* src = w + (row0 + r) * row_bytes + b0;
      for (int64_t off = lane * width; off < bytes; off += 32 * width) copy_async_any(width, dst + off, src + off);
    }
    copy_async_commit();
  };
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int j = 0; j < M; ++j) acc[r][j] = 0.f;
  issue(0);
  for (int64_t sl = 0; sl < n_slices; ++sl) {
    if (sl + 1 < n_slices) {
      issue(sl + 1);
      copy_async_wait<1>();
    } else {
      copy_async_wait<0>();
    }
    warp_sync();  // every lane's copies are in shared memory
    const int64_t u0 = sl * units_per_slice, e0 = u0 * unit_elems;
    Act as = a;
    as.qs = a.qs ? a.qs + e0 : nullptr;
    as.xf = a.xf ? a.xf + e0 : nullptr;
    as.d = a.d ? a.d + e0 / (F::act == 3 ? 256 : 32) : nullptr;
    as.s = a.s ? a.s + e0 / 32 : nullptr;
    as.bsum = a.bsum ? a.bsum + e0 / (F::act == 3 ? 16 : 32) : nullptr;
    const int64_t n_items = min64(units_per_slice, units - u0) * items_per_unit;
    const uint8_t* rows[R];
#pragma unroll
    for (int r = 0; r < R; ++r) rows[r] = bufs + ((sl & 1) * R + (r < rows_here ? r : 0)) * pitch;  // a missing row repeats row 0
#pragma unroll 2
    for (int64_t it = lane; it < n_items; it += 32) F::template item_dot<M, R>(rows, it, &as, k, m, acc);
    warp_sync();  // the slice is read before issue(sl + 2) overwrites it
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int j = 0; j < M; ++j) {
      if (j >= m) continue;
      const float v = warp_sum(acc[r][j]);
      if (lane == 0 && r < rows_here) y[j * n_rows + row0 + r] = v;
    }
}

// Split layout: each warp owns a run of consecutive rows and walks them in
// steps of 32 * U sub-blocks (lane l takes sub-blocks l, l + 32, ...). The
// loads of step s + 1 are issued before step s is used (two register sets),
// so a warp always has U sub-blocks per lane in flight, across row ends too;
// the grid holds every warp at once (sized from the occupancy), so nothing
// waits for a block to retire. The weights do not depend on earlier kernels:
// the first step is loaded before pdl_wait, overlapping the quantizer.
constexpr int kSplitWarps = 8;
template <GgmlType T>
__host__ __device__ constexpr int split_unroll() { return T == GgmlType::q8_0 ? 2 : 4; }

template <GgmlType T, int M>
__global__ void __launch_bounds__(32 * kSplitWarps)
    gemv_split_kernel(SplitW w, int64_t n, int rows_per_warp, Act a, int64_t k, int m, float* __restrict__ y) {
  using F = SplitFmt<T>;
  using Regs = typename F::Regs;
  constexpr int U = split_unroll<T>();
  pdl_launch_dependents();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row0 = (blockIdx.x * int64_t{kSplitWarps} + warp) * rows_per_warp;
  const int64_t rows = n - row0 < rows_per_warp ? n - row0 : rows_per_warp;
  const int nb = static_cast<int>(w.nb), spr = (nb + 32 * U - 1) / (32 * U);  // steps per row
  const int64_t total = rows > 0 ? rows * spr : 0;
  Regs ra[U] = {}, rb[U] = {};
  int64_t lrow = row0, urow = row0;  // the rows of the next load and of the next use
  int lst = 0, ust = 0;              // their steps inside the row
  auto load = [&](Regs(&r)[U]) {
    const int b0 = lst * 32 * U + lane;
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (b0 + 32 * u < nb) F::load(w, lrow, b0 + 32 * u, r[u]);
    if (++lst == spr) lst = 0, ++lrow;
  };
  float acc[M];
#pragma unroll
  for (int j = 0; j < M; ++j) acc[j] = 0.f;
  auto use = [&](const Regs(&r)[U]) {
    const int b0 = ust * 32 * U + lane;
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (b0 + 32 * u < nb) F::template dot<M>(r[u], b0 + 32 * u, a, k, m, acc);
    if (++ust == spr) {
#pragma unroll
      for (int j = 0; j < M; ++j) {
        if (j >= m) continue;
        const float v = warp_sum(acc[j]);
        if (lane == 0) y[j * n + urow] = v;
        acc[j] = 0.f;
      }
      ust = 0, ++urow;
    }
  };
  if (total > 0) load(ra);
  pdl_wait();  // the activations (and y) belong to the kernels before
  for (int64_t s = 0; s < total; s += 2) {
    if (s + 1 < total) load(rb);
    use(ra);
    if (s + 1 >= total) break;
    if (s + 2 < total) load(ra);
    use(rb);
  }
}

}  // namespace dev

namespace {

template <class W>
constexpr int act_kind() { return dev::Fmt<W>::act; }

// Quantizes x [m, k] into the workspace (or, when x_quantized, finds what a
// fused kernel already put there); returns where each piece is.
dev::Act quantize_act(const Stream& s, int kind, const float* x, int64_t mk, DeviceView<std::byte, 1> ws,
                      bool x_quantized) {
  const dev::ActOut o = detail::carve_act(kind, mk, ws, "cuda::gemv");
  if (x_quantized) return dev::act_of(o);
  const gpuStream_t st = detail::native(s);
  const int64_t nb = mk / (kind == 3 ? 256 : 32);
  const auto grid = static_cast<unsigned>(detail::ceil_div(nb, 8));
  if (kind == 3) detail::launch_pdl(dev::quantize256_kernel, grid, 256, 0, st, x, nb, o);
  else if (kind == 2) detail::launch_pdl(dev::quantize32_kernel<2>, grid, 256, 0, st, x, nb, o);
  else detail::launch_pdl(dev::quantize32_kernel<1>, grid, 256, 0, st, x, nb, o);
  detail::check_launch("quantize activations");
  return dev::act_of(o);
}

}  // namespace

template <DeviceWeight W>
size_t gemv_workspace_bytes(int64_t k) {
  constexpr int kind = act_kind<W>();
  return act_quant_bytes(static_cast<ActQuant>(kind), k);
}

size_t act_quant_bytes(ActQuant q, int64_t mk) {
  const int kind = detail::act_kind(q);
  if (kind == 0) return 0;
  using C = detail::Carver;
  return C::bytes_for<int8_t>(mk) + C::bytes_for<float>(mk / 32) * (kind == 2 ? 2 : 1) +
         C::bytes_for<int16_t>(kind == 3 ? mk / 16 : mk / 32);
}

ActQuant act_quant(GgmlType t) {
  switch (t) {
    case GgmlType::f32: case GgmlType::f16: case GgmlType::bf16: return ActQuant::none;
    case GgmlType::q8_0: case GgmlType::q4_0: case GgmlType::q5_0: return ActQuant::q8_0;
    case GgmlType::q4_1: case GgmlType::q5_1: return ActQuant::q8_1;
    case GgmlType::q4_K: case GgmlType::q6_K: return ActQuant::q8_K;
    default: fail("cuda::act_quant: no GPU GEMV for ", type_info(static_cast<uint32_t>(t)).name);
  }
}

template <DeviceWeight W>
void gemv(const Stream& s, DeviceView<const W, 2> w, DeviceView<const float, 2> x, DeviceView<float, 2> y,
          DeviceView<std::byte, 1> workspace, bool x_quantized) {
  using F = dev::Fmt<W>;
  const int64_t n = w.dim(0), k = w.dim(1) * F::block_elems, m = x.dim(0);
  TESSERA_CHECK(x.dim(1) == k && y.dim(0) == m && y.dim(1) == n, "cuda::gemv (", quant_traits<W>::name, "): weight ",
                w.shape_str(), " with x ", x.shape_str(), " into y ", y.shape_str());
  check(m >= 1 && m <= 8, "cuda::gemv: ", m, " vectors (1 to 8 supported; use gemm for more)");
  check(k % F::item_elems == 0, "cuda::gemv (", quant_traits<W>::name, "): K = ", k, " is not a multiple of ",
        F::item_elems);
  if (n == 0) return;
  dev::Act a{};
  a.xf = x.data();
  if constexpr (F::act != 0) a = quantize_act(s, F::act, x.data(), m * k, workspace, x_quantized);

  // Slices of whole "units" (the larger of a block and an item), about 2 KB
  // a row (two per row in flight), copied in the widest pieces that the row
  // length allows.
  const int64_t unit_elems = std::max<int64_t>(F::block_elems, F::item_elems);
  const int64_t unit_bytes = unit_elems / F::block_elems * F::block_bytes;
  const int64_t row_bytes = w.dim(1) * static_cast<int64_t>(sizeof(W));
  const int width = dev::copy_width(static_cast<uint64_t>(row_bytes));
  const int64_t align_units = width / std::gcd<int64_t>(unit_bytes, width);
  int64_t per_slice = std::max<int64_t>(1, 2048 / unit_bytes) / align_units * align_units;
  per_slice = std::min(std::max(per_slice, align_units), row_bytes / unit_bytes);
  const int64_t pitch = (per_slice * unit_bytes + 15) / 16 * 16;
  const auto smem = static_cast<size_t>(2 * pitch * dev::kRowsPerBlock);  // two slices per row
  const auto grid = static_cast<unsigned>(detail::ceil_div(n, dev::kRowsPerBlock));
  const auto* wp = reinterpret_cast<const uint8_t*>(w.data());
  if (smem > 48 * 1024) {  // above the default limit a kernel must ask for its shared memory
    auto* k1 = dev::gemv_kernel<W, 1>;
    auto* k8 = dev::gemv_kernel<W, 8>;
    detail::check_gpu(gpuFuncSetAttribute(k1, gpuFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
                      "cudaFuncSetAttribute (gemv)");
    detail::check_gpu(gpuFuncSetAttribute(k8, gpuFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
                      "cudaFuncSetAttribute (gemv)");
  }
  if (m == 1)
    dev::gemv_kernel<W, 1><<<grid, 256, smem, detail::native(s)>>>(wp, n, row_bytes, unit_bytes, per_slice, width, a,
                                                                    k, 1, y.data());
  else
    dev::gemv_kernel<W, 8><<<grid, 256, smem, detail::native(s)>>>(wp, n, row_bytes, unit_bytes, per_slice, width, a,
                                                                    k, static_cast<int>(m), y.data());
  detail::check_launch("cuda::gemv");
}

namespace {
// The split kernel over every row: each warp a run of rows_per_warp rows, the
// grid no larger than what the device holds at once.
template <GgmlType T, int M>
void launch_split(const Stream& s, const SplitWeight& w, const dev::Act& a, int m, float* y) {
  auto* kern = dev::gemv_split_kernel<T, M>;
  constexpr int threads = 32 * dev::kSplitWarps;
  static const int per_sm = [&] {
    int b = 0;
    detail::check_gpu(gpuOccupancyMaxActiveBlocksPerMultiprocessor(&b, kern, threads, 0), "cudaOccupancy (gemv_split)");
    return std::max(b, 1);
  }();
  const int64_t max_warps = int64_t{detail::sm_count(s.device())} * per_sm * dev::kSplitWarps;
  const int64_t rows_per_warp = detail::ceil_div(w.n, max_warps);
  const int64_t warps = detail::ceil_div(w.n, rows_per_warp);
  detail::launch_pdl(kern, static_cast<unsigned>(detail::ceil_div(warps, dev::kSplitWarps)), threads, 0,
                     detail::native(s), dev::split_w(w), w.n, static_cast<int>(rows_per_warp), a, w.k, m, y);
}
}  // namespace

void gemv_split(const Stream& s, const SplitWeight& w, DeviceView<const float, 2> x, DeviceView<float, 2> y,
                DeviceView<std::byte, 1> workspace, bool x_quantized) {
  const int64_t n = w.n, k = w.k, m = x.dim(0);
  detail::check_split("cuda::gemv_split", w, x, y);
  check(m >= 1 && m <= 8, "cuda::gemv_split: ", m, " vectors (1 to 8 supported; use gemm_split for more)");
  if (n == 0) return;
  const bool kq = w.type == GgmlType::q4_K || w.type == GgmlType::q6_K;
  const dev::Act a = quantize_act(s, kq ? 3 : 1, x.data(), m * k, workspace, x_quantized);
  auto go = [&]<GgmlType T>() {
    if (m == 1) launch_split<T, 1>(s, w, a, 1, y.data());
    else launch_split<T, 8>(s, w, a, static_cast<int>(m), y.data());
  };
  switch (w.type) {
    case GgmlType::q4_0: go.template operator()<GgmlType::q4_0>(); break;
    case GgmlType::q8_0: go.template operator()<GgmlType::q8_0>(); break;
    case GgmlType::q4_K: go.template operator()<GgmlType::q4_K>(); break;
    default: go.template operator()<GgmlType::q6_K>(); break;
  }
  detail::check_launch("cuda::gemv_split");
}

#define TESSERA_GEMV(W)                                                                                      \
  template size_t gemv_workspace_bytes<W>(int64_t);                                                          \
  template void gemv<W>(const Stream&, DeviceView<const W, 2>, DeviceView<const float, 2>, DeviceView<float, 2>, \
                        DeviceView<std::byte, 1>, bool);
TESSERA_DEVICE_WEIGHTS(TESSERA_GEMV)
#undef TESSERA_GEMV

}  // namespace tessera::cuda
