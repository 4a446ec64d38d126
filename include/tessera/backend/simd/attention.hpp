/// \file
/// Attention on xsimd + OpenMP, two algorithms with the scalar reference's
/// contract (backend/scalar/attention.hpp):
///
///   naive  one head per work item: the [n_q, n_keys] score matrix S = scale QK^T
///          (masked entries -inf), row softmax, then P V.  Scratch n_q n_keys
///          floats per thread (at most n_heads threads have work): quadratic,
///          so only for short sequences and decode.
///   flash  work items of (query tile, KV head, some of its query heads); keys in
///          tiles of kKeyTile with an online softmax: per row a running max m,
///          sum l and output acc, and for each new tile with max m' >= m,
///          acc <- acc e^(m - m') + sum_j e^(s_j - m') v_j, l likewise.  Scratch is
///          O(tile) per thread whatever the length; the query heads that share a
///          KV head are in one item, so a K/V tile is read (and converted from
///          f16/q8_0) once for all of them.
///
/// K and V stay where the cache keeps them; f32 rows are read in place.
#pragma once

#include "tessera/core/compiler.hpp"
TESSERA_SIMD_WARNINGS_OFF  // see core/compiler.hpp

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "tessera/backend/scalar/attention.hpp"
#include "tessera/backend/simd/load.hpp"
#include "tessera/core/parallel.hpp"

