// SIMD swiglu, geglu, gelu and add against the scalar reference (attention: tests/nn).
#include <catch2/catch.hpp>

#include <cmath>

#include "../test_util.hpp"
#include "tessera/backend/scalar/activation.hpp"
#include "tessera/backend/simd/activation.hpp"

using namespace tessera;
namespace scalar = tessera::backend::scalar;
namespace simd = tessera::backend::simd;

TEST_CASE("swiglu and add: simd equals scalar", "[activation]") {
  for (int64_t n : test::kOddSizes) {
    auto g = test::random_vector(static_cast<size_t>(n), -8.f, 8.f), u = test::random_vector(static_cast<size_t>(n));
    std::vector<float> ref(n), out(n);
    scalar::swiglu(g, u, ref);
    simd::swiglu(g, u, out);
    // xsimd::exp is within a few ulp of std::exp; |silu(g) u| <= 8: 1e-5 absolute.
    REQUIRE(test::max_abs_diff(out, ref) <= 1e-5);
    scalar::add(g, u, ref);
    simd::add(g, u, out);
    REQUIRE(test::max_abs_diff(out, ref) == 0.0);  // one rounding, same in both
  }
}

TEST_CASE("geglu and gelu: simd equals scalar, scalar equals the tanh formula in double", "[activation]") {
  for (int64_t n : test::kOddSizes) {
    auto g = test::random_vector(static_cast<size_t>(n), -8.f, 8.f), u = test::random_vector(static_cast<size_t>(n));
    std::vector<float> ref(n), out(n);
    scalar::geglu(g, u, ref);
    for (size_t i = 0; i < ref.size(); ++i) {
      const double x = g[i];
      const double want = 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) * u[i];
      REQUIRE(std::fabs(ref[i] - want) <= 1e-5 * (1 + std::fabs(want)));  // float tanh, a few ulp
    }
    // simd writes x * sigmoid(2u), the same function through one exp: a few ulp
    // of |gelu(g) u| <= 8, and near gelu's zero (g ~ -3..-8) 1e-5 absolute.
    simd::geglu(g, u, out);
    REQUIRE(test::max_abs_diff(out, ref) <= 1e-5);
    scalar::gelu(g, ref);
    simd::gelu(g, out);
    REQUIRE(test::max_abs_diff(out, ref) <= 1e-5);
    simd::gelu(out, out);  // in place
    scalar::gelu(ref, ref);
    REQUIRE(test::max_abs_diff(out, ref) <= 2e-5);
  }
}
