// Reference causal attention with grouped KV heads: for query token t at
// position pos0 + t and head h, out = softmax(q K^T * scale) V over the keys at
// positions <= pos0 + t of KV head h / (n_heads / n_kv_heads).
#pragma once

#include <cmath>
#include <limits>
#include <span>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::backend::scalar {

namespace detail {
inline void check_attention_shapes(const TensorView<const float, 3>& q, const TensorView<const float, 3>& k,
                                   const TensorView<const float, 3>& v, int64_t pos0,
                                   const TensorView<float, 3>& out) {
  check(k.shape() == v.shape() && q.dim(2) == k.dim(2) && out.shape() == q.shape(), "attention: q ",
        shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()), ", out ",
        shape_str(out.shape()));
  check(k.dim(1) > 0 && q.dim(1) % k.dim(1) == 0, "attention: ", q.dim(1), " query heads are not a multiple of ",
        k.dim(1), " KV heads");
  check(pos0 >= 0 && pos0 + q.dim(0) <= k.dim(0), "attention: queries at positions [", pos0, ", ", pos0 + q.dim(0),
        ") but only ", k.dim(0), " keys");
}
}  // namespace detail

/// Scratch floats attention_causal needs: one score row per thread.
inline size_t attention_scratch_size(int64_t n_kv, int n_threads) { return static_cast<size_t>(n_kv) * n_threads; }

/// q, out [n_tokens, n_heads, head_dim]; k, v [n_kv, n_kv_heads, head_dim] with n_kv >= pos0 + n_tokens.
/// scratch: attention_scratch_size(n_kv, threads) floats.  O(n_tokens n_heads n_kv head_dim).
inline void attention_causal(TensorView<const float, 3> q, TensorView<const float, 3> k, TensorView<const float, 3> v,
                             int64_t pos0, float scale, TensorView<float, 3> out, std::span<float> scratch) {
  detail::check_attention_shapes(q, k, v, pos0, out);
  check(scratch.size() >= static_cast<size_t>(k.dim(0)), "attention: scratch too small");
  const int64_t group = q.dim(1) / k.dim(1), d = q.dim(2);
  for (int64_t t = 0; t < q.dim(0); ++t) {
    const int64_t n_keys = pos0 + t + 1;
    for (int64_t h = 0; h < q.dim(1); ++h) {
      const int64_t g = h / group;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n_keys; ++j) {
        float s = 0;
        for (int64_t i = 0; i < d; ++i) s += q(t, h, i) * k(j, g, i);
        scratch[j] = s * scale;
        mx = std::max(mx, scratch[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < n_keys; ++j) sum += (scratch[j] = std::exp(scratch[j] - mx));
      for (int64_t i = 0; i < d; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < n_keys; ++j) acc += static_cast<double>(scratch[j]) * v(j, g, i);
        out(t, h, i) = static_cast<float>(acc / sum);
      }
    }
  }
}

}  // namespace tessera::backend::scalar
