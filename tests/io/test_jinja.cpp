// The Jinja engine's errors and limits: every failure is a tessera::Error naming the problem and its
// line:column, and each limit (template length, output size, steps, loop iterations, range length,
// recursion depth, macro call depth, parse depth, value nesting) stops a hostile template with its name.
#include <catch2/catch.hpp>

#include <string>

#include "tessera/io/jinja/template.hpp"

using namespace tessera;
namespace jj = tessera::io::jinja;

namespace {

std::string jinja_render(const std::string& src, jj::Limits limits = {}) {
  return jj::Template::compile(src, limits).render({{"messages", jj::make_list({jj::make_dict({{"role", "user"}, {"content", "hi"}})})}});
}

}  // namespace

TEST_CASE("jinja: errors name the problem and the line:column", "[jinja]") {
  REQUIRE_THROWS_WITH(jinja_render("a\n  {{ raise_exception('bad turn ' ~ 3) }}"),
                      Catch::Contains("line 2:") && Catch::Contains("bad turn 3"));
  REQUIRE_THROWS_WITH(jinja_render("{{ nope.attr }}"), Catch::Contains("'nope' is undefined"));
  REQUIRE_THROWS_WITH(jinja_render("{{ messages[0].missing.x }}"), Catch::Contains("has no attribute 'missing'"));
  REQUIRE_THROWS_WITH(jinja_render("{{ 1 + 'a' }}"), Catch::Contains("line 1:") && Catch::Contains("unsupported operand"));
  REQUIRE_THROWS_WITH(jinja_render("{{ [1].append(2) }}"), Catch::Contains("no attribute 'append'"));  // read-only lists
  REQUIRE_THROWS_WITH(jinja_render("{{ 'x' | nosuchfilter }}"), Catch::Contains("no filter named 'nosuchfilter'"));
  REQUIRE_THROWS_WITH(jinja_render("{{ 1 is nosuchtest }}"), Catch::Contains("no test named 'nosuchtest'"));
  REQUIRE_THROWS_WITH(jinja_render("{% set x = 1 %}{% set x.y = 2 %}"), Catch::Contains("non-namespace"));
  REQUIRE_THROWS_WITH(jinja_render("{{ 1 // 0 }}"), Catch::Contains("by zero"));
  REQUIRE_THROWS_WITH(jinja_render("{{ 9223372036854775807 + 1 }}"), Catch::Contains("integer overflow"));
  REQUIRE_THROWS_WITH(jinja_render("{% for a, b in [1] %}{% endfor %}"), Catch::Contains("unpack"));
  REQUIRE_THROWS_WITH(jinja_render("{% break %}"), Catch::Contains("outside a loop"));
  REQUIRE_THROWS_WITH(jinja_render("{{ 'a' ~ }}"), Catch::Contains("line 1:") && Catch::Contains("syntax error"));
  REQUIRE_THROWS_WITH(jinja_render("x {# open"), Catch::Contains("line 1:3") && Catch::Contains("unterminated comment"));
  REQUIRE_THROWS_WITH(jinja_render("{{ 'open }}"), Catch::Contains("unterminated string"));
  REQUIRE_THROWS_WITH(jinja_render("{% raw %}x"), Catch::Contains("endraw"));
  REQUIRE_THROWS_WITH(jinja_render("{% for x in y recursive %}{% endfor %}"), Catch::Contains("recursive loops"));
}

