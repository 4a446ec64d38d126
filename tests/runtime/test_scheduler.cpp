// runtime::Scheduler on the default model. The reference is runtime::generate
// over a LlamaContext, one request at a time, with the same seed: with steps
// of at most backend::kDecodeExactRows rows every row carries decode's exact
// bits, so interleaving, chunked prefill and preemption must give every
// request exactly its solo tokens and text, and so must adopting another
// request's cached prompt blocks. Also: the pool is whole again after every
// run, cancellation frees at once, and bad requests are Errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "../test_default_model.hpp"
#include "tessera/backend/backend.hpp"
#include "tessera/runtime/generator.hpp"
#include "tessera/runtime/metrics.hpp"
#include "tessera/runtime/scheduler.hpp"

using namespace tessera;

namespace {

// Steps of at most this many rows carry decode's exact bits (SchedulerConfig::exact).
constexpr int kExact = static_cast<int>(backend::kDecodeExactRows);

struct Case {
  std::string prompt;
  sample::SamplerParams sampling;
  runtime::GenerationConfig gen;
};

std::vector<Case> cases() {
  std::vector<Case> c;
  const char* prompts[] = {"The capital of France is", "def fibonacci(n):", "Once upon a time",
                           "List three colours:", "1, 2, 3, 4,", "The weather today"};
  for (int i = 0; i < 6; ++i) {
    Case k;
    k.prompt = prompts[i];
    k.sampling.seed = 100 + static_cast<uint64_t>(i);
    k.sampling.temperature = i % 3 == 0 ? 0.f : 0.8f;  // greedy and sampled requests mixed
    k.gen.max_new_tokens = 5 + 3 * i;
    if (i == 5) k.gen.stop_strings = {"."};
    c.push_back(k);
  }
  return c;
}

runtime::GenerationResult solo(const test::DefaultModel& m, const Case& k) {
  models::LlamaContext ctx(m.model, 256, kExact);  // prefill in exact chunks too, whatever the prompt's length
  sample::Sampler sampler(k.sampling, m.model->config().n_vocab);
  return runtime::generate(ctx, *m.tok, sampler, m.tok->encode(k.prompt, true, false), k.gen, nullptr);
}

// Runs every case through one scheduler; results and streamed text by case.
struct Served {
  std::vector<runtime::GenerationResult> results;
  std::vector<std::string> streamed;
  int64_t preemptions = 0, steps = 0;
};

Served serve(const test::DefaultModel& m, runtime::SchedulerConfig cfg, runtime::Metrics* metrics = nullptr) {
  const auto cs = cases();
  runtime::Scheduler sched(m.model, *m.tok, cfg, metrics);
  Served out;
  out.results.resize(cs.size());
  out.streamed.resize(cs.size());
  std::vector<int> done(cs.size(), 0);
  for (size_t i = 0; i < cs.size(); ++i) {
    runtime::ServeRequest r;
    r.prompt = m.tok->encode(cs[i].prompt, true, false);
    r.sampling = cs[i].sampling;
    r.generation = cs[i].gen;
    r.on_text = [&out, i](std::string_view t) { out.streamed[i] += t; return true; };
    r.on_done = [&out, &done, i](const runtime::GenerationResult& g) { out.results[i] = g; ++done[i]; };
    sched.submit(std::move(r));
  }
  sched.run();
  for (int d : done) CHECK(d == 1);
  CHECK(sched.n_running() == 0);
  CHECK(sched.n_waiting() == 0);
  CHECK(sched.pool().n_free() == sched.pool().n_blocks());
  out.preemptions = sched.preemptions();
  out.steps = sched.steps();
  return out;
}

void same_as_solo(const test::DefaultModel& m, const Served& s) {
  const auto cs = cases();
  for (size_t i = 0; i < cs.size(); ++i) {
    INFO("request " << i << ": " << cs[i].prompt);
    const auto want = solo(m, cs[i]);
    CHECK(s.results[i].tokens == want.tokens);
    CHECK(s.results[i].text == want.text);
    CHECK(s.streamed[i] == want.text);
    CHECK(s.results[i].stop == want.stop);
  }
}

}  // namespace

