/// \file
/// SwiGLU, GeGLU, GELU and residual add with xsimd batches (xsimd::exp is a few ulp from std::exp).
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <cmath>
#include <span>

#include "tessera/backend/scalar/activation.hpp"
#include "tessera/backend/simd/load.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/parallel.hpp"

namespace tessera::backend::simd {

/// out[i] = silu(gate[i]) * up[i].  Same contract as scalar::swiglu.
inline void swiglu(std::span<const float> gate, std::span<const float> up, std::span<float> out) {
  check(gate.size() == up.size() && up.size() == out.size(), "swiglu: sizes ", gate.size(), ", ", up.size(), ", ",
        out.size());
  parallel_for(static_cast<int64_t>(out.size()), 4096, [&](int64_t i0, int64_t i1) {
    const fbatch one(1.f);
    int64_t i = i0;
    for (; i + static_cast<int64_t>(kWidth) <= i1; i += kWidth) {
      const fbatch g = load(gate.data() + i);
      (g / (one + xsimd::exp(-g)) * load(up.data() + i)).store_unaligned(out.data() + i);
    }
    for (; i < i1; ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
  });
}

namespace detail {
/// gelu_tanh over a batch: x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), the same
/// function as 0.5 x (1 + tanh(u)) written with one exp (xsimd's tanh is slower).
inline fbatch gelu_tanh(fbatch x) {
  const fbatch u = fbatch(2.f * 0.7978845608028654f) * (x + fbatch(0.044715f) * x * x * x);
  return x / (fbatch(1.f) + xsimd::exp(-u));
}
}  // namespace detail

/// out[i] = gelu_tanh(gate[i]) * up[i].  Same contract as scalar::geglu.
inline void geglu(std::span<const float> gate, std::span<const float> up, std::span<float> out) {
  check(gate.size() == up.size() && up.size() == out.size(), "geglu: sizes ", gate.size(), ", ", up.size(), ", ",
        out.size());
  parallel_for(static_cast<int64_t>(out.size()), 4096, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + static_cast<int64_t>(kWidth) <= i1; i += kWidth)
      (detail::gelu_tanh(load(gate.data() + i)) * load(up.data() + i)).store_unaligned(out.data() + i);
    for (; i < i1; ++i) out[i] = scalar::gelu_tanh(gate[i]) * up[i];
  });
}

/// out[i] = gelu_tanh(x[i]).  Same contract as scalar::gelu.
inline void gelu(std::span<const float> x, std::span<float> out) {
  check(x.size() == out.size(), "gelu: sizes ", x.size(), ", ", out.size());
  parallel_for(static_cast<int64_t>(out.size()), 4096, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + static_cast<int64_t>(kWidth) <= i1; i += kWidth)
      detail::gelu_tanh(load(x.data() + i)).store_unaligned(out.data() + i);
    for (; i < i1; ++i) out[i] = scalar::gelu_tanh(x[i]);
  });
}

/// out[i] = a[i] + b[i].
inline void add(std::span<const float> a, std::span<const float> b, std::span<float> out) {
  check(a.size() == b.size() && b.size() == out.size(), "add: sizes ", a.size(), ", ", b.size(), ", ", out.size());
  parallel_for(static_cast<int64_t>(out.size()), 16384, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + static_cast<int64_t>(kWidth) <= i1; i += kWidth)
      (load(a.data() + i) + load(b.data() + i)).store_unaligned(out.data() + i);
    for (; i < i1; ++i) out[i] = a[i] + b[i];
  });
}

}  // namespace tessera::backend::simd

TESSERA_SIMD_WARNINGS_ON
