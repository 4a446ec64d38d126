// Chat templates rendered exactly as jinja2 renders them (tests/data/chat, made by
// scripts/make-chat-golden): SmolLM2's ChatML template read from the model, and
// Meta's Llama-3 and Llama-2 templates, Gemma's turns; then recognition, default system turns
// and clear errors.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "../test_models.hpp"
#include "../test_util.hpp"
#include "tessera/io/chat_template.hpp"
#include "tessera/io/gguf.hpp"

using namespace tessera;

namespace {

// Each line: add_generation_prompt TAB role=hex,role=hex TAB rendering in hex. Returns the number of cases.
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
    REQUIRE(tmpl.render(messages, gen == "1") == test::from_hex(want));
    ++n;
  }
  return n;
}
}  // namespace

TEST_CASE("ChatML: SmolLM2's template renders as jinja2 does", "[chat]") {
  const auto path = test::find_test_model("SmolLM2-135M-Instruct.Q4_1.gguf");
  if (!path) {
    WARN("skipped: SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/fetch-model)");
    return;
  }
  const auto tmpl =
      io::ChatTemplate::from_source(io::GgufFile::open(*path).meta().get<std::string>("tokenizer.chat_template"));
  REQUIRE(tmpl.family() == io::ChatTemplate::Family::chatml);
  REQUIRE(tmpl.default_system() == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  REQUIRE_FALSE(tmpl.renders_bos());
  REQUIRE(check_renderings(tmpl, "smollm2.txt") == 10);
}

TEST_CASE("Llama-3 and Llama-2 templates render as jinja2 does", "[chat]") {
  // Recognition looks at markers only; the full templates that jinja2 rendered are in scripts/make-chat-golden.
  const auto l3 = io::ChatTemplate::from_source("{% set content = '<|start_header_id|>' + message['role'] %}");
  REQUIRE(l3.family() == io::ChatTemplate::Family::llama3);
  REQUIRE(check_renderings(l3, "llama3.txt") == 10);
  const auto l2 = io::ChatTemplate::from_source("{{ bos_token + '[INST] ' }}{% set c = '<<SYS>>\\n' %}");
  REQUIRE(l2.family() == io::ChatTemplate::Family::llama2);
  REQUIRE(l2.renders_bos());
  REQUIRE(check_renderings(l2, "llama2.txt") == 10);
  // Llama-2's template raises when roles do not alternate.
  REQUIRE_THROWS_WITH(l2.render({{"user", "a"}, {"user", "b"}}, true), Catch::Contains("alternate"));
  REQUIRE(l3.render({}, false).empty());  // no messages: not even the BOS text
}

TEST_CASE("Gemma turns render as jinja2 renders Gemma 3 template, base models get them by architecture", "[chat]") {
  const auto g = io::ChatTemplate::from_source("{{ '<start_of_turn>' + role + '\\n' }}");
  REQUIRE(g.family() == io::ChatTemplate::Family::gemma);
  REQUIRE(g.renders_bos());
  REQUIRE(check_renderings(g, "gemma.txt") == 10);
  REQUIRE_THROWS_WITH(g.render({{"user", "a"}, {"user", "b"}}, true), Catch::Contains("alternate"));
  // A model without tokenizer.chat_template: Gemma 3 takes Gemma's turns, others are an error naming the arch.
  REQUIRE(io::ChatTemplate::for_model("", "gemma3").family() == io::ChatTemplate::Family::gemma);
  REQUIRE(io::ChatTemplate::for_model("<|im_start|>", "gemma3").family() == io::ChatTemplate::Family::chatml);
  REQUIRE_THROWS_WITH(io::ChatTemplate::for_model("", "gpt2"), Catch::Contains("'gpt2' has no default"));
}

TEST_CASE("ChatML default system turn: found only in a complete string literal", "[chat]") {
  // Qwen2-style: the system turn literal appears first with a message's content spliced in, then whole.
  const std::string qwen =
      "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
      "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
      "{%- endif %}";
  const auto t = io::ChatTemplate::from_source(qwen);
  REQUIRE(t.default_system() == "You are a helpful assistant.");
  REQUIRE(t.render({{"user", "hi"}}, true) ==
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
          "<|im_start|>assistant\n");
  REQUIRE(t.render({{"system", "S"}}, false) == "<|im_start|>system\nS<|im_end|>\n");
  // Plain ChatML: no default turn.
  const auto plain = io::ChatTemplate::from_source(
      "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}");
  REQUIRE(plain.default_system().empty());
  REQUIRE(plain.render({{"user", "hi"}}, false) == "<|im_start|>user\nhi<|im_end|>\n");
}

TEST_CASE("unknown templates and variants that would render differently are errors", "[chat]") {
  REQUIRE_THROWS_WITH(io::ChatTemplate::from_source("{% for m in messages %}{{ m.content }}{% endfor %}"),
                      Catch::Contains("unsupported chat template: '{% for m in messages %}"));
  // Mistral's [INST] without <<SYS>>, Llama-3.1's dated system turn.
  REQUIRE_THROWS_WITH(io::ChatTemplate::from_source("{{ '[INST] ' + m['content'] + ' [/INST]' }}"),
                      Catch::Contains("unsupported chat template"));
  REQUIRE_THROWS_WITH(io::ChatTemplate::from_source("<|start_header_id|>system\nCutting Knowledge Date: Dec 2023"),
                      Catch::Contains("unsupported chat template"));
  // Only the first 60 characters are quoted.
  try {
    io::ChatTemplate::from_source(std::string(100, 'x'));
    FAIL("no error");
  } catch (const Error& e) {
    REQUIRE(std::string(e.what()).find(std::string(61, 'x')) == std::string::npos);
    REQUIRE(std::string(e.what()).find(std::string(60, 'x')) != std::string::npos);
  }
}
