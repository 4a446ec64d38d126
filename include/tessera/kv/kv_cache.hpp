/// \file
/// The KV-cache interface every cache implements and the llama context uses:
///
///   begin_append(n)    make room for positions [size, size + n) (may allocate:
///                      growing, paged; copy-on-write of shared paged blocks)
///   positions()        those positions, for RoPE
///   write(l, k, v)     store layer l's K/V rows for those positions, converted
///                      to the storage type (f32, f16, q8_0)
///   source(l)          what attention reads for layer l: segments of rows
///                      (nn::attention(q, cache, l, ...) reads it for you)
///   end_append()       the positions become part of the cache
///
/// kv::Append does begin/end for a scope and cancels on an exception:
///
///   kv::Append app(cache, n);
///   nn::rope(q, app.positions(), rope);  nn::rope(k, app.positions(), rope);
///   cache.write(l, k, v);
///   nn::attention(q, cache, l, params, out, ws);   // query positions from the cache
///   app.commit();
///   truncate(n)        forget positions >= n (speculation rollback, new turn)
///   fork()             an independent cache with the same contents (beams,
///                      shared prefixes); paged forks share blocks until written
///   memory()           bytes holding tokens, bytes reserved
///
/// Positions are absolute: a sliding ring keeps the RoPE'd keys of the last W
/// positions, so nothing is re-rotated when old ones fall out.
#pragma once

#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/backend/attention_params.hpp"
#include "tessera/core/half.hpp"
#include "tessera/core/quant/q8.hpp"
#include "tessera/core/storage.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::kv {

/// What one cache stores: n_layers × {K, V} × positions × [n_kv_heads, head_dim].
struct KvLayout {
  int n_layers = 0;  ///< Transformer layers, each with its own K and V.
  ///@{
  /// K/V heads per position (fewer than query heads under GQA) and values per head.
  int64_t n_kv_heads = 0, head_dim = 0;
  ///@}
  KvType type = KvType::f32;  ///< Storage type of the rows (f32, f16 or q8_0).

  int64_t kv_dim() const { return n_kv_heads * head_dim; }  ///< Values in one position's K (or V) row: n_kv_heads * head_dim.
  /// The same layout stored as t.
  KvLayout with_type(KvType t) const {
    KvLayout l = *this;
    l.type = t;
    return l;
  }
  /// Bytes of one position's K (or V) row in one layer.
  size_t row_bytes() const { return kv_bytes(type, kv_dim()); }
  /// 2 · layers · kv_heads · head_dim · bytes per value.
  size_t bytes_per_token() const { return 2 * static_cast<size_t>(n_layers) * row_bytes(); }
  /// Throws Error unless every size is positive and, for q8_0, head_dim is a multiple of 32.
  void validate() const {
    check(n_layers > 0 && n_kv_heads > 0 && head_dim > 0, "KV layout: ", n_layers, " layers, ", n_kv_heads,
          " heads of ", head_dim, " dims");
    check(type != KvType::q8_0 || head_dim % QK8_0 == 0, "KV type q8_0 needs head_dim % 32 == 0, got ", head_dim);
  }
};

/// Bytes a cache (or a block pool) holds: in use and allocated.
struct KvMemory {
  size_t used = 0;  ///< bytes holding this cache's positions
  size_t reserved = 0;  ///< bytes allocated for it (paged: its blocks; the pool reports its own total)
};

/// Converts an f32 row of n values into storage type t at dst.
inline void store_row(KvType t, const float* src, int64_t n, std::byte* dst) {
  switch (t) {
    case KvType::f32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
    case KvType::f16: {
      auto* h = reinterpret_cast<f16*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = f16(src[i]);
      return;
    }
    case KvType::q8_0:
      quantize_row(std::span(src, static_cast<size_t>(n)),
                   std::span(reinterpret_cast<block_q8_0*>(dst), static_cast<size_t>(n / QK8_0)));
      return;
  }
}

