// The fused decode-step kernels (add_rms_norm, swiglu_quant, rope_kv_store)
// against the composition of the kernels they replace, which the other GPU
// tests check against the scalar CPU kernels, and against those CPU kernels
// directly. Each fused kernel runs the device code of the kernels it
// replaces, with the same float operations in the same order (the same block
// size and partial sums for the norm, the shared quantizer, rotation and
// cache-store functions), so the comparison with the composition is bit for
// bit: floats, int8 activations (seen through the GEMV that reads them: its
// outputs equal bit for bit only if every int8 value, scale and block sum
// does) and cache bytes. Sizes are odd where the kernels allow: rows of 96 or
// 4160 values (3 or 130 blocks of 32, not a multiple of the 256 threads), 768
// and 4352 for q8_K (3 and 17 blocks of 256), 1, 2 or 3 rows, 37 weight rows,
// 5 query and 3 KV heads, head_dim 96.
#include "gpu_test_util.hpp"

#include <cstring>

#include "tessera/backend/scalar/activation.hpp"
#include "tessera/backend/scalar/norm.hpp"
#include "tessera/backend/scalar/rope.hpp"
#include "tessera/core/quant.hpp"

using namespace tessera;
namespace tc = tessera::cuda;

namespace {

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// |got - want| <= rel |want| + abs, element by element.
void check_close(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs_tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": gpu " << got[i] << ", cpu " << want[i]);
    REQUIRE(std::fabs(got[i] - want[i]) <= rel * std::fabs(want[i]) + abs_tol);
  }
}

// A random [n, k] matrix of W on the device as the decode step holds it: in
// the split layout (SplitWeight) or in GGUF blocks; gemv() runs the GEMV the
// model runs over it.
template <class W>
struct Matrix {
  static constexpr int bs = quant_traits<W>::block_size;
  tc::DeviceTensor<std::byte, 1> buf;
  tc::SplitWeight sw{};
  bool split = false;
  int64_t n = 0, k = 0;

  Matrix(const tc::Stream& s, int64_t rows, int64_t cols, bool as_split, uint32_t seed)
      : split(as_split), n(rows), k(cols) {
    const auto f = gpu_test::random_floats(static_cast<size_t>(n * k), seed, 0.5f);
    std::vector<W> w(static_cast<size_t>(n * k / bs));
    if constexpr (bs == 1) {
      for (size_t i = 0; i < w.size(); ++i) w[i] = W(f[i]);
    } else {
      quantize_row(std::span<const float>(f), std::span<W>(w));
    }
    const auto* bytes = reinterpret_cast<const std::byte*>(w.data());
    std::vector<std::byte> host(bytes, bytes + w.size() * sizeof(W));
    if (split) {
      const GgmlType t = quant_traits<W>::type;
      std::vector<std::byte> packed(static_cast<size_t>(tc::SplitWeight::bytes(t, n, k)));
      tc::split_rows(t, host.data(), n, k, packed.data(), n, 0);
      host = std::move(packed);
    }
    buf = gpu_test::to_dev<std::byte, 1>(s, host, {static_cast<int64_t>(host.size())});
    if (split) sw = tc::SplitWeight::at(quant_traits<W>::type, buf.data(), n, k);
  }

  void gemv(const tc::Stream& s, tc::DeviceView<const float, 2> x, tc::DeviceView<float, 2> y,
            tc::DeviceView<std::byte, 1> ws, bool x_quantized) const {
    if (split) {
      tc::gemv_split(s, sw, x, y, ws, x_quantized);
    } else {
      const tc::DeviceView<const W, 2> wv(reinterpret_cast<const W*>(buf.data()), {n, k / bs});
      tc::gemv<W>(s, wv, x, y, ws, x_quantized);
    }
  }
};

constexpr int64_t kRows = 37;  // weight rows of the GEMV that reads the fused kernels' output
constexpr float kEps = 1e-5f;

tc::DeviceTensor<std::byte, 1> act_workspace(tc::ActQuant q, int64_t mk) {
  return tc::DeviceTensor<std::byte, 1>({static_cast<int64_t>(tc::act_quant_bytes(q, mk)) + 256});
}

