// Speculative decoding: the acceptance rule keeps the target's distribution
// (chi-square against p, and against q to show the test can fail), greedy
// speculative output is plain greedy output token for token with every
// drafter, sampled speculative output follows the target's distribution on the
// real model, and a draft with another vocabulary is refused.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../test_default_model.hpp"
#include "../test_util.hpp"
#include "tessera/io/tokenizer.hpp"
#include "tessera/io/tokenizer_gguf.hpp"
#include "tessera/models/llama_context.hpp"
#include "tessera/runtime/generator.hpp"
#include "tessera/runtime/speculative.hpp"

using namespace tessera;

namespace {

// Pearson's chi-square of counts against probabilities (bins with expectation < 5 pooled).
double chi_square(const std::map<int32_t, int>& counts, const std::map<int32_t, double>& probs, int n, int& dof) {
  double chi = 0, pooled_obs = 0, pooled_exp = 0;
  dof = -1;
  for (const auto& [id, p] : probs) {
    const double e = p * n;
    const double o = counts.count(id) ? counts.at(id) : 0;
    if (e < 5) {
      pooled_obs += o;
      pooled_exp += e;
      continue;
    }
    chi += (o - e) * (o - e) / e;
    ++dof;
  }
  if (pooled_exp >= 5) {
    chi += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / pooled_exp;
    ++dof;
  }
  for (const auto& [id, c] : counts)
    if (!probs.count(id)) chi += 1e9 * c;  // a token p cannot produce
  return chi;
}

// Significance 1e-4: a correct rule fails one run in 10^4 (test::chi2_critical, z = 3.719).
double chi_limit(int dof) {
  REQUIRE(dof >= 1);
  return test::chi2_critical(static_cast<size_t>(dof), 3.719016);
}

int32_t draw_from(const std::vector<sample::Candidate>& d, sample::Rng& rng) {
  const double u = rng.uniform_double();
  double mass = 0;
  for (const auto& c : d) {
    mass += c.prob;
    if (u < mass) return c.id;
  }
  return d.back().id;
}

}  // namespace

TEST_CASE("speculative acceptance: the token that comes out is distributed as p", "[runtime][speculative]") {
  // p and q overlap partly; q puts mass where p has none (id 5), p where q has none (id 0).
  const std::vector<sample::Candidate> p = {{0, 0, 0.30f}, {1, 0, 0.25f}, {2, 0, 0.20f}, {3, 0, 0.15f}, {4, 0, 0.10f}};
  const std::vector<sample::Candidate> q = {{1, 0, 0.10f}, {2, 0, 0.40f}, {3, 0, 0.05f}, {4, 0, 0.25f}, {5, 0, 0.20f}};
  std::map<int32_t, double> pp, qq;
  for (const auto& c : p) pp[c.id] = c.prob;
  for (const auto& c : q) qq[c.id] = c.prob;
  sample::Rng rng(11);
  const int n = 200000;
  std::map<int32_t, int> out, drafted;
  int accepted = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t x = draw_from(q, rng);
    ++drafted[x];
    const auto v = runtime::verify_token(p, x, q, rng);
    ++out[v.token];
    accepted += v.accepted;
  }
  int dof = 0;
  const double chi = chi_square(out, pp, n, dof);
  INFO("chi-square " << chi << " with " << dof << " degrees of freedom");
  REQUIRE(chi < chi_limit(dof));
  // The acceptance rate is sum min(p, q) = 0.1 + 0.2 + 0.05 + 0.1 = 0.45.
  REQUIRE(static_cast<double>(accepted) / n == Approx(0.45).margin(0.005));
  // The drafted tokens follow q, not p: the same statistic rejects them (the test can fail).
  REQUIRE(chi_square(drafted, pp, n, dof) > 1000);

  // A deterministic drafter (q one-hot at x, whatever x) also gives p.
  out.clear();
  for (int i = 0; i < n; ++i) ++out[runtime::verify_token(p, 2, {}, rng).token];
  REQUIRE(chi_square(out, pp, n, dof) < chi_limit(dof));
}

TEST_CASE("lookup drafter: the continuation of the latest match of the longest trailing n-gram", "[runtime][speculative]") {
  runtime::LookupDrafter d(3, 1);
  runtime::Draft out;
  const std::vector<int32_t> h = {5, 6, 7, 8, 9, 1, 5, 6, 7, 3, 4, 6, 7};
  d.propose(h, 4, out);  // "6 7" occurs at 1 and 7 (latest: 7 -> 3 4 6 7), "5 6 7"? the tail is "4 6 7": no
  REQUIRE(out.tokens == std::vector<int32_t>{3, 4, 6, 7});
  d.propose(h, 2, out);
  REQUIRE(out.tokens == std::vector<int32_t>{3, 4});
  d.propose(std::vector<int32_t>{1, 2, 3}, 4, out);
  REQUIRE(out.tokens.empty());
  REQUIRE_THROWS_WITH(runtime::LookupDrafter(1, 2), Catch::Contains("n-grams of 2..1"));
}