namespace tessera::backend::simd {

inline constexpr int64_t kKeyTile = 64;     ///< keys per flash tile: S tile + K/V tiles stay in L1/L2
inline constexpr int64_t kQueryTile = 16;   ///< query tokens per flash work item
/// automatic: naive only while S fits 8 KiB; flash measured faster from there
/// on (decode over 4k keys: 2.5x; causal prefill of 512: 1.1x, of 16k: 3.8x).
inline constexpr size_t kNaiveMaxScores = size_t{1} << 11;

namespace detail {
// Four accumulators: one FMA chain would make a head_dim-128 dot latency-bound (16 x 4 cycles).
inline float dot(const float* a, const float* b, int64_t n) {
  constexpr auto W = static_cast<int64_t>(kWidth);
  fbatch a0(0.f), a1(0.f), a2(0.f), a3(0.f);
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    a0 = xsimd::fma(load(a + i), load(b + i), a0);
    a1 = xsimd::fma(load(a + i + W), load(b + i + W), a1);
    a2 = xsimd::fma(load(a + i + 2 * W), load(b + i + 2 * W), a2);
    a3 = xsimd::fma(load(a + i + 3 * W), load(b + i + 3 * W), a3);
  }
  for (; i + W <= n; i += W) a0 = xsimd::fma(load(a + i), load(b + i), a0);
  float s = xsimd::hadd((a0 + a1) + (a2 + a3));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}
inline void axpy(float a, const float* x, float* y, int64_t n) {
  const fbatch av(a);
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kWidth) <= n; i += kWidth) xsimd::fma(av, load(x + i), load(y + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}
// y += w0 x0 + w1 x1 + w2 x2 + w3 x3: one load/store of y per four value rows.
inline void axpy4(const float* w, const float* const* x, float* y, int64_t n) {
  const fbatch w0(w[0]), w1(w[1]), w2(w[2]), w3(w[3]);
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kWidth) <= n; i += kWidth) {
    fbatch acc = xsimd::fma(w0, load(x[0] + i), load(y + i));
    acc = xsimd::fma(w1, load(x[1] + i), acc);
    acc = xsimd::fma(w2, load(x[2] + i), acc);
    xsimd::fma(w3, load(x[3] + i), acc).store_unaligned(y + i);
  }
  for (; i < n; ++i) y[i] += w[0] * x[0][i] + w[1] * x[1][i] + w[2] * x[2][i] + w[3] * x[3][i];
}
inline void scale_row(float a, float* y, int64_t n) {
  const fbatch av(a);
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kWidth) <= n; i += kWidth) (av * load(y + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] *= a;
}
// In place: s[j] = exp(s[j] - mx) (-inf entries become 0); returns the sum.
inline float exp_shifted(float* s, int64_t n, float mx) {
  const fbatch m(mx);
  fbatch acc(0.f);
  int64_t j = 0;
  for (; j + static_cast<int64_t>(kWidth) <= n; j += kWidth) {
    const fbatch e = xsimd::exp(load(s + j) - m);
    e.store_unaligned(s + j);
    acc += e;
  }
  float sum = xsimd::hadd(acc);
  for (; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
  return sum;
}
inline float max_of(const float* s, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
  return mx;
}
// One tile of the online softmax for one query row: n scores s of visible
// keys (overwritten by their weights) and those keys' value rows. The running
// max m, sum l and output acc [d] move to the new max first, e^(m - m'), when
// it rises; the exp is a vector one (a scalar exp per key would dominate decode).
inline void online_softmax_step(float* s, int64_t n, const float* const* vrow, int64_t d, float& m, float& l,
                                float* acc) {
  const float m_new = std::max(m, max_of(s, n));
  if (m != m_new && m != -std::numeric_limits<float>::infinity()) {
    const float corr = std::exp(m - m_new);
    l *= corr;
    scale_row(corr, acc, d);
  }
  m = m_new;
  l += exp_shifted(s, n, m_new);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) axpy4(s + j, vrow + j, acc, d);
  for (; j < n; ++j) axpy(s[j], vrow[j], acc, d);
}
// One stored head row as f32: in place for f32, else converted into buf.
inline const float* kv_row_f32(KvType type, const std::byte* src, int64_t d, float* buf) {
  if (type == KvType::f32) return reinterpret_cast<const float*>(src);
  if (type == KvType::f16) {
    to_float(reinterpret_cast<const f16*>(src), buf, static_cast<size_t>(d));
    return buf;
  }
  scalar::load_kv_row(type, src, d, buf);
  return buf;
}
inline AttentionAlgo resolve(AttentionAlgo a, int64_t n_q, int64_t n_keys) {
  if (a == AttentionAlgo::decode) return n_q == 1 ? a : AttentionAlgo::flash;
  if (a != AttentionAlgo::automatic) return a;
  if (n_q == 1) return AttentionAlgo::decode;
  return static_cast<size_t>(n_q) * static_cast<size_t>(n_keys) <= kNaiveMaxScores ? AttentionAlgo::naive
                                                                                    : AttentionAlgo::flash;
}
/// Decode: key ranges per KV head, so that there are two work items per thread
/// where the keys allow, each of at least kDecodeMinKeys (below that a split
/// costs more in merging than it gains in balance).
inline constexpr int64_t kDecodeMinKeys = 256;
inline int64_t decode_splits(int64_t n_kv_heads, int64_t n_keys, int threads) {
  const int64_t want = (2 * std::max(1, threads) + n_kv_heads - 1) / std::max<int64_t>(1, n_kv_heads);
  return std::clamp<int64_t>(std::min(want, n_keys / kDecodeMinKeys), 1, std::max<int64_t>(1, want));
}
// Threads that take a slice of scratch: naive has one work item per head, and
// parallel_for hands item chunks to threads 0.. in order, so threads beyond
// n_heads never run and need no n_q n_keys slice.
inline size_t scratch_slices(AttentionAlgo resolved, int64_t n_heads, int threads) {
  const int64_t t = std::max(1, threads);
  return static_cast<size_t>(resolved == AttentionAlgo::naive ? std::clamp<int64_t>(n_heads, 1, t) : t);
}
}  // namespace detail

/// Scratch floats attention() needs for n_q queries with n_heads heads over kv
/// with `threads` threads.  naive: min(threads, n_heads) (n_q n_keys + n_q +
/// 2 head_dim); flash: threads (R (kKeyTile + head_dim + 2) + 2 kKeyTile
/// head_dim) with R = min(n_q, kQueryTile) n_heads / n_kv_heads rows per item.
/// decode: threads (G kKeyTile + 2 kKeyTile head_dim) for scores and converted
/// K/V tiles, plus n_kv_heads S G (head_dim + 2) partial results, with
/// G = n_heads / n_kv_heads and S = decode_splits(...) <= 2 threads: flat in n_keys.
inline size_t attention_scratch_floats(int64_t n_q, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                       int64_t n_keys, AttentionAlgo algo, int threads) {
  const AttentionAlgo a = detail::resolve(algo, n_q, n_keys);
  const size_t t = detail::scratch_slices(a, n_heads, threads);
  if (a == AttentionAlgo::decode) {
    const int64_t G = n_heads / std::max<int64_t>(1, n_kv_heads), S = detail::decode_splits(n_kv_heads, n_keys, threads);
    return t * static_cast<size_t>(G * kKeyTile + 2 * kKeyTile * head_dim) +
           static_cast<size_t>(n_kv_heads * S * G * (head_dim + 2));
  }
  if (a == AttentionAlgo::naive) return t * static_cast<size_t>(n_q * n_keys + n_q + 2 * head_dim);
  const int64_t rows = std::min(n_q, kQueryTile) * (n_heads / std::max<int64_t>(1, n_kv_heads));
  return t * static_cast<size_t>(rows * (kKeyTile + head_dim + 2) + 2 * kKeyTile * head_dim);
}

