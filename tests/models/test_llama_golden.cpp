// Fidelity against llama.cpp: for each golden prompt (tests/data/golden, see
// each set's README for how the data was made) the default model and Gemma 3
// 270M reproduce llama.cpp's prompt tokenization, its last-position logits
// within a stated tolerance, and its first 32 greedy tokens (near ties aside).
#include <catch2/catch.hpp>

#include <filesystem>

#include "../test_models.hpp"
#include "golden.hpp"

using namespace tessera;
namespace fs = std::filesystem;
using test::check_against_golden;

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
  // Both sides quantize activations to 8 bits with the same block formats,
  // but sum in different orders, and this model amplifies rounding: measured
  // here, 7.6e-6 on one prompt and 0.6-0.7 on the others, while llama.cpp's
  // own default (f16 KV) and precise (f32 KV) modes differ by up to 1.24 on
  // the same prompt. 1.5 bounds that spread; a real error (a wrong layer,
  // rope or mask) moves logits by whole units and scrambles the top 10.
  // Near ties: this model carries activations of ~2e4 in the residual stream
  // through 8-bit activation quantization, so rounding moves logits by tenths:
  // llama.cpp differs from itself across AVX2 / AVX-512 builds by up to 0.75
  // in a logit (golden/*-avx512/README.md), and the gap between two candidates
  // by up to twice that. A wrong block moves logits by whole units.
  check_against_golden(*path, fs::path(TESSERA_TEST_DATA_DIR) / "golden" / set, {1.5, 1.0f});
}

TEST_CASE("Gemma 3 270M Q4_K_M reproduces llama.cpp: tokens, logits, 32 greedy steps", "[model][golden][gemma3]") {
  const auto path = test::find_test_model("gemma-3-270m-q4_k_m.gguf");
  if (!path) {
    WARN("skipped: gemma-3-270m-q4_k_m.gguf not found (run scripts/fetch-model gemma3-270m)");
    return;
  }
  // Measured here: largest difference 0.70-0.83 on four prompts, 1.41 on the
  // chat prompt, where it is almost a uniform shift of every logit (mean
  // signed difference -0.91; softmax ignores it).  Both sides quantize
  // activations to 8 bits for the q5_0/q4_K/q6_K/q8_0 weights and sum in
  // different orders; llama.cpp's greedy text parts from itself on 5 of 8
  // prompts of this model between its two attention paths.  A wrong block (norm placement, RoPE base of the local layers,
  // window, embedding scale) moves logits by whole units and the top 10 with them.
  check_against_golden(*path, fs::path(TESSERA_TEST_DATA_DIR) / "golden" / "gemma3-270m-q4_k_m", {1.5, 1.0f});
}
