/// \file
/// A cache for models whose layers attend differently (Gemma 3: five local
/// layers with a sliding window to one global): the local layers keep only a
/// ring of window + max_batch positions (a SlidingKvCache), the global ones the
/// whole context in a cache of any kind.  Gemma 3 270M at 32k positions holds
/// 3 of its 18 layers in full: about a sixth of the memory of one full cache.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "tessera/kv/kv_cache.hpp"
#include "tessera/kv/sliding.hpp"

namespace tessera::kv {

/// Local layers in a ring, the others in `global` (see the file comment).
/// Attention must mask local layers to their window (sliding(W)) itself:
/// window() is 0 because the global layers see everything.
class HybridKvCache : public KvCache {
 public:
  /// layout: every layer; local[l]: layer l attends over the last `window`
  /// positions (at least one layer local, one not); global: a cache of layout
  /// with the non-local layers only, empty.  max_batch: most positions per append.
  HybridKvCache(const KvLayout& layout, std::vector<bool> local, int64_t window, int64_t max_batch,
                std::unique_ptr<KvCache> global)
      : KvCache(layout), local_(std::move(local)) {
    check(static_cast<int>(local_.size()) == layout.n_layers, "hybrid KV cache: ", local_.size(), " layer kinds for ",
          layout.n_layers, " layers");
    const auto n_local = static_cast<int>(std::count(local_.begin(), local_.end(), true));
    check(n_local > 0 && n_local < layout.n_layers, "hybrid KV cache: needs local and global layers, got ", n_local,
          " local of ", layout.n_layers);
    check(global != nullptr && global->layout().n_layers == layout.n_layers - n_local &&
              global->layout().kv_dim() == layout.kv_dim() && global->layout().type == layout.type &&
              global->size() == 0,
          "hybrid KV cache: the global cache must be empty, of the layout's type and of its ", layout.n_layers - n_local,
          " global layers");
    KvLayout ring = layout;
    ring.n_layers = n_local;
    ring_ = std::make_unique<SlidingKvCache>(ring, window, max_batch, global->max_positions());
    global_ = std::move(global);
    int counts[2] = {0, 0};
    for (bool is_local : local_) index_.push_back(counts[is_local]++);
  }
  /// A deep copy of both parts (what fork() returns; a paged global cache shares its blocks).
  HybridKvCache(const HybridKvCache& o)
      : KvCache(o), local_(o.local_), index_(o.index_),
        ring_(std::make_unique<SlidingKvCache>(*o.ring_)), global_(o.global_->fork()) {}

  int64_t max_positions() const override { return global_->max_positions(); }
  int64_t max_append() const override {
    sync();
    return std::min(ring_->max_append(), global_->max_append());
  }
  std::string describe() const override {
    return "hybrid: " + std::to_string(ring_->layout().n_layers) + " local layers in a " + ring_->describe() + ", " +
           std::to_string(global_->layout().n_layers) + " global layers in a " + global_->describe();
  }
  std::unique_ptr<KvCache> fork() const override {
    sync();
    return std::make_unique<HybridKvCache>(*this);
  }
  KvMemory memory() const override {
    sync();
    const KvMemory a = ring_->memory(), b = global_->memory();
    return {a.used + b.used, a.reserved + b.reserved};
  }
  size_t max_segments() const override { return std::max(ring_->max_segments(), global_->max_segments()); }

 protected:
  void prepare(int64_t n) override {
    sync();
    global_->prepare(n);  // the ring never allocates
  }
  std::byte* slot(int layer, int64_t pos, bool is_v) override {
    return part(layer).slot(index_[static_cast<size_t>(layer)], pos, is_v);
  }
  void segments(int layer, int64_t end, std::vector<KvSegment>& out) const override {
    const_cast<HybridKvCache*>(this)->part(layer).segments(index_[static_cast<size_t>(layer)], end, out);
  }
  void shrink(int64_t n) override {
    sync();
    static_cast<KvCache&>(*ring_).shrink(n);  // first: it throws when the window's rows are gone, and then nothing changed
    global_->shrink(n);
  }

 private:
  // The parts' own counters follow this cache's (their append protocol runs here).
  void sync() const {
    for (KvCache* c : {static_cast<KvCache*>(ring_.get()), global_.get()}) c->n_ = n_, c->pending_ = pending_;
  }
  KvCache& part(int layer) { return local_[static_cast<size_t>(layer)] ? *ring_ : *global_; }

  std::vector<bool> local_;
  std::vector<int> index_;  // layer -> its index within its part
  std::unique_ptr<SlidingKvCache> ring_;
  std::unique_ptr<KvCache> global_;
};

}  // namespace tessera::kv