namespace detail {

inline void attention_naive(TensorView<const float, 3> q, const KvSource& kv, const AttentionParams& p,
                            TensorView<float, 3> out, std::span<float> scratch, size_t per_thread) {
  const int64_t n_q = q.dim(0), n_heads = q.dim(1), d = q.dim(2), group = n_heads / kv.n_kv_heads;
  const int64_t n_keys = kv.n_keys();
  const float ninf = -std::numeric_limits<float>::infinity(), scale = p.scale_for(d);
  parallel_for(n_heads, 1, [&](int64_t h0, int64_t h1) {
    float* S = scratch.data() + static_cast<size_t>(omp_get_thread_num()) * per_thread;
    float* inv = S + n_q * n_keys;
    float* buf = inv + n_q;
    for (int64_t h = h0; h < h1; ++h) {
      const int64_t g = h / group;
      int64_t col = 0;  // S column of the segment's first key
      for (const KvSegment& seg : kv.segments) {
        for (int64_t j = 0; j < seg.n; ++j) {
          const float* kr = kv_row_f32(kv.type, kv.k_row(seg, j, g), d, buf);
          for (int64_t t = 0; t < n_q; ++t)
            S[t * n_keys + col + j] =
                p.mask.visible(p.q_pos0 + t, seg.pos0 + j) ? dot(&q(t, h, 0), kr, d) * scale : ninf;
        }
        col += seg.n;
      }
      for (int64_t t = 0; t < n_q; ++t) {
        float* row = S + t * n_keys;
        const float mx = max_of(row, n_keys);
        if (mx == ninf) {  // sees no key
          std::fill(row, row + n_keys, 0.f);
          inv[t] = 0.f;
        } else {
          inv[t] = 1.f / exp_shifted(row, n_keys, mx);
        }
        std::fill(&out(t, h, 0), &out(t, h, 0) + d, 0.f);
      }
      col = 0;
      for (const KvSegment& seg : kv.segments) {
        for (int64_t j = 0; j < seg.n; ++j) {
          const float* vr = kv_row_f32(kv.type, kv.v_row(seg, j, g), d, buf + d);
          for (int64_t t = 0; t < n_q; ++t) {
            const float w = S[t * n_keys + col + j];
            if (w != 0.f) axpy(w * inv[t], vr, &out(t, h, 0), d);
          }
        }
        col += seg.n;
      }
    }
  });
}

inline void attention_flash(TensorView<const float, 3> q, const KvSource& kv, const AttentionParams& p,
                            TensorView<float, 3> out, std::span<float> scratch, size_t per_thread) {
  const int64_t n_q = q.dim(0), n_heads = q.dim(1), d = q.dim(2), n_kv = kv.n_kv_heads, group = n_heads / n_kv;
  const int64_t q_tile = std::min(n_q, kQueryTile), n_qt = (n_q + q_tile - 1) / q_tile;
  // Split a KV head's query heads over items only when there would be too few items to share.
  const int threads = num_threads();
  int64_t split = 1;
  while (n_qt * n_kv * split < 2 * threads && split < group) {
    ++split;
    while (group % split) ++split;
  }
  const int64_t hp = group / split, n_items = n_qt * n_kv * split;
  const float ninf = -std::numeric_limits<float>::infinity(), scale = p.scale_for(d);

  parallel_for(n_items, 1, [&](int64_t i0, int64_t i1) {
    const int64_t R = q_tile * hp;
    float* S = scratch.data() + static_cast<size_t>(omp_get_thread_num()) * per_thread;
    float* acc = S + R * kKeyTile;
    float* m = acc + R * d;
    float* l = m + R;
    float* kt = l + R;
    float* vt = kt + kKeyTile * d;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t qt = item / (n_kv * split), rest = item % (n_kv * split);
      const int64_t g = rest / split, h0 = g * group + (rest % split) * hp;
      const int64_t t0 = qt * q_tile, nt = std::min(q_tile, n_q - t0), rows = nt * hp;
      std::fill(acc, acc + rows * d, 0.f);
      std::fill(m, m + rows, ninf);
      std::fill(l, l + rows, 0.f);
      // Keys any query of the tile may see: masks are monotone in the query position.
      const int64_t vis_lo = p.mask.lo(p.q_pos0 + t0), vis_hi = p.mask.hi(p.q_pos0 + t0 + nt - 1);
      for (const KvSegment& seg : kv.segments) {
        for (int64_t j0 = 0; j0 < seg.n; j0 += kKeyTile) {
          const int64_t nk = std::min(kKeyTile, seg.n - j0), kp0 = seg.pos0 + j0;
          if (kp0 + nk <= vis_lo || kp0 >= vis_hi) continue;
          // K/V rows of the tile as f32: in place, or converted once for every row of the item.
          const float* krow[kKeyTile];
          const float* vrow[kKeyTile];
          for (int64_t j = 0; j < nk; ++j) {
            krow[j] = kv_row_f32(kv.type, kv.k_row(seg, j0 + j, g), d, kt + j * d);
            vrow[j] = kv_row_f32(kv.type, kv.v_row(seg, j0 + j, g), d, vt + j * d);
          }
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t t = t0 + r / hp, h = h0 + r % hp, qp = p.q_pos0 + t;
            const int64_t lo = p.mask.lo(qp), hi = p.mask.hi(qp);
            if (kp0 + nk <= lo || kp0 >= hi) continue;
            float* s = S + r * kKeyTile;
            const float* qr = &q(t, h, 0);
            // (compared before subtracting: lo and hi may be the int64 extremes)
            const int64_t ja = lo > kp0 ? lo - kp0 : 0, jb = hi < kp0 + nk ? hi - kp0 : nk;
            for (int64_t j = ja; j < jb; ++j) s[j] = dot(qr, krow[j], d) * scale;
            online_softmax_step(s + ja, jb - ja, vrow + ja, d, m[r], l[r], acc + r * d);
          }
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = t0 + r / hp, h = h0 + r % hp;
        const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
        float* o = &out(t, h, 0);
        const float* a = acc + r * d;
        for (int64_t i = 0; i < d; ++i) o[i] = a[i] * inv;
      }
    }
  });
}
// out[j] = dot(q, k[j]) for kWidth rows k[j]: one multiply-add chain per row and one
// transposing reduction for all of them (instead of a horizontal add per row).
inline fbatch dots(const float* q, const float* const* k, int64_t d) {
  fbatch acc[kWidth];
  for (size_t j = 0; j < kWidth; ++j) acc[j] = fbatch(0.f);
  for (int64_t i = 0; i < d; i += static_cast<int64_t>(kWidth)) {
    const fbatch qi = load(q + i);
    for (size_t j = 0; j < kWidth; ++j) acc[j] = xsimd::fma(qi, load(k[j] + i), acc[j]);
  }
#if XSIMD_VERSION_MAJOR == 8 && defined(__AVX512F__)
  // xsimd 8's AVX-512 haddp returns the sums of rows 2, 3 and 4, 5 (and 10, 11
  // and 12, 13) swapped; the permutation is its own inverse.
  const __m512i fix = _mm512_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15);
  return fbatch(_mm512_permutexvar_ps(fix, xsimd::haddp(acc)));
