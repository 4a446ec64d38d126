// Truncated and bit-flipped variants of GGUF files: a small writer-made model
// (vocabulary, nested array, tensors of six types), the metadata region of
// the real SmolLM2 file, and the whole real file truncated at random offsets.
// Each variant must load cleanly or raise tessera::Error; a crash, another
// exception or a sanitizer report fails.
// Seeded: TESSERA_FUZZ_SEED=<n> replays a run, and failures print the seed and
// the variant index (also from a sanitizer's death callback).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <typeinfo>

#include <unistd.h>

#include "../test_models.hpp"
#include "gguf_test_util.hpp"
#include "tessera/io/gguf.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define TESSERA_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define TESSERA_TEST_SANITIZED 1
#endif
#endif
#ifdef TESSERA_TEST_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

using namespace tessera;
using namespace tessera::io;

namespace {

constexpr const char* kName = "fuzz.gguf";
// Real-file variants: mutations of the metadata region plus truncations of the whole file, 4000 in all
// (~7 s in Release on one core). ASan/UBSan runs them ~5x slower, so sanitized builds run half, 2000
// (~20 s), keeping the sanitizer ctest run short.
#ifdef TESSERA_TEST_SANITIZED
constexpr int kSmallVariants = 20000, kRealVariants = 1000, kRealTruncations = 1000;
#else
constexpr int kSmallVariants = 20000, kRealVariants = 2000, kRealTruncations = 2000;
#endif

// Which variant is being parsed, for a sanitizer report (which ends the process before Catch can say).
char g_current[128] = "";
#ifdef TESSERA_TEST_SANITIZED
void print_current() { std::fprintf(stderr, "\nGGUF fuzz: died on %s\n", g_current); }
#endif

uint64_t fuzz_seed() {
  const char* env = std::getenv("TESSERA_FUZZ_SEED");
  return env && *env ? std::strtoull(env, nullptr, 10) : 20261122;
}

// Values that probe counts, lengths, types and offsets at their limits.
uint64_t interesting_value(std::mt19937_64& g, size_t file_size) {
  const uint64_t picks[] = {0, 1, 2, 7, 9, 12, 13, 31, 32, 33, 255, 256, 0x7fffffff, 0x80000000, 0xffffffff,
                            uint64_t{1} << 32, uint64_t{1} << 61, uint64_t{1} << 63, ~uint64_t{0},
                            file_size, file_size - 1, file_size / 8};
  return picks[g() % std::size(picks)];
}

// Where a file's parts start: metadata at byte 24, then the tensor infos, then the data.
struct Regions {
  size_t infos_at, data_at;
};

// The regions of a valid file f whose bytes are base: the infos start at the first tensor's name.
Regions regions_of(const GgufFile& f, const std::vector<std::byte>& base) {
  const std::string& first = f.tensors().front().name;
  std::vector<std::byte> needle(8 + first.size());
  const uint64_t len = first.size();
  std::memcpy(needle.data(), &len, 8);
  std::memcpy(needle.data() + 8, first.data(), first.size());
  const auto it = std::search(base.begin(), base.end(), needle.begin(), needle.end());
  return {static_cast<size_t>(it - base.begin()), f.data_offset()};
}

// One variant of base. Most mutations land in the header, the metadata or the tensor infos, a third each
// (the vocabulary would otherwise take nearly all of them); flips in tensor data only change numbers.
std::vector<std::byte> mutate(const std::vector<std::byte>& base, Regions r, std::mt19937_64& g) {
  std::vector<std::byte> v = base;
  auto position = [&]() -> size_t {
    switch (g() % 10) {
      case 0: case 1: case 2: return g() % 24;
      case 3: case 4: case 5: return 24 + g() % (r.infos_at - 24);
      case 6: case 7: case 8: return r.infos_at + g() % (r.data_at - r.infos_at);
      default: return g() % base.size();
    }
  };
  const int kind = static_cast<int>(g() % 5);
  if (kind == 0 || kind == 4) v.resize(g() % v.size());  // truncation
  if (v.empty()) return v;
  if (kind == 1 || kind == 4) {  // bit flips
    for (int n = 1 + static_cast<int>(g() % 8); n > 0; --n) v[position() % v.size()] ^= std::byte(1u << (g() % 8));
  } else if (kind == 2) {  // a u32 or u64 field overwritten with a limit value
    const size_t width = g() % 2 ? 4 : 8, at = position() % v.size();
    const uint64_t value = interesting_value(g, base.size());
    std::memcpy(v.data() + at, &value, std::min(width, v.size() - at));
  } else if (kind == 3) {  // random bytes
    for (int n = 1 + static_cast<int>(g() % 4); n > 0; --n) v[position() % v.size()] = std::byte(g() & 0xff);
  }
  return v;
}

// Reads everything a clean load hands out, so the sanitizers see any pointer past the buffer.
size_t exercise(const GgufFile& f) {
  size_t h = 0;
  for (const auto& [key, value] : f.meta().entries()) {
    h += key.size() + to_string(value).size();
    h += value.to<int64_t>().value_or(0) != 0;
    h += value.to<std::vector<std::string>>().value_or(std::vector<std::string>{}).size();
    h += value.to<std::vector<float>>().has_value();
  }
  for (const GgufTensorInfo& t : f.tensors()) {
    for (const std::byte b : t.bytes()) h += static_cast<size_t>(b);
    switch (static_cast<GgmlType>(t.type)) {
      case GgmlType::f32: {
        const auto v = f.view2d<float>(t.name);
        for (int64_t r = 0; r < v.dim(0); ++r)
          for (int64_t c = 0; c < v.dim(1); ++c) h += v(r, c) > 0;
        break;
      }
      case GgmlType::q8_0: {
        const auto v = f.view2d<block_q8_0>(t.name);
        if (v.size() > 0) h += static_cast<size_t>(v(v.dim(0) - 1, v.dim(1) - 1).qs[31]);
        break;
      }
      case GgmlType::q4_1: h += static_cast<size_t>(f.view1d<block_q4_1>(t.name).dim(0)); break;
      default: break;
    }
  }
  return h;
}

struct FuzzStats {
  int clean = 0, errors = 0;
};

// n variants of base; every outcome other than a clean load or an Error fails with the seed and index.
FuzzStats fuzz(const char* what, const std::vector<std::byte>& base, Regions r, int n, uint64_t seed) {
  FuzzStats s;
  for (int i = 0; i < n; ++i) {
    std::snprintf(g_current, sizeof(g_current), "%s, TESSERA_FUZZ_SEED=%llu, variant %d", what,
                  static_cast<unsigned long long>(seed), i);
    std::mt19937_64 g(seed * 1000003 + static_cast<uint64_t>(i));
    std::vector<std::byte> v = mutate(base, r, g);
    try {
      const GgufFile f = GgufFile::from_bytes(std::move(v), kName);
      (void)exercise(f);
      ++s.clean;
    } catch (const Error& e) {
      ++s.errors;
      const std::string msg = e.what();
      if (msg.rfind(std::string(kName) + ": ", 0) != 0 || msg.find(" at byte ") == std::string::npos)
        FAIL(g_current << ": the Error does not name the file and a byte offset: " << msg);
    } catch (const std::exception& e) {
      FAIL(g_current << ": " << typeid(e).name() << " instead of tessera::Error: " << e.what());
    } catch (...) {
      FAIL(g_current << ": a non-std exception");
    }
  }
  return s;
}

}  // namespace

