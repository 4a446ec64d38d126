/// \file
/// One running sequence of a llama model on a GPU: the weights uploaded once in
/// their GGUF types, the KV cache on the device (f16 or q8_0; contiguous or
/// paged through a block table), every activation buffer and workspace sized at
/// construction, and the decode step captured once as a CUDA graph and replayed.
/// The same public shape as LlamaContext (eval(tokens) -> logits of the last
/// token), so runtime::generate and the samplers run it unchanged; greedy
/// decoding takes the argmax on the device and downloads 4 bytes a step.
///
/// Needs the tessera::cuda library (-DTESSERA_CUDA=ON or -DTESSERA_HIP=ON).
/// The forward pass is LlamaContext's, kernel for kernel: embedding, per layer
/// rms_norm, Q|K|V projection, RoPE, K/V stored into the cache, attention,
/// output projection + residual, rms_norm, gate|up projection, SwiGLU, down
/// projection + residual; then the output norm and head on the last row.  The
/// small steps run fused (CudaContextOptions::fuse_norm, fuse_swiglu,
/// fuse_rope): each residual add with the norm after it and the next GEMV's
/// activation quantizer, SwiGLU with the down projection's quantizer, RoPE
/// with the cache store.
///   decode (1 token):  GEMV (M = 1, int8 activations for quantized weights),
///                      flash-decoding over the cache;
///   2..8 tokens:       GEMV with M = T;
///   prefill (> 8):     dequantize-to-bf16 GEMM, flash attention over the cache
///                      (f16 cache) or per-row flash-decoding (q8_0 cache).
#pragma once

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/backend/cuda.hpp"
#include "tessera/models/llama.hpp"
#include "tessera/nn/weight.hpp"

namespace tessera::models {

/// How a LlamaCudaContext keeps its cache and runs its decode step.
struct CudaContextOptions {
  cuda::KvElem kv = cuda::KvElem::f16;  ///< f16 or q8_0 (head_dim % 32 == 0)
  bool paged = false;  ///< the cache as pages of page_size rows through a block table
  int page_size = 64;  ///< rows per page when paged
  bool graph = true;  ///< capture the decode step once and replay it
  bool fuse = true;  ///< one GEMV over Wq|Wk|Wv and one over Wgate|Wup where their types agree
  bool split = true;  ///< q4_0 / q8_0 / q4_K / q6_K matrices repacked at upload (cuda::SplitWeight)
  ///@{
  /// The small kernels fused (the same bits either way; off: the separate
  /// kernels, for measurement): the residual add, rms_norm and the next GEMV's
  /// activation quantizer (cuda::add_rms_norm); SwiGLU and the down
  /// projection's quantizer (cuda::swiglu_quant); RoPE of Q and K and the
  /// cache store (cuda::rope_kv_store).  All three: 11 launches a layer, not 18.
  bool fuse_norm = true, fuse_swiglu = true, fuse_rope = true;
  ///@}
  int device = 0;  ///< index of the GPU to run on
};

/// A llama model's single sequence on a GPU.  Construction uploads the
/// weights (O(model bytes), once) and allocates everything eval() uses; Error
/// when the model does not fit the device's free memory, naming the sizes.
class LlamaCudaContext {
 public:
  /// n_ctx: most positions (0: the training context, at most 4096); n_batch:
  /// tokens per forward pass; n_layers: run only the first n (0: all), then the
  /// output norm and head — the early exit LlamaContext offers, used to compare
  /// the hidden state after every layer with the CPU's.
  explicit LlamaCudaContext(std::shared_ptr<const LlamaModel> model, int n_ctx = 0, int n_batch = 512,
                            CudaContextOptions opt = {}, int n_layers = 0)
      : model_(std::move(model)), c_(model_->config()), opt_(opt), s_(check_device(opt.device)) {
    n_ctx_ = n_ctx > 0 ? n_ctx : std::min(c_.n_ctx_train, 4096);
    n_batch_ = std::max(1, std::min(n_batch, n_ctx_));
    check(n_layers >= 0 && n_layers <= c_.n_layers, "LlamaCudaContext: ", n_layers, " layers of a model with ",
          c_.n_layers);
    n_layers_ = n_layers > 0 ? n_layers : c_.n_layers;
    check(c_.family == Family::llama && c_.n_expert == 0, "LlamaCudaContext: the GPU runs dense llama-family "
          "models; ", c_.n_expert > 0 ? "mixture-of-experts" : family_name(c_.family), " models run on the CPU");
    check(c_.head_dim == 64 || c_.head_dim == 128 || c_.head_dim == 256, "LlamaCudaContext: head_dim ", c_.head_dim,
          " (the GPU attention kernels take 64, 128 or 256)");
    check(opt_.kv == cuda::KvElem::f16 || opt_.kv == cuda::KvElem::q8_0,
          "LlamaCudaContext: the GPU cache stores f16 or q8_0 keys and values");
    check(!opt_.paged || opt_.page_size > 0, "LlamaCudaContext: page_size ", opt_.page_size);
    check(c_.rope.n_dims == c_.head_dim, "LlamaCudaContext: partial RoPE (", c_.rope.n_dims, " of ", c_.head_dim,
          " dims) is not on the GPU yet");
    check_memory();
    upload_weights();
    allocate();
  }

