// Quantized matrix products: the SIMD path against the scalar reference for
// every weight format on a grid of odd shapes, the int8 path against f32
// activations, gemm rows against gemv, the scalar int8 dot against a double
// sum over dequantized values, activation quantization bit for bit, and the
// shape errors. Every tolerance is derived beside its check.
#include <catch2/catch.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tessera/backend/scalar/quant_matmul.hpp"
#include "tessera/backend/simd/quant_matmul.hpp"

using namespace tessera;
namespace scalar = tessera::backend::scalar;
namespace simd = tessera::backend::simd;
using backend::ActBlock;

namespace {

std::mt19937_64& rng() {
  static std::mt19937_64 g(90210);
  return g;
}

/// n values, Gaussian with a scale that changes every 32 values (so blocks
/// differ in scale, as real weights and activations do).
std::vector<float> random_values(int64_t n) {
  std::normal_distribution<float> g;
  std::uniform_real_distribution<float> u(-2.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n));
  float scale = 1.f;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 32 == 0) scale = std::pow(10.f, u(rng()));
    x[i] = g(rng()) * scale;
  }
  return x;
}

template <class B>
Tensor<B, 2> quantized(int64_t rows, int64_t n_blocks, const std::vector<float>& values) {
  Tensor<B, 2> t({rows, n_blocks});
  quantize_row(std::span<const float>(values), t.span());
  return t;
}

template <class B>
std::vector<float> dequantized(std::span<const B> blocks) {
  std::vector<float> y(blocks.size() * quant_traits<B>::block_size);
  dequantize_row(blocks, std::span<float>(y));
  return y;
}

/// |offset part| of each dequantized weight (q4_1's m, q4_K's dmin * m_j; 0
/// for the symmetric formats): the integer paths sum the scaled part and the
/// offset part separately, so their rounding scales with both magnitudes.
/// Formats with a per-block offset m carried by the activations' block sum (q8_1's s).
template <class W>
inline constexpr bool kHasBlockMin = std::is_same_v<W, block_q4_1> || std::is_same_v<W, block_q5_1>;

template <class W>
std::vector<double> offset_magnitudes(std::span<const W> row) {
  std::vector<double> off(row.size() * quant_traits<W>::block_size, 0.0);
  for (size_t b = 0; b < row.size(); ++b) {
    if constexpr (kHasBlockMin<W>) {
      for (int i = 0; i < 32; ++i) off[32 * b + i] = std::fabs(static_cast<float>(row[b].m));
    } else if constexpr (std::is_same_v<W, block_q4_K> || std::is_same_v<W, block_q5_K>) {
      uint8_t sc[8], mn[8];
      tessera::detail::unpack_q4_K_scales(row[b].scales, sc, mn);
      for (int i = 0; i < 256; ++i) off[256 * b + i] = static_cast<float>(row[b].dmin) * mn[i / 32];
    }
  }
  return off;
}

/// Upper bound on the sum of |terms| a float dot of this row adds up: each
/// block's scaled integer sum is at most sum |w_scaled x|, its offset sum at
/// most sum |off x|, and |w_scaled| <= |w| + |off|.
template <class W>
double term_magnitude(std::span<const W> w_row, const std::vector<float>& x) {
  const auto w = dequantized(w_row);
  const auto off = offset_magnitudes(w_row);
  double m = 0;
  for (size_t i = 0; i < w.size(); ++i) m += (std::fabs(w[i]) + 2 * off[i]) * std::fabs(x[i]);
  return m;
}

/// Float rounding of a blockwise dot: each block contributes <= 2 terms, each
/// rounded a few times (scale products, int -> float) and then summed in some
/// order (sequential or 8 lanes + a horizontal add). The classic bound for a
/// sum of n rounded terms is n * 2^-24 * sum |terms|; 2 n_blocks + 8 terms
/// covers both paths, and 2^-23 allows for both sides being off.
double rounding_tol(int64_t n_blocks, double magnitude) {
  return static_cast<double>(2 * n_blocks + 8) * std::ldexp(magnitude, -23) + 1e-30;
}

