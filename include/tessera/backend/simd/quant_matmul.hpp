/// \file
/// Quantized matrix products, fast path, with the signatures of
/// backend/scalar/quant_matmul.hpp: gemv streams weight rows (decode), gemm
/// reuses L2-sized weight tiles across activation rows (prefill).
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <algorithm>
#include <cstdint>
#include <span>

#include "tessera/backend/backend.hpp"
#include "tessera/backend/quant_act.hpp"
#include "tessera/backend/scalar/quant_matmul.hpp"
#include "tessera/backend/simd/load.hpp"
#include "tessera/backend/simd/quant_avx2.hpp"
#include "tessera/backend/simd/quant_avx2_gemv.hpp"
#include "tessera/backend/simd/quant_avx512.hpp"
#include "tessera/backend/simd/quant_avx512_tile.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/core/quant.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::backend::simd {

namespace detail {

// Targets without AVX2 + FMA + F16C take the scalar kernels instead of these.
#if defined(TESSERA_QUANT_AVX2)
/// dot(w row, x) over n_blocks blocks, UB blocks in flight on independent
/// accumulators (hiding FMA latency), prefetching the row ahead. Decode is
/// memory-bound, so each thread streams its rows front to back: one
/// sequential stream is what the hardware prefetchers follow best.
template <class W>
float row_dot(const W* w, const ActBlock<W>* x, int64_t n_blocks) {
#if defined(TESSERA_QUANT_AVX512)
  if constexpr (std::is_same_v<W, block_q8_0>) return avx512::row_dot(w, x, n_blocks);
#endif
  using K = avx2::Kernel<W>;
  constexpr int UB = 4;
  avx2::Acc acc[UB];
  int64_t b = 0;
  for (; b + UB <= n_blocks; b += UB) {
    const char* ahead = reinterpret_cast<const char*>(w + b) + avx2::kPrefetchBytes;
    for (size_t o = 0; o < UB * sizeof(W); o += 64) _mm_prefetch(ahead + o, _MM_HINT_T0);
    for (int u = 0; u < UB; ++u) K::accumulate(K::unpack(w[b + u]), x[b + u], acc[u]);
  }
  for (; b < n_blocks; ++b) K::accumulate(K::unpack(w[b]), x[b], acc[0]);
  for (int u = 1; u < UB; ++u) {
    acc[0].v = _mm256_add_ps(acc[0].v, acc[u].v);
    acc[0].s += acc[u].s;
  }
  return acc[0].total();
}

template <class W>
inline constexpr bool kPairedGemv = std::is_same_v<W, block_q4_0> || std::is_same_v<W, block_q4_1> ||
                                    std::is_same_v<W, block_q5_0> || std::is_same_v<W, block_q5_1>;

/// Activation blocks paired per stack chunk: 256 blocks (8192 values) in 16 KB.
inline constexpr int64_t kPairChunkBlocks = 256;

/// y[r] = dot(w row r, x) for rows [r0, r1). q4_0 / q4_1 / q5_0 / q5_1 take the paired
/// kernels of quant_avx2_gemv.hpp over activations rearranged on the stack.
template <class W>
void gemv_rows(const W* w, int64_t ldw, int64_t r0, int64_t r1, const ActBlock<W>* x, int64_t nb, float* y) {
  if constexpr (kPairedGemv<W>) {
    if (nb == 0) std::fill(y + r0, y + r1, 0.f);
    // Longer rows go chunk by chunk, adding partial sums; K up to 8192 is one chunk.
    avx2::PairedX xp[kPairChunkBlocks / 2];
    for (int64_t k0 = 0; k0 < nb; k0 += kPairChunkBlocks) {
      const int64_t kn = std::min(kPairChunkBlocks, nb - k0);
      avx2::pair_activations(x + k0, kn, xp);
      // Two streams: rows of the first half of the range side by side with the second half's.
      const int64_t h = (r1 - r0) / 2;
      for (int64_t r = r0; r < r0 + h; ++r) {
        float p0, p1;
        avx2::paired_row_dot2(w + r * ldw + k0, w + (r + h) * ldw + k0, xp, x + k0, kn, p0, p1);
        y[r] = k0 == 0 ? p0 : y[r] + p0;
        y[r + h] = k0 == 0 ? p1 : y[r + h] + p1;
      }
      for (int64_t r = r0 + 2 * h; r < r1; ++r) {
        const float part = avx2::paired_row_dot(w + r * ldw + k0, xp, x + k0, kn);
        y[r] = k0 == 0 ? part : y[r] + part;
      }
    }
  } else {
    for (int64_t r = r0; r < r1; ++r) y[r] = row_dot(w + r * ldw, x, nb);
  }
}

/// y[c * ldy + r] = dot(w row r, x row c) for an RW x RX tile over n_blocks
/// blocks: each weight block is unpacked once for the RX activation rows.
template <class W, int RW, int RX>
void quant_tile(const W* w, int64_t ldw, const ActBlock<W>* x, int64_t ldx, int64_t n_blocks, float* y,
                int64_t ldy) {
  using K = avx2::Kernel<W>;
  avx2::Acc acc[RW][RX];
  for (int64_t b = 0; b < n_blocks; ++b) {
    for (int r = 0; r < RW; ++r) {
      const typename K::Unpacked u = K::unpack(w[r * ldw + b]);
      for (int c = 0; c < RX; ++c) K::accumulate(u, x[c * ldx + b], acc[r][c]);
    }
  }
  for (int r = 0; r < RW; ++r)
    for (int c = 0; c < RX; ++c) y[c * ldy + r] = acc[r][c].total();
}

/// Weight rows per gemm micro-tile: 2 x 4 accumulators for the 32-value
/// blocks; a k-quant block unpacks into 16+ registers, so one row there.
template <class W>
inline constexpr int kTileRows = quant_traits<W>::block_size == QK_K ? 1 : 2;

/// An RW x rx tile, rx in 1..4 chosen at run time.
template <class W, int RW>
void quant_tile_rx(int rx, const W* w, int64_t ldw, const ActBlock<W>* x, int64_t ldx, int64_t nb, float* y,
                   int64_t ldy) {
  switch (rx) {
    case 1: return quant_tile<W, RW, 1>(w, ldw, x, ldx, nb, y, ldy);
    case 2: return quant_tile<W, RW, 2>(w, ldw, x, ldx, nb, y, ldy);
    case 3: return quant_tile<W, RW, 3>(w, ldw, x, ldx, nb, y, ldy);
    default: return quant_tile<W, RW, 4>(w, ldw, x, ldx, nb, y, ldy);
  }
}

/// Weight rows [r0, r1) against rx activation rows, writing y[c * ldy + r].
template <class W>
void gemm_rows(const W* w, int64_t ldw, int64_t r0, int64_t r1, const ActBlock<W>* x, int64_t ldx, int rx,
               int64_t nb, float* y, int64_t ldy) {
  constexpr int RW = kTileRows<W>;
  int64_t r = r0;
  for (; r + RW <= r1; r += RW) quant_tile_rx<W, RW>(rx, w + r * ldw, ldw, x, ldx, nb, y + r, ldy);
  for (; r < r1; ++r) quant_tile_rx<W, 1>(rx, w + r * ldw, ldw, x, ldx, nb, y + r, ldy);
}
#endif

/// Weight rows of one gemm tile: 16 rows of K = 4096 are 37-70 KB, well inside L2.
inline constexpr int64_t kGemmTileRows = 16;

template <class W>
float row_dot_f32(const W* w, const float* x, int64_t n_blocks) {
  constexpr int bs = quant_traits<W>::block_size;
  alignas(64) float buf[bs];
  fbatch acc(0.f);
  for (int64_t b = 0; b < n_blocks; ++b) {
    dequantize_row(std::span<const W>(w + b, 1), std::span<float>(buf, bs));
    for (int i = 0; i < bs; i += static_cast<int>(kWidth))
      acc = xsimd::fma(fbatch::load_aligned(buf + i), load(x + b * bs + i), acc);
  }
  return xsimd::hadd(acc);
}

}  // namespace detail

