// Helpers every kernel file shares: runtime-error checks that become
// tessera::Error, 16-bit float conversions from raw bits, warp and block
// reductions, and the launch-size arithmetic.
#pragma once

#include <cstdint>
#include <cstring>

#include "compat.cuh"
#include "tessera/backend/cuda/buffer.hpp"
#include "tessera/core/error.hpp"

namespace tessera::cuda::detail {

/// Throws Error "<call>: <runtime's message> (code N)" unless e is success.
inline void check_gpu(gpuError_t e, const char* call) {
  if (e != gpuSuccess) [[unlikely]]
    fail("tessera::cuda: ", call, ": ", gpuGetErrorString(e), " (code ", static_cast<int>(e), ")");
}
/// After a launch: a bad configuration shows up here, a fault in the kernel at the next synchronize.
inline void check_launch(const char* kernel) { check_gpu(gpuGetLastError(), kernel); }

inline gpuStream_t native(const Stream& s) { return static_cast<gpuStream_t>(s.native()); }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// device_info(device), read once per device (launches size grids from it).
const DeviceInfo& cached_info(int device);
/// The device's multiprocessor count (cached).
int sm_count(int device);

/// Programmatic dependent launch (the next kernel's blocks start while this
/// one drains, then wait on the device) is off: measured on the H200, 7B
/// decode in a CUDA graph, it cost 6% on Q4_0 (322 against 342 tokens/s) and
/// 14% on Q8_0 (250 against 291): the early blocks hold multiprocessor slots
/// the occupancy-sized GEMV grid needs.  dev::pdl_wait is a no-op without it.
inline constexpr bool kProgrammaticLaunch = false;

/// kernel<<<grid, block, smem, st>>>(args...), with programmatic stream
/// serialization allowed when kProgrammaticLaunch (the kernel calls
/// dev::pdl_wait before touching what earlier kernels write); otherwise, and on HIP, a plain launch.
/// A launch error is a tessera::Error either way.
template <class... P, class... A>
void launch_pdl(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, gpuStream_t st, A&&... args) {
#if !defined(TESSERA_HIP_BACKEND)
  if constexpr (kProgrammaticLaunch) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    check_gpu(cudaLaunchKernelEx(&cfg, kernel, static_cast<P>(args)...), "cudaLaunchKernelEx");
    return;
  }
#endif
  kernel<<<grid, block, smem, st>>>(static_cast<P>(args)...);
  check_launch("kernel launch");
}

/// Carves typed pieces out of a byte workspace, 256-byte aligned, with a clear
/// error when the caller passed too little.
class Carver {
 public:
  Carver(DeviceView<std::byte, 1> ws, const char* what) : ws_(ws), what_(what) {}
  template <class T>
  T* take(int64_t n) {
    const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 255) / 256 * 256;
    TESSERA_CHECK(used_ + bytes <= static_cast<size_t>(ws_.numel()), what_, ": workspace of ", ws_.numel(),
                  " bytes is too small (needs at least ", used_ + bytes, ")");
    T* p = reinterpret_cast<T*>(ws_.data() + used_);
    used_ += bytes;
    return p;
  }
  /// Bytes that n elements of T take in a workspace (the _workspace_bytes functions use it).
  template <class T>
  static size_t bytes_for(int64_t n) { return (static_cast<size_t>(n) * sizeof(T) + 255) / 256 * 256; }

 private:
  DeviceView<std::byte, 1> ws_;
  const char* what_;
  size_t used_ = 0;
};

}  // namespace tessera::cuda::detail

namespace tessera::cuda::dev {

__device__ __forceinline__ float f16_bits_to_float(uint16_t b) { return __half2float(__ushort_as_half(b)); }
__device__ __forceinline__ uint16_t float_to_f16_bits(float f) { return __half_as_ushort(__float2half_rn(f)); }
__device__ __forceinline__ float bf16_bits_to_float(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }
// Round to nearest even, NaN kept quiet: the same bits as tessera::bf16(float).
__device__ __forceinline__ uint16_t float_to_bf16_bits(float f) {
  const uint32_t x = __float_as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/// Loads of 16 and 32 bits from quant blocks, whose fields sit at even byte
/// offsets (every GGUF block size is even and rows start at even addresses).
__device__ __forceinline__ uint16_t load_u16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }
__device__ __forceinline__ int load_i32_2aligned(const uint8_t* p) {
  const auto* h = reinterpret_cast<const uint16_t*>(p);
  return static_cast<int>(h[0] | (static_cast<uint32_t>(h[1]) << 16));
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += shfl_xor(v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, shfl_xor(v, o));
  return v;
}

/// Sum (Max = false) or max (Max = true) over the block (blockDim.x a multiple
/// of 32, at most 1024); every thread gets it. scratch: 32 floats of shared
/// memory. Ends with a barrier so scratch can be reused.
template <bool Max>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  v = Max ? warp_max(v) : warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < n_warps ? scratch[lane] : (Max ? -INFINITY : 0.f);
  v = Max ? warp_max(v) : warp_sum(v);
  __syncthreads();
  return v;
}
__device__ __forceinline__ float block_sum(float v, float* scratch) { return block_reduce<false>(v, scratch); }
__device__ __forceinline__ float block_max(float v, float* scratch) { return block_reduce<true>(v, scratch); }

}  // namespace tessera::cuda::dev
