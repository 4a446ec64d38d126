// Decode speed of LlamaCudaContext with the small-kernel fusions
// (CudaContextOptions::fuse_norm, fuse_swiglu, fuse_rope) each on alone, all
// off and all on, in one process on one model file:
//
//   bench_cuda_decode MODEL.gguf [ROUNDS=5] [STEPS=128]
//
// Each variant holds its own context (weights uploaded once each, so the
// file must fit the GPU five times over; a 7B Q8_0 takes 36 GB). A round
// times STEPS greedy single-token steps of every variant from an empty cache
// (tessera-llama --bench's tg128), the variants in turn, so a drift of the
// clocks spreads over all of them; the table gives each variant's median over
// the rounds, its spread, and its ratio to all-off. Every variant runs once
// untimed first (kernels loaded, the decode graph captured). Not a Google
// Benchmark program: it needs a model file.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tessera/models/llama_cuda.hpp"

using namespace tessera;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [ROUNDS=5] [STEPS=128]\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  const int rounds = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;
  const int steps = argc > 3 ? std::max(1, std::atoi(argv[3])) : 128;
  try {
    if (cuda::device_count() == 0) {
      std::printf("skipped: no GPU visible\n");
      return 0;
    }
    struct Variant {
      const char* name;
      bool norm, swiglu, rope;
    };
    const std::vector<Variant> variants = {{"all off (separate kernels)", false, false, false},
                                           {"add + rms_norm + quantizer", true, false, false},
                                           {"SwiGLU + quantizer", false, true, false},
                                           {"RoPE + kv_store", false, false, true},
                                           {"all on", true, true, true}};
    const auto model = models::LlamaModel::load(path);
    std::vector<std::unique_ptr<models::LlamaCudaContext>> ctx;
    for (const Variant& v : variants) {
      models::CudaContextOptions o;
      o.fuse_norm = v.norm;
      o.fuse_swiglu = v.swiglu;
      o.fuse_rope = v.rope;
      ctx.push_back(std::make_unique<models::LlamaCudaContext>(model, steps + 8, 8, o));
    }
    auto run = [&](models::LlamaCudaContext& c) {
      c.reset();
      const auto t0 = std::chrono::steady_clock::now();
      int32_t t = 1;
      for (int i = 0; i < steps; ++i) t = c.eval_greedy(std::span<const int32_t>(&t, 1));
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    for (auto& c : ctx) run(*c);
    std::vector<std::vector<double>> tps(variants.size());
    for (int r = 0; r < rounds; ++r)
      for (size_t v = 0; v < variants.size(); ++v) tps[v].push_back(steps / run(*ctx[v]));
    const std::string name = path.substr(path.find_last_of('/') + 1);
    std::printf("| %s, %d x %d steps | tok/s (median) | min | max | ms/token | vs all off |\n|---|---|---|---|---|---|\n",
                name.c_str(), rounds, steps);
    double base = 0;
    for (size_t v = 0; v < variants.size(); ++v) {
      auto t = tps[v];
      std::sort(t.begin(), t.end());
      const double med = t[t.size() / 2];
      if (v == 0) base = med;
      std::printf("| %s | %.1f | %.1f | %.1f | %.3f | %.3f |\n", variants[v].name, med, t.front(), t.back(),
                  1000.0 / med, med / base);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_decode: %s\n", e.what());
    return 1;
  }
}
