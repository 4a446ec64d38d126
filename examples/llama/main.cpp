// tessera-llama: runs a llama-family GGUF model. Generates from a prompt
// (streaming), chats with the model's template (--chat), measures prefill and
// decode speed (--bench), scores a text (--perplexity, --kl-divergence), or
// prints sentence vectors (--embedding; BERT and other encoders).
// Bad input prints one line and exits non-zero.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <new>
#include <numeric>
#include <optional>
#include <random>
#include <string>

#include "args.hpp"
#include "embed.hpp"
#include "score.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/io/chat_template.hpp"
#include "tessera/io/tokenizer.hpp"
#include "tessera/io/tokenizer_gguf.hpp"
#include "tessera/models/llama_context.hpp"
#include "tessera/runtime/beam_search.hpp"
#include "tessera/runtime/generator.hpp"
#include "tessera/runtime/speculative.hpp"
#if TESSERA_WITH_CUDA
#include "tessera/models/llama_cuda.hpp"
#endif

using namespace tessera;

namespace {

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

std::string default_model() {
  for (const char* p : {TESSERA_DEFAULT_MODEL, "models/SmolLM2-135M-Instruct.Q4_1.gguf"})
    if (std::filesystem::exists(p)) return p;
  fail("no model given and the default model is missing: run scripts/fetch-model, or pass -m MODEL.gguf");
}

// The model's chat template, or its family's default (Gemma's base models ship none).
io::ChatTemplate chat_template(const models::LlamaModel& model, const io::Tokenizer& tok) {
  return io::ChatTemplate::for_model(model.file().meta().get_or<std::string>("tokenizer.chat_template", ""),
                                     model.config().arch, io::chat_template_options(tok));
}

void print_stats(const runtime::GenerationResult& r) {
  std::fprintf(stderr,
               "\n\nprompt tokens: %d | prefill: %.1f tok/s | decode: %.1f tok/s (%zu tokens) | "
               "time to first token: %.1f ms | peak memory: %.1f MiB\n",
               r.n_prompt, r.prefill_tokens_per_s(), r.decode_tokens_per_s(), r.tokens.size(), r.ttft_s * 1e3,
               peak_rss_mib());
}

// The drafter the flags ask for, or none.
std::unique_ptr<runtime::Drafter> make_drafter(const llama_cli::Args& a, const models::LlamaContext& ctx,
                                               const std::shared_ptr<const models::LlamaModel>& model,
                                               const io::Tokenizer& tok) {
  if (a.lookup > 0) return std::make_unique<runtime::LookupDrafter>(a.lookup, 1);
  if (a.self_spec > 0) {
    check(a.self_spec < ctx.model().config().n_layers, "--self-spec ", a.self_spec, ": the model has ",
          ctx.model().config().n_layers, " layers, the draft must use fewer");
    auto dctx = std::make_unique<models::LlamaContext>(model, ctx.n_ctx(), ctx.n_batch(), kv::KvSpec{}, a.self_spec);
    return std::make_unique<runtime::ModelDrafter>(std::move(dctx), a.sampling,
                                                   "self-speculation, first " + std::to_string(a.self_spec) + " layers");
  }
  if (!a.draft.empty()) {
    auto dmodel = models::LlamaModel::load(a.draft);
    const auto dtok = io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(dmodel->file().meta()));
    runtime::check_same_vocabulary(tok, dtok);
    auto dctx = std::make_unique<models::LlamaContext>(dmodel, ctx.n_ctx(), ctx.n_batch());
    return std::make_unique<runtime::ModelDrafter>(std::move(dctx), a.sampling,
                                                   "draft model " + std::filesystem::path(a.draft).filename().string());
  }
  return nullptr;
}

