// Flash attention forward for prefill. Block (query tile, head, sequence) owns
// 64 query rows (16 per warp); it walks the visible keys 64 at a time. Q, K and
// V tiles sit in shared memory with an XOR swizzle of their 16-byte chunks (so
// ldmatrix reads 8 rows without bank conflicts); the next K/V tile is copied in
// (cp.async) while this one is used. S = Q K^T and O += P V run on mma.sync
// m16n8k16 (f16 or bf16 in, f32 accumulate); the online softmax keeps each
// row's max and sum in registers, and P goes from S's accumulators to the A
// operand of the P V product without leaving registers. HIP and GPUs before
// sm_80 take a plain warp-per-row kernel instead.
#include <algorithm>
#include <cmath>

#include "async_copy.cuh"
#include "kv_access.cuh"

namespace tessera::cuda {
namespace dev {

/// Tile shape of one flash-attention instantiation.
/// kMB: 16-row blocks per warp. Two (128 rows a block) halve the shared-memory
/// reads of K and V per product, as each fragment feeds both; head_dim 256 keeps
/// one, since its output accumulators alone take 128 registers a thread.
template <int D_>
struct FlashTraits {
  static constexpr int D = D_, kWarps = 4, kMB = D_ >= 256 ? 1 : 2, kRows = 16 * kMB * kWarps, kKeys = 64;
  static constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static constexpr int kTileBytes = kKeys * D * 2;
  static constexpr int kSmem = kRows * D * 2 + 4 * kTileBytes;  // Q + double-buffered K, V
};

// Byte offset of 16-byte chunk c of row r in a swizzled tile of rows with `chunks` chunks.
__device__ __forceinline__ int swz(int r, int c, int chunks) { return (r * chunks + (c ^ (r % 8))) * 16; }

// Element type (tessera::f16 or bf16) as the tensor cores see it.
template <class T> struct MmaType;
template <> struct MmaType<f16> {
  static __device__ __forceinline__ uint32_t pack(float a, float b) {
    const __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  static __device__ __forceinline__ uint16_t from_float(float a) { return float_to_f16_bits(a); }
};
template <> struct MmaType<bf16> {
  static __device__ __forceinline__ uint32_t pack(float a, float b) {
#if TESSERA_HAS_MMA  // one cvt.rn.bf16x2.f32 instead of two software roundings
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&h);
#else
    return static_cast<uint32_t>(float_to_bf16_bits(a)) | (static_cast<uint32_t>(float_to_bf16_bits(b)) << 16);
#endif
  }
  static __device__ __forceinline__ uint16_t from_float(float a) { return float_to_bf16_bits(a); }
};

#if TESSERA_HAS_MMA
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  const auto a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  const auto a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
// d += a b for one 16x8x16 tile.
template <class T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, f16>) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}
#endif

struct FlashArgs {
  const uint8_t* q;
  uint8_t* out;
  KvRef kv;
  DeviceMask mask;
  float scale_log2;  // softmax scale times log2(e)
  int64_t n_q, n_heads, q_pos0;
  int group;
};

