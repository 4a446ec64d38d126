// The split layout (SplitWeight) on the device: for each of q4_0, q8_0, q4_K
// and q6_K, what a lane loads for one 32-value sub-block (straight from
// memory, with loads that do not allocate in L1, so L1 keeps the activations
// every row reuses), its dot product with the int8 activations, and the value
// of one element (the prefill GEMM's bf16 copy).
#pragma once

#include "formats.cuh"

namespace tessera::cuda::dev {

// Streaming loads: weights are read once per call, so they bypass L1.
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
#if TESSERA_HAS_MMA
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
#else
  return *static_cast<const uint4*>(p);
#endif
}
__device__ __forceinline__ uint2 ld_stream8(const void* p) {
#if TESSERA_HAS_MMA
  uint2 v;
  asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
#else
  return *static_cast<const uint2*>(p);
#endif
}
__device__ __forceinline__ uint16_t ld_stream2(const void* p) {
#if TESSERA_HAS_MMA
  uint16_t v;
  asm("ld.global.nc.L1::no_allocate.u16 %0, [%1];" : "=h"(v) : "l"(p));
  return v;
#else
  return *static_cast<const uint16_t*>(p);
#endif
}

/// The arrays of a split matrix as the kernels take them (see SplitWeight).
struct SplitW {
  const uint8_t* qs;
  const uint16_t* d;
  const uint8_t* aux;
  const int8_t* sc;
  int64_t nb;  // sub-blocks per row (k / 32)
};
inline SplitW split_w(const SplitWeight& w) {
  return {reinterpret_cast<const uint8_t*>(w.qs), reinterpret_cast<const uint16_t*>(w.d),
          reinterpret_cast<const uint8_t*>(w.aux), w.sc, w.k / 32};
}

// 16 nibble bytes (value t low, t + 16 high) as eight words of 4 values each.
__device__ __forceinline__ void split_nibbles(const uint4 q, int (&w)[8]) {
  const uint32_t v[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[i] = static_cast<int>(v[i] & 0x0f0f0f0fu);
    w[i + 4] = static_cast<int>((v[i] >> 4) & 0x0f0f0f0fu);
  }
}

template <GgmlType T> struct SplitFmt;

// q4_0: w = d (q - 8); the 8 comes out through the activations' block sum.
template <> struct SplitFmt<GgmlType::q4_0> {
  static constexpr int act = 1;
  struct Regs { uint4 q; uint16_t d; };
  static __device__ __forceinline__ void load(const SplitW& w, int64_t row, int64_t b, Regs& r) {
    const int64_t i = row * w.nb + b;
    r.q = ld_stream16(w.qs + i * 16);
    r.d = ld_stream2(w.d + i);
  }
  template <int M>
  static __device__ __forceinline__ void dot(const Regs& r, int64_t b, const Act& a, int64_t k, int m, float (&acc)[M]) {
    int w[8];
    split_nibbles(r.q, w);
    const float dw = f16_bits_to_float(r.d);
#pragma unroll
    for (int j = 0; j < M; ++j) {
      if (j >= m) continue;
      const int4* x = reinterpret_cast<const int4*>(a.qs + j * k + b * 32);
      const int s = dot32(w, __ldg(x), __ldg(x + 1)) - 8 * __ldg(a.bsum + j * (k / 32) + b);
      acc[j] = fmaf(dw * __ldg(a.d + j * (k / 32) + b), static_cast<float>(s), acc[j]);
    }
  }
  static __device__ __forceinline__ float elem(const SplitW& w, int64_t row, int64_t e) {
    const int64_t b = row * w.nb + e / 32;
    const int l = static_cast<int>(e % 32);
    const uint8_t byte = w.qs[b * 16 + l % 16];
    return f16_bits_to_float(w.d[b]) * static_cast<float>((l < 16 ? byte & 15 : byte >> 4) - 8);
  }
};