/// Base of every KV cache: the append protocol (begin_append, write, end_append,
/// or a kv::Append scope), source() for attention, truncate and fork. Subclasses
/// decide where rows live through prepare, slot, segments and shrink.
class KvCache {
 public:
  /// An empty cache of this layout. Throws Error for an invalid layout (KvLayout::validate).
  explicit KvCache(const KvLayout& layout) : layout_(layout) { layout_.validate(); }
  virtual ~KvCache() = default;
  /// Copies the bookkeeping (layout, size, open append); subclasses copy their rows to fork().
  KvCache(const KvCache&) = default;
  KvCache& operator=(const KvCache&) = delete;

  const KvLayout& layout() const { return layout_; }  ///< What the cache stores: layers, heads, head_dim, type.
  /// Positions stored; the next append starts here.
  int64_t size() const { return n_; }
  /// Positions appended in the current (unfinished) append.
  int64_t pending() const { return pending_; }
  /// Most positions this cache can ever hold (absolute position bound).
  virtual int64_t max_positions() const = 0;
  /// Attention window the cache imposes (sliding ring), 0 for none.
  virtual int64_t window() const { return 0; }
  /// Largest n one begin_append accepts.
  virtual int64_t max_append() const { return max_positions() - n_; }
  /// One line for logs: the kind, storage type and sizes.
  virtual std::string describe() const = 0;

