/// \file
/// Reference rotary position embedding: each pair (a, b) of a head is rotated by
/// theta = pos * freq(i) (base^(-2i/n_dims), scaled): (a cos - b sin, a sin + b cos),
/// times mscale for YaRN.
#pragma once

#include <cmath>
#include <span>

#include "tessera/backend/rope_params.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::backend::scalar {

/// Rotates x in place.  x [n_tokens, n_heads, head_dim], pos [n_tokens] (absolute positions).  O(n).
inline void rope(TensorView<float, 3> x, std::span<const int32_t> pos, const RopeParams& p) {
  TESSERA_CHECK(x.dim(0) == static_cast<int64_t>(pos.size()), "rope: x ", shape_str(x.shape()), " with ", pos.size(),
        " positions");
  check(p.n_dims > 0 && p.n_dims % 2 == 0 && p.n_dims <= x.dim(2), "rope: n_dims ", p.n_dims, " for head_dim ",
        x.dim(2));
  const int half = p.n_dims / 2;
  for (int64_t t = 0; t < x.dim(0); ++t)
    for (int64_t h = 0; h < x.dim(1); ++h)
      for (int i = 0; i < half; ++i) {
        // Same association as the SIMD table (pos * freq), so both round theta alike.
        const float theta = static_cast<float>(pos[t]) * p.freq(i);
        const float c = std::cos(theta) * p.mscale(), s = std::sin(theta) * p.mscale();
        const int64_t ia = p.style == RopeStyle::interleaved ? 2 * i : i;
        const int64_t ib = p.style == RopeStyle::interleaved ? 2 * i + 1 : i + half;
        const float a = x(t, h, ia), b = x(t, h, ib);
        x(t, h, ia) = a * c - b * s;
        x(t, h, ib) = a * s + b * c;
      }
}

}  // namespace tessera::backend::scalar
