// Attention from scratch with tessera's blocks: project a toy sequence to
// Q, K, V with nn::linear, rotate Q and K with RoPE, run causal grouped-query
// attention, and check the SIMD result against the scalar reference.
#include <cmath>
#include <cstdio>
#include <random>

#include "tessera/backend/scalar/attention.hpp"
#include "tessera/nn/blocks.hpp"
#include "tessera/nn/linear.hpp"

using namespace tessera;

int main() {
  const int64_t n_tokens = 6, n_embd = 32, n_heads = 4, n_kv_heads = 2, head_dim = 8;
  std::mt19937 rng(0);
  std::normal_distribution<float> normal(0.f, 0.5f);
  auto randomize = [&](auto& t) { for (auto& v : t.span()) v = normal(rng); };

  Tensor<float, 2> x({n_tokens, n_embd}), wq({n_heads * head_dim, n_embd}), wk({n_kv_heads * head_dim, n_embd}),
      wv({n_kv_heads * head_dim, n_embd});
  randomize(x), randomize(wq), randomize(wk), randomize(wv);
  auto weight = [](const Tensor<float, 2>& w) {
    return nn::Weight{GgmlType::f32, reinterpret_cast<const std::byte*>(w.data()), w.dim(0), w.dim(1)};
  };

  // Q = x Wq^T, K = x Wk^T, V = x Wv^T
  nn::LinearWorkspace ws(n_tokens, n_embd);
  Tensor<float, 2> q({n_tokens, n_heads * head_dim}), k({n_tokens, n_kv_heads * head_dim}), v(k.shape());
  nn::linear(weight(wq), x.view(), q.view(), ws);
  nn::linear(weight(wk), x.view(), k.view(), ws);
  nn::linear(weight(wv), x.view(), v.view(), ws);

  // Split heads (views, no copies) and rotate by position.
  auto q3 = q.view().reshape<3>({n_tokens, n_heads, head_dim});
  auto k3 = k.view().reshape<3>({n_tokens, n_kv_heads, head_dim});
  auto v3 = v.view().reshape<3>({n_tokens, n_kv_heads, head_dim});
  const std::vector<int32_t> pos = {0, 1, 2, 3, 4, 5};
  const RopeParams rope{static_cast<int>(head_dim), 10000.f, 1.f, RopeStyle::neox};
  nn::rope(q3, pos, rope);
  nn::rope(k3, pos, rope);

  // softmax(Q K^T / sqrt(d)) V, causal; query heads 0-1 share KV head 0, heads 2-3 KV head 1.
  Tensor<float, 3> out({n_tokens, n_heads, head_dim}), ref(out.shape());
  std::vector<float> scratch(backend::scalar::attention_scratch_size(n_tokens, num_threads()));
  const float scale = 1.f / std::sqrt(static_cast<float>(head_dim));
  nn::attention_causal(q3, k3, v3, 0, scale, out.view(), scratch);
  backend::scalar::attention_causal(q3, k3, v3, 0, scale, ref.view(), scratch);

  double max_diff = 0;
  for (int64_t i = 0; i < out.size(); ++i) max_diff = std::max(max_diff, double(std::fabs(out.data()[i] - ref.data()[i])));
  std::printf("attention: %lld tokens, %lld query heads over %lld KV heads, head_dim %lld\n", (long long)n_tokens,
              (long long)n_heads, (long long)n_kv_heads, (long long)head_dim);
  std::printf("token 0 attends only to itself: out[0, head 0] = v[0, kv 0]? %s\n",
              std::fabs(out(0, 0, 0) - v3(0, 0, 0)) < 1e-5f ? "yes" : "no");
  std::printf("%s backend vs scalar reference: max |diff| = %.2e\n", backend::Default::name, max_diff);
  return max_diff < 1e-4 ? 0 : 1;
}
