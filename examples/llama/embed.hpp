// tessera-llama --embedding: the prompt's lines as sentence vectors (models::Encoder).
#pragma once

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "args.hpp"
#include "tessera/io/tokenizer.hpp"
#include "tessera/models/encoder.hpp"

namespace llama_cli {

/// Embeds every non-empty line of a.prompt in one padded batch and prints one line per
/// vector on stdout ("embedding I: v0 v1 ..."), the cosine similarities of the lines and
/// the time on stderr. Error when the lines do not fit the model's positions.
inline int run_embedding(const Args& a, const std::shared_ptr<const tessera::models::LlamaModel>& model,
                         const tessera::io::Tokenizer& tok) {
  using namespace tessera;
  const models::LlamaConfig& c = model->config();
  std::vector<std::vector<int32_t>> seqs;
  size_t longest = 0;
  for (size_t start = 0; start <= a.prompt.size();) {
    size_t end = a.prompt.find('\n', start);
    if (end == std::string::npos) end = a.prompt.size();
    if (end > start) {
      seqs.push_back(tok.encode(std::string_view(a.prompt).substr(start, end - start), true, true));
      longest = std::max(longest, seqs.back().size());
      check(static_cast<int64_t>(longest) <= c.n_ctx_train, "line ", seqs.size(), " of the prompt is ", longest,
            " tokens, more than the model's ", c.n_ctx_train, " positions");
    }
    start = end + 1;
  }
  check(!seqs.empty(), "--embedding: the prompt has no text");
  models::EmbedOptions o;
  o.normalize = a.normalize;
  o.pooling = a.pooling == "cls" ? models::Pooling::cls
              : a.pooling == "last" ? models::Pooling::last
              : a.pooling == "none" ? models::Pooling::none
              : a.pooling == "mean" || c.pooling == models::Pooling::none ? models::Pooling::mean
                                                                          : c.pooling;
  models::Encoder enc(model, static_cast<int64_t>(seqs.size() * longest));
  const auto t0 = std::chrono::steady_clock::now();
  const Tensor<float, 2> emb = enc.embed(seqs, o);
  const TensorView<const float, 2> e = emb.view();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (int64_t i = 0; i < e.dim(0); ++i) {
    std::printf("embedding %lld:", static_cast<long long>(i));
    for (float v : e.row(i)) std::printf(" %.6f", static_cast<double>(v));
    std::printf("\n");
  }
  if (o.pooling != models::Pooling::none && e.dim(0) > 1) {
    // The vectors may be unnormalised (--no-normalize): divide by both norms.
    auto dot = [&](int64_t i, int64_t j) {
      double sum = 0;
      for (int64_t d = 0; d < e.dim(1); ++d) sum += static_cast<double>(e.row(i)[d]) * e.row(j)[d];
      return sum;
    };
    std::fprintf(stderr, "cosine similarity:\n");
    for (int64_t i = 0; i < e.dim(0); ++i) {
      for (int64_t j = 0; j < e.dim(0); ++j) {
        const double nn = dot(i, i) * dot(j, j);
        std::fprintf(stderr, " %6.3f", nn > 0 ? dot(i, j) / std::sqrt(nn) : 0.0);
      }
      std::fprintf(stderr, "\n");
    }
  }
  size_t tokens = 0;
  for (const auto& q : seqs) tokens += q.size();
  std::fprintf(stderr, "%zu lines, %zu tokens (padded to %zu each) in %.1f ms: %.1f tok/s\n", seqs.size(), tokens,
               longest, s * 1e3, static_cast<double>(tokens) / s);
  return 0;
}

}  // namespace llama_cli
