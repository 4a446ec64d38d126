/// \file
/// Reference products of quantized weights (q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K,
/// stored [N, K / block_size] as GGUF does) with activations quantized to the
/// paired 8-bit block (backend/quant_act.hpp): the truth the SIMD path is tested against.
#pragma once

#include <cstdint>
#include <span>

#include "tessera/backend/backend.hpp"
#include "tessera/backend/quant_act.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/core/quant.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::backend::scalar {

namespace detail {

// Each block's integer sum is exact; blocks are added in order as
// acc + (d_w d_x) * isum, as GGUF's reference does.
inline float f32(f16 h) { return static_cast<float>(h); }
using backend::detail::mul_add;

inline float block_dot(const block_q8_0& w, const block_q8_0& x, float acc) {
  int32_t s = 0;
  for (int i = 0; i < QK8_0; ++i) s += w.qs[i] * x.qs[i];
  return mul_add(f32(w.d) * f32(x.d), static_cast<float>(s), acc);
}

inline float block_dot(const block_q4_0& w, const block_q8_0& x, float acc) {
  int32_t s = 0;
  for (int j = 0; j < QK4_0 / 2; ++j)
    s += ((w.qs[j] & 0x0f) - 8) * x.qs[j] + ((w.qs[j] >> 4) - 8) * x.qs[j + QK4_0 / 2];
  return mul_add(f32(w.d) * f32(x.d), static_cast<float>(s), acc);
}

// sum_i (d q_i + m) x_i = d dx sum(q qx) + m * (dx sum(qx)), the last factor being x.s.
inline float block_dot(const block_q4_1& w, const block_q8_1& x, float acc) {
  int32_t s = 0;
  for (int j = 0; j < QK4_1 / 2; ++j) s += (w.qs[j] & 0x0f) * x.qs[j] + (w.qs[j] >> 4) * x.qs[j + QK4_1 / 2];
  return mul_add(f32(w.m), f32(x.s), mul_add(f32(w.d) * f32(x.d), static_cast<float>(s), acc));
}

inline float block_dot(const block_q5_0& w, const block_q8_0& x, float acc) {
  int32_t s = 0;
  for (int j = 0; j < QK5_0; ++j) s += (tessera::detail::q5_value(w, j) - 16) * x.qs[j];
  return mul_add(f32(w.d) * f32(x.d), static_cast<float>(s), acc);
}

// As q4_1: the offset m multiplies the activation block's sum x.s.
inline float block_dot(const block_q5_1& w, const block_q8_1& x, float acc) {
  int32_t s = 0;
  for (int j = 0; j < QK5_1; ++j) s += tessera::detail::q5_value(w, j) * x.qs[j];
  return mul_add(f32(w.m), f32(x.s), mul_add(f32(w.d) * f32(x.d), static_cast<float>(s), acc));
}

// sum_j sum_i (d sc_j q - dmin m_j) x = d dx sum_j sc_j sum(q qx) - dmin dx sum_j m_j sum_j(qx).
inline float block_dot(const block_q4_K& w, const block_q8_K& x, float acc) {
  uint8_t sc[8], mn[8];
  tessera::detail::unpack_q4_K_scales(w.scales, sc, mn);
  int32_t s = 0, s_min = 0;
  for (int c = 0; c < 4; ++c) {
    int32_t lo = 0, hi = 0;
    for (int l = 0; l < 32; ++l) {
      lo += (w.qs[32 * c + l] & 0x0f) * x.qs[64 * c + l];
      hi += (w.qs[32 * c + l] >> 4) * x.qs[64 * c + 32 + l];
    }
    s += sc[2 * c] * lo + sc[2 * c + 1] * hi;
  }
  for (int j = 0; j < 8; ++j) s_min += mn[j] * (x.bsums[2 * j] + x.bsums[2 * j + 1]);
  return mul_add(-f32(w.dmin) * x.d, static_cast<float>(s_min), mul_add(f32(w.d) * x.d, static_cast<float>(s), acc));
}

// As q4_K, with 5-bit q.
inline float block_dot(const block_q5_K& w, const block_q8_K& x, float acc) {
  uint8_t sc[8], mn[8];
  tessera::detail::unpack_q4_K_scales(w.scales, sc, mn);
  int32_t s = 0, s_min = 0;
  for (int j = 0; j < 8; ++j) {
    int32_t sj = 0;
    for (int i = 32 * j; i < 32 * j + 32; ++i) sj += tessera::detail::q5_K_value(w, i) * x.qs[i];
    s += sc[j] * sj;
    s_min += mn[j] * (x.bsums[2 * j] + x.bsums[2 * j + 1]);
  }
  return mul_add(-f32(w.dmin) * x.d, static_cast<float>(s_min), mul_add(f32(w.d) * x.d, static_cast<float>(s), acc));
}

inline float block_dot(const block_q6_K& w, const block_q8_K& x, float acc) {
  int32_t s = 0;
  for (int j = 0; j < QK_K / 16; ++j) {
    int32_t sj = 0;
    for (int i = 16 * j; i < 16 * j + 16; ++i) sj += (tessera::detail::q6_K_value(w, i) - 32) * x.qs[i];
    s += w.scales[j] * sj;
  }
  return mul_add(f32(w.d) * x.d, static_cast<float>(s), acc);
}

template <class W>
float row_dot(const W* w, const ActBlock<W>* x, int64_t n_blocks) {
  float acc = 0.f;
  for (int64_t b = 0; b < n_blocks; ++b) acc = block_dot(w[b], x[b], acc);
  return acc;
}

template <class W>
float row_dot_f32(const W* w, const float* x, int64_t n_blocks) {
  constexpr int bs = quant_traits<W>::block_size;
  float buf[bs];
  float acc = 0.f;
  for (int64_t b = 0; b < n_blocks; ++b) {
    dequantize_row(std::span<const W>(w + b, 1), std::span<float>(buf, bs));
    float s = 0.f;
    for (int i = 0; i < bs; ++i) s += buf[i] * x[b * bs + i];
    acc += s;
  }
  return acc;
}

}  // namespace detail