template <> struct SplitFmt<GgmlType::q8_0> {
  static constexpr int act = 1;
  struct Regs { uint4 q0, q1; uint16_t d; };
  static __device__ __forceinline__ void load(const SplitW& w, int64_t row, int64_t b, Regs& r) {
    const int64_t i = row * w.nb + b;
    r.q0 = ld_stream16(w.qs + i * 32);
    r.q1 = ld_stream16(w.qs + i * 32 + 16);
    r.d = ld_stream2(w.d + i);
  }
  template <int M>
  static __device__ __forceinline__ void dot(const Regs& r, int64_t b, const Act& a, int64_t k, int m, float (&acc)[M]) {
    const int w[8] = {static_cast<int>(r.q0.x), static_cast<int>(r.q0.y), static_cast<int>(r.q0.z),
                      static_cast<int>(r.q0.w), static_cast<int>(r.q1.x), static_cast<int>(r.q1.y),
                      static_cast<int>(r.q1.z), static_cast<int>(r.q1.w)};
    const float dw = f16_bits_to_float(r.d);
#pragma unroll
    for (int j = 0; j < M; ++j) {
      if (j >= m) continue;
      const int4* x = reinterpret_cast<const int4*>(a.qs + j * k + b * 32);
      acc[j] = fmaf(dw * __ldg(a.d + j * (k / 32) + b), static_cast<float>(dot32(w, __ldg(x), __ldg(x + 1))), acc[j]);
    }
  }
  static __device__ __forceinline__ float elem(const SplitW& w, int64_t row, int64_t e) {
    const int64_t b = row * w.nb + e / 32;
    return f16_bits_to_float(w.d[b]) * static_cast<float>(static_cast<int8_t>(w.qs[b * 32 + e % 32]));
  }
};

// q4_K sub-block j (0..7) of a super-block: sc and mn from the header words
// y, z, w (bytes 4..15: the 12 packed scale bytes).
__device__ __forceinline__ void q4_K_split_scale(const uint4 h, int j, int& sc, int& mn) {
  const int sh = 8 * (j & 3);
  const uint32_t y = h.y >> sh, z = h.z >> sh, w = h.w >> sh;
  if (j < 4) {
    sc = static_cast<int>(y & 63u);
    mn = static_cast<int>(z & 63u);
  } else {
    sc = static_cast<int>((w & 15u) | (((y >> 6) & 3u) << 4));
    mn = static_cast<int>(((w >> 4) & 15u) | (((z >> 6) & 3u) << 4));
  }
}

// q4_K: w = d sc q - dmin mn per sub-block, with q8_K activations (one float
// scale per 256, integer sums per 16).  The header (16 bytes) is shared by
// the 8 lanes of a super-block: one request serves them.
template <> struct SplitFmt<GgmlType::q4_K> {
  static constexpr int act = 3;
  struct Regs { uint4 q, h; };
  static __device__ __forceinline__ void load(const SplitW& w, int64_t row, int64_t b, Regs& r) {
    const int64_t i = row * w.nb + b;
    r.q = ld_stream16(w.qs + i * 16);
    r.h = ld_stream16(w.aux + (i / 8) * 16);
  }
  template <int M>
  static __device__ __forceinline__ void dot(const Regs& r, int64_t b, const Act& a, int64_t k, int m, float (&acc)[M]) {
    int w[8], sc, mn;
    split_nibbles(r.q, w);
    q4_K_split_scale(r.h, static_cast<int>(b % 8), sc, mn);
    const float d = f16_bits_to_float(static_cast<uint16_t>(r.h.x)), dmin = f16_bits_to_float(static_cast<uint16_t>(r.h.x >> 16));
#pragma unroll
    for (int j = 0; j < M; ++j) {
      if (j >= m) continue;
      const int4* x = reinterpret_cast<const int4*>(a.qs + j * k + b * 32);
      const int bs = __ldg(reinterpret_cast<const int*>(a.bsum + j * (k / 16) + 2 * b));  // two int16 sums
      const int xsum = static_cast<int>(static_cast<int16_t>(bs)) + (bs >> 16);
      const float dx = __ldg(a.d + j * (k / 256) + b / 8);
      const int s = dot32(w, __ldg(x), __ldg(x + 1));
      acc[j] += dx * fmaf(d * static_cast<float>(sc), static_cast<float>(s), -dmin * static_cast<float>(mn * xsum));
    }
  }
  static __device__ __forceinline__ float elem(const SplitW& w, int64_t row, int64_t e) {
    const int64_t b = row * w.nb + e / 32;
    const int l = static_cast<int>(e % 32);
    const uint8_t byte = w.qs[b * 16 + l % 16];
    const uint8_t* h = w.aux + (b / 8) * 16;
    int sc, mn;
    q4_K_scale_min(h + 4, static_cast<int>(b % 8), sc, mn);
    return h2f(h) * static_cast<float>(sc) * static_cast<float>(l < 16 ? byte & 15 : byte >> 4) -
           h2f(h + 2) * static_cast<float>(mn);
  }
};

