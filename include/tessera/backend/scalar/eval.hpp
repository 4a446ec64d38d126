/// \file
/// Reference evaluation of expr/ trees: one element at a time, one thread, row
/// by row; reductions and softmax sums accumulate in double. Every SIMD result
/// is tested against these loops.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/broadcast.hpp"
#include "tessera/expr/expr.hpp"
#include "tessera/expr/reduce.hpp"

namespace tessera::backend::scalar {

namespace detail {

/// Reads node E at the elements of one row of an R-axis space. begin_row(idx)
/// fixes the row (and computes the row's reductions); at(j) is element j.
template <class E, int R>
class Evaluator;

template <int Rl, int R>
class Evaluator<expr::Leaf<Rl>, R> {
 public:
  Evaluator(const expr::Leaf<Rl>& e, const Shape<R>& space)
      : data_(e.view().data()), strides_(expr::broadcast_strides(e.shape(), e.view().strides(), space)) {}
  void begin_row(const Shape<R>& idx) { row_ = data_ + expr::row_offset(idx, strides_); }
  float at(int64_t j) const { return row_[j * strides_[R - 1]]; }

 private:
  const float* data_;
  Shape<R> strides_;
  const float* row_ = nullptr;
};

template <int R>
class Evaluator<expr::Constant, R> {
 public:
  Evaluator(const expr::Constant& e, const Shape<R>&) : value_(e.value()) {}
  void begin_row(const Shape<R>&) {}
  float at(int64_t) const { return value_; }

 private:
  float value_;
};

template <class Op, class A, int R>
class Evaluator<expr::Unary<Op, A>, R> {
 public:
  Evaluator(const expr::Unary<Op, A>& e, const Shape<R>& space) : a_(e.arg(), space) {}
  void begin_row(const Shape<R>& idx) { a_.begin_row(idx); }
  float at(int64_t j) const { return Op{}(a_.at(j)); }

 private:
  Evaluator<A, R> a_;
};

template <class Op, class A, class B, int R>
class Evaluator<expr::Binary<Op, A, B>, R> {
 public:
  Evaluator(const expr::Binary<Op, A, B>& e, const Shape<R>& space) : a_(e.lhs(), space), b_(e.rhs(), space) {}
  void begin_row(const Shape<R>& idx) {
    a_.begin_row(idx);
    b_.begin_row(idx);
  }
  float at(int64_t j) const { return Op{}(a_.at(j), b_.at(j)); }

 private:
  Evaluator<A, R> a_;
  Evaluator<B, R> b_;
};

/// The child is read in the same space with the last extent replaced by the
/// reduced length; the row's result is computed once, in begin_row.
template <class Op, class A, int R>
class Evaluator<expr::ReduceLast<Op, A>, R> {
 public:
  Evaluator(const expr::ReduceLast<Op, A>& e, const Shape<R>& space)
      : n_(e.length()), a_(e.arg(), child_space(space, e.length())) {}
  void begin_row(const Shape<R>& idx) {
    double acc = Op::identity;
    if (n_ > 0) {
      a_.begin_row(idx);
      for (int64_t j = 0; j < n_; ++j) acc = Op::combine(acc, static_cast<double>(a_.at(j)));
    }
    value_ = static_cast<float>(Op::finish(acc, n_));
  }
  float at(int64_t) const { return value_; }