/// The activations as the int8 kernels see them, and how far each quantized
/// block's values may sit from the originals: d/2 per value (+2e-5 d for the
/// float product x * 127/amax), plus 127 |d - f16(d)| where d is stored as f16.
template <class A>
std::vector<double> activation_error_bounds(const std::vector<float>& x) {
  constexpr int bs = quant_traits<A>::block_size;
  std::vector<double> e(x.size());
  for (size_t b = 0; b < x.size() / bs; ++b) {
    double amax = 0;
    for (int i = 0; i < bs; ++i) amax = std::max(amax, std::fabs(static_cast<double>(x[b * bs + i])));
    const double d = amax / 127;
    double bound = d * (0.5 + 2e-5);
    if constexpr (!std::is_same_v<A, block_q8_K>)
      bound += 127 * std::fabs(d - static_cast<float>(f16(static_cast<float>(d))));
    for (int i = 0; i < bs; ++i) e[b * bs + i] = bound;
  }
  return e;
}

template <class A>
std::vector<A> quantize_acts(const std::vector<float>& x) {
  std::vector<A> xq(x.size() / quant_traits<A>::block_size);
  scalar::quantize_activations(std::span<const float>(x), std::span<A>(xq));
  return xq;
}

const int64_t kRows[] = {1, 3, 7, 31, 64, 97};

template <class W>
std::vector<int64_t> block_counts() {
  if constexpr (quant_traits<W>::block_size == QK_K) return {1, 2, 3, 5};  // K = 256 .. 1280
  else return {1, 2, 3, 5, 8, 13, 40, 259};  // K = 32 .. 8288: 259 > 256 runs the chunked paired gemv
}

template <class W>
void check_quant_gemv() {
  using A = ActBlock<W>;
  constexpr int bs = quant_traits<W>::block_size;
  for (int64_t n : kRows) {
    for (int64_t nb : block_counts<W>()) {
      const int64_t k = nb * bs;
      const auto w = quantized<W>(n, nb, random_values(n * k));
      const auto x = random_values(k);
      const auto xq = quantize_acts<A>(x);
      const auto xhat = dequantized(std::span<const A>(xq));
      const auto act_err = activation_error_bounds<A>(x);
      std::vector<float> y_scalar(n), y_simd(n), y_f32(n);
      scalar::gemv<W>(w.view(), xq, y_scalar);
      simd::gemv<W>(w.view(), xq, y_simd);
      scalar::gemv_f32<W>(w.view(), x, y_f32);
      INFO(quant_traits<W>::name << " N=" << n << " K=" << k);
      for (int64_t r = 0; r < n; ++r) {
        const auto row = w.view().row(r);
        const auto wr = dequantized(std::span<const W>(row));
        const double mag = term_magnitude(std::span<const W>(row), xhat);
        INFO("row " << r);
        // Same exact integer sums per block; only the float sums differ.
        REQUIRE(std::fabs(y_simd[r] - y_scalar[r]) <= rounding_tol(nb, mag));
        // dot and gemv may take different kernels (q4_0 / q4_1 gemv pairs blocks): same bound.
        REQUIRE(std::fabs(y_simd[r] - simd::dot(std::span<const W>(row), std::span<const A>(xq))) <=
                rounding_tol(nb, mag));
        // int8 activations vs f32: sum_i w_i (xhat_i - x_i) is bounded by
        // sum |w_i| err_i; q4_1's offset term uses s = f16(d sum q) instead of
        // f16(d) sum q, off by <= 2^-11 |s| + |d - f16(d)| |sum q| per block.
        // The f32 path sums its k products per block and then the nb blocks:
        // (k + nb) 2^-24 sum |w x| of rounding on its side.
        double bound = rounding_tol(nb, mag), sum_wx = 0;
        for (int64_t i = 0; i < k; ++i) {
          bound += std::fabs(wr[i]) * act_err[i];
          sum_wx += std::fabs(static_cast<double>(wr[i]) * x[i]);
        }
        bound += static_cast<double>(k + nb) * std::ldexp(sum_wx, -24);
        if constexpr (kHasBlockMin<W>) {
          for (int64_t b = 0; b < nb; ++b) {
            const double dq = static_cast<float>(xq[b].d), s = static_cast<float>(xq[b].s);
            double sum_q = 0, amax = 0;
            for (int i = 0; i < 32; ++i) {
              sum_q += xq[b].qs[i];
              amax = std::max(amax, std::fabs(static_cast<double>(x[b * 32 + i])));
            }
            bound += std::fabs(static_cast<float>(row[b].m)) *
                     (std::ldexp(std::fabs(s), -11) + std::fabs(amax / 127 - dq) * std::fabs(sum_q));
          }
        }
        REQUIRE(std::fabs(y_scalar[r] - y_f32[r]) <= bound);
      }
    }
  }
}

