// The default model and its tokenizer, loaded once per test case, for tests
// that run on it; empty when it is missing (the caller WARNs and returns).
#pragma once

#include <memory>

#include "test_models.hpp"
#include "tessera/io/tokenizer.hpp"
#include "tessera/io/tokenizer_gguf.hpp"
#include "tessera/models/llama_context.hpp"

namespace tessera::test {

struct DefaultModel {
  std::shared_ptr<const models::LlamaModel> model;
  std::unique_ptr<io::Tokenizer> tok;
  explicit operator bool() const { return model != nullptr; }
};

inline DefaultModel load_default_model() {
  const auto path = find_test_model(kDefaultModelFile);
  if (!path) return {};
  auto model = models::LlamaModel::load(*path);
  auto tok = std::make_unique<io::Tokenizer>(io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(model->file().meta())));
  return {model, std::move(tok)};
}

}  // namespace tessera::test

// Returns from the test case with a warning when the default model is missing.
#define TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m)                                              \
  if (!(m)) {                                                                              \
    WARN("skipped: SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/fetch-model)"); \
    return;                                                                                \
  }
