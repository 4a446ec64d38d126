// tessera-chat-template: renders a chat template file with a JSON context, as tessera's chat endpoints
// would, so that scripts/check-chat-templates can set the output beside jinja2's.
//   tessera-chat-template TEMPLATE.jinja CONTEXT.json [--now "YYYY-MM-DD HH:MM:SS"]
// CONTEXT.json is an object whose keys become the template's variables (messages, add_generation_prompt,
// bos_token, eos_token, tools, ...), key order kept. --now fixes what strftime_now formats.
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tessera/io/jinja/template.hpp"

namespace {

using tessera::io::jinja::Value;
using json = nlohmann::ordered_json;  // tojson keeps the keys' order

Value to_value(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return tessera::io::jinja::None{};
    case json::value_t::boolean: return j.get<bool>();
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return j.get<int64_t>();
    case json::value_t::number_float: return j.get<double>();
    case json::value_t::string: return j.get<std::string>();
    case json::value_t::array: {
      std::vector<Value> xs;
      for (const auto& x : j) xs.push_back(to_value(x));
      return Value::list(std::move(xs));
    }
    case json::value_t::object: {
      std::vector<std::pair<Value, Value>> kv;
      for (const auto& [k, x] : j.items()) kv.emplace_back(Value(k), to_value(x));
      return Value::dict(std::move(kv));
    }
    default: tessera::fail("unsupported JSON value");
  }
}

std::string read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  tessera::check(in.good(), "cannot read ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && !(argc == 5 && std::strcmp(argv[3], "--now") == 0)) {
    std::fprintf(stderr, "usage: %s TEMPLATE.jinja CONTEXT.json [--now \"YYYY-MM-DD HH:MM:SS\"]\n", argv[0]);
    return 2;
  }
  try {
    const auto tmpl = tessera::io::jinja::Template::compile(read_file(argv[1]));
    const json ctx = json::parse(read_file(argv[2]));
    tessera::check(ctx.is_object(), "the context must be a JSON object");
    tessera::io::jinja::Context c;
    for (const auto& [k, v] : ctx.items()) c.emplace_back(k, to_value(v));
    std::function<std::tm()> now;
    if (argc == 5) {
      std::tm t{};
      tessera::check(strptime(argv[4], "%Y-%m-%d %H:%M:%S", &t) != nullptr, "--now: expected YYYY-MM-DD HH:MM:SS");
      t.tm_isdst = -1;
      std::tm norm = t;
      std::mktime(&norm);  // fills in the weekday and day of the year
      now = [norm] { return norm; };
    }
    std::cout << tmpl.render(c, now);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