  LlamaCudaContext(const LlamaCudaContext&) = delete;
  LlamaCudaContext& operator=(const LlamaCudaContext&) = delete;

  /// The model this context runs (the host weights it uploaded).
  const LlamaModel& model() const { return *model_; }
  /// Most positions the context holds; eval() past it is an Error.
  int n_ctx() const { return n_ctx_; }
  /// Tokens per forward pass: longer inputs run as several passes.
  int n_batch() const { return n_batch_; }
  /// Layers each forward pass runs (all, unless an early exit was asked for).
  int n_layers() const { return n_layers_; }
  /// Tokens already in the cache; the next token goes at this position.
  int n_past() const { return n_past_; }
  /// Forgets everything after position n (n <= n_past): later tokens overwrite those rows.
  void truncate(int n) {
    check(n >= 0 && n <= n_past_, "LlamaCudaContext::truncate(", n, ") with ", n_past_, " positions cached");
    n_past_ = n;
  }
  /// Forgets every token; device memory stays allocated.
  void reset() { n_past_ = 0; }
  /// Device bytes of the uploaded weights.
  size_t weight_bytes() const { return weight_bytes_; }
  /// Device bytes of the KV cache.
  size_t kv_bytes() const { return kv_bytes_; }
  /// Device bytes of everything: weights, KV cache and buffers.
  size_t device_bytes() const { return weight_bytes_ + kv_bytes_ + buffer_bytes_; }
  /// "NVIDIA H200, f16 KV contiguous, decode graph": for the CLI's end-of-run line.
  std::string describe() const {
    return info_.name + ", " + (opt_.kv == cuda::KvElem::f16 ? "f16" : "q8_0") + " KV " +
           (opt_.paged ? "paged (" + std::to_string(opt_.page_size) + "-row pages)" : std::string("contiguous")) +
           (opt_.graph ? ", decode graph" : ", no graph");
  }

  /// Appends tokens at positions n_past.. and returns the logits after the last
  /// one [n_vocab] (downloaded; valid until the next eval).  Error when the
  /// context cannot hold them or a token id is outside the vocabulary.
  std::span<const float> eval(std::span<const int32_t> tokens) {
    run(tokens);
    cuda::detail::copy_to_host_async(s_, logits_host_.data(), logits_.data(), logits_host_.size() * sizeof(float));
    finish();
    return {logits_host_.data(), logits_host_.size()};
  }

  /// Appends tokens like eval() and returns the argmax of the last logits,
  /// computed on the device (lowest id on ties, NaN never wins: Sampler's
  /// greedy rule); only 4 bytes come back.
  int32_t eval_greedy(std::span<const int32_t> tokens) {
    run(tokens);
    cuda::detail::copy_to_host_async(s_, io_.data() + kNext, next_.data(), sizeof(int32_t));
    finish();
    return io_[kNext];
  }

 private:
  // A matrix on the device, viewed (not owned): GGUF blocks with rows packed,
  // or (is_split) the split layout, data holding the quants.
  struct DevLinear {
    GgmlType type = GgmlType::f32;
    const std::byte* data = nullptr;
    int64_t n_out = 0, n_in = 0;
    bool is_split = false;
    cuda::SplitWeight sw{};
  };
  struct DevLayer {
    cuda::DeviceTensor<float, 1> attn_norm, ffn_norm;
    DevLinear wq, wk, wv, wo, gate, up, down;
    DevLinear qkv, gate_up;  // fused views (data null when the parts' types differ)
  };

  // Pinned host slots of the per-step inputs and outputs.
  static constexpr size_t kNext = 0, kFault = 1, kDecode = 2;  // decode inputs: token, position, length

  static int check_device(int device) {
    const int n = cuda::device_count();
    check(n > 0, "LlamaCudaContext: no GPU is visible (cudaGetDeviceCount found none)");
    check(device >= 0 && device < n, "LlamaCudaContext: GPU ", device, " of ", n);
    return device;
  }

  size_t kv_row_bytes() const {
    return static_cast<size_t>(c_.n_kv_heads) *
           (opt_.kv == cuda::KvElem::q8_0 ? static_cast<size_t>(c_.head_dim / 32) * 34 : c_.head_dim * 2u);
  }
  int64_t kv_rows() const {
    return opt_.paged ? (n_ctx_ + opt_.page_size - 1) / opt_.page_size * int64_t{opt_.page_size} : n_ctx_;
  }

