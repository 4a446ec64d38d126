// Beam search against Hugging Face transformers' generate(num_beams=...):
// goldens made by scripts/make-beam-golden (tests/data/beam/). On scripted
// logits the beams, their order and their scores must match exactly; on the
// real model (transformers dequantizes the weights and computes in f32, tessera
// quantizes activations) the best hypotheses that matched when the goldens
// were made must keep matching.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../test_default_model.hpp"
#include "tessera/kv/kv.hpp"
#include "tessera/models/llama_context.hpp"
#include "tessera/runtime/beam_search.hpp"

using namespace tessera;

namespace {

struct GoldenCase {
  std::string name;
  runtime::BeamSearchConfig cfg;
  std::vector<int32_t> prompt;
  std::vector<runtime::BeamHypothesis> hyps;
};

std::vector<GoldenCase> read_cases(const std::string& file) {
  std::ifstream in(std::string(TESSERA_TEST_DATA_DIR) + "/beam/" + file);
  REQUIRE(in.good());
  std::vector<GoldenCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string kind;
    ss >> kind;
    if (kind == "case") {
      cases.emplace_back();
      ss >> cases.back().name;
    } else if (kind == "config") {
      auto& c = cases.back().cfg;
      std::string key, es;
      int eos = 0;
      ss >> key >> c.num_beams >> key >> c.length_penalty >> key >> es >> key >> c.max_new_tokens >> key >> eos;
      c.early_stopping = es == "true" ? runtime::EarlyStopping::on
                                      : es == "never" ? runtime::EarlyStopping::never : runtime::EarlyStopping::heuristic;
      c.eos = {eos};
    } else if (kind == "prompt") {
      for (int32_t t; ss >> t;) cases.back().prompt.push_back(t);
    } else if (kind == "hyp") {
      runtime::BeamHypothesis h;
      ss >> h.score;
      for (int32_t t; ss >> t;) h.tokens.push_back(t);
      cases.back().hyps.push_back(h);
    }
  }
  for (auto& c : cases) c.cfg.num_return = static_cast<int>(c.hyps.size());
  return cases;
}

// The scripted "model" of scripts/make-beam-golden: logits of (last token, position), in double, then float.
constexpr int kV = 11, kEos = 1;
float scripted_logit(int last, int pos, int v) {
  double x = 3.0 * std::sin(1.7 * last + 0.9 * v + 0.31 * pos) + 0.5 * std::cos(0.7 * v * pos + 0.2 * last);
  if (v == kEos) x += 0.35 * pos - 2.0;
  return static_cast<float>(x);
}

}  // namespace

TEST_CASE("beam search equals transformers on scripted logits, every configuration", "[runtime][beam]") {
  const auto cases = read_cases("scripted.txt");
  REQUIRE(cases.size() == 144);
  for (const auto& c : cases) {
    INFO(c.name);
    std::vector<std::vector<int32_t>> seqs;  // each running beam's full sequence
    std::vector<std::vector<float>> rows;
    auto next = [&](std::span<const int> parents, std::span<const int32_t> tokens) {
      if (parents.empty()) {
        seqs = {c.prompt};
      } else {
        std::vector<std::vector<int32_t>> grown;
        for (size_t i = 0; i < parents.size(); ++i) {
          grown.push_back(seqs[static_cast<size_t>(parents[i])]);
          grown.back().push_back(tokens[i]);
        }
        seqs = std::move(grown);
      }
      rows.assign(seqs.size(), std::vector<float>(kV));
      std::vector<std::span<const float>> out;
      for (size_t i = 0; i < seqs.size(); ++i) {
        const int pos = static_cast<int>(seqs[i].size()) - 1;
        for (int v = 0; v < kV; ++v) rows[i][static_cast<size_t>(v)] = scripted_logit(seqs[i].back(), pos, v);
        out.emplace_back(rows[i]);
      }
      return out;
    };
    const auto got = runtime::beam_search(kV, c.cfg, next);
    REQUIRE(got.size() == c.hyps.size());
    for (size_t k = 0; k < got.size(); ++k) {
      INFO("hypothesis " << k);
      REQUIRE(got[k].tokens == c.hyps[k].tokens);
      // float32 log_softmax in another summation order than torch's: a few ulps of the sum
      REQUIRE(got[k].score == Approx(c.hyps[k].score).epsilon(1e-5));
    }
  }
}

TEST_CASE("beam search on the real model: transformers' best hypothesis where the two models agree", "[runtime][beam][model]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  const auto& model = m.model;
  const auto cases = read_cases("smollm2.txt");
  REQUIRE(!cases.empty());
  // Score a token sequence under tessera's model as beam search scores it.
  auto rescore = [&](const std::vector<int32_t>& prompt, const std::vector<int32_t>& gen, float lp) {
    models::LlamaContext sc(model, 128, 8);  // batches of <= 16 rows: decode's exact logits
    double sum = 0;
    std::vector<float> lsm(static_cast<size_t>(model->config().n_vocab));
    std::span<const float> row = sc.eval(prompt);
    for (int32_t t : gen) {
      runtime::log_softmax_f32(row, lsm);
      sum += lsm[static_cast<size_t>(t)];
      row = sc.eval(std::span<const int32_t>(&t, 1));
    }
    return sum / std::pow(static_cast<double>(gen.size()), static_cast<double>(lp));
  };
  // transformers dequantizes the weights and runs f32 activations; tessera quantizes activations to
  // 8 bits (as llama.cpp does), and the two models' log-probs differ by ~0.03 nats per token, so beams
  // part where hypotheses are that close; which cases part also moves with compiler flags (FMA
  // contraction). When the goldens were made, 7 of 12 best hypotheses were identical in a -O2 build,
  // 5 in -O3. What must hold in every build: each hypothesis's score is its tokens' own score under
  // tessera's model, hypotheses come best first, and a clear share equals transformers'.
  int same = 0;
  for (const auto& c : cases) {
    INFO(c.name);
    models::LlamaContext ctx(model, 128, 32, kv::parse_kv_spec("paged:16"));
    const auto got = runtime::beam_search(ctx, c.prompt, c.cfg);
    REQUIRE(ctx.n_past() == 0);  // the caller's context is left as it was
    REQUIRE(got.size() == c.hyps.size());
    for (size_t k = 0; k < got.size(); ++k) {
      INFO("hypothesis " << k);
      if (k > 0) REQUIRE(got[k].score <= got[k - 1].score);
      // float32 running sums vs a double re-sum of the same float32 log-probs
      REQUIRE(got[k].score == Approx(rescore(c.prompt, got[k].tokens, c.cfg.length_penalty)).margin(1e-3));
      const bool ends = got[k].tokens.back() == c.cfg.eos[0];
      REQUIRE((ends || static_cast<int>(got[k].tokens.size()) == c.cfg.max_new_tokens));
    }
    same += got[0].tokens == c.hyps[0].tokens;
  }
  WARN(same << " of " << cases.size() << " best hypotheses equal transformers' on the real model");
  REQUIRE(same >= 4);
}

TEST_CASE("beam search: bad configurations are an Error", "[runtime][beam]") {
  runtime::BeamSearchConfig c;
  c.num_return = 5;
  auto none = [](std::span<const int>, std::span<const int32_t>) { return std::vector<std::span<const float>>{}; };
  REQUIRE_THROWS_WITH(runtime::beam_search(10, c, none), Catch::Contains("5 returned"));
  c.num_return = 1;
  c.num_beams = 8;
  REQUIRE_THROWS_WITH(runtime::beam_search(1, c, none), Catch::Contains("need a vocabulary of at least"));
}
