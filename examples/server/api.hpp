// The OpenAI-compatible request and response bodies of tessera-server:
// validation of /v1/completions and /v1/chat/completions bodies into a
// ServeRequest, and the JSON (whole or streamed) of the answers. Every bad
// field is an ApiError naming it; nothing here throws anything else for any
// JSON input.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/io/chat_template.hpp"
#include "tessera/io/tokenizer.hpp"
#include "tessera/runtime/scheduler.hpp"

namespace tessera_server {

using json = nlohmann::json;
using namespace tessera;

// An HTTP error with an OpenAI-style body.
struct ApiError {
  ApiError(int s, std::string m, std::string p = "", std::string t = "invalid_request_error", std::string c = "")
      : status(s), message(std::move(m)), param(std::move(p)), type(std::move(t)), code(std::move(c)) {}
  int status = 400;
  std::string message;
  std::string param;  // the offending field, "" for none
  std::string type;   // OpenAI's error type
  std::string code;   // e.g. "context_length_exceeded", "" for null
};

inline json error_body(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return {{"error", err}};
}

// Limits the server was started with.
struct ApiLimits {
  int64_t n_ctx = 2048;  // positions of one sequence
  int max_n = 8;         // choices per request at most
  int max_stop = 4;      // stop strings at most (OpenAI's limit)
};

// A validated request: what to submit (n times), and how to answer.
struct ApiRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int n = 1;
  std::string model;
  runtime::ServeRequest base;  // prompt, sampling (seed of choice 0), generation
};

namespace detail {

[[noreturn]] inline void bad(const std::string& param, const std::string& what) {
  throw ApiError{400, "'" + param + "' " + what, param};
}

// body[key] as a number in [lo, hi]; `fallback` when absent or null.
inline double number(const json& body, const char* key, double lo, double hi, double fallback) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_number()) bad(key, "must be a number, got " + std::string(it->type_name()));
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi)
    bad(key, "must be in [" + json(lo).dump() + ", " + json(hi).dump() + "], got " + it->dump());
  return v;
}

// body[key] as an integer in [lo, hi] (a float with an integral value is taken).
inline int64_t integer(const json& body, const char* key, int64_t lo, int64_t hi, int64_t fallback) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_number()) bad(key, "must be an integer, got " + std::string(it->type_name()));
  if (it->is_number_unsigned()) {  // JSON's non-negative integers
    const auto u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo)))
      bad(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + it->dump());
    return static_cast<int64_t>(u);
  }
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) bad(key, "must be an integer, got " + it->dump());
    // (double) INT64_MAX rounds up to 2^63, which no int64 holds: compare with 2^63 itself.
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi) || d >= 9223372036854775808.0)
      bad(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + it->dump());
    return static_cast<int64_t>(d);
  }
  const auto v = it->get<int64_t>();
  if (v < lo || v > hi) bad(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + it->dump());
  return v;
}

inline bool boolean(const json& body, const char* key, bool fallback) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) bad(key, "must be a boolean, got " + std::string(it->type_name()));
  return it->get<bool>();
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
inline std::string content_text(const json& c, const std::string& param) {
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) bad(param, "must be a string or an array of text parts, got " + std::string(c.type_name()));
  std::string out;
  for (const auto& part : c) {
    // find(), never value(): value() copies the sub-tree, recursively, and a
    // client controls its depth.
    const auto type = part.is_object() ? part.find("type") : part.end();
    const auto text = part.is_object() ? part.find("text") : part.end();
    if (!part.is_object() || type == part.end() || !type->is_string() || type->get_ref<const std::string&>() != "text" ||
        text == part.end() || !text->is_string())
      bad(param, "parts must be {\"type\": \"text\", \"text\": string}; other kinds are not supported");
    out += text->get_ref<const std::string&>();
  }
  return out;
}

}  // namespace detail

