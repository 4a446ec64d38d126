// Norms, rope, gated activations, add, softmax, argmax, top-k and embedding
// rows on the GPU against the scalar CPU kernels.
#include "gpu_test_util.hpp"

#include <algorithm>
#include <numeric>

#include "tessera/backend/scalar/activation.hpp"
#include "tessera/backend/scalar/eval.hpp"
#include "tessera/backend/scalar/norm.hpp"
#include "tessera/backend/scalar/rope.hpp"
#include "tessera/core/quant.hpp"

using namespace tessera;
namespace tc = tessera::cuda;

namespace {
// The CPU norms sum in double; the GPU sums n floats as a tree (256 partial
// sums, then 32): error <= (n/256 + 13) 2^-24 relative to the sum of squares,
// plus a few roundings for the rsqrt and the two products: 1e-5 relative to
// |x| |w| scale covers n up to 10^5 with a wide margin.
void check_close(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs_tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": gpu " << got[i] << ", cpu " << want[i]);
    REQUIRE(std::fabs(got[i] - want[i]) <= rel * std::fabs(want[i]) + abs_tol);
  }
}
}  // namespace

TEST_CASE("cuda rms_norm and layer_norm match the scalar kernels", "[cuda][norm]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  for (auto [t, n] : {std::pair<int64_t, int64_t>{1, 1}, {3, 31}, {5, 4097}, {2, 12289}}) {
    CAPTURE(t, n);
    const auto x = gpu_test::random_floats(static_cast<size_t>(t * n), 11, 3.f);
    const auto w = gpu_test::random_floats(static_cast<size_t>(n), 12);
    const auto b = gpu_test::random_floats(static_cast<size_t>(n), 13);
    auto dx = gpu_test::to_dev<float, 2>(s, x, {t, n});
    auto dw = gpu_test::to_dev<float, 1>(s, w, {n});
    auto db = gpu_test::to_dev<float, 1>(s, b, {n});
    tc::DeviceTensor<float, 2> out({t, n});
    std::vector<float> ref(x.size());
    const TensorView<const float, 2> xv(x.data(), {t, n});
    const TensorView<float, 2> rv(ref.data(), {t, n});

    gpu_test::poison(s, out.view());
    tc::rms_norm(s, dx.view(), dw.view(), 1e-5f, out.view());
    backend::scalar::rms_norm(xv, w, 1e-5f, rv);
    check_close(gpu_test::to_host(s, out.view()), ref, 1e-5, 1e-6);

    tc::layer_norm(s, dx.view(), dw.view(), db.view(), 1e-5f, out.view());
    backend::scalar::layer_norm(xv, w, b, 1e-5f, rv);
    // + |b|-sized absolute slack: the bias add rounds at the scale of b.
    check_close(gpu_test::to_host(s, out.view()), ref, 1e-5, 1e-5);

    tc::layer_norm(s, dx.view(), dw.view(), {}, 1e-5f, out.view());
    backend::scalar::layer_norm(xv, w, {}, 1e-5f, rv);
    check_close(gpu_test::to_host(s, out.view()), ref, 1e-5, 1e-6);
  }
}

TEST_CASE("cuda rope matches the scalar kernel in every style and scaling", "[cuda][rope]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  const int64_t t = 7, h = 5, d = 96;
  std::vector<int32_t> pos(static_cast<size_t>(t));
  for (int64_t i = 0; i < t; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(i * 1237 % 9001);
  auto dpos = gpu_test::to_dev<int32_t, 1>(s, pos, {t});
  const RopeParams plain{64, 10000.f};
  RopeParams neox{96, 500000.f};
  neox.style = RopeStyle::neox;
  for (const RopeParams& p : {plain, neox, rope_linear(96, 10000.f, 4.f), rope_ntk(80, 10000.f, 8.f),
                              rope_yarn(64, 10000.f, 16.f, 4096, RopeStyle::interleaved)}) {
    auto x = gpu_test::random_floats(static_cast<size_t>(t * h * d), 21);
    auto dx = gpu_test::to_dev<float, 3>(s, x, {t, h, d});
    tc::rope(s, dx.view(), dpos.view(), p);
    backend::scalar::rope(TensorView<float, 3>(x.data(), {t, h, d}), pos, p);
    // Same theta (pos * freq in float) on both sides; sincosf and std::sin/cos
    // are each within 2 ulp, so a rotated value is within ~4 ulp of |a| + |b|.
    check_close(gpu_test::to_host(s, dx.view()), x, 1e-6, 4e-6);
  }
}

TEST_CASE("cuda swiglu, geglu and add match the scalar kernels", "[cuda][activation]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  const int64_t t = 3, n = 1001;
  const auto g = gpu_test::random_floats(static_cast<size_t>(t * n), 31, 4.f);
  const auto u = gpu_test::random_floats(static_cast<size_t>(t * n), 32);
  auto dg = gpu_test::to_dev<float, 2>(s, g, {t, n});
  auto du = gpu_test::to_dev<float, 2>(s, u, {t, n});
  tc::DeviceTensor<float, 2> out({t, n});
  std::vector<float> ref(g.size());

  tc::swiglu(s, dg.view(), du.view(), out.view());
  backend::scalar::swiglu(g, u, ref);
  check_close(gpu_test::to_host(s, out.view()), ref, 2e-6, 1e-7);  // expf within 2 ulp of std::exp

  tc::geglu(s, dg.view(), du.view(), out.view());
  for (size_t i = 0; i < g.size(); ++i) {
    const double x = g[i];
    ref[i] = static_cast<float>(0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) * u[i]);
  }
  // tanhf within 2 ulp; near gelu's zero (x ~ -3 .. -5) the value is small, hence the absolute term.
  check_close(gpu_test::to_host(s, out.view()), ref, 4e-6, 1e-6);

  tc::add(s, dg.view(), du.view(), out.view());
  backend::scalar::add(g, u, ref);
  CHECK(gpu_test::to_host(s, out.view()) == ref);  // one rounding on both sides: bit for bit
}

