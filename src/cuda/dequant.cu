// Kernels that dequantize GGUF rows: embedding gather (rows picked by token
// id) and the prefill GEMM, which turns W into bf16 once and then runs one
// tensor-core product (cuBLAS when the build has it; a tiled kernel otherwise).
#include <mutex>

#include "formats.cuh"
#include "split.cuh"
#include "tessera/backend/cuda/ops.hpp"

#if defined(TESSERA_HAVE_CUBLAS)
#include <cublas_v2.h>
#endif

namespace tessera::cuda {
namespace dev {

template <class W>
__global__ void embedding_kernel(const uint8_t* __restrict__ table, int64_t n_vocab, int64_t row_bytes,
                                 const int32_t* __restrict__ ids, int64_t n_embd, float* out) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.y;
  const int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (e >= n_embd) return;
  const int32_t id = ids[t];
  out[t * n_embd + e] = id >= 0 && id < n_vocab ? Fmt<W>::elem(table + id * row_bytes, e) : NAN;
}

// W [n, k] in its format -> bf16 [n, k]; one thread per element.
template <class W>
__global__ void dequant_bf16_kernel(const uint8_t* __restrict__ w, int64_t n, int64_t k, int64_t row_bytes,
                                    uint16_t* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n * k) return;
  out[i] = float_to_bf16_bits(Fmt<W>::elem(w + (i / k) * row_bytes, i % k));
}

// A split matrix -> bf16 [n, k]; one thread per element.
template <GgmlType T>
__global__ void dequant_split_bf16_kernel(SplitW w, int64_t nk, int64_t k, uint16_t* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= nk) return;
  out[i] = float_to_bf16_bits(SplitFmt<T>::elem(w, i / k, i % k));
}

__global__ void f32_to_bf16_kernel(const float* __restrict__ x, int64_t n, uint16_t* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < n) out[i] = float_to_bf16_bits(x[i]);
}

// The portable product y[m, n] = sum_k x[m, k] w[n, k] on bf16 operands: 64x64
// tiles of y per block, 16-wide k steps through shared memory, 4x4 per thread.
__global__ void gemm_tiled_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w, int64_t m,
                                  int64_t n, int64_t k, float* y) {
  __shared__ float xs[16][65], ws[16][65];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = blockIdx.y * int64_t{64}, n0 = blockIdx.x * int64_t{64};
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < k; k0 += 16) {
    for (int i = threadIdx.x; i < 64 * 16; i += 256) {
      const int r = i / 16, c = i % 16;
      xs[c][r] = m0 + r < m && k0 + c < k ? bf16_bits_to_float(x[(m0 + r) * k + k0 + c]) : 0.f;
      ws[c][r] = n0 + r < n && k0 + c < k ? bf16_bits_to_float(w[(n0 + r) * k + k0 + c]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < 16; ++c)
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(xs[c][ty * 4 + i], ws[c][tx * 4 + j], acc[i][j]);
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j)
      if (m0 + ty * 4 + i < m && n0 + tx * 4 + j < n) y[(m0 + ty * 4 + i) * n + n0 + tx * 4 + j] = acc[i][j];
}

}  // namespace dev

template <DeviceWeight W>
void embedding(const Stream& s, DeviceView<const W, 2> table, DeviceView<const int32_t, 1> ids,
               DeviceView<float, 2> out) {
  const int64_t n_embd = table.dim(1) * dev::Fmt<W>::block_elems;
  TESSERA_CHECK(out.dim(0) == ids.dim(0) && out.dim(1) == n_embd, "cuda::embedding (", quant_traits<W>::name, "): ",
                ids.dim(0), " ids into out ", out.shape_str(), " from a table of width ", n_embd);
  check(ids.dim(0) < 65536, "cuda::embedding: ", ids.dim(0), " ids in one call (at most 65535)");
  if (out.empty()) return;
  const dim3 grid(static_cast<unsigned>(detail::ceil_div(n_embd, 256)), static_cast<unsigned>(ids.dim(0)));
  dev::embedding_kernel<W><<<grid, 256, 0, detail::native(s)>>>(reinterpret_cast<const uint8_t*>(table.data()),
                                                                 table.dim(0), table.dim(1) * int64_t{sizeof(W)},
                                                                 ids.data(), n_embd, out.data());
  detail::check_launch("cuda::embedding");
}

size_t gemm_workspace_bytes(int64_t m, int64_t n, int64_t k) {
  return detail::Carver::bytes_for<uint16_t>(n * k) + detail::Carver::bytes_for<uint16_t>(m * k);
}

#if defined(TESSERA_HAVE_CUBLAS)
namespace {
const char* cublas_name(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}
void check_cublas(cublasStatus_t st, const char* call) {
  if (st != CUBLAS_STATUS_SUCCESS) fail("tessera::cuda: ", call, ": ", cublas_name(st), " (", static_cast<int>(st), ")");
}
// One handle per device for the process: creating one costs milliseconds.
cublasHandle_t cublas_handle(int device) {
  static std::mutex mu;
  static cublasHandle_t handles[64] = {};
  std::lock_guard lock(mu);
  check(device >= 0 && device < 64, "cuda::gemm: device ", device);
  if (!handles[device]) check_cublas(cublasCreate(&handles[device]), "cublasCreate");
  return handles[device];
}
}  // namespace
#endif

