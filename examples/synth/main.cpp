// tessera-synth: writes a decoder GGUF (llama, or with --arch another family's
// layout: qwen2, qwen3, phi3, gpt2, the MoE ones) or a BERT encoder of a named
// shape with seeded random weights and the tokenizer of a real GGUF (for bert,
// a WordPiece vocabulary made from it), for benchmarks and GPU kernels at sizes
// no small real model has (7B, 8B, 1B widths), and for checking families that
// have no small real model against llama.cpp.
//
// The weights (N(0, s^2): approximately normal, see SplitMix::gaussian; n_in is the row length, L the
// layer count):
//   token_embd            N(0, 1)                      the residual stream starts at RMS 1
//   attn_q/k/v, ffn_gate/up, output
//                         N(0, 1 / n_in)               a normalised input gives unit-variance outputs,
//                                                      so attention scores and logits are O(1)
//   attn_output, ffn_down N(0, 1 / (2 L n_in))         each of the 2L residual branches adds about 1/(2L)
//                                                      of variance or less, so the stream stays near RMS 1
//                                                      however deep (GPT-2's residual scaling)
//   *_norm                1 + 0.1 u, u ~ U(-1, 1), f32
//   biases, *_norm.bias   0.1 u, f32
//   position_embd (gpt2, bert), token_types (bert)
//                         N(0, 1 / 4): added to token_embd, the stream starts near RMS 1.1
// Greedy generation from such a model gives varied tokens, with no NaN or infinity, at any depth.
// Every row has its own random stream, seeded from (--seed, tensor name, row): one build writes the same
// file whatever the thread count.  Matrices are quantized by the library's reference codecs
// (quantize_row), rows in parallel, compiled with fast math (CMakeLists.txt says why), so another compiler
// or -march may round a k-quant fit differently.  Bad input prints one "error: ..." line and exits 1.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/core/quant.hpp"
#include "tessera/core/quant_blocks.hpp"
#include "tessera/io/gguf.hpp"
#include "tessera/io/gguf_writer.hpp"
#include "tessera/io/quantize.hpp"
#include "tessera/nn/weight.hpp"

using namespace tessera;

