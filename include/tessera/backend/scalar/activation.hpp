/// \file
/// Reference elementwise kernels on the transformer's hot path: the fused
/// gates (silu(gate) * up and gelu(gate) * up in one pass), GELU and the
/// residual add.
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

/// GELU in its tanh form, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): what
/// GPT-2 and Gemma were trained with (gelu_pytorch_tanh).
inline float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * x * (1.f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

/// out[i] = gelu_tanh(gate[i]) * up[i] (GeGLU).  Same contract as swiglu.
inline void geglu(std::span<const float> gate, std::span<const float> up, std::span<float> out) {
  check(gate.size() == up.size() && up.size() == out.size(), "geglu: sizes ", gate.size(), ", ", up.size(), ", ",
        out.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = gelu_tanh(gate[i]) * up[i];
}

/// out[i] = gelu_tanh(x[i]) (an ungated MLP).  out may alias x.
inline void gelu(std::span<const float> x, std::span<float> out) {
  check(x.size() == out.size(), "gelu: sizes ", x.size(), ", ", out.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = gelu_tanh(x[i]);
}

/// out[i] = a[i] + b[i].  out may alias a or b.
inline void add(std::span<const float> a, std::span<const float> b, std::span<float> out) {
  check(a.size() == b.size() && b.size() == out.size(), "add: sizes ", a.size(), ", ", b.size(), ", ", out.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = a[i] + b[i];
}

}  // namespace tessera::backend::scalar