TEST_CASE("Scheduler: interleaved requests with chunked prefill give each its solo tokens", "[scheduler]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  runtime::Metrics metrics;
  const Served s = serve(m, {.max_seqs = 4, .step_tokens = kExact, .n_ctx = 128, .block_size = 8, .exact = true}, &metrics);
  same_as_solo(m, s);
  CHECK(s.preemptions == 0);
  const auto snap = metrics.snapshot(1e9);
  CHECK(snap.requests_finished == 6);
  CHECK(snap.batch_max > 1);  // sequences did share steps
  CHECK(snap.batch_max <= 4);
  CHECK(snap.ttft.count == 6);
  int64_t tokens = 0;
  for (const auto& r : s.results) tokens += static_cast<int64_t>(r.tokens.size());
  CHECK(snap.output_tokens == tokens);
  CHECK(snap.kv_peak <= snap.kv_total);
}

TEST_CASE("Scheduler: a pool too small for everyone preempts and recomputes, tokens unchanged", "[scheduler]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  // 14 blocks of 4: 56 positions for 6 requests of up to 26
  const Served s = serve(m, {.max_seqs = 8, .step_tokens = kExact, .n_ctx = 64, .block_size = 4, .n_blocks = 14, .exact = true});
  same_as_solo(m, s);
  INFO("preemptions " << s.preemptions << ", steps " << s.steps);
  CHECK(s.preemptions > 0);
}

TEST_CASE("Scheduler: requests on a common prompt prefix share its KV blocks and keep their solo tokens", "[scheduler]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  const std::string system =
      "You are a helpful assistant. Answer briefly and truthfully; say so when you do not know. Question: ";
  const char* questions[] = {"What is the capital of France?", "Why is the sky blue?", "Name a prime number."};
  constexpr int64_t B = 8;
  for (bool caching : {true, false}) {
    INFO("prefix caching " << caching);
    runtime::Scheduler sched(m.model, *m.tok,
                             {.max_seqs = 4, .step_tokens = kExact, .n_ctx = 128, .block_size = B, .prefix_caching = caching, .exact = true});
    std::vector<Case> cs(3);
    std::vector<runtime::GenerationResult> got(3);
    std::vector<std::vector<int32_t>> prompts(3);
    std::vector<int> pieces(3, 0);
    auto submit = [&](size_t i) {
      cs[i].prompt = system + questions[i];
      cs[i].sampling.seed = 7 + i;
      cs[i].sampling.temperature = i == 1 ? 0.7f : 0.f;
      cs[i].gen.max_new_tokens = 6;
      prompts[i] = m.tok->encode(cs[i].prompt, true, false);
      runtime::ServeRequest r;
      r.prompt = prompts[i];
      r.sampling = cs[i].sampling;
      r.generation = cs[i].gen;
      r.on_text = [&pieces, i](std::string_view) { return ++pieces[i] > 0; };
      r.on_done = [&got, i](const runtime::GenerationResult& g) { got[i] = g; };
      sched.submit(std::move(r));
    };
    submit(0);
    while (pieces[0] < 2) REQUIRE(sched.step());  // request 0's prompt is in the cache, published
    submit(1);
    submit(2);
    sched.step();  // admits 1 and 2 onto request 0's blocks, still held by it
    // The blocks each later request can take: full blocks of the common token
    // prefix, before its own last token.
    int64_t want_hits = 0, shared_blocks = 1 << 30;
    for (size_t i : {size_t{1}, size_t{2}}) {
      size_t common = 0;
      while (common < prompts[0].size() && common < prompts[i].size() && prompts[0][common] == prompts[i][common])
        ++common;
      const int64_t blocks = static_cast<int64_t>(std::min(common, prompts[i].size() - 1)) / B;
      want_hits += blocks * B;
      shared_blocks = std::min(shared_blocks, blocks);
    }
    REQUIRE(shared_blocks >= 2);  // the test means something: the system prompt spans blocks
    int64_t triple = 0;
    for (int32_t b = 0; b < sched.pool().n_blocks(); ++b) triple += sched.pool().refs(b) == 3;
    if (caching) {
      CHECK(sched.prefix_hit_tokens() == want_hits);
      CHECK(triple == shared_blocks);  // held by all three at once
    } else {
      CHECK(sched.prefix_hit_tokens() == 0);
      CHECK(triple == 0);
    }
    REQUIRE(got[0].tokens.empty());  // request 0 was still running: the blocks were shared, not revived
    sched.run();
    for (size_t i = 0; i < 3; ++i) {
      INFO("request " << i);
      const auto want = solo(m, cs[i]);
      CHECK(got[i].tokens == want.tokens);
      CHECK(got[i].text == want.text);
    }
    CHECK(sched.pool().n_free() == sched.pool().n_blocks());
  }
}

