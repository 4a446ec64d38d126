/// \file
/// Attention as one block with policies (see backend/attention_params.hpp):
///
///   heads      MHA / GQA / MQA follow from q's n_heads and the source's
///              n_kv_heads; K/V are never copied per query head.
///   mask       causal, sliding(W), none (encoder, cross-attention), padding(n).
///   algorithm  naive (materialises scores) or flash (tiled, online softmax),
///              chosen by length unless the caller picks one.
///   keys from  a contiguous [n_k, n_kv_heads, head_dim] view, or the segments
///              of any kv/ cache (static, ring, paged blocks; f32/f16/q8_0);
///              attention(q, cache, layer, ...) takes the query positions
///              from the cache's open append.
///
/// Also the combined QKV projection's views: one GEMM against [Wq; Wk; Wv]
/// gives [n, (H + 2 Hkv) d] rows whose Q, K and V parts are strided views.
#pragma once

#include <algorithm>
#include <vector>

#include "tessera/backend/backend.hpp"
#include "tessera/backend/scalar/attention.hpp"
#include "tessera/backend/simd/attention.hpp"
#include "tessera/kv/kv_cache.hpp"

namespace tessera::nn {

/// Scratch that attention draws from; sized once (reserve) so calls on the
/// decode path never allocate.
class AttentionWorkspace {
 public:
  AttentionWorkspace() = default;
  /// Grows (never shrinks) to hold the scratch of a call with these shapes.
  void reserve(int64_t n_q, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t n_keys,
               AttentionAlgo algo = AttentionAlgo::automatic, int threads = num_threads()) {
    const size_t need = backend::simd::attention_scratch_floats(n_q, n_heads, n_kv_heads, head_dim, n_keys, algo,
                                                                threads);
    if (need > buf_.size()) buf_.resize(need);
  }
  /// Grows to the most any call with n_q <= n_q_max and n_keys <= n_keys_max may
  /// need under automatic algorithm choice (naive is bounded by its size limit).
  void reserve_bound(int64_t n_q_max, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t n_keys_max,
                     int threads = num_threads()) {
    reserve(n_q_max, n_heads, n_kv_heads, head_dim, n_keys_max, AttentionAlgo::flash, threads);
    reserve(1, n_heads, n_kv_heads, head_dim, n_keys_max, AttentionAlgo::decode, threads);
    const size_t naive = backend::simd::detail::scratch_slices(AttentionAlgo::naive, n_heads, threads) *
                         (std::min(backend::simd::kNaiveMaxScores, static_cast<size_t>(n_q_max * n_keys_max)) +
                          static_cast<size_t>(n_q_max + 2 * head_dim));
    if (naive > buf_.size()) buf_.resize(naive);
  }
  /// Grows (never shrinks) to at least n floats.
  void reserve_floats(size_t n) {
    if (n > buf_.size()) buf_.resize(n);
  }
  std::span<float> span() { return buf_; }  ///< The float scratch, as large as the largest reserve so far.
  size_t bytes() const { return buf_.size() * sizeof(float); }  ///< Size of the float scratch in bytes.
  /// Segment scratch of the row-by-row small-batch path (grows to the source's count).
  std::vector<KvSegment>& segments() { return segs_; }

