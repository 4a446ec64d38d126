// Decode attention (flash-decoding): one query position per sequence. Block
// (split s, KV head g, sequence b) reads the keys of slice s of head g once
// for all the query heads that share it (up to 4 per block), 64 keys a tile,
// double-buffered through shared memory by asynchronous copies. Scores: 8
// lanes per key, each over head_dim / 8 dims. Softmax and P V: one warp per
// query head. Each block leaves a partial (max, sum, output); a second kernel
// merges a head's partials.
#include <algorithm>

#include "async_copy.cuh"
#include "kv_access.cuh"

namespace tessera::cuda {
namespace dev {

constexpr int kTileKeys = 64, kDecodeThreads = 128, kMaxGroup = 4, kMaxSplits = 64;

template <KvElem E>
__device__ __forceinline__ void load_dims(const uint8_t* row, int d0, int n, float* out) {
  if constexpr (E == KvElem::f16) {
    const auto* h = reinterpret_cast<const __half2*>(row + 2 * d0);
    for (int i = 0; i < n / 2; ++i) {
      const float2 f = __half22float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  } else {  // q8_0: block d0 / 32, n <= 32 dims inside one block
    const uint8_t* b = row + (d0 / 32) * 34;
    const float d = f16_bits_to_float(load_u16(b));
    const uint8_t* q = b + 2 + d0 % 32;
    if (n % 4 == 0) {
      // int8 -> float without the (quarter-rate) conversion unit: byte q + 128 becomes
      // the low mantissa bits of 2^23, one byte permute and one subtraction, exact.
      for (int w = 0; w < n / 4; ++w) {
        const uint32_t v = static_cast<uint32_t>(load_i32_2aligned(q + 4 * w)) ^ 0x80808080u;
        for (int i = 0; i < 4; ++i)
          out[4 * w + i] = d * (__uint_as_float(__byte_perm(v, 0x4b000000u, 0x7540u | i)) - 8388736.f);
      }
    } else {
      for (int i = 0; i < n; ++i) out[i] = d * static_cast<float>(static_cast<int8_t>(q[i]));
    }
  }
}

template <int D, KvElem E>
__global__ void __launch_bounds__(kDecodeThreads, D >= 256 ? 2 : 4) decode_kernel(const float* __restrict__ q, KvRef kv, DeviceMask mask,
                                                                float qscale, int64_t n_heads, int group, int splits,
                                                                int width, float* __restrict__ part) {
  pdl_launch_dependents();
  pdl_wait();
  constexpr int kDimsPerLane = D / 8;  // score step: 8 lanes per key
  constexpr int kPvDims = D / 32;      // P V step: one warp per head
  extern __shared__ __align__(16) uint8_t smem[];
  const int64_t hb = kv.head_bytes;
  uint8_t* kbuf = smem;                         // [2][kTileKeys][hb]
  uint8_t* vbuf = smem + 2 * kTileKeys * hb;    // [2][kTileKeys][hb]
  float* s_p = reinterpret_cast<float*>(smem + 4 * kTileKeys * hb);  // [kMaxGroup][kTileKeys]

  const int split = blockIdx.x, g = blockIdx.y % kv.n_kv_heads, hgrp = blockIdx.y / kv.n_kv_heads;
  const int64_t b = blockIdx.z;
  const int h0 = g * group + hgrp * kMaxGroup;
  const int hg = min(kMaxGroup, group - hgrp * kMaxGroup);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  const int64_t n = kv.seq_lens[b];
  int64_t lo, hi;
  visible_keys(mask, n - 1, n, lo, hi);
  const int64_t per = (hi - lo + splits - 1) / splits;
  const int64_t k0 = lo + split * per, k1 = min64(hi, k0 + per);

  // The query heads' slices for this lane's 8-lane key group, pre-scaled.
  const int oct = lane % 8;
  float qr[kMaxGroup][kDimsPerLane];
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h)
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i)
      qr[h][i] = h < hg ? q[(b * n_heads + h0 + h) * D + oct * kDimsPerLane + i] * qscale : 0.f;

  float m = -INFINITY, l = 0.f, acc[kPvDims];
#pragma unroll
  for (int i = 0; i < kPvDims; ++i) acc[i] = 0.f;

  // Copy mapping, fixed per thread: piece `chunk` of rows row0, row0 + rows_per_pass, ...
  const int per_row = static_cast<int>(hb / width), rows_per_pass = kDecodeThreads / per_row;
  const int chunk = threadIdx.x % per_row, row0 = threadIdx.x / per_row;
  auto issue = [&](int64_t t0, int buf) {
    const int nk = static_cast<int>(min64(kTileKeys, k1 - t0));
    if (row0 < rows_per_pass)
      for (int r = row0; r < nk; r += rows_per_pass) {
        const int64_t src = kv.offset(b, t0 + r, g) + chunk * width;
        const int64_t dst = (buf * kTileKeys + r) * hb + chunk * width;
        copy_async_any(width, kbuf + dst, kv.k + src);
        copy_async_any(width, vbuf + dst, kv.v + src);
      }
    copy_async_commit();
  };

