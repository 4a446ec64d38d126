/// \file
/// Mixture-of-experts feed-forward: a router picks k of E SwiGLU experts per
/// token, their outputs are summed with the router's weights, and an optional
/// shared expert, gated by a sigmoid, is added for every token (Qwen2-MoE).
///
///   p = softmax(Wr x)                 [E]
///   S = top-k(p)                      ties: the lower expert index
///   w_e = p_e (/ sum_S p when renormalising)
///   out = sum_{e in S} w_e down_e(silu(gate_e x) * up_e x)  (+ sigmoid(ws . x) shared(x))
///
/// Tokens are grouped by expert: each chosen expert runs once, as a matrix
/// product over the rows routed to it, so a decode step reads only the k
/// chosen experts' weights and a prefill reads each chosen expert once.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/blocks.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/nn/weight.hpp"

namespace tessera::nn {

/// One MoE block's weights.  The experts' matrices are stacked: gate and up
/// [n_expert * n_ff, n_embd] (expert e's rows at e * n_ff), down
/// [n_expert * n_embd, n_ff].  The shared expert is absent when sh_up is empty.
struct MoeWeights {
  Weight router;  ///< [n_expert, n_embd]
  ///@{
  /// The routed experts, stacked (see the struct comment).
  Weight gate, up, down;
  ///@}
  int n_expert = 0;  ///< experts E
  int n_used = 0;  ///< experts per token k
  bool norm_topk = true;  ///< renormalise the k weights to sum to 1
  ///@{
  /// Shared expert: sh_gate and sh_up [n_ff_sh, n_embd], sh_down [n_embd, n_ff_sh]; empty when none.
  Weight sh_gate, sh_up, sh_down;
  ///@}
  std::span<const float> sh_router;  ///< [n_embd]: the shared expert's output times sigmoid(sh_router . x)

  /// Hidden width of one routed expert.
  int64_t n_ff() const { return n_expert > 0 ? gate.n_out / n_expert : 0; }
  /// Expert e's matrix of a stacked weight of `per` rows per expert.
  static Weight expert(const Weight& stacked, int e, int64_t per) { return stacked.rows(e * per, per); }
};

/// Scratch of moe() for up to `rows` tokens, allocated once (decode allocates nothing).
struct MoeWorkspace {
  ///@{
  /// Router logits [rows, n_expert]; gathered inputs and expert outputs [rows, n_embd];
  /// the experts' halves [rows, max(n_ff, n_ff_sh)].
  Tensor<float, 2> logits, xe, ye, ge, ue;
  ///@}
  std::vector<int32_t> choice;  ///< [rows * k]: the chosen experts of each row
  std::vector<float> weight;    ///< [rows * k]: their weights
  std::vector<int32_t> routed;  ///< rows routed to the current expert
  std::vector<float> gate_sh;   ///< [rows]: the shared expert's sigmoid gates
  LinearWorkspace ws;           ///< scratch of the products

