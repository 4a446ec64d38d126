/// \file
/// Expression nodes: a tree that only describes elementwise work over float
/// tensors (leaves are strided views, constants are scalars). Evaluators in
/// backend/ walk the tree; nothing here computes a value or names a backend.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "tessera/core/tensor.hpp"
#include "tessera/expr/broadcast.hpp"
#include "tessera/expr/ops.hpp"

namespace tessera::expr {

/// Base of every node type; marks a class as an expression.
struct NodeTag {};

/// A tensor read in place through a view of any strides. Holds no data: the
/// viewed tensor must outlive the evaluation.
template <int R>
class Leaf : public NodeTag {
  static_assert(R >= 1 && R <= 4, "expression operands have rank 1 to 4");

 public:
  static constexpr int rank = R;  ///< Number of axes of the node's shape.
  explicit Leaf(const TensorView<const float, R>& v) : view_(v) {}  ///< Reads v (copies the view, not the data).
  Shape<R> shape() const { return view_.shape(); }  ///< Shape of the viewed tensor.
  const TensorView<const float, R>& view() const { return view_; }  ///< The view that is read.

 private:
  TensorView<const float, R> view_;
};

/// A float scalar: rank 0, broadcasts against anything.
class Constant : public NodeTag {
 public:
  static constexpr int rank = 0;  ///< A scalar has no axes.
  explicit Constant(float v) : value_(v) {}  ///< The scalar v.
  Shape<0> shape() const { return {}; }  ///< The empty shape.
  float value() const { return value_; }  ///< The scalar.

 private:
  float value_;
};

/// Op (a functor of ops.hpp) applied to every element of A.
template <class Op, class A>
class Unary : public NodeTag {
 public:
  using op_type = Op;  ///< The functor applied to each element.
  static constexpr int rank = A::rank;  ///< Same rank as the operand.
  explicit Unary(A a) : a_(std::move(a)) {}  ///< Op applied to a (the node holds a by value).
  Shape<rank> shape() const { return a_.shape(); }  ///< Same shape as the operand.
  const A& arg() const { return a_; }  ///< The operand.

 private:
  A a_;
};

/// Op applied to A and B broadcast against each other. The shapes are checked
/// here, when the expression is built, so a bad pair fails at its own line.
template <class Op, class A, class B>
class Binary : public NodeTag {
 public:
  using op_type = Op;  ///< The functor applied to each pair of elements.
  static constexpr int rank = A::rank > B::rank ? A::rank : B::rank;  ///< The larger operand rank.
  /// Op applied to a and b; throws Error naming both shapes if they do not broadcast.
  Binary(A a, B b) : a_(std::move(a)), b_(std::move(b)), shape_(broadcast_shape(a_.shape(), b_.shape())) {}
  Shape<rank> shape() const { return shape_; }  ///< The broadcast shape of the operands.
  const A& lhs() const { return a_; }  ///< The left operand.
  const B& rhs() const { return b_; }  ///< The right operand.

 private:
  A a_;
  B b_;
  Shape<rank> shape_;
};

// ---- what may appear as an operand -------------------------------------------

namespace detail {
template <class T>
struct FloatViewRank : std::integral_constant<int, 0> {};
template <int R>
struct FloatViewRank<TensorView<float, R>> : std::integral_constant<int, R> {};
template <int R>
struct FloatViewRank<TensorView<const float, R>> : std::integral_constant<int, R> {};

template <class T>
struct FloatTensorRank : std::integral_constant<int, 0> {};
template <int R>
struct FloatTensorRank<Tensor<float, R>> : std::integral_constant<int, R> {};
}  // namespace detail

/// An expression node.
template <class T>
concept Node = std::is_base_of_v<NodeTag, std::remove_cvref_t<T>>;
/// A float view of any const-ness.
template <class T>
concept FloatView = detail::FloatViewRank<std::remove_cvref_t<T>>::value > 0;
/// A float tensor.  Only lvalues become leaves: as_expr rejects a temporary,
/// which would dangle, with a message saying so.
template <class T>
concept FloatTensor = detail::FloatTensorRank<std::remove_cvref_t<T>>::value > 0;
/// Anything with a shape that can be read as an expression.
template <class T>
concept Tensorish = Node<T> || FloatView<T> || FloatTensor<T>;
/// A Tensorish or a number (which becomes a Constant).
template <class T>
concept Operand = Tensorish<T> || std::is_arithmetic_v<std::remove_cvref_t<T>>;

/// The node for an operand: nodes are copied (they hold views, not data),
/// views and tensors become leaves, numbers become constants.
template <Operand T>
auto as_expr(T&& x) {
  using U = std::remove_cvref_t<T>;
  if constexpr (Node<T>) return U(x);
  else if constexpr (FloatView<T>) return Leaf<detail::FloatViewRank<U>::value>(x);
  else if constexpr (FloatTensor<T>) {
    static_assert(std::is_lvalue_reference_v<T>,
                  "tessera::expr: a temporary Tensor cannot be an operand (the expression would keep a view of "
                  "freed memory); store it in a named Tensor first, or pass the view of one that outlives the "
                  "expression");
    return Leaf<detail::FloatTensorRank<U>::value>(std::as_const(x).view());
  }
  else return Constant(static_cast<float>(x));
}

/// The node type as_expr makes from an operand of type T.
template <class T>
using ExprOf = decltype(as_expr(std::declval<T>()));

/// The writable view of a destination: a float view or an lvalue float tensor.
template <int R>
TensorView<float, R> dst_view(const TensorView<float, R>& v) { return v; }
/// The writable view of an lvalue float tensor (a temporary cannot be a destination).
template <int R>
TensorView<float, R> dst_view(Tensor<float, R>& t) { return t.view(); }

/// What an expression can be evaluated into: a float view or an lvalue float tensor.
template <class T>
concept Destination = requires(T&& d) { dst_view(std::forward<T>(d)); };

}  // namespace tessera::expr
