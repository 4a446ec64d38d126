// Command-line flags of tessera-llama: parsed strictly, every bad value is an
// Error naming the flag.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/kv/kv.hpp"
#include "tessera/sample/sampler.hpp"

namespace llama_cli {

struct Args {
  std::string model;
  std::string prompt = "The meaning of life is";
  std::string system;  // chat: system prompt (empty: the template's default)
  int n_predict = 128;
  int threads = 0;     // 0: OpenMP's default
  int n_ctx = 0;       // 0: min(training context, 4096)
  int n_batch = 512;
  int bench_reps = 3;
  bool chat = false, bench = false, help = false, print_ids = false;
  std::string perplexity;  // text file to score (--perplexity)
  std::string kl_base;     // --kl-divergence-base: written by --perplexity, read by --kl-divergence
  bool kl_divergence = false;
  bool embedding = false;  // --embedding: print the prompt's (each line's) sentence vector
  std::string pooling;     // --pooling mean | cls | last | none (empty: the model's, else mean)
  bool normalize = true;   // --no-normalize: print vectors as pooled
  int chunks = -1;         // --chunks: most chunks scored (-1: all)
  std::string draft;       // --draft MODEL: speculative decoding with a draft model
  int lookup = 0;          // --lookup N: prompt-lookup drafts from n-grams up to N
  int self_spec = 0;       // --self-spec L: the first L layers of the model draft
  int draft_max = 8;       // --draft-max K
  bool speculative() const { return !draft.empty() || lookup > 0 || self_spec > 0; }
  int beams = 0;                       // --beams N: beam search (0: off)
  float length_penalty = 1.f;          // --length-penalty A
  std::string early_stopping = "false";  // --early-stopping true | false | never
  std::string kv = "static", kv_type;  // kv_type empty: f32 on the CPU, f16 on a GPU
  std::string device = "cpu";          // --device cpu | cuda
  bool graph = true;                   // --no-graph: GPU decode without CUDA-graph replay
  tessera::kv::KvSpec kv_spec;  // parsed from kv and kv_type
  tessera::sample::SamplerParams sampling;
};

inline const char* usage() {
  return "usage: tessera-llama [-m MODEL.gguf] [-p PROMPT] [-n N] [options]\n"
         "  -m, --model PATH       GGUF model (default: the model scripts/fetch-model fetches)\n"
         "  -p, --prompt TEXT      prompt (default: \"The meaning of life is\")\n"
         "  -n, --n-predict N      tokens to generate (default 128)\n"
         "  -t, --threads N        threads (default: all cores)\n"
         "  -c, --ctx-size N       context length (default: min(training context, 4096))\n"
         "  -b, --batch-size N     prompt tokens per forward pass (default 512)\n"
         "      --temp T           temperature, 0 = greedy (default 0.8)\n"
         "      --top-k K          top-k, 0 = off (default 40)\n"
         "      --top-p P          nucleus sampling mass (default 0.95)\n"
         "      --min-p P          min-p threshold (default 0.05)\n"
         "      --repeat-penalty R repetition penalty, 1 = off (default 1.0)\n"
         "      --seed S           RNG seed (default 42): a seed and thread count reproduce a run\n"
         "      --chat             interactive chat with the model's chat template\n"
         "      --system TEXT      system prompt for --chat\n"
         "      --kv KIND          KV cache: static | growing | sliding:W | paged:B (default static)\n"
         "      --kv-type T        KV storage: f32 | f16 | q8_0 (default f32; on a GPU f16 | q8_0, default f16)\n"
         "      --device D         cpu (default) | cuda: run on the first GPU (needs a build with\n"
         "                         -DTESSERA_CUDA=ON); generation, --chat and --bench\n"
         "      --no-graph         cuda: launch the decode step's kernels one by one, no graph replay\n"
         "      --bench            prefill (pp128, pp512) and decode (tg128) speed, tokens/s\n"
         "      --reps N           repetitions per --bench test (default 3)\n"
         "      --ids              print the generated token ids at the end\n"
         "      --perplexity FILE  perplexity of a text file as llama-perplexity computes it: chunks of\n"
         "                         -c tokens (default 512), BOS first, the second half scored\n"
         "      --chunks N         score at most N chunks\n"
         "      --kl-divergence-base FILE  with --perplexity: also write every scored position's\n"
         "                         log-probabilities to FILE (llama-perplexity's format)\n"
         "      --kl-divergence    compare with the --kl-divergence-base FILE (written by tessera or by\n"
         "                         llama-perplexity): KL divergence, same top token, delta p, PPL ratio\n"
         "      --embedding        print the normalised sentence vector of the prompt, one line per prompt\n"
         "                         line (BERT, or any model's last hidden states); stderr: cosine\n"
         "                         similarities of the lines\n"
         "      --pooling P        with --embedding: mean | cls | last | none (a vector per token);\n"
         "                         default: the model's pooling_type, else mean\n"
         "      --no-normalize     with --embedding: vectors as pooled, not scaled to unit length\n"
         "      --draft MODEL      speculative decoding with a draft model of the same vocabulary\n"
         "      --lookup N         speculative decoding with prompt-lookup drafts (n-grams up to N)\n"
         "      --self-spec L      speculative decoding drafted by the model's own first L layers\n"
         "      --draft-max K      most tokens per draft, 1..15 (default 8; the length adapts)\n"
         "      --beams N          beam search of width N (transformers' semantics); prints the best\n"
         "                         hypotheses with their scores\n"
         "      --length-penalty A beam score = sum of log-probs / length^A (default 1)\n"
         "      --early-stopping E true | false | never, as transformers (default false)\n";
}

namespace detail {
template <class T>
T number(std::string_view flag, std::string_view text) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  tessera::check(ec == std::errc() && end == text.data() + text.size(), "invalid value '", text, "' for ", flag);
  return v;
}
}  // namespace detail

