/// \file
/// Continuous (iteration-level) batching over one model: requests join and
/// leave between steps, and each step is one models::LlamaBatch pass over the
/// tokens of every running sequence, so the weights are read once per step for
/// all of them. Every sequence keeps its KV in a kv::PagedKvCache on one shared
/// kv::KvBlockPool.
///
/// Each step():
///   1. ends cancelled requests (their blocks go back to the pool);
///   2. admits waiting requests, first come first served, while the pool has
///      the blocks for the tokens they must (re)compute and fewer than
///      max_seqs run; with prefix caching a request first adopts the longest
///      run of published full blocks that match its tokens (another request's
///      prompt, or its own before a preemption) and computes only the rest;
///   3. plans the rows: one decode row per sequence that is generating, then
///      prompt chunks of the others (chunked prefill) until step_tokens rows;
///   4. if the pool cannot hold the step's new positions, preempts the youngest
///      sequence (frees its blocks; it waits at the head of the queue and later
///      recomputes prompt + generated tokens, its sampler state kept) and plans
///      again;
///   5. runs the pass, publishes every block it filled under its prefix key
///      (kv::prefix_key), samples each sequence whose rows reached its last
///      token, streams its text, and ends it on an end-of-generation token, a
///      stop string, max_new_tokens, a full context or an on_text that returns
///      false: the same rules, in the same order, as runtime::generate.
///
/// With SchedulerConfig::exact (and so steps of at most
/// backend::kDecodeExactRows rows) every step carries decode's exact bits, and
/// every request gets exactly the tokens runtime::generate would give it alone
/// with the same seed, however requests interleave, chunk, share prefix blocks
/// or get preempted. Without it, multi-row steps take the fastest kernels
/// (backend::ExactRowsScope) for throughput. Single-threaded: one thread
/// calls submit / cancel / step (a server queues its requests to that thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tessera/backend/backend.hpp"
#include "tessera/core/error.hpp"
#include "tessera/io/tokenizer.hpp"
#include "tessera/kv/paged.hpp"
#include "tessera/models/llama.hpp"
#include "tessera/models/llama_batch.hpp"
#include "tessera/runtime/generator.hpp"
#include "tessera/runtime/metrics.hpp"
#include "tessera/sample/sampler.hpp"

namespace tessera::runtime {

/// Sizes of a Scheduler, fixed at construction.
struct SchedulerConfig {
  int max_seqs = 16;           ///< sequences running at once at most
  int step_tokens = 256;       ///< rows in one step at most (decode rows + prompt chunks)
  int64_t n_ctx = 2048;        ///< positions of one sequence at most (prompt + generated)
  int64_t block_size = 16;     ///< KV positions per pool block
  int64_t n_blocks = 0;        ///< pool blocks; 0: enough for max_seqs sequences of n_ctx
  KvType kv_type = KvType::f32;  ///< storage of the cached K/V rows
  bool prefix_caching = true;  ///< share full KV blocks between equal token prefixes
  /// true: every step carries decode's exact bits, so each request gets exactly
  /// the tokens runtime::generate gives it alone (needs step_tokens <=
  /// backend::kDecodeExactRows). false: steps of two rows or more take the
  /// fastest kernels, whose sums may differ from decode's in the last bits
  /// (greedy can then part from a solo run at a near tie).
  bool exact = false;
};

/// One request: what to continue and how, and where its results go.
struct ServeRequest {
  std::vector<int32_t> prompt;             ///< token ids; not empty, at most n_ctx
  sample::SamplerParams sampling{};        ///< the sampler chain and its seed
  GenerationConfig generation{};           ///< max_new_tokens, stop_at_eog, stop_strings
  OnText on_text{};                        ///< each piece of final text; return false to stop the request
  std::function<void(const GenerationResult&)> on_done{};  ///< called once, when the request ends
};

/// Continuous batching over one model; see the file comment for the algorithm.
class Scheduler {
 public:
  /// `tok` and `metrics` (optional) must outlive the scheduler.  Error for a
  /// non-positive size, or a pool too small for one sequence of one block.
  Scheduler(std::shared_ptr<const models::LlamaModel> model, const io::Tokenizer& tok, SchedulerConfig cfg,
            Metrics* metrics = nullptr)
      : model_(std::move(model)), tok_(&tok), cfg_(cfg), metrics_(metrics), batch_(model_, cfg.step_tokens) {
    check(cfg_.max_seqs > 0 && cfg_.step_tokens > 0 && cfg_.n_ctx > 0 && cfg_.block_size > 0 && cfg_.n_blocks >= 0,
          "Scheduler: max_seqs ", cfg_.max_seqs, ", step_tokens ", cfg_.step_tokens, ", n_ctx ", cfg_.n_ctx,
          ", block_size ", cfg_.block_size, ", n_blocks ", cfg_.n_blocks, ": each must be positive");
    check(!cfg_.exact || cfg_.step_tokens <= backend::kDecodeExactRows, "Scheduler: exact steps need step_tokens <= ",
          backend::kDecodeExactRows, ", got ", cfg_.step_tokens);
    if (cfg_.n_blocks == 0) cfg_.n_blocks = cfg_.max_seqs * blocks_for(cfg_.n_ctx);
    pool_ = std::make_shared<kv::KvBlockPool>(models::kv_layout(model_->config(), cfg_.kv_type), cfg_.block_size,
                                              cfg_.n_blocks);
    t0_ = std::chrono::steady_clock::now();
  }

