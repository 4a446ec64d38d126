/// \file
/// Template source to tokens, as jinja2's lexer cuts it with trim_blocks and lstrip_blocks on (HF's
/// settings): text between tags (white space already removed where `-`, trim_blocks or lstrip_blocks say),
/// and the names, literals and operators inside `{{ }}` and `{% %}`. Comments vanish; `{% raw %}` bodies
/// become text. O(source length).
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/jinja/python.hpp"

namespace tessera::io::jinja {

/// One token, with its 1-based line and column (in bytes) in the source.
struct Token {
  /// Literal text, the delimiters, names, literals, operators, end of input.
  enum class Kind { text, var_begin, var_end, block_begin, block_end, name, string, integer, floating, op, eof };
  Kind kind;  ///< Which token.
  std::string text;  ///< The text, name, operator, or a string literal's decoded value.
  ///@{
  /// Where the token starts (1-based; the column in bytes).
  int line = 1, col = 1;
  ///@}
};

namespace detail {

// Byte offset -> line:column.
class LineMap {
 public:
  explicit LineMap(std::string_view s) {
    starts_.push_back(0);
    for (size_t i = 0; i < s.size(); ++i)
      if (s[i] == '\n') starts_.push_back(i + 1);
  }
  std::pair<int, int> at(size_t offset) const {
    const auto it = std::upper_bound(starts_.begin(), starts_.end(), offset) - 1;
    return {static_cast<int>(it - starts_.begin()) + 1, static_cast<int>(offset - *it) + 1};
  }

 private:
  std::vector<size_t> starts_;
};

// The byte length of white space (str.isspace) at s[at...].
inline size_t space_run(std::string_view s, size_t at) {
  size_t i = at;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (!python_space(c)) break;
      ++i;
      continue;
    }
    const auto cps = decode_utf8(s.substr(i, 4));
    if (cps.empty() || !python_space(cps[0].cp)) break;
    i += cps[0].length;
  }
  return i - at;
}

inline bool all_space(std::string_view s) { return space_run(s, 0) == s.size(); }

