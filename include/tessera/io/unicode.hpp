/// \file
/// UTF-8 decoding and the character classes the pre-tokenizers need
/// (`\p{L}` letters, `\p{N}` numbers, `\s` white space, punctuation, control),
/// lowercasing and accent stripping (WordPiece), from generated tables.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/io/unicode_tables.hpp"

namespace tessera::io {

namespace detail {
inline bool in_ranges(std::span<const CodeRange> table, uint32_t cp) {
  const auto it = std::upper_bound(table.begin(), table.end(), cp, [](uint32_t c, const CodeRange& r) { return c < r.lo; });
  return it != table.begin() && cp <= std::prev(it)->hi;
}
}  // namespace detail

/// Whether cp is a letter (Unicode category L, the regex class `\p{L}`).
inline bool is_letter(uint32_t cp) {
  if (cp < 128) return (cp | 32) - 'a' < 26;
  return detail::in_ranges(detail::kLetters, cp);
}
/// Whether cp is a number (Unicode category N, the regex class `\p{N}`).
inline bool is_number(uint32_t cp) {
  if (cp < 128) return cp - '0' < 10;
  return detail::in_ranges(detail::kNumbers, cp);
}
/// Whether cp is white space (the regex class `\s`: tab to carriage return, space, and the Unicode spaces).
inline bool is_space(uint32_t cp) {
  if (cp < 128) return cp == ' ' || (cp >= '\t' && cp <= '\r');
  return detail::in_ranges(detail::kSpaces, cp);
}

/// Whether cp is punctuation (Unicode category P).
inline bool is_punctuation(uint32_t cp) { return detail::in_ranges(detail::kPunctuation, cp); }
/// Whether cp is a control, format, private-use or surrogate code point (category C except unassigned).
inline bool is_control(uint32_t cp) { return detail::in_ranges(detail::kControl, cp); }
/// cp's simple lowercase (one code point; cp itself when it has none). O(log table).
inline uint32_t to_lower(uint32_t cp) {
  if (cp < 128) return cp - 'A' < 26 ? cp + 32 : cp;
  const auto it = std::lower_bound(std::begin(detail::kLowercase), std::end(detail::kLowercase), cp,
                                   [](const detail::CodeMap& m, uint32_t c) { return m.from < c; });
  return it != std::end(detail::kLowercase) && it->from == cp ? it->to : cp;
}
/// The first code point of cp's canonical decomposition (NFD): a letter without its accents ('é' -> 'e'),
/// cp itself when it does not decompose. O(log table).
inline uint32_t nfd_first(uint32_t cp) {
  if (cp < 0xC0) return cp;
  const auto it = std::upper_bound(std::begin(detail::kNfdFirst), std::end(detail::kNfdFirst), cp,
                                   [](uint32_t c, const detail::CodeRangeMap& r) { return c < r.lo; });
  return it != std::begin(detail::kNfdFirst) && cp <= std::prev(it)->hi ? std::prev(it)->to : cp;
}

/// Length of the UTF-8 sequence starting with byte b (1 for invalid lead bytes: they pass through as one unit).
inline int utf8_length(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

/// A code point and the bytes it came from.
struct CodePoint {
  uint32_t cp;  ///< The code point (U+FFFD for a malformed byte)
  /// Byte offset and byte length in the source text.
  ///@{
  uint32_t offset, length;
  ///@}
};

/// Decodes text; malformed bytes become U+FFFD of length 1, so every byte belongs to exactly one unit.
inline std::vector<CodePoint> decode_utf8(std::string_view s) {
  std::vector<CodePoint> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    int n = utf8_length(b);
    uint32_t cp = n == 1 ? b : b & (0x7Fu >> n);
    bool ok = i + n <= s.size() && !(n == 1 && b >= 0x80);
    for (int k = 1; ok && k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      ok = (c & 0xC0) == 0x80;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (!ok) { n = 1; cp = 0xFFFD; }
    out.push_back({cp, static_cast<uint32_t>(i), static_cast<uint32_t>(n)});
    i += static_cast<size_t>(n);
  }
  return out;
}

/// Appends the 1 to 4 byte UTF-8 encoding of cp to out (no check for surrogates or cp above U+10FFFF).
inline void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Number of leading bytes of s that can be emitted without cutting a character: everything except a
/// trailing lead byte whose continuation bytes have not all arrived yet. A lead byte followed by a
/// non-continuation byte is malformed and passes through (waiting would not complete it).
inline size_t complete_utf8_prefix(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto n = static_cast<size_t>(utf8_length(static_cast<unsigned char>(s[i])));
    size_t k = 1;
    while (k < n && i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80) ++k;
    if (k < n && i + k == s.size()) break;  // incomplete so far: hold back
    i += k;
  }
  return i;
}

}  // namespace tessera::io