  if (k0 < k1) issue(k0, 0);
  int buf = 0;
  for (int64_t t0 = k0; t0 < k1; t0 += kTileKeys, buf ^= 1) {
    if (t0 + kTileKeys < k1) {
      issue(t0 + kTileKeys, buf ^ 1);
      copy_async_wait<1>();
    } else {
      copy_async_wait<0>();
    }
    __syncthreads();
    const int nk = static_cast<int>(min64(kTileKeys, k1 - t0));
    // Scores: warp w takes keys 16w .. 16w+15, four at a time (one per 8 lanes).
#pragma unroll
    for (int round = 0; round < kTileKeys / 16; ++round) {
      const int j = warp * (kTileKeys / 4) + round * 4 + lane / 8;
      float kd[kDimsPerLane];
      if (j < nk) load_dims<E>(kbuf + (buf * kTileKeys + j) * hb, oct * kDimsPerLane, kDimsPerLane, kd);
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        float sdot = 0.f;
        if (j < nk)
#pragma unroll
          for (int i = 0; i < kDimsPerLane; ++i) sdot = fmaf(qr[h][i], kd[i], sdot);
        sdot += shfl_xor(sdot, 1);
        sdot += shfl_xor(sdot, 2);
        sdot += shfl_xor(sdot, 4);
        if (oct == h && h < hg) s_p[h * kTileKeys + j] = j < nk ? sdot : -INFINITY;
      }
    }
    __syncthreads();
    if (warp < hg) {
      const float sc0 = s_p[warp * kTileKeys + lane], sc1 = s_p[warp * kTileKeys + 32 + lane];
      const float corr = online_softmax_rescale(warp_max(fmaxf(sc0, sc1)), m, l);
      const float p0 = softmax_weight(sc0, m), p1 = softmax_weight(sc1, m);
      l += warp_sum(p0 + p1);
      s_p[warp * kTileKeys + lane] = p0;
      s_p[warp * kTileKeys + 32 + lane] = p1;
      warp_sync();
#pragma unroll
      for (int i = 0; i < kPvDims; ++i) acc[i] *= corr;
      for (int j = 0; j < nk; ++j) {
        const float pj = s_p[warp * kTileKeys + j];
        float vd[kPvDims];
        load_dims<E>(vbuf + (buf * kTileKeys + j) * hb, lane * kPvDims, kPvDims, vd);
#pragma unroll
        for (int i = 0; i < kPvDims; ++i) acc[i] = fmaf(pj, vd[i], acc[i]);
      }
    }
    __syncthreads();
  }
  if (warp < hg) {
    // part layout per (b, head, split): [m, l, acc[D]].
    float* o = part + ((b * n_heads + h0 + warp) * splits + split) * (D + 2);
    if (lane == 0) {
      o[0] = m;
      o[1] = l;
    }
#pragma unroll
    for (int i = 0; i < kPvDims; ++i) o[2 + lane * kPvDims + i] = acc[i];
  }
}

// out[b, h] = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s; zeros when no split saw a key.
template <int D>
__global__ void decode_merge_kernel(const float* __restrict__ part, int splits, float* __restrict__ out) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t bh = blockIdx.x;
  const float* p = part + bh * splits * (D + 2);
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, p[s * (D + 2)]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float num = 0.f, den = 0.f;
    if (mx != -INFINITY)
      for (int s = 0; s < splits; ++s) {
        const float w = exp2f(p[s * (D + 2)] - mx);
        num = fmaf(w, p[s * (D + 2) + 2 + d], num);
        den = fmaf(w, p[s * (D + 2) + 1], den);
      }
    out[bh * D + d] = den > 0.f ? num / den : 0.f;
  }
}

}  // namespace dev

size_t decode_attention_workspace_bytes(int64_t n_seqs, int64_t n_heads, int64_t head_dim) {
  return detail::Carver::bytes_for<float>(n_seqs * n_heads * dev::kMaxSplits * (head_dim + 2));
}

