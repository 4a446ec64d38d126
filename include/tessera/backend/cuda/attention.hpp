/// \file
/// Attention on the GPU: decode attention (one query per sequence, the key
/// range split over blocks and merged: flash-decoding) and flash attention
/// forward for prefill (tensor-core tiles, online softmax). Both read keys and
/// values from a contiguous cache or a paged pool through a block table.
#pragma once

#include <cstdint>
#include <type_traits>

#include "tessera/backend/cuda/buffer.hpp"
#include "tessera/backend/rope_params.hpp"
#include "tessera/core/half.hpp"

namespace tessera::cuda {

/// Element type of cached keys and values.  Decode: f16, q8_0 (head_dim % 32 == 0).
/// Prefill: f16, bf16 (queries and output share the type).
enum class KvElem : uint8_t { f16, bf16, q8_0 };

/// Where the keys and values of a batch of sequences live.  A key row is
/// [n_kv_heads, head_dim] elements (for q8_0: head_dim / 32 blocks per head).
///   contiguous: k, v point at [n_seqs, max_keys, n_kv_heads, head_dim]; sequence
///               b's key j is row b * max_keys + j.
///   paged:      k, v point at a pool [n_pages, page_size, n_kv_heads, head_dim];
///               sequence b's key j is row page_size * block_table[b * max_pages + j / page_size]
///               + j % page_size.  block_table is int32 on the device.
/// Sequence b holds keys at positions 0 .. seq_lens[b]-1 (int32 on the device).
struct DeviceKv {
  KvElem elem = KvElem::f16;  ///< element type of keys and values
  ///@{
  /// KV heads per key row, and elements per head.
  int64_t n_kv_heads = 0, head_dim = 0;
  ///@}
  const void* k = nullptr;  ///< device keys: the contiguous cache or the page pool
  const void* v = nullptr;  ///< device values, laid out as k
  const int32_t* seq_lens = nullptr;  ///< [n_seqs] keys held per sequence (device)
  int64_t max_keys = 0;  ///< contiguous: rows reserved per sequence
  const int32_t* block_table = nullptr;  ///< null: contiguous
  ///@{
  /// Paged: rows per page, and block-table entries per sequence (its row stride).
  int64_t page_size = 0, max_pages = 0;
  ///@}
  /// Every sequence reads sequence 0's keys (decode_attention only): the rows of
  /// one sequence's prefill issued as separate queries, row t with seq_lens[t] = p0 + t + 1.
  bool shared_rows = false;
};

/// The writable rows of one sequence's cache, for kv_store: position p lives in
/// row p (contiguous, p < max_keys) or in row block_table[p / page_size] *
/// page_size + p % page_size of the pool (paged, p < max_keys too).  Row layout
/// as DeviceKv: [n_kv_heads, head_dim] elements, q8_0 as head_dim / 32 blocks per head.
struct DeviceKvRows {
  KvElem elem = KvElem::f16;  ///< element type the rows are stored in
  ///@{
  /// KV heads per row, and elements per head.
  int64_t n_kv_heads = 0, head_dim = 0;
  ///@}
  void* k = nullptr;  ///< device key rows: the sequence's cache or the page pool
  void* v = nullptr;  ///< device value rows, laid out as k
  int64_t max_keys = 0;  ///< positions p < max_keys may be written
  const int32_t* block_table = nullptr;  ///< null: contiguous
  int64_t page_size = 0;  ///< paged: rows per page
};

/// Stores new keys and values: k, v [T, n_kv_heads, head_dim] f32 go to the rows
/// of positions pos[t] (int32 on the device; the device reads them, so a
/// replayed graph may change them), converted to dst.elem: f16 / bf16 rounded
/// to nearest, q8_0 as quantize_row<block_q8_0> does (d = amax / 127 in f16,
/// round to even).  head_dim % 32 == 0.  A position outside [0, max_keys) is not
/// written and sets fault[0] to 1 (the device cannot throw).  O(T n_kv_heads head_dim).
void kv_store(const Stream& s, DeviceView<const float, 3> k, DeviceView<const float, 3> v,
              DeviceView<const int32_t, 1> pos, const DeviceKvRows& dst, DeviceView<int32_t, 1> fault);

/// rope() of q and k and kv_store() of k and v as one kernel (a warp per
/// head of a token): q and k are rotated in place (the same bits as rope()),
/// then k and v go to the cache as kv_store() writes them (the same bytes,
/// the same fault flag).  q [T, n_heads, head_dim], k, v [T, n_kv_heads,
/// head_dim], pos [T]; head_dim % 32 == 0 and <= 256, p.n_dims <= head_dim
/// (dimensions past n_dims pass unrotated).  O(T (n_heads + 2 n_kv_heads) head_dim).
void rope_kv_store(const Stream& s, DeviceView<float, 3> q, DeviceView<float, 3> k, DeviceView<const float, 3> v,
                   DeviceView<const int32_t, 1> pos, const RopeParams& p, const DeviceKvRows& dst,
                   DeviceView<int32_t, 1> fault);

/// Which keys a query at position p sees: causal (<= p), sliding window
/// (p - window, p], or none (all the sequence's keys).
struct DeviceMask {
  /// Kind of mask: none (every key of the sequence), causal, or a sliding window.
  enum class Kind : uint8_t { none, causal, sliding };
  Kind kind = Kind::causal;  ///< which keys are visible
  int64_t window = 0;  ///< sliding: window length in positions; unused otherwise
};

/// Scratch of decode_attention for n_seqs sequences, n_heads query heads, head_dim d.
size_t decode_attention_workspace_bytes(int64_t n_seqs, int64_t n_heads, int64_t head_dim);

/// out[b, h] = softmax_j(scale q[b, h] . k[b, j, g]) v[b, j, g], g = h / (n_heads / n_kv_heads),
/// over the keys of sequence b the mask lets its last position (seq_lens[b] - 1)
/// see.  q, out [n_seqs, n_heads, head_dim] f32.  scale 0 means 1 / sqrt(head_dim).
/// Each block reads one KV head's keys once for all the query heads that share
/// it, over one slice of the keys; a second kernel merges the slices' partial
/// softmaxes.  A sequence with no visible key gets zeros.  Bandwidth-bound: O(keys bytes).
void decode_attention(const Stream& s, DeviceView<const float, 3> q, const DeviceKv& kv, DeviceMask mask, float scale,
                      DeviceView<float, 3> out, DeviceView<std::byte, 1> workspace);

/// Flash attention forward.  q, out [n_seqs, n_q, n_heads, head_dim] of T = f16
/// or bf16 (kv.elem the same), head_dim 64, 128 or 256.  Query t of sequence b
/// sits at position q_pos0 + t (chunked prefill: the keys before it are already
/// cached) and sees the keys the mask allows, below seq_lens[b].  Tiles of 64
/// queries x 64 keys in shared memory, mma.sync tensor cores with f32
/// accumulation, online softmax in registers; GQA by n_heads / n_kv_heads.  A
/// query that sees no key gets zeros.  O(n_q keys head_dim) flops.
template <class T>
  requires std::is_same_v<T, f16> || std::is_same_v<T, bf16>
void flash_attention(const Stream& s, DeviceView<const T, 4> q, const DeviceKv& kv, DeviceMask mask, float scale,
                     int64_t q_pos0, DeviceView<T, 4> out);

}  // namespace tessera::cuda
