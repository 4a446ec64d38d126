// The batched multi-sequence forward: sequences stepping together give exactly
// the logits each gives alone (steps of <= 16 rows carry decode's bits), mixed
// prefill and decode rows included; larger steps agree within the batch
// kernels' rounding; paged caches on one pool with a forked prefix; errors
// leave every cache as it was.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "../test_default_model.hpp"
#include "tessera/kv/kv.hpp"
#include "tessera/models/llama_batch.hpp"
#include "tessera/runtime/perplexity.hpp"

using namespace tessera;

namespace {

double kl(std::span<const float> p_logits, std::span<const float> q_logits) {
  const double lp = runtime::log_sum_exp(p_logits), lq = runtime::log_sum_exp(q_logits);
  double s = 0;
  for (size_t i = 0; i < p_logits.size(); ++i)
    s += std::exp(p_logits[i] - lp) * ((p_logits[i] - lp) - (q_logits[i] - lq));
  return s;
}

}  // namespace

TEST_CASE("batched forward: sequences together give exactly the logits each gives alone", "[models][batch]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  const auto& c = m.model->config();
  const kv::KvLayout layout = models::kv_layout(c);
  auto pool = std::make_shared<kv::KvBlockPool>(layout, 16, 32);
  std::vector<std::vector<int32_t>> hist = {m.tok->encode("The capital of France is", true, true),
                                            m.tok->encode("def add(a, b):", true, true),
                                            m.tok->encode("Red, green and", true, true)};
  REQUIRE(hist[0].size() + hist[1].size() + hist[2].size() <= 16);
  std::vector<std::unique_ptr<kv::KvCache>> caches;
  for (int i = 0; i < 3; ++i) caches.push_back(std::make_unique<kv::PagedKvCache>(pool, 128));
  models::LlamaBatch batch(m.model, 64);
  // Step 0: the three prompts in one pass (prefill rows of three sequences); then decode steps in which
  // sequence 1 sits one out (it keeps its pending token).
  std::vector<models::BatchSeq> step;
  for (size_t i = 0; i < 3; ++i) step.push_back({caches[i].get(), hist[i], true});
  std::vector<size_t> active = {0, 1, 2};
  std::vector<int32_t> pending(3);
  auto logits = batch.eval(step);
  // References: one context per sequence, fed one token at a time (decode's own path).
  std::vector<std::unique_ptr<models::LlamaContext>> refs;
  std::vector<size_t> fed(3, 0);
  std::vector<std::vector<float>> ref_logits(3);
  for (size_t i = 0; i < 3; ++i) refs.push_back(std::make_unique<models::LlamaContext>(m.model, 128, 1));
  auto alone_now = [&](size_t i) -> const std::vector<float>& {
    for (; fed[i] < hist[i].size(); ++fed[i]) {
      const auto l = refs[i]->eval(std::span<const int32_t>(&hist[i][fed[i]], 1));
      ref_logits[i].assign(l.begin(), l.end());
    }
    return ref_logits[i];
  };
  int compared = 0;
  for (int n = 0; n < 7; ++n) {
    for (size_t r = 0; r < active.size(); ++r) {
      const size_t i = active[r];
      INFO("step " << n << ", sequence " << i);
      const std::span<const float> row(&logits(static_cast<int64_t>(r), 0), static_cast<size_t>(c.n_vocab));
      const auto& ref = alone_now(i);
      REQUIRE(std::equal(row.begin(), row.end(), ref.begin()));  // bit for bit
      ++compared;
      pending[i] = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      hist[i].push_back(pending[i]);
    }
    active = n == 2 ? std::vector<size_t>{0, 2} : std::vector<size_t>{0, 1, 2};
    step.clear();
    for (size_t i : active) step.push_back({caches[i].get(), {&pending[i], 1}, true});
    logits = batch.eval(step);
  }
  REQUIRE(compared == 3 + 6 * 3 - 1);
  for (size_t i = 0; i < 3; ++i) REQUIRE(caches[i]->size() + 1 >= static_cast<int64_t>(hist[i].size()));
}