/// Quantizes one activation row: x [K] -> out [K / block_size] (q8_0, q8_1 or q8_K).
/// Error if K is not a whole number of blocks or out has another length.  O(K).
template <QuantActivation A>
void quantize_activations(std::span<const float> x, std::span<A> out) {
  tessera::quantize_row(x, out);
}

/// sum_k w[k] x[k] with x pre-quantized.  w_row [K / bs] blocks, xq [K / bs] blocks.  O(K).
template <QuantWeight W>
float dot(std::span<const W> w_row, std::span<const ActBlock<W>> xq) {
  backend::detail::check_dot_shapes<W>("dot", w_row.size(), xq.size());
  return detail::row_dot(w_row.data(), xq.data(), static_cast<int64_t>(w_row.size()));
}

/// sum_k w[k] x[k], weights dequantized on the fly.  w_row [K / bs] blocks, x [K].  O(K).
template <QuantWeight W>
float dot_f32(std::span<const W> w_row, std::span<const float> x) {
  backend::detail::check_dot_shapes<W>("dot_f32", w_row.size() * quant_traits<W>::block_size, x.size());
  return detail::row_dot_f32(w_row.data(), x.data(), static_cast<int64_t>(w_row.size()));
}

/// y[n] = dot(w[n], xq).  w [N, K / bs] blocks (rows packed), xq [K / bs], y [N].  O(N K), parallel over rows.
template <QuantWeight W>
void gemv(TensorView<const W, 2> w, std::span<const ActBlock<W>> xq, std::span<float> y) {
  backend::detail::check_gemv_shapes<W>("gemv", w, xq.size(), static_cast<size_t>(w.dim(1)), y.size());
  parallel_for(w.dim(0), 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) y[r] = detail::row_dot(w.data() + r * w.stride(0), xq.data(), w.dim(1));
  });
}

/// y[n] = dot_f32(w[n], x).  w [N, K / bs] blocks (rows packed), x [K], y [N].  O(N K), parallel over rows.
template <QuantWeight W>
void gemv_f32(TensorView<const W, 2> w, std::span<const float> x, std::span<float> y) {
  backend::detail::check_gemv_shapes<W>("gemv_f32", w, x.size(),
                                        static_cast<size_t>(w.dim(1) * quant_traits<W>::block_size), y.size());
  parallel_for(w.dim(0), 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) y[r] = detail::row_dot_f32(w.data() + r * w.stride(0), x.data(), w.dim(1));
  });
}

/// y[m, n] = dot(w[n], xq[m]).  w [N, K / bs], xq [M, K / bs], y [M, N]; rows packed.  O(M N K),
/// parallel over weight rows.
template <QuantWeight W>
void gemm(TensorView<const W, 2> w, TensorView<const ActBlock<W>, 2> xq, TensorView<float, 2> y) {
  backend::detail::check_gemm_shapes(w, xq, y);
  parallel_for(w.dim(0), 16, [&](int64_t r0, int64_t r1) {
    for (int64_t m = 0; m < xq.dim(0); ++m)
      for (int64_t r = r0; r < r1; ++r)
        y.data()[m * y.stride(0) + r] =
            detail::row_dot(w.data() + r * w.stride(0), xq.data() + m * xq.stride(0), w.dim(1));
  });
}

}  // namespace tessera::backend::scalar
