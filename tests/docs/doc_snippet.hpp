// The registry the generated doc snippets add themselves to (tests/docs/doctest.py).
#pragma once

#include <map>
#include <string>

namespace doc {

using Snippet = int (*)();

inline std::map<std::string, Snippet>& registry() {
  static std::map<std::string, Snippet> r;
  return r;
}

inline bool add(const char* name, Snippet f) {
  registry()[name] = f;
  return true;
}

}  // namespace doc
