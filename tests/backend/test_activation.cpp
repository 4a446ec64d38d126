// SIMD swiglu and add against the scalar reference (attention: tests/nn).
#include <catch2/catch.hpp>

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