TEST_CASE("GGUF fuzz: variants of a small writer-made model load cleanly or raise Error", "[io][gguf][fuzz]") {
#ifdef TESSERA_TEST_SANITIZED
  __sanitizer_set_death_callback(print_current);
#endif
  const uint64_t seed = fuzz_seed();
  std::mt19937_64 g(seed);
  const std::vector<std::byte> base = test::small_model(300, g).to_bytes();
  const Regions r = regions_of(GgufFile::from_bytes(base), base);
  const FuzzStats s = fuzz("small model", base, r, kSmallVariants, seed);
  WARN("small model (" << base.size() << " bytes, seed " << seed << "): " << s.clean << " clean loads, " << s.errors
                       << " errors");
  CHECK(s.clean > 100);   // flips in tensor data and in values leave a valid file
  CHECK(s.errors > 1000);  // truncations always fail
}

/// The real model's path, with the sanitizer's death report wired up; nullopt (and a WARN) when absent.
std::optional<std::string> real_model() {
  const auto path = test::find_test_model(test::kDefaultModelFile);
  if (!path) {
    WARN("skipped: model not found: " << test::kDefaultModelFile << " (run scripts/fetch-model, or set TESSERA_TEST_MODEL)");
    return std::nullopt;
  }
#ifdef TESSERA_TEST_SANITIZED
  __sanitizer_set_death_callback(print_current);
#endif
  return path;
}

