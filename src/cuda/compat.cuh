// The one portability header: CUDA and HIP spell the runtime, warp and a few
// intrinsic names differently; everything in src/cuda uses the names below.
// Warps are 32 lanes here: on AMD's 64-wide waves the shuffles take width 32,
// so each half-wave is one logical warp and the kernels need not change.
#pragma once

#if defined(__HIP_PLATFORM_AMD__) || defined(__HIPCC__)
#define TESSERA_HIP_BACKEND 1
#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>

using gpuError_t = hipError_t;
using gpuStream_t = hipStream_t;
using gpuEvent_t = hipEvent_t;
using gpuDeviceProp = hipDeviceProp_t;
#define gpuSuccess hipSuccess
#define gpuErrorMemoryAllocation hipErrorOutOfMemory
#define gpuGetErrorString hipGetErrorString
#define gpuGetLastError hipGetLastError
#define gpuGetDeviceCount hipGetDeviceCount
#define gpuGetDeviceProperties hipGetDeviceProperties
#define gpuSetDevice hipSetDevice
#define gpuMalloc hipMalloc
#define gpuFree hipFree
#define gpuMemcpyAsync hipMemcpyAsync
#define gpuMemsetAsync hipMemsetAsync
#define gpuMemcpyHostToDevice hipMemcpyHostToDevice
#define gpuMemcpyDeviceToHost hipMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define gpuStreamCreateWithFlags hipStreamCreateWithFlags
#define gpuStreamNonBlocking hipStreamNonBlocking
#define gpuStreamDestroy hipStreamDestroy
#define gpuStreamSynchronize hipStreamSynchronize
#define gpuEventCreate hipEventCreate
#define gpuEventDestroy hipEventDestroy
#define gpuEventRecord hipEventRecord
#define gpuEventSynchronize hipEventSynchronize
#define gpuEventElapsedTime hipEventElapsedTime
#define gpuFuncSetAttribute(f, a, v) hipFuncSetAttribute(reinterpret_cast<const void*>(f), a, v)
#define gpuFuncAttributeMaxDynamicSharedMemorySize hipFuncAttributeMaxDynamicSharedMemorySize
#define gpuSmemOptin(prop) (prop).sharedMemPerBlock
#define gpuMemGetInfo hipMemGetInfo
#define gpuMallocHost(p, n) hipHostMalloc(p, n, 0)
#define gpuFreeHost hipHostFree
#define gpuStreamBeginCapture(s) hipStreamBeginCapture(s, hipStreamCaptureModeThreadLocal)
#define gpuStreamEndCapture hipStreamEndCapture
#define gpuGraphInstantiate(exec, g) hipGraphInstantiate(exec, g, nullptr, nullptr, 0)
#define gpuGraphLaunch hipGraphLaunch
#define gpuGraphDestroy hipGraphDestroy
#define gpuGraphExecDestroy hipGraphExecDestroy
#define gpuOccupancyMaxActiveBlocksPerMultiprocessor hipOccupancyMaxActiveBlocksPerMultiprocessor
using gpuGraph_t = hipGraph_t;
using gpuGraphExec_t = hipGraphExec_t;

namespace tessera::cuda::dev {
template <class T>
__device__ __forceinline__ T shfl_xor(T v, int lane_mask) { return __shfl_xor(v, lane_mask, 32); }
template <class T>
__device__ __forceinline__ T shfl(T v, int src_lane) { return __shfl(v, src_lane, 32); }
__device__ __forceinline__ void warp_sync() {}
// Signed 8-bit dot of four lanes plus c; gfx9 has v_dot4 but the plain form is
// what every target compiles (the HIP build is compile-checked, not tuned).
__device__ __forceinline__ int dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i) c += static_cast<signed char>(a >> (8 * i)) * static_cast<signed char>(b >> (8 * i));
  return c;
}
}  // namespace tessera::cuda::dev

#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

