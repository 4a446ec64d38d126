/// \file
/// Embeddings: a model's last hidden states over whole sequences (a decoder's
/// after its final norm, as its output head reads them), pooled
/// (mean, first token, last token, or none: one vector per token) and
/// L2-normalised.  BERT attends over the whole sequence; a decoder used as an
/// embedder keeps its causal mask.  A batch runs as one forward pass over
/// padded rows: each sequence is padded to the longest and its padding is
/// hidden from attention (AttentionMask::key_limit), so a sequence's vector
/// does not depend on what it was batched with.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <span>
#include <vector>

#include "tessera/models/llama_forward.hpp"
#include "tessera/nn/attention.hpp"

namespace tessera::models {

/// What embed() returns.
struct EmbedOptions {
  Pooling pooling = Pooling::mean;  ///< how a sequence's token vectors become one (none: all of them)
  bool normalize = true;  ///< scale every returned vector to unit Euclidean length
};

/// Runs a model over sequences and pools the hidden states; buffers for up to
/// max_rows padded tokens are allocated at construction.
class Encoder {
 public:
  /// Error when max_rows < 1.
  Encoder(std::shared_ptr<const LlamaModel> model, int64_t max_rows = 512)
      : model_(std::move(model)), max_rows_(max_rows) {
    check(max_rows_ >= 1, "Encoder: max_rows ", max_rows_, " < 1");
    a_ = LlamaActivations(model_->config(), max_rows_);
    pos_.resize(static_cast<size_t>(max_rows_));
    ids_.resize(static_cast<size_t>(max_rows_));
  }

  const LlamaModel& model() const { return *model_; }  ///< The model.

  /// Vectors of seqs (token ids, e.g. [CLS] ... [SEP]): [B, n_embd] when pooled, one row per
  /// sequence; [sum of lengths, n_embd] for Pooling::none, the sequences' tokens in order.
  /// Error for an empty sequence, or B times the longest length over max_rows.
  /// O(layers * B * L * (n_embd * n_ff + L * n_embd)) for the longest length L.
  Tensor<float, 2> embed(std::span<const std::vector<int32_t>> seqs, const EmbedOptions& o = {}) {
    const LlamaConfig& c = model_->config();
    const auto B = static_cast<int64_t>(seqs.size());
    check(B > 0, "Encoder: no sequences");
    int64_t L = 0, total = 0;
    for (const auto& s : seqs) {
      check(!s.empty(), "Encoder: an empty sequence");
      L = std::max<int64_t>(L, static_cast<int64_t>(s.size()));
      total += static_cast<int64_t>(s.size());
    }
    check(B * L <= max_rows_, "Encoder: ", B, " sequences padded to ", L, " tokens are ", B * L,
          " rows, more than the ", max_rows_, " it was built for");
    const int32_t pad = 0;  // any valid id: padding rows are computed, never attended to, never pooled
    std::vector<int64_t> lens(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      const auto& s = seqs[static_cast<size_t>(b)];
      lens[static_cast<size_t>(b)] = static_cast<int64_t>(s.size());
      for (int64_t t = 0; t < L; ++t) {
        ids_[static_cast<size_t>(b * L + t)] = t < static_cast<int64_t>(s.size()) ? s[static_cast<size_t>(t)] : pad;
        pos_[static_cast<size_t>(b * L + t)] = static_cast<int32_t>(t);
      }
    }
    const auto rows = static_cast<size_t>(B * L);
    auto attend = [&](int l, TensorView<const float, 2> q, TensorView<const float, 2> k, TensorView<const float, 2> v,
                      TensorView<float, 2> out) {
      nn::attention_padded(q.reshape<4>({B, L, c.n_heads, c.head_dim}), k.reshape<4>({B, L, c.n_kv_heads, c.head_dim}),
                           v.reshape<4>({B, L, c.n_kv_heads, c.head_dim}), lens, llama_attention_params(c, l),
                           out.reshape<4>({B, L, c.n_heads, c.head_dim}), aws_);
    };
    llama_layers(*model_, c.n_layers, a_, std::span<const int32_t>(ids_.data(), rows),
                 std::span<const int32_t>(pos_.data(), rows), attend);
    if (!model_->output_norm().empty()) {  // a decoder's hidden states are what its output head reads: normed
      const auto x = a_.x.narrow(0, 0, static_cast<int64_t>(rows));
      detail::model_norm(c, x, model_->output_norm(), model_->output_norm_b(), x);
    }
    return pool(lens, L, total, o);
  }

  /// The vector of one sequence: embed() of a batch of one, as [n_embd] (pooled) or
  /// [T * n_embd] (Pooling::none).
  std::vector<float> embed(std::span<const int32_t> tokens, const EmbedOptions& o = {}) {
    const std::vector<int32_t> one(tokens.begin(), tokens.end());
    const Tensor<float, 2> e = embed(std::span<const std::vector<int32_t>>(&one, 1), o);
    return std::vector<float>(e.span().begin(), e.span().end());
  }

 private:
  Tensor<float, 2> pool(std::span<const int64_t> lens, int64_t L, int64_t total, const EmbedOptions& o) {
    const int64_t D = model_->config().n_embd, B = static_cast<int64_t>(lens.size());
    Tensor<float, 2> out({o.pooling == Pooling::none ? total : B, D});
    // Views held by name: a row span of a temporary view would outlive it (the span is fine, but
    // newer compilers warn that it might not be).
    const TensorView<float, 2> ov = out.view(), xv = a_.x.view();
    int64_t r = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = lens[static_cast<size_t>(b)];
      auto h = [&](int64_t t) { return xv.row(b * L + t); };
      if (o.pooling == Pooling::none) {
        for (int64_t t = 0; t < n; ++t, ++r) std::copy(h(t).begin(), h(t).end(), ov.row(r).begin());
        continue;
      }
      const auto dst = ov.row(b);
      if (o.pooling == Pooling::cls || o.pooling == Pooling::last) {
        const auto src = h(o.pooling == Pooling::cls ? 0 : n - 1);
        std::copy(src.begin(), src.end(), dst.begin());
      } else {
        std::vector<double> sum(static_cast<size_t>(D), 0.0);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t d = 0; d < D; ++d) sum[static_cast<size_t>(d)] += h(t)[static_cast<size_t>(d)];
        for (int64_t d = 0; d < D; ++d) dst[static_cast<size_t>(d)] = static_cast<float>(sum[static_cast<size_t>(d)] / static_cast<double>(n));
      }
    }
    if (o.normalize)
      for (int64_t i = 0; i < out.dim(0); ++i) {
        double ss = 0;
        const auto row = ov.row(i);
        for (float v : row) ss += static_cast<double>(v) * v;
        const float inv = ss > 0 ? static_cast<float>(1.0 / std::sqrt(ss)) : 0.f;
        for (float& v : row) v *= inv;
      }
    return out;
  }

  std::shared_ptr<const LlamaModel> model_;
  int64_t max_rows_;
  LlamaActivations a_;
  nn::AttentionWorkspace aws_;
  std::vector<int32_t> pos_, ids_;
};

}  // namespace tessera::models
