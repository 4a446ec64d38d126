// Stop strings over streamed text: nothing of a stop string is ever shown,
// split or not, and text that only looked like one is released.
#include <catch2/catch.hpp>

#include <random>

#include "tessera/runtime/stop_strings.hpp"

using tessera::runtime::StopStringMatcher;

TEST_CASE("stop strings: split across pushes, never emitted", "[stop]") {
  StopStringMatcher m({"<|im_end|>", "\nUser:"});
  std::string out;
  for (const char* piece : {"Hello", " world", "<|im", "_e", "nd|>", "after"}) out += m.push(piece);
  REQUIRE(m.stopped());
  REQUIRE(out == "Hello world");
  REQUIRE(m.push("more").empty());
}

TEST_CASE("stop strings: a false start is released", "[stop]") {
  StopStringMatcher m({"\nUser:"});
  std::string out = m.push("a\nUs");
  REQUIRE(out == "a");  // "\nUs" may begin the stop string: held
  out += m.push("ually");
  REQUIRE(out == "a\nUsually");
  out += m.push("\n");
  out += m.flush();
  REQUIRE(out == "a\nUsually\n");
  REQUIRE_FALSE(m.stopped());
}

TEST_CASE("stop strings: any chunking of a text gives the same output", "[stop]") {
  const std::string text = "one two <stop> three", want = "one two ";
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    StopStringMatcher m({"<stop>", "zzz"});
    std::string out;
    for (size_t i = 0; i < text.size();) {
      const size_t n = 1 + rng() % 4;
      out += m.push(text.substr(i, n));
      i += n;
    }
    out += m.flush();
    REQUIRE(out == want);
  }
}