// Python's string literal escapes (jinja2 decodes literals with "unicode-escape").
inline std::string unescape_literal(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    auto hex = [&](size_t n) -> bool {
      uint32_t cp = 0;
      for (size_t k = 1; k <= n; ++k) {
        if (i + k >= s.size()) return false;
        const char h = s[i + k];
        const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return false;
        cp = cp * 16 + static_cast<uint32_t>(d);
      }
      check(cp <= 0x10FFFF, "string literal: escape out of range");
      append_utf8(out, cp);
      i += n;
      return true;
    };
    switch (c) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case '\n': break;  // line continuation
      case 'x': check(hex(2), "string literal: truncated \\xXX escape"); break;
      case 'u': check(hex(4), "string literal: truncated \\uXXXX escape"); break;
      case 'U': check(hex(8), "string literal: truncated \\UXXXXXXXX escape"); break;
      default:
        if (c >= '0' && c <= '7') {
          uint32_t cp = 0;
          size_t k = 0;
          while (k < 3 && i < s.size() && s[i] >= '0' && s[i] <= '7') cp = cp * 8 + static_cast<uint32_t>(s[i++] - '0'), ++k;
          --i;
          append_utf8(out, cp);
        } else {
          (out += '\\') += c;  // Python keeps unknown escapes
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : s_(src), lines_(src) {}

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < s_.size()) {
      size_t p = pos_;
      while ((p = s_.find('{', p)) != std::string_view::npos && p + 1 < s_.size() && s_[p + 1] != '{' &&
             s_[p + 1] != '%' && s_[p + 1] != '#')
        ++p;
      if (p == std::string_view::npos || p + 1 >= s_.size()) {
        emit_text(s_.substr(pos_), pos_);
        break;
      }
      const char kind = s_[p + 1];
      const char sign = p + 2 < s_.size() && (s_[p + 2] == '-' || s_[p + 2] == '+') ? s_[p + 2] : 0;
      std::string_view text = s_.substr(pos_, p - pos_);
      if (sign == '-') {
        text = rstrip_view(text);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: a block or comment tag alone on its line so far takes the indentation away.
        const size_t l = text.rfind('\n') == std::string_view::npos ? 0 : text.rfind('\n') + 1;
        if ((l > 0 || line_starting) && all_space(text.substr(l))) text = text.substr(0, l);
      }
      emit_text(text, pos_);
      pos_ = p + 2 + (sign ? 1 : 0);
      if (kind == '#') comment(p);
      else if (kind == '%' && at_raw()) raw(p);
      else tag(kind == '{', p);
      line_starting = pos_ > 0 && s_[pos_ - 1] == '\n';
    }
    tokens_.push_back({Token::Kind::eof, "", lines_.at(s_.size()).first, lines_.at(s_.size()).second});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(size_t at, const std::string& msg) const {
    const auto [l, c] = lines_.at(at);
    fail("chat template line ", l, ":", c, ": ", msg);
  }
  static std::string_view rstrip_view(std::string_view t) {
    size_t e = t.size();
    while (e > 0) {
      size_t b = e - 1;
      while (b > 0 && (static_cast<unsigned char>(t[b]) & 0xC0) == 0x80) --b;
      if (space_run(t.substr(0, e), b) != e - b) break;
      e = b;
    }
    return t.substr(0, e);
  }
  void emit_text(std::string_view t, size_t at) {
    if (t.empty()) return;
    const auto [l, c] = lines_.at(at);
    tokens_.push_back({Token::Kind::text, std::string(t), l, c});
  }
  void push(Token::Kind k, std::string text, size_t at) {
    const auto [l, c] = lines_.at(at);
    tokens_.push_back({k, std::move(text), l, c});
  }
  // After a closing delimiter: '-' eats all white space, '+' nothing, else trim_blocks eats one newline.
  void after_close(char sign) {
    if (sign == '-') pos_ += space_run(s_, pos_);
    else if (sign != '+' && pos_ < s_.size() && s_[pos_] == '\n') ++pos_;
  }
  void comment(size_t open) {
    const size_t end = s_.find("#}", pos_);
    if (end == std::string_view::npos) error(open, "unterminated comment");
    const char sign = end > pos_ && (s_[end - 1] == '-' || s_[end - 1] == '+') ? s_[end - 1] : 0;
    pos_ = end + 2;
    after_close(sign);
  }
  bool at_raw() const {
    size_t i = pos_ + space_run(s_, pos_);
    if (s_.substr(i, 3) != "raw") return false;
    i += 3 + space_run(s_, i + 3);
    return s_.substr(i, 2) == "%}" || s_.substr(i, 3) == "-%}" || s_.substr(i, 3) == "+%}";
  }
  void raw(size_t open) {
    pos_ += space_run(s_, pos_) + 3;
    pos_ += space_run(s_, pos_);
    const char sign = s_[pos_] == '%' ? 0 : s_[pos_];
    pos_ += sign ? 3 : 2;
    after_close(sign);
    for (size_t p = s_.find("{%", pos_); p != std::string_view::npos; p = s_.find("{%", p + 2)) {
      size_t i = p + 2;
      const char open_sign = i < s_.size() && (s_[i] == '-' || s_[i] == '+') ? s_[i++] : 0;
      i += space_run(s_, i);
      if (s_.substr(i, 6) != "endraw") continue;
      i += 6 + space_run(s_, i + 6);
      const char close_sign = i < s_.size() && (s_[i] == '-' || s_[i] == '+') ? s_[i] : 0;
      if (s_.substr(i + (close_sign ? 1 : 0), 2) != "%}") continue;
      std::string_view body = s_.substr(pos_, p - pos_);
      if (open_sign == '-') body = rstrip_view(body);
      else if (open_sign != '+') {
        const size_t l = body.rfind('\n') == std::string_view::npos ? 0 : body.rfind('\n') + 1;
        if (l > 0 && all_space(body.substr(l))) body = body.substr(0, l);
      }
      emit_text(body, pos_);
      pos_ = i + (close_sign ? 1 : 0) + 2;
      after_close(close_sign);
      return;
    }
    error(open, "unterminated {% raw %} (no {% endraw %})");
  }

  void tag(bool variable, size_t open) {
    push(variable ? Token::Kind::var_begin : Token::Kind::block_begin, "", open);
    std::string brackets;
    while (true) {
      pos_ += space_run(s_, pos_);
      if (pos_ >= s_.size()) error(open, std::string("unexpected end of template, expected '") + (variable ? "}}" : "%}") + "'");
      if (brackets.empty()) {
        const std::string_view close = variable ? "}}" : "%}";
        const char c = s_[pos_];
        const bool signed_close = (c == '-' || (c == '+' && !variable)) && s_.substr(pos_ + 1, 2) == close;
        if (signed_close || s_.substr(pos_, 2) == close) {
          push(variable ? Token::Kind::var_end : Token::Kind::block_end, "", pos_);
          pos_ += signed_close ? 3 : 2;
          if (variable) {
            if (signed_close) pos_ += space_run(s_, pos_);
          } else {
            after_close(signed_close ? c : 0);
          }
          return;
        }
      }
      next_token(brackets);
    }
  }

  void next_token(std::string& brackets) {
    const size_t at = pos_;
    const char c = s_[pos_];
    auto is_digit = [&](size_t i) { return i < s_.size() && s_[i] >= '0' && s_[i] <= '9'; };
    auto digits = [&](size_t i) {  // \d+(_\d+)*
      while (is_digit(i) || (i < s_.size() && s_[i] == '_' && is_digit(i + 1) && i > 0 && is_digit(i - 1))) ++i;
      return i;
    };
    if (c == '\'' || c == '"') {
      size_t i = pos_ + 1;
      while (i < s_.size() && s_[i] != c) i += s_[i] == '\\' ? 2 : 1;
      if (i >= s_.size()) error(at, "unterminated string literal");
      std::string v;
      try {
        v = unescape_literal(s_.substr(pos_ + 1, i - pos_ - 1));
      } catch (const Error& e) {
        error(at, e.what());
      }
      push(Token::Kind::string, std::move(v), at);
      pos_ = i + 1;
    } else if (is_digit(pos_)) {
      size_t i = digits(pos_);
      bool is_float = false;
      if (i + 1 < s_.size() && s_[i] == '.' && is_digit(i + 1)) i = digits(i + 1), is_float = true;
      if (i < s_.size() && (s_[i] == 'e' || s_[i] == 'E')) {
        size_t j = i + 1;
        if (j < s_.size() && (s_[j] == '+' || s_[j] == '-')) ++j;
        if (is_digit(j)) i = digits(j), is_float = true;
      }
      std::string t;
      for (size_t k = pos_; k < i; ++k)
        if (s_[k] != '_') t += s_[k];
      push(is_float ? Token::Kind::floating : Token::Kind::integer, t, at);
      pos_ = i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t i = pos_;
      while (i < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i])) || s_[i] == '_')) ++i;
      push(Token::Kind::name, std::string(s_.substr(pos_, i - pos_)), at);
      pos_ = i;
    } else {
      static constexpr std::string_view two[] = {"//", "**", "==", "!=", "<=", ">="};
      for (auto op : two)
        if (s_.substr(pos_, 2) == op) {
          push(Token::Kind::op, std::string(op), at);
          pos_ += 2;
          return;
        }
      if (std::string_view("+-*/%~[](){}<>=.:|,;").find(c) == std::string_view::npos)
        error(at, std::string("unexpected character '") + c + "'");
      if (c == '(' || c == '[' || c == '{') {
        brackets += c;
      } else if (c == ')' || c == ']' || c == '}') {
        const char want = c == ')' ? '(' : c == ']' ? '[' : '{';
        if (brackets.empty() || brackets.back() != want) error(at, std::string("unexpected '") + c + "'");
        brackets.pop_back();
      }
      push(Token::Kind::op, std::string(1, c), at);
      ++pos_;
    }
  }

  std::string_view s_;
  LineMap lines_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace detail

/// The tokens of a template source (newlines already normalised to "\n", one trailing newline dropped, as
/// jinja2 does). Error with line:column for an unterminated tag, comment or string, or a stray character.
inline std::vector<Token> tokenize(std::string_view src) { return detail::Lexer(src).run(); }

}  // namespace tessera::io::jinja