template <class W>
void check_quant_gemm() {
  using A = ActBlock<W>;
  constexpr int bs = quant_traits<W>::block_size;
  for (int64_t m : {1, 2, 5, 17}) {
    for (int64_t n : {1, 7, 31, 97}) {  // 31, 97: several gemm tiles of 16 rows with a tail
      // 37 blocks: past one 32-block panel chunk of the AVX-512 kernel, odd (k-quants: 2 super-blocks)
      for (int64_t nb : {int64_t{1}, int64_t{3}, int64_t{bs == 32 ? 37 : 2}}) {
        const int64_t k = nb * bs;
        const auto w = quantized<W>(n, nb, random_values(n * k));
        Tensor<A, 2> xq({m, nb});
        const auto x = random_values(m * k);
        scalar::quantize_activations(std::span<const float>(x), xq.span());
        Tensor<float, 2> y_scalar({m, n}), y_simd({m, n});
        scalar::gemm<W>(w.view(), xq.view(), y_scalar.view());
        simd::gemm<W>(w.view(), xq.view(), y_simd.view());
        INFO(quant_traits<W>::name << " M=" << m << " N=" << n << " K=" << k);
        for (int64_t i = 0; i < m; ++i) {
          const std::span<const A> xr(xq.data() + i * nb, static_cast<size_t>(nb));
          std::vector<float> g_scalar(n), g_simd(n);
          scalar::gemv<W>(w.view(), xr, g_scalar);
          simd::gemv<W>(w.view(), xr, g_simd);
          const auto xhat = dequantized(xr);
          for (int64_t r = 0; r < n; ++r) {
            INFO("m=" << i << " n=" << r);
            // The reference accumulates every (row, activation row) pair block by
            // block in the same order, so its gemm rows equal its gemv exactly.
            REQUIRE(y_scalar(i, r) == g_scalar[r]);
            // The fast gemm tiles and the fast gemv sum the same exact block
            // integers in different orders: the float reordering bound.
            const double mag = term_magnitude(std::span<const W>(w.view().row(r)), xhat);
            REQUIRE(std::fabs(y_simd(i, r) - g_simd[r]) <= rounding_tol(nb, mag));
            REQUIRE(std::fabs(y_simd(i, r) - y_scalar(i, r)) <= rounding_tol(nb, mag));
          }
        }
      }
    }
  }
}

