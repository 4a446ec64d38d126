/// \file
/// A Jinja template compiled once and rendered many times, the way Hugging Face transformers renders chat
/// templates: jinja2's ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols
/// extension, HF's tojson, and the globals raise_exception and strftime_now. The supported subset is listed
/// in docs/io-tokenizer.md; anything else is an Error naming its line:column, never undefined behaviour.
#pragma once

#include <chrono>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera/io/jinja/eval.hpp"
#include "tessera/io/jinja/parser.hpp"

namespace tessera::io::jinja {

/// The variables a render sees (messages, add_generation_prompt, bos_token, ...), by name.
using Context = std::vector<std::pair<std::string, Value>>;

/// The local time now: strftime_now's default clock, as Python's datetime.now().
inline std::tm local_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm out{};
  localtime_r(&t, &out);
  return out;
}

/// A compiled template. Immutable, so threads may render one concurrently.
class Template {
 public:
  /// Compiles src: O(length). Error for a source over limits.max_source_bytes, and for a syntax error,
  /// "chat template line L:C: syntax error: ...".
  static Template compile(std::string_view src, Limits limits = {}) {
    check(src.size() <= limits.max_source_bytes, "chat template of ", src.size(), " bytes exceeds the template length limit (",
          limits.max_source_bytes, ")");
    // jinja2 reads "\r\n" and "\r" as "\n" and drops one trailing newline (keep_trailing_newline=False).
    std::string text;
    text.reserve(src.size());
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] != '\r') text += src[i];
      else if (i + 1 >= src.size() || src[i + 1] != '\n') text += '\n';
    }
    if (!text.empty() && text.back() == '\n') text.pop_back();
    Template t;
    t.body_ = std::make_shared<const std::vector<Stmt>>(parse(text));
    t.limits_ = limits;
    return t;
  }

  /// Renders with the context's variables; `now` is what strftime_now formats (default: local_now). O(work
  /// the template does), bounded by the limits. Error "chat template line L:C: ..." for what jinja2 would
  /// raise (raise_exception's message, an undefined variable's attribute, a type error) and for a limit.
  std::string render(const Context& context, const std::function<std::tm()>& now = {}) const {
    Scope root;
    for (const auto& [k, v] : context) root.set(k, v);
    std::string out;
    Evaluator ev(limits_, now ? now : std::function<std::tm()>(local_now));
    try {
      ev.run(*body_, root, out);
    } catch (const detail::LocatedError& e) {
      throw Error(e.what());  // callers see tessera::Error only
    }
    return out;
  }

  const Limits& limits() const { return limits_; }  ///< The limits renders run under.

 private:
  std::shared_ptr<const std::vector<Stmt>> body_;
  Limits limits_;
};

/// A value from JSON-like data: nested lists and dicts of strings, numbers, bools and None.
/// (Convenience for callers building contexts by hand; Value::list / Value::dict do the same.)
inline Value make_list(std::vector<Value> xs) { return Value::list(std::move(xs)); }
/// A dict with string keys in the order given.
inline Value make_dict(std::vector<std::pair<std::string, Value>> kv) {
  std::vector<std::pair<Value, Value>> items;
  for (auto& [k, v] : kv) items.emplace_back(Value(k), std::move(v));
  return Value::dict(std::move(items));
}

}  // namespace tessera::io::jinja