  /// Queues a request; returns its id.  Error (and nothing queued) for an empty
  /// prompt, a prompt longer than n_ctx, a token outside the vocabulary, bad
  /// sampler settings, or a request whose prompt + max_new_tokens needs more
  /// blocks than the whole pool holds.
  uint64_t submit(ServeRequest req) {
    const auto& c = model_->config();
    const auto n = static_cast<int64_t>(req.prompt.size());
    check(n > 0, "Scheduler: empty prompt");
    check(n <= cfg_.n_ctx, "prompt of ", n, " tokens is longer than the context of ", cfg_.n_ctx, " tokens");
    for (int32_t t : req.prompt)
      check(t >= 0 && t < c.n_vocab, "Scheduler: token id ", t, " outside the vocabulary [0, ", c.n_vocab, ")");
    const int64_t most = std::min<int64_t>(cfg_.n_ctx, n + std::max(0, req.generation.max_new_tokens));
    check(blocks_for(most) <= pool_->n_blocks(), "Scheduler: a request of ", most, " positions needs ",
          blocks_for(most), " KV blocks; the pool holds ", pool_->n_blocks());
    auto s = std::make_unique<Seq>(next_id_++, std::move(req), *tok_, c.n_vocab);
    for (int32_t t : s->req.prompt) s->sampler.accept(t);
    s->tokens = s->req.prompt;
    s->result.n_prompt = static_cast<int>(n);
    s->arrival = now();
    if (metrics_) metrics_->on_arrival(s->id, s->arrival, n);
    waiting_.push_back(std::move(s));
    return next_id_ - 1;
  }

  /// Ends request `id` at the next step (StopReason::callback); its blocks are
  /// freed then.  False when no such request is waiting or running.
  bool cancel(uint64_t id) {
    for (auto* q : {&waiting_, &running_})
      for (auto& s : *q)
        if (s->id == id) return s->cancelled = true;
    return false;
  }

  /// One scheduling step (see the file comment).  Returns false when there was
  /// nothing to do.  An Error from the model leaves every cache as it was.
  bool step() {
    for (auto* q : {&waiting_, &running_})
      for (size_t i = 0; i < q->size();)
        if ((*q)[i]->cancelled) {
          auto s = std::move((*q)[i]);
          q->erase(q->begin() + static_cast<std::ptrdiff_t>(i));
          s->result.stop = StopReason::callback;
          finish(*s);
        } else {
          ++i;
        }
    admit();
    if (running_.empty()) return false;

    std::vector<Planned> plan = make_plan();
    // Preempt the youngest until the step's new positions fit in the pool.
    while (blocks_needed(plan) > pool_->n_free()) {
      check(running_.size() > 1, "Scheduler: one sequence does not fit the KV pool");  // submit rules this out
      size_t y = 0;
      for (size_t i = 1; i < running_.size(); ++i)
        if (running_[i]->order > running_[y]->order) y = i;
      auto s = std::move(running_[y]);
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(y));
      s->cache.reset();  // its blocks go back; it recomputes prompt + generated tokens when readmitted
      ++preemptions_;
      waiting_.push_front(std::move(s));
      plan = make_plan();
    }

