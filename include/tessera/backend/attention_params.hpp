/// \file
/// The policies of attention, shared by every backend: where the keys come from
/// (KvSource: contiguous rows or the blocks of a paged cache, in f32, f16 or
/// q8_0), which keys a query may see (AttentionMask), and which algorithm runs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "tessera/core/error.hpp"
#include "tessera/core/quant_blocks.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera {

/// Element type of stored keys and values.
enum class KvType : uint8_t { f32, f16, q8_0 };

/// Printable name of t ("f32", "f16", "q8_0"; "?" for an invalid value).
inline const char* kv_type_name(KvType t) {
  switch (t) {
    case KvType::f32: return "f32";
    case KvType::f16: return "f16";
    case KvType::q8_0: return "q8_0";
  }
  return "?";
}

/// Bytes of n values stored as t (n a multiple of 32 for q8_0).
inline size_t kv_bytes(KvType t, int64_t n) {
  switch (t) {
    case KvType::f32: return static_cast<size_t>(n) * 4;
    case KvType::f16: return static_cast<size_t>(n) * 2;
    case KvType::q8_0: return static_cast<size_t>(n / QK8_0) * sizeof(block_q8_0);
  }
  return 0;
}

/// A run of keys and values at consecutive positions [pos0, pos0 + n). Row j
/// (position pos0 + j) starts at byte j * row_bytes of k and of v; within a row,
/// KV head g starts at byte g * kv_bytes(type, head_dim).
struct KvSegment {
  const std::byte* k = nullptr;  ///< first key row (position pos0)
  const std::byte* v = nullptr;  ///< first value row (position pos0)
  ///@{
  /// First position and number of rows: the segment holds [pos0, pos0 + n).
  int64_t pos0 = 0, n = 0;
  ///@}
  size_t row_bytes = 0;  ///< stride between consecutive rows, in bytes (at least n_kv_heads * KvSource::head_bytes())
};

/// The keys and values one attention call reads: segments in any order (softmax
/// does not care), each position present at most once.
struct KvSource {
  KvType type = KvType::f32;  ///< element type of every segment's keys and values
  ///@{
  /// KV heads per row (query heads are a multiple of it, GQA) and values per head.
  int64_t n_kv_heads = 0, head_dim = 0;
  ///@}
  std::span<const KvSegment> segments;  ///< the runs of keys; not owned

  /// Bytes of one head's key (or value) within a row.
  size_t head_bytes() const { return kv_bytes(type, head_dim); }
  /// Total number of keys over all segments.
  int64_t n_keys() const {
    int64_t n = 0;
    for (const auto& s : segments) n += s.n;
    return n;
  }
  /// Start of key row j of segment s, head g.
  const std::byte* k_row(const KvSegment& s, int64_t j, int64_t g) const {
    return s.k + static_cast<size_t>(j) * s.row_bytes + static_cast<size_t>(g) * head_bytes();
  }
  /// Start of value row j of segment s, head g.
  const std::byte* v_row(const KvSegment& s, int64_t j, int64_t g) const {
    return s.v + static_cast<size_t>(j) * s.row_bytes + static_cast<size_t>(g) * head_bytes();
  }
};

/// Which key positions a query at position p may attend to: [lo(p), hi(p)).
///   causal        keys at positions <= p (decoder self-attention)
///   sliding(W)    keys in (p - W, p]     (the last W positions, p included)
///   none          every key             (encoders, cross-attention)
/// key_limit additionally hides keys at positions >= key_limit: padding of a
/// sequence shorter than the batch's key length.
struct AttentionMask {
  /// Kind of mask: every key, causal, or a sliding window of the last `window` positions.
  enum class Kind : uint8_t { none, causal, sliding };
  Kind kind = Kind::causal;  ///< which positions are visible
  int64_t window = 0;  ///< sliding: window length W in positions (> 0); unused otherwise
  int64_t key_limit = std::numeric_limits<int64_t>::max();  ///< keys at positions >= this are hidden (padding)

  /// Decoder self-attention: keys at positions <= p.
  static AttentionMask causal() { return {Kind::causal, 0}; }
  /// The last w positions, p included; throws Error unless w > 0.
  static AttentionMask sliding(int64_t w) {
    check(w > 0, "sliding window must be positive, got ", w);
    return {Kind::sliding, w};
  }
  /// Every key visible.
  static AttentionMask none() { return {Kind::none, 0}; }
  /// No mask except keys at positions >= n_valid (padding).
  static AttentionMask padding(int64_t n_valid) { return {Kind::none, 0, n_valid}; }

  /// First visible key position for a query at p (INT64_MIN when unbounded).
  int64_t lo(int64_t p) const {
    return kind == Kind::sliding ? p - window + 1 : std::numeric_limits<int64_t>::min();
  }
  /// One past the last visible key position for a query at p (capped by key_limit).
  int64_t hi(int64_t p) const {
    return std::min(kind == Kind::none ? std::numeric_limits<int64_t>::max() : p + 1, key_limit);
  }
  /// Whether a query at q_pos may attend to the key at k_pos.
  bool visible(int64_t q_pos, int64_t k_pos) const { return k_pos >= lo(q_pos) && k_pos < hi(q_pos); }
};

