/// \file
/// Chat templates: not a Jinja engine, but the common families recognised by
/// their markers in `tokenizer.chat_template` and rendered to the exact string
/// the Jinja template would produce. An unknown template is an Error.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/io/unicode.hpp"

namespace tessera::io {

/// One turn of a conversation.
struct ChatMessage {
  std::string role;  ///< "system", "user" or "assistant"
  std::string content;  ///< The turn's text.
};

/// A chat template recognised as one of the supported families; renders a conversation to prompt text.
class ChatTemplate {
 public:
  /// chatml: `<|im_start|>role\n...<|im_end|>\n`, with the template's default system turn if it has one
  /// (SmolLM2, Qwen2). llama3: Meta's Llama-3 Instruct template. llama2: Meta's Llama-2 chat template.
  /// gemma: `<start_of_turn>user\n...<end_of_turn>\n`, the assistant's role written `model`, a system
  /// message folded into the first user turn (Gemma 2 and 3).
  enum class Family { chatml, llama3, llama2, gemma };

  /// Recognises the template's family from its source. Error naming the template's start when it is of no
  /// known family, or of a variant whose output would differ (Llama-3.1's dated system turn, [INST]
  /// templates without Llama-2's `<<SYS>>` block).
  static ChatTemplate from_source(std::string_view src) {
    ChatTemplate t;
    auto has = [&](std::string_view marker) { return src.find(marker) != std::string_view::npos; };
    if (has("<|im_start|>")) {
      t.family_ = Family::chatml;
      t.default_system_ = default_system_turn(src);
    } else if (has("<|start_header_id|>") && !has("Cutting Knowledge Date")) {
      t.family_ = Family::llama3;
    } else if (has("[INST]") && has("<<SYS>>")) {
      t.family_ = Family::llama2;
    } else if (has("<start_of_turn>")) {
      t.family_ = Family::gemma;
    } else {
      fail("unsupported chat template: '", src.substr(0, 60), "...' (known: ChatML, Llama-3, Llama-2, Gemma)");
    }
    return t;
  }

  /// The template of a model: its `tokenizer.chat_template` when it has one, else
  /// the family's own for an architecture that has one (gemma3: base models ship
  /// without a template but their instruction-tuned twins use Gemma's turns).
  /// Error when neither exists, naming the architecture.
  static ChatTemplate for_model(std::string_view chat_template, std::string_view architecture) {
    if (!chat_template.empty()) return from_source(chat_template);
    if (architecture == "gemma3") {
      ChatTemplate t;
      t.family_ = Family::gemma;
      return t;
    }
    fail("the model has no chat template (tokenizer.chat_template) and architecture '", architecture,
         "' has no default one");
  }

  Family family() const { return family_; }  ///< The recognised family.
  /// The system prompt a ChatML template puts first when the conversation has none ("" when it has none).
  const std::string& default_system() const { return default_system_; }
  /// Whether the rendering holds the BOS text itself (then encode it with add_special = false).
  bool renders_bos() const { return family_ != Family::chatml; }

  /// The prompt text for messages; add_generation_prompt opens the assistant's turn (Llama-2 has none: its
  /// turn is open after [/INST]). Error where the template would raise one (Llama-2: roles that do not
  /// alternate user/assistant after an optional first system message).
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    switch (family_) {
      case Family::chatml: return render_chatml(messages, add_generation_prompt);
      case Family::llama3: return render_llama3(messages, add_generation_prompt);
      case Family::llama2: return render_llama2(messages);
      case Family::gemma: return render_gemma(messages, add_generation_prompt);
    }
    return {};
  }