int run_beams(const llama_cli::Args& a, const std::shared_ptr<const models::LlamaModel>& model,
              const io::Tokenizer& tok) {
  const auto prompt = tok.encode(a.prompt, /*add_special=*/true, /*parse_special=*/true);
  runtime::BeamSearchConfig cfg;
  cfg.num_beams = a.beams;
  cfg.max_new_tokens = std::max(1, a.n_predict);
  cfg.length_penalty = a.length_penalty;
  cfg.early_stopping = a.early_stopping == "true"    ? runtime::EarlyStopping::on
                       : a.early_stopping == "never" ? runtime::EarlyStopping::never
                                                     : runtime::EarlyStopping::heuristic;
  cfg.num_return = a.beams;
  if (tok.eos() >= 0) cfg.eos = {tok.eos()};
  // Paged KV: the beams fork one context and share the prompt's blocks; the pool holds the prompt
  // once plus every beam's own blocks (and the candidates' copies for one step).
  const int n_ctx = a.n_ctx > 0 ? a.n_ctx : static_cast<int>(prompt.size()) + cfg.max_new_tokens;
  const int64_t block = 16, per_seq = (n_ctx + block - 1) / block;
  const auto& c = model->config();
  const kv::KvLayout layout = models::kv_layout(c, a.kv_spec.type.value_or(KvType::f32));
  auto pool = std::make_shared<kv::KvBlockPool>(layout, block, per_seq * (2 * a.beams + 1));
  models::LlamaContext ctx(model, std::make_unique<kv::PagedKvCache>(pool, n_ctx), a.n_batch);
  const auto t0 = std::chrono::steady_clock::now();
  const auto hyps = runtime::beam_search(ctx, prompt, cfg);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (size_t k = 0; k < hyps.size(); ++k) {
    std::printf("[%zu] score %.4f: %s%s\n", k, hyps[k].score, a.prompt.c_str(), tok.decode(hyps[k].tokens).c_str());
    if (a.print_ids) {
      std::printf("ids:");
      for (int32_t t : hyps[k].tokens) std::printf(" %d", t);
      std::printf("\n");
    }
  }
  std::fprintf(stderr, "\nbeam search: %d beams, %.2f s, peak memory %.1f MiB\n", a.beams, s, peak_rss_mib());
  return 0;
}

// The context's end-of-run line: its cache (CPU) or device memory (GPU).
void print_memory(const models::LlamaContext& ctx) {
  const auto mem = ctx.kv_cache().memory();
  std::fprintf(stderr, "KV cache: %s, %.2f MiB used, %.2f MiB reserved\n", ctx.kv_cache().describe().c_str(),
               static_cast<double>(mem.used) / (1 << 20), static_cast<double>(mem.reserved) / (1 << 20));
}
#if TESSERA_WITH_CUDA
void print_memory(const models::LlamaCudaContext& ctx) {
  std::fprintf(stderr, "GPU: %s; weights %.1f MiB, KV cache %.1f MiB, device memory %.1f MiB\n",
               ctx.describe().c_str(), static_cast<double>(ctx.weight_bytes()) / (1 << 20),
               static_cast<double>(ctx.kv_bytes()) / (1 << 20), static_cast<double>(ctx.device_bytes()) / (1 << 20));
}
#endif