namespace {
template <int D, KvElem E>
void launch_decode(const Stream& s, const float* q, const dev::KvRef& kv, DeviceMask mask, float qscale,
                   int64_t n_seqs, int64_t n_heads, int group, int64_t max_len, float* part, float* out) {
  const int hgroups = (group + dev::kMaxGroup - 1) / dev::kMaxGroup;
  // Blocks for ~16 waves of 4 per multiprocessor (a short tail), but no slice
  // shorter than two tiles; the merge then reads splits x (d + 2) floats per head.
  const int64_t blocks = n_seqs * kv.n_kv_heads * hgroups;
  const int64_t want = detail::ceil_div(16 * detail::sm_count(s.device()), blocks);
  const int splits = static_cast<int>(
      std::clamp<int64_t>(std::min(want, detail::ceil_div(max_len, 2 * dev::kTileKeys)), 1, dev::kMaxSplits));
  const int width = dev::copy_width(static_cast<uint64_t>(kv.head_bytes));
  const size_t smem = static_cast<size_t>(4 * dev::kTileKeys * kv.head_bytes) + dev::kMaxGroup * dev::kTileKeys * 4;
  auto* kern = dev::decode_kernel<D, E>;
  detail::check_gpu(gpuFuncSetAttribute(kern, gpuFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
                    "cudaFuncSetAttribute (decode attention)");
  const dim3 grid(static_cast<unsigned>(splits), static_cast<unsigned>(kv.n_kv_heads * hgroups),
                  static_cast<unsigned>(n_seqs));
  detail::launch_pdl(kern, grid, dev::kDecodeThreads, smem, detail::native(s), q, kv, mask, qscale, n_heads, group,
                     splits, width, part);
  detail::check_launch("cuda::decode_attention");
  detail::launch_pdl(dev::decode_merge_kernel<D>, static_cast<unsigned>(n_seqs * n_heads), 128, 0, detail::native(s),
                     part, splits, out);
  detail::check_launch("cuda::decode_attention (merge)");
}
}  // namespace

void decode_attention(const Stream& s, DeviceView<const float, 3> q, const DeviceKv& kv, DeviceMask mask, float scale,
                      DeviceView<float, 3> out, DeviceView<std::byte, 1> workspace) {
  const int64_t n_seqs = q.dim(0), n_heads = q.dim(1), d = q.dim(2);
  TESSERA_CHECK(out.shape() == q.shape(), "cuda::decode_attention: q ", q.shape_str(), " but out ", out.shape_str());
  check(kv.head_dim == d && (d == 64 || d == 128 || d == 256), "cuda::decode_attention: head_dim ", d,
        " (query) and ", kv.head_dim, " (cache); 64, 128 or 256 supported");
  check(kv.n_kv_heads > 0 && n_heads % kv.n_kv_heads == 0, "cuda::decode_attention: ", n_heads,
        " query heads over ", kv.n_kv_heads, " KV heads");
  check(kv.elem == KvElem::f16 || kv.elem == KvElem::q8_0, "cuda::decode_attention: keys must be f16 or q8_0");
  check(kv.k && kv.v && kv.seq_lens, "cuda::decode_attention: null key, value or length pointer");
  check(kv.block_table ? kv.page_size > 0 && kv.max_pages > 0 : kv.max_keys > 0,
        "cuda::decode_attention: a paged cache needs page_size and max_pages, a contiguous one max_keys");
  check(mask.kind != DeviceMask::Kind::sliding || mask.window > 0, "cuda::decode_attention: window ", mask.window);
  if (n_seqs == 0) return;
  detail::Carver c(workspace, "cuda::decode_attention");
  float* part = c.take<float>(n_seqs * n_heads * dev::kMaxSplits * (d + 2));
  dev::KvRef ref{static_cast<const uint8_t*>(kv.k), static_cast<const uint8_t*>(kv.v), kv.seq_lens, kv.block_table,
                 kv.shared_rows ? 0 : kv.max_keys, kv.page_size, kv.shared_rows ? 0 : kv.max_pages, kv.n_kv_heads,
                 kv.elem == KvElem::q8_0 ? d / 32 * 34 : d * 2};
  const int64_t max_len = kv.block_table ? kv.page_size * kv.max_pages : kv.max_keys;
  const float qscale = (scale != 0.f ? scale : 1.f / std::sqrt(static_cast<float>(d))) * 1.4426950408889634f;
  const int group = static_cast<int>(n_heads / kv.n_kv_heads);
  auto go = [&]<int D>() {
    if (kv.elem == KvElem::f16)
      launch_decode<D, KvElem::f16>(s, q.data(), ref, mask, qscale, n_seqs, n_heads, group, max_len, part, out.data());
    else
      launch_decode<D, KvElem::q8_0>(s, q.data(), ref, mask, qscale, n_seqs, n_heads, group, max_len, part, out.data());
  };
  if (d == 64) go.template operator()<64>();
  else if (d == 128) go.template operator()<128>();
  else go.template operator()<256>();
}

}  // namespace tessera::cuda
