/// \file
/// Rotary position embedding: cos/sin are computed once per token and pair and
/// shared by all heads (the trigonometry dominates otherwise); the rotation
/// itself is a simple loop the compiler vectorises.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <array>
#include <cmath>
#include <span>

#include "tessera/backend/rope_params.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::backend::simd {

/// Most rotated dims per head rope() takes: its per-call frequency tables live on the stack.
inline constexpr int kMaxRopeDims = 1024;

/// Rotates x in place.  x [n_tokens, n_heads, head_dim] (head rows packed), pos [n_tokens].  O(n).
inline void rope(TensorView<float, 3> x, std::span<const int32_t> pos, const RopeParams& p) {
  TESSERA_CHECK(x.dim(0) == static_cast<int64_t>(pos.size()), "rope: x ", shape_str(x.shape()), " with ", pos.size(),
        " positions");
  check(p.n_dims > 0 && p.n_dims % 2 == 0 && p.n_dims <= x.dim(2) && p.n_dims <= kMaxRopeDims, "rope: n_dims ",
        p.n_dims, " for head_dim ", x.dim(2));
  check(x.stride(2) == 1, "rope: head rows must be packed");
  const int half = p.n_dims / 2;
  std::array<float, kMaxRopeDims / 2> inv_freq{};
  for (int i = 0; i < half; ++i) inv_freq[i] = p.freq(i);
  const float ms = p.mscale();
  parallel_for(x.dim(0), 1, [&](int64_t t0, int64_t t1) {
    std::array<float, kMaxRopeDims / 2> cs{}, sn{};
    for (int64_t t = t0; t < t1; ++t) {
      for (int i = 0; i < half; ++i) {
        const float theta = static_cast<float>(pos[t]) * inv_freq[i];
        cs[i] = std::cos(theta) * ms;
        sn[i] = std::sin(theta) * ms;
      }
      for (int64_t h = 0; h < x.dim(1); ++h) {
        float* v = &x(t, h, 0);
        if (p.style == RopeStyle::interleaved) {
          for (int i = 0; i < half; ++i) {
            const float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cs[i] - b * sn[i];
            v[2 * i + 1] = a * sn[i] + b * cs[i];
          }
        } else {
          for (int i = 0; i < half; ++i) {
            const float a = v[i], b = v[i + half];
            v[i] = a * cs[i] - b * sn[i];
            v[i + half] = a * sn[i] + b * cs[i];
          }
        }
      }
    }
  });
}

}  // namespace tessera::backend::simd

TESSERA_SIMD_WARNINGS_ON