using gpuError_t = cudaError_t;
using gpuStream_t = cudaStream_t;
using gpuEvent_t = cudaEvent_t;
using gpuGraph_t = cudaGraph_t;
using gpuGraphExec_t = cudaGraphExec_t;
using gpuDeviceProp = cudaDeviceProp;
#define gpuSuccess cudaSuccess
#define gpuErrorMemoryAllocation cudaErrorMemoryAllocation
#define gpuGetErrorString cudaGetErrorString
#define gpuGetLastError cudaGetLastError
#define gpuGetDeviceCount cudaGetDeviceCount
#define gpuGetDeviceProperties cudaGetDeviceProperties
#define gpuSetDevice cudaSetDevice
#define gpuMalloc cudaMalloc
#define gpuFree cudaFree
#define gpuMemcpyAsync cudaMemcpyAsync
#define gpuMemsetAsync cudaMemsetAsync
#define gpuMemcpyHostToDevice cudaMemcpyHostToDevice
#define gpuMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define gpuStreamCreateWithFlags cudaStreamCreateWithFlags
#define gpuStreamNonBlocking cudaStreamNonBlocking
#define gpuStreamDestroy cudaStreamDestroy
#define gpuStreamSynchronize cudaStreamSynchronize
#define gpuEventCreate cudaEventCreate
#define gpuEventDestroy cudaEventDestroy
#define gpuEventRecord cudaEventRecord
#define gpuEventSynchronize cudaEventSynchronize
#define gpuEventElapsedTime cudaEventElapsedTime
#define gpuFuncSetAttribute(f, a, v) cudaFuncSetAttribute(f, a, v)
#define gpuFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize
#define gpuSmemOptin(prop) (prop).sharedMemPerBlockOptin
#define gpuMemGetInfo cudaMemGetInfo
#define gpuMallocHost(p, n) cudaMallocHost(p, n)
#define gpuFreeHost cudaFreeHost
#define gpuStreamBeginCapture(s) cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal)
#define gpuStreamEndCapture cudaStreamEndCapture
#define gpuGraphInstantiate(exec, g) cudaGraphInstantiate(exec, g, 0)
#define gpuGraphLaunch cudaGraphLaunch
#define gpuGraphDestroy cudaGraphDestroy
#define gpuGraphExecDestroy cudaGraphExecDestroy
#define gpuOccupancyMaxActiveBlocksPerMultiprocessor cudaOccupancyMaxActiveBlocksPerMultiprocessor

namespace tessera::cuda::dev {
template <class T>
__device__ __forceinline__ T shfl_xor(T v, int lane_mask) { return __shfl_xor_sync(0xffffffffu, v, lane_mask); }
template <class T>
__device__ __forceinline__ T shfl(T v, int src_lane) { return __shfl_sync(0xffffffffu, v, src_lane); }
__device__ __forceinline__ void warp_sync() { __syncwarp(); }
__device__ __forceinline__ int dp4a(int a, int b, int c) { return __dp4a(a, b, c); }
}  // namespace tessera::cuda::dev
#endif

// Tensor-core mma.sync and cp.async exist on NVIDIA sm_80 and later only; the
// kernels that use them have a portable path for everything else.
#if !defined(TESSERA_HIP_BACKEND) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800)
#define TESSERA_HAS_MMA 1
#else
#define TESSERA_HAS_MMA 0
#endif

// Programmatic dependent launch (sm_90+): a kernel launched with
// detail::launch_pdl may start while the previous kernel of its stream still
// runs; it must call pdl_wait() before it touches memory that kernel writes
// (or reads and it overwrites). pdl_wait is a no-op when the kernel was
// launched plainly, and both are no-ops below sm_90 and on HIP.
namespace tessera::cuda::dev {
__device__ __forceinline__ void pdl_wait() {
#if !defined(TESSERA_HIP_BACKEND) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
/// Lets the next kernel of the stream be launched now (it still waits in pdl_wait for this one to finish).
__device__ __forceinline__ void pdl_launch_dependents() {
#if !defined(TESSERA_HIP_BACKEND) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
}  // namespace tessera::cuda::dev