TEST_CASE("batched forward: a large mixed step agrees with the sequences alone, forked prefixes", "[models][batch]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  const auto& c = m.model->config();
  const kv::KvLayout layout = models::kv_layout(c, KvType::f16);
  auto pool = std::make_shared<kv::KvBlockPool>(layout, 16, 40);
  kv::PagedKvCache a(pool, 128);
  models::LlamaBatch batch(m.model, 64);
  std::vector<int32_t> prompt = m.tok->encode("Once upon a time, in a land far away, there lived a", true, true);
  std::vector<models::BatchSeq> one{{&a, prompt, true}};
  batch.eval(one);
  // B shares A's prompt blocks (copy on write) and continues differently.
  auto b = a.fork();
  const std::vector<int32_t> ta{11, 12}, tb{13};
  const std::vector<int32_t> long_prompt = m.tok->encode("A much longer prompt for a third sequence that joins mid-way, "
                                                        "so that this step holds more than sixteen rows in all.",
                                                        true, true);
  kv::PagedKvCache cc(pool, 128);
  std::vector<models::BatchSeq> mixed{{&a, ta, true}, {b.get(), tb, true}, {&cc, long_prompt, true}};
  REQUIRE(ta.size() + tb.size() + long_prompt.size() > 16);
  const auto logits = batch.eval(mixed);
  REQUIRE(logits.dim(0) == 3);
  std::vector<int32_t> ha = prompt, hb = prompt;
  ha.insert(ha.end(), ta.begin(), ta.end());
  hb.insert(hb.end(), tb.begin(), tb.end());
  // A step over the batch kernels (GEMM, flash attention) rounds 8-bit activations its own way:
  // the KL to decode-alone is ~1e-3 on this model (tests/runtime/test_perplexity.cpp).
  for (const auto& [row, hist] : {std::pair{0, ha}, {1, hb}, {2, long_prompt}}) {
    models::LlamaContext ref(m.model, 128, 64, kv::parse_kv_spec("static", KvType::f16));
    const auto r = ref.eval(hist);
    INFO("sequence " << row);
    REQUIRE(kl(r, {&logits(row, 0), static_cast<size_t>(c.n_vocab)}) < 0.02);
  }
  REQUIRE(a.size() == static_cast<int64_t>(ha.size()));
  REQUIRE(b->size() == static_cast<int64_t>(hb.size()));
}

TEST_CASE("batched forward: errors name the problem and leave every cache as it was", "[models][batch]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  const auto& c = m.model->config();
  const kv::KvLayout layout = models::kv_layout(c);
  kv::StaticKvCache a(layout, 32), b(layout, 8);
  models::LlamaBatch batch(m.model, 8);
  const std::vector<int32_t> five{1, 2, 3, 4, 5}, four{1, 2, 3, 4};
  std::vector<models::BatchSeq> too_many{{&a, five, true}, {&b, four, true}};
  REQUIRE_THROWS_WITH(batch.eval(too_many), Catch::Contains("9 rows in one step, at most 8"));
  std::vector<models::BatchSeq> shared{{&a, five, true}, {&a, four, true}};
  REQUIRE_THROWS_WITH(batch.eval(shared), Catch::Contains("share one cache"));
  std::vector<models::BatchSeq> ok{{&b, five, false}};
  REQUIRE(batch.eval(ok).dim(0) == 0);
  const std::vector<int32_t> two{1, 2};
  std::vector<models::BatchSeq> full{{&a, two, true}, {&b, four, true}};  // b holds 5 of 8: 4 more do not fit
  REQUIRE_THROWS_WITH(batch.eval(full), Catch::Contains("context full"));
  REQUIRE(a.size() == 0);
  REQUIRE(b.size() == 5);
  kv::StaticKvCache wrong({c.n_layers, c.n_kv_heads + 1, c.head_dim, KvType::f32}, 8);
  std::vector<models::BatchSeq> bad{{&wrong, five, true}};
  REQUIRE_THROWS_WITH(batch.eval(bad), Catch::Contains("the model needs"));
}