// x [t, n] += dx, rms_norm, and the GEMV of W after it: the fused kernel
// against add, rms_norm and the GEMV's own quantizer.
template <class W>
void check_add_rms_norm(const tc::Stream& s, int64_t t, int64_t n, bool split, bool with_dx, uint32_t seed) {
  CAPTURE(quant_traits<W>::name, t, n, split, with_dx);
  const tc::ActQuant q = tc::act_quant(quant_traits<W>::type);
  const auto x0 = gpu_test::random_floats(static_cast<size_t>(t * n), seed, 3.f);
  const auto dx = gpu_test::random_floats(static_cast<size_t>(t * n), seed + 1);
  const auto w = gpu_test::random_floats(static_cast<size_t>(n), seed + 2);
  auto xa = gpu_test::to_dev<float, 2>(s, x0, {t, n}), xb = gpu_test::to_dev<float, 2>(s, x0, {t, n});
  auto ddx = gpu_test::to_dev<float, 2>(s, dx, {t, n});
  auto dw = gpu_test::to_dev<float, 1>(s, w, {n});
  const tc::DeviceView<const float, 2> d = with_dx ? ddx.view() : tc::DeviceView<const float, 2>{};
  const Matrix<W> m(s, kRows, n, split, seed + 3);
  tc::DeviceTensor<float, 2> outa({t, n}), outb({t, n}), ya({t, kRows}), yb({t, kRows});
  auto wsa = act_workspace(q, t * n), wsb = act_workspace(q, t * n);
  for (auto* p : {&outa, &outb, &ya, &yb}) gpu_test::poison(s, p->view());

  if (with_dx) tc::add(s, xa.view(), ddx.view(), xa.view());  // what the decode step ran before
  tc::rms_norm(s, xa.view(), dw.view(), kEps, outa.view());
  m.gemv(s, outa.view(), ya.view(), wsa.view(), false);

  tc::add_rms_norm(s, xb.view(), d, dw.view(), kEps, outb.view(), q, wsb.view());
  m.gemv(s, outb.view(), yb.view(), wsb.view(), true);

  const auto ha = gpu_test::to_host(s, xa.view()), na = gpu_test::to_host(s, outa.view());
  const auto y_ref = gpu_test::to_host(s, ya.view());
  CHECK(same_bits(gpu_test::to_host(s, xb.view()), ha));  // x + dx stays for the next residual
  CHECK(same_bits(gpu_test::to_host(s, outb.view()), na));
  CHECK(same_bits(gpu_test::to_host(s, yb.view()), y_ref));

  if (q != tc::ActQuant::none) {
    // Only the int8 copy: no float output; the GEMV gets a poisoned x of the
    // right shape, which it must not read.
    auto xc = gpu_test::to_dev<float, 2>(s, x0, {t, n});
    tc::DeviceTensor<float, 2> junk({t, n}), yc({t, kRows});
    gpu_test::poison(s, junk.view());
    gpu_test::poison(s, yc.view());
    auto wsc = act_workspace(q, t * n);
    tc::add_rms_norm(s, xc.view(), d, dw.view(), kEps, {}, q, wsc.view());
    m.gemv(s, junk.view(), yc.view(), wsc.view(), true);
    CHECK(same_bits(gpu_test::to_host(s, xc.view()), ha));
    CHECK(same_bits(gpu_test::to_host(s, yc.view()), y_ref));
  }

  // The CPU's norm of x + dx: add bit for bit (one rounding on both sides),
  // then rms_norm's tolerance (tests/cuda/cuda_elementwise.cpp: a float tree
  // sum against double, 1e-5 relative).
  std::vector<float> xs(x0), ref(x0.size());
  if (with_dx) backend::scalar::add(x0, dx, xs);
  CHECK(same_bits(ha, xs));
  backend::scalar::rms_norm(TensorView<const float, 2>(xs.data(), {t, n}), w, kEps,
                            TensorView<float, 2>(ref.data(), {t, n}));
  check_close(na, ref, 1e-5, 1e-6);
}