namespace {

// ---- shapes and types -------------------------------------------------------------------------------------

struct Shape {
  const char* name;
  int n_embd, n_layers, n_heads, n_kv_heads, n_ff;
  float rope_base;
};

// head_dim = n_embd / n_heads: 128 for the 7B / 8B shapes, 64 for the others (GPU kernels take 64, 128, 256).
constexpr Shape kShapes[] = {
    {"llama2-7b", 4096, 32, 32, 32, 11008, 10000.f},
    {"llama3-8b", 4096, 32, 32, 8, 14336, 500000.f},
    {"llama3.2-1b", 2048, 16, 32, 8, 8192, 500000.f},
    {"tiny", 256, 2, 4, 2, 512, 10000.f},
    {"tiny-mha", 128, 2, 2, 2, 384, 10000.f},
};
constexpr uint32_t kContextLength = 4096;
constexpr float kRmsEps = 1e-5f;

// A --type: io/quantize.hpp's schemes (one ggml type for every matrix, or the q4_k_m / q5_k_m mix).
using WeightType = io::QuantScheme;
constexpr const auto& kTypes = io::kQuantSchemes;

template <class Table>
std::string names_of(const Table& table) {
  std::string out;
  for (const auto& e : table) out += (out.empty() ? "" : ", ") + std::string(e.name);
  return out;
}

const Shape& find_shape(std::string_view name) {
  for (const Shape& s : kShapes)
    if (name == s.name) return s;
  fail("unknown shape '", name, "' (one of: ", names_of(kShapes), ")");
}

// Case-insensitive: q4_k, Q4_K and q4_K are one type.
const WeightType& find_type(std::string_view name) { return io::quant_scheme(name); }

using io::use_more_bits;

// ---- the command line -------------------------------------------------------------------------------------

// The families synth writes (their GGUF architecture names).
// mixtral: GGUF architecture llama with routed experts.
constexpr const char* kArchs[] = {"llama", "qwen2", "qwen3", "phi3", "gpt2", "mixtral", "qwen2moe", "qwen3moe", "bert"};
// bert: 512 learned positions, two token types, mean pooling, bidirectional.
constexpr uint32_t kBertPositions = 512;
// Mixture-of-experts archs: 4 experts, 2 per token, expert hidden width n_ff (mixtral) or n_ff / 2 (qwen);
// qwen2moe adds a shared expert of width n_ff.
constexpr int kExperts = 4, kExpertsUsed = 2;

std::string arch_names() {
  std::string out;
  for (const char* n : kArchs) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

struct Args {
  std::string shape, type, tokenizer, output, arch = "llama";
  uint64_t seed = 42;
  int layers = 0;   // 0: the shape's
  int threads = 0;  // 0: OpenMP's default
  bool help = false;
};

const char* usage() {
  return "usage: tessera-synth --shape NAME --type TYPE -o OUT.gguf [--tokenizer FROM.gguf] [--seed N] [--layers N]\n"
         "  --shape NAME          llama2-7b | llama3-8b | llama3.2-1b | tiny | tiny-mha\n"
         "      --arch NAME       llama (default) | qwen2 (Q/K/V biases) | qwen3 (QK-norm) | phi3 (fused QKV\n"
         "                        and gate/up) | gpt2 (learned positions, LayerNorm, GELU, biases; heads = KV heads)\n"
         "                        | mixtral | qwen2moe | qwen3moe (4 experts, 2 per token; qwen2moe + a shared one)\n"
         "                        | bert (encoder: WordPiece vocabulary made from --tokenizer's; heads = KV heads)\n"
         "  --type TYPE           f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | q4_K | q5_K | q6_K | q4_k_m\n"
         "                        | q5_k_m (every matrix, token_embd included; norms stay f32; q4_k_m / q5_k_m\n"
         "                        are llama.cpp's Q4_K_M / Q5_K_M mixes)\n"
         "  -o, --output PATH     the GGUF to write\n"
         "      --tokenizer PATH  GGUF whose tokenizer.* metadata is copied; its vocabulary sets n_vocab\n"
         "                        (default: the model scripts/fetch-model fetches)\n"
         "      --seed N          random seed (default 42); a seed gives the same file on any thread count\n"
         "      --layers N        layer count instead of the shape's (a small file of a big shape's width)\n"
         "  -t, --threads N       threads (default: all cores)\n";
}

template <class T>
T number(std::string_view flag, std::string_view text) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  check(ec == std::errc() && end == text.data() + text.size(), "invalid value '", text, "' for ", flag);
  return v;
}

Args parse(int argc, char** argv) {
  Args a;
  const std::vector<std::string_view> v(argv + 1, argv + argc);
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string_view f = v[i];
    auto value = [&]() -> std::string_view {
      check(i + 1 < v.size(), "missing value for ", f);
      return v[++i];
    };
    auto integer = [&](int lo) {
      const int n = number<int>(f, value());
      check(n >= lo, f, " must be >= ", lo, ", got ", n);
      return n;
    };
    if (f == "-h" || f == "--help") a.help = true;
    else if (f == "--shape") a.shape = value();
    else if (f == "--type") a.type = value();
    else if (f == "--arch") a.arch = value();
    else if (f == "--tokenizer") {
      a.tokenizer = value();
      check(!a.tokenizer.empty(), f, " needs a path, got an empty one");
    }
    else if (f == "-o" || f == "--output") {
      a.output = value();
      check(!a.output.empty(), f, " needs a path, got an empty one");
    }
    else if (f == "--seed") a.seed = number<uint64_t>(f, value());
    else if (f == "--layers") a.layers = integer(1);
    else if (f == "-t" || f == "--threads") a.threads = integer(1);
    else fail("unknown flag '", f, "' (see --help)");
  }
  if (a.help) return a;
  check(!a.shape.empty(), "--shape NAME is required (one of: ", names_of(kShapes), ")");
  check(!a.type.empty(), "--type TYPE is required (one of: ", names_of(kTypes), ")");
  check(!a.output.empty(), "-o OUT.gguf is required");
  check(std::find_if(std::begin(kArchs), std::end(kArchs), [&](const char* n) { return a.arch == n; }) !=
            std::end(kArchs),
        "unknown --arch '", a.arch, "' (one of: ", arch_names(), ")");
  return a;
}