// Copies n rows (row r from row_of(r)) into a swizzled tile. Thread t always
// copies chunk t % chunks of rows t / chunks, + 128 / chunks, ...: one address
// computation per row. Rows past `valid` are zero-filled, so that masked keys
// add exact zeros to P V (garbage there could be NaN, and 0 * NaN is NaN).
template <class Tr, class RowOf>
__device__ __forceinline__ void load_tile(uint8_t* tile, int n, int valid, RowOf row_of) {
  constexpr int kPass = Tr::kWarps * 32 / Tr::kChunks;
  const int ch = threadIdx.x % Tr::kChunks;
  for (int r = threadIdx.x / Tr::kChunks; r < n; r += kPass) {
    uint8_t* dst = tile + swz(r, ch, Tr::kChunks);
    if (r < valid) copy_async<16>(dst, row_of(r) + ch * 16);
    else *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
  }
}
// The K and V tiles of keys [t0, t0 + kKeys): the same row offsets for both.
template <class Tr>
__device__ __forceinline__ void load_kv_tile(uint8_t* kt, uint8_t* vt, const KvRef& kv, int64_t b, int64_t g,
                                             int64_t t0, int valid) {
  constexpr int kPass = Tr::kWarps * 32 / Tr::kChunks;
  const int ch = threadIdx.x % Tr::kChunks;
  for (int r = threadIdx.x / Tr::kChunks; r < Tr::kKeys; r += kPass) {
    const int off = swz(r, ch, Tr::kChunks);
    if (r < valid) {
      const int64_t src = kv.offset(b, t0 + r, g) + ch * 16;
      copy_async<16>(kt + off, kv.k + src);
      copy_async<16>(vt + off, kv.v + src);
    } else {
      *reinterpret_cast<uint4*>(kt + off) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(vt + off) = make_uint4(0, 0, 0, 0);
    }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(128) flash_kernel(FlashArgs a) {
#if TESSERA_HAS_MMA
  using Tr = FlashTraits<D>;
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* qs = smem;
  uint8_t* ks = smem + Tr::kRows * D * 2;  // [2] tiles
  uint8_t* vs = ks + 2 * Tr::kTileBytes;   // [2] tiles
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int64_t m0 = (gridDim.x - 1 - blockIdx.x) * int64_t{Tr::kRows};  // heavy causal tiles first
  const int64_t h = blockIdx.y, b = blockIdx.z, g = h / a.group;
  const int64_t n_keys = a.kv.seq_lens[b];

  // Keys any row of this block may see: [lo, hi).
  int64_t lo, hi, lo_last, hi_first, unused;
  visible_keys(a.mask, a.q_pos0 + m0, n_keys, unused, hi_first);
  visible_keys(a.mask, a.q_pos0 + min64(m0 + Tr::kRows, a.n_q) - 1, n_keys, lo_last, hi);
  visible_keys(a.mask, a.q_pos0 + m0, n_keys, lo, unused);
  const int64_t row_stride = a.n_heads * D * 2;
  const uint8_t* qg = a.q + ((b * a.n_q + m0) * a.n_heads + h) * D * 2;
  const int q_valid = static_cast<int>(min64(Tr::kRows, a.n_q - m0));
  load_tile<Tr>(qs, Tr::kRows, q_valid, [&](int r) { return qg + r * row_stride; });
  auto load_kv = [&](int64_t t0, int buf) {
    load_kv_tile<Tr>(ks + buf * Tr::kTileBytes, vs + buf * Tr::kTileBytes, a.kv, b, g, t0,
                     static_cast<int>(min64(Tr::kKeys, hi - t0)));
  };
  const int64_t t_begin = lo / Tr::kKeys * Tr::kKeys;
  if (t_begin < hi) load_kv(t_begin, 0);
  copy_async_commit();

  constexpr int MB = Tr::kMB;
  float o[MB][D / 8][4];
#pragma unroll
  for (int mb = 0; mb < MB; ++mb)
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[mb][j][0] = o[mb][j][1] = o[mb][j][2] = o[mb][j][3] = 0.f;
  float m_row[MB][2], l_row[MB][2];
#pragma unroll
  for (int mb = 0; mb < MB; ++mb) m_row[mb][0] = m_row[mb][1] = -INFINITY, l_row[mb][0] = l_row[mb][1] = 0.f;
  const int wrow = warp * 16 * MB;                 // this warp's first row in the tile
  const int64_t qrow0 = a.q_pos0 + m0 + wrow + gid;  // position of this thread's row in m-block 0 (+8: second)
  const int mi = lane / 8, lr = lane % 8;          // ldmatrix: which 8x8 matrix this lane addresses, and its row

  int buf = 0;
  for (int64_t t0 = t_begin; t0 < hi; t0 += Tr::kKeys, buf ^= 1) {
    if (t0 + Tr::kKeys < hi) {
      load_kv(t0 + Tr::kKeys, buf ^ 1);
      copy_async_commit();
      copy_async_wait<1>();
    } else {
      copy_async_wait<0>();
    }
    __syncthreads();
    const uint8_t* kt = ks + buf * Tr::kTileBytes;
    const uint8_t* vt = vs + buf * Tr::kTileBytes;

    // S = Q K^T: MB x 16 rows x 64 keys per warp; each K fragment feeds every m-block.
    float sacc[MB][Tr::kKeys / 8][4];
#pragma unroll
    for (int mb = 0; mb < MB; ++mb)
#pragma unroll
      for (int j = 0; j < Tr::kKeys / 8; ++j) sacc[mb][j][0] = sacc[mb][j][1] = sacc[mb][j][2] = sacc[mb][j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t af[MB][4];
#pragma unroll
      for (int mb = 0; mb < MB; ++mb)
        ldmatrix_x4(af[mb], qs + swz(wrow + mb * 16 + (mi % 2) * 8 + lr, kk * 2 + mi / 2, Tr::kChunks));
#pragma unroll
      for (int nn = 0; nn < Tr::kKeys / 16; ++nn) {
        uint32_t bf[4];
        ldmatrix_x4(bf, kt + swz(nn * 16 + (mi / 2) * 8 + lr, kk * 2 + mi % 2, Tr::kChunks));
#pragma unroll
        for (int mb = 0; mb < MB; ++mb) {
          mma16816<T>(sacc[mb][2 * nn], af[mb], bf[0], bf[1]);
          mma16816<T>(sacc[mb][2 * nn + 1], af[mb], bf[2], bf[3]);
        }
      }
    }
    // Mask, scale to log2 units, and fold the tile into each row's running max.
    const bool edge = t0 < lo_last || t0 + Tr::kKeys > hi_first;
#pragma unroll
    for (int mb = 0; mb < MB; ++mb) {
      float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < Tr::kKeys / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float sv = sacc[mb][j][e] * a.scale_log2;
          if (edge) {
            const int64_t kpos = t0 + j * 8 + tig * 2 + (e % 2), qpos = qrow0 + mb * 16 + (e / 2) * 8;
            int64_t klo, khi;
            visible_keys(a.mask, qpos, n_keys, klo, khi);
            if (kpos < klo || kpos >= khi) sv = -INFINITY;
          }
          sacc[mb][j][e] = sv;
          tmax[e / 2] = fmaxf(tmax[e / 2], sv);
        }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        tmax[r] = fmaxf(tmax[r], shfl_xor(tmax[r], 1));
        tmax[r] = fmaxf(tmax[r], shfl_xor(tmax[r], 2));
        const float corr = online_softmax_rescale(tmax[r], m_row[mb][r], l_row[mb][r]);
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
          o[mb][j][2 * r] *= corr;
          o[mb][j][2 * r + 1] *= corr;
        }
      }
    }
    // P (the A operand, 16 keys per k step, straight from S's registers) and O += P V.
#pragma unroll
    for (int kk = 0; kk < Tr::kKeys / 16; ++kk) {
      uint32_t pf[MB][4];
#pragma unroll
      for (int mb = 0; mb < MB; ++mb)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const float* sv = sacc[mb][2 * kk + half];
          const float p0 = softmax_weight(sv[0], m_row[mb][0]), p1 = softmax_weight(sv[1], m_row[mb][0]);
          const float p2 = softmax_weight(sv[2], m_row[mb][1]), p3 = softmax_weight(sv[3], m_row[mb][1]);
          l_row[mb][0] += p0 + p1;
          l_row[mb][1] += p2 + p3;
          pf[mb][2 * half] = MmaType<T>::pack(p0, p1);
          pf[mb][2 * half + 1] = MmaType<T>::pack(p2, p3);
        }
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, vt + swz(kk * 16 + (mi % 2) * 8 + lr, dn * 2 + mi / 2, Tr::kChunks));
#pragma unroll
        for (int mb = 0; mb < MB; ++mb) {
          mma16816<T>(o[mb][2 * dn], pf[mb], vf[0], vf[1]);
          mma16816<T>(o[mb][2 * dn + 1], pf[mb], vf[2], vf[3]);
        }
      }
    }
    __syncthreads();  // the next iteration's copies overwrite this buffer
  }
  copy_async_wait<0>();

  // O / l, rows with no visible key as zeros.