TEST_CASE("cuda softmax, argmax and top-k match the CPU", "[cuda][sample]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  const int64_t r = 4, n = 50021;
  auto x = gpu_test::random_floats(static_cast<size_t>(r * n), 41, 5.f);
  x[static_cast<size_t>(n + 17)] = NAN;                // NaN never wins
  x[static_cast<size_t>(2 * n + 5)] = 100.f;           // a tie: the lower index wins
  x[static_cast<size_t>(2 * n + 900)] = 100.f;
  std::fill(x.begin() + 3 * n, x.end(), -1.f);         // all equal: index 0
  auto dx = gpu_test::to_dev<float, 2>(s, x, {r, n});

  tc::DeviceTensor<float, 2> out({r, n});
  tc::softmax(s, dx.view(), out.view());
  std::vector<float> ref(x.size());
  std::vector<float> clean(x);
  clean[static_cast<size_t>(n + 17)] = 0.f;  // the scalar softmax would spread the NaN over the row
  auto dclean = gpu_test::to_dev<float, 2>(s, clean, {r, n});
  tc::softmax(s, dclean.view(), out.view());
  backend::scalar::softmax(TensorView<float, 2>(ref.data(), {r, n}), TensorView<const float, 2>(clean.data(), {r, n}));
  // expf within 2 ulp per term; the sum over n terms as a float tree: ~ (n/256 + 13) 2^-24.
  check_close(gpu_test::to_host(s, out.view()), ref, 2e-5, 1e-12);

  tc::DeviceTensor<int32_t, 1> am({r});
  tc::argmax(s, dx.view(), am.view());
  std::vector<int32_t> want(static_cast<size_t>(r));
  backend::scalar::argmax_last(TensorView<int32_t, 2>(want.data(), {r, 1}), TensorView<const float, 2>(x.data(), {r, n}));
  CHECK(gpu_test::to_host(s, am.view()) == want);

  const int64_t k = 40;
  tc::DeviceTensor<int32_t, 2> idx({r, k});
  tc::DeviceTensor<float, 2> val({r, k});
  tc::top_k(s, dx.view(), idx.view(), val.view());
  const auto gi = gpu_test::to_host(s, idx.view());
  const auto gv = gpu_test::to_host(s, val.view());
  for (int64_t row = 0; row < r; ++row) {
    std::vector<int32_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    const float* xr = x.data() + row * n;
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      const bool an = std::isnan(xr[a]), bn = std::isnan(xr[b]);
      if (an != bn) return bn;
      return xr[a] != xr[b] ? xr[a] > xr[b] : a < b;
    });
    for (int64_t j = 0; j < k; ++j) {
      INFO("row " << row << " rank " << j);
      CHECK(gi[static_cast<size_t>(row * k + j)] == order[static_cast<size_t>(j)]);
      CHECK(gv[static_cast<size_t>(row * k + j)] == xr[order[static_cast<size_t>(j)]]);
    }
  }
}

TEMPLATE_TEST_CASE("cuda embedding rows match dequantize_row", "[cuda][embedding]", float, f16, bf16, block_q8_0,
                   block_q4_0, block_q4_1, block_q5_0, block_q5_1, block_q4_K, block_q6_K) {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  constexpr int bs = quant_traits<TestType>::block_size;
  const int64_t vocab = 37, width = bs == 256 ? 768 : 96;
  const auto f = gpu_test::random_floats(static_cast<size_t>(vocab * width), 51);
  std::vector<TestType> table(static_cast<size_t>(vocab * width / bs));
  if constexpr (bs == 1) {
    for (size_t i = 0; i < table.size(); ++i) table[i] = TestType(f[i]);
  } else {
    quantize_row(std::span<const float>(f), std::span<TestType>(table));
  }
  const std::vector<int32_t> ids{36, 0, 5, 5, 17};
  auto dt = gpu_test::to_dev<TestType, 2>(s, table, {vocab, width / bs});
  auto di = gpu_test::to_dev<int32_t, 1>(s, ids, {5});
  tc::DeviceTensor<float, 2> out({5, width});
  tc::embedding<TestType>(s, dt.view(), di.view(), out.view());
  const auto got = gpu_test::to_host(s, out.view());
  std::vector<float> want(static_cast<size_t>(width));
  for (size_t t = 0; t < ids.size(); ++t) {
    const auto* row = table.data() + ids[t] * (width / bs);
    if constexpr (bs == 1) {
      for (int64_t i = 0; i < width; ++i) want[static_cast<size_t>(i)] = static_cast<float>(row[i]);
    } else {
      dequantize_row(std::span<const TestType>(row, static_cast<size_t>(width / bs)), std::span<float>(want));
    }
    // d * q (+ m) on both sides; the GPU may fuse the multiply-add: 1 ulp.
    for (int64_t i = 0; i < width; ++i)
      REQUIRE(std::fabs(got[t * width + i] - want[static_cast<size_t>(i)]) <= 1.2e-7 * std::fabs(want[static_cast<size_t>(i)]) + 1e-30);
  }
}