std::string default_tokenizer() {
  for (const char* p : {TESSERA_DEFAULT_MODEL, "models/SmolLM2-135M-Instruct.Q4_1.gguf"})
    if (std::filesystem::exists(p)) return p;
  fail("no --tokenizer given and the default model is missing: run scripts/fetch-model, or pass --tokenizer FROM.gguf");
}

// ---- the tensors ------------------------------------------------------------------------------------------

struct TensorPlan {
  std::string name;
  GgmlType type;
  int64_t n_in;   // row length (GGUF shape[0])
  int64_t n_out;  // rows (of all experts together when n_expert > 0); 0 for a 1-d vector of n_in
  float stddev;   // matrices: the normal's standard deviation; vectors: offset + 0.1 u
  float offset = 1.f;  // vectors: 1 for a norm's scale, 0 for a bias
  int64_t n_expert = 0;  // > 0: a 3-d stack of n_expert matrices of n_out / n_expert rows

  bool is_norm() const { return n_out == 0; }
  int64_t rows() const { return is_norm() ? 1 : n_out; }
  int64_t n_elements() const { return n_in * rows(); }
  size_t n_bytes() const {
    const TypeInfo ti = type_info(static_cast<uint32_t>(type));
    return static_cast<size_t>(n_elements() / ti.block_size) * ti.type_size;
  }
  std::vector<int64_t> gguf_shape() const {
    if (n_expert > 0) return {n_in, n_out / n_expert, n_expert};
    return is_norm() ? std::vector<int64_t>{n_in} : std::vector<int64_t>{n_in, n_out};
  }
};

// BERT: embeddings (tokens, positions, two types) and their LayerNorm, then post-LN blocks with biases
// everywhere; no output head.
std::vector<TensorPlan> plan_bert(const Shape& s, int n_layers, int n_vocab, const WeightType& wt) {
  const GgmlType m = wt.type, f32 = GgmlType::f32;
  const auto in_scale = [](int64_t n_in) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n_in))); };
  auto vec = [&](std::string name, int64_t n, bool bias) { return TensorPlan{std::move(name), f32, n, 0, 0.f, bias ? 0.f : 1.f}; };
  std::vector<TensorPlan> p = {{"token_embd.weight", m, s.n_embd, n_vocab, 1.f},
                               {"token_types.weight", f32, s.n_embd, 2, 0.5f},
                               {"position_embd.weight", f32, s.n_embd, kBertPositions, 0.5f},
                               vec("token_embd_norm.weight", s.n_embd, false),
                               vec("token_embd_norm.bias", s.n_embd, true)};
  for (int l = 0; l < n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const char* t : {"attn_q", "attn_k", "attn_v"}) {
      p.push_back({b + t + ".weight", m, s.n_embd, s.n_embd, in_scale(s.n_embd)});
      p.push_back(vec(b + t + ".bias", s.n_embd, true));
    }
    // Post-LN renormalises after every add, so the branches need no depth scaling.
    p.push_back({b + "attn_output.weight", m, s.n_embd, s.n_embd, in_scale(s.n_embd)});
    p.push_back(vec(b + "attn_output.bias", s.n_embd, true));
    p.push_back(vec(b + "attn_output_norm.weight", s.n_embd, false));
    p.push_back(vec(b + "attn_output_norm.bias", s.n_embd, true));
    p.push_back({b + "ffn_up.weight", m, s.n_embd, s.n_ff, in_scale(s.n_embd)});
    p.push_back(vec(b + "ffn_up.bias", s.n_ff, true));
    p.push_back({b + "ffn_down.weight", m, s.n_ff, s.n_embd, in_scale(s.n_ff)});
    p.push_back(vec(b + "ffn_down.bias", s.n_embd, true));
    p.push_back(vec(b + "layer_output_norm.weight", s.n_embd, false));
    p.push_back(vec(b + "layer_output_norm.bias", s.n_embd, true));
  }
  return p;
}

