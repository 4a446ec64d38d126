// Helpers shared by tests: seeded random tensors and the shape grid
// (1, primes, SIMD-width tails) that every fast path is checked on.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "tessera/core/tensor.hpp"

namespace tessera::test {

/// Extents that exercise tails for 4-, 8- and 16-wide vectors.
inline const std::vector<int64_t> kOddSizes = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 97, 128, 255};

inline std::mt19937_64& rng() {
  static std::mt19937_64 g(20261122);
  return g;
}

template <class T, int R>
Tensor<T, R> random_tensor(const Shape<R>& shape, float lo = -1.f, float hi = 1.f) {
  Tensor<T, R> t(shape);
  std::uniform_real_distribution<float> d(lo, hi);
  for (auto& v : t.span()) v = T(d(rng()));
  return t;
}

inline std::vector<float> random_vector(size_t n, float lo = -1.f, float hi = 1.f) {
  std::vector<float> v(n);
  std::uniform_real_distribution<float> d(lo, hi);
  for (auto& x : v) x = d(rng());
  return v;
}

/// max_i |a_i - b_i|
template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}

}  // namespace tessera::test