// swiglu and the GEMV of W after it: the fused kernel against swiglu and the
// GEMV's own quantizer.
template <class W>
void check_swiglu_quant(const tc::Stream& s, int64_t t, int64_t n, bool split, uint32_t seed) {
  CAPTURE(quant_traits<W>::name, t, n, split);
  const tc::ActQuant q = tc::act_quant(quant_traits<W>::type);
  const auto g = gpu_test::random_floats(static_cast<size_t>(t * n), seed, 4.f);
  const auto u = gpu_test::random_floats(static_cast<size_t>(t * n), seed + 1);
  auto dg = gpu_test::to_dev<float, 2>(s, g, {t, n}), du = gpu_test::to_dev<float, 2>(s, u, {t, n});
  const Matrix<W> m(s, kRows, n, split, seed + 3);
  tc::DeviceTensor<float, 2> outa({t, n}), outb({t, n}), ya({t, kRows}), yb({t, kRows});
  auto wsa = act_workspace(q, t * n), wsb = act_workspace(q, t * n);
  for (auto* p : {&outa, &outb, &ya, &yb}) gpu_test::poison(s, p->view());

  tc::swiglu(s, dg.view(), du.view(), outa.view());
  m.gemv(s, outa.view(), ya.view(), wsa.view(), false);
  tc::swiglu_quant(s, dg.view(), du.view(), outb.view(), q, wsb.view());
  m.gemv(s, outb.view(), yb.view(), wsb.view(), true);
  const auto oa = gpu_test::to_host(s, outa.view()), y_ref = gpu_test::to_host(s, ya.view());
  CHECK(same_bits(gpu_test::to_host(s, outb.view()), oa));
  CHECK(same_bits(gpu_test::to_host(s, yb.view()), y_ref));

  // In place (out = gate), as the decode step may call it.
  auto gc = gpu_test::to_dev<float, 2>(s, g, {t, n});
  auto wsc = act_workspace(q, t * n);
  tc::swiglu_quant(s, gc.view(), du.view(), gc.view(), q, wsc.view());
  CHECK(same_bits(gpu_test::to_host(s, gc.view()), oa));

  if (q != tc::ActQuant::none) {  // only the int8 copy; the GEMV's x is poison it must not read
    tc::DeviceTensor<float, 2> junk({t, n}), yc({t, kRows});
    gpu_test::poison(s, junk.view());
    gpu_test::poison(s, yc.view());
    auto wsd = act_workspace(q, t * n);
    tc::swiglu_quant(s, dg.view(), du.view(), {}, q, wsd.view());
    m.gemv(s, junk.view(), yc.view(), wsd.view(), true);
    CHECK(same_bits(gpu_test::to_host(s, yc.view()), y_ref));
  }

  // The CPU's swiglu: expf within 2 ulp of std::exp (the swiglu test's tolerance).
  std::vector<float> ref(g.size());
  backend::scalar::swiglu(g, u, ref);
  check_close(oa, ref, 2e-6, 1e-7);
}

}  // namespace