// In llama.cpp's order: token_embd, the blocks, output_norm, output; each family's tensors.
std::vector<TensorPlan> plan_tensors(const Shape& s, int n_layers, int n_vocab, const WeightType& wt,
                                     std::string_view arch) {
  const int64_t head_dim = s.n_embd / s.n_heads, q_dim = s.n_heads * head_dim, kv_dim = s.n_kv_heads * head_dim;
  const auto in_scale = [](int64_t n_in) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n_in))); };
  const auto out_scale = [&](int64_t n_in) {
    return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n_in) * 2.0 * n_layers));
  };
  if (arch == "bert") return plan_bert(s, n_layers, n_vocab, wt);
  const bool gpt2 = arch == "gpt2", phi3 = arch == "phi3";
  const bool moe = arch == "mixtral" || arch == "qwen2moe" || arch == "qwen3moe";
  const int64_t ff_exp = arch == "mixtral" ? s.n_ff : s.n_ff / 2;  // llama's experts are feed_forward_length wide
  const GgmlType m = wt.type, f32 = GgmlType::f32;
  auto vec = [&](std::string name, int64_t n, bool bias = false) {
    return TensorPlan{std::move(name), f32, n, 0, 0.f, bias ? 0.f : 1.f};
  };
  std::vector<TensorPlan> p;
  p.push_back({"token_embd.weight", m, s.n_embd, n_vocab, 1.f});
  if (gpt2) p.push_back({"position_embd.weight", m, s.n_embd, kContextLength, 0.5f});
  for (int l = 0; l < n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const GgmlType more = wt.k_m_mix && use_more_bits(l, n_layers) ? GgmlType::q6_K : m;
    p.push_back(vec(b + "attn_norm.weight", s.n_embd));
    if (gpt2) p.push_back(vec(b + "attn_norm.bias", s.n_embd, true));
    if (gpt2 || phi3) {
      p.push_back({b + "attn_qkv.weight", m, s.n_embd, q_dim + 2 * kv_dim, in_scale(s.n_embd)});
      if (gpt2) p.push_back(vec(b + "attn_qkv.bias", q_dim + 2 * kv_dim, true));
    } else {
      p.push_back({b + "attn_q.weight", m, s.n_embd, q_dim, in_scale(s.n_embd)});
      p.push_back({b + "attn_k.weight", m, s.n_embd, kv_dim, in_scale(s.n_embd)});
      p.push_back({b + "attn_v.weight", more, s.n_embd, kv_dim, in_scale(s.n_embd)});
      if (arch == "qwen2" || arch == "qwen2moe")
        for (const char* t : {"attn_q.bias", "attn_k.bias", "attn_v.bias"})
          p.push_back(vec(b + t, t[5] == 'q' ? q_dim : kv_dim, true));
      if (arch == "qwen3" || arch == "qwen3moe") {
        p.push_back(vec(b + "attn_q_norm.weight", head_dim));
        p.push_back(vec(b + "attn_k_norm.weight", head_dim));
      }
    }
    p.push_back({b + "attn_output.weight", m, q_dim, s.n_embd, out_scale(q_dim)});
    if (gpt2) p.push_back(vec(b + "attn_output.bias", s.n_embd, true));
    p.push_back(vec(b + "ffn_norm.weight", s.n_embd));
    if (gpt2) {
      p.push_back(vec(b + "ffn_norm.bias", s.n_embd, true));
      p.push_back({b + "ffn_up.weight", m, s.n_embd, s.n_ff, in_scale(s.n_embd)});
      p.push_back(vec(b + "ffn_up.bias", s.n_ff, true));
    } else if (moe) {
      p.push_back({b + "ffn_gate_inp.weight", m, s.n_embd, kExperts, in_scale(s.n_embd)});
      p.push_back({b + "ffn_gate_exps.weight", m, s.n_embd, ff_exp * kExperts, in_scale(s.n_embd), 1.f, kExperts});
      p.push_back({b + "ffn_down_exps.weight", more, ff_exp, s.n_embd * kExperts, out_scale(ff_exp), 1.f, kExperts});
      p.push_back({b + "ffn_up_exps.weight", m, s.n_embd, ff_exp * kExperts, in_scale(s.n_embd), 1.f, kExperts});
      if (arch == "qwen2moe") {
        p.push_back(vec(b + "ffn_gate_inp_shexp.weight", s.n_embd, true));
        p.push_back({b + "ffn_gate_shexp.weight", m, s.n_embd, s.n_ff, in_scale(s.n_embd)});
        p.push_back({b + "ffn_down_shexp.weight", more, s.n_ff, s.n_embd, out_scale(s.n_ff)});
        p.push_back({b + "ffn_up_shexp.weight", m, s.n_embd, s.n_ff, in_scale(s.n_embd)});
      }
    } else if (phi3) {
      p.push_back({b + "ffn_up.weight", m, s.n_embd, 2 * s.n_ff, in_scale(s.n_embd)});  // gate rows, then up rows
    } else {
      p.push_back({b + "ffn_gate.weight", m, s.n_embd, s.n_ff, in_scale(s.n_embd)});
      p.push_back({b + "ffn_up.weight", m, s.n_embd, s.n_ff, in_scale(s.n_embd)});
    }
    if (!moe) p.push_back({b + "ffn_down.weight", more, s.n_ff, s.n_embd, out_scale(s.n_ff)});
    if (gpt2) p.push_back(vec(b + "ffn_down.bias", s.n_embd, true));
  }
  p.push_back(vec("output_norm.weight", s.n_embd));
  if (gpt2) p.push_back(vec("output_norm.bias", s.n_embd, true));
  p.push_back({"output.weight", wt.k_m_mix ? GgmlType::q6_K : m, s.n_embd, n_vocab, in_scale(s.n_embd)});
  return p;
}

