// Hostile chat templates: random mutations of the feature templates and of the real templates available
// (SmolLM2's from its model file, the built-in Gemma one) must each compile and render to text or throw
// tessera::Error, within bounded time; nothing else (no crash, no other exception, no hang). Run under
// ASan/UBSan by scripts/test's sanitizer build.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "../test_models.hpp"
#include "tessera/io/chat_template.hpp"
#include "tessera/io/gguf.hpp"

using namespace tessera;

namespace {

const char* const kFuzzSnippets[] = {
    "{%", "%}", "{{", "}}", "{#", "#}", "{%-", "-%}", "{% endif %}", "{% endfor %}", "{% else %}",
    "{% if x %}", "{% for i in range(99999) %}", "{% for m in messages %}", "{{ loop.cycle(1) }}",
    "{% macro r(n) %}{{ r(n) }}{% endmacro %}{{ r(1) }}", "((((((((", "]]]]", "[[[[", "'", "\"", "\\",
    "{% set ns.x = ns %}", "{% set x = x ~ x ~ x ~ x %}", "|tojson(indent=64)", "|indent(65536)", "* 99999999",
    "** 99", "[::-1]", ".strip()", "|center(999999999)", "{% raw %}", "{% call r() %}", "caller()", "\xff\xfe",
    "{% set s = 'x' * 4096 %}{% for i in range(4096) %}{{ s }}{% endfor %}",
};

std::string fuzz_mutate(std::string s, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  const int n_edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < n_edits; ++e) {
    switch (rng() % 6) {
      case 0:  // flip a byte to a character the lexer cares about
        if (!s.empty()) s[pick(s.size())] = "{}%#-+()[]'\"|.~ \n\\"[pick(18)];
        break;
      case 1: s.resize(pick(s.size() + 1)); break;  // truncate
      case 2: {  // duplicate a delimiter
        static const char* delims[] = {"{%", "%}", "{{", "}}", "{#", "#}", "(", ")"};
        const std::string d = delims[pick(8)];
        const size_t at = s.find(d, pick(s.size() + 1));
        if (at != std::string::npos) s.insert(at, d);
        break;
      }
      case 3: {  // delete a delimiter
        static const char* delims[] = {"{%", "%}", "{{", "}}", "endif", "endfor", "(", "]"};
        const std::string d = delims[pick(8)];
        const size_t at = s.find(d, pick(s.size() + 1));
        if (at != std::string::npos) s.erase(at, d.size());
        break;
      }
      case 4: s.insert(pick(s.size() + 1), kFuzzSnippets[pick(std::size(kFuzzSnippets))]); break;
      default: {  // copy a random piece elsewhere
        const size_t from = pick(s.size() + 1), len = pick(std::min<size_t>(200, s.size() - from + 1));
        s.insert(pick(s.size() + 1), s.substr(from, len));
      }
    }
  }
  return s;
}

std::string fuzz_read(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("jinja fuzz: mutated templates render or throw Error, in bounded time", "[jinja][fuzz]") {
  std::vector<std::string> seeds;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(TESSERA_TEST_DATA_DIR) + "/chat/features"))
    if (entry.path().extension() == ".jinja") seeds.push_back(fuzz_read(entry.path()));
  seeds.emplace_back(io::kGemmaChatTemplate);
  if (const auto path = test::find_test_model("SmolLM2-135M-Instruct.Q4_1.gguf"))
    seeds.push_back(io::GgufFile::open(*path).meta().get<std::string>("tokenizer.chat_template"));
  else
    WARN("SmolLM2-135M-Instruct.Q4_1.gguf not found: fuzzing without its template");

  // Tighter limits than the defaults keep the sanitizer build quick; the limits are what is under test.
  io::ChatTemplateOptions opts;
  opts.bos_token = "<s>";
  opts.eos_token = "</s>";
  opts.limits.max_steps = 200'000;
  opts.limits.max_output_bytes = 1 << 20;
  const std::vector<io::ChatMessage> conv = {{"system", "sys"}, {"user", "hi \xc3\xa9"}, {"assistant", " ok "}, {"user", ""}};
  std::mt19937_64 rng(20240726);
  int n_rendered = 0, n_errors = 0;
  for (const std::string& seed : seeds) {
    for (int i = 0; i < 150; ++i) {
      const std::string src = fuzz_mutate(seed, rng);
      const auto t0 = std::chrono::steady_clock::now();
      try {
        const auto tmpl = io::ChatTemplate::from_source(src, opts);
        (void)tmpl.render(conv, true);
        ++n_rendered;
      } catch (const Error&) {
        ++n_errors;
      }
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      INFO("mutation " << i << " took " << secs << " s:\n" << src);
      REQUIRE(secs < 10.0);
    }
  }
  // Both outcomes occur, or the mutations would test nothing.
  REQUIRE(n_rendered > 50);
  REQUIRE(n_errors > 50);
}

TEST_CASE("jinja fuzz: random bytes and fixed hostile inputs", "[jinja][fuzz]") {
  std::mt19937_64 rng(7);
  const std::string alphabet = "{}%#-+()[]'\"|.~ \nabcxif0123=,:*/endforsetmacro";
  for (int i = 0; i < 500; ++i) {
    std::string src(rng() % 120, ' ');
    for (char& c : src) c = alphabet[rng() % alphabet.size()];
    try {
      (void)io::ChatTemplate::from_source(src).render({{"user", "x"}}, true);
    } catch (const Error&) {
    }
  }
  const std::vector<std::string> hostile = {
      std::string(100000, '{'),
      "{{" + std::string(50000, '[') + "}}",
      "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
      "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}",
      "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = ns.x + [i] %}{% endfor %}",
      "{{ '%999999999s' | format(1) }}",
      "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}",
      "{{ strftime_now('" + std::string(5000, 'Y') + "') }}",
  };
  for (const auto& src : hostile) {
    INFO(src.substr(0, 100));
    REQUIRE_THROWS_AS(io::ChatTemplate::from_source(src).render({{"user", "x"}}, true), Error);
  }
}
