// Decode attention (GB/s of keys and values read, and the ratio to the device
// copy measured in the same process) and flash attention forward (TFLOP/s;
// torch_reference.py times PyTorch's SDPA backends on the same shapes).
#include "bench_cuda_common.hpp"

#include <numeric>

using namespace tessera;
namespace tc = tessera::cuda;

namespace {

// Sequences of `keys` keys, GQA 32 / 8, head_dim 128; range(2): 0 f16, 1 q8_0; range(3): 1 paged (64-row pages).
void BM_decode_attention(benchmark::State& st) {
  const int64_t b = st.range(0), keys = st.range(1), hq = 32, hkv = 8, d = 128;
  const auto elem = st.range(2) ? tc::KvElem::q8_0 : tc::KvElem::f16;
  const bool paged = st.range(3) != 0;
  const int64_t head_bytes = elem == tc::KvElem::q8_0 ? d / 32 * 34 : d * 2;
  tc::Stream s;
  const int64_t rows = b * keys, bytes = rows * hkv * head_bytes;
  tc::DeviceTensor<std::byte, 1> k({bytes}), v({bytes});
  bench_cuda::fill_random(s, k.data(), static_cast<size_t>(bytes), 1);
  bench_cuda::fill_random(s, v.data(), static_cast<size_t>(bytes), 2);
  if (elem == tc::KvElem::f16) {  // random bits would include NaN / Inf halves: small values instead
    std::vector<uint16_t> h(static_cast<size_t>(bytes / 2));
    for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint16_t>(0x3000 + (i * 2654435761u >> 7) % 0x0c00) ^ ((i & 1) << 15);
    tc::upload<uint16_t, 1>(s, std::span<const uint16_t>(h), tc::DeviceView<uint16_t, 1>(reinterpret_cast<uint16_t*>(k.data()), {bytes / 2}));
    tc::upload<uint16_t, 1>(s, std::span<const uint16_t>(h), tc::DeviceView<uint16_t, 1>(reinterpret_cast<uint16_t*>(v.data()), {bytes / 2}));
  } else {  // q8_0: make every block's f16 scale a small finite number
    std::vector<uint8_t> hb(static_cast<size_t>(bytes));
    for (size_t i = 0; i < hb.size(); ++i) hb[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
    for (size_t i = 0; i + 34 <= hb.size(); i += 34) { hb[i] = 0x00; hb[i + 1] = 0x20; }
    tc::upload<uint8_t, 1>(s, std::span<const uint8_t>(hb), tc::DeviceView<uint8_t, 1>(reinterpret_cast<uint8_t*>(k.data()), {bytes}));
    tc::upload<uint8_t, 1>(s, std::span<const uint8_t>(hb), tc::DeviceView<uint8_t, 1>(reinterpret_cast<uint8_t*>(v.data()), {bytes}));
  }
  std::vector<int32_t> lens(static_cast<size_t>(b), static_cast<int32_t>(keys));
  auto dl = tc::to_device<int32_t, 1>(s, std::span<const int32_t>(lens), {b});
  const int64_t page = 64, max_pages = keys / page;
  std::vector<int32_t> table(static_cast<size_t>(b * max_pages));
  std::iota(table.begin(), table.end(), 0);
  std::reverse(table.begin(), table.end());  // pages out of order, as a real pool hands them out
  auto dt = tc::to_device<int32_t, 1>(s, std::span<const int32_t>(table), {b * max_pages});
  tc::DeviceKv kv = bench_cuda::contiguous_kv(elem, hkv, d, k.data(), v.data(), dl.data(), keys);
  if (paged) {
    kv.block_table = dt.data();
    kv.page_size = page;
    kv.max_pages = max_pages;
  }
  const auto qh = std::vector<float>(static_cast<size_t>(b * hq * d), 0.05f);
  auto q = tc::to_device<float, 3>(s, std::span<const float>(qh), {b, hq, d});
  tc::DeviceTensor<float, 3> out({b, hq, d});
  tc::DeviceTensor<std::byte, 1> ws({static_cast<int64_t>(tc::decode_attention_workspace_bytes(b, hq, d))});
  const tc::DeviceMask mask{tc::DeviceMask::Kind::causal, 0};
  tc::decode_attention(s, q.view(), kv, mask, 0.f, out.view(), ws.view());
  s.synchronize();
  tc::Timer t(s);
  double total = 0;
  for (auto _ : st) {
    t.start();
    for (int i = 0; i < 10; ++i) tc::decode_attention(s, q.view(), kv, mask, 0.f, out.view(), ws.view());
    const double sec = t.stop_ms() * 1e-3 / 10;
    st.SetIterationTime(sec);
    total += sec;
  }
  const double moved = 2.0 * static_cast<double>(bytes);
  bench_cuda::report_bandwidth(st, moved, total);
  st.SetLabel(std::string(elem == tc::KvElem::q8_0 ? "q8_0" : "f16") + (paged ? ", paged" : ", contiguous"));
}

// Flash attention, bf16: range = {batch, heads, seq, head_dim, causal}.
void BM_flash_attention(benchmark::State& st) {
  const int64_t b = st.range(0), h = st.range(1), n = st.range(2), d = st.range(3);
  const bool causal = st.range(4) != 0;
  tc::Stream s;
  const int64_t elems = b * n * h * d;
  tc::DeviceTensor<bf16, 4> q({b, n, h, d}), o({b, n, h, d});
  tc::DeviceTensor<bf16, 1> k({elems}), v({elems});
  {
    std::vector<bf16> host(static_cast<size_t>(elems));
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    for (auto& x : host) x = bf16(nd(rng));
    tc::upload<bf16, 4>(s, std::span<const bf16>(host), q.view());
    tc::upload<bf16, 1>(s, std::span<const bf16>(host), k.view());
    std::rotate(host.begin(), host.begin() + 12345, host.end());
    tc::upload<bf16, 1>(s, std::span<const bf16>(host), v.view());
  }
  std::vector<int32_t> lens(static_cast<size_t>(b), static_cast<int32_t>(n));
  auto dl = tc::to_device<int32_t, 1>(s, std::span<const int32_t>(lens), {b});
  const tc::DeviceKv kv = bench_cuda::contiguous_kv(tc::KvElem::bf16, h, d, k.data(), v.data(), dl.data(), n);
  const tc::DeviceMask mask{causal ? tc::DeviceMask::Kind::causal : tc::DeviceMask::Kind::none, 0};
  tc::flash_attention<bf16>(s, q.view(), kv, mask, 0.f, 0, o.view());
  s.synchronize();
  tc::Timer t(s);
  double total = 0;
  for (auto _ : st) {
    t.start();
    tc::flash_attention<bf16>(s, q.view(), kv, mask, 0.f, 0, o.view());
    const double sec = t.stop_ms() * 1e-3;
    st.SetIterationTime(sec);
    total += sec;
  }
  const double flops = 4.0 * b * h * static_cast<double>(n) * n * d * (causal ? 0.5 : 1.0);
  st.counters["TFLOP/s"] = flops * static_cast<double>(st.iterations()) / total / 1e12;
  st.SetLabel(std::string(causal ? "causal" : "no mask") + ", bf16");
}

}  // namespace

BENCHMARK(BM_decode_attention)
    ->ArgsProduct({{16}, {8192, 32768}, {0, 1}, {0, 1}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_flash_attention)
    ->Args({8, 16, 1024, 128, 1})->Args({4, 16, 4096, 128, 1})->Args({1, 16, 16384, 128, 1})
    ->Args({8, 16, 1024, 128, 0})->Args({4, 16, 4096, 128, 0})->Args({1, 16, 16384, 128, 0})
    ->Args({4, 16, 4096, 64, 1})->Args({4, 16, 4096, 64, 0})->Args({4, 16, 4096, 256, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
