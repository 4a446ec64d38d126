/// \file
/// Python's str operations that filters and methods share, on UTF-8 text by code point: case mapping
/// (lower: Unicode simple lowercase; upper, title and capitalize: ASCII letters), split, splitlines,
/// replace, center, HTML escaping, and jinja2's title and wordcount rules.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/io/jinja/python.hpp"

namespace tessera::io::jinja {

/// str.lower() with simple (one to one) lowercase mappings.
inline std::string str_lower(std::string_view s) {
  std::string out;
  for (const auto& c : decode_utf8(s)) {
    if (c.cp == 0xFFFD) out += s.substr(c.offset, c.length);
    else append_utf8(out, to_lower(c.cp));
  }
  return out;
}
/// str.upper() for ASCII letters; other characters unchanged.
inline std::string str_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  return out;
}
/// str.capitalize(): the first character upper, the rest lower.
inline std::string str_capitalize(std::string_view s) {
  if (s.empty()) return {};
  const size_t first = static_cast<size_t>(utf8_length(static_cast<unsigned char>(s[0])));
  return str_upper(s.substr(0, first)) + str_lower(s.substr(std::min(first, s.size())));
}
namespace detail {
inline bool word_char(uint32_t cp) { return cp == '_' || is_letter(cp) || is_number(cp); }
// Title-cases s where `starts_word(previous code point)` says a word begins.
template <class StartsWord>
std::string title_by(std::string_view s, StartsWord starts_word) {
  std::string out;
  uint32_t prev = ' ';
  for (const auto& c : decode_utf8(s)) {
    const std::string_view ch = s.substr(c.offset, c.length);
    out += starts_word(prev) ? str_upper(ch) : str_lower(ch);
    prev = c.cp;
  }
  return out;
}
}  // namespace detail
/// jinja2's title filter: a word starts after white space, '-', '(', '{', '[' or '<'.
inline std::string jinja_title(std::string_view s) {
  return detail::title_by(s, [](uint32_t p) { return python_space(p) || p == '-' || p == '(' || p == '{' || p == '[' || p == '<'; });
}
/// str.title(): a word starts after any character that is not a letter.
inline std::string py_title(std::string_view s) {
  return detail::title_by(s, [](uint32_t p) { return !is_letter(p); });
}
/// jinja2's wordcount: runs of word characters (letters, digits, '_').
inline int64_t word_count(std::string_view s) {
  int64_t n = 0;
  bool in = false;
  for (const auto& c : decode_utf8(s)) {
    const bool w = detail::word_char(c.cp);
    n += w && !in;
    in = w;
  }
  return n;
}
/// str.center(width): CPython puts the odd pad character on the left when width is odd.
inline std::string str_center(const std::string& s, int64_t width) {
  const auto n = static_cast<int64_t>(utf8_count(s));
  if (width <= n) return s;
  width = std::min<int64_t>(width, n + (1 << 20));
  const int64_t pad = width - n, left = pad / 2 + (pad & width & 1);
  return std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(pad - left), ' ');
}
/// markupsafe's escape: & < > " ' as entities.
inline std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}
/// str.splitlines(): breaks at `\n`, `\r`, `\r\n`, `\v`, `\f`, `\x1c`-`\x1e`, `\x85`, U+2028, U+2029; no trailing empty line.
inline std::vector<std::string> splitlines(std::string_view s, bool keepends = false) {
  std::vector<std::string> out;
  size_t start = 0;
  const auto cps = decode_utf8(s);
  for (size_t i = 0; i < cps.size(); ++i) {
    const uint32_t cp = cps[i].cp;
    if (!(cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 ||
          cp == 0x2028 || cp == 0x2029))
      continue;
    const size_t brk = cps[i].offset;
    size_t end = brk + cps[i].length;
    if (cp == '\r' && i + 1 < cps.size() && cps[i + 1].cp == '\n') end += 1, ++i;
    out.emplace_back(s.substr(start, (keepends ? end : brk) - start));
    start = end;
  }
  if (start < s.size()) out.emplace_back(s.substr(start));
  return out;
}
/// str.replace(old, new, count); count < 0: all. Error when the result would pass max_bytes.
inline std::string str_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count,
                               size_t max_bytes) {
  std::string out;
  int64_t done = 0;
  if (from.empty()) {  // Python puts `to` before every character and at the end
    const auto cps = decode_utf8(s);
    for (const auto& c : cps) {
      if (count < 0 || done < count) out += to, ++done;
      out += s.substr(c.offset, c.length);
      check(out.size() <= max_bytes, "replace: result exceeds the output size limit");
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t at = 0;
  for (size_t p; (count < 0 || done < count) && (p = s.find(from, at)) != std::string::npos; at = p + from.size(), ++done) {
    out.append(s, at, p - at);
    out += to;
    check(out.size() <= max_bytes, "replace: result exceeds the output size limit");
  }
  out.append(s, at, std::string::npos);
  return out;
}
/// str.split(sep, maxsplit) (sep null: runs of white space, ends ignored); str.rsplit with from_right.
inline std::vector<std::string> str_split(std::string_view s, const std::string* sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> out;
  if (sep) {
    check(!sep->empty(), "empty separator");
    if (!from_right) {
      size_t at = 0;
      for (size_t p; (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) && (p = s.find(*sep, at)) != std::string_view::npos; at = p + sep->size())
        out.emplace_back(s.substr(at, p - at));
      out.emplace_back(s.substr(at));
      return out;
    }
    size_t end = s.size();
    for (size_t p; (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) && end >= sep->size() &&
                   (p = s.rfind(*sep, end - sep->size())) != std::string_view::npos;
         end = p)
      out.emplace_back(s.substr(p + sep->size(), end - p - sep->size()));
    out.emplace_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
  }
  // White-space runs: collect words, then re-join the unsplit remainder when maxsplit stops early.
  const auto cps = decode_utf8(s);
  std::vector<std::pair<size_t, size_t>> words;  // byte ranges
  for (size_t i = 0; i < cps.size();) {
    while (i < cps.size() && python_space(cps[i].cp)) ++i;
    if (i == cps.size()) break;
    const size_t b = i;
    while (i < cps.size() && !python_space(cps[i].cp)) ++i;
    words.emplace_back(cps[b].offset, cps[i - 1].offset + cps[i - 1].length);
  }
  if (maxsplit < 0 || static_cast<int64_t>(words.size()) <= maxsplit + 1) {
    for (auto [b, e] : words) out.emplace_back(s.substr(b, e - b));
    return out;
  }
  const auto k = static_cast<size_t>(maxsplit);
  if (!from_right) {
    for (size_t i = 0; i < k; ++i) out.emplace_back(s.substr(words[i].first, words[i].second - words[i].first));
    out.emplace_back(s.substr(words[k].first));  // Python keeps the remainder's trailing space
  } else {
    const size_t first = words.size() - k;
    out.emplace_back(s.substr(0, words[first - 1].second));
    for (size_t i = first; i < words.size(); ++i) out.emplace_back(s.substr(words[i].first, words[i].second - words[i].first));
  }
  return out;
}

}  // namespace tessera::io::jinja
