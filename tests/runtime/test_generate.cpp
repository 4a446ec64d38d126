// runtime::generate on the real default model: a seed and thread count
// reproduce a sampled run, max tokens, the streaming callback, stop strings,
// end of generation and a full context each end it with their stop reason,
// and a prompt that does not fit is an Error. Short runs (<= 64 tokens) in
// small contexts keep it to a few seconds.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "../test_models.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/io/tokenizer.hpp"
#include "tessera/io/tokenizer_gguf.hpp"
#include "tessera/models/llama_context.hpp"
#include "tessera/runtime/generator.hpp"

using namespace tessera;
using runtime::StopReason;
using Catch::Contains;

namespace {

constexpr const char* kModel = "SmolLM2-135M-Instruct.Q4_1.gguf";
constexpr int kCtx = 128;

struct Loaded {
  std::shared_ptr<const models::LlamaModel> model;
  io::Tokenizer tok;
};

// The model and tokenizer, loaded once for every case; nullptr (after a WARN) when the file is missing.
const Loaded* loaded() {
  static const std::unique_ptr<const Loaded> l = []() -> std::unique_ptr<const Loaded> {
    const auto path = test::find_test_model(kModel);
    if (!path) return nullptr;
    auto model = models::LlamaModel::load(*path);
    auto tok = io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(model->file().meta()));
    return std::make_unique<const Loaded>(Loaded{std::move(model), std::move(tok)});
  }();
  if (!l) WARN("skipped: " << kModel << " not found (run scripts/fetch-model)");
  return l.get();
}

sample::SamplerParams greedy() {
  sample::SamplerParams p;
  p.temperature = 0.f;
  return p;
}

// Sampled at temperature 1 with top-k off, so that seeds part quickly.
sample::SamplerParams sampled(uint64_t seed) {
  sample::SamplerParams p;
  p.temperature = 1.f;
  p.top_k = 0;
  p.top_p = 1.f;
  p.min_p = 0.f;
  p.seed = seed;
  return p;
}

struct Run {
  runtime::GenerationResult r;
  std::string streamed;  // what the callback received
  int calls = 0;
};

// One generation from an empty context of n_ctx positions.
Run run(const Loaded& l, const std::string& prompt, const sample::SamplerParams& sp, const runtime::GenerationConfig& cfg,
        int n_ctx = kCtx, int stop_after_calls = -1) {
  models::LlamaContext ctx(l.model, n_ctx, 32);
  sample::Sampler sampler(sp, l.model->config().n_vocab);
  const auto ids = l.tok.encode(prompt, true, true);
  Run out;
  out.r = runtime::generate(ctx, l.tok, sampler, ids, cfg, [&](std::string_view s) {
    out.streamed += s;
    return ++out.calls != stop_after_calls;
  });
  return out;
}

runtime::GenerationConfig max_tokens(int n, bool stop_at_eog = true) {
  runtime::GenerationConfig cfg;
  cfg.max_new_tokens = n;
  cfg.stop_at_eog = stop_at_eog;
  return cfg;
}

const std::string kStory = "Once upon a time, in a small village by the sea,";
const std::string kChat = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

}  // namespace

TEST_CASE("generate: a seed and thread count reproduce a sampled run and another seed differs", "[runtime][model]") {
  const Loaded* l = loaded();
  if (!l) return;
  // Two threads, so that the kernels split their work as a parallel run does.
  const int threads_before = num_threads();
  set_num_threads(2);
  const auto cfg = max_tokens(32, /*stop_at_eog=*/false);  // always 32 tokens to compare
  const Run a = run(*l, kStory, sampled(1234), cfg);
  const Run b = run(*l, kStory, sampled(1234), cfg);
  const Run c = run(*l, kStory, sampled(4321), cfg);
  set_num_threads(threads_before);
  REQUIRE(a.r.tokens.size() == 32);
  REQUIRE(a.r.tokens == b.r.tokens);
  REQUIRE(a.streamed == b.streamed);
  // At temperature 1 over the whole vocabulary, two seeds agreeing on 32 tokens is vanishingly unlikely.
  REQUIRE(c.r.tokens.size() == 32);
  REQUIRE(a.r.tokens != c.r.tokens);
}

TEST_CASE("generate: max_new_tokens is respected and the stream is the decoded tokens", "[runtime][model]") {
  const Loaded* l = loaded();
  if (!l) return;
  for (int n : {1, 7, 20}) {
    const Run g = run(*l, kStory, greedy(), max_tokens(n, false));
    INFO("max_new_tokens " << n);
    REQUIRE(g.r.tokens.size() == static_cast<size_t>(n));
    REQUIRE(g.r.stop == StopReason::max_tokens);
    REQUIRE(g.r.n_prompt == static_cast<int>(l->tok.encode(kStory, true, true).size()));
    REQUIRE(g.streamed == g.r.text);
    REQUIRE(g.streamed == l->tok.decode(g.r.tokens));
  }
  const Run none = run(*l, kStory, greedy(), max_tokens(0));
  REQUIRE(none.r.tokens.empty());
  REQUIRE(none.streamed.empty());
}

