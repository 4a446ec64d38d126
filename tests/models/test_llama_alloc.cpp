// The decode loop allocates nothing: every buffer is sized when the context is
// made.  This program replaces the global operator new to count calls, runs
// warm-up steps, then requires zero allocations over decode steps of the real
// model, for each cache that promises it (static, sliding, paged within its
// reserved blocks), and with f32 and q8_0 storage.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <new>

#include "../test_models.hpp"
#include "tessera/models/llama_context.hpp"

namespace {
std::atomic<long> g_news{0};
}  // namespace

#if !defined(__SANITIZE_ADDRESS__)  // ASan owns operator new; the sanitizer build skips this test
// g++ 12 flags free() of operator new's memory even when the replacement
// itself got it from malloc (which is the case here).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
// Tensors and caches use the aligned forms.
void* operator new(std::size_t n, std::align_val_t a) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  const auto al = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#endif

using namespace tessera;

TEST_CASE("SmolLM2 decode steps allocate nothing", "[model][alloc]") {
#if defined(__SANITIZE_ADDRESS__)
  WARN("skipped under AddressSanitizer, which replaces operator new itself");
  return;
#endif
  const auto path = test::find_test_model("SmolLM2-135M-Instruct.Q4_1.gguf");
  if (!path) {
    WARN("skipped: SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/fetch-model)");
    return;
  }
  const auto model = models::LlamaModel::load(*path);
  for (const char* spec : {"static", "sliding:64", "paged:16"})
    for (const char* type : {"f32", "q8_0"}) {
      INFO(spec << " " << type);
      const long at_start = g_news.load();
      models::LlamaContext ctx(model, 256, 32, kv::parse_kv_spec(spec, kv::parse_kv_type(type)));
      REQUIRE(g_news.load() > at_start);  // the counter sees the context's buffers being made
      const std::vector<int32_t> prompt = {1, 504, 3458, 282, 4649, 314, 253};
      auto logits = ctx.eval(prompt);
      int32_t t = 0;
      auto step = [&] {
        t = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        logits = ctx.eval(std::span<const int32_t>(&t, 1));
      };
      for (int i = 0; i < 3; ++i) step();  // warm-up: OpenMP teams, first touches
      const long before = g_news.load();
      for (int i = 0; i < 20; ++i) step();  // crosses paged block boundaries (positions 10..30)
      const long allocations = g_news.load() - before;
      REQUIRE(allocations == 0);
    }
}