  template <class F>
  static void typed(const DevLinear& w, F&& f) {
    nn::visit_type(w.type, [&]<class W>() {
      if constexpr (cuda::DeviceWeight<W>)
        f(cuda::DeviceView<const W, 2>(reinterpret_cast<const W*>(w.data), {w.n_out, w.n_in / cuda::block_elems<W>}));
      else
        fail("LlamaCudaContext: the GPU has no kernels for ", quant_traits<W>::name, " weights (the CPU runs them)");
    });
  }

  // Weights, cache and the largest buffers against the device's free memory.
  void check_memory() {
    info_ = cuda::device_info(opt_.device);
    size_t w = model_->token_embd().n_bytes() +
               (tied() && !splits(model_->output().type) ? 0 : model_->output().n_bytes());
    for (int l = 0; l < n_layers_; ++l)
      for (const nn::Weight* x : layer_weights(l)) w += x->n_bytes();
    const size_t kv = 2 * static_cast<size_t>(n_layers_) * static_cast<size_t>(kv_rows()) * kv_row_bytes();
    const size_t free = cuda::memory_info(opt_.device).free_bytes;
    const size_t slack = size_t{256} << 20;  // buffers, workspaces, the runtime's own
    check(w + kv + slack <= free, "the model does not fit GPU ", opt_.device, " (", info_.name, "): weights ",
          w >> 20, " MiB + KV cache ", kv >> 20, " MiB (", n_ctx_, " positions) + ~256 MiB of buffers, but ",
          free >> 20, " MiB are free (a smaller -c or a q8_0 cache needs less)");
  }

  bool tied() const { return model_->output().data == model_->token_embd().data; }