TEST_CASE("generate: a callback returning false stops generation and is not called again", "[runtime][model]") {
  const Loaded* l = loaded();
  if (!l) return;
  auto cfg = max_tokens(40, false);
  // A stop string for each printable character followed by a byte the model never writes: text then always
  // ends in a held possible prefix, which must not be flushed to a callback that has asked to stop.
  for (char ch = 0x20; ch < 0x7f; ++ch) cfg.stop_strings.push_back(std::string(1, ch) + '\x01');
  const Run g = run(*l, kStory, greedy(), cfg, kCtx, /*stop_after_calls=*/3);
  REQUIRE(g.r.stop == StopReason::callback);
  REQUIRE(g.calls == 3);
  REQUIRE(g.r.tokens.size() < 40);
  REQUIRE(g.r.text == g.streamed);
}

TEST_CASE("generate: a stop string ends generation and is not streamed", "[runtime][model]") {
  const Loaded* l = loaded();
  if (!l) return;
  const Run ref = run(*l, kStory, greedy(), max_tokens(40, false));
  REQUIRE(ref.streamed.size() > 40);
  // Six characters from the middle of the greedy text: they likely span a token boundary.
  const std::string stop = ref.streamed.substr(ref.streamed.size() / 2, 6);
  const std::string expected = ref.streamed.substr(0, ref.streamed.find(stop));
  auto cfg = max_tokens(40, false);
  cfg.stop_strings = {"text the model never writes", stop};
  const Run g = run(*l, kStory, greedy(), cfg);
  INFO("stop string '" << stop << "'");
  REQUIRE(g.r.stop == StopReason::stop_string);
  REQUIRE(g.streamed == expected);
  REQUIRE(g.r.text == expected);
  REQUIRE(g.streamed.find(stop) == std::string::npos);
  REQUIRE(g.r.tokens.size() < ref.r.tokens.size());
  REQUIRE(g.r.tokens == std::vector<int32_t>(ref.r.tokens.begin(), ref.r.tokens.begin() + g.r.tokens.size()));
}

TEST_CASE("generate: the end-of-turn token ends a chat reply unless told to continue", "[runtime][model]") {
  const Loaded* l = loaded();
  if (!l) return;
  const Run g = run(*l, kChat, greedy(), max_tokens(64));
  INFO("reply: " << g.streamed);
  REQUIRE(g.r.stop == StopReason::end_of_generation);
  REQUIRE(g.r.tokens.size() < 64);
  REQUIRE(l->tok.is_eog(g.r.tokens.back()));
  REQUIRE_THAT(g.streamed, Contains("Paris"));
  REQUIRE(g.streamed.find("<|im_end|>") == std::string::npos);  // the end token is not text
  REQUIRE(g.streamed == g.r.text);

  // With stop_at_eog off the same greedy run goes on past it to max_new_tokens.
  const int n = static_cast<int>(g.r.tokens.size()) + 3;
  const Run on = run(*l, kChat, greedy(), max_tokens(n, /*stop_at_eog=*/false));
  REQUIRE(on.r.stop == StopReason::max_tokens);
  REQUIRE(on.r.tokens.size() == static_cast<size_t>(n));
  REQUIRE(std::equal(g.r.tokens.begin(), g.r.tokens.end(), on.r.tokens.begin()));
}

TEST_CASE("generate: a full context ends generation and a prompt that does not fit is an Error", "[runtime][model]") {
  const Loaded* l = loaded();
  if (!l) return;
  const auto ids = l->tok.encode(kStory, true, true);
  const int n_prompt = static_cast<int>(ids.size());
  REQUIRE(n_prompt > 8);

  // Room for 5 more positions: 5 tokens evaluated plus the last one sampled from the final logits.
  const Run full = run(*l, kStory, greedy(), max_tokens(64, false), n_prompt + 5);
  REQUIRE(full.r.stop == StopReason::context_full);
  REQUIRE(full.r.tokens.size() == 6);

  models::LlamaContext ctx(l->model, n_prompt - 1, 32);
  sample::Sampler sampler(greedy(), l->model->config().n_vocab);
  const auto cfg = max_tokens(4);
  REQUIRE_THROWS_AS(runtime::generate(ctx, l->tok, sampler, ids, cfg, {}), Error);
  REQUIRE_THROWS_WITH(runtime::generate(ctx, l->tok, sampler, ids, cfg, {}),
                      Contains("prompt of " + std::to_string(n_prompt) + " tokens") &&
                          Contains("longer than the context of " + std::to_string(n_prompt - 1) + " tokens"));
  REQUIRE(ctx.n_past() == 0);  // refused before anything was evaluated

  // What the cache already holds counts too.
  models::LlamaContext ctx2(l->model, 2 * n_prompt - 1, 32);
  ctx2.eval(ids);
  REQUIRE_THROWS_WITH(runtime::generate(ctx2, l->tok, sampler, ids, cfg, {}),
                      Contains("after " + std::to_string(n_prompt) + " in the cache"));
  REQUIRE_THROWS_WITH(runtime::generate(ctx2, l->tok, sampler, std::span<const int32_t>(), cfg, {}),
                      Contains("empty prompt"));
}