  /// Makes room for positions [size(), size() + n).  Error when they do not fit.
  void begin_append(int64_t n) {
    check(pending_ == 0, "KV cache: begin_append while an append of ", pending_, " positions is open");
    check(n > 0, "KV cache: append of ", n, " positions");
    check(n_ + n <= max_positions(), "context full: ", n_, " + ", n, " positions exceed the KV cache's ",
          max_positions());
    check(n <= max_append(), "KV cache: append of ", n, " positions exceeds the ", max_append(), " it takes at once");
    prepare(n);
    pending_ = n;
    if (positions_.size() < static_cast<size_t>(n)) positions_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) positions_[static_cast<size_t>(i)] = static_cast<int32_t>(n_ + i);
  }
  /// Positions of the open append, [size(), size() + pending()): what RoPE rotates by.
  std::span<const int32_t> positions() const { return {positions_.data(), static_cast<size_t>(pending_)}; }
  /// Stores layer `layer`'s rows k, v [pending(), kv_dim] (f32) for the open append.
  void write(int layer, TensorView<const float, 2> k, TensorView<const float, 2> v) {
    check(pending_ > 0, "KV cache: write(layer ", layer, ") outside an append; call begin_append(n) (or open a "
          "kv::Append) for the n new positions first");
    check(layer >= 0 && layer < layout_.n_layers, "KV cache: layer ", layer, " of ", layout_.n_layers);
    TESSERA_CHECK(k.dim(0) == pending_ && v.dim(0) == pending_ && k.dim(1) == layout_.kv_dim() && v.dim(1) == k.dim(1) &&
              k.stride(1) == 1 && v.stride(1) == 1,
          "KV cache: write of k ", shape_str(k.shape()), ", v ", shape_str(v.shape()), " for ", pending_,
          " positions of ", layout_.kv_dim(), " values");
    for (int64_t i = 0; i < pending_; ++i) {
      store_row(layout_.type, &k(i, 0), k.dim(1), slot(layer, n_ + i, false));
      store_row(layout_.type, &v(i, 0), v.dim(1), slot(layer, n_ + i, true));
    }
  }
  /// Makes the open append's positions part of the cache: size() grows by pending().
  void end_append() {
    n_ += pending_;
    pending_ = 0;
  }
  /// Abandons the open append (an error mid-forward): the cache keeps what it had.
  void cancel_append() {
    pending_ = 0;
    shrink(n_);
  }
  /// What attention reads for `layer`: every kept position < size() + pending().
  /// segs is the caller's buffer (reserve it once: no allocation per call).
  KvSource source(int layer, std::vector<KvSegment>& segs) const {
    check(layer >= 0 && layer < layout_.n_layers, "KV cache: source of layer ", layer, " of ", layout_.n_layers);
    segs.clear();
    segments(layer, n_ + pending_, segs);
    return {layout_.type, layout_.n_kv_heads, layout_.head_dim, segs};
  }
  /// The same, in a buffer of the cache's own (reserved at construction): valid
  /// until the next source() call on this cache.  Not for concurrent callers.
  KvSource source(int layer) const {
    if (own_segs_.capacity() < max_segments()) own_segs_.reserve(max_segments());
    return source(layer, own_segs_);
  }
  /// Forgets positions >= n (n <= size()).
  void truncate(int64_t n) {
    check(pending_ == 0, "KV cache: truncate during an append");
    check(n >= 0 && n <= n_, "KV cache: truncate(", n, ") with ", n_, " positions stored");
    shrink(n);
    n_ = n;
  }
  /// Forgets every position: truncate(0).
  void reset() { truncate(0); }
  /// An independent cache with the same contents (beams, shared prefixes).
  /// Contiguous and sliding caches copy their rows; paged forks share blocks until one side writes.
  virtual std::unique_ptr<KvCache> fork() const = 0;
  /// Bytes holding this cache's positions, and bytes reserved for it.
  virtual KvMemory memory() const = 0;
  /// Most segments source() returns (to reserve the caller's buffer).
  virtual size_t max_segments() const = 0;

 protected:
  friend class HybridKvCache;  // drives its two parts' protocol from its own

  /// Makes slots for positions [size(), size() + n) writable (allocating, or
  /// copying a shared block). Called by begin_append after its checks; on a
  /// throw the stored positions must stay as they were.
  virtual void prepare(int64_t n) = 0;
  /// Storage of one row (layout().row_bytes() bytes) of position pos in layer `layer`:
  /// its V row if is_v, else its K row. Valid for positions prepare() made room for.
  virtual std::byte* slot(int layer, int64_t pos, bool is_v) = 0;
  /// Appends to out the segments holding layer `layer`'s kept positions below end.
  virtual void segments(int layer, int64_t end, std::vector<KvSegment>& out) const = 0;
  /// Drops storage of positions >= n (truncate, cancel_append); called before size()
  /// changes. May throw Error when the rows n needs are gone (sliding ring). Default: nothing.
  virtual void shrink(int64_t n) { (void)n; }

  KvLayout layout_;  ///< The layout, validated.
  ///@{
  /// Positions stored (size()) and positions of the open append (pending()).
  int64_t n_ = 0, pending_ = 0;
  ///@}

 private:
  std::vector<int32_t> positions_;
  mutable std::vector<KvSegment> own_segs_;
};

/// An append as a scope: begin_append(n) on construction; commit() makes the
/// positions part of the cache; leaving the scope without commit() (an
/// exception mid-forward) cancels, so the cache keeps exactly what it had.
class Append {
 public:
  /// Opens an append of n positions on cache (begin_append; throws as it does).
  Append(KvCache& cache, int64_t n) : cache_(&cache) { cache.begin_append(n); }
  Append(const Append&) = delete;
  Append& operator=(const Append&) = delete;
  ~Append() {
    if (cache_) cache_->cancel_append();
  }
  /// Position of the first new row (the cache's size before the append).
  int64_t pos0() const { return cache_->size(); }
  /// The new positions [pos0, pos0 + n), for RoPE.
  std::span<const int32_t> positions() const { return cache_->positions(); }
  /// Makes the positions part of the cache (end_append). Throws Error when called twice.
  void commit() {
    check(cache_ != nullptr, "kv::Append: commit() twice");
    cache_->end_append();
    cache_ = nullptr;
  }

 private:
  KvCache* cache_;
};

}  // namespace tessera::kv
