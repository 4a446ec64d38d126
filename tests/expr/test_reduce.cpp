// Reductions along the last axis (sum, mean, max, min into [..., 1]), argmax,
// softmax and log-softmax: both backends against double loops over ranks 1-4,
// tails and strided inputs; ties, NaN and empty rows; stability at +-1e4.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "expr_test_util.hpp"
#include "tessera/backend/eval.hpp"

using namespace tessera;
using namespace tessera::expr;
using test::kEps;
using test::kScalar;
using test::kSimd;

namespace {


/// Float summation error bound for n terms of total magnitude abs_sum, for
/// the SIMD order (two batch accumulators of width >= 4 each take <= n/8
/// terms, then <= 2W + W more additions with W <= 16): (n/8 + 48) eps abs_sum.
double sum_tolerance(int64_t n, double abs_sum) { return (double(n) / 8 + 48) * kEps * abs_sum; }

/// The row of x at outer index idx, as doubles.
template <int R>
std::vector<double> row_of(const TensorView<const float, R>& x, std::type_identity_t<Shape<R>> idx) {
  std::vector<double> r;
  for (idx[R - 1] = 0; idx[R - 1] < x.dim(R - 1); ++idx[R - 1]) r.push_back(test::bcast_at(x, idx));
  return r;
}

template <int R>
void reductions_once(bool transposed) {
  const Shape<R> shape = test::random_shape<R>();
  auto x = test::make_operand<R>(shape, transposed, -2.f, 2.f);
  Shape<R> out_shape = shape;
  out_shape[R - 1] = 1;
  Shape<R> rows = shape;
  rows[R - 1] = 1;
  const int64_t n = shape[R - 1];
  for (int backend = 0; backend < 2; ++backend) {
    Tensor<float, R> sum(out_shape), mean(out_shape), mx(out_shape), mn(out_shape), fused(out_shape);
    auto run = [&](auto& dst, const auto& e) {
      if (backend == 0) eval(kScalar, dst, e);
      else eval(kSimd, dst, e);
    };
    run(sum, sum_last(x.view));
    run(mean, mean_last(x.view));
    run(mx, max_last(x.view));
    run(mn, min_last(x.view));
    run(fused, sum_last(exp(x.view) * 0.5f) - max_last(x.view));
    test::for_each_index<R>(rows, [&](const Shape<R>& idx) {
      const auto r = row_of(x.view, idx);
      double s = 0, a = 0, m = -INFINITY, lo = INFINITY, se = 0;
      for (double v : r) s += v, a += std::fabs(v), m = std::max(m, v), lo = std::min(lo, v);
      for (double v : r) se += 0.5 * std::exp(v);  // all terms positive: also their magnitude
      INFO(shape_str(shape) << (transposed ? " transposed" : "") << (backend ? " simd" : " scalar"));
      CHECK(std::fabs(test::at(sum.view(), idx) - s) <= sum_tolerance(n, a));
      CHECK(std::fabs(test::at(mean.view(), idx) - s / n) <= sum_tolerance(n, a) / n + kEps * std::fabs(s / n));
      CHECK(test::at(mx.view(), idx) == m);  // max and min are exact
      CHECK(test::at(mn.view(), idx) == lo);
      // exp terms within 2 eps each (xsimd 1.05 eps measured) on top of the sum bound.
      CHECK(std::fabs(test::at(fused.view(), idx) - (se - m)) <=
            sum_tolerance(n, se) + 2 * kEps * se + kEps * std::fabs(m));
    });
  }
}

}  // namespace

TEST_CASE("sum, mean, max, min along the last axis into [..., 1] match double loops", "[reduce]") {
  for (int rep = 0; rep < 6; ++rep)
    for (bool t : {false, true}) {
      reductions_once<1>(t);
      reductions_once<2>(t);
      reductions_once<3>(t);
      reductions_once<4>(t);
    }
}

