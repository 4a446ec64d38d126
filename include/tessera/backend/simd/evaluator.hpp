/// \file
/// SIMD evaluators of expr/ nodes: each reads one row of the iteration space,
/// a batch of kWidth consecutive elements at a time (batch(j)) or one element
/// (at(j), for tails). The whole tree inlines into the caller's loop body.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "tessera/core/tensor.hpp"
#include "tessera/expr/broadcast.hpp"
#include "tessera/expr/expr.hpp"
#include "tessera/expr/reduce.hpp"

namespace tessera::backend::simd::detail {

// xsimd 8.1's avx512bw kernels for small integers do not compile where its
// float log reaches them; the float maths is identical one level down.
#if XSIMD_VERSION_MAJOR == 8 && defined(__AVX512BW__) && defined(__AVX512DQ__)
using EvalArch = xsimd::avx512dq;
#elif XSIMD_VERSION_MAJOR == 8 && defined(__AVX512BW__)
using EvalArch = xsimd::avx512f;
#else
using EvalArch = xsimd::default_arch;
#endif
using EvalBatch = xsimd::batch<float, EvalArch>;
inline constexpr int64_t kEvalWidth = static_cast<int64_t>(EvalBatch::size);

/// Reads node E over an R-axis space. begin_row(idx) fixes the row (and
/// computes the row's reductions); batch<kUnit>(j) is elements [j, j +
/// kEvalWidth), at(j) element j. kUnit = true may be passed when unit_rows()
/// holds (every leaf packed along the row): loads then need no dispatch, which
/// measured 10-15% on in-cache chains. visit_strides(f) hands every leaf's
/// bound strides to f, so the driver can merge axes; reduce_work() is the
/// per-row cost of reductions.
template <class E, int R>
class Evaluator;

/// A leaf's last-axis stride picks how a batch is read: 1 = one unaligned
/// load, 0 = the row's single value splatted once per row, otherwise a gather
/// through a small buffer. The branch is the same for a whole row, so it is
/// predicted; a leaf never changes kind in the middle of a row.
template <int Rl, int R>
class Evaluator<expr::Leaf<Rl>, R> {
 public:
  Evaluator(const expr::Leaf<Rl>& e, const Shape<R>& space)
      : data_(e.view().data()), strides_(expr::broadcast_strides(e.shape(), e.view().strides(), space)) {}
  void begin_row(const Shape<R>& idx) {
    row_ = data_ + expr::row_offset(idx, strides_);
    step_ = strides_[R - 1];
    if (step_ == 0) splat_ = EvalBatch(*row_);
  }
  float at(int64_t j) const { return row_[j * step_]; }
  template <bool kUnit>
  EvalBatch batch(int64_t j) const {
    if (kUnit || step_ == 1) return EvalBatch::load_unaligned(row_ + j);
    if (step_ == 0) return splat_;
    alignas(64) float lanes[kEvalWidth];
    for (int64_t i = 0; i < kEvalWidth; ++i) lanes[i] = row_[(j + i) * step_];
    return EvalBatch::load_aligned(lanes);
  }
  bool unit_rows() const { return strides_[R - 1] == 1; }
  template <class F> void visit_strides(F&& f) { f(strides_); }
  int64_t reduce_work() const { return 0; }

 private:
  const float* data_;
  Shape<R> strides_;
  const float* row_ = nullptr;
  int64_t step_ = 0;
  EvalBatch splat_ = EvalBatch::broadcast(0.f);
};

template <int R>
class Evaluator<expr::Constant, R> {
 public:
  Evaluator(const expr::Constant& e, const Shape<R>&) : value_(e.value()), splat_(e.value()) {}
  void begin_row(const Shape<R>&) {}
  float at(int64_t) const { return value_; }
  template <bool>
  EvalBatch batch(int64_t) const { return splat_; }
  bool unit_rows() const { return true; }
  template <class F> void visit_strides(F&&) {}
  int64_t reduce_work() const { return 0; }

