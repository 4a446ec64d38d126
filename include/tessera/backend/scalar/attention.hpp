/// \file
/// Reference attention: out[t, h] = softmax_j(scale * q[t, h] . k[j, g]) v[j, g]
/// over the keys j the mask lets query t see, with g = h / (n_heads / n_kv_heads)
/// (MHA when equal, GQA in between, MQA with one KV head). Plain loops, double
/// accumulation: the truth the SIMD naive and flash paths are tested against.
#pragma once

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "tessera/backend/attention_params.hpp"
#include "tessera/core/half.hpp"
#include "tessera/core/quant/q8.hpp"

namespace tessera::backend::scalar {

/// Converts one head row of d stored values (f32, f16 or q8_0) to f32.
inline void load_kv_row(KvType type, const std::byte* src, int64_t d, float* out) {
  switch (type) {
    case KvType::f32: std::memcpy(out, src, static_cast<size_t>(d) * sizeof(float)); return;
    case KvType::f16: {
      const auto* h = reinterpret_cast<const f16*>(src);
      for (int64_t i = 0; i < d; ++i) out[i] = static_cast<float>(h[i]);
      return;
    }
    case KvType::q8_0:
      dequantize_row(std::span(reinterpret_cast<const block_q8_0*>(src), static_cast<size_t>(d / QK8_0)),
                     std::span(out, static_cast<size_t>(d)));
      return;
  }
}

/// q, out [n_q, n_heads, head_dim]; keys and values from kv; query t sits at
/// position p.q_pos0 + t.  A query that sees no key gets a zero row.
/// O(n_q n_heads n_keys head_dim); allocates its own scratch (it is the reference).
inline void attention(TensorView<const float, 3> q, const KvSource& kv, const AttentionParams& p,
                      TensorView<float, 3> out) {
  tessera::detail::check_attention(q, kv, p, out);
  const int64_t d = q.dim(2), group = q.dim(1) / kv.n_kv_heads;
  const double scale = p.scale_for(d);
  std::vector<float> kr(static_cast<size_t>(d)), vr(static_cast<size_t>(d));
  std::vector<double> s, acc(static_cast<size_t>(d));
  for (int64_t t = 0; t < q.dim(0); ++t) {
    const int64_t qp = p.q_pos0 + t;
    for (int64_t h = 0; h < q.dim(1); ++h) {
      const int64_t g = h / group;
      s.clear();
      double mx = -std::numeric_limits<double>::infinity();
      for (const KvSegment& seg : kv.segments)
        for (int64_t j = 0; j < seg.n; ++j) {
          if (!p.mask.visible(qp, seg.pos0 + j)) continue;
          load_kv_row(kv.type, kv.k_row(seg, j, g), d, kr.data());
          double dot = 0;
          for (int64_t i = 0; i < d; ++i) dot += static_cast<double>(q(t, h, i)) * kr[static_cast<size_t>(i)];
          s.push_back(dot * scale);
          mx = std::max(mx, s.back());
        }
      std::fill(acc.begin(), acc.end(), 0.0);
      double sum = 0;
      size_t n = 0;
      for (const KvSegment& seg : kv.segments)
        for (int64_t j = 0; j < seg.n; ++j) {
          if (!p.mask.visible(qp, seg.pos0 + j)) continue;
          const double w = std::exp(s[n++] - mx);
          sum += w;
          load_kv_row(kv.type, kv.v_row(seg, j, g), d, vr.data());
          for (int64_t i = 0; i < d; ++i) acc[static_cast<size_t>(i)] += w * vr[static_cast<size_t>(i)];
        }
      for (int64_t i = 0; i < d; ++i) out(t, h, i) = n ? static_cast<float>(acc[static_cast<size_t>(i)] / sum) : 0.f;
    }
  }
}

}  // namespace tessera::backend::scalar
