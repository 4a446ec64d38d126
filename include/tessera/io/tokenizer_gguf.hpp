/// \file
/// TokenizerSpec from a GGUF file's tokenizer.* metadata; kept apart so the
/// tokenizer itself does not depend on the GGUF reader.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/io/gguf.hpp"
#include "tessera/io/tokenizer.hpp"

namespace tessera::io {

/// Reads tokenizer.ggml.{model, pre, tokens, scores, token_type, merges, *_token_id, add_bos_token,
/// add_eos_token, add_space_prefix} and tokenizer.chat_template. Missing keys take llama.cpp's defaults:
/// a llama (SentencePiece) vocabulary has BOS 1, EOS 2, UNK 0, adds BOS and a space prefix; a gpt2 one adds
/// neither; a bert (WordPiece) one has [CLS] 101 as BOS (or cls_token_id), UNK 100, [SEP] 102, PAD 0. Error naming the key when one is missing (model, tokens) or of the wrong type.
inline TokenizerSpec from_gguf_metadata(const GgufMetadata& m) {
  TokenizerSpec s;
  s.model = m.get<std::string>("tokenizer.ggml.model");
  const bool spm = s.model == "llama", wpm = s.model == "bert";
  s.pre = m.get_or<std::string>("tokenizer.ggml.pre", spm ? "" : "default");
  s.tokens = m.get<std::vector<std::string>>("tokenizer.ggml.tokens");
  s.scores = m.get_or<std::vector<float>>("tokenizer.ggml.scores", {});
  s.token_types = m.get_or<std::vector<int32_t>>("tokenizer.ggml.token_type", {});
  s.merges = m.get_or<std::vector<std::string>>("tokenizer.ggml.merges", {});
  const auto n = static_cast<int32_t>(s.tokens.size());
  auto id = [&](const char* key, int32_t fallback) -> int32_t {
    if (!m.has(key)) return fallback < n ? fallback : -1;  // a default that does not fit a small vocabulary
    const auto v = m.get<int64_t>(key);
    if (v == 0xFFFFFFFF) return -1;  // some converters write "none" as a u32 -1
    return static_cast<int32_t>(std::clamp<int64_t>(v, INT32_MIN, INT32_MAX));  // from_spec rejects the misfits
  };
  s.bos = id("tokenizer.ggml.bos_token_id", spm ? 1 : wpm ? id("tokenizer.ggml.cls_token_id", 101) : -1);
  s.eos = id("tokenizer.ggml.eos_token_id", spm ? 2 : -1);
  s.eot = id("tokenizer.ggml.eot_token_id", -1);
  s.unk = id("tokenizer.ggml.unknown_token_id", spm ? 0 : wpm ? 100 : -1);
  s.pad = id("tokenizer.ggml.padding_token_id", wpm ? 0 : -1);
  s.sep = id("tokenizer.ggml.seperator_token_id", wpm ? 102 : -1);  // sic: GGUF's spelling
  s.add_bos = m.get_or<bool>("tokenizer.ggml.add_bos_token", spm || wpm);
  s.add_eos = m.get_or<bool>("tokenizer.ggml.add_eos_token", false);
  // A gpt2 vocabulary never takes the space prefix (llama.cpp ignores the key for it too).
  s.add_space_prefix = spm && m.get_or<bool>("tokenizer.ggml.add_space_prefix", true);
  s.chat_template = m.get_or<std::string>("tokenizer.chat_template", "");
  return s;
}

/// Same as from_gguf_metadata (the name existing callers use).
inline TokenizerSpec tokenizer_spec_from_gguf(const GgufMetadata& m) { return from_gguf_metadata(m); }

}  // namespace tessera::io