// Validates a /v1/completions (chat = false) or /v1/chat/completions body.
// `seed` is the seed used when the body gives none.
inline ApiRequest parse_request(const json& body, bool chat, const io::Tokenizer& tok,
                                const io::ChatTemplate* tmpl, const ApiLimits& lim, uint64_t seed) {
  using namespace detail;
  if (!body.is_object()) throw ApiError{400, "the request body must be a JSON object"};
  ApiRequest r;
  r.chat = chat;
  if (const auto it = body.find("model"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) bad("model", "must be a string");
    r.model = it->get<std::string>();
  }

  // The prompt, as tokens.
  std::vector<int32_t> prompt;
  if (chat) {
    const auto it = body.find("messages");
    if (it == body.end() || !it->is_array() || it->empty()) bad("messages", "must be a non-empty array");
    if (tmpl == nullptr) throw ApiError{400, "this model has no chat template: use /v1/completions", "messages"};
    std::vector<io::ChatMessage> msgs;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& m = (*it)[i];
      const std::string p = "messages[" + std::to_string(i) + "]";
      if (!m.is_object()) bad(p, "must be an object");
      const auto role = m.find("role");
      if (role == m.end() || !role->is_string()) bad(p + ".role", "must be a string");
      const auto who = role->get<std::string>();
      if (who != "system" && who != "user" && who != "assistant" && who != "developer")
        bad(p + ".role", "must be system, developer, user or assistant, got '" + who + "'");
      const auto content = m.find("content");
      if (content == m.end()) bad(p + ".content", "is missing");
      msgs.push_back({who == "developer" ? "system" : who, content_text(*content, p + ".content")});
    }
    std::string text;
    try {
      text = tmpl->render(msgs, /*add_generation_prompt=*/true);
    } catch (const Error& e) {
      throw ApiError{400, e.what(), "messages"};
    }
    prompt = tok.encode(text, /*add_special=*/!tmpl->renders_bos(), /*parse_special=*/true);
  } else {
    const auto it = body.find("prompt");
    if (it == body.end() || it->is_null()) bad("prompt", "is missing");
    if (it->is_string()) {
      prompt = tok.encode(it->get<std::string>(), true, true);
    } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
      prompt = tok.encode((*it)[0].get<std::string>(), true, true);
    } else if (it->is_array() && !it->empty() && std::all_of(it->begin(), it->end(), [](const json& t) { return t.is_number_integer(); })) {
      for (const auto& t : *it) {
        const auto id = t.get<int64_t>();
        if (id < 0 || id >= tok.n_vocab()) bad("prompt", "token id " + std::to_string(id) + " outside the vocabulary");
        prompt.push_back(static_cast<int32_t>(id));
      }
    } else {
      bad("prompt", "must be a string, an array of one string, or an array of token ids");
    }
    if (prompt.empty()) bad("prompt", "is empty");
  }
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  if (n_prompt >= lim.n_ctx)
    throw ApiError{400,
                   "this model's context is " + std::to_string(lim.n_ctx) + " tokens; the prompt has " +
                       std::to_string(n_prompt) + ", which leaves no room for an answer",
                   chat ? "messages" : "prompt", "invalid_request_error", "context_length_exceeded"};

  // Sampling and stopping.
  auto& sp = r.base.sampling;
  sp.temperature = static_cast<float>(number(body, "temperature", 0.0, 2.0, 1.0));
  sp.top_p = static_cast<float>(number(body, "top_p", 0.0, 1.0, 1.0));
  if (sp.top_p <= 0.f) bad("top_p", "must be in (0, 1]");
  sp.top_k = static_cast<int>(integer(body, "top_k", 0, 1 << 30, 0));
  sp.min_p = static_cast<float>(number(body, "min_p", 0.0, 1.0, 0.0));
  sp.repeat_penalty = static_cast<float>(number(body, "repeat_penalty", 0.0, 10.0, 1.0));
  if (sp.repeat_penalty <= 0.f) bad("repeat_penalty", "must be > 0");
  sp.seed = static_cast<uint64_t>(integer(body, "seed", std::numeric_limits<int64_t>::min(),
                                          std::numeric_limits<int64_t>::max(), static_cast<int64_t>(seed)));
  for (const char* k : {"presence_penalty", "frequency_penalty"})
    if (number(body, k, -2.0, 2.0, 0.0) != 0.0) bad(k, "is not supported (use repeat_penalty)");
  if (const auto it = body.find("logprobs"); it != body.end() && !it->is_null() && *it != false && *it != 0)
    bad("logprobs", "is not supported");
  if (boolean(body, "echo", false)) bad("echo", "is not supported");
  if (const auto it = body.find("tools"); it != body.end() && !it->is_null()) bad("tools", "are not supported");

  const int64_t room = lim.n_ctx - n_prompt;
  int64_t max_tokens = chat ? room : 16;  // OpenAI's defaults: to the end of the context / 16
  if (chat && body.contains("max_completion_tokens"))
    max_tokens = integer(body, "max_completion_tokens", 1, std::numeric_limits<int32_t>::max(), max_tokens);
  max_tokens = integer(body, "max_tokens", 1, std::numeric_limits<int32_t>::max(), max_tokens);
  r.base.generation.max_new_tokens = static_cast<int>(std::min(max_tokens, room));  // the context ends it: "length"

  if (const auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    std::vector<std::string> stops;
    if (it->is_string()) {
      stops.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const auto& s : *it) {
        if (!s.is_string()) bad("stop", "must be a string or an array of strings");
        stops.push_back(s.get<std::string>());
      }
    } else {
      bad("stop", "must be a string or an array of strings");
    }
    if (static_cast<int>(stops.size()) > lim.max_stop) bad("stop", "has more than " + std::to_string(lim.max_stop) + " strings");
    for (const auto& s : stops)
      if (s.empty()) bad("stop", "strings must not be empty");
    r.base.generation.stop_strings = std::move(stops);
  }
  // ignore_eos (llama.cpp's and vLLM's extension): generate max_tokens whatever the model says.
  r.base.generation.stop_at_eog = !boolean(body, "ignore_eos", false);
  r.n = static_cast<int>(integer(body, "n", 1, lim.max_n, 1));
  r.stream = boolean(body, "stream", false);
  if (const auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) bad("stream_options", "must be an object");
    r.include_usage = boolean(*it, "include_usage", false);
  }
  r.base.prompt = std::move(prompt);
  return r;
}

