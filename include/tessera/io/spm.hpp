/// \file
/// SentencePiece-style BPE (`tokenizer.ggml.model == "llama"`): spaces written
/// as U+2581 '▁', adjacent pieces merged highest score first, and characters the
/// vocabulary lacks spelled as <0xNN> byte tokens.
#pragma once

#include <array>
#include <cstdint>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/bpe.hpp"
#include "tessera/io/unicode.hpp"

namespace tessera::io {

/// The SentencePiece-style BPE encoder over a vocabulary's scores, and the space and byte-token escapes.
class SpmModel {
 public:
  static constexpr std::string_view kSpace = "\xE2\x96\x81";  ///< U+2581, SentencePiece's visible space

  /// scores: one per token (empty: all 0). unk: the id used for a byte without a <0xNN> token, or -1.
  SpmModel(const TokenIndex& index, std::span<const float> scores, int32_t unk)
      : scores_(scores.begin(), scores.end()), unk_(unk) {
    static constexpr char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const std::string name = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
      byte_token_[b] = find_token(index, name);
    }
  }

  /// ' ' -> '▁'.
  static std::string escape_spaces(std::string_view text) {
    std::string out;
    out.reserve(text.size() + text.size() / 4);
    for (char c : text) {
      if (c == ' ') out += kSpace;
      else out += c;
    }
    return out;
  }
  /// '▁' -> ' '.
  static std::string unescape_spaces(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size();) {
      if (text.substr(i, kSpace.size()) == kSpace) {
        out += ' ';
        i += kSpace.size();
      } else {
        out += text[i++];
      }
    }
    return out;
  }
  /// The byte a "<0xNN>" token stands for, or -1.
  static int byte_of(std::string_view text) {
    auto digit = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
    if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
    const int hi = digit(text[3]), lo = digit(text[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
  }

  /// Appends the ids of escaped text (spaces already '▁'). Starts from one symbol per UTF-8 character and
  /// repeatedly joins the adjacent pair whose concatenation is the highest-scoring token (leftmost on ties);
  /// a final symbol that is no token is spelled as byte tokens. O(n log n) for n characters.
  /// Error when a byte has neither a <0xNN> token nor an unknown token to stand for it.
  void encode(std::string_view text, const TokenIndex& index, std::vector<int32_t>& out) const {
    // One symbol per character; a malformed byte is a symbol of its own, so that it cannot swallow the
    // characters after it (llama.cpp goes by the lead byte alone; the two differ on malformed text only).
    std::vector<Symbol> sym;
    for (const CodePoint& c : decode_utf8(text)) {
      const auto i = static_cast<int32_t>(sym.size());
      sym.push_back({c.offset, c.length, i - 1, i + 1});
    }
    if (sym.empty()) return;
    sym.back().next = -1;
    std::priority_queue<Candidate> queue;
    auto try_pair = [&](int32_t left) {
      const int32_t right = left < 0 ? -1 : sym[left].next;
      if (right < 0) return;
      const uint32_t len = sym[left].len + sym[right].len;
      const int32_t id = find_token(index, text.substr(sym[left].begin, len));
      if (id >= 0) queue.push({score(id), left, right, len});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) try_pair(i);
    while (!queue.empty()) {
      const Candidate c = queue.top();
      queue.pop();
      Symbol& l = sym[c.left];
      // Stale when either side has been merged since the pair was queued: its lengths no longer add up.
      if (l.len == 0 || l.next != c.right || l.len + sym[c.right].len != c.len) continue;
      l.len = c.len;
      l.next = sym[c.right].next;
      if (l.next >= 0) sym[l.next].prev = c.left;
      sym[c.right].len = 0;
      try_pair(l.prev);
      try_pair(c.left);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) emit(text.substr(sym[i].begin, sym[i].len), index, out);
  }

 private:
  struct Symbol {
    uint32_t begin, len;  // bytes of text; len 0 once merged into the left neighbour
    int32_t prev, next;
  };
  struct Candidate {
    float score;
    int32_t left, right;
    uint32_t len;
    bool operator<(const Candidate& o) const {  // priority_queue pops the greatest: highest score, then leftmost
      return score != o.score ? score < o.score : left > o.left;
    }
  };

  float score(int32_t id) const { return static_cast<size_t>(id) < scores_.size() ? scores_[id] : 0.0f; }

  void emit(std::string_view piece, const TokenIndex& index, std::vector<int32_t>& out) const {
    if (const int32_t id = find_token(index, piece); id >= 0) {
      out.push_back(id);
      return;
    }
    for (unsigned char b : piece) {
      const int32_t id = byte_token_[b] >= 0 ? byte_token_[b] : unk_;
      check(id >= 0, "SentencePiece vocabulary has neither <0x", std::string{"0123456789ABCDEF"[b >> 4]},
            std::string{"0123456789ABCDEF"[b & 15]}, "> nor an unknown token for byte ", int{b});
      out.push_back(id);
    }
  }

  std::vector<float> scores_;
  std::array<int32_t, 256> byte_token_{};
  int32_t unk_ = -1;
};

}  // namespace tessera::io
