// Runs one doc snippet by name (tests/docs/doctest.py made them from the pages):
//   doc_snippets "docs/nn.md#1"      runs it; exit 0 when it returns 0 without throwing
//   doc_snippets --list              the names
// A snippet that needs the default model prints "SKIPPED: ..." when it is missing
// (CTest counts that as skipped).
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "doc_snippet.hpp"

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--list") {
    for (const auto& [name, f] : doc::registry()) std::printf("%s\n", name.c_str());
    return 0;
  }
  if (argc < 2 || !doc::registry().count(argv[1])) {
    std::fprintf(stderr, "usage: doc_snippets NAME [needs-model] (--list for the names)\n");
    return 2;
  }
  if (argc == 3 && std::string(argv[2]) == "needs-model" && !std::filesystem::exists("model.gguf")) {
    std::printf("SKIPPED: the default model is missing (run scripts/fetch-model)\n");
    return 0;
  }
  try {
    return doc::registry()[argv[1]]();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s threw: %s\n", argv[1], e.what());
    return 1;
  }
}