TEST_CASE("speculative greedy output is plain greedy output, token for token, with every drafter",
          "[runtime][speculative][model]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  const std::vector<std::string> prompts = {
      "The capital of France is",
      "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n# the same function, iterative:\ndef fib(n):",
      "List the days of the week: Monday, Tuesday,",
      "<|im_start|>user\nRepeat after me: the quick brown fox jumps over the lazy dog.<|im_end|>\n<|im_start|>assistant\n",
  };
  sample::SamplerParams greedy;
  greedy.temperature = 0.f;
  runtime::GenerationConfig cfg;
  cfg.max_new_tokens = 40;
  cfg.stop_at_eog = false;
  int64_t accepted = 0;
  for (const auto& prompt : prompts) {
    const auto ids = m.tok->encode(prompt, true, true);
    models::LlamaContext plain_ctx(m.model, 256, 64);
    sample::Sampler s0(greedy, m.model->config().n_vocab);
    const auto plain = runtime::generate(plain_ctx, *m.tok, s0, ids, cfg, {});
    std::vector<std::unique_ptr<runtime::Drafter>> drafters;
    drafters.push_back(std::make_unique<runtime::LookupDrafter>(3, 1));
    drafters.push_back(std::make_unique<runtime::ModelDrafter>(
        std::make_unique<models::LlamaContext>(m.model, 256, 64, kv::KvSpec{}, 10), greedy, "self 10"));
    drafters.push_back(std::make_unique<runtime::ModelDrafter>(std::make_unique<models::LlamaContext>(m.model, 256, 64),
                                                               greedy, "the model itself"));
    for (auto& d : drafters) {
      for (int draft_max : {3, 15}) {
        INFO(prompt << " / " << d->describe() << " / draft-max " << draft_max);
        models::LlamaContext ctx(m.model, 256, 64);
        sample::Sampler s1(greedy, m.model->config().n_vocab);
        runtime::SpeculativeConfig spec;
        spec.draft_max = draft_max;
        const auto r = runtime::speculative_generate(ctx, *m.tok, s1, *d, ids, cfg, spec, {});
        REQUIRE(r.tokens == plain.tokens);
        REQUIRE(r.text == plain.text);
        REQUIRE(ctx.n_past() <= static_cast<int>(ids.size() + r.tokens.size()));
        if (d->describe() == "the model itself") REQUIRE(r.accepted == r.drafted);  // its own drafts always pass
        accepted += r.accepted;
      }
    }
  }
  REQUIRE(accepted > 0);
}

TEST_CASE("speculative sampling keeps the target's distribution on the real model", "[runtime][speculative][model]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  // The second generated token, given the first: its exact distribution is the sampler's p after
  // prompt + first token; speculative runs draft it (self-speculation, sampled q) and verify.
  sample::SamplerParams sp;
  sp.temperature = 1.f;
  sp.top_k = 6;
  sp.top_p = 1.f;
  sp.min_p = 0.f;
  const auto ids = m.tok->encode("My favourite colour is", true, true);
  models::LlamaContext ref(m.model, 64, 16);
  sample::Sampler s(sp, m.model->config().n_vocab);
  const auto l0 = ref.eval(ids);
  const auto first = static_cast<int32_t>(std::max_element(l0.begin(), l0.end()) - l0.begin());  // the likeliest
  std::map<int32_t, double> p;
  for (const auto& c : s.distribution(ref.eval(std::span<const int32_t>(&first, 1))).kept()) p[c.id] = c.prob;

  models::LlamaContext ctx(m.model, 64, 16);
  ctx.eval(std::span<const int32_t>(ids));  // the prompt once; each run restarts from here
  runtime::ModelDrafter drafter(std::make_unique<models::LlamaContext>(m.model, 64, 16, kv::KvSpec{}, 8), sp, "self 8");
  runtime::GenerationConfig cfg;
  cfg.max_new_tokens = 2;
  cfg.stop_at_eog = false;
  std::map<int32_t, int> counts;
  int n = 0;
  int64_t drafted = 0;
  for (uint64_t seed = 1; n < 300 && seed < 3000; ++seed) {
    sp.seed = seed;
    sample::Sampler run(sp, m.model->config().n_vocab);
    ctx.truncate(static_cast<int>(ids.size()) - 1);
    runtime::SpeculativeConfig spec;
    spec.draft_max = 2;
    const auto r = runtime::speculative_generate(ctx, *m.tok, run, drafter,
                                                 std::span<const int32_t>(ids).last(1), cfg, spec, {});
    drafted += r.drafted;
    if (r.tokens.size() == 2 && r.tokens[0] == first) {
      ++counts[r.tokens[1]];
      ++n;
    }
  }
  REQUIRE(n >= 100);
  REQUIRE(drafted > 0);
  int dof = 0;
  const double chi = chi_square(counts, p, n, dof);
  INFO("chi-square " << chi << " over " << n << " runs, " << dof << " degrees of freedom");
  REQUIRE(chi < chi_limit(dof));
}

TEST_CASE("a draft model with another vocabulary is refused by name", "[runtime][speculative]") {
  io::TokenizerSpec a, b;
  a.tokens = {"a", "b", "c"};
  b.tokens = {"a", "x", "c"};
  const auto ta = io::Tokenizer::from_spec(a), tb = io::Tokenizer::from_spec(b);
  REQUIRE_THROWS_WITH(runtime::check_same_vocabulary(ta, tb), Catch::Contains("token 1 is 'x', the target's is 'b'"));
  b.tokens = {"a", "b"};
  REQUIRE_THROWS_WITH(runtime::check_same_vocabulary(ta, io::Tokenizer::from_spec(b)),
                      Catch::Contains("its vocabulary has 2 tokens, the target's 3"));
}
