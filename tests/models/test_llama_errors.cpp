// LlamaModel::load on files it cannot run: an architecture other than the
// llama family, and a weight of a ggml type without kernels (q2_K). Each must
// raise tessera::Error naming what is unsupported. The files are tiny models
// written with GgufWriter (one layer, width 256: the q2_K block size).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>

#include "../io/gguf_test_util.hpp"
#include "tessera/io/gguf_writer.hpp"
#include "tessera/models/llama.hpp"

using namespace tessera;
using Catch::Contains;

namespace {

constexpr int64_t kEmbd = 256, kVocab = 8;

// Removes the file when the test ends, passed or not.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& name)
      : path((std::filesystem::temp_directory_path() /
              ("tessera_test_llama_errors_" + std::to_string(::getpid()) + "_" + name))
                 .string()) {}
  ~TempFile() { std::filesystem::remove(path); }
};

// A complete one-layer llama of f32 weights, but for attn_q, whose type is q_type.
io::GgufWriter tiny_llama(const std::string& arch, GgmlType q_type) {
  std::mt19937_64 g(7);
  io::GgufWriter w;
  w.set("general.architecture", arch);
  const std::string p = arch + ".";
  w.set(p + "block_count", uint32_t{1});
  w.set(p + "embedding_length", static_cast<uint32_t>(kEmbd));
  w.set(p + "attention.head_count", uint32_t{2});
  w.set(p + "feed_forward_length", static_cast<uint32_t>(kEmbd));
  w.set(p + "context_length", uint32_t{64});
  auto add = [&](const std::string& name, GgmlType type, std::vector<int64_t> shape) {
    const TypeInfo ti = type_info(static_cast<uint32_t>(type));
    int64_t n = 1;
    for (int64_t e : shape) n *= e;
    w.add_tensor(name, static_cast<uint32_t>(type), std::move(shape),
                 test::random_bytes(static_cast<size_t>(n / ti.block_size) * ti.type_size, g));
  };
  add("token_embd.weight", GgmlType::f32, {kEmbd, kVocab});
  add("output_norm.weight", GgmlType::f32, {kEmbd});
  add("blk.0.attn_norm.weight", GgmlType::f32, {kEmbd});
  add("blk.0.ffn_norm.weight", GgmlType::f32, {kEmbd});
  add("blk.0.attn_q.weight", q_type, {kEmbd, kEmbd});
  for (const char* name : {"attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"})
    add(std::string("blk.0.") + name + ".weight", GgmlType::f32, {kEmbd, kEmbd});
  return w;
}

}  // namespace

TEST_CASE("llama load: the tiny model loads when nothing is unsupported", "[model][errors]") {
  // The control for the cases below: their files differ from this one only in what they test.
  const TempFile f("ok.gguf");
  tiny_llama("llama", GgmlType::f32).write(f.path);
  const auto model = models::LlamaModel::load(f.path);
  CHECK(model->config().n_vocab == kVocab);
  CHECK(model->layers().size() == 1);
}

TEST_CASE("llama load: an unsupported architecture is an Error naming it", "[model][errors]") {
  const TempFile f("mamba.gguf");
  tiny_llama("mamba", GgmlType::f32).write(f.path);
  REQUIRE_THROWS_AS(models::LlamaModel::load(f.path), Error);
  REQUIRE_THROWS_WITH(models::LlamaModel::load(f.path),
                      Contains("unsupported architecture 'mamba'") && Contains("llama, mistral, gemma3, qwen2"));
  // A supported family whose tensors are missing names the first one it needs.
  const TempFile g("gpt2.gguf");
  tiny_llama("gpt2", GgmlType::f32).write(g.path);
  REQUIRE_THROWS_WITH(models::LlamaModel::load(g.path), Contains("position_embd.weight"));
}

TEST_CASE("llama load: a weight type without kernels (q2_K) is an Error naming it", "[model][errors]") {
  const TempFile f("q2_k.gguf");
  tiny_llama("llama", GgmlType::q2_K).write(f.path);
  REQUIRE_THROWS_AS(models::LlamaModel::load(f.path), Error);
  REQUIRE_THROWS_WITH(models::LlamaModel::load(f.path), Contains("q2_K"));
}
