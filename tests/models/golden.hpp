// Golden-set comparison shared by the model tests: a folder of llama.cpp
// outputs (scripts/make-golden: per prompt its token ids, last-position logits
// and 32 greedy tokens) checked against tessera's LlamaContext.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "tessera/io/tokenizer.hpp"
#include "tessera/io/tokenizer_gguf.hpp"
#include "tessera/models/llama_context.hpp"

namespace tessera::test {

namespace golden_detail {
namespace fs = std::filesystem;


struct Golden {
  std::string name, prompt;
  std::vector<int32_t> prompt_ids, greedy_ids;
  std::vector<int32_t> ids;  // which logits are known: all (ids empty) or these, highest first
  std::vector<float> logits;
};

template <class T>
std::vector<T> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  f.seekg(0, std::ios::end);
  std::vector<T> v(static_cast<size_t>(f.tellg()) / sizeof(T));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
  return v;
}

inline std::vector<int32_t> parse_ids(const std::string& s) {
  std::istringstream is(s);
  std::vector<int32_t> ids;
  for (int32_t v; is >> v;) ids.push_back(v);
  return ids;
}

inline std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

inline std::vector<Golden> load_goldens(const fs::path& dir) {
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
    if (fs::exists(dir / (g.name + ".logits.f32"))) {
      g.logits = read_all<float>(dir / (g.name + ".logits.f32"));
    } else {  // (int32 id, float32 logit) pairs, highest first (large vocabularies)
      const auto pairs = read_all<int32_t>(dir / (g.name + ".logits.top"));
      for (size_t i = 0; i + 1 < pairs.size(); i += 2) {
        g.ids.push_back(pairs[i]);
        float v;
        std::memcpy(&v, &pairs[i + 1], sizeof v);
        g.logits.push_back(v);
      }
    }
    out.push_back(std::move(g));
  }
  std::sort(out.begin(), out.end(), [](const Golden& a, const Golden& b) { return a.name < b.name; });
  return out;
}

inline std::vector<int32_t> top_k(std::span<const float> x, int k) {
  std::vector<int32_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

}  // namespace golden_detail

// The tolerances of one model against its golden set (see each call for why).
struct Tolerance {
  double max_logit_diff;  // largest |ours - llama.cpp's| over the known logits at the prompt's end
  float near_tie;         // llama.cpp's greedy token may sit this far below our argmax
};

/// Checks the model at model_path against the golden folder `set` (at least
/// min_prompts prompts): the same prompt ids, logits within tol, and at every
/// teacher-forced greedy step llama.cpp's token our argmax or within
/// tol.near_tie of it, 90% of them exactly.
inline void check_against_golden(const std::string& model_path, const std::filesystem::path& set, Tolerance tol,
                                 size_t min_prompts = 3) {
  using namespace golden_detail;
  const auto goldens = load_goldens(set);
  REQUIRE(goldens.size() >= min_prompts);
  const auto model = models::LlamaModel::load(model_path);
  const auto tok = io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(model->file().meta()));
  models::LlamaContext ctx(model, 256, 64);
  size_t total_agreed = 0, total_golden = 0;
  for (const Golden& g : goldens) {
    INFO("prompt '" << g.name << "'");
    REQUIRE(tok.encode(g.prompt, true, true) == g.prompt_ids);
    ctx.reset();
    auto logits = ctx.eval(g.prompt_ids);
    double max_diff = 0, sum_diff = 0;
    std::vector<int32_t> theirs;
    if (g.ids.empty()) REQUIRE(logits.size() == g.logits.size());
    for (size_t i = 0; i < g.logits.size(); ++i) {
      const double d = std::fabs(double(logits[g.ids.empty() ? i : static_cast<size_t>(g.ids[i])]) - g.logits[i]);
      max_diff = std::max(max_diff, d);
      sum_diff += d;
    }
    if (g.ids.empty()) theirs = top_k(g.logits, 10);
    else theirs.assign(g.ids.begin(), g.ids.begin() + 10);
    const auto ours = top_k(logits, 10);
    const auto overlap = std::count_if(ours.begin(), ours.end(), [&](int32_t t) {
      return std::find(theirs.begin(), theirs.end(), t) != theirs.end();
    });
    WARN(g.name << ": max |logit diff| = " << max_diff << ", mean " << sum_diff / double(g.logits.size())
                << " (top logit " << g.logits[g.ids.empty() ? static_cast<size_t>(theirs[0]) : 0] << "), top-10 overlap "
                << overlap << "/10");
    CHECK(max_diff < tol.max_logit_diff);
    CHECK(overlap >= 8);
    // Greedy decoding, checked at every one of the 32 steps along llama.cpp's
    // own trajectory (its token is fed back whatever ours would have been, so
    // one near tie does not end the comparison): llama.cpp's token must be
    // our argmax, or within tol.near_tie of it.
    size_t agreed = 0;
    float worst_gap = 0.f;
    for (size_t i = 0; i <= g.greedy_ids.size(); ++i) {
      if (i > 0) logits = ctx.eval(std::span<const int32_t>(&g.greedy_ids[i - 1], 1));
      if (i == g.greedy_ids.size()) break;
      const int32_t best = top_k(logits, 1)[0], ref = g.greedy_ids[i];
      const float gap = logits[best] - logits[ref];
      worst_gap = std::max(worst_gap, gap);
      INFO("step " << i << ": llama.cpp's token " << ref << " is " << gap << " below our argmax " << best);
      CHECK(gap < tol.near_tie);
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


}  // namespace tessera::test