  std::vector<const nn::Weight*> layer_weights(int l) const {
    const LlamaLayer& L = model_->layers()[static_cast<size_t>(l)];
    return {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
  }

  // Uploads parts into one buffer (rows of the fused matrix in order) when
  // `fuse` and every part has the same type, else one buffer each.
  std::vector<DevLinear> upload_group(std::vector<const nn::Weight*> parts, bool fuse, DevLinear* fused) {
    bool same = fuse;
    for (const nn::Weight* p : parts) same = same && p->type == parts[0]->type && p->n_in == parts[0]->n_in;
    std::vector<DevLinear> out;
    if (same && splits(parts[0]->type)) {
      const DevLinear all = upload_split(parts);
      int64_t r0 = 0;
      for (const nn::Weight* p : parts) {
        const cuda::SplitWeight sw = all.sw.rows(r0, p->n_out);
        out.push_back({p->type, sw.qs, p->n_out, p->n_in, true, sw});
        r0 += p->n_out;
      }
      *fused = all;
    } else if (same) {
      size_t total = 0;
      for (const nn::Weight* p : parts) total += p->n_bytes();
      auto& buf = owned_.emplace_back(std::array<int64_t, 1>{static_cast<int64_t>(total)}, "model weights");
      size_t off = 0;
      int64_t rows = 0;
      for (const nn::Weight* p : parts) {
        cuda::detail::copy_to_device(s_, buf.data() + off, p->data, p->n_bytes());
        out.push_back({p->type, buf.data() + off, p->n_out, p->n_in});
        off += p->n_bytes();
        rows += p->n_out;
      }
      *fused = {parts[0]->type, buf.data(), rows, parts[0]->n_in};
    } else {
      for (const nn::Weight* p : parts) out.push_back(upload(*p));
      *fused = {};
    }
    return out;
  }

  bool splits(GgmlType t) const { return opt_.split && cuda::SplitWeight::supports(t); }

  // The rows of parts (one type, one width) as one matrix in the split layout.
  DevLinear upload_split(const std::vector<const nn::Weight*>& parts) {
    const GgmlType t = parts[0]->type;
    const int64_t k = parts[0]->n_in;
    int64_t n = 0;
    for (const nn::Weight* p : parts) n += p->n_out;
    std::vector<std::byte> host(static_cast<size_t>(cuda::SplitWeight::bytes(t, n, k)));
    int64_t r0 = 0;
    for (const nn::Weight* p : parts) {
      cuda::split_rows(t, p->data, p->n_out, k, host.data(), n, r0);
      r0 += p->n_out;
    }
    auto& buf = owned_.emplace_back(std::array<int64_t, 1>{static_cast<int64_t>(host.size())}, "model weights");
    cuda::detail::copy_to_device(s_, buf.data(), host.data(), host.size());
    return {t, buf.data(), n, k, true, cuda::SplitWeight::at(t, buf.data(), n, k)};
  }

  DevLinear upload(const nn::Weight& w) {
    if (splits(w.type)) return upload_split({&w});
    auto& buf = owned_.emplace_back(std::array<int64_t, 1>{static_cast<int64_t>(w.n_bytes())}, "model weights");
    cuda::detail::copy_to_device(s_, buf.data(), w.data, w.n_bytes());
    return {w.type, buf.data(), w.n_out, w.n_in};
  }

  cuda::DeviceTensor<float, 1> upload_vector(std::span<const float> v) {
    return cuda::to_device<float, 1>(s_, v, {static_cast<int64_t>(v.size())});
  }

  void upload_weights() {
    {  // the embedding table stays in GGUF blocks: it is gathered by row, not multiplied
      const nn::Weight& e = model_->token_embd();
      auto& buf = owned_.emplace_back(std::array<int64_t, 1>{static_cast<int64_t>(e.n_bytes())}, "model weights");
      cuda::detail::copy_to_device(s_, buf.data(), e.data, e.n_bytes());
      embd_ = {e.type, buf.data(), e.n_out, e.n_in};
    }
    output_ = tied() && !splits(embd_.type) ? embd_ : upload(model_->output());
    output_norm_ = upload_vector(model_->output_norm());
    for (int l = 0; l < n_layers_; ++l) {
      const LlamaLayer& L = model_->layers()[static_cast<size_t>(l)];
      DevLayer d;
      d.attn_norm = upload_vector(L.attn_norm);
      d.ffn_norm = upload_vector(L.ffn_norm);
      auto qkv = upload_group({&L.wq, &L.wk, &L.wv}, opt_.fuse, &d.qkv);
      d.wq = qkv[0], d.wk = qkv[1], d.wv = qkv[2];
      auto gu = upload_group({&L.w_gate, &L.w_up}, opt_.fuse, &d.gate_up);
      d.gate = gu[0], d.up = gu[1];
      d.wo = upload(L.wo);
      d.down = upload(L.w_down);
      layers_.push_back(std::move(d));
    }
    for (const auto& b : owned_) weight_bytes_ += b.size_bytes();
  }

  void allocate() {
    const int64_t B = n_batch_, E = c_.n_embd, Q = c_.q_dim(), KV = c_.kv_dim(), F = c_.n_ff;
    auto f32 = [&](int64_t r, int64_t n) {
      buffer_bytes_ += static_cast<size_t>(r * n) * 4;
      return cuda::DeviceTensor<float, 2>({r, n}, "activations");
    };
    x_ = f32(B, E), xn_ = f32(B, E), tmp_ = f32(B, E), q_ = f32(B, Q), k_ = f32(B, KV), v_ = f32(B, KV);
    attn_ = f32(B, Q), gate_ = f32(B, F), up_ = f32(B, F);
    qkv1_ = f32(1, Q + 2 * KV), gu1_ = f32(1, 2 * F), logits_ = f32(1, c_.n_vocab);
    half_q_ = cuda::DeviceTensor<f16, 1>({B * Q}, "activations");
    half_o_ = cuda::DeviceTensor<f16, 1>({B * Q}, "activations");
    ints_ = cuda::DeviceTensor<int32_t, 1>({3 * B + 8}, "step inputs");
    next_ = cuda::DeviceTensor<int32_t, 1>({1}, "argmax");
    fault_ = cuda::DeviceTensor<int32_t, 1>({1}, "fault flag");
    cuda::detail::fill_bytes(s_, fault_.data(), 0, sizeof(int32_t));
    io_ = cuda::PinnedBuffer<int32_t>(kDecode + 3 + 3 * static_cast<size_t>(B));
    logits_host_ = cuda::PinnedBuffer<float>(static_cast<size_t>(c_.n_vocab));

    // Workspaces: the largest any call below asks for.
    size_t gemv_ws = 0, gemm_ws = 0;
    auto need = [&](const DevLinear& w, bool prefill) {
      if (!w.data) return;
      typed(w, [&]<class W>(cuda::DeviceView<const W, 2>) {
        gemv_ws = std::max(gemv_ws, cuda::gemv_workspace_bytes<W>(8 * w.n_in));
      });
      if (prefill && B > 8) gemm_ws = std::max(gemm_ws, cuda::gemm_workspace_bytes(B, w.n_out, w.n_in));
    };
    need(output_, false);
    for (const DevLayer& d : layers_) {
      for (const DevLinear* w : {&d.wq, &d.wk, &d.wv, &d.wo, &d.gate, &d.up, &d.down}) need(*w, true);
      need(d.qkv, false);
      need(d.gate_up, false);
    }
    gemv_ws_ = cuda::DeviceTensor<std::byte, 1>({static_cast<int64_t>(gemv_ws)}, "GEMV workspace");
    gemm_ws_ = cuda::DeviceTensor<std::byte, 1>({static_cast<int64_t>(gemm_ws)}, "GEMM workspace");
    const size_t attn_ws = cuda::decode_attention_workspace_bytes(kRowsPerAttention, c_.n_heads, c_.head_dim);
    attn_ws_ = cuda::DeviceTensor<std::byte, 1>({static_cast<int64_t>(attn_ws)}, "attention workspace");
    buffer_bytes_ += gemv_ws + gemm_ws + attn_ws;

    // The cache: per layer a K and a V array of kv_rows() rows.
    const auto bytes = static_cast<int64_t>(kv_rows() * static_cast<int64_t>(kv_row_bytes()));
    for (int l = 0; l < n_layers_; ++l) {
      kcache_.emplace_back(std::array<int64_t, 1>{bytes}, "KV cache");
      vcache_.emplace_back(std::array<int64_t, 1>{bytes}, "KV cache");
      // Zeros, so a row read before it is written (never, with the checks here) is a finite value.
      cuda::detail::fill_bytes(s_, kcache_.back().data(), 0, static_cast<size_t>(bytes));
      cuda::detail::fill_bytes(s_, vcache_.back().data(), 0, static_cast<size_t>(bytes));
      kv_bytes_ += 2 * static_cast<size_t>(bytes);
    }
    if (opt_.paged) {
      // One sequence owns every page; the table maps them in reverse so the
      // indirection is exercised (the layout a pool shared by sequences uses).
      const int64_t n_pages = kv_rows() / opt_.page_size;
      std::vector<int32_t> table(static_cast<size_t>(n_pages));
      for (int64_t i = 0; i < n_pages; ++i) table[static_cast<size_t>(i)] = static_cast<int32_t>(n_pages - 1 - i);
      table_ = cuda::to_device<int32_t, 1>(s_, std::span<const int32_t>(table), {n_pages});
    }
    s_.synchronize();
  }

  cuda::DeviceKv kv_view(int l, const int32_t* seq_lens) const {
    cuda::DeviceKv kv;
    kv.elem = opt_.kv;
    kv.n_kv_heads = c_.n_kv_heads;
    kv.head_dim = c_.head_dim;
    kv.k = kcache_[static_cast<size_t>(l)].data();
    kv.v = vcache_[static_cast<size_t>(l)].data();
    kv.seq_lens = seq_lens;
    if (opt_.paged) {
      kv.block_table = table_.data();
      kv.page_size = opt_.page_size;
      kv.max_pages = table_.dim(0);
    } else {
      kv.max_keys = n_ctx_;
    }
    return kv;
  }

  // The same rows as kv_view(l), writable, for kv_store.
  cuda::DeviceKvRows kv_rows_view(int l) {
    const cuda::DeviceKv kv = kv_view(l, nullptr);
    return {kv.elem, kv.n_kv_heads, kv.head_dim, kcache_[static_cast<size_t>(l)].data(),
            vcache_[static_cast<size_t>(l)].data(), n_ctx_, kv.block_table, kv.page_size};
  }

  // x_quantized: a fused kernel left x's int8 copy in gemv_ws_ (M <= 8 only).
  void linear(const DevLinear& w, cuda::DeviceView<const float, 2> x, cuda::DeviceView<float, 2> y,
              bool x_quantized = false) {
    if (w.is_split) {
      if (x.dim(0) <= 8) cuda::gemv_split(s_, w.sw, x, y, gemv_ws_.view(), x_quantized);
      else cuda::gemm_split(s_, w.sw, x, y, gemm_ws_.view());
      return;
    }
    typed(w, [&]<class W>(cuda::DeviceView<const W, 2> wv) {
      if (x.dim(0) <= 8) cuda::gemv<W>(s_, wv, x, y, gemv_ws_.view(), x_quantized);
      else cuda::gemm<W>(s_, wv, x, y, gemm_ws_.view());
    });
  }

  // The activation format every matrix reading one input shares, or none when
  // they differ or one takes floats (then each GEMV quantizes for itself).
  static cuda::ActQuant shared_act(std::initializer_list<const DevLinear*> ws) {
    const cuda::ActQuant q = cuda::act_quant((*ws.begin())->type);
    for (const DevLinear* w : ws)
      if (cuda::act_quant(w->type) != q) return cuda::ActQuant::none;
    return q;
  }

  // x += dx (dx null: nothing to add), xn = rms_norm(x) * w.  With fuse_norm
  // one kernel, which for q != none writes xn's int8 copy for the next GEMVs
  // instead of its floats; returns whether it did (they pass x_quantized).
  bool norm(cuda::DeviceView<float, 2> x, const float* dx, const cuda::DeviceTensor<float, 1>& w,
            cuda::DeviceView<float, 2> xn, cuda::ActQuant q) {
    const cuda::DeviceView<const float, 2> d(dx, {dx ? x.dim(0) : 0, x.dim(1)});
    if (opt_.fuse_norm) {
      const bool quantized = q != cuda::ActQuant::none && x.dim(0) <= 8;
      cuda::add_rms_norm(s_, x, d, w.view(), c_.rms_eps, quantized ? cuda::DeviceView<float, 2>{} : xn,
                         quantized ? q : cuda::ActQuant::none, gemv_ws_.view());
      return quantized;
    }
    if (dx) cuda::add(s_, x, d, x);
    cuda::rms_norm(s_, x, w.view(), c_.rms_eps, xn);
    return false;
  }

  // out = silu(gate) * up; with fuse_swiglu its int8 copy for `down` instead
  // when that GEMV quantizes (returns whether it did).
  bool swiglu(cuda::DeviceView<float, 2> g, cuda::DeviceView<float, 2> u, const DevLinear& down) {
    const cuda::ActQuant q = cuda::act_quant(down.type);
    if (opt_.fuse_swiglu && q != cuda::ActQuant::none && g.dim(0) <= 8) {
      cuda::swiglu_quant(s_, g, u, {}, q, gemv_ws_.view());
      return true;
    }
    cuda::swiglu(s_, g, u, g);
    return false;
  }

  // RoPE of q and k and the cache store of k and v at positions pos.
  void rope_store(int l, cuda::DeviceView<float, 3> q, cuda::DeviceView<float, 3> k, cuda::DeviceView<float, 3> v,
                  cuda::DeviceView<const int32_t, 1> pos) {
    if (opt_.fuse_rope) {
      cuda::rope_kv_store(s_, q, k, v, pos, c_.rope, kv_rows_view(l), fault_.view());
      return;
    }
    cuda::rope(s_, q, pos, c_.rope);
    cuda::rope(s_, k, pos, c_.rope);
    cuda::kv_store(s_, k, v, pos, kv_rows_view(l), fault_.view());
  }

  static cuda::DeviceView<float, 2> rows(cuda::DeviceTensor<float, 2>& t, int64_t n) {
    return {t.data(), {n, t.dim(1)}};
  }

  void check_fits(std::span<const int32_t> tokens) const {
    check(!tokens.empty(), "eval: no tokens");
    check(n_past_ + static_cast<int64_t>(tokens.size()) <= n_ctx_, "context full: ", n_past_, " + ", tokens.size(),
          " tokens exceed the context of ", n_ctx_);
    for (int32_t t : tokens)
      check(t >= 0 && t < c_.n_vocab, "eval: token id ", t, " is outside the vocabulary of ", c_.n_vocab);
  }

  // Queues the forward pass of tokens (chunks of n_batch); the last chunk
  // leaves the logits of its last row in logits_ and their argmax in next_.
  void run(std::span<const int32_t> tokens) {
    check_fits(tokens);
    for (size_t i = 0; i < tokens.size(); i += static_cast<size_t>(n_batch_)) {
      const auto chunk = tokens.subspan(i, std::min(tokens.size() - i, static_cast<size_t>(n_batch_)));
      if (chunk.size() == 1) decode(chunk[0]);
      else prefill(chunk);
    }
  }

  // Waits for the queued work and the downloads; a cache write outside the
  // context (the device's only run-time check) becomes an Error here.
  void finish() {
    cuda::detail::copy_to_host_async(s_, io_.data() + kFault, fault_.data(), sizeof(int32_t));
    s_.synchronize();
    check(io_[kFault] == 0, "LlamaCudaContext: a key/value row fell outside the cache (position ", n_past_,
          " of ", n_ctx_, ")");
  }

  void decode(int32_t token) {
    io_[kDecode] = token;
    io_[kDecode + 1] = n_past_;
    io_[kDecode + 2] = n_past_ + 1;
    int32_t* in = ints_.data() + 3 * n_batch_;  // [token, position, keys]: what the graph reads
    cuda::detail::copy_to_device_async(s_, in, io_.data() + kDecode, 3 * sizeof(int32_t));
    // The first step runs eagerly (kernel modules load, device facts are
    // cached), the second is captured; every later one replays the capture.
    if (opt_.graph && warm_) {
      if (!graph_.ready()) {
        graph_.begin(s_);
        decode_body(in);
        graph_.end(s_);
      }
      graph_.launch(s_);
    } else {
      decode_body(in);
      warm_ = true;
    }
    ++n_past_;
  }

  void decode_body(int32_t* in) {
    const int64_t Q = c_.q_dim(), KV = c_.kv_dim(), F = c_.n_ff;
    const cuda::DeviceView<const int32_t, 1> id(in, {1}), pos(in + 1, {1});
    auto x = rows(x_, 1), xn = rows(xn_, 1), tmp = rows(tmp_, 1);
    typed(embd_, [&]<class W>(cuda::DeviceView<const W, 2> t) { cuda::embedding<W>(s_, t, id, x); });
    // The residual add of each block is folded into the norm after it: tmp
    // holds the last projection until then (null before the first layer).
    const float* pending = nullptr;
    for (int l = 0; l < n_layers_; ++l) {
      DevLayer& L = layers_[static_cast<size_t>(l)];
      cuda::DeviceView<float, 2> q, k, v;
      if (L.qkv.data) {
        const bool xq = norm(x, pending, L.attn_norm, xn, shared_act({&L.qkv}));
        linear(L.qkv, xn, qkv1_.view(), xq);
        q = {qkv1_.data(), {1, Q}};
        k = {qkv1_.data() + Q, {1, KV}};
        v = {qkv1_.data() + Q + KV, {1, KV}};
      } else {
        const bool xq = norm(x, pending, L.attn_norm, xn, shared_act({&L.wq, &L.wk, &L.wv}));
        q = rows(q_, 1);
        k = rows(k_, 1);
        v = rows(v_, 1);
        linear(L.wq, xn, q, xq);
        linear(L.wk, xn, k, xq);
        linear(L.wv, xn, v, xq);
      }
      attention_decode(l, q, k, v, pos, in + 2);
      linear(L.wo, rows(attn_, 1), tmp);
      cuda::DeviceView<float, 2> g, u;
      if (L.gate_up.data) {
        const bool xq = norm(x, tmp.data(), L.ffn_norm, xn, shared_act({&L.gate_up}));
        linear(L.gate_up, xn, gu1_.view(), xq);
        g = {gu1_.data(), {1, F}};
        u = {gu1_.data() + F, {1, F}};
      } else {
        const bool xq = norm(x, tmp.data(), L.ffn_norm, xn, shared_act({&L.gate, &L.up}));
        g = rows(gate_, 1);
        u = rows(up_, 1);
        linear(L.gate, xn, g, xq);
        linear(L.up, xn, u, xq);
      }
      const bool dq = swiglu(g, u, L.down);
      linear(L.down, g, tmp, dq);
      pending = tmp.data();
    }
    head(x, pending);
  }

  void attention_decode(int l, cuda::DeviceView<float, 2> q, cuda::DeviceView<float, 2> k,
                        cuda::DeviceView<float, 2> v, cuda::DeviceView<const int32_t, 1> pos, const int32_t* lens) {
    const int64_t H = c_.n_heads, G = c_.n_kv_heads, D = c_.head_dim, T = q.dim(0);
    rope_store(l, q.reshape<3>({T, H, D}), k.reshape<3>({T, G, D}), v.reshape<3>({T, G, D}), pos);
    cuda::decode_attention(s_, q.reshape<3>({T, H, D}), kv_view(l, lens), {cuda::DeviceMask::Kind::causal, 0},
                           scale(), rows(attn_, T).reshape<3>({T, H, D}), attn_ws_.view());
  }

  float scale() const { return 1.f / std::sqrt(static_cast<float>(c_.head_dim)); }

  // Output norm and head over one row h [1, n_embd] (after h += dh, the last
  // block's residual, unless dh is null); argmax into next_.
  void head(cuda::DeviceView<float, 2> h, const float* dh) {
    auto xn = rows(xn_, 1);
    const bool xq = norm(h, dh, output_norm_, xn, shared_act({&output_}));
    linear(output_, xn, logits_.view(), xq);
    cuda::argmax(s_, logits_.view(), next_.view());
  }

  void prefill(std::span<const int32_t> tokens) {
    const auto T = static_cast<int64_t>(tokens.size());
    const int64_t Q = c_.q_dim(), H = c_.n_heads, G = c_.n_kv_heads, D = c_.head_dim;
    // Inputs: ids [T], positions [T], and per row the keys it sees (p + 1).
    int32_t* staged = io_.data() + kDecode + 3;
    for (int64_t t = 0; t < T; ++t) {
      staged[t] = tokens[static_cast<size_t>(t)];
      staged[T + t] = n_past_ + static_cast<int32_t>(t);
      staged[2 * T + t] = n_past_ + static_cast<int32_t>(t) + 1;
    }
    cuda::detail::copy_to_device_async(s_, ints_.data(), staged, 3 * static_cast<size_t>(T) * sizeof(int32_t));
    const cuda::DeviceView<const int32_t, 1> id(ints_.data(), {T}), pos(ints_.data() + T, {T});
    const int32_t* lens = ints_.data() + 2 * T;
    auto x = rows(x_, T), xn = rows(xn_, T), tmp = rows(tmp_, T), q = rows(q_, T), k = rows(k_, T),
         v = rows(v_, T), attn = rows(attn_, T), g = rows(gate_, T), u = rows(up_, T);
    typed(embd_, [&]<class W>(cuda::DeviceView<const W, 2> t) { cuda::embedding<W>(s_, t, id, x); });
    const float* pending = nullptr;  // as in decode_body: the residual waits for the next norm
    for (int l = 0; l < n_layers_; ++l) {
      DevLayer& L = layers_[static_cast<size_t>(l)];
      const bool xq = norm(x, pending, L.attn_norm, xn, shared_act({&L.wq, &L.wk, &L.wv}));
      linear(L.wq, xn, q, xq);
      linear(L.wk, xn, k, xq);
      linear(L.wv, xn, v, xq);
      rope_store(l, q.reshape<3>({T, H, D}), k.reshape<3>({T, G, D}), v.reshape<3>({T, G, D}), pos);
      if (opt_.kv == cuda::KvElem::f16) {
        // Tensor-core flash attention over the cache: q and the output in f16.
        cuda::convert<f16>(s_, q.reshape<1>({T * Q}), cuda::DeviceView<f16, 1>(half_q_.data(), {T * Q}));
        const cuda::DeviceView<const f16, 4> qh(half_q_.data(), {1, T, H, D});
        cuda::flash_attention<f16>(s_, qh, kv_view(l, lens + T - 1), {cuda::DeviceMask::Kind::causal, 0}, scale(),
                                   n_past_, cuda::DeviceView<f16, 4>(half_o_.data(), {1, T, H, D}));
        cuda::convert<f16>(s_, cuda::DeviceView<const f16, 1>(half_o_.data(), {T * Q}), attn.reshape<1>({T * Q}));
      } else {
        // q8_0 keys: each row a query of its own over the shared rows (flash-decoding).
        for (int64_t r0 = 0; r0 < T; r0 += kRowsPerAttention) {
          const int64_t R = std::min<int64_t>(kRowsPerAttention, T - r0);
          cuda::DeviceKv kv = kv_view(l, lens + r0);
          kv.shared_rows = true;
          cuda::decode_attention(s_, cuda::DeviceView<const float, 3>(q.data() + r0 * Q, {R, H, D}), kv,
                                 {cuda::DeviceMask::Kind::causal, 0}, scale(),
                                 cuda::DeviceView<float, 3>(attn.data() + r0 * Q, {R, H, D}), attn_ws_.view());
        }
      }
      linear(L.wo, attn, tmp);
      const bool fq = norm(x, tmp.data(), L.ffn_norm, xn, shared_act({&L.gate, &L.up}));
      linear(L.gate, xn, g, fq);
      linear(L.up, xn, u, fq);
      const bool dq = swiglu(g, u, L.down);
      linear(L.down, g, tmp, dq);
      pending = tmp.data();
    }
    // Only the last row goes on: its residual is added by the head's norm.
    const int64_t last = (T - 1) * c_.n_embd;
    head(cuda::DeviceView<float, 2>(x_.data() + last, {1, c_.n_embd}), tmp_.data() + last);
    n_past_ += static_cast<int>(T);
  }

  static constexpr int64_t kRowsPerAttention = 16;  // q8_0 prefill rows per flash-decoding call

  std::shared_ptr<const LlamaModel> model_;
  LlamaConfig c_;
  CudaContextOptions opt_;
  cuda::Stream s_;
  cuda::DeviceInfo info_;
  int n_ctx_ = 0, n_batch_ = 0, n_layers_ = 0, n_past_ = 0;
  bool warm_ = false;  // a decode step has run eagerly: the next one may be captured
  size_t weight_bytes_ = 0, kv_bytes_ = 0, buffer_bytes_ = 0;

  std::vector<cuda::DeviceTensor<std::byte, 1>> owned_;  // weight memory; DevLinear views into it
  DevLinear embd_, output_;
  cuda::DeviceTensor<float, 1> output_norm_;
  std::vector<DevLayer> layers_;

  cuda::DeviceTensor<float, 2> x_, xn_, tmp_, q_, k_, v_, attn_, gate_, up_, qkv1_, gu1_, logits_;
  cuda::DeviceTensor<f16, 1> half_q_, half_o_;
  cuda::DeviceTensor<int32_t, 1> ints_, next_, fault_, table_;
  cuda::DeviceTensor<std::byte, 1> gemv_ws_, gemm_ws_, attn_ws_;
  std::vector<cuda::DeviceTensor<std::byte, 1>> kcache_, vcache_;
  cuda::PinnedBuffer<int32_t> io_;
  cuda::PinnedBuffer<float> logits_host_;
  cuda::Graph graph_;
};

}  // namespace tessera::models
