/// \file
/// The generation loop: prefill the prompt as one batch, then decode a token at
/// a time through the sampler chain, streaming text as it becomes final; stops
/// on an end-of-generation token, a stop string, max tokens or a full context.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/io/tokenizer.hpp"
#include "tessera/models/llama_context.hpp"
#include "tessera/runtime/stop_strings.hpp"
#include "tessera/sample/sampler.hpp"

namespace tessera::runtime {

/// Limits and stop conditions of generate().
struct GenerationConfig {
  int max_new_tokens = 128;  ///< most tokens generated; <= 0 runs the prompt only (prefill, nothing sampled)
  bool stop_at_eog = true;  ///< end-of-generation tokens (EOS, <|im_end|>, ...) end the turn
  std::vector<std::string> stop_strings{};  ///< text that ends generation; it is not emitted
};

/// Why generate() stopped: an end-of-generation token, a stop string, max_new_tokens reached,
/// the context full, or on_text returned false.
enum class StopReason { end_of_generation, stop_string, max_tokens, context_full, callback };

/// What generate() produced, and its timings.
struct GenerationResult {
  std::vector<int32_t> tokens;  ///< generated ids (the end-of-generation token included, if any)
  std::string text;  ///< everything streamed
  StopReason stop = StopReason::max_tokens;  ///< why generation ended
  int n_prompt = 0;  ///< prompt tokens evaluated
  ///@{
  /// Wall time in seconds: prefill_s of the prompt's forward pass and the first sample, decode_s
  /// of everything after it (later forward passes, sampling, detokenizing, on_text).
  double prefill_s = 0, decode_s = 0;
  ///@}
  double ttft_s = 0;  ///< time to first token: seconds from the start of the prompt's pass to the first generated token

  /// Prompt tokens per second of prefill (0 when prefill_s is 0).
  double prefill_tokens_per_s() const { return prefill_s > 0 ? n_prompt / prefill_s : 0; }
  /// Decode rate over the tokens after the first (each of which is one forward pass).
  double decode_tokens_per_s() const {
    return decode_s > 0 && tokens.size() > 1 ? static_cast<double>(tokens.size() - 1) / decode_s : 0;
  }
};

/// Called with each piece of final text; return false to stop.
using OnText = std::function<bool(std::string_view)>;

/// The output side of one generation, shared by generate() and the Scheduler so
/// both apply the same rules in the same order: each new token is recorded,
/// then generation ends on an end-of-generation token (its text is not
/// emitted), an on_text that returns false, a stop string, max_new_tokens, or a
/// full context.  Text is streamed as it becomes final (whole UTF-8 characters,
/// nothing that could still be a stop string's start).  `tok`, `on_text` and
/// `r` must outlive the stream.
class TokenStream {
 public:
  /// Streams into `r`, calling `on_text` (may be empty) with each final piece.
  TokenStream(const io::Tokenizer& tok, const GenerationConfig& cfg, const OnText& on_text, GenerationResult& r)
      : tok_(&tok), max_new_(cfg.max_new_tokens), stop_at_eog_(cfg.stop_at_eog), on_text_(&on_text), r_(&r),
        decoder_(tok), stops_(cfg.stop_strings) {}

  /// Records `token` (already accepted by the sampler); `n_past` is the number
  /// of positions evaluated so far, `n_ctx` the context.  True when generation
  /// ends here; r.stop says why.
  bool push(int32_t token, int64_t n_past, int64_t n_ctx) {
    GenerationResult& r = *r_;
    r.tokens.push_back(token);
    r.stop = StopReason::max_tokens;
    if (stop_at_eog_ && tok_->is_eog(token)) return r.stop = StopReason::end_of_generation, true;
    if (!emit(stops_.push(decoder_.push(token)))) return r.stop = StopReason::callback, true;
    if (stops_.stopped()) return r.stop = StopReason::stop_string, true;
    if (static_cast<int>(r.tokens.size()) >= max_new_) return true;
    if (n_past >= n_ctx) return r.stop = StopReason::context_full, true;
    return false;
  }

  /// Releases held-back text at the end, except after a stop string (it is the
  /// stop string's start) or a callback that asked to stop (it must not be
  /// called again).
  void finish() {
    if (r_->stop != StopReason::stop_string && r_->stop != StopReason::callback)
      emit(stops_.push(decoder_.flush()) + stops_.flush());
  }

 private:
  bool emit(const std::string& text) {
    r_->text += text;
    return text.empty() || !*on_text_ || (*on_text_)(text);
  }

  const io::Tokenizer* tok_;
  int max_new_;
  bool stop_at_eog_;
  const OnText* on_text_;
  GenerationResult* r_;
  io::StreamDecoder decoder_;
  StopStringMatcher stops_;
};

/// What generate() needs of a context: LlamaContext on the CPU,
/// LlamaCudaContext on a GPU.
template <class C>
concept EvalContext = requires(C& c, std::span<const int32_t> t) {
  { c.eval(t) } -> std::convertible_to<std::span<const float>>;
  { c.n_past() } -> std::convertible_to<int64_t>;
  { c.n_ctx() } -> std::convertible_to<int64_t>;
};

/// Runs prompt (appended after what ctx already holds) and generates. The sampler sees every
/// generated token (repetition penalty history).  Error if the prompt does not fit the context.
/// A context with eval_greedy() (a GPU one) picks greedy tokens itself when the sampler is a
/// plain argmax, so no logits are downloaded.
template <EvalContext Ctx>
GenerationResult generate(Ctx& ctx, const io::Tokenizer& tok, sample::Sampler& sampler,
                          std::span<const int32_t> prompt, const GenerationConfig& cfg, const OnText& on_text) {
  using clock = std::chrono::steady_clock;
  auto seconds = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  check(!prompt.empty(), "generate: empty prompt");
  check(ctx.n_past() + static_cast<int64_t>(prompt.size()) <= ctx.n_ctx(), "prompt of ", prompt.size(),
        " tokens (after ", ctx.n_past(), " in the cache) is longer than the context of ", ctx.n_ctx(), " tokens");
  GenerationResult r;
  r.n_prompt = static_cast<int>(prompt.size());
  for (int32_t t : prompt) sampler.accept(t);

  // One forward pass and the token after it.
  auto step = [&](std::span<const int32_t> tokens) -> int32_t {
    if constexpr (requires { ctx.eval_greedy(tokens); })
      if (sampler.is_argmax()) return ctx.eval_greedy(tokens);
    return sampler.sample(ctx.eval(tokens));
  };

  const auto t0 = clock::now();
  if (cfg.max_new_tokens <= 0) {  // prefill only: nothing is sampled
    ctx.eval(prompt);
    r.prefill_s = seconds(t0, clock::now());
    return r;
  }
  int32_t token = step(prompt);
  const auto t1 = clock::now();
  r.prefill_s = seconds(t0, t1);

  TokenStream out(tok, cfg, on_text, r);
  for (int i = 0;; ++i) {
    sampler.accept(token);
    if (i == 0) r.ttft_s = seconds(t0, clock::now());
    if (out.push(token, ctx.n_past(), ctx.n_ctx())) break;
    token = step(std::span<const int32_t>(&token, 1));
  }
  out.finish();
  r.decode_s = seconds(t1, clock::now());
  return r;
}

}  // namespace tessera::runtime