template <class Ctx>
int run_generate(const llama_cli::Args& a, Ctx& ctx, const std::shared_ptr<const models::LlamaModel>& model,
                 const io::Tokenizer& tok) {
  sample::Sampler sampler(a.sampling, ctx.model().config().n_vocab);
  const auto prompt = tok.encode(a.prompt, /*add_special=*/true, /*parse_special=*/true);
  check(static_cast<int>(prompt.size()) <= ctx.n_ctx(), "prompt of ", prompt.size(),
        " tokens is longer than the context of ", ctx.n_ctx(), " tokens (raise -c)");
  std::fputs(a.prompt.c_str(), stdout);
  std::fflush(stdout);
  runtime::GenerationConfig cfg;
  cfg.max_new_tokens = a.n_predict;
  const auto print = [](std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  runtime::GenerationResult r;
  std::unique_ptr<runtime::Drafter> drafter;
  if constexpr (std::is_same_v<Ctx, models::LlamaContext>) drafter = make_drafter(a, ctx, model, tok);
  else (void)model;
  if (drafter) {
    if constexpr (std::is_same_v<Ctx, models::LlamaContext>) {
    runtime::SpeculativeConfig spec;
    spec.draft_max = a.draft_max;
    const auto sr = runtime::speculative_generate(ctx, tok, sampler, *drafter, prompt, cfg, spec, print);
    r = sr;
    std::fprintf(stderr, "\n\nspeculative (%s): %lld of %lld drafted tokens accepted (%.1f%%), %.2f tokens per target pass",
                 drafter->describe().c_str(), static_cast<long long>(sr.accepted), static_cast<long long>(sr.drafted),
                 100 * sr.acceptance(), sr.tokens_per_pass());
    }
  } else {
    r = runtime::generate(ctx, tok, sampler, prompt, cfg, print);
  }
  if (a.print_ids) {
    std::printf("\nids:");
    for (int32_t t : r.tokens) std::printf(" %d", t);
  }
  print_stats(r);
  print_memory(ctx);
  return 0;
}

template <class Ctx>
int run_chat(const llama_cli::Args& a, Ctx& ctx, const io::Tokenizer& tok,
             const io::ChatTemplate& tmpl) {
  sample::Sampler sampler(a.sampling, ctx.model().config().n_vocab);
  std::vector<io::ChatMessage> messages;
  if (!a.system.empty()) messages.push_back({"system", a.system});
  std::vector<int32_t> in_cache;  // tokens the context holds, to reuse the common prefix each turn
  std::string line;
  std::fprintf(stderr, "chat with %s: empty line or EOF to quit\n", ctx.model().config().arch.c_str());
  while (true) {
    std::fputs("\n> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line.empty()) break;
    messages.push_back({"user", line});
    // Templates that write BOS themselves (llama-2/3) must not get a second one from the tokenizer.
    const auto all = tok.encode(tmpl.render(messages, /*add_generation_prompt=*/true), !tmpl.renders_bos(), true);
    const auto common = static_cast<size_t>(
        std::mismatch(in_cache.begin(), in_cache.end(), all.begin(), all.end()).first - in_cache.begin());
    const size_t keep = std::min(common, all.size() - 1);  // at least one new token to get logits
    ctx.truncate(static_cast<int>(keep));
    runtime::GenerationConfig cfg;
    cfg.max_new_tokens = std::min(a.n_predict > 0 ? a.n_predict : 512, ctx.n_ctx() - static_cast<int>(all.size()));
    check(cfg.max_new_tokens > 0, "conversation of ", all.size(), " tokens fills the context of ", ctx.n_ctx());
    const auto r = runtime::generate(ctx, tok, sampler, std::span(all).subspan(keep), cfg, [](std::string_view s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    messages.push_back({"assistant", r.text});
    in_cache.assign(all.begin(), all.end());
    in_cache.insert(in_cache.end(), r.tokens.begin(), r.tokens.end());
    in_cache.resize(static_cast<size_t>(ctx.n_past()));  // the last sampled token was never evaluated
    print_stats(r);
  }
  return 0;
}

// Median of reps runs of f(), which returns seconds.
template <class F>
double median_seconds(int reps, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) t.push_back(f());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// llama-bench's pp128 and pp512 (one batch of n tokens into an empty cache)
// and tg128 (128 greedy single-token steps from an empty cache), one table
// row each.  context(n_batch) gives a context for batches of n_batch tokens;
// step(ctx, tokens) evaluates tokens and returns the greedy next token.  Each
// test runs once untimed first (weights paged in, kernels loaded, a decode
// graph captured), then reps times; the median is reported.
template <class ContextFor, class Step>
void bench_rows(const llama_cli::Args& a, const models::LlamaModel& model, const std::string& path,
                const char* column, const std::string& value, ContextFor&& context, Step&& step) {
  using clock = std::chrono::steady_clock;
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> any_token(0, model.config().n_vocab - 1);
  std::printf("| model | size MiB | %s | test | t/s |\n|---|---|---|---|---|\n", column);
  const double size_mib = static_cast<double>(std::filesystem::file_size(path)) / (1 << 20);
  const std::string name = std::filesystem::path(path).filename().string();
  auto time = [&](auto& ctx, auto&& run) {
    ctx.reset();
    run();
    return median_seconds(a.bench_reps, [&] {
      ctx.reset();
      const auto t0 = clock::now();
      run();
      return std::chrono::duration<double>(clock::now() - t0).count();
    });
  };
  auto row = [&](const char* test, int n, double s) {
    std::printf("| %s | %.1f | %s | %s | %.2f |\n", name.c_str(), size_mib, value.c_str(), test, n / s);
    std::fflush(stdout);
  };
  for (int n : {128, 512}) {
    std::vector<int32_t> toks(static_cast<size_t>(n));
    for (auto& t : toks) t = any_token(rng);
    auto& ctx = context(n);
    row(n == 128 ? "pp128" : "pp512", n, time(ctx, [&] { step(ctx, toks); }));
  }
  const int32_t first = any_token(rng);
  auto& ctx = context(1);
  row("tg128", 128, time(ctx, [&] {
        int32_t t = first;
        for (int i = 0; i < 128; ++i) t = step(ctx, std::span<const int32_t>(&t, 1));
      }));
}

#if TESSERA_WITH_CUDA
models::CudaContextOptions cuda_options(const llama_cli::Args& a) {
  models::CudaContextOptions o;
  o.kv = a.kv_type == "q8_0" ? cuda::KvElem::q8_0 : cuda::KvElem::f16;
  o.paged = a.kv_spec.kind == kv::KvSpec::Kind::paged;
  if (o.paged) o.page_size = static_cast<int>(a.kv_spec.param);
  o.graph = a.graph;
  return o;
}

int run_bench_cuda(const llama_cli::Args& a, const std::shared_ptr<const models::LlamaModel>& model,
                   const std::string& path) {
  models::LlamaCudaContext ctx(model, 1024, 512, cuda_options(a));  // one context for every test, reset between runs
  bench_rows(a, *model, path, "device", "cuda", [&](int) -> models::LlamaCudaContext& { return ctx; },
             [](models::LlamaCudaContext& c, std::span<const int32_t> t) { return c.eval_greedy(t); });
  std::fprintf(stderr, "weights read per decoded token: %.1f MiB; ",
               static_cast<double>(model->weight_bytes_per_token()) / (1 << 20));
  print_memory(ctx);
  return 0;
}
#endif

int run_bench(const llama_cli::Args& a, const std::shared_ptr<const models::LlamaModel>& model,
              const std::string& path) {
  std::optional<models::LlamaContext> ctx;  // a context per test, its batch the test's
  bench_rows(a, *model, path, "threads", std::to_string(num_threads()),
             [&](int n_batch) -> models::LlamaContext& {
               return ctx.emplace(model, std::max(n_batch, 1024), n_batch, a.kv_spec);
             },
             [](models::LlamaContext& c, std::span<const int32_t> t) {
               const auto logits = c.eval(t);
               return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
             });
  std::fprintf(stderr, "weights read per decoded token: %.1f MiB; peak memory %.1f MiB\n",
               static_cast<double>(model->weight_bytes_per_token()) / (1 << 20), peak_rss_mib());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const llama_cli::Args a = llama_cli::parse(argc, argv);
    if (a.help) {
      std::fputs(llama_cli::usage(), stdout);
      return 0;
    }
    if (a.threads > 0) set_num_threads(a.threads);
    const std::string path = a.model.empty() ? default_model() : a.model;
    const auto model = models::LlamaModel::load(path);
#if TESSERA_WITH_CUDA
    if (a.device == "cuda") {
      if (a.bench) return run_bench_cuda(a, model, path);
      const io::Tokenizer tok = io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(model->file().meta()));
      models::LlamaCudaContext ctx(model, a.n_ctx, a.n_batch, cuda_options(a));
      if (a.chat) {
        const auto tmpl = chat_template(*model, tok);
        return run_chat(a, ctx, tok, tmpl);
      }
      return run_generate(a, ctx, model, tok);
    }
#else
    check(a.device != "cuda", "--device cuda: this tessera-llama was built without CUDA (configure with "
          "-DTESSERA_CUDA=ON)");
#endif
    if (a.bench) return run_bench(a, model, path);
    const io::Tokenizer tok = io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(model->file().meta()));
    if (a.embedding) return llama_cli::run_embedding(a, model, tok);
    if (a.beams > 0) return run_beams(a, model, tok);
    if (!a.perplexity.empty() || a.kl_divergence) {
      // Chunks of -c tokens (llama-perplexity's default 512); KL takes the base file's chunk size.
      int n_ctx = a.n_ctx > 0 ? a.n_ctx : 512;
      if (a.kl_divergence && a.n_ctx == 0) n_ctx = io::LogProbReader::open(a.kl_base).layout().n_ctx;
      models::LlamaContext sctx(model, n_ctx, std::min(a.n_batch, n_ctx), a.kv_spec);
      return a.kl_divergence ? llama_cli::run_kl_divergence(a, sctx, tok) : llama_cli::run_perplexity(a, sctx, tok);
    }
    models::LlamaContext ctx(model, a.n_ctx, a.n_batch, a.kv_spec);
    if (a.chat) {
      const auto tmpl = chat_template(*model, tok);
      return run_chat(a, ctx, tok, tmpl);
    }
    return run_generate(a, ctx, model, tok);
  } catch (const std::bad_alloc&) {
    // what() would only say "std::bad_alloc"; the usual cause is a KV cache for a huge -c.
    std::fprintf(stderr, "error: out of memory (a smaller context, -c, needs less)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
