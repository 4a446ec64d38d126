// The sampling chain on a made-up next-word distribution: what each processor
// keeps, then a seeded Sampler drawing from it, with and without the
// repetition penalty.
//
//   example_sampler [seed]
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "tessera/sample/sampler.hpp"

using namespace tessera::sample;

namespace {

// "The cat sat on the ..." — a tiny vocabulary and logits a model might give.
const std::vector<std::string> kWords = {"mat", "sofa", "floor", "roof", "bed", "chair", "table",
                                         "moon", "piano", "keyboard", "cat", "the"};
const std::vector<float> kLogits = {6.0f, 5.1f, 4.8f, 3.9f, 3.7f, 3.5f, 3.0f, 0.5f, 0.2f, 1.1f, 2.0f, -1.0f};

void show(const char* step, const Candidates& c) {
  std::printf("%-26s", step);
  for (const auto& cand : c.kept()) std::printf(" %s(%.3f)", kWords[static_cast<size_t>(cand.id)].c_str(), cand.prob);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 42;

  // The processors one at a time, as Sampler chains them. softmax() before
  // each show() only to print probabilities; the chain itself needs it once.
  Candidates c;
  fill_candidates(kLogits, c);
  softmax(c);
  show("all", c);
  temperature(c, 0.8f);
  softmax(c);
  show("temperature 0.8", c);
  top_k(c, 8);
  softmax(c);
  show("top-k 8", c);
  top_p(c, 0.9f);
  show("top-p 0.9 (before renorm)", c);
  min_p(c, 0.1f);
  softmax(c);
  show("min-p 0.1, renormalised", c);

  // The same chain as one Sampler: 1000 draws from the fixed distribution.
  SamplerParams p;
  p.temperature = 0.8f;
  p.top_k = 8;
  p.top_p = 0.9f;
  p.min_p = 0.1f;
  p.seed = seed;
  Sampler sampler(p, static_cast<int>(kWords.size()));
  std::map<std::string, int> counts;
  for (int i = 0; i < 1000; ++i) ++counts[kWords[static_cast<size_t>(sampler.sample(kLogits))]];
  std::printf("\n1000 draws, seed %llu:", static_cast<unsigned long long>(seed));
  for (const auto& [word, n] : counts) std::printf(" %s=%d", word.c_str(), n);
  std::printf("\n");

  // Eight draws, each accepted into the penalty window: a penalty of 1.5
  // pushes the draws away from words already used and over more of the list.
  for (float penalty : {1.0f, 1.5f}) {
    p.repeat_penalty = penalty;
    Sampler s(p, static_cast<int>(kWords.size()));
    std::printf("repeat_penalty %.1f:", penalty);
    for (int i = 0; i < 8; ++i) {
      const int32_t t = s.sample(kLogits);
      s.accept(t);
      std::printf(" %s", kWords[static_cast<size_t>(t)].c_str());
    }
    std::printf("\n");
  }
  return 0;
}