 private:
  std::string render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    std::string out;
    if (!default_system_.empty() && !messages.empty() && messages[0].role != "system")
      out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
    for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
  }

  static std::string render_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
    std::string out = messages.empty() ? "" : "<|begin_of_text|>";  // bos_token before the first message
    for (const auto& m : messages)
      out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
  }

  // A first system message is folded into the first user turn, and the whole turn text is stripped
  // (so the system text keeps its own leading white space, the user text its trailing one is lost).
  static std::string render_llama2(const std::vector<ChatMessage>& messages) {
    const bool has_system = !messages.empty() && messages[0].role == "system";
    std::string out;
    for (size_t i = has_system ? 1 : 0, turn = 0; i < messages.size(); ++i, ++turn) {
      const ChatMessage& m = messages[i];
      check((m.role == "user") == (turn % 2 == 0),
            "Llama-2 chat template: conversation roles must alternate user/assistant/user/assistant/... (message ", i,
            " is '", m.role, "')");
      const std::string content =
          turn == 0 && has_system ? "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n" + m.content : m.content;
      if (m.role == "user") out += "<s>[INST] " + trim(content) + " [/INST]";
      else if (m.role == "system") out += "<<SYS>>\n" + trim(content) + "\n<</SYS>>\n\n";
      else if (m.role == "assistant") out += " " + trim(content) + " </s>";
    }
    return out;
  }

  // Gemma: BOS, then turns; a first system message becomes the first user
  // turn's prefix (its text + a blank line); every content is stripped; roles
  // after it must alternate user/assistant, as the template raises otherwise.
  static std::string render_gemma(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
    const bool has_system = !messages.empty() && messages[0].role == "system";
    std::string out = "<bos>";
    for (size_t i = has_system ? 1 : 0, turn = 0; i < messages.size(); ++i, ++turn) {
      const ChatMessage& m = messages[i];
      check((m.role == "user") == (turn % 2 == 0),
            "Gemma chat template: conversation roles must alternate user/assistant/user/assistant/... (message ", i,
            " is '", m.role, "')");
      out += "<start_of_turn>" + (m.role == "assistant" ? std::string("model") : m.role) + "\n";
      if (turn == 0 && has_system) out += messages[0].content + "\n\n";
      out += trim(m.content) + "<end_of_turn>\n";
    }
    if (add_generation_prompt) out += "<start_of_turn>model\n";
    return out;
  }

  // Python's str.strip() (Jinja's trim filter and .strip()): white space as str.isspace() sees it.
  static bool python_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
  }
  static std::string trim(std::string_view s) {
    const auto cps = decode_utf8(s);
    size_t b = 0, e = cps.size();
    while (b < e && python_space(cps[b].cp)) ++b;
    while (e > b && python_space(cps[e - 1].cp)) --e;
    if (b == e) return {};
    return std::string(s.substr(cps[b].offset, cps[e - 1].offset + cps[e - 1].length - cps[b].offset));
  }

  // A string literal in the template that is a whole default system turn: '<|im_start|>system\n...<|im_end|>'.
  // Templates write it where the first message is not a system message (SmolLM2, Qwen2).
  static std::string default_system_turn(std::string_view src) {
    const std::string_view open = "<|im_start|>system", close = "<|im_end|>";
    for (size_t at = src.find(open); at != std::string_view::npos; at = src.find(open, at + 1)) {
      if (at == 0 || (src[at - 1] != '\'' && src[at - 1] != '"')) continue;
      const char quote = src[at - 1];
      size_t begin = at + open.size();
      if (src.substr(begin, 1) == "\n") begin += 1;
      else if (src.substr(begin, 2) == "\\n") begin += 2;
      else continue;
      const size_t end = src.find(close, begin);
      if (end == std::string_view::npos || end == begin) continue;
      const std::string_view text = src.substr(begin, end - begin);
      if (text.find(quote) != std::string_view::npos) continue;  // the literal ends before <|im_end|>
      return unescape(text);
    }
    return {};
  }
  // Jinja string literals in GGUF templates hold real newlines or "\n" escapes.
  static std::string unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\\' && i + 1 < s.size()) {
        const char c = s[++i];
        out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
      } else {
        out += s[i];
      }
    }
    return out;
  }

  Family family_ = Family::chatml;
  std::string default_system_;
};

}  // namespace tessera::io