namespace {
// y = x wb^T with wb [n, k] bf16 already in the workspace's first n*k slots; x rounded to bf16 after it.
void gemm_bf16(const Stream& s, const uint16_t* wb, uint16_t* xb, int64_t n, int64_t k,
               DeviceView<const float, 2> x, DeviceView<float, 2> y) {
  const int64_t m = x.dim(0);
  const gpuStream_t st = detail::native(s);
  dev::f32_to_bf16_kernel<<<static_cast<unsigned>(detail::ceil_div(m * k, 256)), 256, 0, st>>>(x.data(), m * k, xb);
  detail::check_launch("cuda::gemm (to bf16)");
#if defined(TESSERA_HAVE_CUBLAS)
  // Row-major y[m, n] = x w^T is column-major y^T[n, m] = W (k x n, transposed) x^T (k x m).
  cublasHandle_t h = cublas_handle(s.device());
  check_cublas(cublasSetStream(h, st), "cublasSetStream");
  const float one = 1.f, zero = 0.f;
  check_cublas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
                            &one, wb, CUDA_R_16BF, static_cast<int>(k), xb, CUDA_R_16BF, static_cast<int>(k), &zero,
                            y.data(), CUDA_R_32F, static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
#else
  const dim3 grid(static_cast<unsigned>(detail::ceil_div(n, 64)), static_cast<unsigned>(detail::ceil_div(m, 64)));
  dev::gemm_tiled_kernel<<<grid, 256, 0, st>>>(xb, wb, m, n, k, y.data());
  detail::check_launch("cuda::gemm");
#endif
}
}  // namespace

void gemm_split(const Stream& s, const SplitWeight& w, DeviceView<const float, 2> x, DeviceView<float, 2> y,
                DeviceView<std::byte, 1> workspace) {
  const int64_t n = w.n, k = w.k, m = x.dim(0);
  detail::check_split("cuda::gemm_split", w, x, y);
  check(m < INT32_MAX && n < INT32_MAX && k < INT32_MAX, "cuda::gemm_split: extents beyond int32");
  if (y.empty()) return;
  detail::Carver c(workspace, "cuda::gemm_split");
  auto* wb = c.take<uint16_t>(n * k);
  auto* xb = c.take<uint16_t>(m * k);
  const auto grid = static_cast<unsigned>(detail::ceil_div(n * k, 256));
  const dev::SplitW sw = dev::split_w(w);
  const gpuStream_t st = detail::native(s);
  switch (w.type) {
    case GgmlType::q4_0: dev::dequant_split_bf16_kernel<GgmlType::q4_0><<<grid, 256, 0, st>>>(sw, n * k, k, wb); break;
    case GgmlType::q8_0: dev::dequant_split_bf16_kernel<GgmlType::q8_0><<<grid, 256, 0, st>>>(sw, n * k, k, wb); break;
    case GgmlType::q4_K: dev::dequant_split_bf16_kernel<GgmlType::q4_K><<<grid, 256, 0, st>>>(sw, n * k, k, wb); break;
    default: dev::dequant_split_bf16_kernel<GgmlType::q6_K><<<grid, 256, 0, st>>>(sw, n * k, k, wb); break;
  }
  detail::check_launch("cuda::gemm_split (dequantize)");
  gemm_bf16(s, wb, xb, n, k, x, y);
}

template <DeviceWeight W>
void gemm(const Stream& s, DeviceView<const W, 2> w, DeviceView<const float, 2> x, DeviceView<float, 2> y,
          DeviceView<std::byte, 1> workspace) {
  const int64_t n = w.dim(0), k = w.dim(1) * dev::Fmt<W>::block_elems, m = x.dim(0);
  TESSERA_CHECK(x.dim(1) == k && y.dim(0) == m && y.dim(1) == n, "cuda::gemm (", quant_traits<W>::name, "): weight ",
                w.shape_str(), " with x ", x.shape_str(), " into y ", y.shape_str());
  check(m < INT32_MAX && n < INT32_MAX && k < INT32_MAX, "cuda::gemm: extents beyond int32");
  if (y.empty()) return;
  detail::Carver c(workspace, "cuda::gemm");
  auto* wb = c.take<uint16_t>(n * k);
  auto* xb = c.take<uint16_t>(m * k);
  const gpuStream_t st = detail::native(s);
  dev::dequant_bf16_kernel<W><<<static_cast<unsigned>(detail::ceil_div(n * k, 256)), 256, 0, st>>>(
      reinterpret_cast<const uint8_t*>(w.data()), n, k, w.dim(1) * int64_t{sizeof(W)}, wb);
  detail::check_launch("cuda::gemm (dequantize)");
  gemm_bf16(s, wb, xb, n, k, x, y);
}

#define TESSERA_DEQUANT(W)                                                                                    \
  template void embedding<W>(const Stream&, DeviceView<const W, 2>, DeviceView<const int32_t, 1>,             \
                             DeviceView<float, 2>);                                                           \
  template void gemm<W>(const Stream&, DeviceView<const W, 2>, DeviceView<const float, 2>, DeviceView<float, 2>, \
                        DeviceView<std::byte, 1>);
TESSERA_DEVICE_WEIGHTS(TESSERA_DEQUANT)
#undef TESSERA_DEQUANT

}  // namespace tessera::cuda
