/// \file
/// The transformer blocks as functions over views, on the compile-time default
/// backend: norms, rotary embedding, SwiGLU, residual add (attention: nn/attention.hpp).
/// Each forwards to backend::active, whose scalar twin is the reference.
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
/// x [n_tokens, n_heads, head_dim] rotated in place; pos [n_tokens].  p.n_dims = 0
/// rotates the whole head.  O(n_tokens n_heads n_dims).
inline void rope(TensorView<float, 3> x, std::span<const int32_t> pos, const RopeParams& p) {
  backend::active::rope(x, pos, p.for_head_dim(x.dim(2)));
}
/// out = silu(gate) * up, elementwise over packed spans.
inline void swiglu(std::span<const float> gate, std::span<const float> up, std::span<float> out) {
  backend::active::swiglu(gate, up, out);
}
/// out = gelu_tanh(gate) * up (GeGLU), elementwise over packed spans.
inline void geglu(std::span<const float> gate, std::span<const float> up, std::span<float> out) {
  backend::active::geglu(gate, up, out);
}
/// out = a + b, elementwise over packed spans (the residual connection).
inline void add(std::span<const float> a, std::span<const float> b, std::span<float> out) {
  backend::active::add(a, b, out);
}

namespace detail {
// Applies a span kernel to matrices of equal shape: in one call when all three
// are packed, row by row when only their rows are (slices of wider tensors).
template <class Kernel>
void rowwise(const char* what, TensorView<const float, 2> a, TensorView<const float, 2> b, TensorView<float, 2> out,
             Kernel&& kernel) {
  TESSERA_CHECK(a.shape() == b.shape() && b.shape() == out.shape(), what, ": shapes ", shape_str(a.shape()), ", ",
                shape_str(b.shape()), " and out ", shape_str(out.shape()), " must be equal");
  TESSERA_CHECK(a.rows_contiguous() && b.rows_contiguous() && out.rows_contiguous(), what,
                ": the last axis of every operand must be packed (stride 1)");
  if (a.is_contiguous() && b.is_contiguous() && out.is_contiguous()) return kernel(a.span(), b.span(), out.span());
  for (int64_t t = 0; t < a.dim(0); ++t) kernel(a.row(t), b.row(t), out.row(t));
}
}  // namespace detail

/// out = silu(gate) * up over matrices [n_tokens, n]; any row strides (views of
/// wider tensors are fine).  out may alias gate or up.
inline void swiglu(TensorView<const float, 2> gate, TensorView<const float, 2> up, TensorView<float, 2> out) {
  detail::rowwise("swiglu", gate, up, out, [](auto g, auto u, auto o) { backend::active::swiglu(g, u, o); });
}
/// out = gelu_tanh(gate) * up over matrices [n_tokens, n]; any row strides; out may alias gate or up.
inline void geglu(TensorView<const float, 2> gate, TensorView<const float, 2> up, TensorView<float, 2> out) {
  detail::rowwise("geglu", gate, up, out, [](auto g, auto u, auto o) { backend::active::geglu(g, u, o); });
}
/// x = gelu_tanh(x) in place over a matrix [n_tokens, n] with packed rows.
inline void gelu(TensorView<float, 2> x) {
  detail::rowwise("gelu", x, x, x, [](auto a, auto, auto o) { backend::active::gelu(a, o); });
}
/// x[t, :] += b for every row t: a bias on a linear layer's output.  x [n_tokens, n], b [n].
inline void add_bias(TensorView<float, 2> x, std::span<const float> b) {
  check(static_cast<int64_t>(b.size()) == x.dim(1), "add_bias: bias of ", b.size(), " for rows of ", x.dim(1));
  TESSERA_CHECK(x.rows_contiguous(), "add_bias: rows must be packed");
  for (int64_t t = 0; t < x.dim(0); ++t) backend::active::add(x.row(t), b, x.row(t));
}
/// out = a + b over matrices [n_tokens, n]; any row strides.  out may alias a or b.
inline void add(TensorView<const float, 2> a, TensorView<const float, 2> b, TensorView<float, 2> out) {
  detail::rowwise("add", a, b, out, [](auto x, auto y, auto o) { backend::active::add(x, y, o); });
}

}  // namespace tessera::nn
