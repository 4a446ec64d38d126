/// \file
/// Matrix products with float-like weights (f32, f16, bf16) and f32
/// activations. gemv (decode) streams weight rows, four at a time sharing each
/// load of x; it is memory-bound, so the point is to keep every load in flight.
/// gemm (prefill) hands the arithmetic to Eigen's blocked GEMM, which measured
/// faster on this target than a hand-written kernel of the same size; f16/bf16
/// weights are widened a tile at a time into caller-provided scratch.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <Eigen/Core>
#include <algorithm>
#include <span>
#include <vector>

#include "tessera/backend/backend.hpp"
#include "tessera/backend/simd/load.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::backend::simd {

namespace detail {

// Four rows against one x: the four accumulators hide FMA latency and x is
// loaded once per four rows.
template <class W>
void gemv_rows(const W* w, int64_t ldw, const float* x, int64_t k_len, float* y, int64_t n_rows) {
  const int64_t k_simd = k_len / static_cast<int64_t>(kWidth) * static_cast<int64_t>(kWidth);
  int64_t r = 0;
  for (; r + 4 <= n_rows; r += 4) {
    const W* w0 = w + r * ldw;
    const W *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
    fbatch a0(0.f), a1(0.f), a2(0.f), a3(0.f);
    for (int64_t k = 0; k < k_simd; k += kWidth) {
      const fbatch xv = load(x + k);
      a0 = xsimd::fma(load(w0 + k), xv, a0);
      a1 = xsimd::fma(load(w1 + k), xv, a1);
      a2 = xsimd::fma(load(w2 + k), xv, a2);
      a3 = xsimd::fma(load(w3 + k), xv, a3);
    }
    float s[4] = {xsimd::hadd(a0), xsimd::hadd(a1), xsimd::hadd(a2), xsimd::hadd(a3)};
    for (int64_t k = k_simd; k < k_len; ++k) {
      s[0] += static_cast<float>(w0[k]) * x[k];
      s[1] += static_cast<float>(w1[k]) * x[k];
      s[2] += static_cast<float>(w2[k]) * x[k];
      s[3] += static_cast<float>(w3[k]) * x[k];
    }
    std::copy(s, s + 4, y + r);
  }
  for (; r < n_rows; ++r) {
    const W* wr = w + r * ldw;
    fbatch a(0.f);
    for (int64_t k = 0; k < k_simd; k += kWidth) a = xsimd::fma(load(wr + k), load(x + k), a);
    float s = xsimd::hadd(a);
    for (int64_t k = k_simd; k < k_len; ++k) s += static_cast<float>(wr[k]) * x[k];
    y[r] = s;
  }
}

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;
using Map = Eigen::Map<RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;

inline constexpr int64_t kWidenTileRows = 256;  // weight rows widened per Eigen call

}  // namespace detail

/// y[n] = sum_k w[n,k] x[k].  w [N, K] (rows packed), x [K], y [N].  O(N K), parallel over rows.
template <class W>
void gemv(TensorView<const W, 2> w, std::span<const float> x, std::span<float> y) {
  TESSERA_CHECK(w.dim(1) == static_cast<int64_t>(x.size()) && w.dim(0) == static_cast<int64_t>(y.size()),
        "gemv: weight ", shape_str(w.shape()), " with x [", x.size(), "] into y [", y.size(), "]");
  check(w.rows_contiguous(), "gemv: weight rows must be packed");
  const int64_t k_len = w.dim(1);
  // Chunks of >= 16K weights, so a thread's share outweighs the scheduling cost.
  const int64_t grain = std::max<int64_t>(4, 16384 / std::max<int64_t>(1, k_len));
  parallel_for(w.dim(0), grain, [&](int64_t r0, int64_t r1) {
    detail::gemv_rows(w.data() + r0 * w.stride(0), w.stride(0), x.data(), k_len, y.data() + r0, r1 - r0);
  });
}

/// Scratch floats gemm needs for weight type W and row length K (0 for f32).
template <class W>
constexpr size_t gemm_scratch_size(int64_t k_len) {
  return std::is_same_v<W, float> ? 0 : static_cast<size_t>(detail::kWidenTileRows * k_len);
}

/// y[m,n] = sum_k x[m,k] w[n,k].  w [N, K], x [M, K], y [M, N]; rows packed.
/// scratch holds gemm_scratch_size<W>(K) floats.  O(M N K).
template <class W>
void gemm(TensorView<const W, 2> w, TensorView<const float, 2> x, TensorView<float, 2> y, std::span<float> scratch) {
  const int64_t M = x.dim(0), N = w.dim(0), K = w.dim(1);
  TESSERA_CHECK(x.dim(1) == K && y.dim(0) == M && y.dim(1) == N, "gemm: weight ", shape_str(w.shape()), " with x ",
        shape_str(x.shape()), " into y ", shape_str(y.shape()));
  check(w.rows_contiguous() && x.rows_contiguous() && y.rows_contiguous(), "gemm: rows must be packed");
  check(scratch.size() >= gemm_scratch_size<W>(K), "gemm: scratch of ", scratch.size(), " floats, need ",
        gemm_scratch_size<W>(K));
  if (M == 1) return gemv(w, std::span<const float>(x.data(), K), std::span<float>(y.data(), N));
  if (M <= exact_rows()) {  // decode's own row sums (see backend::exact_rows), weights read once
    const int64_t block = std::max<int64_t>(4, 8192 / std::max<int64_t>(1, K));
    return parallel_for(N, block, [&](int64_t r0, int64_t r1) {
      for (int64_t b0 = r0; b0 < r1; b0 += block)
        for (int64_t m = 0; m < M; ++m)
          detail::gemv_rows(w.data() + b0 * w.stride(0), w.stride(0), x.data() + m * x.stride(0), K,
                            y.data() + m * y.stride(0) + b0, std::min(r1, b0 + block) - b0);
    });
  }
  const detail::ConstMap xm(x.data(), M, K, Eigen::OuterStride<>(x.stride(0)));
  if constexpr (std::is_same_v<W, float>) {
    const detail::ConstMap wm(w.data(), N, K, Eigen::OuterStride<>(w.stride(0)));
    detail::Map(y.data(), M, N, Eigen::OuterStride<>(y.stride(0))).noalias() = xm * wm.transpose();
  } else {
    for (int64_t n0 = 0; n0 < N; n0 += detail::kWidenTileRows) {
      const int64_t nr = std::min(detail::kWidenTileRows, N - n0);
      parallel_for(nr, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) to_float(w.data() + (n0 + r) * w.stride(0), scratch.data() + r * K, K);
      });
      const detail::ConstMap wm(scratch.data(), nr, K, Eigen::OuterStride<>(K));
      detail::Map(y.data() + n0, M, nr, Eigen::OuterStride<>(y.stride(0))).noalias() = xm * wm.transpose();
    }
  }
}

/// gemm with its own scratch: convenient, but allocates — not for the decode loop.
template <class W>
void gemm(TensorView<const W, 2> w, TensorView<const float, 2> x, TensorView<float, 2> y) {
  std::vector<float> scratch(gemm_scratch_size<W>(w.dim(1)));
  gemm(w, x, y, std::span<float>(scratch));
}

}  // namespace tessera::backend::simd

TESSERA_SIMD_WARNINGS_ON
