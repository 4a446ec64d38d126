// GEMV and GEMM on the GPU against the scalar CPU kernels, for every weight
// format, on shapes with odd row counts, slice tails and several vectors.
#include "gpu_test_util.hpp"

#include "tessera/backend/scalar/matmul.hpp"
#include "tessera/backend/scalar/quant_matmul.hpp"
#include "tessera/core/convert.hpp"
#include "tessera/core/quant.hpp"

using namespace tessera;
namespace tc = tessera::cuda;

namespace {

template <class W>
std::vector<W> make_weights(int64_t n, int64_t k, uint32_t seed) {
  const auto f = gpu_test::random_floats(static_cast<size_t>(n * k), seed, 0.5f);
  constexpr int bs = quant_traits<W>::block_size;
  std::vector<W> w(static_cast<size_t>(n * k / bs));
  if constexpr (bs == 1) {
    for (size_t i = 0; i < w.size(); ++i) w[i] = W(f[i]);
  } else {
    quantize_row(std::span<const float>(f), std::span<W>(w));
  }
  return w;
}

template <class W>
std::vector<float> dequant(const std::vector<W>& w) {
  std::vector<float> out(w.size() * quant_traits<W>::block_size);
  if constexpr (quant_traits<W>::block_size == 1) {
    for (size_t i = 0; i < w.size(); ++i) out[i] = static_cast<float>(w[i]);
  } else {
    dequantize_row(std::span<const W>(w), std::span<float>(out));
  }
  return out;
}

// Runs the GPU gemv on x [m, k] and checks each y[j, r] against the CPU kernel
// with the same inputs. For quantized W the CPU quantizes the activations with
// quantize_row, which the GPU quantizer reproduces bit for bit, and each
// block's integer sum is exact on both sides: only the order in which the
// <= k/32 float block terms are added differs, each addition rounding by
// 2^-24 relative, so |diff| <= (k/32 + 8) 2^-23 sum|w x|. For float W every
// one of the k products is added in another order: k 2^-23 sum|w x|.
// The split layout of w, on the device: every array in one buffer, written
// by two split_rows calls (rows [0, n/2) and [n/2, n)) as the model's fused
// matrices are, so row offsets into each array are exercised.
template <class W>
tc::DeviceTensor<std::byte, 1> upload_split(const tc::Stream& s, const std::vector<W>& w, int64_t n, int64_t k,
                                            tc::SplitWeight& sw) {
  const GgmlType t = quant_traits<W>::type;
  REQUIRE(tc::SplitWeight::supports(t));
  std::vector<std::byte> host(static_cast<size_t>(tc::SplitWeight::bytes(t, n, k)));
  const auto* src = reinterpret_cast<const std::byte*>(w.data());
  const int64_t half = n / 2, row_bytes = k / quant_traits<W>::block_size * int64_t{sizeof(W)};
  tc::split_rows(t, src, half, k, host.data(), n, 0);
  tc::split_rows(t, src + half * row_bytes, n - half, k, host.data(), n, half);
  auto buf = gpu_test::to_dev<std::byte, 1>(s, host, {static_cast<int64_t>(host.size())});
  sw = tc::SplitWeight::at(t, buf.data(), n, k);
  return buf;
}

// split: the same product through gemv_split over the repacked matrix (q4_0, q8_0, q4_K, q6_K).
template <class W>
void check_gemv(const tc::Stream& s, int64_t n, int64_t k, int64_t m, uint32_t seed, bool split = false) {
  CAPTURE(quant_traits<W>::name, n, k, m, split);
  constexpr int bs = quant_traits<W>::block_size;
  const auto w = make_weights<W>(n, k, seed);
  const auto x = gpu_test::random_floats(static_cast<size_t>(m * k), seed + 1);
  const auto wf = dequant(w);
  auto dw = gpu_test::to_dev<W, 2>(s, w, {n, k / bs});
  auto dx = gpu_test::to_dev<float, 2>(s, x, {m, k});
  tc::DeviceTensor<float, 2> dy({m, n});
  tc::DeviceTensor<std::byte, 1> ws({static_cast<int64_t>(tc::gemv_workspace_bytes<W>(m * k)) + 1});
  gpu_test::poison(s, dy.view());
  if (split) {
    tc::SplitWeight sw;
    const auto buf = upload_split(s, w, n, k, sw);
    tc::gemv_split(s, sw, dx.view(), dy.view(), ws.view());
    s.synchronize();
  } else {
    tc::gemv<W>(s, dw.view(), dx.view(), dy.view(), ws.view());
  }
  const auto y = gpu_test::to_host(s, dy.view());

  const TensorView<const W, 2> wv(w.data(), {n, k / bs});
  for (int64_t j = 0; j < m; ++j) {
    std::vector<float> xa(x.begin() + j * k, x.begin() + (j + 1) * k), ref(static_cast<size_t>(n));
    double slack;
    if constexpr (bs == 1) {
      backend::scalar::gemv<W>(wv, xa, ref);
      slack = static_cast<double>(k) * 1.2e-7;
    } else {
      using A = backend::ActBlock<W>;
      std::vector<A> xq(static_cast<size_t>(k / quant_traits<A>::block_size));
      quantize_row(std::span<const float>(xa), std::span<A>(xq));
      dequantize_row(std::span<const A>(xq), std::span<float>(xa));  // |x| as the kernels saw it
      backend::scalar::gemv<W>(wv, std::span<const A>(xq), ref);
      slack = static_cast<double>(k / 32 + 8) * 1.2e-7;
    }
    for (int64_t r = 0; r < n; ++r) {
      double mag = 0;
      for (int64_t i = 0; i < k; ++i) mag += std::fabs(static_cast<double>(wf[r * k + i]) * xa[i]);
      const float got = y[j * n + r];
      INFO("row " << r << " vector " << j << ": gpu " << got << ", cpu " << ref[r]);
      REQUIRE(std::fabs(got - ref[r]) <= slack * mag + 1e-30);
    }
  }
}

template <class W>
void gemv_grid(const tc::Stream& s) {
  constexpr int bs = quant_traits<W>::block_size;
  // K: one block; an odd block count; rows past one 4 KB slice with a tail.
  const std::vector<int64_t> ks = bs == 256 ? std::vector<int64_t>{256, 768, 4352}
                                  : bs == 32 ? std::vector<int64_t>{32, 96, 4160}
                                             : std::vector<int64_t>{8, 72, 4104};
  uint32_t seed = 100;
  for (int64_t k : ks)
    for (int64_t n : {1, 13, 67})
      for (int64_t m : {1, 3, 8}) check_gemv<W>(s, n, k, m, seed++);
}

// y = x W^T through bf16 operands: each of w and x is rounded to bf16 (2^-9
// relative), so every product is within 2^-8 of exact; f32 accumulation adds
// k 2^-24. Reference: f32 weights (dequantized) times x in double.
template <class W>
void check_gemm(const tc::Stream& s, int64_t m, int64_t n, int64_t k, uint32_t seed, bool split = false) {
  CAPTURE(quant_traits<W>::name, m, n, k, split);
  constexpr int bs = quant_traits<W>::block_size;
  const auto w = make_weights<W>(n, k, seed);
  const auto wf = dequant(w);
  const auto x = gpu_test::random_floats(static_cast<size_t>(m * k), seed + 7);
  auto dw = gpu_test::to_dev<W, 2>(s, w, {n, k / bs});
  auto dx = gpu_test::to_dev<float, 2>(s, x, {m, k});
  tc::DeviceTensor<float, 2> dy({m, n});
  tc::DeviceTensor<std::byte, 1> ws({static_cast<int64_t>(tc::gemm_workspace_bytes(m, n, k))});
  gpu_test::poison(s, dy.view());
  if (split) {
    tc::SplitWeight sw;
    const auto buf = upload_split(s, w, n, k, sw);
    tc::gemm_split(s, sw, dx.view(), dy.view(), ws.view());
    s.synchronize();
  } else {
    tc::gemm<W>(s, dw.view(), dx.view(), dy.view(), ws.view());
  }
  const auto y = gpu_test::to_host(s, dy.view());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < n; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < k; ++c) {
        ref += static_cast<double>(wf[r * k + c]) * x[i * k + c];
        mag += std::fabs(static_cast<double>(wf[r * k + c]) * x[i * k + c]);
      }
      INFO("y[" << i << ", " << r << "]");
      REQUIRE(std::fabs(y[i * n + r] - ref) <= (2.0 / 256 + k * 6e-8) * mag + 1e-30);
    }
}

}  // namespace

