// Decode attention and flash attention on the GPU against the scalar CPU
// attention (double accumulation), over contiguous and paged caches, f16 /
// q8_0 / bf16 storage, MHA / GQA, every mask and head_dim 64 / 128 / 256.
#include "gpu_test_util.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "tessera/backend/scalar/attention.hpp"
#include "tessera/core/quant.hpp"

using namespace tessera;
namespace tc = tessera::cuda;

namespace {

struct Case {
  int64_t n_seqs, n_heads, n_kv_heads, d;
  std::vector<int32_t> lens;
  tc::DeviceMask mask;
  bool paged;
};

// Host copy of a cache: per sequence, rows [max_keys][n_kv_heads][head bytes],
// stored as tc::KvElem e; values as the kernels see them also kept in f32.
struct HostKv {
  std::vector<std::byte> k, v;
  size_t head_bytes = 0, row_bytes = 0;
};

size_t head_bytes_of(tc::KvElem e, int64_t d) { return e == tc::KvElem::q8_0 ? static_cast<size_t>(d / 32 * 34) : static_cast<size_t>(d * 2); }

void encode_row(tc::KvElem e, const float* x, int64_t d, std::byte* out) {
  if (e == tc::KvElem::f16) {
    for (int64_t i = 0; i < d; ++i) { const f16 h(x[i]); std::memcpy(out + 2 * i, &h, 2); }
  } else if (e == tc::KvElem::bf16) {
    for (int64_t i = 0; i < d; ++i) { const bf16 h(x[i]); std::memcpy(out + 2 * i, &h, 2); }
  } else {
    quantize_row(std::span<const float>(x, static_cast<size_t>(d)),
                 std::span<block_q8_0>(reinterpret_cast<block_q8_0*>(out), static_cast<size_t>(d / 32)));
  }
}

HostKv make_kv(tc::KvElem e, int64_t rows, int64_t n_kv_heads, int64_t d, uint32_t seed) {
  HostKv kv;
  kv.head_bytes = head_bytes_of(e, d);
  kv.row_bytes = kv.head_bytes * static_cast<size_t>(n_kv_heads);
  kv.k.resize(kv.row_bytes * static_cast<size_t>(rows));
  kv.v.resize(kv.k.size());
  const auto kf = gpu_test::random_floats(static_cast<size_t>(rows * n_kv_heads * d), seed);
  const auto vf = gpu_test::random_floats(kf.size(), seed + 1);
  for (int64_t r = 0; r < rows * n_kv_heads; ++r) {
    encode_row(e, kf.data() + r * d, d, kv.k.data() + static_cast<size_t>(r) * kv.head_bytes);
    encode_row(e, vf.data() + r * d, d, kv.v.data() + static_cast<size_t>(r) * kv.head_bytes);
  }
  return kv;
}

// The scalar reference reads f32 / f16 / q8_0 rows; bf16 rows are widened to f32 first.
HostKv widen_bf16(const HostKv& kv, int64_t d) {
  HostKv out;
  out.head_bytes = static_cast<size_t>(d) * 4;
  out.row_bytes = kv.row_bytes * 2;
  out.k.resize(kv.k.size() * 2);
  out.v.resize(kv.v.size() * 2);
  for (size_t i = 0; i < kv.k.size() / 2; ++i) {
    bf16 a, b;
    std::memcpy(&a, kv.k.data() + 2 * i, 2);
    std::memcpy(&b, kv.v.data() + 2 * i, 2);
    const float fa = static_cast<float>(a), fb = static_cast<float>(b);
    std::memcpy(out.k.data() + 4 * i, &fa, 4);
    std::memcpy(out.v.data() + 4 * i, &fb, 4);
  }
  return out;
}

AttentionMask cpu_mask(tc::DeviceMask m) {
  switch (m.kind) {
    case tc::DeviceMask::Kind::none: return AttentionMask::none();
    case tc::DeviceMask::Kind::sliding: return AttentionMask::sliding(m.window);
    default: return AttentionMask::causal();
  }
}

// Device copy of the cache, contiguous or paged (pages of 16 rows, in a shuffled
// order), and for each sequence the CPU KvSource segments that describe the same keys.
struct DevKv {
  tc::DeviceTensor<std::byte, 1> k, v;
  tc::DeviceTensor<int32_t, 1> lens, table;
  tc::DeviceKv desc;
  std::vector<std::vector<KvSegment>> segs;
};

DevKv upload_kv(const tc::Stream& s, const HostKv& host, const HostKv& ref_host, const Case& c, int64_t max_keys,
                tc::KvElem e) {
  DevKv out;
  out.desc.elem = e;
  out.desc.n_kv_heads = c.n_kv_heads;
  out.desc.head_dim = c.d;
  out.lens = gpu_test::to_dev<int32_t, 1>(s, c.lens, {c.n_seqs});
  out.desc.seq_lens = out.lens.data();
  out.segs.resize(static_cast<size_t>(c.n_seqs));
  const int64_t page = 16, max_pages = (max_keys + page - 1) / page;
  if (!c.paged) {
    out.k = gpu_test::to_dev<std::byte, 1>(s, host.k, {static_cast<int64_t>(host.k.size())});
    out.v = gpu_test::to_dev<std::byte, 1>(s, host.v, {static_cast<int64_t>(host.v.size())});
    out.desc.max_keys = max_keys;
    for (int64_t b = 0; b < c.n_seqs; ++b) {
      const size_t off = static_cast<size_t>(b * max_keys) * ref_host.row_bytes;
      out.segs[static_cast<size_t>(b)].push_back(
          {ref_host.k.data() + off, ref_host.v.data() + off, 0, c.lens[static_cast<size_t>(b)], ref_host.row_bytes});
    }
  } else {
    // Page p of sequence b goes to pool slot perm[b * max_pages + p].
    std::vector<int32_t> perm(static_cast<size_t>(c.n_seqs * max_pages));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(77));
    std::vector<std::byte> pk(host.k.size()), pv(host.v.size());
    const size_t page_bytes = static_cast<size_t>(page) * host.row_bytes;
    for (int64_t b = 0; b < c.n_seqs; ++b)
      for (int64_t p = 0; p < max_pages; ++p) {
        const size_t src = static_cast<size_t>(b * max_keys + p * page) * host.row_bytes;
        const size_t dst = static_cast<size_t>(perm[static_cast<size_t>(b * max_pages + p)]) * page_bytes;
        std::memcpy(pk.data() + dst, host.k.data() + src, page_bytes);
        std::memcpy(pv.data() + dst, host.v.data() + src, page_bytes);
        const int64_t n = std::min<int64_t>(page, c.lens[static_cast<size_t>(b)] - p * page);
        if (n > 0) {
          const size_t rsrc = static_cast<size_t>(b * max_keys + p * page) * ref_host.row_bytes;
          out.segs[static_cast<size_t>(b)].push_back(
              {ref_host.k.data() + rsrc, ref_host.v.data() + rsrc, p * page, n, ref_host.row_bytes});
        }
      }
    out.k = gpu_test::to_dev<std::byte, 1>(s, pk, {static_cast<int64_t>(pk.size())});
    out.v = gpu_test::to_dev<std::byte, 1>(s, pv, {static_cast<int64_t>(pv.size())});
    out.table = gpu_test::to_dev<int32_t, 1>(s, perm, {static_cast<int64_t>(perm.size())});
    out.desc.block_table = out.table.data();
    out.desc.page_size = page;
    out.desc.max_pages = max_pages;
  }
  out.desc.k = out.k.data();
  out.desc.v = out.v.data();
  return out;
}

