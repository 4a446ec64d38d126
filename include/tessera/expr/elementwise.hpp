/// \file
/// The elementwise vocabulary: exp, log, tanh, sigmoid, silu, gelu, gelu_erf,
/// relu, sqrt, rsqrt, abs, unary -, and + - * / min max between expressions,
/// views, tensors and numbers. Each call only builds a node; nothing is computed.
///
/// The operators and the names `<cmath>` does not have (silu, sigmoid, gelu,
/// gelu_erf, relu, rsqrt, in) are also declared in namespace tessera, so
/// argument-dependent lookup finds them on plain tensors and views: `silu(g) * u`.
/// exp, log, tanh, sqrt, abs, min and max stay in tessera::expr, where they never
/// shadow `<cmath>` in tessera's own code: call them as expr::exp(view), or
/// unqualified once one argument is already an expression node.
#pragma once

#include <utility>

#include "tessera/expr/expr.hpp"
#include "tessera/expr/ops.hpp"

namespace tessera::expr {

/// Wraps a view or tensor as an expression leaf (or passes a node through).
template <Tensorish T>
auto in(T&& x) { return as_expr(std::forward<T>(x)); }

/// The Unary node of Op over x (a view, tensor or node). [*] -> [*]
template <class Op, Tensorish T>
auto make_unary(T&& x) {
  return Unary<Op, ExprOf<T>>(as_expr(std::forward<T>(x)));
}

/// Two operands of which at least one has a shape (two numbers make no node).
template <class A, class B>
concept BinaryOperands = Operand<A> && Operand<B> && (Tensorish<A> || Tensorish<B>);

/// The node for a op b; throws Error naming both shapes if they do not broadcast.
template <class Op, class A, class B>
  requires BinaryOperands<A, B>
auto make_binary(A&& a, B&& b) {
  return Binary<Op, ExprOf<A>, ExprOf<B>>(as_expr(std::forward<A>(a)), as_expr(std::forward<B>(b)));
}

// Unary functions, shape preserved. [*] -> [*]
template <Tensorish T> auto exp(T&& x) { return make_unary<op::Exp>(std::forward<T>(x)); }  ///< e^x per element.
template <Tensorish T> auto log(T&& x) { return make_unary<op::Log>(std::forward<T>(x)); }  ///< Natural logarithm per element.
template <Tensorish T> auto tanh(T&& x) { return make_unary<op::Tanh>(std::forward<T>(x)); }  ///< Hyperbolic tangent per element.
template <Tensorish T> auto sqrt(T&& x) { return make_unary<op::Sqrt>(std::forward<T>(x)); }  ///< Square root per element.
template <Tensorish T> auto rsqrt(T&& x) { return make_unary<op::Rsqrt>(std::forward<T>(x)); }  ///< 1 / sqrt(x) per element (a full-precision division, not the hardware estimate).
template <Tensorish T> auto abs(T&& x) { return make_unary<op::Abs>(std::forward<T>(x)); }  ///< |x| per element.
template <Tensorish T> auto sigmoid(T&& x) { return make_unary<op::Sigmoid>(std::forward<T>(x)); }  ///< 1 / (1 + e^-x) per element.
template <Tensorish T> auto silu(T&& x) { return make_unary<op::Silu>(std::forward<T>(x)); }  ///< x * sigmoid(x) per element.
template <Tensorish T> auto gelu(T&& x) { return make_unary<op::Gelu>(std::forward<T>(x)); }  ///< GELU per element, tanh approximation.
template <Tensorish T> auto gelu_erf(T&& x) { return make_unary<op::GeluErf>(std::forward<T>(x)); }  ///< GELU per element, exact erf form.
template <Tensorish T> auto relu(T&& x) { return make_unary<op::Relu>(std::forward<T>(x)); }  ///< max(x, 0) per element (0 for NaN).
template <Tensorish T> auto operator-(T&& x) { return make_unary<op::Neg>(std::forward<T>(x)); }  ///< -x per element.

// Binary operators and functions, broadcast. [a...] op [b...] -> [broadcast(a, b)]
/// Elementwise a + b, broadcast.
template <class A, class B> requires BinaryOperands<A, B>
auto operator+(A&& a, B&& b) { return make_binary<op::Add>(std::forward<A>(a), std::forward<B>(b)); }
/// Elementwise a - b, broadcast.
template <class A, class B> requires BinaryOperands<A, B>
auto operator-(A&& a, B&& b) { return make_binary<op::Sub>(std::forward<A>(a), std::forward<B>(b)); }
/// Elementwise a * b, broadcast.
template <class A, class B> requires BinaryOperands<A, B>
auto operator*(A&& a, B&& b) { return make_binary<op::Mul>(std::forward<A>(a), std::forward<B>(b)); }
/// Elementwise a / b, broadcast.
template <class A, class B> requires BinaryOperands<A, B>
auto operator/(A&& a, B&& b) { return make_binary<op::Div>(std::forward<A>(a), std::forward<B>(b)); }
/// Elementwise std::min(a, b) (a unless b < a).
template <class A, class B> requires BinaryOperands<A, B>
auto min(A&& a, B&& b) { return make_binary<op::Min>(std::forward<A>(a), std::forward<B>(b)); }
/// Elementwise std::max(a, b) (a unless a < b).
template <class A, class B> requires BinaryOperands<A, B>
auto max(A&& a, B&& b) { return make_binary<op::Max>(std::forward<A>(a), std::forward<B>(b)); }

}  // namespace tessera::expr

namespace tessera {
using expr::gelu;
using expr::gelu_erf;
using expr::in;
using expr::relu;
using expr::rsqrt;
using expr::sigmoid;
using expr::silu;
using expr::operator+;
using expr::operator-;
using expr::operator*;
using expr::operator/;
}  // namespace tessera