TEST_CASE("GGUF fuzz: variants of the real model's metadata region", "[io][gguf][fuzz][model]") {
  const auto path = real_model();
  if (!path) return;
  const uint64_t seed = fuzz_seed();
  const GgufFile f = GgufFile::open(*path);
  // Header, 37 entries (vocabulary and merges: ~1.7 MB) and 272 tensor infos, plus a little data.
  const size_t n = f.data_offset() + 4096;
  const std::byte* bytes = f.tensors().front().data - f.data_offset();
  std::vector<std::byte> prefix(bytes, bytes + n);
  // As cut, the tensors reach past the end; with the tensor count set to 0 the same bytes load cleanly
  // (metadata only), so mutations there can produce clean loads too.
  std::vector<std::byte> meta_only = prefix;
  std::memset(meta_only.data() + 8, 0, 8);
  REQUIRE(GgufFile::from_bytes(meta_only).meta().size() == f.meta().size());
  const Regions r = regions_of(f, prefix);
  const FuzzStats a = fuzz("real model prefix", prefix, r, kRealVariants / 2, seed);
  const FuzzStats b = fuzz("real model metadata only", meta_only, r, kRealVariants / 2, seed + 1);
  WARN("real model metadata region (" << n << " bytes, seed " << seed << "): " << a.clean + b.clean
                                      << " clean loads, " << a.errors + b.errors << " errors");
  CHECK(a.errors > a.clean);  // mostly the tensors still reach past the cut
  CHECK(b.clean > 0);
}

TEST_CASE("GGUF fuzz: the real model truncated at random offsets across the whole file", "[io][gguf][fuzz][model]") {
  const auto path = real_model();
  if (!path) return;
  const uint64_t seed = fuzz_seed();
  size_t size = 0, data_at = 0;
  std::vector<std::byte> prefix;  // header, metadata, tensor infos
  {
    const GgufFile f = GgufFile::open(*path);
    size = f.size_bytes();
    data_at = f.data_offset();
    const std::byte* bytes = f.tensors().front().data - data_at;
    prefix.assign(bytes, bytes + data_at);
  }
  // Offsets uniform over the file (so nearly all cut the tensor data, as an interrupted download does),
  // taken longest first: one copy of the file is shrunk step by step with ftruncate, and each step opened
  // the way a user's file is, mapped, with its real size. Copying ~100 MB per variant instead would take
  // minutes. Reads past the end fault there only a page beyond it, so cuts inside the metadata are also
  // parsed from an exact-size heap copy, where ASan sees a read even one byte past the end.
  std::mt19937_64 g(seed);
  std::vector<size_t> cuts(kRealTruncations);
  for (size_t& c : cuts) c = g() % size;
  std::sort(cuts.begin(), cuts.end(), std::greater<>());
  const std::string copy = (std::filesystem::temp_directory_path() /
                            ("tessera_test_gguf_fuzz_" + std::to_string(::getpid()) + ".gguf")).string();
  std::filesystem::copy_file(*path, copy, std::filesystem::copy_options::overwrite_existing);
  struct Remove {
    const std::string& p;
    ~Remove() { std::filesystem::remove(p); }
  } remove_copy{copy};

  int past_data = 0;
  for (size_t i = 0; i < cuts.size(); ++i) {
    const size_t cut = cuts[i];
    std::snprintf(g_current, sizeof(g_current), "real model cut at byte %zu, TESSERA_FUZZ_SEED=%llu, variant %zu",
                  cut, static_cast<unsigned long long>(seed), i);
    std::filesystem::resize_file(copy, cut);
    auto expect_error = [&](auto&& load, const std::string& name) {
      try {
        (void)load();
        FAIL(g_current << ": a truncated file loaded");
      } catch (const Error& e) {
        const std::string msg = e.what();
        if (msg.rfind(name + ": ", 0) != 0 || msg.find(" at byte ") == std::string::npos)
          FAIL(g_current << ": the Error does not name the file and a byte offset: " << msg);
        // With every tensor info present, the one to blame is a tensor that reaches past the end.
        if (cut >= data_at && msg.find("past the end of the file") == std::string::npos)
          FAIL(g_current << ": the Error does not say the data reaches past the end: " << msg);
      } catch (const std::exception& e) {
        FAIL(g_current << ": " << typeid(e).name() << " instead of tessera::Error: " << e.what());
      }
    };
    expect_error([&] { return GgufFile::open(copy); }, copy);
    if (cut < data_at) {
      expect_error([&] { return GgufFile::from_bytes({prefix.begin(), prefix.begin() + cut}, kName); }, kName);
    } else {
      ++past_data;
    }
  }
  WARN("real model (" << size << " bytes, seed " << seed << "): " << cuts.size() << " truncations, "
                      << past_data << " of them in the tensor data");
  CHECK(past_data > static_cast<int>(cuts.size()) * 9 / 10);
}