/// Quantizes one activation row: x [K] -> out [K / block_size] (q8_0, q8_1 or q8_K), the same
/// blocks as the scalar codec.  Error if K is not a whole number of blocks or out has another length.  O(K).
template <QuantActivation A>
void quantize_activations(std::span<const float> x, std::span<A> out) {
#if defined(TESSERA_QUANT_AVX2)
  tessera::detail::check_quant_sizes<A>("quantize_activations", x.size(), out.size());
  for (size_t b = 0; b < out.size(); ++b) avx2::quantize_block(x.data() + b * quant_traits<A>::block_size, out[b]);
#else
  scalar::quantize_activations(x, out);
#endif
}

/// sum_k w[k] x[k] with x pre-quantized.  w_row [K / bs] blocks, xq [K / bs] blocks.  O(K).
template <QuantWeight W>
float dot(std::span<const W> w_row, std::span<const ActBlock<W>> xq) {
#if defined(TESSERA_QUANT_AVX2)
  backend::detail::check_dot_shapes<W>("dot", w_row.size(), xq.size());
  return detail::row_dot(w_row.data(), xq.data(), static_cast<int64_t>(w_row.size()));
#else
  return scalar::dot(w_row, xq);
#endif
}

/// sum_k w[k] x[k], weights dequantized on the fly.  w_row [K / bs] blocks, x [K].  O(K).
template <QuantWeight W>
float dot_f32(std::span<const W> w_row, std::span<const float> x) {
  backend::detail::check_dot_shapes<W>("dot_f32", w_row.size() * quant_traits<W>::block_size, x.size());
  return detail::row_dot_f32(w_row.data(), x.data(), static_cast<int64_t>(w_row.size()));
}

