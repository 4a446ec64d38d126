// Embedding-row gather: for every table type, the gathered rows are exactly
// dequantize_row of the table rows (the gather adds no arithmetic of its own),
// into packed and row-strided outputs; ids outside the vocabulary are named.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "../test_util.hpp"
#include "tessera/core/quant.hpp"
#include "tessera/nn/embedding.hpp"

using namespace tessera;

namespace {

constexpr int64_t kVocab = 37;   // prime: ids spread over an odd number of rows
constexpr int64_t kEmbd = 512;   // two k-quant super-blocks per row

/// A [kVocab, kEmbd] table of T holding random values, stored as the file would hold it.
template <class T>
std::vector<T> random_table() {
  constexpr int64_t bs = quant_traits<T>::block_size;
  std::vector<T> table(static_cast<size_t>(kVocab * kEmbd / bs));
  for (int64_t r = 0; r < kVocab; ++r) {
    // Row scales over three decades, so every block gets a scale of its own.
    const float scale = std::pow(10.f, static_cast<float>(r % 4) - 2.f);
    const std::vector<float> x = test::random_vector(static_cast<size_t>(kEmbd), -scale, scale);
    T* row = table.data() + r * (kEmbd / bs);
    if constexpr (nn::is_float_like<T>) {
      for (int64_t i = 0; i < kEmbd; ++i) row[i] = T(x[static_cast<size_t>(i)]);
    } else {
      quantize_row(std::span<const float>(x), std::span<T>(row, static_cast<size_t>(kEmbd / bs)));
    }
  }
  return table;
}

template <class T>
nn::Weight weight_of(const std::vector<T>& table) {
  return {quant_traits<T>::type, reinterpret_cast<const std::byte*>(table.data()), kVocab, kEmbd};
}

}  // namespace

TEMPLATE_TEST_CASE("embedding: gathered rows equal dequantize_row of the table rows exactly", "[embedding]", float, f16,
                   bf16, block_q8_0, block_q4_0, block_q4_1, block_q5_0, block_q5_1, block_q4_K, block_q6_K) {
  constexpr int64_t bs = quant_traits<TestType>::block_size;
  const auto table = random_table<TestType>();
  const nn::Weight w = weight_of(table);

  // Random ids with the first and last row and a repeat among them.
  std::uniform_int_distribution<int32_t> pick(0, kVocab - 1);
  std::vector<int32_t> ids = {0, kVocab - 1};
  for (int i = 0; i < 21; ++i) ids.push_back(pick(test::rng()));
  ids.push_back(ids[5]);
  const auto n_tok = static_cast<int64_t>(ids.size());

  // Rows 8 floats apart wider than the table: the gather must follow out's row stride
  // and leave the padding alone.
  constexpr float kPad = -7.f;
  Tensor<float, 2> padded({n_tok, kEmbd + 8});
  for (auto& v : padded.span()) v = kPad;
  nn::embedding(w, ids, padded.view().narrow(1, 0, kEmbd));

  Tensor<float, 2> packed({n_tok, kEmbd});
  nn::embedding(w, ids, packed.view());

  std::vector<float> want(static_cast<size_t>(kEmbd));
  for (int64_t t = 0; t < n_tok; ++t) {
    const TestType* row = table.data() + ids[static_cast<size_t>(t)] * (kEmbd / bs);
    dequantize_row(std::span<const TestType>(row, static_cast<size_t>(kEmbd / bs)), std::span<float>(want));
    INFO("token " << t << " id " << ids[static_cast<size_t>(t)]);
    // Bit-for-bit: the same reference codec runs on both sides.
    REQUIRE(std::memcmp(&packed(t, 0), want.data(), want.size() * sizeof(float)) == 0);
    REQUIRE(std::memcmp(&padded(t, 0), want.data(), want.size() * sizeof(float)) == 0);
    for (int64_t i = kEmbd; i < kEmbd + 8; ++i) REQUIRE(padded(t, i) == kPad);
  }
}

TEST_CASE("embedding: an id outside the vocabulary raises Error naming it", "[embedding]") {
  const auto table = random_table<block_q8_0>();
  const nn::Weight w = weight_of(table);
  Tensor<float, 2> out({2, kEmbd});
  const std::vector<int32_t> past_end = {3, static_cast<int32_t>(kVocab)};
  REQUIRE_THROWS_AS(nn::embedding(w, past_end, out.view()), Error);
  REQUIRE_THROWS_WITH(nn::embedding(w, past_end, out.view()),
                      Catch::Contains("token id 37") && Catch::Contains("[0, 37)"));
  const std::vector<int32_t> negative = {-1, 0};
  REQUIRE_THROWS_WITH(nn::embedding(w, negative, out.view()), Catch::Contains("token id -1"));
  const std::vector<int32_t> huge = {0, 2147483647};
  REQUIRE_THROWS_WITH(nn::embedding(w, huge, out.view()), Catch::Contains("token id 2147483647"));
  // A shape mismatch is an Error too, not a write past out.
  Tensor<float, 2> short_out({1, kEmbd});
  REQUIRE_THROWS_AS(nn::embedding(w, past_end, short_out.view()), Error);
}
