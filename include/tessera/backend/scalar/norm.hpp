/// \file
/// Reference RMSNorm and LayerNorm over the last axis. Sums are taken in double,
/// so the reference is more accurate than any fast path compared against it.
#pragma once

#include <cmath>
#include <span>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::backend::detail {
// The norms' shape contracts, shared by both backends so they reject the same calls alike.
inline void check_norm_shapes(const char* what, const TensorView<const float, 2>& x, size_t n_w, size_t n_b,
                              const TensorView<float, 2>& out) {
  TESSERA_CHECK(x.shape() == out.shape(), what, ": x ", shape_str(x.shape()), " and out ", shape_str(out.shape()),
                " must have the same shape");
  TESSERA_CHECK(x.dim(1) == static_cast<int64_t>(n_w), what, ": weight has ", n_w, " elements, x ",
                shape_str(x.shape()), " rows have ", x.dim(1), " (w must be [n_embd] of the normalised axis)");
  TESSERA_CHECK(n_b == 0 || n_b == n_w, what, ": bias has ", n_b, " elements, weight ", n_w,
                " (b must be empty or [n_embd])");
}
}  // namespace tessera::backend::detail

namespace tessera::backend::scalar {

/// out[t,i] = x[t,i] / sqrt(mean_i(x[t,i]^2) + eps) * w[i].  x, out [n_tokens, n_embd], w [n_embd].  O(n).
/// out may alias x.
inline void rms_norm(TensorView<const float, 2> x, std::span<const float> w, float eps, TensorView<float, 2> out) {
  backend::detail::check_norm_shapes("rms_norm", x, w.size(), 0, out);
  for (int64_t t = 0; t < x.dim(0); ++t) {
    double ss = 0;
    for (int64_t i = 0; i < x.dim(1); ++i) ss += static_cast<double>(x(t, i)) * x(t, i);
    const auto scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(x.dim(1)) + eps));
    for (int64_t i = 0; i < x.dim(1); ++i) out(t, i) = x(t, i) * scale * w[i];
  }
}

/// out[t,i] = (x[t,i] - mean) / sqrt(var + eps) * w[i] + b[i]; b may be empty (no bias).
/// x, out [n_tokens, n_embd]; w, b [n_embd].  O(n).  out may alias x.
inline void layer_norm(TensorView<const float, 2> x, std::span<const float> w, std::span<const float> b, float eps,
                       TensorView<float, 2> out) {
  backend::detail::check_norm_shapes("layer_norm", x, w.size(), b.size(), out);
  const auto n = static_cast<double>(x.dim(1));
  for (int64_t t = 0; t < x.dim(0); ++t) {
    double sum = 0, ss = 0;
    for (int64_t i = 0; i < x.dim(1); ++i) sum += x(t, i);
    const double mean = sum / n;
    for (int64_t i = 0; i < x.dim(1); ++i) ss += (x(t, i) - mean) * (x(t, i) - mean);
    const auto scale = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
    const auto meanf = static_cast<float>(mean);
    for (int64_t i = 0; i < x.dim(1); ++i) out(t, i) = (x(t, i) - meanf) * scale * w[i] + (b.empty() ? 0.f : b[i]);
  }
}

}  // namespace tessera::backend::scalar