// Every matrix's rows must be whole blocks of its type (256 elements for the k-quants).
void check_block_sizes(const std::vector<TensorPlan>& plan, const Shape& s, const WeightType& wt) {
  for (const TensorPlan& t : plan) {
    const TypeInfo ti = type_info(static_cast<uint32_t>(t.type));
    check(t.n_in % ti.block_size == 0, "--type ", wt.name, " needs rows that are a multiple of ", ti.block_size,
          " elements (the ", ti.name, " block), but tensor '", t.name, "' of shape ", s.name, " has rows of ",
          t.n_in);
  }
}

// ---- random numbers ---------------------------------------------------------------------------------------

// splitmix64's output function: a bijective 64-bit mix.
constexpr uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

constexpr uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}

// splitmix64: one addition and one mix per 64 bits, a stream per (tensor, row).
struct SplitMix {
  uint64_t state;
  uint64_t next() { return mix64(state += kGolden); }
  // Irwin-Hall: the sum of four 16-bit uniforms, centred and scaled to unit variance. Close to N(0, 1) (the
  // fourth moment is 2.4 instead of 3) and bounded by +-2 sqrt(3), which spares the quantizers outliers;
  // about one nanosecond a value where Box-Muller's log and sincos cost tens.
  float gaussian() {
    const uint64_t r = next();
    const uint32_t sum = static_cast<uint32_t>(r & 0xffff) + static_cast<uint32_t>((r >> 16) & 0xffff) +
                         static_cast<uint32_t>((r >> 32) & 0xffff) + static_cast<uint32_t>(r >> 48);
    // Each term (k + 0.5) / 65536 has mean 1/2 and variance ~1/12: the sum has mean 2 and variance 1/3.
    constexpr float kScale = 1.7320508f / 65536.f;
    return (static_cast<float>(sum) + 2.f - 131072.f) * kScale;
  }
  float uniform() { return static_cast<float>(next() >> 40) * (2.f / 16777216.f) - 1.f; }  // [-1, 1)
};

