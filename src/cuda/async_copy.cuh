// Global -> shared copies that do not pass through registers (cp.async, sm_80+),
// with plain copies where the instruction does not exist (HIP, older GPUs).
// Pieces are 16, 8, 4 or 2 bytes; the caller picks the widest that the
// addresses' alignment allows.
#pragma once

#include <cstdint>

#include "compat.cuh"

namespace tessera::cuda::dev {

template <int Bytes>
__device__ __forceinline__ void copy_async(void* smem, const void* g) {
#if TESSERA_HAS_MMA
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  if constexpr (Bytes == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(g));
  } else if constexpr (Bytes == 8 || Bytes == 4) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(s), "l"(g), "n"(Bytes));
  } else {
    *static_cast<uint16_t*>(smem) = *static_cast<const uint16_t*>(g);
  }
#else
  if constexpr (Bytes == 16) *static_cast<uint4*>(smem) = *static_cast<const uint4*>(g);
  else if constexpr (Bytes == 8) *static_cast<uint2*>(smem) = *static_cast<const uint2*>(g);
  else if constexpr (Bytes == 4) *static_cast<uint32_t*>(smem) = *static_cast<const uint32_t*>(g);
  else *static_cast<uint16_t*>(smem) = *static_cast<const uint16_t*>(g);
#endif
}

/// One piece of `width` bytes (a run-time choice, uniform over the launch).
__device__ __forceinline__ void copy_async_any(int width, void* smem, const void* g) {
  switch (width) {
    case 16: copy_async<16>(smem, g); break;
    case 8: copy_async<8>(smem, g); break;
    case 4: copy_async<4>(smem, g); break;
    default: copy_async<2>(smem, g); break;
  }
}

__device__ __forceinline__ void copy_async_commit() {
#if TESSERA_HAS_MMA
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
/// Waits until at most N committed groups are still in flight.
template <int N>
__device__ __forceinline__ void copy_async_wait() {
#if TESSERA_HAS_MMA
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

/// The widest piece (16, 8, 4 or 2 bytes) dividing every given byte offset or length.
inline int copy_width(uint64_t a, uint64_t b = 0, uint64_t c = 0) {
  const uint64_t x = a | b | c;
  return x % 16 == 0 ? 16 : x % 8 == 0 ? 8 : x % 4 == 0 ? 4 : 2;
}

}  // namespace tessera::cuda::dev