#else
  return xsimd::haddp(acc);
#endif
}

// One query position per job. Item (job, g, c) takes KV head g's query heads
// over key range c of the job's S, tile by tile with flash's online softmax,
// reading each K and V row once for the whole group; its (max, sum,
// unnormalised output) per head go to the shared area, and a second pass
// merges the S partials of each head. A job's S depends only on its own shape
// and `threads`, so a job gets the same bits alone or among others; many jobs
// (the decode rows of a batched step, one per sequence) share two parallel
// regions instead of taking two each.
inline void attention_decode_jobs(std::span<const DecodeJob> jobs, std::span<float> scratch, int threads) {
  if (jobs.empty()) return;
  const int64_t n_heads = jobs[0].q.dim(1), d = jobs[0].q.dim(2), n_kv = jobs[0].kv.n_kv_heads, G = n_heads / n_kv;
  const size_t per_thread = static_cast<size_t>(G * kKeyTile + 2 * kKeyTile * d);
  float* partial = scratch.data() + static_cast<size_t>(threads) * per_thread;  // per job: [n_kv S][G][d + 2]
  const float ninf = -std::numeric_limits<float>::infinity();
  const bool wide = d % static_cast<int64_t>(kWidth) == 0;
  // Items of job j: [first[j], first[j + 1]); its partials start at first[j] G (d + 2).
  // (thread_local storage, named through references so the workers' lambdas see the caller's.)
  thread_local std::vector<int64_t> tl_first, tl_splits;
  std::vector<int64_t>& first = tl_first;
  std::vector<int64_t>& splits = tl_splits;
  first.assign(jobs.size() + 1, 0);
  splits.resize(jobs.size());
  for (size_t j = 0; j < jobs.size(); ++j) {
    splits[j] = decode_splits(n_kv, jobs[j].kv.n_keys(), threads);
    first[j + 1] = first[j] + n_kv * splits[j];
  }

  parallel_for(first.back(), 1, [&](int64_t i0, int64_t i1) {
    float* sc = scratch.data() + static_cast<size_t>(omp_get_thread_num()) * per_thread;  // [G][kKeyTile]
    float* kt = sc + G * kKeyTile;
    float* vt = kt + kKeyTile * d;
    size_t j = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), i0) - first.begin()) - 1;
    for (int64_t item = i0; item < i1; ++item) {
      while (item >= first[j + 1]) ++j;
      const DecodeJob& job = jobs[j];
      const KvSource& kv = job.kv;
      const int64_t S = splits[j], n_keys = kv.n_keys(), local = item - first[j];
      const int64_t g = local / S, c = local % S, a = c * n_keys / S, b = (c + 1) * n_keys / S;
      const float scale = job.p.scale_for(d);
      const int64_t lo = job.p.mask.lo(job.p.q_pos0), hi = job.p.mask.hi(job.p.q_pos0);
      float* res = partial + item * G * (d + 2);  // acc [G][d], then m [G], l [G]
      float *m = res + G * d, *l = m + G;
      std::fill(res, res + G * d, 0.f);
      std::fill(m, m + G, ninf);
      std::fill(l, l + G, 0.f);
      // Tiles gather visible keys across segment edges (a paged cache's blocks
      // are short), as row pointers: f32 rows in place, others converted. So
      // the tiles, and the sums, are the same however the cache is cut.
      const float* krow[kKeyTile];
      const float* vrow[kKeyTile];
      int64_t nk = 0;
      auto flush = [&] {
        for (int64_t r = 0; r < G; ++r) {
          const float* qr = &job.q(0, g * G + r, 0);
          float* s = sc + r * kKeyTile;
          int64_t t = 0;
          if (wide)
            for (; t + static_cast<int64_t>(kWidth) <= nk; t += kWidth)
              (dots(qr, krow + t, d) * fbatch(scale)).store_unaligned(s + t);
          for (; t < nk; ++t) s[t] = dot(qr, krow[t], d) * scale;
          online_softmax_step(s, nk, vrow, d, m[r], l[r], res + r * d);
        }
        nk = 0;
      };
      int64_t col = 0;  // logical index of the segment's first key
      for (const KvSegment& seg : kv.segments) {
        // this item's keys of the segment, then the visible ones (positions in [lo, hi))
        int64_t ja = std::max<int64_t>(0, a - col), jb = std::min<int64_t>(seg.n, b - col);
        col += seg.n;
        if (lo > seg.pos0) ja = std::max(ja, std::min(seg.n, lo - seg.pos0));
        if (hi < seg.pos0 + seg.n) jb = std::min(jb, std::max<int64_t>(0, hi - seg.pos0));
        for (int64_t k = ja; k < jb; ++k) {
          krow[nk] = kv_row_f32(kv.type, kv.k_row(seg, k, g), d, kt + nk * d);
          vrow[nk] = kv_row_f32(kv.type, kv.v_row(seg, k, g), d, vt + nk * d);
          if (++nk == kKeyTile) flush();
        }
      }
      if (nk > 0) flush();
    }
  });
  // out_h = sum_c e^(m_c - M) acc_c / sum_c e^(m_c - M) l_c, M = max_c m_c.
  parallel_for(static_cast<int64_t>(jobs.size()) * n_heads, 1, [&](int64_t h0, int64_t h1) {
    for (int64_t jh = h0; jh < h1; ++jh) {
      const auto j = static_cast<size_t>(jh / n_heads);
      const int64_t h = jh % n_heads, g = h / G, r = h % G, S = splits[j];
      const float* base = partial + first[j] * G * (d + 2);
      float M = ninf;
      for (int64_t c = 0; c < S; ++c) M = std::max(M, base[(g * S + c) * G * (d + 2) + G * d + r]);
      float* o = &jobs[j].out(0, h, 0);
      std::fill(o, o + d, 0.f);
      if (M == ninf) continue;  // sees no key
      float L = 0.f;
      for (int64_t c = 0; c < S; ++c) {
        const float* res = base + (g * S + c) * G * (d + 2);
        const float mc = res[G * d + r];
        if (mc == ninf) continue;
        const float w = std::exp(mc - M);
        L += w * res[G * d + G + r];
        axpy(w, res + r * d, o, d);
      }
      scale_row(1.f / L, o, d);
    }
  });
}

