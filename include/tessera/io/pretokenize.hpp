/// \file
/// Pre-tokenizers of byte-level BPE vocabularies: split text into words before
/// merging, as the model's training regex did. Hand-written scanners over code
/// points (std::regex has no `\p{L}` and is slow), one per `tokenizer.ggml.pre`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/unicode.hpp"

namespace tessera::io {

/// How a byte-level BPE vocabulary splits text into words; each value's regex is in the comment beside it.
enum class PreTokenizer {
  gpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  smollm,  // every \p{N} alone first, then the gpt2 pattern (SmolLM, StarCoder-style vocabularies)
  llama3,  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
};

/// A pre-tokenizer and how words are merged after it.
struct PreTokenizerConfig {
  PreTokenizer kind = PreTokenizer::gpt2;  ///< The word split
  bool ignore_merges = false;  ///< a word that is itself a token is emitted whole, unmerged (llama-3 vocabularies)
};

/// The pre-tokenizer for a `tokenizer.ggml.pre` value (the names llama.cpp's converter writes).
/// Error for one tessera does not know, "default" included: that is a different, older split.
inline PreTokenizerConfig pre_tokenizer_from_name(std::string_view name) {
  for (std::string_view n : {"gpt2", "gpt-2", "phi-2", "mpt", "olmo"})
    if (name == n) return {PreTokenizer::gpt2, false};
  for (std::string_view n : {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"})
    if (name == n) return {PreTokenizer::smollm, false};
  for (std::string_view n : {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "lfm2"})
    if (name == n) return {PreTokenizer::llama3, true};
  if (name == "smaug-bpe" || name == "dbrx") return {PreTokenizer::llama3, false};
  fail("unsupported pre-tokenizer '", name, "' (tokenizer.ggml.pre); known families: gpt2, smollm, llama3");
}

namespace detail {

// Length (in code points) of an English contraction at i, or 0.
inline size_t contraction(const std::vector<CodePoint>& c, size_t i, size_t end, bool ignore_case) {
  if (c[i].cp != '\'' || i + 1 >= end) return 0;
  auto lower = [&](size_t k) { return ignore_case && c[k].cp < 128 ? (c[k].cp | 32) : c[k].cp; };
  const uint32_t a = lower(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 < end) {
    const uint32_t b = lower(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  return 0;
}

inline bool is_other(uint32_t cp) { return !is_space(cp) && !is_letter(cp) && !is_number(cp); }

// One match of the gpt2 pattern at i (in [i, end)); returns its end.
inline size_t gpt2_match(const std::vector<CodePoint>& c, size_t i, size_t end) {
  if (const size_t n = contraction(c, i, end, false)) return i + n;
  const size_t j = c[i].cp == ' ' && i + 1 < end ? i + 1 : i;
  auto run = [&](size_t k, auto pred) { while (k < end && pred(c[k].cp)) ++k; return k; };
  if (is_letter(c[j].cp)) return run(j, is_letter);
  if (is_number(c[j].cp)) return run(j, is_number);
  if (is_other(c[j].cp)) return run(j, is_other);
  const size_t k = run(i, is_space);  // white space: leave the last one to a following word
  return k == end || k - i == 1 ? k : k - 1;
}

// One match of the llama3 pattern at i.
inline size_t llama3_match(const std::vector<CodePoint>& c, size_t i, size_t end) {
  auto run = [&](size_t k, auto pred) { while (k < end && pred(c[k].cp)) ++k; return k; };
  auto crlf = [](uint32_t cp) { return cp == '\r' || cp == '\n'; };
  if (const size_t n = contraction(c, i, end, true)) return i + n;
  const uint32_t x = c[i].cp;
  if (is_letter(x)) return run(i, is_letter);
  if (!crlf(x) && !is_number(x) && i + 1 < end && is_letter(c[i + 1].cp)) return run(i + 1, is_letter);
  if (is_number(x)) return std::min(run(i, is_number), i + 3);
  const size_t j = x == ' ' && i + 1 < end ? i + 1 : i;
  if (is_other(c[j].cp)) return run(run(j, is_other), crlf);
  const size_t k = run(i, is_space);
  for (size_t m = k; m > i; --m)  // \s*[\r\n]+ : white space ending in the last newline of the run
    if (crlf(c[m - 1].cp)) return m;
  return k == end || k - i == 1 ? k : k - 1;
}

}  // namespace detail

/// Splits text into pre-token words, views into text that together cover it in order.
/// O(n) code points (each Unicode class test is a binary search over a few hundred ranges).
inline std::vector<std::string_view> pre_tokenize(std::string_view text, PreTokenizer kind) {
  const auto cps = decode_utf8(text);
  std::vector<std::string_view> words;
  auto emit = [&](size_t a, size_t b) {
    words.push_back(text.substr(cps[a].offset, cps[b - 1].offset + cps[b - 1].length - cps[a].offset));
  };
  auto scan = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end;) {
      const size_t j = kind == PreTokenizer::llama3 ? detail::llama3_match(cps, i, end) : detail::gpt2_match(cps, i, end);
      emit(i, j);
      i = j;
    }
  };
  if (kind != PreTokenizer::smollm) {
    scan(0, cps.size());
    return words;
  }
  size_t seg = 0;  // smollm: every \p{N} is a word of its own; the text between goes through the gpt2 pattern
  for (size_t i = 0; i < cps.size(); ++i) {
    if (!is_number(cps[i].cp)) continue;
    scan(seg, i);
    emit(i, i + 1);
    seg = i + 1;
  }
  scan(seg, cps.size());
  return words;
}

}  // namespace tessera::io