TEST_CASE("reductions: empty rows, a broadcast operand, shape errors", "[reduce]") {
  Tensor<float, 2> x({3, 0}), out({3, 1});
  for (int backend = 0; backend < 2; ++backend) {
    auto run = [&](const auto& e) {
      if (backend == 0) eval(kScalar, out, e);
      else eval(kSimd, out, e);
    };
    run(sum_last(x));
    CHECK(out(2, 0) == 0.f);
    run(max_last(x));
    CHECK(out(1, 0) == -std::numeric_limits<float>::infinity());
    run(mean_last(x));
    CHECK(std::isnan(out(0, 0)));
  }
  // A [m] operand broadcast over rows inside the reduction: every row sums the same values.
  auto w = test::random_tensor<float, 1>({37});
  auto y = test::random_tensor<float, 2>({4, 37});
  Tensor<float, 2> s({4, 1});
  eval(kSimd, s, sum_last(in(y) * 0.f + w));
  double want = 0, mag = 0;
  for (int64_t j = 0; j < 37; ++j) want += w(j), mag += std::fabs(w(j));
  for (int64_t i = 0; i < 4; ++i) CHECK(std::fabs(s(i, 0) - want) <= sum_tolerance(37, mag));
  Tensor<float, 2> bad({4, 37});
  CHECK_THROWS_AS(eval(kSimd, bad, sum_last(y)), Error);  // reductions keep the axis: [4, 1]
  CHECK_THROWS_AS(eval(kScalar, bad, max_last(y)), Error);
}

namespace {

template <class I, int R>
void argmax_once(bool transposed) {
  const Shape<R> shape = test::random_shape<R>();
  auto x = test::make_operand<R>(shape, transposed);
  // Few distinct levels make ties likely; first-index rule must decide them.
  for (auto& v : x.store.span()) v = std::round(v * 3.f);
  Shape<R> out_shape = shape;
  out_shape[R - 1] = 1;
  Tensor<I, R> as(out_shape), av(out_shape);
  argmax_last(kScalar, as, x.view);
  argmax_last(kSimd, av, x.view);
  test::for_each_index<R>(out_shape, [&](const Shape<R>& idx) {
    const auto r = row_of(x.view, idx);
    int64_t want = 0;
    for (size_t j = 1; j < r.size(); ++j)
      if (r[j] > r[want]) want = static_cast<int64_t>(j);
    INFO(shape_str(shape) << (transposed ? " transposed" : ""));
    CHECK(test::at(as.view(), idx) == want);
    CHECK(test::at(av.view(), idx) == want);
  });
}

}  // namespace

TEST_CASE("argmax_last: first index of the maximum, int64 and int32, both backends", "[reduce]") {
  for (int rep = 0; rep < 6; ++rep)
    for (bool t : {false, true}) {
      argmax_once<int64_t, 1>(t);
      argmax_once<int64_t, 2>(t);
      argmax_once<int32_t, 3>(t);
      argmax_once<int32_t, 4>(t);
    }
  // NaNs are skipped, -inf rows give their first index, empty rows give 0.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  Tensor<float, 2> x({3, 19});
  for (int64_t j = 0; j < 19; ++j) x(0, j) = nan, x(1, j) = -inf, x(2, j) = float(j % 5);
  x(0, 11) = -3.f;
  x(1, 0) = nan;
  x(2, 13) = nan;
  Tensor<int64_t, 2> idx({3, 1});
  for (int backend = 0; backend < 2; ++backend) {
    if (backend == 0) argmax_last(kScalar, idx, x);
    else argmax_last(kSimd, idx, x);
    CHECK(idx(0, 0) == 11);
    CHECK(idx(1, 0) == 1);
    CHECK(idx(2, 0) == 4);
  }
  Tensor<float, 2> empty({2, 0});
  Tensor<int32_t, 2> eidx({2, 1});
  eidx(1, 0) = 7;
  argmax_last(kSimd, eidx, empty);
  CHECK(eidx(1, 0) == 0);
  Tensor<int64_t, 1> flat({3});
  CHECK_THROWS_AS(argmax_last(kSimd, flat.view().reshape<2>({1, 3}), x), Error);
}

