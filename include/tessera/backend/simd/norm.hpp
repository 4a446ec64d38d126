/// \file
/// RMSNorm and LayerNorm over the last axis with xsimd batches; rows in parallel.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <cmath>
#include <span>

#include "tessera/backend/scalar/norm.hpp"
#include "tessera/backend/simd/load.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::backend::simd {

namespace detail {
inline float sum_squares(const float* x, int64_t n, float shift) {
  fbatch acc(0.f);
  const fbatch s(shift);
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kWidth) <= n; i += kWidth) {
    const fbatch d = load(x + i) - s;
    acc = xsimd::fma(d, d, acc);
  }
  float r = xsimd::hadd(acc);
  for (; i < n; ++i) r += (x[i] - shift) * (x[i] - shift);
  return r;
}
inline float sum(const float* x, int64_t n) {
  fbatch acc(0.f);
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kWidth) <= n; i += kWidth) acc += load(x + i);
  float r = xsimd::hadd(acc);
  for (; i < n; ++i) r += x[i];
  return r;
}
// out[i] = (x[i] - shift) * scale * w[i] + (b ? b[i] : 0)
inline void scale_rows(const float* x, const float* w, const float* b, float shift, float scale, float* out,
                       int64_t n) {
  const fbatch s(shift), sc(scale);
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kWidth) <= n; i += kWidth) {
    fbatch v = (load(x + i) - s) * sc * load(w + i);
    if (b) v += load(b + i);
    v.store_unaligned(out + i);
  }
  for (; i < n; ++i) out[i] = (x[i] - shift) * scale * w[i] + (b ? b[i] : 0.f);
}
}  // namespace detail

/// out[t,i] = x[t,i] / sqrt(mean_i(x[t,i]^2) + eps) * w[i].  x, out [n_tokens, n_embd] (rows packed), w [n_embd].
/// out may alias x.  O(n), parallel over tokens.
inline void rms_norm(TensorView<const float, 2> x, std::span<const float> w, float eps, TensorView<float, 2> out) {
  backend::detail::check_norm_shapes("rms_norm", x, w.size(), 0, out);
  check(x.rows_contiguous() && out.rows_contiguous(), "rms_norm: rows must be packed");
  const int64_t n = x.dim(1);
  parallel_for(x.dim(0), 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x.data() + t * x.stride(0);
      const float scale = 1.f / std::sqrt(detail::sum_squares(xr, n, 0.f) / static_cast<float>(n) + eps);
      detail::scale_rows(xr, w.data(), nullptr, 0.f, scale, out.data() + t * out.stride(0), n);
    }
  });
}

/// LayerNorm; b may be empty.  Same shapes and aliasing as rms_norm.  Two passes (mean, then centred variance)
/// because the one-pass E[x^2] - E[x]^2 loses all precision when |mean| >> std.
inline void layer_norm(TensorView<const float, 2> x, std::span<const float> w, std::span<const float> b, float eps,
                       TensorView<float, 2> out) {
  backend::detail::check_norm_shapes("layer_norm", x, w.size(), b.size(), out);
  check(x.rows_contiguous() && out.rows_contiguous(), "layer_norm: rows must be packed");
  const int64_t n = x.dim(1);
  parallel_for(x.dim(0), 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x.data() + t * x.stride(0);
      const float mean = detail::sum(xr, n) / static_cast<float>(n);
      const float scale = 1.f / std::sqrt(detail::sum_squares(xr, n, mean) / static_cast<float>(n) + eps);
      detail::scale_rows(xr, w.data(), b.empty() ? nullptr : b.data(), mean, scale, out.data() + t * out.stride(0), n);
    }
  });
}

}  // namespace tessera::backend::simd

TESSERA_SIMD_WARNINGS_ON
