// Helpers of the expression tests: operands with broadcast and transposed
// layouts, random shapes over the tail-heavy extent grid, and an independent
// broadcast read (numpy's rule written out per index) to check evaluators by.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <type_traits>
#include <vector>

#include "../test_util.hpp"
#include "tessera/backend/eval.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::test {

/// The two backends every expression is evaluated on.
inline const backend::scalar::Tag kScalar;
inline const backend::simd::Tag kSimd;

inline constexpr double kEps = 1.1920928955078125e-7;  // float ulp at 1

/// Last-axis extents: 1, primes and the tails of 4-, 8- and 16-wide batches.
inline const std::vector<int64_t> kLastExtents = {1, 3, 7, 8, 9, 15, 17, 31, 33, 127, 1000};

/// A float tensor and the (possibly strided) view the expression reads.
template <int R>
struct Operand {
  Tensor<float, R> store;
  TensorView<const float, R> view;
};

/// Random values in [lo, hi] with the given shape. transposed: for rank >= 2
/// the storage has the last two axes swapped and the view transposes them
/// back (last-axis stride != 1); for rank 1 the view takes every other element.
template <int R>
Operand<R> make_operand(Shape<R> shape, bool transposed, float lo = -1.f, float hi = 1.f) {
  Operand<R> op;
  if (!transposed) {
    op.store = random_tensor<float, R>(shape, lo, hi);
    op.view = op.store.view();
  } else if constexpr (R >= 2) {
    std::swap(shape[R - 2], shape[R - 1]);
    op.store = random_tensor<float, R>(shape, lo, hi);
    op.view = TensorView<const float, R>(op.store.view()).transpose(R - 2, R - 1);
  } else {
    op.store = random_tensor<float, R>({2 * shape[0]}, lo, hi);
    op.view = TensorView<const float, R>(op.store.data(), shape, {2});
  }
  return op;
}

/// A writable destination of this shape, optionally transposed like make_operand.
template <int R>
struct Dest {
  Tensor<float, R> store;
  TensorView<float, R> view;
};
template <int R>
Dest<R> make_dest(Shape<R> shape, bool transposed) {
  Dest<R> d;
  if (transposed && R >= 2) {
    std::swap(shape[R - 2], shape[R - 1]);
    d.store = Tensor<float, R>(shape);
    d.view = d.store.view().transpose(R - 2, R - 1);
  } else {
    d.store = Tensor<float, R>(shape);
    d.view = d.store.view();
  }
  return d;
}

/// A random shape: last extent from kLastExtents, outer extents from {1, 2, 3, 5},
/// shrunk so the tensor stays below max_elems.
template <int R>
Shape<R> random_shape(int64_t max_elems = 20000) {
  static const int64_t outer[] = {1, 2, 3, 5};
  Shape<R> s{};
  s[R - 1] = kLastExtents[rng()() % kLastExtents.size()];
  for (int d = 0; d < R - 1; ++d) s[d] = outer[rng()() % 4];
  auto count = [&] {
    int64_t n = 1;
    for (int64_t e : s) n *= e;
    return n;
  };
  for (int d = 0; d < R - 1 && count() > max_elems; ++d) s[d] = 1;
  return s;
}

/// Each axis of s set to 1 with probability p (an operand that broadcasts there).
template <int R>
Shape<R> knock_out(Shape<R> s, double p) {
  std::bernoulli_distribution coin(p);
  for (auto& e : s)
    if (coin(rng())) e = 1;
  return s;
}

/// Calls f(idx) for every multi-index of shape, row-major.
template <int R>
void for_each_index(const Shape<R>& shape, const std::function<void(const Shape<R>&)>& f) {
  for (int64_t e : shape)
    if (e == 0) return;
  Shape<R> idx{};
  while (true) {
    f(idx);
    int d = R - 1;
    for (; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

/// Element of v at the full index idx (rank R >= Rv) under numpy broadcasting,
/// written independently of the library's stride binding.
template <int Rv, size_t R>
double bcast_at(const TensorView<const float, Rv>& v, const std::array<int64_t, R>& idx) {
  int64_t off = 0;
  for (int d = 0; d < Rv; ++d) {
    const int64_t i = v.dim(d) == 1 ? 0 : idx[d + (R - static_cast<size_t>(Rv))];
    off += i * v.stride(d);
  }
  return v.data()[off];
}

/// Value of a view at idx (same rank).
template <class T, int R>
double at(const TensorView<T, R>& v, const std::type_identity_t<Shape<R>>& idx) {
  int64_t off = 0;
  for (int d = 0; d < R; ++d) off += idx[d] * v.stride(d);
  return v.data()[off];
}

}  // namespace tessera::test