inline void attention_decode(TensorView<const float, 3> q, const KvSource& kv, const AttentionParams& p,
                             TensorView<float, 3> out, std::span<float> scratch, int threads) {
  const DecodeJob job{q, kv, p, out};
  attention_decode_jobs(std::span(&job, 1), scratch, threads);
}
}  // namespace detail

/// Scratch floats attention_decode_batch() needs for `jobs` with `threads` threads.
inline size_t attention_decode_batch_scratch_floats(std::span<const DecodeJob> jobs, int threads) {
  if (jobs.empty()) return 0;
  const int64_t n_heads = jobs[0].q.dim(1), d = jobs[0].q.dim(2), n_kv = jobs[0].kv.n_kv_heads, G = n_heads / n_kv;
  size_t partials = 0;
  for (const DecodeJob& j : jobs)
    partials += static_cast<size_t>(n_kv * detail::decode_splits(n_kv, j.kv.n_keys(), threads) * G * (d + 2));
  return static_cast<size_t>(std::max(1, threads)) * static_cast<size_t>(G * kKeyTile + 2 * kKeyTile * d) + partials;
}

/// Many single-row decode attentions at once (one per sequence of a batched
/// step): each job's out gets exactly what attention() gives it alone under
/// AttentionAlgo::decode, in two parallel regions for all jobs.  Every job has
/// one query row and the same head shape.  scratch:
/// attention_decode_batch_scratch_floats(); Error when smaller.
inline void attention_decode_batch(std::span<const DecodeJob> jobs, std::span<float> scratch) {
  if (jobs.empty()) return;
  tessera::detail::check_decode_jobs(jobs);
  const int threads = num_threads();
  const size_t need = attention_decode_batch_scratch_floats(jobs, threads);
  check(scratch.size() >= need, "attention_decode_batch: scratch of ", scratch.size(), " floats, need ", need);
  detail::attention_decode_jobs(jobs, scratch, threads);
}

