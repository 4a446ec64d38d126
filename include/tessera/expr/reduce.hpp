/// \file
/// Reductions along the last axis as expression nodes: sum_last, mean_last,
/// max_last, min_last. The result keeps the axis with extent 1, so it is both a
/// value to evaluate into a [..., 1] destination and an operand that broadcasts
/// back over the row it came from (x * rsqrt(mean_last(x * x) + eps)).
#pragma once

#include <type_traits>
#include <utility>

#include "tessera/expr/expr.hpp"
#include "tessera/expr/ops.hpp"

namespace tessera::expr {

/// Op (a reduction of ops.hpp) over the last axis of A. [..., n] -> [..., 1]
template <class Op, class A>
class ReduceLast : public NodeTag {
  static_assert(A::rank >= 1, "a reduction needs an axis: reduce a tensor, not a number");

 public:
  using op_type = Op;  ///< The reduction functor (identity, combine, finish).
  static constexpr int rank = A::rank;  ///< Same rank as the operand: the reduced axis is kept.
  explicit ReduceLast(A a) : a_(std::move(a)) {}  ///< Op over the last axis of a (the node holds a by value).
  /// The operand's shape with the last extent set to 1.
  Shape<rank> shape() const {
    Shape<rank> s = a_.shape();
    s[rank - 1] = 1;
    return s;
  }
  /// Length of the reduced axis.
  int64_t length() const { return a_.shape()[rank - 1]; }
  const A& arg() const { return a_; }  ///< The operand.

 private:
  A a_;
};

/// The ReduceLast node of Op over x (a view, tensor or node). [..., n] -> [..., 1]
template <class Op, Tensorish T>
auto make_reduce(T&& x) {
  return ReduceLast<Op, ExprOf<T>>(as_expr(std::forward<T>(x)));
}

/// Row sums. [..., n] -> [..., 1]
template <Tensorish T> auto sum_last(T&& x) { return make_reduce<op::SumReduce>(std::forward<T>(x)); }
/// Row means (NaN for n = 0). [..., n] -> [..., 1]
template <Tensorish T> auto mean_last(T&& x) { return make_reduce<op::MeanReduce>(std::forward<T>(x)); }
/// Row maxima, NaNs skipped (-inf for n = 0). [..., n] -> [..., 1]
template <Tensorish T> auto max_last(T&& x) { return make_reduce<op::MaxReduce>(std::forward<T>(x)); }
/// Row minima, NaNs skipped (+inf for n = 0). [..., n] -> [..., 1]
template <Tensorish T> auto min_last(T&& x) { return make_reduce<op::MinReduce>(std::forward<T>(x)); }

/// True when the tree holds a reduction: its rows must then be evaluated whole
/// (the reduction runs once per row), and axes may not be merged.
template <class E>
inline constexpr bool contains_reduce_v = false;
/// A unary node holds a reduction if its operand does.
template <class Op, class A>
inline constexpr bool contains_reduce_v<Unary<Op, A>> = contains_reduce_v<A>;
/// A binary node holds a reduction if either operand does.
template <class Op, class A, class B>
inline constexpr bool contains_reduce_v<Binary<Op, A, B>> = contains_reduce_v<A> || contains_reduce_v<B>;
/// A reduction node always does.
template <class Op, class A>
inline constexpr bool contains_reduce_v<ReduceLast<Op, A>> = true;

}  // namespace tessera::expr