inline const char* finish_reason(runtime::StopReason s) {
  switch (s) {
    case runtime::StopReason::end_of_generation:
    case runtime::StopReason::stop_string: return "stop";
    case runtime::StopReason::max_tokens:
    case runtime::StopReason::context_full: return "length";
    case runtime::StopReason::callback: return "stop";  // cancelled by the server (shutdown): not an OpenAI value
  }
  return "stop";
}

inline json usage(int64_t prompt, int64_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

// One choice of a whole (non-streamed) answer.
inline json choice(bool chat, int index, const runtime::GenerationResult& g) {
  json c = {{"index", index}, {"finish_reason", finish_reason(g.stop)}, {"logprobs", nullptr}};
  if (chat)
    c["message"] = {{"role", "assistant"}, {"content", g.text}};
  else
    c["text"] = g.text;
  return c;
}

// The envelope shared by whole answers and stream chunks.
inline json envelope(bool chat, bool chunk, const std::string& id, int64_t created, const std::string& model) {
  return {{"id", id},
          {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
          {"created", created},
          {"model", model},
          {"system_fingerprint", "tessera"}};
}

// A stream chunk for choice `index`: a piece of text, the role opening a chat
// answer, or (finish != nullptr) the end of the choice.
inline json chunk_choice(bool chat, int index, const std::string* text, const char* finish, bool role = false) {
  json c = {{"index", index}, {"logprobs", nullptr}, {"finish_reason", finish ? json(finish) : json(nullptr)}};
  if (chat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (text) delta["content"] = *text;
    c["delta"] = delta;
  } else {
    c["text"] = text ? *text : std::string();
  }
  return c;
}

}  // namespace tessera_server
