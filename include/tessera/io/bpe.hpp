/// \file
/// GPT-2 byte-level BPE: the byte <-> printable code point map, merge ranks
/// keyed by token pair, and the lowest-rank-first merging of one pre-token word.
/// The tokenizer (io/tokenizer.hpp) does the pre-tokenizing and special tokens.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/unicode.hpp"

namespace tessera::io {

namespace detail {
// Hash for unordered_map<std::string, ...> that also finds std::string_view keys without a copy.
struct TokenTextHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
}  // namespace detail

/// Token text -> id.
using TokenIndex = std::unordered_map<std::string, int32_t, detail::TokenTextHash, std::equal_to<>>;

/// Id of a token text, or -1.
inline int32_t find_token(const TokenIndex& index, std::string_view text) {
  const auto it = index.find(text);
  return it == index.end() ? -1 : it->second;
}

/// GPT-2's reversible map of the 256 byte values to printable code points: printable Latin-1 bytes map to
/// themselves, the other 68 to U+0100 onwards in byte order. Vocabularies store tokens in this alphabet.
class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet() {
    cp_to_byte_.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_cp_[b] = printable ? static_cast<uint32_t>(b) : next++;
      cp_to_byte_[byte_to_cp_[b]] = static_cast<int16_t>(b);
    }
  }
  uint32_t code_point(uint8_t byte) const { return byte_to_cp_[byte]; }  ///< The code point that stands for byte.
  /// The byte a code point stands for, or -1 when it is outside the alphabet.
  int byte(uint32_t cp) const { return cp < cp_to_byte_.size() ? cp_to_byte_[cp] : -1; }

  /// Bytes -> alphabet text (each byte becomes one 1- or 2-byte UTF-8 character).
  std::string encode(std::string_view bytes) const {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) append_utf8(out, byte_to_cp_[b]);
    return out;
  }
  /// Alphabet text -> bytes; characters outside the alphabet are kept as their UTF-8.
  std::string decode(std::string_view text) const {
    std::string out;
    for (const CodePoint& c : decode_utf8(text)) {
      if (const int b = byte(c.cp); b >= 0) out += static_cast<char>(b);
      else out.append(text.substr(c.offset, c.length));
    }
    return out;
  }

 private:
  std::array<uint32_t, 256> byte_to_cp_{};
  std::array<int16_t, 324> cp_to_byte_{};  // the largest mapped code point is U+0143
};

/// Merge ranks over token ids and the word encoder.
class BpeModel {
 public:
  /// merges: "left right" pairs in rank order (rank = position). A merge whose left, right or joined text
  /// is not a token can never produce a token, so it is left out. Error for a merge without a space.
  BpeModel(const TokenIndex& index, std::span<const std::string> merges, bool ignore_merges)
      : ignore_merges_(ignore_merges) {
    for (int b = 0; b < 256; ++b) {
      std::string one;
      append_utf8(one, alphabet_.code_point(static_cast<uint8_t>(b)));
      byte_token_[b] = find_token(index, one);
    }
    merges_.reserve(merges.size());
    std::string joined;
    for (size_t r = 0; r < merges.size(); ++r) {
      const std::string& m = merges[r];
      const size_t sp = m.find(' ', 1);  // from 1: a left part may itself be a space-like symbol
      check(sp != std::string::npos, "BPE merge ", r, " '", m, "' has no space between its two parts");
      joined.assign(m, 0, sp).append(m, sp + 1);
      const int32_t left = find_token(index, std::string_view(m).substr(0, sp));
      const int32_t right = find_token(index, std::string_view(m).substr(sp + 1));
      const int32_t result = find_token(index, joined);
      if (left < 0 || right < 0 || result < 0) continue;
      merges_.try_emplace(pair_key(left, right), Merge{static_cast<int32_t>(r), result});
    }
  }

  const ByteLevelAlphabet& alphabet() const { return alphabet_; }  ///< The byte alphabet the vocabulary's tokens are written in.

  /// Appends the ids of one pre-token word (raw bytes). Lowest rank merges first, leftmost on ties, as the
  /// merges were learned. O(L log L) for L bytes. A byte the vocabulary has no token for (some leave out
  /// control bytes) is dropped, as llama.cpp does; it still separates its neighbours, which do not merge
  /// across it.
  void encode_word(std::string_view word, const TokenIndex& index, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (ignore_merges_)
      if (const int32_t id = find_token(index, alphabet_.encode(word)); id >= 0) {
        out.push_back(id);
        return;
      }
    std::vector<Symbol>& sym = scratch_symbols();
    sym.clear();
    for (unsigned char b : word) {
      const auto i = static_cast<int32_t>(sym.size());
      sym.push_back({byte_token_[b], i - 1, i + 1});
    }
    sym.back().next = -1;
    Queue queue;
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) push_pair(sym, i, queue);
    while (!queue.empty()) {
      const Candidate c = queue.top();
      queue.pop();
      Symbol& l = sym[c.left];
      if (l.id != c.left_id || l.next < 0 || sym[l.next].id != c.right_id) continue;  // stale: a side changed
      const int32_t r = l.next;
      l.id = c.result;
      l.next = sym[r].next;
      if (l.next >= 0) sym[l.next].prev = c.left;
      sym[r].id = kMerged;
      if (l.prev >= 0) push_pair(sym, l.prev, queue);
      push_pair(sym, c.left, queue);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next)
      if (sym[i].id >= 0) out.push_back(sym[i].id);
  }

 private:
  struct Merge {
    int32_t rank, result;
  };
  struct Symbol {
    int32_t id, prev, next;  // a linked list over the word; id -1: a byte without a token, kMerged: gone
  };
  static constexpr int32_t kMerged = -2;
  struct Candidate {
    int32_t rank, left, left_id, right_id, result;
    bool operator<(const Candidate& o) const {  // priority_queue pops the greatest: lowest rank, then leftmost
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  using Queue = std::priority_queue<Candidate>;

  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void push_pair(const std::vector<Symbol>& sym, int32_t left, Queue& queue) const {
    const int32_t right = sym[left].next;
    if (right < 0) return;
    const auto it = merges_.find(pair_key(sym[left].id, sym[right].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, sym[left].id, sym[right].id, it->second.result});
  }
  // Reused across words so that encoding a long text does not allocate per word.
  static std::vector<Symbol>& scratch_symbols() {
    thread_local std::vector<Symbol> s;
    return s;
  }

  ByteLevelAlphabet alphabet_;
  std::array<int32_t, 256> byte_token_{};
  std::unordered_map<uint64_t, Merge> merges_;
  bool ignore_merges_ = false;
};

}  // namespace tessera::io