#pragma unroll
  for (int mb = 0; mb < MB; ++mb)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = l_row[mb][r];
      l += shfl_xor(l, 1);
      l += shfl_xor(l, 2);
      const int64_t t = m0 + wrow + mb * 16 + gid + r * 8;
      if (t >= a.n_q) continue;
      const float inv = l > 0.f ? 1.f / l : 0.f;
      auto* out = reinterpret_cast<uint32_t*>(a.out + ((b * a.n_q + t) * a.n_heads + h) * D * 2);
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
        out[(j * 8 + tig * 2) / 2] = MmaType<T>::pack(o[mb][j][2 * r] * inv, o[mb][j][2 * r + 1] * inv);
    }
#endif
}

// Portable path: one warp per (query, head), lanes split the head dims, keys one at a time.
template <class T, int D>
__global__ void flash_fallback_kernel(FlashArgs a) {
  const int64_t row = blockIdx.x * int64_t{4} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t b = blockIdx.z, h = blockIdx.y, g = h / a.group;
  if (row >= a.n_q) return;
  const int64_t n_keys = a.kv.seq_lens[b];
  int64_t lo, hi;
  visible_keys(a.mask, a.q_pos0 + row, n_keys, lo, hi);
  const auto* q = reinterpret_cast<const uint16_t*>(a.q + ((b * a.n_q + row) * a.n_heads + h) * D * 2);
  auto to_f = [](uint16_t v) { return std::is_same_v<T, f16> ? f16_bits_to_float(v) : bf16_bits_to_float(v); };
  float qv[D / 32], acc[D / 32];
  for (int i = 0; i < D / 32; ++i) { qv[i] = to_f(q[lane + 32 * i]) * a.scale_log2; acc[i] = 0.f; }
  float m = -INFINITY, l = 0.f;
  for (int64_t j = lo; j < hi; ++j) {
    const auto* k = reinterpret_cast<const uint16_t*>(a.kv.k + a.kv.offset(b, j, g));
    const auto* v = reinterpret_cast<const uint16_t*>(a.kv.v + a.kv.offset(b, j, g));
    float s = 0.f;
    for (int i = 0; i < D / 32; ++i) s = fmaf(qv[i], to_f(k[lane + 32 * i]), s);
    s = warp_sum(s);
    const float corr = online_softmax_rescale(s, m, l);
    const float p = softmax_weight(s, m);
    l += p;
    for (int i = 0; i < D / 32; ++i) acc[i] = fmaf(p, to_f(v[lane + 32 * i]), acc[i] * corr);
  }
  auto* out = reinterpret_cast<uint16_t*>(a.out + ((b * a.n_q + row) * a.n_heads + h) * D * 2);
  for (int i = 0; i < D / 32; ++i) out[lane + 32 * i] = MmaType<T>::from_float(l > 0.f ? acc[i] / l : 0.f);
}

}  // namespace dev

