// tessera-llama --perplexity / --kl-divergence: the same method and printout as
// llama-perplexity, so the figures of the two programs sit side by side.
#pragma once

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "args.hpp"
#include "tessera/io/logprob_file.hpp"
#include "tessera/io/tokenizer.hpp"
#include "tessera/runtime/perplexity.hpp"

namespace llama_cli {

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  tessera::check(in.good(), "cannot read '", path, "'");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline int32_t chunk_bos(const tessera::io::Tokenizer& tok) {
  return tok.spec().add_bos && tok.bos() >= 0 ? tok.bos() : -1;
}

inline int run_perplexity(const Args& a, tessera::models::LlamaContext& ctx, const tessera::io::Tokenizer& tok) {
  using namespace tessera;
  const auto tokens = tok.encode(read_text(a.perplexity), /*add_special=*/true, /*parse_special=*/false);
  runtime::ScoreConfig cfg;
  cfg.n_ctx = ctx.n_ctx();
  cfg.max_chunks = a.chunks;
  cfg.bos = chunk_bos(tok);
  check(tokens.size() >= 2 * static_cast<size_t>(cfg.n_ctx), "perplexity: the text has ", tokens.size(),
        " tokens, at least ", 2 * cfg.n_ctx, " are needed for chunks of ", cfg.n_ctx, " (lower -c)");
  const int n_chunk = std::min<int>(static_cast<int>(tokens.size()) / cfg.n_ctx, a.chunks < 0 ? 1 << 30 : a.chunks);
  std::fprintf(stderr, "perplexity: %zu tokens, %d chunks of %d, the second half of each scored\n", tokens.size(),
               n_chunk, cfg.n_ctx);
  std::unique_ptr<io::LogProbWriter> out;
  if (!a.kl_base.empty() && n_chunk > 0) {
    const io::LogProbLayout layout{cfg.n_ctx, ctx.model().config().n_vocab, n_chunk};
    out = std::make_unique<io::LogProbWriter>(
        a.kl_base, layout, std::span<const int32_t>(tokens).first(static_cast<size_t>(n_chunk) * cfg.n_ctx));
  }
  const auto s = runtime::perplexity(ctx, tokens, cfg, [](int c, const runtime::NllStats& st) {
    std::printf("[%d]%.4f,", c + 1, st.ppl());
    std::fflush(stdout);
  }, out.get());
  if (out) out->close();
  std::printf("\n");
  std::fprintf(stderr, "Final estimate: PPL = %.4f +/- %.5f\n", s.ppl(), s.ppl_error());
  return 0;
}

inline int run_kl_divergence(const Args& a, tessera::models::LlamaContext& ctx, const tessera::io::Tokenizer& tok) {
  using namespace tessera;
  const auto base = io::LogProbReader::open(a.kl_base);
  const auto& L = base.layout();
  check(L.n_ctx <= ctx.n_ctx(), a.kl_base, " was computed with chunks of ", L.n_ctx, ", more than the context of ",
        ctx.n_ctx(), " (raise -c)");
  std::printf("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
              "Δp RMS            Same top p\n");
  const auto s = runtime::kl_divergence(ctx, base, chunk_bos(tok), [](int c, const runtime::KlStats& st) {
    const auto lr = st.log_ppl_ratio(), kl = st.mean_kld(), rms = st.rms_p_diff(), top = st.same_top_fraction();
    std::printf("%4d    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    %6.3f ± %6.3f %%    %6.3f ± %6.3f %%\n",
                c + 1, st.nll.ppl(), st.nll.ppl_error(), lr.mean, lr.error, kl.mean, kl.error, 100 * rms.mean,
                100 * rms.error, 100 * top.mean, 100 * top.error);
    std::fflush(stdout);
  });
  using K = runtime::KlStats;
  const auto lr = s.log_ppl_ratio(), kl = s.mean_kld(), dp = s.mean_p_diff(), rms = s.rms_p_diff(),
             top = s.same_top_fraction();
  std::printf("\n====== Perplexity statistics ======\n");
  std::printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", s.nll.ppl(), s.nll.ppl_error());
  std::printf("Mean PPL(base)                : %10.6f ± %10.6f\n", s.nll_base.ppl(), s.nll_base.ppl_error());
  std::printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", lr.mean, lr.error);
  std::printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", std::exp(lr.mean), std::exp(lr.mean) * lr.error);
  std::printf("\n====== KL divergence statistics ======\n");
  std::printf("Mean    KLD: %10.6f ± %10.6f\n", kl.mean, kl.error);
  for (const auto& [name, f] : {std::pair{"Maximum", 1.0}, {"99.9%  ", 0.999}, {"99.0%  ", 0.99}, {"95.0%  ", 0.95},
                                {"90.0%  ", 0.9}, {"Median ", 0.5}, {"10.0%  ", 0.1}, {" 5.0%  ", 0.05},
                                {" 1.0%  ", 0.01}, {"Minimum", 0.0}})
    std::printf("%s KLD: %10.6f\n", name, K::percentile(s.kld, f));
  std::printf("\n====== Token probability statistics ======\n");
  std::printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100 * dp.mean, 100 * dp.error);
  for (const auto& [name, f] : {std::pair{"Maximum", 1.0}, {"99.0%  ", 0.99}, {"Median ", 0.5}, {" 1.0%  ", 0.01},
                                {"Minimum", 0.0}})
    std::printf("%s Δp: %6.3f%%\n", name, 100 * K::percentile(s.p_diff, f));
  std::printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100 * rms.mean, 100 * rms.error);
  std::printf("Same top p: %6.3f ± %5.3f %%\n", 100 * top.mean, 100 * top.error);
  return 0;
}

}  // namespace llama_cli
