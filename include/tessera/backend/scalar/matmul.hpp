/// \file
/// Reference matrix products with float-like weights (f32, f16, bf16) and f32
/// activations. Weights are stored as GGUF does: W [N, K], one output feature
/// per row, so y = W x reads each row once.
#pragma once

#include <span>

#include "tessera/backend/backend.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::backend::scalar {

/// y[n] = sum_k w[n,k] x[k].  w [N, K], x [K], y [N].  O(N K).
template <class W>
void gemv(TensorView<const W, 2> w, std::span<const float> x, std::span<float> y) {
  TESSERA_CHECK(w.dim(1) == static_cast<int64_t>(x.size()) && w.dim(0) == static_cast<int64_t>(y.size()),
        "gemv: weight ", shape_str(w.shape()), " with x [", x.size(), "] into y [", y.size(), "]");
  for (int64_t n = 0; n < w.dim(0); ++n) {
    float acc = 0.f;
    for (int64_t k = 0; k < w.dim(1); ++k) acc += static_cast<float>(w(n, k)) * x[k];
    y[n] = acc;
  }
}

/// y[m,n] = sum_k x[m,k] w[n,k].  w [N, K], x [M, K], y [M, N].  O(M N K).
template <class W>
void gemm(TensorView<const W, 2> w, TensorView<const float, 2> x, TensorView<float, 2> y) {
  TESSERA_CHECK(w.dim(1) == x.dim(1) && y.dim(0) == x.dim(0) && y.dim(1) == w.dim(0), "gemm: weight ",
        shape_str(w.shape()), " with x ", shape_str(x.shape()), " into y ", shape_str(y.shape()));
  for (int64_t m = 0; m < x.dim(0); ++m)
    for (int64_t n = 0; n < w.dim(0); ++n) {
      float acc = 0.f;
      for (int64_t k = 0; k < w.dim(1); ++k) acc += static_cast<float>(w(n, k)) * x(m, k);
      y(m, n) = acc;
    }
}

/// Same signature as the SIMD backend's; the reference needs no scratch.
template <class W>
constexpr size_t gemm_scratch_size(int64_t) { return 0; }
/// gemm with the SIMD backend's signature; the scratch is ignored.
template <class W>
void gemm(TensorView<const W, 2> w, TensorView<const float, 2> x, TensorView<float, 2> y, std::span<float>) {
  gemm(w, x, y);
}

}  // namespace tessera::backend::scalar
