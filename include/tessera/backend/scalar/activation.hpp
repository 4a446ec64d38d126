/// \file
/// Reference elementwise kernels on the transformer's hot path: the fused
/// SwiGLU gate (silu(gate) * up in one pass) and the residual add.
#pragma once

#include <cmath>
#include <span>

#include "tessera/core/error.hpp"

namespace tessera::backend::scalar {

/// out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x).  All spans the same length; out may alias either input.
inline void swiglu(std::span<const float> gate, std::span<const float> up, std::span<float> out) {
  check(gate.size() == up.size() && up.size() == out.size(), "swiglu: sizes ", gate.size(), ", ", up.size(), ", ",
        out.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

/// out[i] = a[i] + b[i].  out may alias a or b.
inline void add(std::span<const float> a, std::span<const float> b, std::span<float> out) {
  check(a.size() == b.size() && b.size() == out.size(), "add: sizes ", a.size(), ", ", b.size(), ", ", out.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = a[i] + b[i];
}

}  // namespace tessera::backend::scalar