/// naive materialises the [n_queries, n_keys] score matrix per head (the
/// reference; scratch O(n_q n_k)); flash tiles over keys with an online softmax
/// (scratch O(tile)); decode is flash for one query position, split over
/// (KV head, key range) work items whose partial softmaxes are merged after
/// (flash-decoding; a query length above 1 runs flash); automatic picks decode
/// for one query position, else naive while its scratch stays small, else flash.
enum class AttentionAlgo : uint8_t { automatic, naive, flash, decode };

/// scale multiplies q.k; 0 (the default) means 1 / sqrt(head_dim), since a
/// literal zero scale would make every softmax uniform without any error.
struct AttentionParams {
  float scale = 0.f;  ///< 0: 1 / sqrt(head_dim)
  AttentionMask mask{};  ///< which keys each query sees (causal by default)
  int64_t q_pos0 = 0;  ///< position of query row t is q_pos0 + t
  AttentionAlgo algo = AttentionAlgo::automatic;  ///< algorithm to run; see AttentionAlgo
  /// Under a causal or sliding mask, keys past the last query row are seen by no
  /// query: almost always a q_pos0 left at 0 over a filled cache, so an Error.
  /// Set this where it is meant (queries split into chunks over the full K/V).
  bool allow_unseen_keys = false;

  /// The scale a call with this head_dim uses.
  float scale_for(int64_t head_dim) const {
    return scale != 0.f ? scale : 1.f / std::sqrt(static_cast<float>(head_dim));
  }
};

/// One single-row attention of a batch of them (the decode rows of a batched
/// step, one per sequence): q and out [1, n_heads, head_dim], over kv with p.
struct DecodeJob {
  TensorView<const float, 3> q;  ///< [1, n_heads, head_dim]
  KvSource kv;                   ///< the sequence's keys and values
  AttentionParams p;             ///< its mask and position (q_pos0)
  TensorView<float, 3> out;      ///< [1, n_heads, head_dim]
};

namespace detail {
/// Shape checks every backend's attention makes. q, out [n_q, n_heads, head_dim].
template <class Q, class O>
void check_attention(const Q& q, const KvSource& kv, const AttentionParams& p, const O& out) {
  TESSERA_CHECK(out.shape() == q.shape(), "attention: q ", shape_str(q.shape()), " but out ", shape_str(out.shape()));
  check(kv.head_dim == q.dim(2), "attention: query head_dim ", q.dim(2), " but key head_dim ", kv.head_dim);
  check(kv.n_kv_heads > 0 && q.dim(1) % kv.n_kv_heads == 0, "attention: ", q.dim(1),
        " query heads are not a multiple of ", kv.n_kv_heads, " KV heads");
  check(kv.type != KvType::q8_0 || kv.head_dim % QK8_0 == 0, "attention: q8_0 keys need head_dim % 32 == 0, got ",
        kv.head_dim);
  check(q.stride(2) == 1 && out.stride(2) == 1, "attention: head rows of q and out must be packed");
  int64_t last_key = std::numeric_limits<int64_t>::min();
  for (const auto& s : kv.segments) {
    check(s.n >= 0 && (s.n == 0 || (s.k && s.v && s.row_bytes >= kv.head_bytes() * static_cast<size_t>(kv.n_kv_heads))),
          "attention: malformed KV segment at position ", s.pos0);
    if (s.n > 0) last_key = std::max(last_key, s.pos0 + s.n - 1);
  }
  // See AttentionParams::allow_unseen_keys; keys at or past key_limit are padding.
  const int64_t last_query = p.q_pos0 + q.dim(0) - 1;
  check(p.allow_unseen_keys || p.mask.kind == AttentionMask::Kind::none || q.dim(0) == 0 || last_key <= last_query ||
            last_key >= p.mask.key_limit,
        "attention: keys reach position ", last_key, " but the last query row is at position ", last_query,
        " (q_pos0 ", p.q_pos0, " + ", q.dim(0), " rows), so the mask hides them from every query; set "
        "AttentionParams::q_pos0 to the cache's size before this append, or call nn::attention(q, cache, layer, ...) "
        "(allow_unseen_keys if this is meant)");
}

/// Checks of a batch of decode jobs: each a valid attention of one query row,
/// all of the first job's head shape.
inline void check_decode_jobs(std::span<const DecodeJob> jobs) {
  for (const DecodeJob& j : jobs) {
    check_attention(j.q, j.kv, j.p, j.out);
    TESSERA_CHECK(j.q.dim(0) == 1 && j.q.dim(1) == jobs[0].q.dim(1) && j.q.dim(2) == jobs[0].q.dim(2) &&
                      j.kv.n_kv_heads == jobs[0].kv.n_kv_heads,
                  "attention_decode_batch: every job needs one query row of the first job's head shape, got q ",
                  shape_str(j.q.shape()), " with ", j.kv.n_kv_heads, " KV heads");
  }
}
}  // namespace detail

}  // namespace tessera
