/// \file
/// Text <-> token ids for GGUF vocabularies: GPT-2 byte-level BPE (`gpt2`),
/// SentencePiece-style BPE (`llama`) and WordPiece (`bert`), with special tokens
/// split out of the text first, and the streaming decoder that emits only
/// complete UTF-8.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/bpe.hpp"
#include "tessera/io/pretokenize.hpp"
#include "tessera/io/spm.hpp"
#include "tessera/io/unicode.hpp"
#include "tessera/io/wpm.hpp"

namespace tessera::io {

/// GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6
};

/// Everything a tokenizer is built from, as plain data.
/// The `tokenizer.ggml.*` metadata (io/tokenizer_gguf.hpp reads it from a GGUF file). Ids are -1 when absent.
struct TokenizerSpec {
  std::string model = "gpt2";  ///< "gpt2": byte-level BPE; "llama": SentencePiece-style BPE; "bert": WordPiece
  std::string pre = "gpt2";  ///< pre-tokenizer of a gpt2 model (tokenizer.ggml.pre); unused by llama
  std::vector<std::string> tokens;  ///< Text of each token id, in the vocabulary's spelling
  std::vector<float> scores;  ///< llama: merge priority of each token (higher first); empty = all 0
  std::vector<int32_t> token_types;  ///< TokenType values; empty = all normal
  std::vector<std::string> merges;    ///< gpt2: "left right", in rank order
  /// Special token ids: begin and end of sequence, end of turn, unknown, padding, separator (-1 when absent).
  /// A bert vocabulary's bos is its [CLS], its sep the [SEP] that ends every encoded text.
  ///@{
  int32_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1, sep = -1;
  ///@}
  /// Whether encode with add_special puts BOS first and EOS last.
  ///@{
  bool add_bos = false, add_eos = false;
  ///@}
  bool add_space_prefix = false;  ///< llama: a space before the text (and after each special token)
  std::string chat_template;  ///< tokenizer.chat_template, for io/chat_template.hpp
};

/// Text to token ids and back for one vocabulary (byte-level or SentencePiece-style BPE, WordPiece). Immutable once built
/// (encoding scratch is thread-local), so threads may share one.
class Tokenizer {
 public:
  /// Builds the lookup tables: O(vocabulary + merges). Error names an unsupported model or pre-tokenizer, a
  /// table whose length does not match the vocabulary, or a special id outside it.
  static Tokenizer from_spec(TokenizerSpec spec) {
    Tokenizer t;
    const size_t n = spec.tokens.size();
    check(spec.model == "gpt2" || spec.model == "llama" || spec.model == "bert", "unsupported tokenizer model '",
          spec.model, "' (tokenizer.ggml.model; supported: gpt2, llama, bert)");
    check(n > 0 && n < INT32_MAX, "tokenizer vocabulary has ", n, " tokens");
    check(spec.token_types.empty() || spec.token_types.size() == n, "tokenizer: ", spec.token_types.size(),
          " token types for ", n, " tokens");
    check(spec.scores.empty() || spec.scores.size() == n, "tokenizer: ", spec.scores.size(), " scores for ", n,
          " tokens");
    for (const auto& [name, id] :
         {std::pair{"bos", spec.bos}, {"eos", spec.eos}, {"eot", spec.eot}, {"unk", spec.unk}, {"pad", spec.pad},
          {"sep", spec.sep}})
      check(id >= -1 && id < static_cast<int32_t>(n), "tokenizer ", name, " token id ", id,
            " outside the vocabulary of ", n);
    t.types_.resize(n, TokenType::normal);
    for (size_t i = 0; i < spec.token_types.size(); ++i) {
      const int32_t v = spec.token_types[i];
      t.types_[i] = v >= 0 && v <= 6 ? static_cast<TokenType>(v) : TokenType::undefined;
    }
    for (size_t i = 0; i < n; ++i)  // a repeated text keeps its last id, as llama.cpp does
      if (!spec.tokens[i].empty()) t.index_.insert_or_assign(spec.tokens[i], static_cast<int32_t>(i));
    t.find_end_of_generation(spec);
    t.collect_specials(spec);
    if (spec.model == "gpt2") {
      const PreTokenizerConfig pre = pre_tokenizer_from_name(spec.pre);
      t.pre_ = pre.kind;
      t.bpe_.emplace(t.index_, spec.merges, pre.ignore_merges);
    } else if (spec.model == "bert") {
      t.wpm_.emplace(t.index_, spec.unk);
    } else {
      t.spm_.emplace(t.index_, spec.scores, spec.unk);
    }
    t.spec_ = std::move(spec);
    return t;
  }

