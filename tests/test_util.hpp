// Helpers shared by tests: seeded random tensors and the shape grid
// (1, primes, SIMD-width tails) that every fast path is checked on.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tessera/core/tensor.hpp"

namespace tessera::test {

/// Chi-square critical value by Wilson-Hilferty: df (1 - 2/(9 df) + z sqrt(2/(9 df)))^3,
/// z the standard normal quantile of the significance (4.7534: 1e-6; 3.7190: 1e-4).
/// It overstates the exact quantile by < 8% for df >= 1 at these levels (df 1 at
/// 1e-4: 16.2 vs 15.1; df 7 at 1e-6: 41.9 vs 40.5), i.e. it errs towards accepting.
inline double chi2_critical(size_t df, double z = 4.753424) {
  const double k = static_cast<double>(df);
  return k * std::pow(1.0 - 2.0 / (9.0 * k) + z * std::sqrt(2.0 / (9.0 * k)), 3.0);
}

/// Extents that exercise tails for 4-, 8- and 16-wide vectors.
inline const std::vector<int64_t> kOddSizes = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 97, 128, 255};

/// Bytes from a hex string ("48690a" -> "Hi\n"); golden files store text as hex.
inline std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

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
