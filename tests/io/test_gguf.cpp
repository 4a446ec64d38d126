// GGUF writer -> reader round trips (every value type, nested arrays, v2 and
// v3, alignments 32 and 64, tensors of several types read back through views),
// typed metadata reads, writer errors, and the real SmolLM2 file: its metadata,
// its tensors, and a byte-identical rewrite through GgufWriter.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>

#include "../test_models.hpp"
#include "gguf_test_util.hpp"
#include "tessera/io/gguf.hpp"

using namespace tessera;
using namespace tessera::io;
using Catch::Contains;

namespace {


std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

template <class T>
std::vector<T> random_ints(size_t n, std::mt19937_64& g) {
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(g());
  return v;
}

// One value of every type, edge values included, and arrays of every type, nested three deep.
void set_every_value_type(GgufWriter& w, std::mt19937_64& g) {
  w.set("s.u8", std::numeric_limits<uint8_t>::max());
  w.set("s.i8", std::numeric_limits<int8_t>::min());
  w.set("s.u16", uint16_t{40000});
  w.set("s.i16", int16_t{-30000});
  w.set("s.u32", std::numeric_limits<uint32_t>::max());
  w.set("s.i32", std::numeric_limits<int32_t>::min());
  w.set("s.u64", std::numeric_limits<uint64_t>::max());
  w.set("s.i64", std::numeric_limits<int64_t>::min());
  w.set("s.f32", 3.25f);
  w.set("s.f32_inf", -std::numeric_limits<float>::infinity());
  w.set("s.f64", 1e300);
  w.set("s.true", true);
  w.set("s.false", false);
  w.set("s.string", "h\xc3\xa9llo \xe2\x9c\x93");
  w.set("s.empty_string", "");
  w.set("s.nul_inside", std::string("a\0b", 3));
  w.set("a.u8", random_ints<uint8_t>(17, g));
  w.set("a.i8", random_ints<int8_t>(3, g));
  w.set("a.u16", random_ints<uint16_t>(5, g));
  w.set("a.i16", random_ints<int16_t>(1, g));
  w.set("a.u32", random_ints<uint32_t>(31, g));
  w.set("a.i32", random_ints<int32_t>(8, g));
  w.set("a.u64", random_ints<uint64_t>(2, g));
  w.set("a.i64", random_ints<int64_t>(9, g));
  w.set("a.f32", std::vector<float>{0.5f, -1e-30f, 7e30f});
  w.set("a.f64", std::vector<double>{-0.0, 1.0 / 3});
  w.set("a.bool", std::vector<bool>{true, false, false, true, true});
  w.set("a.string", std::vector<std::string>{"", "x", std::string(300, 'y'), "\xf0\x9f\x99\x82"});
  w.set("a.empty", std::vector<float>{});
  w.set("a.nested_i32", std::vector<GgufValue>{std::vector<int32_t>{1, 2}, std::vector<int32_t>{},
                                               std::vector<int32_t>{-3}});
  w.set("a.nested_strings", std::vector<GgufValue>{std::vector<std::string>{"a", "bc"}});
  w.set("a.nested3", std::vector<GgufValue>{std::vector<GgufValue>{std::vector<double>{1.5}, std::vector<bool>{true}},
                                            std::vector<GgufValue>{}});
  w.set("a.nested_empty", std::vector<GgufValue>{});
}

struct TensorCase {
  const char* name;
  GgmlType type;
  std::vector<int64_t> shape;
};
const std::vector<TensorCase> kTensors = {
    {"f32.2d", GgmlType::f32, {7, 3}},        {"f16.1d", GgmlType::f16, {5}},
    {"q8_0.2d", GgmlType::q8_0, {64, 3}},     {"q4_1.3d", GgmlType::q4_1, {32, 2, 3}},
    {"q4_K.4d", GgmlType::q4_K, {256, 1, 2, 1}}, {"bf16.empty", GgmlType::bf16, {0, 4}},
    {"q6_K.2d", GgmlType::q6_K, {512, 1}},
};

void check_same_metadata(const GgufMetadata& a, const GgufMetadata& b) {
  REQUIRE(a.keys() == b.keys());
  for (const auto& [key, value] : a.entries()) {
    INFO("key " << key << ": " << to_string(value) << " vs " << to_string(*b.find(key)));
    CHECK(*b.find(key) == value);
  }
}

}  // namespace