/// Parses argv; Error for an unknown flag, a missing or malformed value, or an out-of-range one.
inline Args parse(int argc, char** argv) {
  Args a;
  const std::vector<std::string_view> v(argv + 1, argv + argc);
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string_view f = v[i];
    auto value = [&]() -> std::string_view {
      tessera::check(i + 1 < v.size(), "missing value for ", f);
      return v[++i];
    };
    auto integer = [&](int lo) {
      const int n = detail::number<int>(f, value());
      tessera::check(n >= lo, f, " must be >= ", lo, ", got ", n);
      return n;
    };
    auto real = [&] { return detail::number<float>(f, value()); };
    if (f == "-h" || f == "--help") a.help = true;
    else if (f == "-m" || f == "--model") {
      a.model = value();
      tessera::check(!a.model.empty(), f, " needs a path, got an empty one");
    }
    else if (f == "-p" || f == "--prompt") a.prompt = value();
    else if (f == "-n" || f == "--n-predict") a.n_predict = integer(0);
    else if (f == "-t" || f == "--threads") a.threads = integer(1);
    else if (f == "-c" || f == "--ctx-size") a.n_ctx = integer(1);
    else if (f == "-b" || f == "--batch-size") a.n_batch = integer(1);
    else if (f == "--temp") a.sampling.temperature = real();
    else if (f == "--top-k") a.sampling.top_k = integer(0);
    else if (f == "--top-p") a.sampling.top_p = real();
    else if (f == "--min-p") a.sampling.min_p = real();
    else if (f == "--repeat-penalty") a.sampling.repeat_penalty = real();
    else if (f == "--seed") a.sampling.seed = detail::number<uint64_t>(f, value());
    else if (f == "--chat") a.chat = true;
    else if (f == "--system") a.system = value();
    else if (f == "--bench") a.bench = true;
    else if (f == "--reps") a.bench_reps = integer(1);
    else if (f == "--ids") a.print_ids = true;
    else if (f == "--kv") a.kv = value();
    else if (f == "--kv-type") a.kv_type = value();
    else if (f == "--device") {
      a.device = value();
      tessera::check(a.device == "cpu" || a.device == "cuda", "--device must be cpu or cuda, got '", a.device, "'");
    }
    else if (f == "--no-graph") a.graph = false;
    else if (f == "--perplexity") a.perplexity = value();
    else if (f == "--chunks") a.chunks = integer(1);
    else if (f == "--kl-divergence-base") a.kl_base = value();
    else if (f == "--kl-divergence") a.kl_divergence = true;
    else if (f == "--embedding") a.embedding = true;
    else if (f == "--pooling") {
      a.pooling = value();
      tessera::check(a.pooling == "mean" || a.pooling == "cls" || a.pooling == "last" || a.pooling == "none",
                     "--pooling must be mean, cls, last or none, got '", a.pooling, "'");
    }
    else if (f == "--no-normalize") a.normalize = false;
    else if (f == "--draft") {
      a.draft = value();
      tessera::check(!a.draft.empty(), f, " needs a path, got an empty one");
    }
    else if (f == "--lookup") a.lookup = integer(1);
    else if (f == "--self-spec") a.self_spec = integer(1);
    else if (f == "--draft-max") a.draft_max = integer(1);
    else if (f == "--beams") a.beams = integer(1);
    else if (f == "--length-penalty") a.length_penalty = real();
    else if (f == "--early-stopping") {
      a.early_stopping = value();
      tessera::check(a.early_stopping == "true" || a.early_stopping == "false" || a.early_stopping == "never",
                     "--early-stopping must be true, false or never, got '", a.early_stopping, "'");
    }
    else tessera::fail("unknown flag '", f, "' (see --help)");
  }
  tessera::check(!a.kl_divergence || !a.kl_base.empty(), "--kl-divergence needs --kl-divergence-base FILE");
  tessera::check(!a.kl_divergence || a.perplexity.empty(),
                 "--kl-divergence scores the base file's own tokens: leave out --perplexity");
  tessera::check(a.kl_base.empty() || a.kl_divergence || !a.perplexity.empty(),
                 "--kl-divergence-base FILE needs --perplexity TEXT (to write it) or --kl-divergence (to read it)");
  tessera::check((!a.draft.empty()) + (a.lookup > 0) + (a.self_spec > 0) <= 1,
                 "--draft, --lookup and --self-spec are alternatives: pick one drafter");
  tessera::check(a.draft_max <= 15, "--draft-max must be <= 15, got ", a.draft_max);
  tessera::check(a.beams == 0 || !a.speculative(), "--beams and speculative decoding are alternatives");
  tessera::check(std::isfinite(a.length_penalty), "--length-penalty must be finite");
  tessera::check(a.embedding || (a.pooling.empty() && a.normalize), "--pooling and --no-normalize go with --embedding");
  tessera::check(!a.embedding || (!a.chat && !a.bench && a.perplexity.empty() && !a.kl_divergence && a.beams == 0 &&
                                  !a.speculative() && a.device == "cpu"),
                 "--embedding runs alone on the CPU: leave out --chat, --bench, --perplexity, --kl-divergence, "
                 "--beams, speculative decoding and --device cuda");
  tessera::sample::validate(a.sampling);  // names a bad sampling value
  if (a.device == "cuda") {
    tessera::check(a.perplexity.empty() && !a.kl_divergence && a.beams == 0 && !a.speculative(),
                   "--device cuda runs generation, --chat and --bench; --perplexity, --kl-divergence, --beams and "
                   "speculative decoding run on the CPU only");
    tessera::check(a.kv_type.empty() || a.kv_type == "f16" || a.kv_type == "q8_0",
                   "--device cuda keeps keys and values as f16 or q8_0, not '", a.kv_type, "'");
    tessera::check(a.kv == "static" || a.kv.starts_with("paged:"), "--device cuda: --kv static or paged:B, not '",
                   a.kv, "'");
  }
  a.kv_spec = tessera::kv::parse_kv_spec(a.kv, tessera::kv::parse_kv_type(a.kv_type.empty() ? "f32" : a.kv_type));
  return a;
}

}  // namespace llama_cli
