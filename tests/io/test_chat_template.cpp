// Chat templates rendered exactly as jinja2 renders them (tests/data/chat, made by scripts/make-chat-golden):
// SmolLM2's template read from the model, Meta's Llama-3 and Llama-2 templates, Gemma's turns, and the
// feature templates written for these tests (tests/data/chat/features), which together use every
// statement, expression, filter, test and method the engine supports. Then BOS detection and defaults.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "../test_models.hpp"
#include "../test_util.hpp"
#include "tessera/io/chat_template.hpp"
#include "tessera/io/gguf.hpp"
#include "tessera/io/tokenizer_gguf.hpp"

using namespace tessera;

namespace {

// What strftime_now sees in the golden files (scripts/jinja_reference.py's NOW): Friday 2024-07-26 09:05:03.
std::tm chat_golden_now() {
  std::tm t{};
  t.tm_year = 124;
  t.tm_mon = 6;
  t.tm_mday = 26;
  t.tm_hour = 9;
  t.tm_min = 5;
  t.tm_sec = 3;
  t.tm_wday = 5;
  t.tm_yday = 207;
  return t;
}

io::ChatTemplateOptions chat_golden_options(std::string bos, std::string eos) {
  io::ChatTemplateOptions o;
  o.bos_token = std::move(bos);
  o.eos_token = std::move(eos);
  o.now = chat_golden_now;
  return o;
}

std::string chat_read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Each line: add_generation_prompt TAB role=hex,role=hex TAB rendering in hex (or '!' + the error's hex).
// Returns the number of cases.
int check_renderings(const io::ChatTemplate& tmpl, const std::string& file) {
  std::ifstream in(std::string(TESSERA_TEST_DATA_DIR) + "/chat/" + file);
  REQUIRE(in.good());
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string gen, msgs, want;
    std::getline(fields, gen, '\t');
    std::getline(fields, msgs, '\t');
    std::getline(fields, want, '\t');
    std::vector<io::ChatMessage> messages;
    std::istringstream ms(msgs);
    for (std::string m; std::getline(ms, m, ',');) {
      const auto eq = m.find('=');
      messages.push_back({m.substr(0, eq), test::from_hex(m.substr(eq + 1))});
    }
    INFO(file << " case " << n);
    if (!want.empty() && want[0] == '!') {
      // jinja2 raised: tessera must too, with the message when the template chose it (raise_exception).
      const std::string msg = test::from_hex(want.substr(1));
      if (msg.find("Conversation roles") != std::string::npos)
        REQUIRE_THROWS_WITH(tmpl.render(messages, gen == "1"), Catch::Contains(msg));
      else
        REQUIRE_THROWS_AS(tmpl.render(messages, gen == "1"), Error);
    } else {
      REQUIRE(tmpl.render(messages, gen == "1") == test::from_hex(want));
    }
    ++n;
  }
  return n;
}

const char* const kLlama3Template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const char* const kLlama2Template =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}";

}  // namespace

TEST_CASE("ChatML: SmolLM2's template renders as jinja2 does", "[chat]") {
  const auto path = test::find_test_model("SmolLM2-135M-Instruct.Q4_1.gguf");
  if (!path) {
    WARN("skipped: SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/fetch-model)");
    return;
  }
  const auto file = io::GgufFile::open(*path);
  const auto tok = io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(file.meta()));
  auto opts = io::chat_template_options(tok);
  REQUIRE(opts.bos_token == "<|im_start|>");  // SmolLM2's BOS is ChatML's turn opener
  opts.now = chat_golden_now;
  const auto tmpl = io::ChatTemplate::from_source(file.meta().get<std::string>("tokenizer.chat_template"), opts);
  // Every turn opens with the BOS text, so a tokenizer that adds BOS would double it: renders_bos says so.
  REQUIRE(tmpl.renders_bos());
  REQUIRE(check_renderings(tmpl, "smollm2.txt") == 10);
}

TEST_CASE("Llama-3 and Llama-2 templates render as jinja2 does", "[chat]") {
  const auto l3 = io::ChatTemplate::from_source(kLlama3Template, chat_golden_options("<|begin_of_text|>", "<|eot_id|>"));
  REQUIRE(l3.renders_bos());
  REQUIRE(check_renderings(l3, "llama3.txt") == 10);
  REQUIRE(l3.render(std::vector<io::ChatMessage>{}, false).empty());  // no messages: not even the BOS text
  const auto l2 = io::ChatTemplate::from_source(kLlama2Template, chat_golden_options("<s>", "</s>"));
  REQUIRE(l2.renders_bos());
  REQUIRE(check_renderings(l2, "llama2.txt") == 10);
  // Llama-2's template raises when roles do not alternate: the message is the template's, with its place.
  REQUIRE_THROWS_WITH(l2.render({{"user", "a"}, {"user", "b"}}, true),
                      Catch::Contains("Conversation roles must alternate") && Catch::Contains("line 1:"));
}

