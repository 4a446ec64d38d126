// Causal grouped-query attention for decode and short prefill: scores for one
// (token, head) row at a time in per-thread scratch, parallel over rows. K/V
// are read in place from the cache (never copied per query head). The
// flash-tiled variant for long sequences lives with the attention family.
#pragma once

#include <omp.h>

#include <cmath>
#include <limits>
#include <span>

#include "tessera/backend/scalar/attention.hpp"
#include "tessera/backend/simd/load.hpp"
#include "tessera/core/parallel.hpp"

namespace tessera::backend::simd {

using scalar::attention_scratch_size;

namespace detail {
inline float dot(const float* a, const float* b, int64_t n) {
  fbatch acc(0.f);
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kWidth) <= n; i += kWidth) acc = xsimd::fma(load(a + i), load(b + i), acc);
  float s = xsimd::hadd(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}
inline void axpy(float a, const float* x, float* y, int64_t n) {
  const fbatch av(a);
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kWidth) <= n; i += kWidth) xsimd::fma(av, load(x + i), load(y + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}
// In place: s[j] = exp(s[j] - max); returns the sum.
inline float exp_shifted(float* s, int64_t n, float mx) {
  const fbatch m(mx);
  fbatch acc(0.f);
  int64_t j = 0;
  for (; j + static_cast<int64_t>(kWidth) <= n; j += kWidth) {
    const fbatch e = xsimd::exp(load(s + j) - m);
    e.store_unaligned(s + j);
    acc += e;
  }
  float sum = xsimd::hadd(acc);
  for (; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
  return sum;
}
}  // namespace detail

/// Same contract as scalar::attention_causal; head rows (last axis) must be packed.
inline void attention_causal(TensorView<const float, 3> q, TensorView<const float, 3> k, TensorView<const float, 3> v,
                             int64_t pos0, float scale, TensorView<float, 3> out, std::span<float> scratch) {
  scalar::detail::check_attention_shapes(q, k, v, pos0, out);
  check(q.stride(2) == 1 && k.stride(2) == 1 && v.stride(2) == 1 && out.stride(2) == 1,
        "attention: head rows must be packed");
  const int64_t n_kv = k.dim(0), n_heads = q.dim(1), group = n_heads / k.dim(1), d = q.dim(2);
  check(scratch.size() >= attention_scratch_size(n_kv, num_threads()), "attention: scratch of ", scratch.size(),
        " floats, need ", attention_scratch_size(n_kv, num_threads()));
  parallel_for(q.dim(0) * n_heads, 1, [&](int64_t r0, int64_t r1) {
    float* s = scratch.data() + static_cast<int64_t>(omp_get_thread_num()) * n_kv;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r / n_heads, h = r % n_heads, g = h / group, n_keys = pos0 + t + 1;
      const float* qr = &q(t, h, 0);
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n_keys; ++j) {
        s[j] = detail::dot(qr, k.data() + j * k.stride(0) + g * k.stride(1), d) * scale;
        mx = std::max(mx, s[j]);
      }
      const float inv = 1.f / detail::exp_shifted(s, n_keys, mx);
      float* o = &out(t, h, 0);
      std::fill(o, o + d, 0.f);
      for (int64_t j = 0; j < n_keys; ++j) detail::axpy(s[j] * inv, v.data() + j * v.stride(0) + g * v.stride(1), o, d);
    }
  });
}

}  // namespace tessera::backend::simd
