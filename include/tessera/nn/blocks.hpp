// The transformer blocks as functions over views, on the compile-time default
// backend: norms, rotary embedding, SwiGLU, residual add (attention: nn/attention.hpp).
// Each forwards to backend::active, whose scalar twin is the reference.
#pragma once

#include <span>

#include "tessera/backend/backend.hpp"
#include "tessera/backend/scalar/activation.hpp"
#include "tessera/backend/scalar/norm.hpp"
#include "tessera/backend/scalar/rope.hpp"
#include "tessera/backend/simd/activation.hpp"
#include "tessera/backend/simd/norm.hpp"
#include "tessera/backend/simd/rope.hpp"

namespace tessera::nn {

/// x, out [n_tokens, n_embd]; w [n_embd].  out = x / rms(x) * w.
inline void rms_norm(TensorView<const float, 2> x, std::span<const float> w, float eps, TensorView<float, 2> out) {
  backend::active::rms_norm(x, w, eps, out);
}
/// x, out [n_tokens, n_embd]; w, b [n_embd] (b may be empty).
inline void layer_norm(TensorView<const float, 2> x, std::span<const float> w, std::span<const float> b, float eps,
                       TensorView<float, 2> out) {
  backend::active::layer_norm(x, w, b, eps, out);
}
/// x [n_tokens, n_heads, head_dim] rotated in place; pos [n_tokens].
inline void rope(TensorView<float, 3> x, std::span<const int32_t> pos, const RopeParams& p) {
  backend::active::rope(x, pos, p);
}
/// out = silu(gate) * up, elementwise.
inline void swiglu(std::span<const float> gate, std::span<const float> up, std::span<float> out) {
  backend::active::swiglu(gate, up, out);
}
/// out = a + b, elementwise (the residual connection).
inline void add(std::span<const float> a, std::span<const float> b, std::span<float> out) {
  backend::active::add(a, b, out);
}

}  // namespace tessera::nn