TEST_CASE("cuda add_rms_norm equals add, rms_norm and the GEMV's quantizer", "[cuda][fused]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  // q8_0 activations (q4_0 / q8_0 weights, split and GGUF)
  check_add_rms_norm<block_q4_0>(s, 1, 4160, true, true, 1);
  check_add_rms_norm<block_q4_0>(s, 3, 96, true, true, 10);
  check_add_rms_norm<block_q4_0>(s, 1, 32, true, false, 20);
  check_add_rms_norm<block_q8_0>(s, 2, 4160, false, true, 30);
  // q8_K (q4_K / q6_K, split), q8_1 (q4_1 / q5_1, GGUF), floats (f16)
  check_add_rms_norm<block_q4_K>(s, 1, 4352, true, true, 40);
  check_add_rms_norm<block_q6_K>(s, 2, 768, true, false, 50);
  check_add_rms_norm<block_q4_1>(s, 3, 4160, false, true, 60);
  check_add_rms_norm<block_q5_1>(s, 1, 96, false, false, 70);
  check_add_rms_norm<f16>(s, 2, 4104, false, true, 80);

  // Rows no quantizer takes (any length; 1 and 4097 are not multiples of 32).
  for (auto [t, n] : {std::pair<int64_t, int64_t>{1, 1}, {3, 4097}}) {
    CAPTURE(t, n);
    const auto x0 = gpu_test::random_floats(static_cast<size_t>(t * n), 90, 3.f);
    const auto dx = gpu_test::random_floats(static_cast<size_t>(t * n), 91);
    const auto w = gpu_test::random_floats(static_cast<size_t>(n), 92);
    auto xa = gpu_test::to_dev<float, 2>(s, x0, {t, n}), xb = gpu_test::to_dev<float, 2>(s, x0, {t, n});
    auto ddx = gpu_test::to_dev<float, 2>(s, dx, {t, n});
    auto dw = gpu_test::to_dev<float, 1>(s, w, {n});
    tc::DeviceTensor<float, 2> outa({t, n}), outb({t, n});
    gpu_test::poison(s, outb.view());
    tc::add(s, xa.view(), ddx.view(), xa.view());
    tc::rms_norm(s, xa.view(), dw.view(), kEps, outa.view());
    tc::add_rms_norm(s, xb.view(), ddx.view(), dw.view(), kEps, outb.view(), tc::ActQuant::none, {});
    CHECK(same_bits(gpu_test::to_host(s, xb.view()), gpu_test::to_host(s, xa.view())));
    CHECK(same_bits(gpu_test::to_host(s, outb.view()), gpu_test::to_host(s, outa.view())));
  }

  // Rows a quantizer cannot take, a short workspace, and no output at all: errors before any launch.
  tc::DeviceTensor<float, 2> x({1, 48}), out({1, 48});
  tc::DeviceTensor<float, 1> w({48});
  tc::DeviceTensor<std::byte, 1> small({64});
  auto big = act_workspace(tc::ActQuant::q8_K, 256);
  CHECK_THROWS_WITH(tc::add_rms_norm(s, x.view(), {}, w.view(), kEps, out.view(), tc::ActQuant::q8_0, big.view()),
                    Catch::Contains("blocks of 32"));
  tc::DeviceTensor<float, 2> x2({1, 64}), out2({1, 64});
  tc::DeviceTensor<float, 1> w2({64});
  CHECK_THROWS_WITH(tc::add_rms_norm(s, x2.view(), {}, w2.view(), kEps, out2.view(), tc::ActQuant::q8_K, big.view()),
                    Catch::Contains("blocks of 256"));
  CHECK_THROWS_WITH(tc::add_rms_norm(s, x2.view(), {}, w2.view(), kEps, out2.view(), tc::ActQuant::q8_0, small.view()),
                    Catch::Contains("workspace"));
  CHECK_THROWS_AS(tc::add_rms_norm(s, x2.view(), {}, w2.view(), kEps, {}, tc::ActQuant::none, big.view()),
                  tessera::Error);
}

TEST_CASE("cuda swiglu_quant equals swiglu and the GEMV's quantizer", "[cuda][fused]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  check_swiglu_quant<block_q4_0>(s, 1, 4160, true, 100);
  check_swiglu_quant<block_q4_0>(s, 3, 96, true, 110);
  check_swiglu_quant<block_q8_0>(s, 1, 4160, true, 120);
  check_swiglu_quant<block_q4_K>(s, 1, 4352, true, 130);
  check_swiglu_quant<block_q6_K>(s, 3, 768, true, 140);
  check_swiglu_quant<block_q5_0>(s, 2, 96, false, 150);
  check_swiglu_quant<block_q5_1>(s, 1, 4160, false, 160);
  check_swiglu_quant<bf16>(s, 3, 1000, false, 170);
}