    std::vector<models::BatchSeq> seqs;
    seqs.reserve(plan.size());
    int64_t rows = 0;
    double kv_bytes = 0;
    for (const Planned& p : plan) {
      const auto done = p.seq->cache->size();
      seqs.push_back({p.seq->cache.get(),
                      std::span<const int32_t>(p.seq->tokens).subspan(static_cast<size_t>(done), static_cast<size_t>(p.n)),
                      p.logits});
      rows += p.n;
      kv_bytes += static_cast<double>(done + p.n) * static_cast<double>(pool_->layout().bytes_per_token());
    }
    const double t_start = now();
    const auto logits = [&] {
      const backend::ExactRowsScope rows(cfg_.exact ? backend::kDecodeExactRows : 1);
      return batch_.eval(seqs);
    }();
    const double t_end = now();
    ++steps_;
    for (const Planned& p : plan) publish(*p.seq);

    int64_t m = 0;
    std::vector<Seq*> ended;
    for (const Planned& p : plan) {
      if (!p.logits) continue;
      Seq& s = *p.seq;
      const auto row = std::span<const float>(&logits(m++, 0), static_cast<size_t>(logits.dim(1)));
      if (s.req.generation.max_new_tokens <= 0) {  // prefill only, as generate does
        ended.push_back(&s);
        continue;
      }
      if (emit_token(s, s.sampler.sample(row), t_end)) ended.push_back(&s);
    }
    if (metrics_)
      metrics_->on_step({t_start, t_end - t_start, static_cast<int>(plan.size()), rows,
                         static_cast<double>(model_->weight_bytes_per_token()) + kv_bytes,
                         pool_->n_blocks() - pool_->n_free(), pool_->n_blocks()});
    for (Seq* e : ended)
      for (size_t i = 0; i < running_.size(); ++i)
        if (running_[i].get() == e) {
          auto s = std::move(running_[i]);
          running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
          finish(*s);
          break;
        }
    return true;
  }

  /// Steps until no request waits or runs.
  void run() {
    while (step()) {
    }
  }

  size_t n_waiting() const { return waiting_.size(); }    ///< requests queued, preempted ones included
  size_t n_running() const { return running_.size(); }    ///< requests holding a KV cache
  int64_t steps() const { return steps_; }                ///< forward passes run
  int64_t preemptions() const { return preemptions_; }    ///< sequences preempted so far
  int64_t prefix_hit_tokens() const { return prefix_hits_; }  ///< positions adopted from cached blocks instead of computed
  const kv::KvBlockPool& pool() const { return *pool_; }  ///< the shared KV pool
  const SchedulerConfig& config() const { return cfg_; }  ///< the sizes, n_blocks resolved
  /// Seconds since construction: the clock of the events given to Metrics
  /// (pass it to Metrics::snapshot).  Safe from any thread.
  double now() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

 private:
  struct Seq {
    Seq(uint64_t i, ServeRequest r, const io::Tokenizer& tok, int n_vocab)
        : id(i), req(std::move(r)), sampler(req.sampling, n_vocab), out(tok, req.generation, req.on_text, result) {}
    uint64_t id;
    ServeRequest req;
    sample::Sampler sampler;
    GenerationResult result;
    TokenStream out;                          // generate()'s rules over result
    std::unique_ptr<kv::PagedKvCache> cache;  // null while waiting
    std::vector<int32_t> tokens;              // prompt + generated; the last one is not in the cache yet
    std::vector<uint64_t> keys;               // prefix key of each full block of tokens computed so far
    size_t published = 0;                     // blocks of the cache published (or found) so far
    int64_t order = 0;  // admission order: the largest is the youngest
    double arrival = 0;
    bool cancelled = false;
  };
  struct Planned {
    Seq* seq;
    int64_t n;    // rows this step
    bool logits;  // the rows reach its last token
  };

  int64_t blocks_for(int64_t positions) const { return (positions + cfg_.block_size - 1) / cfg_.block_size; }