namespace {
template <class T, int D>
void launch_flash(const Stream& s, const dev::FlashArgs& a, int64_t n_seqs) {
  const gpuStream_t st = detail::native(s);
#if !defined(TESSERA_HIP_BACKEND)
  using Tr = dev::FlashTraits<D>;
  if (detail::cached_info(s.device()).cc_major >= 8) {
    auto* kern = dev::flash_kernel<T, D>;
    detail::check_gpu(gpuFuncSetAttribute(kern, gpuFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmem),
                      "cudaFuncSetAttribute (flash attention)");
    const dim3 grid(static_cast<unsigned>(detail::ceil_div(a.n_q, Tr::kRows)), static_cast<unsigned>(a.n_heads),
                    static_cast<unsigned>(n_seqs));
    kern<<<grid, 128, Tr::kSmem, st>>>(a);
    detail::check_launch("cuda::flash_attention");
    return;
  }
#endif
  const dim3 grid(static_cast<unsigned>(detail::ceil_div(a.n_q, 4)), static_cast<unsigned>(a.n_heads),
                  static_cast<unsigned>(n_seqs));
  dev::flash_fallback_kernel<T, D><<<grid, 128, 0, st>>>(a);
  detail::check_launch("cuda::flash_attention (portable)");
}
}  // namespace