  MoeWorkspace() = default;
  /// For up to rows tokens of width n_embd, E experts of k, hidden widths n_ff (routed) and n_ff_sh (shared, or 0).
  MoeWorkspace(int64_t rows, int64_t n_embd, int n_expert, int k, int64_t n_ff, int64_t n_ff_sh)
      : logits({rows, n_expert}), xe({rows, n_embd}), ye({rows, n_embd}), ge({rows, std::max(n_ff, n_ff_sh)}),
        ue({rows, std::max(n_ff, n_ff_sh)}), choice(static_cast<size_t>(rows * k)), weight(static_cast<size_t>(rows * k)),
        gate_sh(static_cast<size_t>(rows)), ws(rows, std::max(n_embd, std::max(n_ff, n_ff_sh))) {
    routed.reserve(static_cast<size_t>(rows));
  }
};

namespace detail {
// The k largest of p (lower index first on ties) into idx, in decreasing order.
inline void top_k(std::span<const float> p, int k, int32_t* idx) {
  for (int j = 0; j < k; ++j) idx[j] = -1;
  for (int32_t e = 0; e < static_cast<int32_t>(p.size()); ++e) {
    int j = k;  // the slot e takes: after every kept value >= it
    while (j > 0 && (idx[j - 1] < 0 || p[static_cast<size_t>(e)] > p[static_cast<size_t>(idx[j - 1])])) --j;
    if (j == k) continue;
    for (int i = k - 1; i > j; --i) idx[i] = idx[i - 1];
    idx[j] = e;
  }
}
}  // namespace detail

/// out [T, n_embd] = the MoE block of x [T, n_embd] (see the file comment).
/// ws sized for at least T rows.  O(T k n_ff n_embd) plus the shared expert.
inline void moe(const MoeWeights& w, TensorView<const float, 2> x, TensorView<float, 2> out, MoeWorkspace& ws) {
  const int64_t T = x.dim(0), D = x.dim(1), F = w.n_ff(), E = w.n_expert, k = w.n_used;
  TESSERA_CHECK(out.shape() == x.shape(), "moe: x ", shape_str(x.shape()), " but out ", shape_str(out.shape()));
  check(E > 0 && k > 0 && k <= E && w.router.n_out == E && w.router.n_in == D && w.gate.n_out == E * F &&
            w.up.n_out == E * F && w.down.n_out == E * D && w.down.n_in == F,
        "moe: router [", w.router.n_out, ", ", w.router.n_in, "], experts ", E, " x ", F, " for inputs of ", D);
  check(ws.logits.dim(0) >= T && ws.logits.dim(1) == E && ws.xe.dim(1) == D && ws.ge.dim(1) >= F &&
            ws.choice.size() >= static_cast<size_t>(T * k),
        "moe: workspace too small for ", T, " rows of ", D, " over ", E, " experts");
  // Route: softmax over the experts, top-k, weights (renormalised or not).
  const auto logits = ws.logits.narrow(0, 0, T);
  linear(w.router, x, logits, ws.ws);
  for (int64_t t = 0; t < T; ++t) {
    auto row = logits.row(t);
    const float mx = *std::max_element(row.begin(), row.end());
    float sum = 0.f;
    for (float& v : row) sum += (v = std::exp(v - mx));
    for (float& v : row) v /= sum;
    int32_t* sel = &ws.choice[static_cast<size_t>(t * k)];
    detail::top_k(row, static_cast<int>(k), sel);
    float* wt = &ws.weight[static_cast<size_t>(t * k)];
    float chosen = 0.f;
    for (int64_t j = 0; j < k; ++j) chosen += (wt[j] = row[static_cast<size_t>(sel[j])]);
    if (w.norm_topk)
      for (int64_t j = 0; j < k; ++j) wt[j] /= chosen;
  }
  for (int64_t t = 0; t < T; ++t) std::fill(out.row(t).begin(), out.row(t).end(), 0.f);
  // Each expert once, over the rows routed to it.
  for (int e = 0; e < E; ++e) {
    ws.routed.clear();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j)
        if (ws.choice[static_cast<size_t>(t * k + j)] == e) ws.routed.push_back(static_cast<int32_t>(t * k + j));
    if (ws.routed.empty()) continue;
    const auto n = static_cast<int64_t>(ws.routed.size());
    const auto xe = ws.xe.narrow(0, 0, n), ye = ws.ye.narrow(0, 0, n);
    const auto ge = ws.ge.narrow(0, 0, n).narrow(1, 0, F), ue = ws.ue.narrow(0, 0, n).narrow(1, 0, F);
    for (int64_t i = 0; i < n; ++i) {
      const auto src = x.row(ws.routed[static_cast<size_t>(i)] / k);
      std::copy(src.begin(), src.end(), xe.row(i).begin());
    }
    linear(MoeWeights::expert(w.gate, e, F), xe, ge, ws.ws);
    linear(MoeWeights::expert(w.up, e, F), xe, ue, ws.ws);
    swiglu(ge, ue, ge);
    linear(MoeWeights::expert(w.down, e, D), ge, ye, ws.ws);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t slot = ws.routed[static_cast<size_t>(i)];
      const float g = ws.weight[static_cast<size_t>(slot)];
      auto dst = out.row(slot / k);
      const auto y = ye.row(i);
      for (int64_t d = 0; d < D; ++d) dst[static_cast<size_t>(d)] += g * y[static_cast<size_t>(d)];
    }
  }
  if (w.sh_up.n_out == 0) return;
  // Shared expert, every row, gated by sigmoid(sh_router . x).
  const int64_t Fs = w.sh_up.n_out;
  check(w.sh_gate.n_out == Fs && w.sh_down.n_out == D && w.sh_down.n_in == Fs &&
            static_cast<int64_t>(w.sh_router.size()) == D && ws.ge.dim(1) >= Fs,
        "moe: shared expert of ", Fs, " for inputs of ", D);
  const auto ge = ws.ge.narrow(0, 0, T).narrow(1, 0, Fs), ue = ws.ue.narrow(0, 0, T).narrow(1, 0, Fs);
  const auto ye = ws.ye.narrow(0, 0, T);
  linear(w.sh_gate, x, ge, ws.ws);
  linear(w.sh_up, x, ue, ws.ws);
  swiglu(ge, ue, ge);
  linear(w.sh_down, ge, ye, ws.ws);
  for (int64_t t = 0; t < T; ++t) {
    const auto xr = x.row(t);
    float dot = 0.f;
    for (int64_t d = 0; d < D; ++d) dot += xr[static_cast<size_t>(d)] * w.sh_router[static_cast<size_t>(d)];
    const float g = 1.f / (1.f + std::exp(-dot));
    auto dst = out.row(t);
    const auto y = ye.row(t);
    for (int64_t d = 0; d < D; ++d) dst[static_cast<size_t>(d)] += g * y[static_cast<size_t>(d)];
  }
}

}  // namespace tessera::nn