KvType cpu_type(tc::KvElem e) { return e == tc::KvElem::q8_0 ? KvType::q8_0 : e == tc::KvElem::f16 ? KvType::f16 : KvType::f32; }

// One query per sequence at position len - 1. Keys and values are stored
// identically on both sides; the GPU sums d products in f32 (d 2^-24 relative
// to sum |q k|, |q k| ~ 1: ~2e-5 in the scores at d = 256), its softmax uses
// exp2f (2 ulp) and sums over <= 64 slices: outputs within 1e-4 of values of size ~1.
void check_decode(const tc::Stream& s, const Case& c, tc::KvElem e) {
  CAPTURE(c.n_seqs, c.n_heads, c.n_kv_heads, c.d, c.paged, static_cast<int>(c.mask.kind), static_cast<int>(e));
  const int64_t max_keys = (*std::max_element(c.lens.begin(), c.lens.end()) + 15) / 16 * 16;
  const HostKv host = make_kv(e, c.n_seqs * max_keys, c.n_kv_heads, c.d, 9);
  DevKv kv = upload_kv(s, host, host, c, max_keys, e);
  const auto q = gpu_test::random_floats(static_cast<size_t>(c.n_seqs * c.n_heads * c.d), 10);
  auto dq = gpu_test::to_dev<float, 3>(s, q, {c.n_seqs, c.n_heads, c.d});
  tc::DeviceTensor<float, 3> out({c.n_seqs, c.n_heads, c.d});
  tc::DeviceTensor<std::byte, 1> ws({static_cast<int64_t>(tc::decode_attention_workspace_bytes(c.n_seqs, c.n_heads, c.d))});
  gpu_test::poison(s, out.view());
  tc::decode_attention(s, dq.view(), kv.desc, c.mask, 0.f, out.view(), ws.view());
  const auto got = gpu_test::to_host(s, out.view());
  for (int64_t b = 0; b < c.n_seqs; ++b) {
    AttentionParams p;
    p.mask = cpu_mask(c.mask);
    p.q_pos0 = c.lens[static_cast<size_t>(b)] - 1;
    const KvSource src{cpu_type(e), c.n_kv_heads, c.d, kv.segs[static_cast<size_t>(b)]};
    std::vector<float> ref(static_cast<size_t>(c.n_heads * c.d));
    backend::scalar::attention(TensorView<const float, 3>(q.data() + b * c.n_heads * c.d, {1, c.n_heads, c.d}), src, p,
                               TensorView<float, 3>(ref.data(), {1, c.n_heads, c.d}));
    for (int64_t i = 0; i < c.n_heads * c.d; ++i) {
      INFO("sequence " << b << " (" << c.lens[static_cast<size_t>(b)] << " keys), head " << i / c.d << ", dim " << i % c.d);
      REQUIRE(std::fabs(got[static_cast<size_t>(b * c.n_heads * c.d + i)] - ref[static_cast<size_t>(i)]) <= 1e-4);
    }
  }
}

}  // namespace