TEST_CASE("GGUF round trip: every value type, nested arrays, tensors, v2/v3, alignment 32/64", "[io][gguf]") {
  for (const uint32_t version : {2u, 3u}) {
    for (const uint32_t alignment : {32u, 64u}) {
      INFO("version " << version << ", alignment " << alignment);
      std::mt19937_64 g(1000 * version + alignment);
      GgufWriter w;
      set_every_value_type(w, g);
      if (alignment != 32) w.set("general.alignment", alignment);
      std::vector<std::vector<std::byte>> data;
      for (const auto& tc : kTensors) {
        const TypeInfo ti = type_info(static_cast<uint32_t>(tc.type));
        int64_t n = 1;
        for (int64_t e : tc.shape) n *= e;
        data.push_back(test::random_bytes(static_cast<size_t>(n / ti.block_size) * ti.type_size, g));
        w.add_tensor(tc.name, static_cast<uint32_t>(tc.type), tc.shape, data.back());
      }
      const std::vector<std::byte> bytes = w.to_bytes(version);
      REQUIRE(bytes.size() % alignment == 0);  // every tensor, the last included, is padded

      const GgufFile f = GgufFile::from_bytes(bytes);
      CHECK(f.version() == version);
      CHECK(f.alignment() == alignment);
      CHECK(f.data_offset() % alignment == 0);
      check_same_metadata(w.meta(), f.meta());
      REQUIRE(f.tensors().size() == kTensors.size());
      for (size_t i = 0; i < kTensors.size(); ++i) {
        const GgufTensorInfo& t = f.tensors()[i];
        INFO("tensor " << kTensors[i].name);
        CHECK(t.name == kTensors[i].name);
        CHECK(t.type == static_cast<uint32_t>(kTensors[i].type));
        CHECK(t.shape == kTensors[i].shape);
        CHECK(t.offset % alignment == 0);
        CHECK(&f.tensor(t.name) == &t);
        REQUIRE(t.n_bytes == data[i].size());
        CHECK(std::equal(data[i].begin(), data[i].end(), t.data));
      }

      // Views: [rows, row length in blocks] over the very bytes written.
      const auto f32 = f.view2d<float>("f32.2d");
      CHECK(f32.shape() == Shape<2>{3, 7});
      CHECK(std::memcmp(&f32(2, 6), data[0].data() + 4 * (2 * 7 + 6), 4) == 0);
      CHECK(f.view1d<f16>("f16.1d").dim(0) == 5);
      const auto q8 = f.view2d<block_q8_0>("q8_0.2d");
      CHECK(q8.shape() == Shape<2>{3, 2});
      CHECK(std::memcmp(&q8(1, 1), data[2].data() + 3 * sizeof(block_q8_0), sizeof(block_q8_0)) == 0);
      CHECK(f.view2d<block_q4_1>("q4_1.3d").shape() == Shape<2>{6, 1});
      CHECK(f.view1d<block_q4_1>("q4_1.3d").dim(0) == 6);
      CHECK(f.view2d<block_q4_K>("q4_K.4d").shape() == Shape<2>{2, 1});
      CHECK(f.view2d<bf16>("bf16.empty").shape() == Shape<2>{4, 0});
      CHECK(f.view2d<block_q6_K>("q6_K.2d").shape() == Shape<2>{1, 2});
      REQUIRE_THROWS_WITH(f.view2d<block_q4_0>("q8_0.2d"),
                          Contains("'q8_0.2d'") && Contains("q8_0") && Contains("requested as q4_0"));
      REQUIRE_THROWS_WITH(f.tensor("absent"), Contains("tensor 'absent' not found"));
      CHECK(f.find_tensor("absent") == nullptr);

      // The same bytes through a file and mmap.
      const std::string path = test::temp_path("roundtrip.gguf");
      w.write(path, version);
      CHECK(read_file(path) == bytes);
      const GgufFile mapped = GgufFile::open(path);
      std::filesystem::remove(path);  // the mapping keeps the data
      check_same_metadata(f.meta(), mapped.meta());
      CHECK(std::equal(data[2].begin(), data[2].end(), mapped.tensor("q8_0.2d").data));
      CHECK((mapped.tensor("q4_1.3d").data - mapped.tensor("f32.2d").data) % alignment == 0);
    }
  }
}

