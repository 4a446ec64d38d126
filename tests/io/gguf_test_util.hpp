// Helpers of the GGUF tests: a byte builder for hand-made (also malformed)
// files that records where each field lands, random tensor bytes, and the
// small writer-made model the round-trip and fuzz tests start from.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/io/gguf.hpp"

namespace tessera::test {

/// Appends GGUF fields little-endian, field by field, with no validation: tests build broken files with it.
class RawGguf {
 public:
  template <class T>
  RawGguf& put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
    return *this;
  }
  RawGguf& u8(uint8_t v) { return put(v); }
  RawGguf& u32(uint32_t v) { return put(v); }
  RawGguf& u64(uint64_t v) { return put(v); }
  RawGguf& i64(int64_t v) { return put(v); }
  RawGguf& str(std::string_view s) {
    u64(s.size());
    for (char c : s) bytes.push_back(static_cast<std::byte>(c));
    return *this;
  }
  RawGguf& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return u32(io::kGgufMagic).u32(version).u64(n_tensors).u64(n_kv);
  }
  RawGguf& kv_u32(std::string_view key, uint32_t v) {
    return str(key).u32(static_cast<uint32_t>(io::GgufValueType::u32)).u32(v);
  }
  RawGguf& kv_str(std::string_view key, std::string_view v) {
    return str(key).u32(static_cast<uint32_t>(io::GgufValueType::string)).str(v);
  }
  RawGguf& tensor_info(std::string_view name, const std::vector<int64_t>& shape, GgmlType type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(shape.size()));
    for (const int64_t e : shape) i64(e);
    return u32(static_cast<uint32_t>(type)).u64(offset);
  }
  RawGguf& zeros(size_t n) {
    bytes.insert(bytes.end(), n, std::byte{0});
    return *this;
  }
  RawGguf& pad_to(size_t alignment) { return zeros((alignment - bytes.size() % alignment) % alignment); }
  size_t size() const { return bytes.size(); }

  std::vector<std::byte> bytes;
};

inline std::vector<std::byte> random_bytes(size_t n, std::mt19937_64& g) {
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(g() & 0xff);
  return out;
}

inline std::string random_token(std::mt19937_64& g) {
  std::string s(1 + g() % 12, ' ');
  for (char& c : s) c = static_cast<char>(0x21 + g() % 94);
  return s;
}

/// A small llama-shaped model: a vocabulary of n_vocab strings with types, scores and merges, a nested array,
/// scalars of several types, and tensors of f32, f16, q8_0, q4_1, q4_K and q6_K filled with random bytes.
inline io::GgufWriter small_model(int n_vocab, std::mt19937_64& g) {
  io::GgufWriter w;
  w.set("general.architecture", "llama");
  w.set("general.name", "tiny test model");
  w.set("llama.block_count", uint32_t{1});
  w.set("llama.embedding_length", uint32_t{64});
  w.set("llama.rope.freq_base", 10000.f);
  w.set("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set("tokenizer.ggml.model", "gpt2");
  std::vector<std::string> tokens, merges;
  std::vector<int32_t> types;
  std::vector<float> scores;
  for (int i = 0; i < n_vocab; ++i) {
    tokens.push_back(random_token(g));
    types.push_back(static_cast<int32_t>(g() % 6));
    scores.push_back(-static_cast<float>(i));
    if (i % 2) merges.push_back(random_token(g) + " " + random_token(g));
  }
  w.set("tokenizer.ggml.tokens", tokens);
  w.set("tokenizer.ggml.token_type", types);
  w.set("tokenizer.ggml.scores", scores);
  w.set("tokenizer.ggml.merges", merges);
  w.set("tokenizer.ggml.add_bos_token", true);
  w.set("test.nested", std::vector<io::GgufValue>{std::vector<uint16_t>{1, 2, 3}, std::vector<uint16_t>{},
                                                  std::vector<uint16_t>{65535}});
  w.set("test.i64", int64_t{-5});
  w.set("test.f64", 0.25);
  w.set("test.u8", uint8_t{7});
  auto add = [&](const char* name, GgmlType type, std::vector<int64_t> shape) {
    const TypeInfo ti = type_info(static_cast<uint32_t>(type));
    int64_t n = 1;
    for (int64_t e : shape) n *= e;
    w.add_tensor(name, static_cast<uint32_t>(type), std::move(shape),
                 random_bytes(static_cast<size_t>(n / ti.block_size) * ti.type_size, g));
  };
  add("token_embd.weight", GgmlType::q8_0, {64, n_vocab});
  add("blk.0.attn_norm.weight", GgmlType::f32, {64});
  add("blk.0.attn_q.weight", GgmlType::q4_1, {64, 64});
  add("blk.0.ffn_up.weight", GgmlType::f16, {64, 3});
  add("blk.0.ffn_down.weight", GgmlType::q4_K, {256, 2});
  add("output.weight", GgmlType::q6_K, {256, 1});
  return w;
}

}  // namespace tessera::test
