/// \file
/// Chat templates: a model's own `tokenizer.chat_template` (Jinja), rendered by io/jinja/ exactly as Hugging
/// Face transformers renders it (jinja2's sandbox with trim_blocks and lstrip_blocks), with the conversation,
/// add_generation_prompt and the BOS / EOS token texts as its variables.
#pragma once

#include <algorithm>
#include <ctime>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/jinja/template.hpp"
#include "tessera/io/tokenizer.hpp"

namespace tessera::io {

/// One turn of a conversation. A template sees it as the dict {"role": ..., "content": ...}; to_value is
/// where further fields (tool calls, names) would join it.
struct ChatMessage {
  std::string role;     ///< "system", "user" or "assistant"
  std::string content;  ///< The turn's text.

  /// The message as a template sees it.
  jinja::Value to_value() const { return jinja::make_dict({{"role", role}, {"content", content}}); }
};

/// What a template sees beside the conversation.
struct ChatTemplateOptions {
  std::string bos_token;  ///< Text of the BOS token (bos_token), "" when the vocabulary has none.
  std::string eos_token;  ///< Text of the EOS token (eos_token).
  /// What strftime_now formats (Llama 3.1 and Granite print today's date); empty: the local time now.
  std::function<std::tm()> now;
  jinja::Limits limits;  ///< Bounds on one render (and on the template's length).
};

/// The token texts a template needs, from the tokenizer of the model it belongs to.
inline ChatTemplateOptions chat_template_options(const Tokenizer& tok) {
  ChatTemplateOptions o;
  const auto& tokens = tok.spec().tokens;
  auto text = [&](int32_t id) { return id >= 0 && static_cast<size_t>(id) < tokens.size() ? tokens[static_cast<size_t>(id)] : ""; };
  o.bos_token = text(tok.bos());
  o.eos_token = text(tok.eos());
  return o;
}

/// Gemma's turns, for Gemma 3 files without a template of their own (what its instruction-tuned models'
/// template renders for text-only conversations).
inline constexpr std::string_view kGemmaChatTemplate =
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}"
    "{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}";

/// A compiled chat template; renders conversations to prompt text. Immutable: threads may share one.
class ChatTemplate {
 public:
  /// Compiles the template: O(length). Error "chat template line L:C: syntax error: ..." for what the
  /// engine cannot parse (including Jinja it does not support: see docs/io-tokenizer.md).
  static ChatTemplate from_source(std::string_view src, ChatTemplateOptions options = {}) {
    ChatTemplate t;
    t.tmpl_ = jinja::Template::compile(src, options.limits);
    t.opts_ = std::move(options);
    t.renders_bos_ = t.probe_bos();
    return t;
  }

  /// The template of a model: its `tokenizer.chat_template` when it has one, else the family's own for an
  /// architecture that has one (gemma3: base models ship without a template but their instruction-tuned
  /// twins use Gemma's turns). Error when neither exists, naming the architecture.
  static ChatTemplate for_model(std::string_view chat_template, std::string_view architecture,
                                ChatTemplateOptions options = {}) {
    if (!chat_template.empty()) return from_source(chat_template, std::move(options));
    if (architecture == "gemma3") return from_source(kGemmaChatTemplate, std::move(options));
    fail("the model has no chat template (tokenizer.chat_template) and architecture '", architecture,
         "' has no default one");
  }

  /// Whether renderings begin with the BOS text (then encode them with add_special = false, or the prompt
  /// would hold two). Found once, by rendering a one-message conversation.
  bool renders_bos() const { return renders_bos_; }

  /// The prompt text for messages; add_generation_prompt opens the assistant's turn. O(the template's work),
  /// bounded by the limits. Error where the template raises (e.g. roles that do not alternate: its
  /// raise_exception message) or meets a limit, with line:column.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    std::vector<jinja::Value> ms;
    ms.reserve(messages.size());
    for (const ChatMessage& m : messages) ms.push_back(m.to_value());
    return render_context({{"messages", jinja::make_list(std::move(ms))}}, add_generation_prompt);
  }

  /// render with any variables (messages as values, tools, ...); add_generation_prompt, bos_token and
  /// eos_token are added unless ctx has them.
  std::string render_context(jinja::Context ctx, bool add_generation_prompt) const {
    auto has = [&](std::string_view k) {
      return std::any_of(ctx.begin(), ctx.end(), [&](const auto& kv) { return kv.first == k; });
    };
    if (!has("add_generation_prompt")) ctx.emplace_back("add_generation_prompt", add_generation_prompt);
    if (!has("bos_token")) ctx.emplace_back("bos_token", opts_.bos_token);
    if (!has("eos_token")) ctx.emplace_back("eos_token", opts_.eos_token);
    return tmpl_.render(ctx, opts_.now);
  }

 private:
  bool probe_bos() const {
    if (opts_.bos_token.empty()) return false;
    for (const auto& conv : {std::vector<ChatMessage>{{"user", "x"}}, std::vector<ChatMessage>{{"system", "s"}, {"user", "x"}}}) {
      try {
        return render(conv, true).starts_with(opts_.bos_token);
      } catch (const Error&) {  // a template that wants another conversation: try the next
      }
    }
    return false;
  }

  jinja::Template tmpl_;
  ChatTemplateOptions opts_;
  bool renders_bos_ = false;
};

}  // namespace tessera::io
