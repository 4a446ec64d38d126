// Fidelity against llama.cpp: for each golden prompt (tests/data/golden, see
// its README for how the data was made) the default model reproduces
// llama.cpp's prompt tokenization, its last-position logits within a stated
// tolerance, and its first 32 greedy tokens exactly.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "../test_models.hpp"
#include "tessera/io/tokenizer.hpp"
#include "tessera/io/tokenizer_gguf.hpp"
#include "tessera/models/llama_context.hpp"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

struct Golden {
  std::string name, prompt;
  std::vector<int32_t> prompt_ids, greedy_ids;
  std::vector<float> logits;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::istringstream is(s);
  std::vector<int32_t> ids;
  for (int32_t v; is >> v;) ids.push_back(v);
  return ids;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

std::vector<Golden> load_goldens(const fs::path& dir) {
  std::vector<Golden> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".tokens") continue;
    Golden g;
    g.name = e.path().stem().string();
    std::ifstream in(e.path());
    for (std::string line; std::getline(in, line);) {
      auto value = [&](const char* key) { return line.substr(std::string(key).size()); };
      if (line.rfind("prompt_hex: ", 0) == 0) g.prompt = from_hex(value("prompt_hex: "));
      else if (line.rfind("prompt_ids: ", 0) == 0) g.prompt_ids = parse_ids(value("prompt_ids: "));
      else if (line.rfind("greedy_ids: ", 0) == 0) g.greedy_ids = parse_ids(value("greedy_ids: "));
    }
    std::ifstream lf(dir / (g.name + ".logits.f32"), std::ios::binary);
    lf.seekg(0, std::ios::end);
    g.logits.resize(static_cast<size_t>(lf.tellg()) / sizeof(float));
    lf.seekg(0);
    lf.read(reinterpret_cast<char*>(g.logits.data()), static_cast<std::streamsize>(g.logits.size() * sizeof(float)));
    out.push_back(std::move(g));
  }
  std::sort(out.begin(), out.end(), [](const Golden& a, const Golden& b) { return a.name < b.name; });
  return out;
}

std::vector<int32_t> top_k(std::span<const float> x, int k) {
  std::vector<int32_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

}  // namespace

TEST_CASE("SmolLM2-135M Q4_1 reproduces llama.cpp: tokens, logits, 32 greedy steps", "[model][golden]") {
  const auto path = test::find_test_model("SmolLM2-135M-Instruct.Q4_1.gguf");
  if (!path) {
    WARN("skipped: SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/fetch-model)");
    return;
  }
  // llama.cpp differs from itself between AVX2 and AVX-512 builds by as much
  // as we differ from it (golden/*-avx512/README.md), so compare against the
  // set made on the instruction set this build targets.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  const char* set = "smollm2-135m-instruct-q4_1-avx512";
#else
  const char* set = "smollm2-135m-instruct-q4_1";
#endif
  const auto goldens = load_goldens(fs::path(TESSERA_TEST_DATA_DIR) / "golden" / set);
  REQUIRE(goldens.size() >= 3);
  const auto model = models::LlamaModel::load(*path);
  const auto tok = io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(model->file().meta()));
  models::LlamaContext ctx(model, 256, 64);
  size_t total_agreed = 0, total_golden = 0;
  for (const Golden& g : goldens) {
    INFO("prompt '" << g.name << "'");
    REQUIRE(tok.encode(g.prompt, true, true) == g.prompt_ids);
    ctx.reset();
    auto logits = ctx.eval(g.prompt_ids);
    REQUIRE(logits.size() == g.logits.size());
    double max_diff = 0;
    for (size_t i = 0; i < logits.size(); ++i) max_diff = std::max(max_diff, std::fabs(double(logits[i]) - g.logits[i]));
    const auto ours = top_k(logits, 10), theirs = top_k(g.logits, 10);
    const auto overlap = std::count_if(ours.begin(), ours.end(), [&](int32_t t) {
      return std::find(theirs.begin(), theirs.end(), t) != theirs.end();
    });
    WARN(g.name << ": max |logit diff| = " << max_diff << ", top-10 overlap " << overlap << "/10");
    // Both sides quantize activations to 8 bits with the same block formats,
    // but sum in different orders, and this model amplifies rounding: measured
    // here, 7.6e-6 on one prompt and 0.6-0.7 on the others, while llama.cpp's
    // own default (f16 KV) and precise (f32 KV) modes differ by up to 1.24 on
    // the same prompt. 1.5 bounds that spread; a real error (a wrong layer,
    // rope or mask) moves logits by whole units and scrambles the top 10.
    CHECK(max_diff < 1.5);
    CHECK(overlap >= 8);
    // Greedy decoding, checked at every one of the 32 steps along llama.cpp's
    // own trajectory (its token is fed back whatever ours would have been, so
    // one near tie does not end the comparison): llama.cpp's token must be
    // our argmax, or within kNearTie of it. This model is numerically
    // sensitive (activations of ~2e4 in the residual stream pass 8-bit
    // activation quantization), so rounding moves logits by tenths: llama.cpp
    // differs from itself across AVX2 / AVX-512 builds by up to 0.75 in a
    // logit (golden/*-avx512/README.md), and the gap between two candidates by
    // up to twice that. A wrong block moves logits by whole units.
    constexpr float kNearTie = 1.0f;
    size_t agreed = 0;
    float worst_gap = 0.f;
    for (size_t i = 0; i <= g.greedy_ids.size(); ++i) {
      const int32_t want = i == 0 ? theirs[0] : g.greedy_ids[i - 1];
      if (i > 0) {
        REQUIRE(want == g.greedy_ids[i - 1]);
        logits = ctx.eval(std::span<const int32_t>(&g.greedy_ids[i - 1], 1));
      }
      if (i == g.greedy_ids.size()) break;
      const int32_t best = top_k(logits, 1)[0], ref = g.greedy_ids[i];
      const float gap = logits[best] - logits[ref];
      worst_gap = std::max(worst_gap, gap);
      INFO("step " << i << ": llama.cpp's token " << ref << " is " << gap << " below our argmax " << best);
      CHECK(gap < kNearTie);
      agreed += best == ref;
    }
    WARN(g.name << ": argmax equals llama.cpp's greedy token at " << agreed << "/" << g.greedy_ids.size()
                << " steps (teacher-forced), largest gap " << worst_gap);
    total_agreed += agreed;
    total_golden += g.greedy_ids.size();
  }
  // Near ties excuse a few steps, not a run where many differ.
  CHECK(10 * total_agreed >= 9 * total_golden);
}