TEST_CASE("Scheduler: cancellation ends a request at the next step and frees its blocks", "[scheduler]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  runtime::Scheduler sched(m.model, *m.tok, {.max_seqs = 2, .step_tokens = kExact, .n_ctx = 128, .block_size = 8, .exact = true});
  std::map<uint64_t, runtime::GenerationResult> done;
  auto submit = [&](const char* text, int n) {
    runtime::ServeRequest r;
    r.prompt = m.tok->encode(text, true, false);
    r.sampling.temperature = 0.f;
    r.generation.max_new_tokens = n;
    r.generation.stop_at_eog = false;
    auto id = std::make_shared<uint64_t>(0);
    r.on_done = [&done, id](const runtime::GenerationResult& g) { done[*id] = g; };
    *id = sched.submit(std::move(r));
    return *id;
  };
  const uint64_t a = submit("The capital of France is", 40);
  const uint64_t b = submit("Once upon a time", 40);
  const uint64_t c = submit("Water boils at", 5);  // waits: max_seqs is 2
  for (int i = 0; i < 4; ++i) REQUIRE(sched.step());
  CHECK(sched.n_running() == 2);
  CHECK(sched.n_waiting() == 1);
  const int64_t held = sched.pool().n_blocks() - sched.pool().n_free();
  CHECK(held > 0);
  CHECK(sched.cancel(a));
  CHECK(sched.cancel(c));  // a waiting one too
  CHECK_FALSE(sched.cancel(999));
  sched.step();
  REQUIRE(done.count(a) == 1);
  REQUIRE(done.count(c) == 1);
  CHECK(done[a].stop == runtime::StopReason::callback);
  CHECK(done[c].tokens.empty());
  CHECK(sched.n_running() == 1);
  CHECK(sched.pool().n_blocks() - sched.pool().n_free() < held);
  sched.run();
  CHECK(done[b].tokens.size() == 40);
  CHECK(sched.pool().n_free() == sched.pool().n_blocks());
}

TEST_CASE("Scheduler: bad requests are Errors and queue nothing", "[scheduler]") {
  const auto m = test::load_default_model();
  TESSERA_SKIP_WITHOUT_DEFAULT_MODEL(m);
  runtime::Scheduler sched(m.model, *m.tok, {.n_ctx = 32, .block_size = 8, .n_blocks = 3});
  runtime::ServeRequest empty;
  CHECK_THROWS_WITH(sched.submit(empty), Catch::Contains("empty prompt"));
  runtime::ServeRequest long_prompt;
  long_prompt.prompt.assign(33, 1);
  CHECK_THROWS_WITH(sched.submit(long_prompt), Catch::Contains("longer than the context of 32"));
  runtime::ServeRequest bad_id;
  bad_id.prompt = {1, -4};
  CHECK_THROWS_WITH(sched.submit(bad_id), Catch::Contains("token id -4 outside the vocabulary"));
  runtime::ServeRequest too_big;
  too_big.prompt.assign(20, 1);
  too_big.generation.max_new_tokens = 10;  // 30 positions: 4 blocks of 8, the pool holds 3
  CHECK_THROWS_WITH(sched.submit(too_big), Catch::Contains("needs 4 KV blocks; the pool holds 3"));
  runtime::ServeRequest bad_sampler;
  bad_sampler.prompt = {1, 2};
  bad_sampler.generation.max_new_tokens = 2;
  bad_sampler.sampling.top_p = 0.f;
  CHECK_THROWS_WITH(sched.submit(bad_sampler), Catch::Contains("top_p"));
  CHECK(sched.n_waiting() == 0);
  CHECK_FALSE(sched.step());
  runtime::SchedulerConfig zero;
  zero.max_seqs = 0;
  CHECK_THROWS_WITH(runtime::Scheduler(m.model, *m.tok, zero), Catch::Contains("each must be positive"));
}
