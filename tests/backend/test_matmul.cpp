// SIMD gemv/gemm with f32, f16 and bf16 weights against the scalar reference.
#include <catch2/catch.hpp>

#include "../test_util.hpp"
#include "tessera/backend/scalar/matmul.hpp"
#include "tessera/backend/simd/matmul.hpp"

using namespace tessera;
namespace scalar = tessera::backend::scalar;
namespace simd = tessera::backend::simd;

namespace {
// Both paths multiply the same (exactly widened) weights; they differ only in
// summation order. The bound for reordering a float sum of K terms is
// ~K * 2^-24 * sum|w x|; with |w|,|x| <= 1 that is <= K^2 * 6e-8, and
// observed errors are far below it (random signs cancel). 1e-5 * K is ample
// for K <= 300 and still fails on a real indexing bug (errors of order 0.1).
double tol(int64_t k) { return 1e-5 * static_cast<double>(k) + 1e-6; }

template <class W>
void check_gemv() {
  for (int64_t n : {1, 3, 5, 8, 17, 31}) {
    for (int64_t k : test::kOddSizes) {
      auto w = test::random_tensor<W, 2>({n, k});
      auto x = test::random_vector(k);
      std::vector<float> y_ref(n), y(n);
      scalar::gemv<W>(w.view(), x, y_ref);
      simd::gemv<W>(w.view(), x, y);
      INFO("N=" << n << " K=" << k);
      REQUIRE(test::max_abs_diff(y, y_ref) <= tol(k));
    }
  }
}

template <class W>
void check_gemm() {
  for (int64_t m : {1, 2, 5, 17}) {
    for (int64_t n : {1, 7, 33, 300}) {  // 300 > one 256-row tile: exercises the tile loop
      for (int64_t k : {1, 9, 64, 97}) {
        auto w = test::random_tensor<W, 2>({n, k});
        auto x = test::random_tensor<float, 2>({m, k});
        Tensor<float, 2> y_ref({m, n}), y({m, n});
        scalar::gemm<W>(w.view(), x.view(), y_ref.view());
        simd::gemm<W>(w.view(), x.view(), y.view());
        INFO("M=" << m << " N=" << n << " K=" << k);
        REQUIRE(test::max_abs_diff(y.span(), y_ref.span()) <= tol(k));
      }
    }
  }
}
}  // namespace

TEST_CASE("gemv f32/f16/bf16: simd equals scalar", "[matmul]") {
  check_gemv<float>();
  check_gemv<f16>();
  check_gemv<bf16>();
}

TEST_CASE("gemm f32/f16/bf16: simd equals scalar", "[matmul]") {
  check_gemm<float>();
  check_gemm<f16>();
  check_gemm<bf16>();
}

TEST_CASE("gemv on a strided weight view (a slice of rows of a wider matrix)", "[matmul]") {
  auto w = test::random_tensor<float, 2>({12, 40});
  auto sub = TensorView<const float, 2>(w.view()).narrow(0, 3, 10).narrow(1, 0, 33);  // stride 40, K 33
  auto x = test::random_vector(33);
  std::vector<float> y_ref(7), y(7);
  scalar::gemv<float>(sub, x, y_ref);
  simd::gemv<float>(sub, x, y);
  REQUIRE(test::max_abs_diff(y, y_ref) <= tol(33));
}

TEST_CASE("gemv/gemm reject mismatched shapes", "[matmul]") {
  auto w = test::random_tensor<float, 2>({4, 8});
  std::vector<float> x(7), y(4);
  REQUIRE_THROWS_AS(simd::gemv<float>(w.view(), x, y), Error);
  REQUIRE_THROWS_AS(scalar::gemv<float>(w.view(), x, y), Error);
  Tensor<float, 2> xm({3, 8}), ym({3, 5});
  REQUIRE_THROWS_AS(simd::gemm<float>(w.view(), xm.view(), ym.view()), Error);
}