template <class T>
  requires std::is_same_v<T, f16> || std::is_same_v<T, bf16>
void flash_attention(const Stream& s, DeviceView<const T, 4> q, const DeviceKv& kv, DeviceMask mask, float scale,
                     int64_t q_pos0, DeviceView<T, 4> out) {
  const int64_t n_seqs = q.dim(0), n_q = q.dim(1), n_heads = q.dim(2), d = q.dim(3);
  TESSERA_CHECK(out.shape() == q.shape(), "cuda::flash_attention: q ", q.shape_str(), " but out ", out.shape_str());
  check(kv.head_dim == d && (d == 64 || d == 128 || d == 256), "cuda::flash_attention: head_dim ", d, " (query) and ",
        kv.head_dim, " (cache); 64, 128 or 256 supported");
  check(kv.elem == (std::is_same_v<T, f16> ? KvElem::f16 : KvElem::bf16),
        "cuda::flash_attention: the cache's element type differs from the queries'");
  check(kv.n_kv_heads > 0 && n_heads % kv.n_kv_heads == 0, "cuda::flash_attention: ", n_heads, " query heads over ",
        kv.n_kv_heads, " KV heads");
  check(kv.k && kv.v && kv.seq_lens, "cuda::flash_attention: null key, value or length pointer");
  check(kv.block_table ? kv.page_size > 0 && kv.max_pages > 0 : kv.max_keys > 0,
        "cuda::flash_attention: a paged cache needs page_size and max_pages, a contiguous one max_keys");
  check(mask.kind != DeviceMask::Kind::sliding || mask.window > 0, "cuda::flash_attention: window ", mask.window);
  check(!kv.shared_rows, "cuda::flash_attention: shared_rows is for decode_attention");
  check(n_seqs < 65536 && n_heads < 65536, "cuda::flash_attention: grid too large");
  if (q.empty()) return;
  dev::FlashArgs a{};
  a.q = reinterpret_cast<const uint8_t*>(q.data());
  a.out = reinterpret_cast<uint8_t*>(out.data());
  a.kv = dev::KvRef{static_cast<const uint8_t*>(kv.k), static_cast<const uint8_t*>(kv.v), kv.seq_lens, kv.block_table,
                    kv.max_keys, kv.page_size, kv.max_pages, kv.n_kv_heads, d * 2};
  a.mask = mask;
  a.scale_log2 = (scale != 0.f ? scale : 1.f / std::sqrt(static_cast<float>(d))) * 1.4426950408889634f;
  a.n_q = n_q;
  a.n_heads = n_heads;
  a.q_pos0 = q_pos0;
  a.group = static_cast<int>(n_heads / kv.n_kv_heads);
  if (d == 64) launch_flash<T, 64>(s, a, n_seqs);
  else if (d == 128) launch_flash<T, 128>(s, a, n_seqs);
  else launch_flash<T, 256>(s, a, n_seqs);
}

template void flash_attention<f16>(const Stream&, DeviceView<const f16, 4>, const DeviceKv&, DeviceMask, float,
                                   int64_t, DeviceView<f16, 4>);
template void flash_attention<bf16>(const Stream&, DeviceView<const bf16, 4>, const DeviceKv&, DeviceMask, float,
                                    int64_t, DeviceView<bf16, 4>);

}  // namespace tessera::cuda