// q6_K: w = d sc (q - 32), sc per 16 values; q = low nibble | top 2 bits << 4.
template <> struct SplitFmt<GgmlType::q6_K> {
  static constexpr int act = 3;
  struct Regs { uint4 q; uint2 h; uint16_t sc, d; };
  static __device__ __forceinline__ void load(const SplitW& w, int64_t row, int64_t b, Regs& r) {
    const int64_t i = row * w.nb + b;
    r.q = ld_stream16(w.qs + i * 16);
    r.h = ld_stream8(w.aux + i * 8);
    r.sc = ld_stream2(w.sc + i * 2);
    r.d = ld_stream2(w.d + i / 8);
  }
  template <int M>
  static __device__ __forceinline__ void dot(const Regs& r, int64_t b, const Act& a, int64_t k, int m, float (&acc)[M]) {
    int w[8];
    split_nibbles(r.q, w);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] |= static_cast<int>(((r.h.x >> (2 * i)) & 0x03030303u) << 4);
      w[i + 4] |= static_cast<int>(((r.h.y >> (2 * i)) & 0x03030303u) << 4);
    }
    const int sa = static_cast<int8_t>(r.sc & 0xff), sb = static_cast<int8_t>(r.sc >> 8);
    const float dw = f16_bits_to_float(r.d);
#pragma unroll
    for (int j = 0; j < M; ++j) {
      if (j >= m) continue;
      const int4* x = reinterpret_cast<const int4*>(a.qs + j * k + b * 32);
      const int4 x0 = __ldg(x), x1 = __ldg(x + 1);
      const int bs = __ldg(reinterpret_cast<const int*>(a.bsum + j * (k / 16) + 2 * b));
      int s0 = dp4a(w[0], x0.x, -32 * static_cast<int>(static_cast<int16_t>(bs)));
      int s1 = dp4a(w[4], x1.x, -32 * (bs >> 16));
      s0 = dp4a(w[1], x0.y, s0); s0 = dp4a(w[2], x0.z, s0); s0 = dp4a(w[3], x0.w, s0);
      s1 = dp4a(w[5], x1.y, s1); s1 = dp4a(w[6], x1.z, s1); s1 = dp4a(w[7], x1.w, s1);
      acc[j] = fmaf(dw * __ldg(a.d + j * (k / 256) + b / 8), static_cast<float>(sa * s0 + sb * s1), acc[j]);
    }
  }
  static __device__ __forceinline__ float elem(const SplitW& w, int64_t row, int64_t e) {
    const int64_t b = row * w.nb + e / 32;
    const int l = static_cast<int>(e % 32);
    const uint8_t byte = w.qs[b * 16 + l % 16];
    const uint32_t hw = reinterpret_cast<const uint32_t*>(w.aux + b * 8)[l / 16];
    const int t = l % 16, hi = static_cast<int>((hw >> (8 * (t % 4) + 2 * (t / 4))) & 3u);
    const int q = (l < 16 ? byte & 15 : byte >> 4) | (hi << 4);
    return f16_bits_to_float(w.d[b / 8]) * static_cast<float>(w.sc[b * 2 + l / 16]) *
           static_cast<float>(q - 32);
  }
};

}  // namespace tessera::cuda::dev