TEST_CASE("jinja: each limit stops a hostile template with an Error naming it", "[jinja]") {
  jj::Limits small;
  small.max_source_bytes = 16;
  REQUIRE_THROWS_WITH(jj::Template::compile(std::string(17, 'x'), small), Catch::Contains("template length limit"));

  jj::Limits out;
  out.max_output_bytes = 1000;
  REQUIRE_THROWS_WITH(jinja_render("{% for i in range(60) %}0123456789012345678901234{% endfor %}", out),
                      Catch::Contains("output size limit"));
  REQUIRE_THROWS_WITH(jinja_render("{% set ns = namespace(s='ab') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", out),
                      Catch::Contains("output size limit"));
  REQUIRE_THROWS_WITH(jinja_render("{{ 'x' * 100000 }}", out), Catch::Contains("size limit"));

  jj::Limits steps;
  steps.max_steps = 5000;
  REQUIRE_THROWS_WITH(jinja_render("{% for i in range(10000) %}{{ i }}{% endfor %}", steps),
                      Catch::Contains("evaluation step limit"));
  REQUIRE_THROWS_WITH(jinja_render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
                      Catch::Contains("loop iteration limit"));
  REQUIRE_THROWS_WITH(jinja_render("{{ range(100001) | length }}"), Catch::Contains("range of"));
  REQUIRE(jinja_render("{{ range(100000) | length }}") == "100000");

  // Recursion: a self-recursive macro meets the call depth; with that raised, the evaluation depth.
  const std::string recurse = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
  REQUIRE_THROWS_WITH(jinja_render(recurse), Catch::Contains("macro call depth limit"));
  jj::Limits deep;
  deep.max_call_depth = 100000;
  REQUIRE_THROWS_WITH(jinja_render(recurse, deep), Catch::Contains("recursion depth limit"));

  // Parse depth: ((((..., deep nesting of statements, long operator chains.
  REQUIRE_THROWS_WITH(jinja_render("{{ " + std::string(10000, '(') + "1" + std::string(10000, ')') + " }}"),
                      Catch::Contains("parse depth limit"));
  std::string ifs;
  for (int i = 0; i < 1000; ++i) ifs += "{% if true %}";
  REQUIRE_THROWS_WITH(jinja_render(ifs), Catch::Contains("parse depth limit"));
  std::string chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) chain += "+1";
  REQUIRE_THROWS_WITH(jinja_render(chain + " }}"), Catch::Contains("parse depth limit"));
  // A long elif chain is flat, not deep.
  std::string elifs = "{% if false %}";
  for (int i = 0; i < 5000; ++i) elifs += "{% elif false %}";
  REQUIRE(jinja_render(elifs + "{% else %}e{% endif %}") == "e");

  // Values nested in a loop, and namespaces that would form a cycle.
  REQUIRE_THROWS_WITH(jinja_render("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}"),
                      Catch::Contains("nested deeper"));
  REQUIRE_THROWS_WITH(jinja_render("{% set ns = namespace() %}{% set ns.me = [ns] %}"),
                      Catch::Contains("cannot hold another namespace"));
  // Shared lists doubled 40 times: 41 deep but 2^40 leaves, which printing, tojson or == would walk.
  std::string doubling = "{% set ns = namespace(a=[1]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}";
  REQUIRE_THROWS_WITH(jinja_render(doubling + "{{ ns.a }}"), Catch::Contains("elements and bytes"));
  REQUIRE_THROWS_WITH(jinja_render("{% set d = {'k': 'x' * 1000000} %}{% set e = {'a': [d] * 100} %}"),
                      Catch::Contains("elements and bytes"));
  // indent's pad goes on every line: refused before it is built.
  REQUIRE_THROWS_WITH(jinja_render("{{ ('\\n' * 100000) | indent(1000, blank=true) }}"), Catch::Contains("indent:"));
  // An integer literal past int64, also as a subscript (x.N), is an Error, not another exception.
  REQUIRE_THROWS_AS(jinja_render("{{ 99999999999999999999 }}"), Error);
  REQUIRE_THROWS_AS(jinja_render("{{ [1].99999999999999999999 }}"), Error);
}

TEST_CASE("jinja: strftime_now formats the given time, contexts pass any value", "[jinja]") {
  std::tm t{};
  t.tm_year = 100;
  t.tm_mon = 0;
  t.tm_mday = 2;
  const auto tmpl = jj::Template::compile("{{ strftime_now('%d %b %Y') }} {{ tools | tojson }} {{ n + 1 }}");
  const jj::Context ctx{{"tools", jj::make_list({jj::make_dict({{"name", "f"}, {"args", jj::Value(jj::None{})}})})},
                        {"n", jj::Value(int64_t{41})}};
  REQUIRE(tmpl.render(ctx, [t] { return t; }) == "02 Jan 2000 [{\"name\": \"f\", \"args\": null}] 42");
}