SplitMix row_stream(uint64_t tensor_seed, int64_t row) {
  return {mix64(tensor_seed ^ mix64(static_cast<uint64_t>(row) * kGolden + 1))};
}

// One tensor: rows generated in parallel (each from its own stream) and converted to the tensor's type.
template <class T>
void add_random_tensor(io::GgufWriter& w, const TensorPlan& t, uint64_t seed) {
  const uint64_t tensor_seed = mix64(seed ^ fnv1a(t.name));
  const int64_t n_blocks = t.n_in / quant_traits<T>::block_size;
  const size_t n_items = static_cast<size_t>(n_blocks * t.rows());
  // Uninitialised: the rows are first touched by the threads that fill them.
  const std::unique_ptr<std::byte[]> buf(new std::byte[n_items * sizeof(T)]);
  T* const data = reinterpret_cast<T*>(buf.get());
  parallel_for(t.rows(), 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> x(static_cast<size_t>(t.n_in));
    for (int64_t r = r0; r < r1; ++r) {
      SplitMix rng = row_stream(tensor_seed, r);
      if (t.is_norm())
        for (float& v : x) v = t.offset + 0.1f * rng.uniform();
      else
        for (float& v : x) v = t.stddev * rng.gaussian();
      T* const row = data + r * n_blocks;
      if constexpr (std::is_same_v<T, float>) std::memcpy(row, x.data(), x.size() * sizeof(float));
      else if constexpr (std::is_same_v<T, f16> || std::is_same_v<T, bf16>)
        for (size_t i = 0; i < x.size(); ++i) row[i] = T(x[i]);
      else quantize_row(std::span<const float>(x), std::span<T>(row, static_cast<size_t>(n_blocks)));
    }
  });
  w.add_tensor(t.name, t.gguf_shape(), std::span<const T>(data, n_items));
}

// ---- the file ---------------------------------------------------------------------------------------------

// The tokenizer source: every tokenizer.* key, and the vocabulary size.
struct TokenizerSource {
  std::vector<std::pair<std::string, io::GgufValue>> keys;
  int n_vocab = 0;
};

TokenizerSource read_tokenizer(const std::string& path) {
  check(std::filesystem::exists(path), "tokenizer file '", path, "' not found");
  const io::GgufFile f = io::GgufFile::open(path);
  const io::GgufValue* tokens = f.meta().find("tokenizer.ggml.tokens");
  check(tokens != nullptr, path, " has no tokenizer.ggml.tokens: --tokenizer needs a GGUF with a tokenizer");
  const auto* list = tokens->get_if<io::GgufArray>();
  check(list != nullptr && list->get_if<std::string>() != nullptr && !list->empty(), path,
        ": tokenizer.ggml.tokens is not a non-empty array of strings");
  TokenizerSource src;
  src.n_vocab = static_cast<int>(list->size());
  for (const auto& [key, value] : f.meta().entries())
    if (key.starts_with("tokenizer.")) src.keys.emplace_back(key, value);
  return src;
}