 private:
  float value_;
  EvalBatch splat_;
};

template <class Op, class A, int R>
class Evaluator<expr::Unary<Op, A>, R> {
 public:
  Evaluator(const expr::Unary<Op, A>& e, const Shape<R>& space) : a_(e.arg(), space) {}
  void begin_row(const Shape<R>& idx) { a_.begin_row(idx); }
  float at(int64_t j) const { return Op{}(a_.at(j)); }
  template <bool kUnit>
  EvalBatch batch(int64_t j) const { return Op{}(a_.template batch<kUnit>(j)); }
  bool unit_rows() const { return a_.unit_rows(); }
  template <class F> void visit_strides(F&& f) { a_.visit_strides(f); }
  int64_t reduce_work() const { return a_.reduce_work(); }

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
  template <bool kUnit>
  EvalBatch batch(int64_t j) const { return Op{}(a_.template batch<kUnit>(j), b_.template batch<kUnit>(j)); }
  bool unit_rows() const { return a_.unit_rows() && b_.unit_rows(); }
  template <class F> void visit_strides(F&& f) {
    a_.visit_strides(f);
    b_.visit_strides(f);
  }
  int64_t reduce_work() const { return a_.reduce_work() + b_.reduce_work(); }

 private:
  Evaluator<A, R> a_;
  Evaluator<B, R> b_;
};

/// Folds elements [0, n) of the current row of ev with Op: two batch
/// accumulators (to hide the add/max latency), then the lanes, then the tail.
template <class Op, bool kUnit, class Ev>
float reduce_row(const Ev& ev, int64_t n) {
  EvalBatch acc0(Op::identity), acc1(Op::identity);
  int64_t j = 0;
  for (; j + 2 * kEvalWidth <= n; j += 2 * kEvalWidth) {
    acc0 = Op::combine(acc0, ev.template batch<kUnit>(j));
    acc1 = Op::combine(acc1, ev.template batch<kUnit>(j + kEvalWidth));
  }
  if (j + kEvalWidth <= n) acc0 = Op::combine(acc0, ev.template batch<kUnit>(j)), j += kEvalWidth;
  alignas(64) float lanes[kEvalWidth];
  Op::combine(acc0, acc1).store_aligned(lanes);
  float acc = Op::identity;
  for (int64_t i = 0; i < kEvalWidth; ++i) acc = Op::combine(acc, lanes[i]);
  for (; j < n; ++j) acc = Op::combine(acc, ev.at(j));
  return acc;
}

/// The child is read in the same space with the last extent replaced by the
/// reduced length; the row's value is computed once, in begin_row, and read
/// back as a splat. Axes are never merged under a reduction (its rows matter),
/// so visit_strides does not descend.
template <class Op, class A, int R>
class Evaluator<expr::ReduceLast<Op, A>, R> {
 public:
  Evaluator(const expr::ReduceLast<Op, A>& e, const Shape<R>& space)
      : n_(e.length()), a_(e.arg(), child_space(space, e.length())), unit_(a_.unit_rows()) {}
  void begin_row(const Shape<R>& idx) {
    float acc = Op::identity;
    if (n_ > 0) {
      a_.begin_row(idx);
      acc = unit_ ? reduce_row<Op, true>(a_, n_) : reduce_row<Op, false>(a_, n_);
    }
    value_ = Op::finish(acc, n_);
    splat_ = EvalBatch(value_);
  }
  float at(int64_t) const { return value_; }
  template <bool>
  EvalBatch batch(int64_t) const { return splat_; }
  bool unit_rows() const { return true; }  // a splat, whatever its child
  template <class F> void visit_strides(F&&) {}
  int64_t reduce_work() const { return n_ + a_.reduce_work(); }

 private:
  static Shape<R> child_space(Shape<R> space, int64_t n) {
    space[R - 1] = n;
    return space;
  }
  int64_t n_;
  Evaluator<A, R> a_;
  bool unit_;
  float value_ = 0.f;
  EvalBatch splat_ = EvalBatch::broadcast(0.f);
};

}  // namespace tessera::backend::simd::detail

TESSERA_SIMD_WARNINGS_ON
