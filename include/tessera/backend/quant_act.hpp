/// \file
/// Which quantized activation block each weight format's integer dot product
/// pairs with: q8_0 for q8_0 / q4_0 / q5_0, q8_1 for q4_1 / q5_1 (its block sum
/// carries the weights' offset term), q8_K for the k-quants (per-16 sums carry theirs).
#pragma once

#include <cmath>
#include <span>
#include <type_traits>

#include "tessera/core/error.hpp"
#include "tessera/core/quant_blocks.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::backend {

/// act_block_of<W>::type is the activation block for weight blocks W; no
/// `type` member for other W, so kernels over them drop out of overload sets.
template <class W>
struct act_block_of {};
/// q8_0 weights: q8_0 activations.
template <> struct act_block_of<block_q8_0> { using type = block_q8_0; };
/// q4_0 weights: q8_0 activations.
template <> struct act_block_of<block_q4_0> { using type = block_q8_0; };
/// q4_1 weights: q8_1 activations, whose block sum carries the weights' offset term.
template <> struct act_block_of<block_q4_1> { using type = block_q8_1; };
/// q5_0 weights: q8_0 activations.
template <> struct act_block_of<block_q5_0> { using type = block_q8_0; };
/// q5_1 weights: q8_1 activations, whose block sum carries the weights' offset term.
template <> struct act_block_of<block_q5_1> { using type = block_q8_1; };
/// q4_K weights: q8_K activations, whose per-16 sums carry the weights' offset term.
template <> struct act_block_of<block_q4_K> { using type = block_q8_K; };
/// q5_K weights: q8_K activations, as q4_K.
template <> struct act_block_of<block_q5_K> { using type = block_q8_K; };
/// q6_K weights: q8_K activations.
template <> struct act_block_of<block_q6_K> { using type = block_q8_K; };
/// \var act_block_of<block_q8_0>::type
/// block_q8_0: the activation block that q8_0 weights pair with.
/// \var act_block_of<block_q4_0>::type
/// block_q8_0: the activation block that q4_0 weights pair with.
/// \var act_block_of<block_q4_1>::type
/// block_q8_1: the activation block that q4_1 weights pair with.
/// \var act_block_of<block_q5_0>::type
/// block_q8_0: the activation block that q5_0 weights pair with.
/// \var act_block_of<block_q5_1>::type
/// block_q8_1: the activation block that q5_1 weights pair with.
/// \var act_block_of<block_q4_K>::type
/// block_q8_K: the activation block that q4_K weights pair with.
/// \var act_block_of<block_q5_K>::type
/// block_q8_K: the activation block that q5_K weights pair with.
/// \var act_block_of<block_q6_K>::type
/// block_q8_K: the activation block that q6_K weights pair with.

/// The activation block for weight blocks W: `act_block_of<W>::type`.
template <class W>
using ActBlock = typename act_block_of<W>::type;

/// A weight block type with integer dot-product kernels.
template <class W>
concept QuantWeight = requires { typename act_block_of<W>::type; };

/// An activation block type (what quantize_activations writes).
template <class A>
concept QuantActivation =
    std::is_same_v<A, block_q8_0> || std::is_same_v<A, block_q8_1> || std::is_same_v<A, block_q8_K>;

namespace detail {
/// acc + a * b with the same rounding at every call site: fused where the
/// target has FMA, two roundings otherwise. Left to -ffp-contract=fast, the
/// compiler fuses some inlined copies and not others, and gemm rows would
/// stop matching gemv bit for bit.
inline float mul_add(float a, float b, float acc) {
#if defined(__FMA__)
  return std::fma(a, b, acc);
#else
  return a * b + acc;
#endif
}

// The shape contracts of the quantized kernels, shared by both backends so
// they reject the same calls with the same messages.
template <class W>
void check_dot_shapes(const char* what, size_t n_w_blocks, size_t n_x_blocks) {
  check(n_w_blocks == n_x_blocks, what, " (", quant_traits<W>::name, "): weight row of ", n_w_blocks,
        " blocks with activations of ", n_x_blocks, " blocks");
}
template <class W>
void check_gemv_shapes(const char* what, const TensorView<const W, 2>& w, size_t n_x, size_t n_x_want,
                       size_t n_y) {
  TESSERA_CHECK(w.rows_contiguous(), what, " (", quant_traits<W>::name, "): weight rows must be packed, strides ",
        shape_str(w.strides()));
  TESSERA_CHECK(n_x == n_x_want && n_y == static_cast<size_t>(w.dim(0)), what, " (", quant_traits<W>::name,
        "): weight ", shape_str(w.shape()), " (blocks) with x [", n_x, "] into y [", n_y, "]");
}
template <class W, class A>
void check_gemm_shapes(const TensorView<const W, 2>& w, const TensorView<const A, 2>& xq,
                       const TensorView<float, 2>& y) {
  check(w.rows_contiguous() && xq.rows_contiguous() && y.rows_contiguous(), "gemm (", quant_traits<W>::name,
        "): rows must be packed");
  TESSERA_CHECK(xq.dim(1) == w.dim(1) && y.dim(0) == xq.dim(0) && y.dim(1) == w.dim(0), "gemm (", quant_traits<W>::name,
        "): weight ", shape_str(w.shape()), " (blocks) with activations ", shape_str(xq.shape()), " into y ",
        shape_str(y.shape()));
}
}  // namespace detail

static_assert(quant_traits<block_q4_K>::block_size == quant_traits<ActBlock<block_q4_K>>::block_size);
static_assert(quant_traits<block_q4_1>::block_size == quant_traits<ActBlock<block_q4_1>>::block_size);

}  // namespace tessera::backend