template <class W>
void check_exact_dot() {
  using A = ActBlock<W>;
  constexpr int bs = quant_traits<W>::block_size;
  for (int64_t nb : block_counts<W>()) {
    const auto w = quantized<W>(1, nb, random_values(nb * bs));
    const auto xq = quantize_acts<A>(random_values(nb * bs));
    const std::span<const W> wr(w.data(), static_cast<size_t>(nb));
    const auto wd = dequantized(wr);
    const auto xd = dequantized(std::span<const A>(xq));
    double ref = 0;
    for (size_t i = 0; i < wd.size(); ++i) ref += static_cast<double>(wd[i]) * xd[i];
    // The int8 dot's block sums are exact integers, so it differs from the
    // double sum only by float rounding (scale products, the running sum, and
    // the dequantized weights' own rounding in q4_K / q6_K) ...
    double tol = rounding_tol(nb, term_magnitude(wr, xd));
    // ... and for q4_1 by its offset term using s = f16(d sum q) rather than f16(d) sum q.
    if constexpr (kHasBlockMin<W>) {
      for (int64_t b = 0; b < nb; ++b) {
        double sum_q = 0;
        for (int i = 0; i < 32; ++i) sum_q += xq[b].qs[i];
        tol += std::fabs(static_cast<float>(wr[b].m)) *
               std::fabs(static_cast<float>(xq[b].s) - static_cast<float>(xq[b].d) * sum_q);
      }
    }
    INFO(quant_traits<W>::name << " blocks=" << nb);
    REQUIRE(std::fabs(scalar::dot(wr, std::span<const A>(xq)) - ref) <= tol);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("quant gemv: simd vs scalar, int8 vs f32 activations", "[quant_matmul]", block_q8_0, block_q4_0,
                   block_q4_1, block_q5_0, block_q5_1, block_q4_K, block_q5_K, block_q6_K) {
  check_quant_gemv<TestType>();
}

TEMPLATE_TEST_CASE("quant gemm: simd vs scalar, rows equal gemv", "[quant_matmul]", block_q8_0, block_q4_0,
                   block_q4_1, block_q5_0, block_q5_1, block_q4_K, block_q5_K, block_q6_K) {
  check_quant_gemm<TestType>();
}

TEMPLATE_TEST_CASE("quant dot: scalar int8 dot is the double sum of dequantized values up to float rounding",
                   "[quant_matmul]", block_q8_0, block_q4_0, block_q4_1, block_q5_0, block_q5_1, block_q4_K,
                   block_q5_K, block_q6_K) {
  check_exact_dot<TestType>();
}

TEMPLATE_TEST_CASE("quant dot_f32: simd vs scalar", "[quant_matmul]", block_q8_0, block_q4_0, block_q4_1, block_q5_0, block_q5_1,
                   block_q4_K, block_q5_K, block_q6_K) {
  constexpr int bs = quant_traits<TestType>::block_size;
  for (int64_t nb : block_counts<TestType>()) {
    const auto w = quantized<TestType>(1, nb, random_values(nb * bs));
    const auto x = random_values(nb * bs);
    const std::span<const TestType> wr(w.data(), static_cast<size_t>(nb));
    const auto wd = dequantized(wr);
    double mag = 0;
    for (size_t i = 0; i < x.size(); ++i) mag += std::fabs(wd[i] * x[i]);
    // Same products, summed in another order: n * 2^-24 * sum |w x| per side,
    // n = nb * bs terms at most.
    const double tol = static_cast<double>(nb * bs) * std::ldexp(mag, -23);
    INFO(quant_traits<TestType>::name << " blocks=" << nb);
    const std::span<const float> xs(x);
    REQUIRE(std::fabs(simd::dot_f32(wr, xs) - scalar::dot_f32(wr, xs)) <= tol);
  }
}

TEMPLATE_TEST_CASE("quantize_activations: simd blocks equal the scalar codec's bit for bit", "[quant_matmul]",
                   block_q8_0, block_q8_1, block_q8_K) {
  constexpr int bs = quant_traits<TestType>::block_size;
  for (int64_t nb : {1, 2, 3, 7, 13}) {
    auto x = random_values(nb * bs);
    x[0] = 0.f;
    if (nb > 1) std::fill(x.begin() + bs, x.begin() + 2 * bs, 0.f);  // an all-zero block
    std::vector<TestType> a(nb), b(nb);
    scalar::quantize_activations(std::span<const float>(x), std::span<TestType>(a));
    simd::quantize_activations(std::span<const float>(x), std::span<TestType>(b));
    INFO(quant_traits<TestType>::name << " blocks=" << nb);
    REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(TestType)) == 0);
  }
}