  int32_t n_vocab() const { return static_cast<int32_t>(spec_.tokens.size()); }  ///< Number of tokens.
  int32_t bos() const { return spec_.bos; }  ///< Begin-of-sequence id, or -1.
  int32_t eos() const { return spec_.eos; }  ///< End-of-sequence id, or -1.
  /// End of generation: EOS, EOT and the end-of-turn tokens of common chat formats (`<|im_end|>`, `<|eot_id|>`, ...).
  bool is_eog(int32_t id) const { return std::find(eog_.begin(), eog_.end(), id) != eog_.end(); }
  /// The token's type (end-of-turn tokens count as control); Error for an id outside the vocabulary.
  TokenType type(int32_t id) const { return types_.at(checked(id)); }
  const TokenizerSpec& spec() const { return spec_; }  ///< The spec the tokenizer was built from.

  /// Token ids of text. add_special: BOS/EOS as the spec asks (WordPiece: [CLS] first and [SEP] last). parse_special: text such as "<|im_start|>"
  /// becomes its control token; otherwise only user-defined tokens are split out and control-token text is
  /// encoded as plain text. Special tokens match leftmost first, the longest at a position.
  /// O(n log n) in the text's length.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const {
    std::vector<int32_t> ids;
    if (add_special && spec_.add_bos && spec_.bos >= 0) ids.push_back(spec_.bos);
    size_t start = 0;
    for (size_t at = 0; at < text.size();) {
      const int32_t special = special_at(text, at, parse_special);
      if (special < 0) {
        ++at;
        continue;
      }
      if (at > start) encode_text(text.substr(start, at - start), ids);
      ids.push_back(special);
      at += spec_.tokens[special].size();
      start = at;
    }
    if (start < text.size()) encode_text(text.substr(start), ids);
    if (add_special && spec_.add_eos && spec_.eos >= 0) ids.push_back(spec_.eos);
    if (add_special && wpm_ && spec_.sep >= 0) ids.push_back(spec_.sep);
    return ids;
  }

  /// The bytes one token stands for: special tokens as their text, byte tokens as their byte, SentencePiece
  /// (and WordPiece's word-start) '▁' as a space. Error for an id outside the vocabulary.
  std::string token_to_piece(int32_t id) const {
    const std::string& text = spec_.tokens[checked(id)];
    if (is_special(id)) return text;
    if (bpe_) return bpe_->alphabet().decode(text);
    if (types_[id] == TokenType::byte)
      if (const int b = SpmModel::byte_of(text); b >= 0) return std::string(1, static_cast<char>(b));
    return SpmModel::unescape_spaces(text);
  }

  /// Text of ids: the inverse of encode. For SentencePiece vocabularies with a space prefix, the one space
  /// encode put at the start and after each special token is dropped again; likewise WordPiece's word-start
  /// space after a special token or at the start (WordPiece is lossy: its text comes back lowercased).
  std::string decode(std::span<const int32_t> ids) const {
    std::string out;
    bool after_special = true;
    for (int32_t id : ids) {
      const std::string piece = token_to_piece(id);
      const bool special = is_special(id);
      const bool strip =
          !special && after_special && ((spm_ && spec_.add_space_prefix) || wpm_) && !piece.empty() && piece[0] == ' ';
      out.append(piece, strip ? 1 : 0);
      after_special = special || (after_special && piece.empty());
    }
    return out;
  }

 private:
  int32_t checked(int32_t id) const {
    check(id >= 0 && id < n_vocab(), "token id ", id, " outside the vocabulary [0, ", n_vocab(), ")");
    return id;
  }
  bool is_special(int32_t id) const {
    const TokenType t = types_[id];
    return t == TokenType::control || t == TokenType::user_defined || t == TokenType::unknown;
  }

  // The text of end-of-turn tokens marks them as control tokens even where a converter typed them
  // as normal, so that they split out of text and end generation.
  void find_end_of_generation(const TokenizerSpec& spec) {
    for (std::string_view name : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                  "<|eom_id|>", "<|end_of_text|>", "<EOT>"})
      if (const int32_t id = find_token(index_, name); id >= 0) {
        eog_.push_back(id);
        types_[id] = TokenType::control;
      }
    for (int32_t id : {spec.eos, spec.eot})
      if (id >= 0) eog_.push_back(id);
  }
  void collect_specials(const TokenizerSpec& spec) {
    for (size_t i = 0; i < spec.tokens.size(); ++i)
      if (is_special(static_cast<int32_t>(i)) && !spec.tokens[i].empty())
        specials_[static_cast<unsigned char>(spec.tokens[i][0])].push_back(static_cast<int32_t>(i));
    for (auto& bucket : specials_)  // longest first, so "<|im_start|>" wins over a shorter token it begins with
      std::stable_sort(bucket.begin(), bucket.end(),
                       [&](int32_t a, int32_t b) { return spec.tokens[a].size() > spec.tokens[b].size(); });
  }
  // The special token whose text starts at text[at], or -1.
  int32_t special_at(std::string_view text, size_t at, bool parse_special) const {
    for (int32_t id : specials_[static_cast<unsigned char>(text[at])]) {
      if (!parse_special && types_[id] != TokenType::user_defined) continue;
      if (text.substr(at, spec_.tokens[id].size()) == spec_.tokens[id]) return id;
    }
    return -1;
  }

  // One run of text between special tokens. SentencePiece's space prefix goes before every such run, since
  // each starts the text or follows a special token.
  void encode_text(std::string_view text, std::vector<int32_t>& ids) const {
    if (bpe_) {
      for (std::string_view word : pre_tokenize(text, pre_)) bpe_->encode_word(word, index_, ids);
      return;
    }
    if (wpm_) {
      wpm_->encode(text, index_, ids);
      return;
    }
    spm_->encode(SpmModel::escape_spaces(spec_.add_space_prefix ? " " + std::string(text) : std::string(text)),
                 index_, ids);
  }

  TokenizerSpec spec_;
  TokenIndex index_;
  std::vector<TokenType> types_;
  std::array<std::vector<int32_t>, 256> specials_;  // by first byte
  std::vector<int32_t> eog_;
  PreTokenizer pre_ = PreTokenizer::gpt2;
  std::optional<BpeModel> bpe_;
  std::optional<SpmModel> spm_;
  std::optional<WpmModel> wpm_;
};

/// Turns a stream of tokens into text, holding back the bytes of an incomplete UTF-8 character
/// (a character can span several byte-level or <0xNN> tokens). Pieces are taken as they are: no
/// space prefix is dropped, since a stream continues a prompt.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(&tok) {}  ///< Decodes with tok, which must outlive the decoder.
  /// Text that is complete after this token (possibly empty).
  std::string push(int32_t id) {
    pending_ += tok_->token_to_piece(id);
    const size_t n = complete_utf8_prefix(pending_);
    std::string out = pending_.substr(0, n);
    pending_.erase(0, n);
    return out;
  }
  /// Whatever is held back (an incomplete character at the end of generation).
  std::string flush() { return std::exchange(pending_, {}); }

 private:
  const Tokenizer* tok_;
  std::string pending_;
};

}  // namespace tessera::io
