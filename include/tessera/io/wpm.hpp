/// \file
/// WordPiece (`tokenizer.ggml.model == "bert"`), as GGUF stores BERT
/// vocabularies: a word-initial piece is spelled with a leading U+2581 '▁'
/// ("▁play"), a continuation piece bare ("ing", HF's "##ing").
///
///   text -> words: split at white space; drop NUL, U+FFFD and control
///           characters; lowercase and strip accents (first code point of NFD);
///           each punctuation mark, ASCII symbol and CJK ideograph its own word
///   word -> ids:   "▁" + word, longest vocabulary match from the left, again
///                  and again; a word with any unmatched rest is one UNK
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/io/bpe.hpp"
#include "tessera/io/unicode.hpp"

namespace tessera::io {

/// The WordPiece encoder over a vocabulary index.
class WpmModel {
 public:
  static constexpr std::string_view kWordStart = "\xE2\x96\x81";  ///< U+2581, marks a word-initial piece

  /// index: text -> id of every token; unk: the id of a word that cannot be spelled (-1: the word is dropped).
  WpmModel(const TokenIndex& index, int32_t unk) : unk_(unk) {
    for (const auto& [text, id] : index) max_len_ = std::max(max_len_, text.size());
  }

  /// The words of text, normalised (see the file comment). O(n log table) in the text's length.
  static std::vector<std::string> words(std::string_view text) {
    std::vector<std::string> out(1);
    for (const CodePoint& c : decode_utf8(text)) {
      const uint32_t cp = nfd_first(c.cp);
      if (is_space(cp)) {
        if (!out.back().empty()) out.emplace_back();
        continue;
      }
      if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
      const uint32_t lower = to_lower(cp);
      if (is_punctuation(cp) || (cp < 0x7F && is_ascii_symbol(cp)) || is_cjk(cp)) {
        if (!out.back().empty()) out.emplace_back();
        append_utf8(out.back(), lower);
        out.emplace_back();
      } else {
        append_utf8(out.back(), lower);
      }
    }
    if (out.back().empty()) out.pop_back();
    return out;
  }

  /// Appends the ids of one normalised word. O(len * max token length) lookups.
  void encode_word(std::string_view word, const TokenIndex& index, std::vector<int32_t>& out) const {
    const std::string w = std::string(kWordStart) + std::string(word);
    const size_t start = out.size();
    for (size_t i = 0; i < w.size();) {
      size_t j = std::min(w.size(), i + max_len_);
      int32_t id = -1;
      for (; j > i; --j)
        if ((id = find_token(index, std::string_view(w).substr(i, j - i))) >= 0) break;
      if (id < 0) {  // an unspellable rest: the whole word is unknown
        out.resize(start);
        break;
      }
      out.push_back(id);
      i = j;
    }
    if (out.size() == start && unk_ >= 0) out.push_back(unk_);
  }

  /// Encodes text: words(), then each word.
  void encode(std::string_view text, const TokenIndex& index, std::vector<int32_t>& out) const {
    for (const std::string& word : words(text)) encode_word(word, index, out);
  }

 private:
  // Unicode category S within ASCII: $ + < = > ^ ` | ~.
  static bool is_ascii_symbol(uint32_t cp) { return std::string_view("$+<=>^`|~").find(static_cast<char>(cp)) != std::string_view::npos; }
  // CJK ideographs (the unified blocks and their extensions, compatibility ideographs), as BERT's tokenizer lists them.
  static bool is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
  }

  int32_t unk_ = -1;
  size_t max_len_ = 1;
};

}  // namespace tessera::io