TEST_CASE("cuda rope_kv_store equals rope, rope and kv_store", "[cuda][fused]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  const int64_t T = 3, H = 5, G = 3, max_keys = 16, page = 4;
  const std::vector<int32_t> table = {3, 2, 1, 0};  // pages in reverse
  auto dtable = gpu_test::to_dev<int32_t, 1>(s, table, {page});
  uint32_t seed = 200;
  for (int64_t D : {64, 96, 256}) {
    RopeParams neox{static_cast<int>(D), 500000.f};
    neox.style = RopeStyle::neox;
    // Interleaved, neox (partners 32 or more values apart), partial (the last
    // 32 dimensions pass unrotated), YaRN.
    for (const RopeParams& p : {RopeParams{static_cast<int>(D), 10000.f}, neox,
                                rope_ntk(static_cast<int>(D) - 32, 10000.f, 8.f),
                                rope_yarn(static_cast<int>(D), 10000.f, 16.f, 4096, RopeStyle::neox)})
      for (tc::KvElem e : {tc::KvElem::f16, tc::KvElem::bf16, tc::KvElem::q8_0})
        for (bool paged : {false, true})
          for (bool bad : {false, true}) {
            CAPTURE(D, p.n_dims, static_cast<int>(p.style), static_cast<int>(e), paged, bad);
            // A position outside the cache (16) must raise the fault flag and write nothing.
            const std::vector<int32_t> pos = bad ? std::vector<int32_t>{2, 16, 9} : std::vector<int32_t>{5, 0, 13};
            auto dpos = gpu_test::to_dev<int32_t, 1>(s, pos, {T});
            const auto q = gpu_test::random_floats(static_cast<size_t>(T * H * D), seed++, 2.f);
            const auto k = gpu_test::random_floats(static_cast<size_t>(T * G * D), seed++, 2.f);
            const auto v = gpu_test::random_floats(static_cast<size_t>(T * G * D), seed++, 2.f);
            auto qa = gpu_test::to_dev<float, 3>(s, q, {T, H, D}), qb = gpu_test::to_dev<float, 3>(s, q, {T, H, D});
            auto ka = gpu_test::to_dev<float, 3>(s, k, {T, G, D}), kb = gpu_test::to_dev<float, 3>(s, k, {T, G, D});
            auto dv = gpu_test::to_dev<float, 3>(s, v, {T, G, D});
            const int64_t row_bytes = G * (e == tc::KvElem::q8_0 ? D / 32 * 34 : D * 2);
            tc::DeviceTensor<std::byte, 1> kca({max_keys * row_bytes}), vca({max_keys * row_bytes}),
                kcb({max_keys * row_bytes}), vcb({max_keys * row_bytes});
            tc::DeviceTensor<int32_t, 1> fa({1}), fb({1});
            for (auto* c : {&kca, &vca, &kcb, &vcb}) gpu_test::poison(s, c->view());
            tc::detail::fill_bytes(s, fa.data(), 0, sizeof(int32_t));
            tc::detail::fill_bytes(s, fb.data(), 0, sizeof(int32_t));
            const tc::DeviceTensor<int32_t, 1>* tb = paged ? &dtable : nullptr;
            auto rows = [&](tc::DeviceTensor<std::byte, 1>& kc, tc::DeviceTensor<std::byte, 1>& vc) {
              return tc::DeviceKvRows{e, G, D, kc.data(), vc.data(), max_keys, tb ? tb->data() : nullptr,
                                      paged ? page : 0};
            };

            tc::rope(s, qa.view(), dpos.view(), p);
            tc::rope(s, ka.view(), dpos.view(), p);
            tc::kv_store(s, ka.view(), dv.view(), dpos.view(), rows(kca, vca), fa.view());
            tc::rope_kv_store(s, qb.view(), kb.view(), dv.view(), dpos.view(), p, rows(kcb, vcb), fb.view());

            const auto qh = gpu_test::to_host(s, qb.view());
            CHECK(same_bits(qh, gpu_test::to_host(s, qa.view())));
            CHECK(same_bits(gpu_test::to_host(s, kb.view()), gpu_test::to_host(s, ka.view())));
            // Whole caches: the rows written and the poison of every other row.
            CHECK(same_bits(gpu_test::to_host(s, kcb.view()), gpu_test::to_host(s, kca.view())));
            CHECK(same_bits(gpu_test::to_host(s, vcb.view()), gpu_test::to_host(s, vca.view())));
            CHECK(gpu_test::to_host(s, fb.view())[0] == (bad ? 1 : 0));
            CHECK(gpu_test::to_host(s, fa.view())[0] == (bad ? 1 : 0));

            // The CPU's rotation: the same theta, sincosf and std::sin / cos
            // each within 2 ulp (the rope test's tolerance).
            std::vector<float> qr(q);
            backend::scalar::rope(TensorView<float, 3>(qr.data(), {T, H, D}), pos, p);
            check_close(qh, qr, 1e-6, 4e-6);
          }
  }
  // Shapes the kernel cannot take: errors before any launch.
  tc::DeviceTensor<float, 3> q({1, 2, 64}), k({1, 1, 64}), v({1, 1, 64}), k2({1, 1, 48});
  tc::DeviceTensor<int32_t, 1> pos({1}), fault({1});
  tc::DeviceTensor<std::byte, 1> kc({4096}), vc({4096});
  const tc::DeviceKvRows dst{tc::KvElem::f16, 1, 64, kc.data(), vc.data(), 16};
  CHECK_THROWS_AS(tc::rope_kv_store(s, q.view(), k.view(), v.view(), pos.view(), RopeParams{66, 1e4f}, dst,
                                    fault.view()),
                  tessera::Error);
  CHECK_THROWS_AS(tc::rope_kv_store(s, q.view(), k2.view(), v.view(), pos.view(), RopeParams{64, 1e4f}, dst,
                                    fault.view()),
                  tessera::Error);
}