TEST_CASE("quant gemv/gemm: strided views and calls inside a parallel region", "[quant_matmul]") {
  const int64_t n = 37, nb = 12;
  const auto w = quantized<block_q4_0>(n, nb, random_values(n * nb * 32));
  const auto w_half = w.view().narrow(1, 0, nb / 2);  // row stride 12 blocks, 6 used
  const auto w_half_copy = w_half.contiguous();
  const auto xq = quantize_acts<block_q8_0>(random_values(nb / 2 * 32));
  std::vector<float> y(n), y_ref(n);
  simd::gemv<block_q4_0>(w_half, xq, y);
  simd::gemv<block_q4_0>(w_half_copy.view(), xq, y_ref);
  REQUIRE(y == y_ref);

  // gemm into columns [3, 3 + n) of a wider output: the rest must stay untouched.
  const int64_t m = 6;
  Tensor<block_q8_0, 2> xm({m, nb / 2});
  scalar::quantize_activations(std::span<const float>(random_values(m * nb / 2 * 32)), xm.span());
  Tensor<float, 2> wide({m, n + 5}), packed({m, n});
  for (auto& v : wide.span()) v = -7.f;
  simd::gemm<block_q4_0>(w_half, xm.view(), wide.view().narrow(1, 3, 3 + n));
  simd::gemm<block_q4_0>(w_half_copy.view(), xm.view(), packed.view());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n + 5; ++j) {
      INFO("m=" << i << " col=" << j);
      if (j < 3 || j >= 3 + n) REQUIRE(wide(i, j) == -7.f);
      else REQUIRE(wide(i, j) == packed(i, j - 3));
    }

  // Inside a region every thread calls gemv and the loop is shared among them.
  std::vector<float> y_team(n, 0.f);
#pragma omp parallel num_threads(2)
  simd::gemv<block_q4_0>(w_half, xq, y_team);
  REQUIRE(y_team == y_ref);
}

TEMPLATE_TEST_CASE("quant gemv/gemm: K = 0 gives zeros", "[quant_matmul]", block_q8_0, block_q4_0, block_q4_1, block_q5_0, block_q5_1,
                   block_q4_K, block_q5_K, block_q6_K) {
  using A = ActBlock<TestType>;
  const Tensor<TestType, 2> w({5, 0});
  const Tensor<A, 2> xq({3, 0});
  std::vector<float> y(5, 1.f), y_ref(5, 1.f);
  simd::gemv<TestType>(w.view(), std::span<const A>(), y);
  scalar::gemv<TestType>(w.view(), std::span<const A>(), y_ref);
  REQUIRE(y == std::vector<float>(5, 0.f));
  REQUIRE(y_ref == y);
  Tensor<float, 2> ym({3, 5});
  for (auto& v : ym.span()) v = 1.f;
  simd::gemm<TestType>(w.view(), xq.view(), ym.view());
  for (float v : ym.span()) REQUIRE(v == 0.f);
}

TEST_CASE("quant kernels: mismatched shapes throw", "[quant_matmul]") {
  const auto w = quantized<block_q8_0>(4, 3, random_values(4 * 3 * 32));
  std::vector<block_q8_0> xq(3), xq_short(2);
  std::vector<float> y(4), y_short(3), x(96), x_short(64);
  CHECK_THROWS_AS(simd::gemv<block_q8_0>(w.view(), xq_short, y), Error);
  CHECK_THROWS_AS(scalar::gemv<block_q8_0>(w.view(), xq_short, y), Error);
  CHECK_THROWS_AS(simd::gemv<block_q8_0>(w.view(), xq, y_short), Error);
  CHECK_THROWS_AS(simd::gemv_f32<block_q8_0>(w.view(), x_short, y), Error);
  CHECK_THROWS_AS(simd::dot<block_q8_0>(w.view().row(0), xq_short), Error);
  CHECK_THROWS_AS(scalar::dot_f32<block_q8_0>(w.view().row(0), x_short), Error);
  CHECK_THROWS_AS(simd::quantize_activations(std::span<const float>(x.data(), 95), std::span<block_q8_0>(xq)), Error);
  CHECK_THROWS_AS(simd::quantize_activations(std::span<const float>(x), std::span<block_q8_0>(xq_short)), Error);
  Tensor<block_q8_0, 2> xm({2, 3});
  Tensor<float, 2> ym({2, 5});
  CHECK_THROWS_WITH(simd::gemm<block_q8_0>(w.view(), xm.view(), ym.view()), Catch::Contains("gemm (q8_0)"));
  CHECK_THROWS_AS(scalar::gemm<block_q8_0>(w.view(), xm.view(), ym.view()), Error);
  const auto w_cols = w.view().transpose();  // last axis no longer packed
  CHECK_THROWS_AS(simd::gemv<block_q8_0>(w_cols, std::span<const block_q8_0>(xq.data(), 4), y_short), Error);
}