/// Same contract as scalar::attention. scratch: attention_scratch_floats(...)
/// floats for this call's shapes and num_threads(); Error when smaller, so the
/// caller decides when memory is allocated (once, at model load).
inline void attention(TensorView<const float, 3> q, const KvSource& kv, const AttentionParams& p,
                      TensorView<float, 3> out, std::span<float> scratch) {
  tessera::detail::check_attention(q, kv, p, out);
  const int64_t n_keys = kv.n_keys();
  const AttentionAlgo algo = detail::resolve(p.algo, q.dim(0), n_keys);
  const int threads = num_threads();
  const size_t need = attention_scratch_floats(q.dim(0), q.dim(1), kv.n_kv_heads, q.dim(2), n_keys, algo, threads);
  check(scratch.size() >= need, "attention: scratch of ", scratch.size(), " floats, need ", need);
  const size_t per_thread = need / detail::scratch_slices(algo, q.dim(1), threads);
  if (algo == AttentionAlgo::decode)
    detail::attention_decode(q, kv, p, out, scratch, threads);
  else if (algo == AttentionAlgo::naive)
    detail::attention_naive(q, kv, p, out, scratch, per_thread);
  else
    detail::attention_flash(q, kv, p, out, scratch, per_thread);
}

}  // namespace tessera::backend::simd

TESSERA_SIMD_WARNINGS_ON
