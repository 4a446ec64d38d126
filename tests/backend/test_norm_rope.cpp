// SIMD rms_norm, layer_norm and rope against the scalar reference.
#include <catch2/catch.hpp>

#include "../test_util.hpp"
#include "tessera/backend/scalar/norm.hpp"
#include "tessera/backend/scalar/rope.hpp"
#include "tessera/backend/simd/norm.hpp"
#include "tessera/backend/simd/rope.hpp"

using namespace tessera;
namespace scalar = tessera::backend::scalar;
namespace simd = tessera::backend::simd;

TEST_CASE("rms_norm and layer_norm: simd equals scalar", "[norm]") {
  for (int64_t t : {1, 3, 8}) {
    for (int64_t n : test::kOddSizes) {
      auto x = test::random_tensor<float, 2>({t, n}, -3.f, 5.f);  // non-zero mean exercises the centring
      auto w = test::random_vector(n, 0.5f, 1.5f);
      auto b = test::random_vector(n);
      Tensor<float, 2> ref({t, n}), out({t, n});
      INFO("T=" << t << " n=" << n);
      // The reference sums in double; the SIMD path in float over <= 255 terms
      // of size <= 25: relative error of the scale ~ n * 2^-24 < 2e-5, and the
      // outputs are O(3) after normalisation, so 1e-4 absolute is a safe bound.
      scalar::rms_norm(x.view(), w, 1e-5f, ref.view());
      simd::rms_norm(x.view(), w, 1e-5f, out.view());
      REQUIRE(test::max_abs_diff(out.span(), ref.span()) <= 1e-4);
      scalar::layer_norm(x.view(), w, b, 1e-5f, ref.view());
      simd::layer_norm(x.view(), w, b, 1e-5f, out.view());
      REQUIRE(test::max_abs_diff(out.span(), ref.span()) <= 1e-4);
      simd::layer_norm(x.view(), w, {}, 1e-5f, out.view());  // bias-free form
      scalar::layer_norm(x.view(), w, {}, 1e-5f, ref.view());
      REQUIRE(test::max_abs_diff(out.span(), ref.span()) <= 1e-4);
    }
  }
}

TEST_CASE("rms_norm: unit RMS after normalisation with w = 1", "[norm]") {
  auto x = test::random_tensor<float, 2>({4, 100}, -10.f, 10.f);
  std::vector<float> w(100, 1.f);
  Tensor<float, 2> out({4, 100});
  simd::rms_norm(x.view(), w, 0.f, out.view());
  for (int64_t t = 0; t < 4; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < 100; ++i) ss += out(t, i) * out(t, i);
    REQUIRE(std::sqrt(ss / 100) == Approx(1.0).epsilon(1e-5));  // float sums of 100 terms
  }
}

TEST_CASE("rope: simd equals scalar, both styles, partial rotation", "[rope]") {
  for (auto style : {RopeStyle::interleaved, RopeStyle::neox}) {
    for (int64_t head_dim : {2, 8, 64, 80, 128}) {
      for (int n_dims : {2, static_cast<int>(head_dim)}) {
        const RopeParams p{n_dims, 10000.f, 1.f, style};
        auto x = test::random_tensor<float, 3>({5, 3, head_dim});
        auto y = x.clone();
        const std::vector<int32_t> pos = {0, 1, 7, 300, 8191};
        scalar::rope(x.view(), pos, p);
        simd::rope(y.view(), pos, p);
        INFO("head_dim=" << head_dim << " n_dims=" << n_dims);
        // Same theta, same cos/sin calls: only FMA contraction may differ (1 ulp of O(1) values).
        REQUIRE(test::max_abs_diff(x.span(), y.span()) <= 1e-6);
      }
    }
  }
}

TEST_CASE("rope: position 0 is the identity, and rotation preserves pair norms", "[rope]") {
  const RopeParams p{64, 10000.f, 1.f, RopeStyle::neox};
  auto x = test::random_tensor<float, 3>({2, 2, 64});
  auto y = x.clone();
  const std::vector<int32_t> pos = {0, 1234};
  simd::rope(y.view(), pos, p);
  for (int64_t i = 0; i < 64; ++i) REQUIRE(y(0, 0, i) == x(0, 0, i));
  for (int i = 0; i < 32; ++i) {
    const double before = std::hypot(x(1, 1, i), x(1, 1, i + 32)), after = std::hypot(y(1, 1, i), y(1, 1, i + 32));
    REQUIRE(after == Approx(before).epsilon(1e-6));
  }
  // Relative position property: <rope(q, m), rope(k, n)> depends on m - n only.
  auto q = test::random_tensor<float, 3>({1, 1, 64}), k = test::random_tensor<float, 3>({1, 1, 64});
  auto dot_at = [&](int32_t m, int32_t n) {
    auto qq = q.clone(), kk = k.clone();
    const std::vector<int32_t> pm = {m}, pn = {n};
    simd::rope(qq.view(), pm, p);
    simd::rope(kk.view(), pn, p);
    double s = 0;
    for (int64_t i = 0; i < 64; ++i) s += qq(0, 0, i) * kk(0, 0, i);
    return s;
  };
  REQUIRE(dot_at(10, 3) == Approx(dot_at(107, 100)).margin(1e-4));  // theta error ~ulp(107) * |q||k|
}