TEMPLATE_TEST_CASE("cuda gemv matches the scalar kernels", "[cuda][gemv]", float, f16, bf16, block_q8_0, block_q4_0,
                   block_q4_1, block_q5_0, block_q5_1, block_q4_K, block_q6_K) {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  gemv_grid<TestType>(s);
}

TEMPLATE_TEST_CASE("cuda gemv_split and gemm_split match the scalar kernels", "[cuda][gemv]", block_q8_0,
                   block_q4_0, block_q4_K, block_q6_K) {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  uint32_t seed = 500;
  constexpr bool kq = quant_traits<TestType>::block_size == 256;
  // K: one block, an odd count, a count past one unrolled step (up to 4 x 32
  // sub-blocks) with a tail, the 7B down projection's width. N: one row, odd
  // counts, and 4099 rows (more than the resident warps: runs of several
  // rows a warp, the last run short).
  const std::vector<int64_t> ks = kq ? std::vector<int64_t>{256, 768, 4352, 14336}
                                     : std::vector<int64_t>{32, 96, 4160, 14336};
  for (int64_t k : ks)
    for (int64_t n : {1, 5, 67})
      for (int64_t m : {1, 3, 8}) check_gemv<TestType>(s, n, k, m, seed++, /*split=*/true);
  check_gemv<TestType>(s, 4099, ks[1], 1, seed++, /*split=*/true);
  check_gemv<TestType>(s, 4099, ks[1], 5, seed++, /*split=*/true);
  check_gemm<TestType>(s, 37, 67, kq ? 4352 : 4160, seed++, /*split=*/true);
}

TEMPLATE_TEST_CASE("cuda gemm matches a double-precision product", "[cuda][gemm]", float, f16, bf16, block_q8_0,
                   block_q4_0, block_q4_K, block_q6_K) {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  constexpr int bs = quant_traits<TestType>::block_size;
  const int64_t k = bs == 256 ? 512 : 160;
  check_gemm<TestType>(s, 1, 17, k, 5);
  check_gemm<TestType>(s, 37, 65, k, 6);
  check_gemm<TestType>(s, 130, 129, k * 3, 7);
}

TEST_CASE("cuda gemv rejects bad shapes and short workspaces", "[cuda][gemv]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  tc::DeviceTensor<block_q4_0, 2> w({4, 2});
  tc::DeviceTensor<float, 2> x({1, 64}), bad_x({1, 32}), y({1, 4});
  tc::DeviceTensor<std::byte, 1> ws({16});
  CHECK_THROWS_AS(tc::gemv<block_q4_0>(s, w.view(), bad_x.view(), y.view(), ws.view()), tessera::Error);
  CHECK_THROWS_WITH(tc::gemv<block_q4_0>(s, w.view(), x.view(), y.view(), ws.view()),
                    Catch::Contains("workspace"));
}