TEST_CASE("cuda decode attention matches the scalar attention", "[cuda][attention]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  using K = tc::DeviceMask::Kind;
  const std::vector<int32_t> lens{1, 37, 300, 1029};
  for (tc::KvElem e : {tc::KvElem::f16, tc::KvElem::q8_0})
    for (bool paged : {false, true}) {
      check_decode(s, {4, 8, 2, 128, lens, {K::causal, 0}, paged}, e);      // GQA, 4 heads a KV head
      check_decode(s, {4, 16, 2, 64, lens, {K::sliding, 50}, paged}, e);    // 8 heads a KV head: two blocks
      check_decode(s, {2, 3, 3, 256, {517, 2}, {K::none, 0}, paged}, e);    // MHA, odd head count
      check_decode(s, {3, 6, 1, 128, {2500, 64, 65}, {K::causal, 0}, paged}, e);  // MQA, 6 heads on one
    }
}

namespace {

struct FlashCase {
  int64_t n_seqs, n_q, n_heads, n_kv_heads, d, q_pos0;
  std::vector<int32_t> lens;
  tc::DeviceMask mask;
  bool paged;
};

// Keys, values and queries are the same numbers on both sides (rounded to T
// first). Two roundings separate the GPU from the double reference: P is
// rounded to T before P V (relative 2^-9 for bf16, 2^-12 for f16 each, so at
// most that times max|v| ~ 4 in total) and the output is rounded to T (half
// an ulp of |out| <= 4): bf16 within 0.008 + 0.008, f16 within 0.001 + 0.001.
template <class T>
void check_flash(const tc::Stream& s, const FlashCase& c) {
  constexpr bool is_f16 = std::is_same_v<T, f16>;
  const tc::KvElem e = is_f16 ? tc::KvElem::f16 : tc::KvElem::bf16;
  CAPTURE(is_f16, c.n_seqs, c.n_q, c.n_heads, c.n_kv_heads, c.d, c.q_pos0, c.paged, static_cast<int>(c.mask.kind));
  const int64_t max_keys = (*std::max_element(c.lens.begin(), c.lens.end()) + 15) / 16 * 16;
  const HostKv host = make_kv(e, c.n_seqs * max_keys, c.n_kv_heads, c.d, 19);
  const HostKv ref_host = is_f16 ? host : widen_bf16(host, c.d);
  const Case kc{c.n_seqs, c.n_heads, c.n_kv_heads, c.d, c.lens, c.mask, c.paged};
  DevKv kv = upload_kv(s, host, ref_host, kc, max_keys, e);
  const int64_t nq = c.n_seqs * c.n_q * c.n_heads * c.d;
  const auto qf = gpu_test::random_floats(static_cast<size_t>(nq), 20);
  std::vector<T> qt(qf.size());
  std::vector<float> qr(qf.size());
  for (size_t i = 0; i < qf.size(); ++i) {
    qt[i] = T(qf[i]);
    qr[i] = static_cast<float>(qt[i]);
  }
  auto dq = gpu_test::to_dev<T, 4>(s, qt, {c.n_seqs, c.n_q, c.n_heads, c.d});
  tc::DeviceTensor<T, 4> out({c.n_seqs, c.n_q, c.n_heads, c.d});
  gpu_test::poison(s, out.view());
  tc::flash_attention<T>(s, dq.view(), kv.desc, c.mask, 0.f, c.q_pos0, out.view());
  const auto got = gpu_test::to_host(s, out.view());
  const double tol = is_f16 ? 2e-3 : 1.6e-2;
  const int64_t per_seq = c.n_q * c.n_heads * c.d;
  for (int64_t b = 0; b < c.n_seqs; ++b) {
    AttentionParams p;
    p.mask = cpu_mask(c.mask);
    p.q_pos0 = c.q_pos0;
    const KvSource src{is_f16 ? KvType::f16 : KvType::f32, c.n_kv_heads, c.d, kv.segs[static_cast<size_t>(b)]};
    std::vector<float> ref(static_cast<size_t>(per_seq));
    backend::scalar::attention(TensorView<const float, 3>(qr.data() + b * per_seq, {c.n_q, c.n_heads, c.d}), src, p,
                               TensorView<float, 3>(ref.data(), {c.n_q, c.n_heads, c.d}));
    for (int64_t i = 0; i < per_seq; ++i) {
      const float g = static_cast<float>(got[static_cast<size_t>(b * per_seq + i)]);
      INFO("sequence " << b << ", query " << i / (c.n_heads * c.d) << ", head " << i / c.d % c.n_heads << ", dim "
                       << i % c.d << ": gpu " << g << ", cpu " << ref[static_cast<size_t>(i)]);
      REQUIRE(std::fabs(g - ref[static_cast<size_t>(i)]) <= tol);
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("cuda flash attention matches the scalar attention", "[cuda][attention]", f16, bf16) {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  using K = tc::DeviceMask::Kind;
  for (bool paged : {false, true})
    for (int64_t d : {64, 128, 256}) {
      // Prefill from position 0, a second sequence shorter than the query count.
      check_flash<TestType>(s, {2, 100, 8, 2, d, 0, {100, 77}, {K::causal, 0}, paged});
      // Chunked prefill: 70 queries after 64 cached keys, sliding window.
      check_flash<TestType>(s, {1, 70, 3, 3, d, 64, {134}, {K::sliding, 37}, paged});
      // No mask (encoder / cross attention), MQA, one query.
      check_flash<TestType>(s, {2, 1, 4, 1, d, 0, {129, 5}, {K::none, 0}, paged});
      check_flash<TestType>(s, {1, 200, 2, 1, d, 0, {200}, {K::none, 0}, paged});
    }
}

namespace {
// The bytes kv_store must write for one [n_kv_heads, head_dim] row: the CPU's
// conversions (f16 / bf16 round to nearest even, quantize_row<block_q8_0> per
// head) — the reference of the kernel, compared bit for bit.
std::vector<std::byte> reference_row(tc::KvElem e, const float* x, int64_t heads, int64_t d) {
  std::vector<std::byte> out;
  for (int64_t h = 0; h < heads; ++h) {
    const float* r = x + h * d;
    if (e == tc::KvElem::q8_0) {
      std::vector<block_q8_0> b(static_cast<size_t>(d / 32));
      quantize_row(std::span<const float>(r, static_cast<size_t>(d)), std::span<block_q8_0>(b));
      const auto* p = reinterpret_cast<const std::byte*>(b.data());
      out.insert(out.end(), p, p + b.size() * sizeof(block_q8_0));
    } else {
      for (int64_t i = 0; i < d; ++i) {
        const uint16_t bits = e == tc::KvElem::f16 ? f16(r[i]).bits : bf16(r[i]).bits;
        const auto* p = reinterpret_cast<const std::byte*>(&bits);
        out.insert(out.end(), p, p + 2);
      }
    }
  }
  return out;
}
}  // namespace

TEST_CASE("cuda kv_store writes the CPU's f16 / bf16 / q8_0 rows, contiguous and paged", "[cuda][attention]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  const int64_t T = 5, G = 2, D = 64, max_keys = 16, page = 4;
  const std::vector<int32_t> pos = {3, 0, 7, 12, 1};
  const std::vector<int32_t> table = {3, 2, 1, 0};  // pages in reverse
  const auto k = gpu_test::random_floats(static_cast<size_t>(T * G * D), 61, 2.f);
  const auto v = gpu_test::random_floats(static_cast<size_t>(T * G * D), 62, 2.f);
  auto dk = gpu_test::to_dev<float, 3>(s, k, {T, G, D});
  auto dv = gpu_test::to_dev<float, 3>(s, v, {T, G, D});
  auto dpos = gpu_test::to_dev<int32_t, 1>(s, pos, {T});
  auto dtable = gpu_test::to_dev<int32_t, 1>(s, table, {page});
  tc::DeviceTensor<int32_t, 1> fault({1});
  for (tc::KvElem e : {tc::KvElem::f16, tc::KvElem::bf16, tc::KvElem::q8_0})
    for (bool paged : {false, true}) {
      CAPTURE(static_cast<int>(e), paged);
      const int64_t row_bytes = G * (e == tc::KvElem::q8_0 ? D / 32 * 34 : D * 2);
      tc::DeviceTensor<std::byte, 1> kc({max_keys * row_bytes}), vc({max_keys * row_bytes});
      gpu_test::poison(s, kc.view());
      gpu_test::poison(s, vc.view());
      tc::detail::fill_bytes(s, fault.data(), 0, sizeof(int32_t));
      tc::DeviceKvRows dst{e, G, D, kc.data(), vc.data(), max_keys, paged ? dtable.data() : nullptr, paged ? page : 0};
      tc::kv_store(s, dk.view(), dv.view(), dpos.view(), dst, fault.view());
      const auto kh = gpu_test::to_host(s, kc.view()), vh = gpu_test::to_host(s, vc.view());
      CHECK(gpu_test::to_host(s, fault.view())[0] == 0);
      std::vector<bool> written(static_cast<size_t>(max_keys), false);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t p = pos[static_cast<size_t>(t)];
        const int64_t row = paged ? table[static_cast<size_t>(p / page)] * page + p % page : p;
        written[static_cast<size_t>(row)] = true;
        for (auto [cache, src] : {std::pair{&kh, &k}, std::pair{&vh, &v}}) {
          const auto want = reference_row(e, src->data() + t * G * D, G, D);
          REQUIRE(std::memcmp(cache->data() + row * row_bytes, want.data(), want.size()) == 0);
        }
      }
      for (int64_t r = 0; r < max_keys; ++r)  // every other row untouched (still the poison bytes)
        if (!written[static_cast<size_t>(r)])
          for (int64_t i = 0; i < row_bytes; ++i) REQUIRE(kh[static_cast<size_t>(r * row_bytes + i)] == std::byte{0xff});
    }
  // A position outside the cache writes nothing and raises the fault flag.
  const std::vector<int32_t> bad = {2, 16, 0, 1, 3};
  auto dbad = gpu_test::to_dev<int32_t, 1>(s, bad, {T});
  tc::DeviceTensor<std::byte, 1> kc({max_keys * G * D * 2}), vc({max_keys * G * D * 2});
  gpu_test::poison(s, kc.view());
  tc::detail::fill_bytes(s, fault.data(), 0, sizeof(int32_t));
  tc::kv_store(s, dk.view(), dv.view(), dbad.view(), {tc::KvElem::f16, G, D, kc.data(), vc.data(), max_keys}, fault.view());
  CHECK(gpu_test::to_host(s, fault.view())[0] == 1);
  const auto kh = gpu_test::to_host(s, kc.view());
  const auto want = reference_row(tc::KvElem::f16, k.data() + 2 * G * D, G, D);  // token 2 went to row 0
  CHECK(std::memcmp(kh.data(), want.data(), want.size()) == 0);
  CHECK(std::all_of(kh.begin() + 4 * G * D * 2, kh.end(), [](std::byte b) { return b == std::byte{0xff}; }));
}

TEST_CASE("cuda convert rounds f32 to f16 / bf16 as the CPU does and widens back exactly", "[cuda][attention]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  const int64_t n = 1037;
  auto x = gpu_test::random_floats(static_cast<size_t>(n), 71, 100.f);
  x[0] = 1e-8f;  // f16 subnormal
  x[1] = 70000.f;  // beyond f16: inf
  auto dx = gpu_test::to_dev<float, 1>(s, x, {n});
  tc::DeviceTensor<f16, 1> h({n});
  tc::DeviceTensor<bf16, 1> b({n});
  tc::DeviceTensor<float, 1> back({n});
  tc::convert<f16>(s, dx.view(), h.view());
  tc::convert<bf16>(s, dx.view(), b.view());
  const auto hh = gpu_test::to_host(s, h.view());
  const auto bh = gpu_test::to_host(s, b.view());
  for (int64_t i = 0; i < n; ++i) {
    INFO("element " << i << " = " << x[static_cast<size_t>(i)]);
    REQUIRE(hh[static_cast<size_t>(i)].bits == f16(x[static_cast<size_t>(i)]).bits);
    REQUIRE(bh[static_cast<size_t>(i)].bits == bf16(x[static_cast<size_t>(i)]).bits);
  }
  tc::convert<f16>(s, tc::DeviceView<const f16, 1>(h.data(), {n}), back.view());
  const auto fh = gpu_test::to_host(s, back.view());
  for (int64_t i = 0; i < n; ++i) REQUIRE(fh[static_cast<size_t>(i)] == static_cast<float>(hh[static_cast<size_t>(i)]));
  tc::convert<bf16>(s, tc::DeviceView<const bf16, 1>(b.data(), {n}), back.view());
  const auto fb = gpu_test::to_host(s, back.view());
  for (int64_t i = 0; i < n; ++i) REQUIRE(fb[static_cast<size_t>(i)] == static_cast<float>(bh[static_cast<size_t>(i)]));
}