 private:
  std::vector<float> buf_;
  std::vector<KvSegment> segs_;
};

/// out [n_q, n_heads, head_dim] = attention of q [n_q, n_heads, head_dim] over kv.
/// Grows ws if this call needs more scratch.  O(n_q n_heads n_keys head_dim) time.
/// Under automatic choice, 2..backend::exact_rows() query rows with a causal
/// or sliding mask run as that many decode calls, each over the keys up to its
/// own position: the bits one-token-at-a-time decoding gives (speculative
/// verification relies on it).
inline void attention(TensorView<const float, 3> q, const KvSource& kv, const AttentionParams& p,
                      TensorView<float, 3> out, AttentionWorkspace& ws) {
#if defined(TESSERA_BACKEND_SCALAR)
  (void)ws;
  backend::scalar::attention(q, kv, p, out);
#else
  const int64_t n_q = q.dim(0);
  if (p.algo == AttentionAlgo::automatic && n_q > 1 && n_q <= backend::exact_rows() &&
      p.mask.kind != AttentionMask::Kind::none) {
    tessera::detail::check_attention(q, kv, p, out);
    ws.reserve(1, q.dim(1), kv.n_kv_heads, q.dim(2), kv.n_keys(), AttentionAlgo::decode);
    std::vector<KvSegment>& segs = ws.segments();
    for (int64_t t = 0; t < n_q; ++t) {
      AttentionParams pt = p;
      pt.q_pos0 = p.q_pos0 + t;
      pt.algo = AttentionAlgo::decode;
      segs.clear();  // the keys a decode step at this position would have had: positions <= it
      for (const KvSegment& s : kv.segments)
        if (const int64_t n = std::clamp<int64_t>(pt.q_pos0 + 1 - s.pos0, 0, s.n); n > 0)
          segs.push_back({s.k, s.v, s.pos0, n, s.row_bytes});
      backend::simd::attention(q.narrow(0, t, t + 1), KvSource{kv.type, kv.n_kv_heads, kv.head_dim, segs}, pt,
                               out.narrow(0, t, t + 1), ws.span());
    }
    return;
  }
  ws.reserve(q.dim(0), q.dim(1), kv.n_kv_heads, q.dim(2), kv.n_keys(), p.algo);
  backend::simd::attention(q, kv, p, out, ws.span());
#endif
}

/// p as attention over `cache`'s open append needs it: q_pos0 at the append's
/// first position, and a causal mask narrowed to a sliding cache's window.
/// Error when p asks what the cache cannot give (see attention(q, cache, ...)).
inline AttentionParams params_over_cache(const kv::KvCache& cache, AttentionParams p) {
  check(p.q_pos0 == 0 || p.q_pos0 == cache.size(), "attention over a KV cache: AttentionParams::q_pos0 is ", p.q_pos0,
        " but the appended rows start at position ", cache.size(), " (leave q_pos0 at 0: it is taken from the cache)");
  p.q_pos0 = cache.size();
  if (const int64_t w = cache.window(); w > 0) {
    check(p.mask.kind != AttentionMask::Kind::none, "attention over a sliding KV cache of window ", w,
          ": a mask of kind none would need keys the ring no longer holds");
    check(p.mask.kind != AttentionMask::Kind::sliding || p.mask.window <= w, "attention: sliding window ",
          p.mask.window, " exceeds the KV ring's ", w, " positions");
    if (p.mask.kind == AttentionMask::Kind::causal) {
      const int64_t key_limit = p.mask.key_limit;
      p.mask = AttentionMask::sliding(w);
      p.mask.key_limit = key_limit;
    }
  }
  return p;
}

/// Self-attention of the rows being appended to a cache: q [cache.pending(),
/// n_heads, head_dim] are the queries at positions [cache.size(), + pending())
/// (write() their K/V rows first), reading layer `layer`.  The query positions
/// come from the cache: p.q_pos0 must be 0 (unset) or equal cache.size().  A
/// sliding ring's window applies on top of p.mask: causal becomes sliding(W).
inline void attention(TensorView<const float, 3> q, const kv::KvCache& cache, int layer, AttentionParams p,
                      TensorView<float, 3> out, AttentionWorkspace& ws) {
  check(cache.pending() > 0, "attention over a KV cache: no open append; begin_append(n) (or a kv::Append) and "
        "write() this layer's K/V rows first");
  TESSERA_CHECK(q.dim(0) == cache.pending(), "attention over a KV cache: q ", shape_str(q.shape()), " has ", q.dim(0),
                " rows but the open append has ", cache.pending(), " positions");
  p = params_over_cache(cache, p);
  attention(q, cache.source(layer), p, out, ws);
}

/// Many single-row decode attentions at once, one per sequence of a batched
/// step (see DecodeJob): each out gets exactly what attention() gives that row
/// alone, but all jobs share two parallel regions (SIMD backend) instead of
/// taking two each.  Grows ws as needed.  O(sum of n_keys n_heads head_dim).
inline void attention_decode_batch(std::span<const DecodeJob> jobs, AttentionWorkspace& ws) {
#if defined(TESSERA_BACKEND_SCALAR)
  (void)ws;
  tessera::detail::check_decode_jobs(jobs);
  for (const DecodeJob& j : jobs) backend::scalar::attention(j.q, j.kv, j.p, j.out);
#else
  ws.reserve_floats(backend::simd::attention_decode_batch_scratch_floats(jobs, num_threads()));
  backend::simd::attention_decode_batch(jobs, ws.span());
#endif
}

/// KvSource over contiguous f32 views k, v [n_k, n_kv_heads, head_dim] whose key
/// j sits at position k_pos0 + j.  The segment lives in seg (caller's storage).
inline KvSource contiguous_kv(TensorView<const float, 3> k, TensorView<const float, 3> v, KvSegment& seg,
                              int64_t k_pos0 = 0) {
  TESSERA_CHECK(k.shape() == v.shape(), "attention: k ", shape_str(k.shape()), " but v ", shape_str(v.shape()));
  check(k.stride(2) == 1 && k.stride(1) == k.dim(2) && v.stride(2) == 1 && v.stride(1) == v.dim(2) &&
            (k.stride(0) == v.stride(0) || k.dim(0) <= 1),
        "attention: k and v rows must be [n_kv_heads * head_dim] packed with equal row strides");
  seg = {reinterpret_cast<const std::byte*>(k.data()), reinterpret_cast<const std::byte*>(v.data()), k_pos0, k.dim(0),
         static_cast<size_t>(k.stride(0)) * sizeof(float)};
  return {KvType::f32, k.dim(1), k.dim(2), std::span<const KvSegment>(&seg, 1)};
}

/// Attention over contiguous K/V views (self- or cross-attention).
inline void attention(TensorView<const float, 3> q, TensorView<const float, 3> k, TensorView<const float, 3> v,
                      const AttentionParams& p, TensorView<float, 3> out, AttentionWorkspace& ws) {
  KvSegment seg;
  attention(q, contiguous_kv(k, v, seg), p, out, ws);
}

/// A batch of sequences padded to common lengths: q [B, n_q, H, d], k, v
/// [B, n_k, Hkv, d]; sequence b has key_lens[b] real keys (the rest is padding
/// and masked out).  The mask's kind (causal, sliding, none) applies on top.
inline void attention_padded(TensorView<const float, 4> q, TensorView<const float, 4> k, TensorView<const float, 4> v,
                             std::span<const int64_t> key_lens, AttentionParams p, TensorView<float, 4> out,
                             AttentionWorkspace& ws) {
  check(static_cast<int64_t>(key_lens.size()) == q.dim(0) && k.dim(0) == q.dim(0) && out.dim(0) == q.dim(0),
        "attention_padded: batch of ", q.dim(0), " queries, ", k.dim(0), " keys, ", key_lens.size(), " key lengths");
  for (int64_t b = 0; b < q.dim(0); ++b) {
    check(key_lens[static_cast<size_t>(b)] >= 0 && key_lens[static_cast<size_t>(b)] <= k.dim(1),
          "attention_padded: key length ", key_lens[static_cast<size_t>(b)], " of sequence ", b, " exceeds ", k.dim(1));
    p.mask.key_limit = key_lens[static_cast<size_t>(b)];
    attention(q[b], k[b], v[b], p, out[b], ws);
  }
}

/// Q, K, V views of a combined projection's output qkv [n, (n_heads + 2 n_kv_heads) head_dim]
/// (rows laid out [Q heads | K heads | V heads]).  No copy: the views keep qkv's row stride.
struct QkvViews {
  /// q [n, n_heads, head_dim]; k and v [n, n_kv_heads, head_dim].
  ///@{
  TensorView<float, 3> q, k, v;
  ///@}
};
/// Splits qkv into its QkvViews. Error unless qkv has (n_heads + 2 n_kv_heads) head_dim columns with stride 1.
inline QkvViews split_qkv(TensorView<float, 2> qkv, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
  check(qkv.dim(1) == (n_heads + 2 * n_kv_heads) * head_dim && qkv.stride(1) == 1, "split_qkv: rows of ",
        qkv.dim(1), " values, need (", n_heads, " + 2*", n_kv_heads, ") * ", head_dim);
  const int64_t qd = n_heads * head_dim, kd = n_kv_heads * head_dim;
  auto part = [&](int64_t off, int64_t heads) { return qkv.narrow(1, off, off + heads * head_dim).unflatten_last(heads); };
  return {part(0, n_heads), part(qd, n_kv_heads), part(qd + kd, n_kv_heads)};
}

}  // namespace tessera::nn
