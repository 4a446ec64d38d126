/// \file
/// Caches that keep each layer's K and V as one run of rows:
///   StaticKvCache   preallocated to its maximum length; appends never allocate.
///   GrowingKvCache  starts small and doubles its capacity when full, copying
///                   the rows (amortised O(1) per appended position); memory
///                   follows the conversation instead of the worst case.
#pragma once

#include <algorithm>

#include "tessera/kv/kv_cache.hpp"

namespace tessera::kv {

/// Each layer's K and V as one run of `capacity()` rows, laid out
/// [layer][K, V][capacity][row]; attention reads one segment per layer. With
/// set_growable() a full cache doubles its capacity (up to max_positions())
/// instead of failing. Base of StaticKvCache and GrowingKvCache.
class ContiguousKvCache : public KvCache {
 public:
  /// Holds up to max_positions; allocates `capacity` positions now (<= max).
  ContiguousKvCache(const KvLayout& layout, int64_t max_positions, int64_t capacity)
      : KvCache(layout), max_(max_positions) {
    check(max_positions > 0 && capacity > 0 && capacity <= max_positions, "KV cache: capacity ", capacity,
          " of at most ", max_positions, " positions");
    reallocate(capacity);
  }
  /// A deep copy of the rows (what fork() returns).
  ContiguousKvCache(const ContiguousKvCache& o) : KvCache(o), max_(o.max_), growable_(o.growable_) {
    reallocate(o.cap_);
    if (cap_) std::memcpy(buf_.data(), o.buf_.data(), buf_.size());
  }

  int64_t max_positions() const override { return max_; }
  int64_t capacity() const { return cap_; }  ///< Positions allocated now (<= max_positions()).
  std::string describe() const override {
    return std::string(growable_ ? "growing" : "static") + " (" + kv_type_name(layout_.type) + ", " +
           std::to_string(cap_) + " of " + std::to_string(max_) + " positions allocated)";
  }
  std::unique_ptr<KvCache> fork() const override { return std::make_unique<ContiguousKvCache>(*this); }
  KvMemory memory() const override {
    return {static_cast<size_t>(n_) * layout_.bytes_per_token(), static_cast<size_t>(cap_) * layout_.bytes_per_token()};
  }
  size_t max_segments() const override { return 1; }

 protected:
  void set_growable() { growable_ = true; }  ///< Lets prepare() grow the buffer (copying the rows) rather than fail.
  void prepare(int64_t n) override {
    if (n_ + n <= cap_) return;
    check(growable_, "KV cache: ", n_, " + ", n, " positions exceed the static capacity ", cap_);
    int64_t cap = cap_;
    while (cap < n_ + n) cap = std::min(max_, cap * 2);
    ContiguousKvCache bigger(layout_, max_, cap);
    for (int l = 0; l < layout_.n_layers; ++l)
      for (bool v : {false, true})
        if (n_) std::memcpy(bigger.base(l, v), base(l, v), static_cast<size_t>(n_) * layout_.row_bytes());
    buf_ = std::move(bigger.buf_);
    cap_ = cap;
  }
  std::byte* slot(int layer, int64_t pos, bool is_v) override {
    return base(layer, is_v) + static_cast<size_t>(pos) * layout_.row_bytes();
  }
  void segments(int layer, int64_t end, std::vector<KvSegment>& out) const override {
    if (end > 0) out.push_back({base(layer, false), base(layer, true), 0, end, layout_.row_bytes()});
  }

 private:
  // Layout: [layer][K, V][capacity][row]: a layer's rows are one contiguous run.
  std::byte* base(int layer, bool is_v) {
    return buf_.data() + (static_cast<size_t>(layer) * 2 + is_v) * static_cast<size_t>(cap_) * layout_.row_bytes();
  }
  const std::byte* base(int layer, bool is_v) const { return const_cast<ContiguousKvCache*>(this)->base(layer, is_v); }
  void reallocate(int64_t cap) {
    cap_ = cap;
    buf_ = AlignedBuffer(static_cast<size_t>(cap) * layout_.bytes_per_token());
  }

  int64_t max_ = 0, cap_ = 0;
  bool growable_ = false;
  AlignedBuffer buf_;
};

/// Preallocated to max_positions.
class StaticKvCache : public ContiguousKvCache {
 public:
  /// Allocates all max_positions now; an append past them throws Error.
  StaticKvCache(const KvLayout& layout, int64_t max_positions)
      : ContiguousKvCache(layout, max_positions, max_positions) {}
};

/// Starts at `initial` positions (at most max_positions) and doubles when full.
class GrowingKvCache : public ContiguousKvCache {
 public:
  /// Allocates min(initial, max_positions) positions now.
  GrowingKvCache(const KvLayout& layout, int64_t max_positions, int64_t initial = 256)
      : ContiguousKvCache(layout, max_positions, std::min(initial, max_positions)) {
    set_growable();
  }
};

}  // namespace tessera::kv