TEST_CASE("GGUF metadata: typed reads convert integers in range and name the key otherwise", "[io][gguf]") {
  GgufWriter w;
  w.set("u32", uint32_t{300});
  w.set("i32.neg", int32_t{-1});
  w.set("f32", 0.5f);
  w.set("str", "gpt2");
  w.set("flag", true);
  w.set("tokens", std::vector<std::string>{"a", "b"});
  w.set("small", std::vector<uint8_t>{1, 2, 250});
  w.set("signed", std::vector<int32_t>{5, -5});
  w.set("nested", std::vector<GgufValue>{std::vector<int16_t>{1, 2}, std::vector<int16_t>{3}});
  const GgufFile f = GgufFile::from_bytes(w.to_bytes());
  const GgufMetadata& m = f.meta();

  CHECK(m.keys() == std::vector<std::string>{"u32", "i32.neg", "f32", "str", "flag", "tokens", "small", "signed",
                                             "nested"});
  CHECK(m.get<uint32_t>("u32") == 300);
  CHECK(m.get<int64_t>("u32") == 300);
  CHECK(m.get<uint16_t>("u32") == 300);
  CHECK(m.get<int32_t>("i32.neg") == -1);
  CHECK(m.get<double>("f32") == 0.5);
  CHECK(m.get<std::string>("str") == "gpt2");
  CHECK(m.get<bool>("flag"));
  CHECK(m.get<std::vector<std::string>>("tokens") == std::vector<std::string>{"a", "b"});
  CHECK(m.get<std::vector<int32_t>>("small") == std::vector<int32_t>{1, 2, 250});
  CHECK(m.get<std::vector<std::vector<int>>>("nested") == std::vector<std::vector<int>>{{1, 2}, {3}});
  CHECK(m.find("tokens")->array().items<std::string>().size() == 2);  // zero-copy access
  CHECK(m.find("small")->array().at(2) == GgufValue(uint8_t{250}));
  CHECK(m.get_or<uint32_t>("absent", 7) == 7);
  CHECK(m.get_or<std::string>("str", "x") == "gpt2");
  CHECK(m.find("absent") == nullptr);
  CHECK_FALSE(m.has("absent"));

  REQUIRE_THROWS_WITH(m.get<uint32_t>("absent"), Contains("'absent'") && Contains("missing"));
  REQUIRE_THROWS_WITH(m.get<uint8_t>("u32"), Contains("'u32'") && Contains("u32 300") && Contains("uint8_t"));
  REQUIRE_THROWS_WITH(m.get<uint32_t>("i32.neg"), Contains("'i32.neg'"));
  REQUIRE_THROWS_WITH(m.get<float>("str"), Contains("'str'") && Contains("float"));
  REQUIRE_THROWS_WITH(m.get<bool>("u32"), Contains("'u32'") && Contains("bool"));
  REQUIRE_THROWS_WITH(m.get<std::vector<uint8_t>>("signed"), Contains("'signed'"));  // -5 does not fit
  REQUIRE_THROWS_WITH(m.get<std::vector<float>>("tokens"), Contains("'tokens'") && Contains("std::vector<float>"));
  REQUIRE_THROWS_WITH(m.get_or<uint32_t>("str", 1), Contains("'str'"));  // present but of another type
  REQUIRE_THROWS_WITH(m.find("tokens")->array().items<float>(), Contains("array of string"));
  REQUIRE_THROWS_WITH(m.find("str")->array(), Contains("not an array"));

  GgufMetadata copy = m;
  copy.set("u32", "now a string");  // replaced in place
  copy.erase("f32");
  CHECK(copy.keys() == std::vector<std::string>{"u32", "i32.neg", "str", "flag", "tokens", "small", "signed", "nested"});
  CHECK(copy.get<std::string>("u32") == "now a string");
  CHECK(copy.get<bool>("flag"));
  REQUIRE_THROWS_WITH(copy.add("str", 1), Contains("duplicate") && Contains("'str'"));
}

TEST_CASE("GgufWriter rejects what it cannot write, naming the tensor or key", "[io][gguf]") {
  GgufWriter w;
  const std::vector<std::byte> bytes(34 * 2);
  w.add_tensor("a", static_cast<uint32_t>(GgmlType::q8_0), {64}, bytes);
  REQUIRE_THROWS_WITH(w.add_tensor("a", 0, {1}, std::vector<std::byte>(4)), Contains("duplicate") && Contains("'a'"));
  REQUIRE_THROWS_WITH(w.add_tensor("b", 99, {1}, bytes), Contains("'b'") && Contains("99"));
  REQUIRE_THROWS_WITH(w.add_tensor("c", static_cast<uint32_t>(GgmlType::q8_0), {33}, bytes),
                      Contains("'c'") && Contains("block size"));
  REQUIRE_THROWS_WITH(w.add_tensor("d", static_cast<uint32_t>(GgmlType::q8_0), {32}, bytes),
                      Contains("'d'") && Contains("68 bytes given") && Contains("34"));
  REQUIRE_THROWS_WITH(w.add_tensor("e", 0, {1, 1, 1, 1, 1}, std::vector<std::byte>(4)), Contains("'e'"));
  REQUIRE_THROWS_WITH(w.add_tensor("f", 0, {-1}, std::vector<std::byte>{}), Contains("'f'"));
  REQUIRE_THROWS_WITH(w.add_tensor(std::string(64, 'n'), 0, {1}, std::vector<std::byte>(4)), Contains("63"));
  REQUIRE_THROWS_WITH(w.to_bytes(1), Contains("version 1"));
  REQUIRE_THROWS_WITH(GgufValue(std::vector<GgufValue>{uint8_t{1}}), Contains("array of arrays"));
  w.set("general.alignment", uint32_t{48});
  REQUIRE_THROWS_WITH(w.to_bytes(), Contains("general.alignment"));
  w.set("general.alignment", uint64_t{64});  // ggml reads it as u32 only
  REQUIRE_THROWS_WITH(w.to_bytes(), Contains("general.alignment"));
  w.set("general.alignment", uint32_t{16});
  CHECK(GgufFile::from_bytes(w.to_bytes()).alignment() == 16);
  REQUIRE_THROWS_WITH(w.write("/nonexistent-dir/x.gguf"), Contains("/nonexistent-dir/x.gguf"));
  REQUIRE_THROWS_WITH(GgufFile::open("/nonexistent-dir/x.gguf"), Contains("/nonexistent-dir/x.gguf"));
}