namespace {

template <int R>
void softmax_once(bool transposed, float scale) {
  const Shape<R> shape = test::random_shape<R>();
  auto x = test::make_operand<R>(shape, transposed, -4.f, 4.f);
  const int64_t n = shape[R - 1];
  Shape<R> rows = shape;
  rows[R - 1] = 1;
  for (int backend = 0; backend < 2; ++backend) {
    auto p = test::make_dest<R>(shape, transposed), lp = test::make_dest<R>(shape, !transposed);
    if (backend == 0) softmax(kScalar, p.view, in(x.view) * scale), log_softmax(kScalar, lp.view, in(x.view) * scale);
    else softmax(kSimd, p.view, in(x.view) * scale), log_softmax(kSimd, lp.view, in(x.view) * scale);
    test::for_each_index<R>(rows, [&](Shape<R> idx) {
      auto r = row_of(x.view, idx);
      double m = -INFINITY, s = 0;
      for (double& v : r) v = double(float(v * scale)), m = std::max(m, v);
      for (double v : r) s += std::exp(v - m);
      INFO(shape_str(shape) << (transposed ? " transposed" : "") << (backend ? " simd" : " scalar"));
      for (idx[R - 1] = 0; idx[R - 1] < n; ++idx[R - 1]) {
        const double v = r[idx[R - 1]], want = std::exp(v - m) / s, log_want = v - m - std::log(s);
        // Relative: x - m rounds (eps |x - m|, inputs <= 8 apart after scaling),
        // exp adds <= 1.05 eps, the float sum (n/8 + 48) eps, the division 1 eps.
        CHECK(std::fabs(test::at(p.view, idx) - want) <= (std::fabs(v - m) + double(n) / 8 + 52) * kEps * want);
        // Absolute: the same, on values of size |x - m| + log n.
        CHECK(std::fabs(test::at(lp.view, idx) - log_want) <=
              (2 * std::fabs(v - m) + std::fabs(std::log(s)) + double(n) / 8 + 52) * kEps);
      }
    });
  }
}

}  // namespace

TEST_CASE("softmax and log_softmax of an expression match double, both backends", "[reduce][softmax]") {
  for (int rep = 0; rep < 4; ++rep)
    for (bool t : {false, true}) {
      softmax_once<1>(t, 1.f);
      softmax_once<2>(t, 0.5f);
      softmax_once<3>(t, 2.f);
      softmax_once<4>(t, 1.f);
    }
}

TEST_CASE("softmax is stable for inputs of +-1e4: finite, sums to 1, in place", "[reduce][softmax]") {
  for (int64_t n : test::kLastExtents) {
    auto x = test::random_tensor<float, 2>({4, n}, -1e4f, 1e4f);
    x(0, 0) = 1e4f;
    x(1, n - 1) = -1e4f;
    for (int64_t j = 0; j < n; ++j) x(3, j) = 1e4f;  // all equal: uniform
    for (int backend = 0; backend < 2; ++backend) {
      Tensor<float, 2> p = x.clone(), lp({4, n});
      if (backend == 0) softmax(kScalar, p, p), log_softmax(kScalar, lp, x);
      else softmax(kSimd, p, p), log_softmax(kSimd, lp, x);
      for (int64_t i = 0; i < 4; ++i) {
        double s = 0, se = 0;
        for (int64_t j = 0; j < n; ++j) {
          REQUIRE(std::isfinite(p(i, j)));
          REQUIRE(std::isfinite(lp(i, j)));
          CHECK(lp(i, j) <= 0.f);
          s += p(i, j), se += std::exp(double(lp(i, j)));
        }
        INFO("n = " << n << (backend ? " simd" : " scalar") << " row " << i);
        // Each p within (n/8 + 52) eps relative (see above) and they sum to 1.
        CHECK(std::fabs(s - 1) <= (double(n) / 8 + 52) * kEps);
        // log-softmax values reach -2e4, where one float ulp is 2e-3 absolute:
        // only the largest terms matter for the sum, and they are near 0.
        CHECK(std::fabs(se - 1) <= (double(n) / 8 + 52) * kEps);
        if (i == 3) CHECK(std::fabs(p(3, n - 1) - 1.0 / n) <= 4 * kEps / n);
      }
    }
  }
}

TEST_CASE("softmax written with reductions as operands equals the softmax kernel", "[reduce][softmax]") {
  auto x = test::random_tensor<float, 3>({2, 3, 45}, -5.f, 5.f);
  Tensor<float, 3> a({2, 3, 45}), b({2, 3, 45});
  const auto xv = in(x);
  eval(kSimd, a, exp(xv - max_last(xv)) / sum_last(exp(xv - max_last(xv))));
  softmax(kSimd, b, x);
  double worst = 0;
  for (int64_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::fabs(a.data()[i] - b.data()[i]) / double(b.data()[i]));
  INFO("worst " << worst / kEps << " eps");
  // Same maths, but the expression divides where the kernel multiplies by 1/sum: a few eps.
  CHECK(worst <= 8 * kEps);
  Tensor<float, 2> bad({2, 45});
  CHECK_THROWS_AS(softmax(kSimd, bad.view().reshape<3>({2, 1, 45}), x), Error);
}
