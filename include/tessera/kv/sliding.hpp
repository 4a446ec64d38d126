/// \file
/// A ring buffer of the last positions: attention sees a window of W (the mask
/// sliding(W)); the ring holds W + max_batch positions so that a prefill batch
/// never overwrites keys its own earlier queries still need.  Memory is
/// O(W + batch) for any conversation length; keys keep their absolute RoPE
/// positions, so nothing is re-rotated as old positions fall out.
#pragma once

#include <algorithm>
#include <limits>

#include "tessera/kv/kv_cache.hpp"

namespace tessera::kv {

/// A ring of window + max_batch slots per layer, K and V: attention sees the
/// last `window()` positions; appends never allocate. See the file comment.
class SlidingKvCache : public KvCache {
 public:
  /// window: positions each query sees (itself included); max_batch: most positions per append.
  SlidingKvCache(const KvLayout& layout, int64_t window, int64_t max_batch,
                 int64_t max_positions = std::numeric_limits<int32_t>::max())
      : KvCache(layout), window_(window), batch_(max_batch), ring_(window + max_batch), max_(max_positions) {
    check(window > 0 && max_batch > 0, "sliding KV cache: window ", window, ", batch ", max_batch);
    buf_ = AlignedBuffer(static_cast<size_t>(ring_) * layout_.bytes_per_token());
  }
  /// A deep copy of the ring (what fork() returns).
  SlidingKvCache(const SlidingKvCache& o)
      : KvCache(o), window_(o.window_), batch_(o.batch_), ring_(o.ring_), max_(o.max_), floor_(o.floor_),
        buf_(o.buf_.size()) {
    std::memcpy(buf_.data(), o.buf_.data(), buf_.size());
  }

  int64_t max_positions() const override { return max_; }
  int64_t window() const override { return window_; }
  int64_t max_append() const override { return std::min(batch_, max_ - n_); }
  std::string describe() const override {
    return "sliding ring (" + std::string(kv_type_name(layout_.type)) + ", window " + std::to_string(window_) + ", " +
           std::to_string(ring_) + " slots)";
  }
  std::unique_ptr<KvCache> fork() const override { return std::make_unique<SlidingKvCache>(*this); }
  KvMemory memory() const override {
    return {static_cast<size_t>(std::min(n_, ring_)) * layout_.bytes_per_token(),
            static_cast<size_t>(ring_) * layout_.bytes_per_token()};
  }
  size_t max_segments() const override { return 2; }

 protected:
  void prepare(int64_t) override {}
  std::byte* slot(int layer, int64_t pos, bool is_v) override { return base(layer, is_v) + static_cast<size_t>(pos % ring_) * row(); }
  void segments(int layer, int64_t end, std::vector<KvSegment>& out) const override {
    const int64_t lo = std::max<int64_t>({0, end - ring_, floor_});
    // [lo, end) occupies slots lo % ring .. , wrapping at most once.
    const int64_t first = std::min(end, (lo / ring_ + 1) * ring_);
    auto* self = const_cast<SlidingKvCache*>(this);
    for (int64_t a = lo, b = first; a < end; a = b, b = end)
      out.push_back({self->slot(layer, a, false), self->slot(layer, a, true), a, b - a, row()});
  }
  void shrink(int64_t n) override {
    // Slots of positions below n_ - ring were reused; the window after n needs n - W + 1 onwards.
    const int64_t valid_from = std::max(floor_, n_ - ring_);
    check(std::max<int64_t>(0, n - window_ + 1) >= valid_from, "sliding KV cache: cannot roll back to position ", n,
          ": its window needs positions from ", std::max<int64_t>(0, n - window_ + 1), ", kept only from ", valid_from);
    floor_ = std::min(n, valid_from);
  }

 private:
  size_t row() const { return layout_.row_bytes(); }
  std::byte* base(int layer, bool is_v) {
    return buf_.data() + (static_cast<size_t>(layer) * 2 + is_v) * static_cast<size_t>(ring_) * row();
  }

  int64_t window_ = 0, batch_ = 0, ring_ = 0, max_ = 0;
  int64_t floor_ = 0;  // positions below this were overwritten before a rollback
  AlignedBuffer buf_;
};

}  // namespace tessera::kv
