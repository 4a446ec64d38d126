// SIMD causal GQA attention, swiglu and add against the scalar reference, and
// attention against an independent double-precision computation.
#include <catch2/catch.hpp>

#include <omp.h>

#include "../test_util.hpp"
#include "tessera/backend/scalar/activation.hpp"
#include "tessera/backend/scalar/attention.hpp"
#include "tessera/backend/simd/activation.hpp"
#include "tessera/backend/simd/attention.hpp"

using namespace tessera;
namespace scalar = tessera::backend::scalar;
namespace simd = tessera::backend::simd;

TEST_CASE("attention_causal: simd equals scalar over heads, GQA groups and positions", "[attention]") {
  for (int64_t n_heads : {1, 4, 9}) {
    for (int64_t n_kv_heads = 1; n_kv_heads <= n_heads; ++n_kv_heads) {
      if (n_heads % n_kv_heads) continue;
      for (int64_t d : {1, 7, 64}) {
        for (auto [n_tok, pos0] : {std::pair<int64_t, int64_t>{1, 0}, {1, 12}, {5, 0}, {6, 17}}) {
          const int64_t n_kv = pos0 + n_tok + 3;  // extra cached rows beyond the causal range must be ignored
          auto q = test::random_tensor<float, 3>({n_tok, n_heads, d}, -2.f, 2.f);
          auto k = test::random_tensor<float, 3>({n_kv, n_kv_heads, d}, -2.f, 2.f);
          auto v = test::random_tensor<float, 3>({n_kv, n_kv_heads, d});
          Tensor<float, 3> ref({n_tok, n_heads, d}), out({n_tok, n_heads, d});
          std::vector<float> scratch(scalar::attention_scratch_size(n_kv, omp_get_max_threads()));
          const float scale = 1.f / std::sqrt(static_cast<float>(d));
          scalar::attention_causal(q.view(), k.view(), v.view(), pos0, scale, ref.view(), scratch);
          simd::attention_causal(q.view(), k.view(), v.view(), pos0, scale, out.view(), scratch);
          INFO("heads " << n_heads << "/" << n_kv_heads << " d=" << d << " tokens=" << n_tok << " pos0=" << pos0);
          // Outputs are convex combinations of |v| <= 1; score differences of a
          // few ulp (|s| <= 4 d scale) move the weights by ~1e-6 relative; 1e-5
          // is a safe bound, and a wrong head/group mapping gives errors ~0.1+.
          REQUIRE(test::max_abs_diff(out.span(), ref.span()) <= 1e-5);
        }
      }
    }
  }
}

TEST_CASE("attention_causal: matches a double-precision softmax(q k^T) v, and ignores future keys", "[attention]") {
  const int64_t n_tok = 3, n_heads = 4, n_kvh = 2, d = 16, pos0 = 2, n_kv = 8;
  auto q = test::random_tensor<float, 3>({n_tok, n_heads, d});
  auto k = test::random_tensor<float, 3>({n_kv, n_kvh, d});
  auto v = test::random_tensor<float, 3>({n_kv, n_kvh, d});
  Tensor<float, 3> out({n_tok, n_heads, d});
  std::vector<float> scratch(scalar::attention_scratch_size(n_kv, omp_get_max_threads()));
  simd::attention_causal(q.view(), k.view(), v.view(), pos0, 0.25f, out.view(), scratch);
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t g = h / (n_heads / n_kvh);
      std::vector<double> w;
      double sum = 0;
      for (int64_t j = 0; j <= pos0 + t; ++j) {
        double s = 0;
        for (int64_t i = 0; i < d; ++i) s += static_cast<double>(q(t, h, i)) * k(j, g, i);
        w.push_back(std::exp(0.25 * s));
        sum += w.back();
      }
      for (int64_t i = 0; i < d; ++i) {
        double o = 0;
        for (size_t j = 0; j < w.size(); ++j) o += w[j] / sum * v(static_cast<int64_t>(j), g, i);
        REQUIRE(out(t, h, i) == Approx(o).margin(1e-5));  // float dot products of 16 terms
      }
    }
  // Future keys (positions > pos0 + t) must not matter: perturb them, same output.
  auto out2 = out.clone();
  for (int64_t i = 0; i < d; ++i) { k(n_kv - 1, 0, i) = 100.f; v(n_kv - 1, 1, i) = -100.f; }
  simd::attention_causal(q.view(), k.view(), v.view(), pos0, 0.25f, out2.view(), scratch);
  REQUIRE(test::max_abs_diff(out.span(), out2.span()) == 0.0);
}

TEST_CASE("attention_causal rejects bad shapes", "[attention]") {
  Tensor<float, 3> q({2, 3, 8}), k({4, 2, 8}), v({4, 2, 8}), out({2, 3, 8});
  std::vector<float> scratch(64);
  REQUIRE_THROWS_AS(simd::attention_causal(q.view(), k.view(), v.view(), 0, 1.f, out.view(), scratch), Error);  // 3 % 2
  Tensor<float, 3> q2({2, 4, 8}), out2({2, 4, 8});
  REQUIRE_THROWS_AS(simd::attention_causal(q2.view(), k.view(), v.view(), 3, 1.f, out2.view(), scratch), Error);  // 3 + 2 > 4
}

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