/// y[n] = dot(w[n], xq).  w [N, K / bs] blocks (rows packed), xq [K / bs], y [N].
/// O(N K), memory-bound; parallel over rows, no allocation.
template <QuantWeight W>
void gemv(TensorView<const W, 2> w, std::span<const ActBlock<W>> xq, std::span<float> y) {
#if defined(TESSERA_QUANT_AVX2)
  backend::detail::check_gemv_shapes<W>("gemv", w, xq.size(), static_cast<size_t>(w.dim(1)), y.size());
  // Chunks of >= 16 KB of weights, so a thread's share outweighs the scheduling cost.
  const int64_t row_bytes = std::max<int64_t>(1, w.dim(1) * static_cast<int64_t>(sizeof(W)));
  const int64_t grain = std::max<int64_t>(4, 16384 / row_bytes);
  parallel_for(w.dim(0), grain, [&](int64_t r0, int64_t r1) {
    detail::gemv_rows(w.data(), w.stride(0), r0, r1, xq.data(), w.dim(1), y.data());
  });
#else
  scalar::gemv(w, xq, y);
#endif
}

/// y[n] = dot_f32(w[n], x).  w [N, K / bs] blocks (rows packed), x [K], y [N].  O(N K), parallel over rows.
template <QuantWeight W>
void gemv_f32(TensorView<const W, 2> w, std::span<const float> x, std::span<float> y) {
  backend::detail::check_gemv_shapes<W>("gemv_f32", w, x.size(),
                                        static_cast<size_t>(w.dim(1) * quant_traits<W>::block_size), y.size());
  parallel_for(w.dim(0), 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) y[r] = detail::row_dot_f32(w.data() + r * w.stride(0), x.data(), w.dim(1));
  });
}

/// y[m, n] = dot(w[n], xq[m]).  w [N, K / bs], xq [M, K / bs], y [M, N]; rows packed.
/// O(M N K); parallel over tiles of 16 weight rows, each reused by every activation row
/// while in L2; no allocation.  M = 1 is gemv.  M <= exact_rows() (kDecodeExactRows
/// unless an ExactRowsScope lowers it: a draft being verified, a short prompt) takes
/// gemv's own row dots over L2-sized blocks of weight rows: every output has the bits
/// decode would give it, and weights are read once.
template <QuantWeight W>
void gemm(TensorView<const W, 2> w, TensorView<const ActBlock<W>, 2> xq, TensorView<float, 2> y) {
#if defined(TESSERA_QUANT_AVX2)
  backend::detail::check_gemm_shapes(w, xq, y);
  const int64_t M = xq.dim(0), N = w.dim(0), nb = w.dim(1);
  if (M == 1) return gemv(w, std::span<const ActBlock<W>>(xq.data(), nb), std::span<float>(y.data(), N));
  if (M <= exact_rows()) {
    const int64_t row_bytes = std::max<int64_t>(1, nb * static_cast<int64_t>(sizeof(W)));
    const int64_t block = std::max<int64_t>(4, 32768 / row_bytes);  // rows per pass: 32 KB, L1/L2-resident
    return parallel_for(N, block, [&](int64_t r0, int64_t r1) {
      for (int64_t b0 = r0; b0 < r1; b0 += block)
        for (int64_t m = 0; m < M; ++m)
          detail::gemv_rows(w.data(), w.stride(0), b0, std::min(r1, b0 + block), xq.data() + m * xq.stride(0), nb,
                            y.data() + m * y.stride(0));
    });
  }
  const int64_t n_tiles = (N + detail::kGemmTileRows - 1) / detail::kGemmTileRows;
#if defined(TESSERA_QUANT_AVX512_TILE)
  // Each thread takes a contiguous run of tiles and packs each chunk of activation rows once for all of it.
  if constexpr (avx512::kTiled<W>) {
    return parallel_for(n_tiles, 1, [&](int64_t t0, int64_t t1) {
      avx512::gemm_rows(w.data(), w.stride(0), t0 * detail::kGemmTileRows, std::min(N, t1 * detail::kGemmTileRows),
                        xq.data(), xq.stride(0), M, nb, y.data(), y.stride(0));
    });
  }
#endif
  parallel_for(n_tiles, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = t * detail::kGemmTileRows, r1 = std::min(N, r0 + detail::kGemmTileRows);
      for (int64_t m = 0; m < M; m += 4)
        detail::gemm_rows(w.data(), w.stride(0), r0, r1, xq.data() + m * xq.stride(0), xq.stride(0),
                          static_cast<int>(std::min<int64_t>(4, M - m)), nb, y.data() + m * y.stride(0),
                          y.stride(0));
    }
  });
#else
  scalar::gemm(w, xq, y);
#endif
}

}  // namespace tessera::backend::simd

TESSERA_SIMD_WARNINGS_ON