// A WordPiece vocabulary from a byte-level BPE one, for --arch bert: [PAD] [UNK] [CLS] [SEP] [MASK], every
// printable ASCII character as a word start ("▁a") and as a continuation ("a"), then the source's tokens
// that are lowercase ASCII letters and digits: "Ġword" as "▁word", a bare piece as a continuation.  Every
// ASCII word can be spelled; longer pieces make the greedy longest match do real work.
TokenizerSource wordpiece_from(const TokenizerSource& src) {
  const std::string start = "\xE2\x96\x81";
  std::vector<std::string> tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  std::vector<int32_t> types(tokens.size(), 3);  // control
  auto add = [&](std::string t) {
    tokens.push_back(std::move(t));
    types.push_back(1);
  };
  for (int c = 33; c < 127; ++c)
    if (!std::isupper(c)) add(start + static_cast<char>(c)), add(std::string(1, static_cast<char>(c)));
  const auto* list = [&]() -> const io::GgufArray* {
    for (const auto& [key, value] : src.keys)
      if (key == "tokenizer.ggml.tokens") return value.get_if<io::GgufArray>();
    return nullptr;
  }();
  check(list != nullptr, "--arch bert: the tokenizer source has no token list");
  const auto& texts = *list->get_if<std::string>();
  std::vector<std::string> pieces;
  for (const std::string& t : texts) {
    const bool word = t.starts_with("\xC4\xA0");  // 'Ġ', byte-level BPE's space
    const std::string body = word ? t.substr(2) : t;
    if (body.size() < 2 || !std::all_of(body.begin(), body.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        }))
      continue;
    pieces.push_back(word ? start + body : body);
  }
  std::sort(pieces.begin(), pieces.end());
  pieces.erase(std::unique(pieces.begin(), pieces.end()), pieces.end());
  for (std::string& t : pieces) add(std::move(t));
  TokenizerSource out;
  out.n_vocab = static_cast<int>(tokens.size());
  out.keys = {{"tokenizer.ggml.model", io::GgufValue(std::string("bert"))},
              {"tokenizer.ggml.tokens", io::GgufValue(io::GgufArray(std::move(tokens)))},
              {"tokenizer.ggml.token_type", io::GgufValue(io::GgufArray(std::move(types)))},
              {"tokenizer.ggml.padding_token_id", io::GgufValue(uint32_t{0})},
              {"tokenizer.ggml.unknown_token_id", io::GgufValue(uint32_t{1})},
              {"tokenizer.ggml.bos_token_id", io::GgufValue(uint32_t{2})},
              {"tokenizer.ggml.cls_token_id", io::GgufValue(uint32_t{2})},
              {"tokenizer.ggml.seperator_token_id", io::GgufValue(uint32_t{3})},
              {"tokenizer.ggml.mask_token_id", io::GgufValue(uint32_t{4})},
              {"tokenizer.ggml.token_type_count", io::GgufValue(uint32_t{2})}};  // rows of token_types
  return out;
}

double gib(double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }

int run(const Args& a) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const Shape& shape = find_shape(a.shape);
  const WeightType& wt = find_type(a.type);
  const int n_layers = a.layers > 0 ? a.layers : shape.n_layers;
  check(shape.n_embd % shape.n_heads == 0 && shape.n_heads % shape.n_kv_heads == 0, "bad shape table entry");
  check((a.arch != "gpt2" && a.arch != "bert") || shape.n_heads == shape.n_kv_heads, "--arch ", a.arch,
        " has no grouped-query attention: shape ", shape.name, " has ", shape.n_heads, " heads over ", shape.n_kv_heads,
        " KV heads (tiny-mha or llama2-7b have equal counts)");
  // The vocabulary size only adds rows: the row lengths can be checked before the tokenizer is read.
  check_block_sizes(plan_tensors(shape, n_layers, 1, wt, a.arch), shape, wt);

  TokenizerSource tok = read_tokenizer(a.tokenizer.empty() ? default_tokenizer() : a.tokenizer);
  if (a.arch == "bert") tok = wordpiece_from(tok);
  const std::vector<TensorPlan> plan = plan_tensors(shape, n_layers, tok.n_vocab, wt, a.arch);
  int64_t n_params = 0;
  size_t n_bytes = 0;
  for (const TensorPlan& t : plan) {
    n_params += t.n_elements();
    n_bytes += t.n_bytes();
  }
  const char* const plural = n_layers == 1 ? "" : "s";
  std::fprintf(stderr, "tessera-synth: %s %s %s, %d layer%s, vocab %d: %zu tensors, %.3f B parameters, %.3f GiB (held in "
               "memory, then written to %s)\n",
               a.arch.c_str(), shape.name, wt.name, n_layers, plural, tok.n_vocab, plan.size(), static_cast<double>(n_params) * 1e-9,
               gib(static_cast<double>(n_bytes)), a.output.c_str());

  io::GgufWriter w;
  const std::string arch = a.arch == "mixtral" ? "llama" : a.arch;
  const uint32_t head_dim = static_cast<uint32_t>(shape.n_embd / shape.n_heads);
  w.set("general.architecture", arch);
  w.set("general.name", std::string("synthetic ") + shape.name + " " + wt.name);  // no arch: llama.cpp keys token rules on a name holding "phi3"
  w.set("general.file_type", wt.file_type);
  if (wt.type != GgmlType::f32 && wt.type != GgmlType::f16 && wt.type != GgmlType::bf16)
    w.set("general.quantization_version", uint32_t{2});
  w.set(arch + ".context_length", arch == "bert" ? kBertPositions : kContextLength);
  w.set(arch + ".embedding_length", static_cast<uint32_t>(shape.n_embd));
  w.set(arch + ".block_count", static_cast<uint32_t>(n_layers));
  w.set(arch + ".feed_forward_length", static_cast<uint32_t>(shape.n_ff));
  w.set(arch + ".attention.head_count", static_cast<uint32_t>(shape.n_heads));
  w.set(arch + ".attention.head_count_kv", static_cast<uint32_t>(shape.n_kv_heads));
  if (arch == "gpt2" || arch == "bert") {
    w.set(arch + ".attention.layer_norm_epsilon", kRmsEps);
    if (arch == "bert") {
      w.set(arch + ".attention.causal", false);
      w.set(arch + ".pooling_type", uint32_t{1});  // mean
    }
  } else {
    w.set(arch + ".attention.layer_norm_rms_epsilon", kRmsEps);
    w.set(arch + ".rope.freq_base", shape.rope_base);
    w.set(arch + ".rope.dimension_count", head_dim);
  }
  if (a.arch == "mixtral" || arch == "qwen2moe" || arch == "qwen3moe") {
    w.set(arch + ".expert_count", static_cast<uint32_t>(kExperts));
    w.set(arch + ".expert_used_count", static_cast<uint32_t>(kExpertsUsed));
    if (arch != "llama") w.set(arch + ".expert_feed_forward_length", static_cast<uint32_t>(shape.n_ff / 2));
    if (arch == "qwen2moe") w.set(arch + ".expert_shared_feed_forward_length", static_cast<uint32_t>(shape.n_ff));
  }
  if (arch == "qwen3" || arch == "qwen3moe") {
    w.set(arch + ".attention.key_length", head_dim);
    w.set(arch + ".attention.value_length", head_dim);
  }
  w.set(arch + ".vocab_size", static_cast<uint32_t>(tok.n_vocab));
  for (const auto& [key, value] : tok.keys) w.set(key, value);

  for (const TensorPlan& t : plan)
    nn::visit_type(t.type, [&]<class T>() { add_random_tensor<T>(w, t, a.seed); });
  const auto t1 = clock::now();
  w.write(a.output);
  const auto t2 = clock::now();

  const double gen_s = std::chrono::duration<double>(t1 - t0).count();
  const double write_s = std::chrono::duration<double>(t2 - t1).count();
  std::printf("tessera-synth: %s %s, %.3f B parameters (%d layer%s, vocab %d), %.3f GiB written to %s in %.1f s "
              "(generate %.1f s, write %.1f s)\n",
              shape.name, wt.name, static_cast<double>(n_params) * 1e-9, n_layers, plural, tok.n_vocab,
              gib(static_cast<double>(std::filesystem::file_size(a.output))), a.output.c_str(), gen_s + write_s,
              gen_s, write_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    if (a.help) {
      std::fputs(usage(), stdout);
      return 0;
    }
    if (a.threads > 0) set_num_threads(a.threads);
    return run(a);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory (every tensor is held in memory until the file is written)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
