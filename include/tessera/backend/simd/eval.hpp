/// \file
/// SIMD evaluation of expr/ trees: xsimd batches along contiguous runs of the
/// last axis with a scalar tail, OpenMP over rows (and over chunks of long rows).
/// Also row-wise softmax, log-softmax and argmax over an expression.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "tessera/core/error.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/backend/simd/evaluator.hpp"
#include "tessera/expr/broadcast.hpp"
#include "tessera/expr/expr.hpp"
#include "tessera/expr/reduce.hpp"

namespace tessera::backend::simd {

namespace detail {

// Work handed to one thread at least (elements): below this, waking a second
// thread costs more than it saves. Long rows without reductions are cut into
// chunks so that a single row still spreads over the team.
inline constexpr int64_t kEvalGrain = 16384;
inline constexpr int64_t kEvalChunk = 8192;  // a multiple of every batch width

/// True when axes [k, R) of a tensor with these strides, read over `space`,
/// are one arithmetic progression (extent-1 axes do not matter).
template <int R>
bool mergeable(const Shape<R>& space, const Shape<R>& st, int k) {
  int inner = -1;
  for (int d = R - 1; d >= k; --d) {
    if (space[d] == 1) continue;
    if (inner >= 0 && st[d] != st[inner] * space[inner]) return false;
    inner = d;
  }
  return true;
}

/// Rewrites strides for a space whose axes [k, R) became one last axis.
template <int R>
void merge_strides(const Shape<R>& space, Shape<R>& st, int k) {
  int64_t step = st[R - 1];
  for (int d = R - 1; d >= k; --d)
    if (space[d] != 1) { step = st[d]; break; }
  for (int d = k; d < R - 1; ++d) st[d] = 0;
  st[R - 1] = step;
}

/// Merges the longest run of trailing axes that the destination and every
/// leaf walk linearly, so [n, 1] or [b, t, e] contiguous runs as one long row:
/// full batches instead of tails, and long rows for the chunked split.
template <int R, class Ev>
void coalesce(Shape<R>& space, Shape<R>& dst_st, Ev& ev) {
  int k = R - 1;
  while (k > 0) {
    bool ok = mergeable<R>(space, dst_st, k - 1);
    ev.visit_strides([&](const Shape<R>& st) { ok = ok && mergeable<R>(space, st, k - 1); });
    if (!ok) break;
    --k;
  }
  if (k == R - 1) return;
  merge_strides<R>(space, dst_st, k);
  ev.visit_strides([&](Shape<R>& st) { merge_strides<R>(space, st, k); });
  int64_t n = 1;
  for (int d = k; d < R; ++d) n *= space[d];
  for (int d = k; d < R - 1; ++d) space[d] = 1;
  space[R - 1] = n;
}

/// out[j * step] = ev at j for j in [j0, j1) of the current row.
template <bool kUnit, class Ev>
void store_span(const Ev& ev, float* out, int64_t step, int64_t j0, int64_t j1) {
  int64_t j = j0;
  if (step == 1) {
    for (; j + kEvalWidth <= j1; j += kEvalWidth) ev.template batch<kUnit>(j).store_unaligned(out + j);
  } else {
    alignas(64) float lanes[kEvalWidth];
    for (; j + kEvalWidth <= j1; j += kEvalWidth) {
      ev.template batch<kUnit>(j).store_aligned(lanes);
      for (int64_t i = 0; i < kEvalWidth; ++i) out[(j + i) * step] = lanes[i];
    }
  }
  for (; j < j1; ++j) out[j * step] = ev.at(j);
}

/// Runs body(evaluator, out_row, out_step, j0, j1) over every (row, chunk) of
/// the space, in parallel. Each thread works on its own copy of the evaluator
/// (it holds per-row state). chunk = the row length keeps rows whole.
template <int R, class Ev, class Body>
void for_each_span(const Shape<R>& space, float* out, const Shape<R>& out_st, const Ev& ev, int64_t chunk,
                   Body&& body) {
  const int64_t n = space[R - 1];
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const int64_t grain = std::max<int64_t>(1, kEvalGrain / (chunk + ev.reduce_work()));
  parallel_for(expr::row_count(space) * n_chunks, grain, [&](int64_t i0, int64_t i1) {
    Ev local = ev;
    int64_t row = i0 / n_chunks;
    Shape<R> idx = expr::row_index(row, space);
    for (int64_t i = i0; i < i1; ++i) {
      if (i / n_chunks != row) ++row, expr::next_row(idx, space);
      const int64_t c = i % n_chunks;
      local.begin_row(idx);
      body(local, out + expr::row_offset(idx, out_st), out_st[R - 1], c * chunk, std::min(n, (c + 1) * chunk));
    }
  });
}

/// exp(x - m) for a batch or a float.
template <class V>
V exp_shifted(V x, V m) {
  using std::exp;
  return exp(x - m);
}

/// Softmax (log = false) or log-softmax of the current row, n elements.
template <bool kUnit, class Ev>
void softmax_row(const Ev& ev, float* out, int64_t step, int64_t n, bool log) {
  const float m = reduce_row<expr::op::MaxReduce, kUnit>(ev, n);
  const EvalBatch mb(m);
  EvalBatch acc(0.f);
  float sum = 0.f;
  alignas(64) float lanes[kEvalWidth];
  int64_t j = 0;
  for (; j + kEvalWidth <= n; j += kEvalWidth) {
    const EvalBatch y = exp_shifted(ev.template batch<kUnit>(j), mb);
    acc += y;
    if (log) continue;
    if (step == 1) {
      y.store_unaligned(out + j);
    } else {
      y.store_aligned(lanes);
      for (int64_t i = 0; i < kEvalWidth; ++i) out[(j + i) * step] = lanes[i];
    }
  }
  for (; j < n; ++j) {
    const float y = exp_shifted(ev.at(j), m);
    sum += y;
    if (!log) out[j * step] = y;
  }
  sum += xsimd::hadd(acc);
  if (log) {  // (x - m) - log(sum): folding m + log(sum) first would round at the scale of m
    const float log_sum = std::log(sum);
    const EvalBatch lb(log_sum);
    j = 0;
    if (step == 1)
      for (; j + kEvalWidth <= n; j += kEvalWidth) (ev.template batch<kUnit>(j) - mb - lb).store_unaligned(out + j);
    for (; j < n; ++j) out[j * step] = ev.at(j) - m - log_sum;
    return;
  }
  const float inv = 1.f / sum;
  const EvalBatch ib(inv);
  j = 0;
  if (step == 1)
    for (; j + kEvalWidth <= n; j += kEvalWidth) (EvalBatch::load_unaligned(out + j) * ib).store_unaligned(out + j);
  for (; j < n; ++j) out[j * step] *= inv;
}

/// First j with element j == m in the current row, or 0 if none. Reads the
/// row split exactly as reduce_row does (batches from 0, then the tail).
template <bool kUnit, class Ev>
int64_t find_first(const Ev& ev, int64_t n, float m) {
  const EvalBatch mb(m);
  int64_t j = 0;
  alignas(64) float lanes[kEvalWidth];
  for (; j + kEvalWidth <= n; j += kEvalWidth) {
    const EvalBatch v = ev.template batch<kUnit>(j);  // the lanes themselves: at(j) may round differently from batch(j)
    if (!xsimd::any(v == mb)) continue;
    v.store_aligned(lanes);
    for (int64_t i = 0; i < kEvalWidth; ++i)
      if (lanes[i] == m) return j + i;
  }
  for (; j < n; ++j)
    if (ev.at(j) == m) return j;
  return 0;
}

template <class T>
using Node = std::remove_cvref_t<T>;

/// Calls f(std::true_type) when every leaf of ev is packed along the rows,
/// else f(std::false_type): the loop body is compiled for both.
template <class Ev, class F>
void with_unit(const Ev& ev, F&& f) {
  if (ev.unit_rows()) f(std::true_type{});
  else f(std::false_type{});
}

}  // namespace detail

/// dst = e, in one pass with no temporaries. dst [shape of e]; any strides.
/// dst may be the very view of a leaf (in place), but must not partly overlap
/// one. Throws Error if the shapes differ. Same contract as scalar::eval;
/// O(size of dst + reduced lengths per row), split over the OpenMP team.
template <expr::Destination D, expr::Tensorish X>
void eval(D&& dst_in, X&& x) {
  const auto dst = expr::dst_view(std::forward<D>(dst_in));
  const auto e = expr::as_expr(std::forward<X>(x));
  using E = detail::Node<decltype(e)>;
  constexpr int R = detail::Node<decltype(dst)>::rank;
  static_assert(E::rank == R, "eval: the destination's rank differs from the expression's");
  expr::check_destination(dst.shape(), e.shape(), "eval");
  if (dst.empty()) return;
  detail::Evaluator<E, R> ev(e, dst.shape());
  Shape<R> space = dst.shape(), dst_st = dst.strides();
  if constexpr (!expr::contains_reduce_v<E>) detail::coalesce<R>(space, dst_st, ev);
  const int64_t chunk = expr::contains_reduce_v<E> ? space[R - 1] : std::min(space[R - 1], detail::kEvalChunk);
  detail::with_unit(ev, [&](auto unit) {
    detail::for_each_span<R>(space, dst.data(), dst_st, ev, chunk,
                             [](const auto& ev, float* out, int64_t step, int64_t j0, int64_t j1) {
                               detail::store_span<decltype(unit)::value>(ev, out, step, j0, j1);
                             });
  });
}

/// Row-wise softmax over the last axis, max-subtracted. x, dst [..., n]; dst
/// may be x itself. A row of all -inf gives NaN. Same contract as
/// scalar::softmax; x is read twice and dst written twice per row.
template <expr::Destination D, expr::Tensorish X>
void softmax(D&& dst_in, X&& x) {
  const auto dst = expr::dst_view(std::forward<D>(dst_in));
  const auto e = expr::as_expr(std::forward<X>(x));
  using E = detail::Node<decltype(e)>;
  constexpr int R = detail::Node<decltype(dst)>::rank;
  static_assert(E::rank == R, "softmax: the destination's rank differs from the input's");
  expr::check_destination(dst.shape(), e.shape(), "softmax");
  if (dst.empty()) return;
  detail::Evaluator<E, R> ev(e, dst.shape());
  detail::with_unit(ev, [&](auto unit) {
    detail::for_each_span<R>(dst.shape(), dst.data(), dst.strides(), ev, dst.dim(R - 1),
                             [](const auto& ev, float* out, int64_t step, int64_t, int64_t n) {
                               detail::softmax_row<decltype(unit)::value>(ev, out, step, n, false);
                             });
  });
}

/// Row-wise log-softmax: x - max - log(sum exp(x - max)). Shapes as softmax.
template <expr::Destination D, expr::Tensorish X>
void log_softmax(D&& dst_in, X&& x) {
  const auto dst = expr::dst_view(std::forward<D>(dst_in));
  const auto e = expr::as_expr(std::forward<X>(x));
  using E = detail::Node<decltype(e)>;
  constexpr int R = detail::Node<decltype(dst)>::rank;
  static_assert(E::rank == R, "log_softmax: the destination's rank differs from the input's");
  expr::check_destination(dst.shape(), e.shape(), "log_softmax");
  if (dst.empty()) return;
  detail::Evaluator<E, R> ev(e, dst.shape());
  detail::with_unit(ev, [&](auto unit) {
    detail::for_each_span<R>(dst.shape(), dst.data(), dst.strides(), ev, dst.dim(R - 1),
                             [](const auto& ev, float* out, int64_t step, int64_t, int64_t n) {
                               detail::softmax_row<decltype(unit)::value>(ev, out, step, n, true);
                             });
  });
}

/// Index of the first maximum of each row (NaNs skipped; 0 if none), in two
/// passes: a SIMD max, then the first lane equal to it. x [..., n] -> dst
/// [..., 1] of int64_t or int32_t. Same contract as scalar::argmax_last.
template <class I, int R, expr::Tensorish X>
  requires(std::is_same_v<I, int64_t> || std::is_same_v<I, int32_t>)
void argmax_last(const TensorView<I, R>& dst, X&& x) {
  const auto e = expr::as_expr(std::forward<X>(x));
  using E = detail::Node<decltype(e)>;
  static_assert(E::rank == R, "argmax_last: the destination's rank differs from the input's");
  const int64_t n = expr::check_argmax_destination<I>(dst.shape(), e.shape());
  const Shape<R>& want = dst.shape();  // checked: the input shape with the last axis 1
  if (dst.empty()) return;
  detail::Evaluator<E, R> ev(e, e.shape());
  const int64_t grain = std::max<int64_t>(1, detail::kEvalGrain / std::max<int64_t>(1, n));
  parallel_for(expr::row_count(want), grain, [&](int64_t r0, int64_t r1) {
    detail::Evaluator<E, R> local = ev;
    Shape<R> idx = expr::row_index(r0, want);
    for (int64_t r = r0; r < r1; ++r, expr::next_row(idx, want)) {
      int64_t best = 0;
      if (n > 0) {  // an empty row is never begun: its leaves may have no element to point at
        local.begin_row(idx);
        best = local.unit_rows()
                   ? detail::find_first<true>(local, n, detail::reduce_row<expr::op::MaxReduce, true>(local, n))
                   : detail::find_first<false>(local, n, detail::reduce_row<expr::op::MaxReduce, false>(local, n));
      }
      dst.data()[expr::row_offset(idx, dst.strides())] = static_cast<I>(best);
    }
  });
}
/// argmax_last into an owning tensor (through its view).
template <class I, int R, expr::Tensorish X>
void argmax_last(Tensor<I, R>& dst, X&& x) { argmax_last(dst.view(), std::forward<X>(x)); }

}  // namespace tessera::backend::simd

TESSERA_SIMD_WARNINGS_ON