TEST_CASE("GGUF: the real SmolLM2-135M Q4_1 file", "[io][gguf][model]") {
  const auto path = test::find_test_model(test::kDefaultModelFile);
  if (!path) {
    WARN("skipped: model not found: " << test::kDefaultModelFile << " (run scripts/fetch-model, or set TESSERA_TEST_MODEL)");
    return;
  }
  const GgufFile f = GgufFile::open(*path);
  const GgufMetadata& m = f.meta();
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(m.get<std::string>("general.architecture") == "llama");
  CHECK(m.get<uint32_t>("llama.block_count") == 30);
  CHECK(m.get<int64_t>("llama.embedding_length") == 576);
  CHECK(m.get<uint32_t>("llama.attention.head_count") == 9);
  CHECK(m.get<uint32_t>("llama.attention.head_count_kv") == 3);
  CHECK(m.get<float>("llama.rope.freq_base") == 100000.f);
  CHECK(m.get<std::string>("tokenizer.ggml.model") == "gpt2");
  CHECK(m.get<bool>("tokenizer.ggml.add_bos_token") == false);
  const auto tokens = m.get<std::vector<std::string>>("tokenizer.ggml.tokens");
  CHECK(tokens.size() == 49152);
  CHECK(tokens[0] == "<|endoftext|>");
  CHECK(m.get<std::vector<int32_t>>("tokenizer.ggml.token_type").size() == 49152);
  CHECK(m.get<std::vector<std::string>>("tokenizer.ggml.merges").size() == 48900);
  CHECK(m.keys().front() == "general.architecture");

  REQUIRE(f.tensors().size() == 272);
  std::map<std::string, int> by_type;
  for (const auto& t : f.tensors()) ++by_type[t.type_name()];
  CHECK(by_type == std::map<std::string, int>{{"q4_1", 210}, {"f32", 61}, {"q8_0", 1}});
  const GgufTensorInfo& embd = f.tensor("token_embd.weight");
  CHECK(embd.type == static_cast<uint32_t>(GgmlType::q8_0));
  CHECK(embd.shape == std::vector<int64_t>{576, 49152});
  CHECK(f.view2d<block_q8_0>("token_embd.weight").shape() == Shape<2>{49152, 576 / 32});
  const auto wk = f.view2d<block_q4_1>("blk.0.attn_k.weight");  // [kv_dim, n_embd] = [3 * 64, 576]
  CHECK(wk.shape() == Shape<2>{192, 576 / 32});
  CHECK(f.view2d<block_q4_1>("blk.29.ffn_down.weight").shape() == Shape<2>{576, 1536 / 32});
  const auto norm = f.view1d<float>("blk.0.attn_norm.weight");
  REQUIRE(norm.dim(0) == 576);
  CHECK(std::all_of(norm.data(), norm.data() + 576, [](float x) { return std::isfinite(x); }));
  REQUIRE_THROWS_WITH(f.view2d<block_q4_0>("token_embd.weight"),
                      Contains("token_embd.weight") && Contains("q8_0") && Contains("q4_0"));

  // The last tensor ends at the end of the file, and a rewrite through GgufWriter reproduces every byte:
  // the same layout as llama.cpp's writer (order, offsets, padding).
  const GgufTensorInfo& last = f.tensors().back();
  CHECK(f.data_offset() + last.offset + last.n_bytes <= f.size_bytes());
  GgufWriter w;
  w.set_all(m);
  for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape, t.bytes());
  const std::vector<std::byte> rewritten = w.to_bytes(3);
  REQUIRE(rewritten.size() == f.size_bytes());
  const std::byte* original = f.tensors().front().data - f.data_offset() - f.tensors().front().offset;
  CHECK(std::memcmp(rewritten.data(), original, rewritten.size()) == 0);
}