TEST_CASE("Gemma turns render as jinja2 renders them, base Gemma 3 models get them by architecture", "[chat]") {
  const auto g = io::ChatTemplate::for_model("", "gemma3", chat_golden_options("<bos>", "<eos>"));
  REQUIRE(g.renders_bos());
  REQUIRE(check_renderings(g, "gemma.txt") == 10);
  REQUIRE_THROWS_WITH(g.render({{"user", "a"}, {"user", "b"}}, true), Catch::Contains("alternate"));
  // A model's own template wins; a model with none and no family default is an error naming the arch.
  REQUIRE(io::ChatTemplate::for_model("[{{ messages[0].content }}]", "gemma3").render({{"user", "x"}}, true) == "[x]");
  REQUIRE_THROWS_WITH(io::ChatTemplate::for_model("", "gpt2"), Catch::Contains("'gpt2' has no default"));
  // Gemma 3's model file (no template of its own) renders through the default with its tokenizer's texts.
  if (const auto path = test::find_test_model("gemma-3-270m-q4_k_m.gguf")) {
    const auto file = io::GgufFile::open(*path);
    const auto tok = io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(file.meta()));
    const auto t = io::ChatTemplate::for_model(file.meta().get_or<std::string>("tokenizer.chat_template", ""),
                                               "gemma3", io::chat_template_options(tok));
    REQUIRE(t.renders_bos());
    REQUIRE(t.render({{"user", "Hi"}}, true) == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  } else {
    WARN("skipped the Gemma 3 model part: gemma-3-270m-q4_k_m.gguf not found");
  }
}

TEST_CASE("feature templates render as jinja2 renders them", "[chat]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(TESSERA_TEST_DATA_DIR) / "chat" / "features";
  int n_files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".jinja") continue;
    INFO(entry.path().filename().string());
    const auto tmpl = io::ChatTemplate::from_source(chat_read_file(entry.path().string()), chat_golden_options("<s>", "</s>"));
    REQUIRE(check_renderings(tmpl, "features/" + entry.path().stem().string() + ".txt") == 20);
    ++n_files;
  }
  REQUIRE(n_files >= 7);
}

TEST_CASE("renders_bos: whether the rendering starts with the BOS text", "[chat]") {
  const auto opts = chat_golden_options("<s>", "</s>");
  REQUIRE(io::ChatTemplate::from_source("{{ bos_token }}{{ messages[0].content }}", opts).renders_bos());
  REQUIRE_FALSE(io::ChatTemplate::from_source("{{ messages[0].content }}{{ bos_token }}", opts).renders_bos());
  // No BOS text: nothing to detect.
  REQUIRE_FALSE(io::ChatTemplate::from_source("{{ bos_token }}x", {}).renders_bos());
  // A template that raises for a lone user turn is probed with a system turn first.
  REQUIRE(io::ChatTemplate::from_source(
              "{% if messages[0].role != 'system' %}{{ raise_exception('system first') }}{% endif %}{{ bos_token }}", opts)
              .renders_bos());
}

TEST_CASE("chat_template_options takes the token texts from the tokenizer", "[chat]") {
  io::TokenizerSpec spec;
  spec.tokens = {"<unk>", "<s>", "</s>", "a"};
  spec.token_types = {2, 3, 3, 1};
  spec.model = "llama";
  spec.scores = {0, 0, 0, 0};
  spec.bos = 1;
  spec.eos = 2;
  const auto o = io::chat_template_options(io::Tokenizer::from_spec(spec));
  REQUIRE(o.bos_token == "<s>");
  REQUIRE(o.eos_token == "</s>");
}

TEST_CASE("chat template syntax errors name line and column", "[chat]") {
  REQUIRE_THROWS_WITH(io::ChatTemplate::from_source("ok\n{% for m in messages %}{{ m.content }}"),
                      Catch::Contains("line 2:") && Catch::Contains("expected 'endfor'"));
  REQUIRE_THROWS_WITH(io::ChatTemplate::from_source("{{ 1 + }}"), Catch::Contains("line 1:8: syntax error"));
  REQUIRE_THROWS_WITH(io::ChatTemplate::from_source("a\nb {% include 'x' %}"),
                      Catch::Contains("line 2:6") && Catch::Contains("unknown or unsupported tag 'include'"));
}