  // Prefix keys of the first n full blocks of s.tokens (extends s.keys as needed).
  void extend_keys(Seq& s, size_t n) {
    const auto B = static_cast<size_t>(cfg_.block_size);
    for (size_t i = s.keys.size(); i < n; ++i)
      s.keys.push_back(kv::prefix_key(i == 0 ? 0 : s.keys[i - 1], std::span<const int32_t>(s.tokens).subspan(i * B, B)));
  }

  void admit() {
    while (!waiting_.empty() && running_.size() < static_cast<size_t>(cfg_.max_seqs)) {
      Seq& s = *waiting_.front();
      const auto n_tok = static_cast<int64_t>(s.tokens.size());
      // Cached blocks: full ones before the last token (its logits must be computed).
      std::vector<int32_t> hit;
      int64_t revived = 0;  // hits that sit on the free list: adopting them uses free blocks too
      if (cfg_.prefix_caching) {
        const auto full = static_cast<size_t>((n_tok - 1) / cfg_.block_size);
        extend_keys(s, full);
        for (size_t i = 0; i < full; ++i) {
          const int32_t b = pool_->find(s.keys[i]);
          if (b < 0) break;
          hit.push_back(b);
          revived += pool_->refs(b) == 0;
        }
      }
      const int64_t need = blocks_for(n_tok) - static_cast<int64_t>(hit.size()) + revived;
      if (need > pool_->n_free()) break;  // first come, first served
      s.cache = std::make_unique<kv::PagedKvCache>(pool_, cfg_.n_ctx);
      s.cache->adopt(hit);
      s.published = hit.size();
      prefix_hits_ += s.cache->size();
      s.order = next_order_++;
      running_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
  }

  // Publishes the blocks that s's cache has filled since the last call.
  void publish(Seq& s) {
    if (!cfg_.prefix_caching) return;
    const auto full = static_cast<size_t>(s.cache->size() / cfg_.block_size);
    extend_keys(s, full);
    const auto table = s.cache->block_table();
    for (; s.published < full; ++s.published) pool_->publish(table[s.published], s.keys[s.published]);
  }

  std::vector<Planned> make_plan() {
    std::vector<Planned> plan;
    int64_t budget = cfg_.step_tokens;
    for (int pass = 0; pass < 2; ++pass)  // decode rows first: they keep inter-token latency low
      for (auto& s : running_) {
        const int64_t pending = static_cast<int64_t>(s->tokens.size()) - s->cache->size();
        const bool decoding = !s->result.tokens.empty() && pending == 1;
        if (budget == 0 || decoding != (pass == 0)) continue;
        const int64_t n = std::min(pending, budget);
        plan.push_back({s.get(), n, n == pending});
        budget -= n;
      }
    return plan;
  }

  int64_t blocks_needed(const std::vector<Planned>& plan) const {
    int64_t need = 0;
    for (const Planned& p : plan) {
      const int64_t have = p.seq->cache->size();
      need += blocks_for(have + p.n) - blocks_for(have);
    }
    return need;
  }

  // A sampled token: generate()'s rules through the shared TokenStream. True when the request ends.
  bool emit_token(Seq& s, int32_t token, double t) {
    s.sampler.accept(token);
    s.tokens.push_back(token);
    if (s.result.tokens.empty()) s.result.ttft_s = t - s.arrival;
    if (metrics_) metrics_->on_tokens(s.id, t);
    return s.out.push(token, static_cast<int64_t>(s.tokens.size()) - 1, cfg_.n_ctx);
  }

  void finish(Seq& s) {
    s.out.finish();
    s.cache.reset();
    if (metrics_) metrics_->on_finish(s.id, now());
    if (s.req.on_done) s.req.on_done(s.result);
  }

  std::shared_ptr<const models::LlamaModel> model_;
  const io::Tokenizer* tok_;
  SchedulerConfig cfg_;
  Metrics* metrics_;
  models::LlamaBatch batch_;
  std::shared_ptr<kv::KvBlockPool> pool_;
  std::deque<std::unique_ptr<Seq>> waiting_;
  std::deque<std::unique_ptr<Seq>> running_;
  uint64_t next_id_ = 1;
  int64_t next_order_ = 0, steps_ = 0, preemptions_ = 0, prefix_hits_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace tessera::runtime