 private:
  static Shape<R> child_space(Shape<R> space, int64_t n) {
    space[R - 1] = n;
    return space;
  }
  int64_t n_;
  Evaluator<A, R> a_;
  float value_ = 0.f;
};

/// Calls body(evaluator, out_row, out_step, n) for every row of dst, in order.
template <int R, class E, class Body>
void for_each_row(const TensorView<float, R>& dst, const E& e, Body&& body) {
  if (dst.empty()) return;
  Evaluator<E, R> ev(e, dst.shape());
  Shape<R> idx{};
  const int64_t n_rows = expr::row_count(dst.shape());
  for (int64_t r = 0; r < n_rows; ++r, expr::next_row(idx, dst.shape())) {
    ev.begin_row(idx);
    body(ev, dst.data() + expr::row_offset(idx, dst.strides()), dst.stride(R - 1));
  }
}

template <class Ev>
float row_max(const Ev& ev, int64_t n) {
  float m = expr::op::MaxReduce::identity;
  for (int64_t j = 0; j < n; ++j) m = expr::op::MaxReduce::combine(m, ev.at(j));
  return m;
}

template <class Ev>
double row_sum_exp(const Ev& ev, int64_t n, float m) {
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::exp(ev.at(j) - m);
  return s;
}

}  // namespace detail

/// dst = e, element by element. dst [shape of e]; any strides. dst may be the
/// very view of a leaf (in place), but must not partly overlap one. Throws
/// Error if the shapes differ. O(size of dst + reduced lengths per row).
template <expr::Destination D, expr::Tensorish X>
void eval(D&& dst_in, X&& x) {
  const auto dst = expr::dst_view(std::forward<D>(dst_in));
  const auto e = expr::as_expr(std::forward<X>(x));
  constexpr int R = std::remove_cvref_t<decltype(dst)>::rank;
  static_assert(std::remove_cvref_t<decltype(e)>::rank == R,
                "eval: the destination's rank differs from the expression's");
  expr::check_destination(dst.shape(), e.shape(), "eval");
  detail::for_each_row(dst, e, [&](const auto& ev, float* out, int64_t step) {
    for (int64_t j = 0; j < dst.dim(R - 1); ++j) out[j * step] = ev.at(j);
  });
}

/// Row-wise softmax over the last axis: exp(x - max) / sum exp(x - max).
/// x, dst [..., n]; dst may be x itself. A row of all -inf gives NaN. O(3 n) per row.
template <expr::Destination D, expr::Tensorish X>
void softmax(D&& dst_in, X&& x) {
  const auto dst = expr::dst_view(std::forward<D>(dst_in));
  const auto e = expr::as_expr(std::forward<X>(x));
  constexpr int R = std::remove_cvref_t<decltype(dst)>::rank;
  static_assert(std::remove_cvref_t<decltype(e)>::rank == R,
                "softmax: the destination's rank differs from the input's");
  expr::check_destination(dst.shape(), e.shape(), "softmax");
  const int64_t n = dst.dim(R - 1);
  detail::for_each_row(dst, e, [&](const auto& ev, float* out, int64_t step) {
    const float m = detail::row_max(ev, n);
    const float inv = static_cast<float>(1.0 / detail::row_sum_exp(ev, n, m));
    for (int64_t j = 0; j < n; ++j) out[j * step] = std::exp(ev.at(j) - m) * inv;
  });
}

/// Row-wise log-softmax: x - max - log(sum exp(x - max)). Shapes as softmax.
template <expr::Destination D, expr::Tensorish X>
void log_softmax(D&& dst_in, X&& x) {
  const auto dst = expr::dst_view(std::forward<D>(dst_in));
  const auto e = expr::as_expr(std::forward<X>(x));
  constexpr int R = std::remove_cvref_t<decltype(dst)>::rank;
  static_assert(std::remove_cvref_t<decltype(e)>::rank == R,
                "log_softmax: the destination's rank differs from the input's");
  expr::check_destination(dst.shape(), e.shape(), "log_softmax");
  const int64_t n = dst.dim(R - 1);
  detail::for_each_row(dst, e, [&](const auto& ev, float* out, int64_t step) {
    const float m = detail::row_max(ev, n);
    const float log_sum = static_cast<float>(std::log(detail::row_sum_exp(ev, n, m)));
    for (int64_t j = 0; j < n; ++j) out[j * step] = ev.at(j) - m - log_sum;
  });
}

/// Index of the largest element of each row: the first index whose value
/// equals the row's maximum (NaNs skipped), 0 if there is none (all NaN or
/// n = 0). x [..., n] -> dst [..., 1] of int64_t or int32_t. O(n) per row.
template <class I, int R, expr::Tensorish X>
  requires(std::is_same_v<I, int64_t> || std::is_same_v<I, int32_t>)
void argmax_last(const TensorView<I, R>& dst, X&& x) {
  const auto e = expr::as_expr(std::forward<X>(x));
  static_assert(std::remove_cvref_t<decltype(e)>::rank == R,
                "argmax_last: the destination's rank differs from the input's");
  const int64_t n = expr::check_argmax_destination<I>(dst.shape(), e.shape());
  const Shape<R>& want = dst.shape();  // checked: the input shape with the last axis 1
  if (dst.empty()) return;
  detail::Evaluator<std::remove_const_t<decltype(e)>, R> ev(e, e.shape());
  Shape<R> idx{};
  const int64_t n_rows = expr::row_count(want);
  for (int64_t r = 0; r < n_rows; ++r, expr::next_row(idx, want)) {
    int64_t best_j = 0;
    if (n > 0) {
      ev.begin_row(idx);
      float best = expr::op::MaxReduce::identity;
      bool found = false;
      for (int64_t j = 0; j < n; ++j) {
        const float v = ev.at(j);
        if (v > best || (!found && v == best)) best = v, best_j = j, found = true;
      }
    }
    dst.data()[expr::row_offset(idx, dst.strides())] = static_cast<I>(best_j);
  }
}
/// argmax_last into an owning tensor (through its view).
template <class I, int R, expr::Tensorish X>
void argmax_last(Tensor<I, R>& dst, X&& x) { argmax_last(dst.view(), std::forward<X>(x)); }

}  // namespace tessera::backend::scalar
