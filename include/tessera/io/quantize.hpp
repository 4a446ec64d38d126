/// \file
/// Requantizing a GGUF model: every tensor decoded to f32 row by row and
/// encoded in the type a scheme gives it (core/quant.hpp's codecs), written to
/// the output tensor by tensor as it is made, so memory stays about one
/// tensor's worth, not the model's. Rows run in parallel.
///
///   scheme          one type for every matrix (q8_0 ... q6_K, f16, bf16, f32),
///                   or a mix, q4_k_m / q5_k_m: q4_K / q5_K, with q6_K for the
///                   output projection and for attn_v / ffn_down of the first
///                   and last eighth of the layers and every third layer between
///   1-d tensors     (norms, biases) stay f32
///   fallback        a matrix whose rows are not whole blocks of its type takes
///                   the 32-value type of at least as many bits per weight
///                   (q4_K: q5_0 at 5.5, q5_K: q5_1 at 6, q6_K: q8_0 at 8.5), and f16 when its
///                   rows are not whole 32-value blocks either
///
/// Cost: O(elements) encoding per tensor (the k-quants search their scales:
/// several passes per block), one decode of the source and one of the result
/// (for the error report).
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/convert.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/core/quant.hpp"
#include "tessera/io/gguf_reader.hpp"
#include "tessera/io/gguf_writer.hpp"
#include "tessera/nn/weight.hpp"

namespace tessera::io {

/// A quantization scheme: one type for every matrix, or a mix by tensor role.
struct QuantScheme {
  const char* name;    ///< as the tools spell it ("q4_0", "q4_k_m")
  GgmlType type;       ///< every matrix's type (a mix: the type of the matrices it does not single out)
  uint32_t file_type;  ///< general.file_type: llama.cpp's LLAMA_FTYPE numbering (no all-q4_K type: Q4_K_S, 14)
  bool k_m_mix = false;  ///< the q4_k_m / q5_k_m mix: q6_K for the tensors it singles out (see the file comment)
};

/// Every scheme, in the order the tools list them.
inline constexpr QuantScheme kQuantSchemes[] = {
    {"f32", GgmlType::f32, 0},    {"f16", GgmlType::f16, 1},    {"bf16", GgmlType::bf16, 32},
    {"q8_0", GgmlType::q8_0, 7},  {"q4_0", GgmlType::q4_0, 2},  {"q4_1", GgmlType::q4_1, 3},
    {"q5_0", GgmlType::q5_0, 8},  {"q5_1", GgmlType::q5_1, 9},  {"q4_K", GgmlType::q4_K, 14},
    {"q5_K", GgmlType::q5_K, 16}, {"q6_K", GgmlType::q6_K, 18}, {"q4_k_m", GgmlType::q4_K, 15, true},
    {"q5_k_m", GgmlType::q5_K, 17, true},
};

/// The scheme called `name`, case-insensitively (q4_k, Q4_K and q4_K are one).
/// Error listing the known names otherwise.
inline const QuantScheme& quant_scheme(std::string_view name) {
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  for (const QuantScheme& s : kQuantSchemes)
    if (lower(name) == lower(s.name)) return s;
  std::string names;
  for (const QuantScheme& s : kQuantSchemes) names += (names.empty() ? "" : ", ") + std::string(s.name);
  fail("unknown quantization type '", name, "' (one of: ", names, ")");
}

/// The layers a mix gives more bits: the first and last eighth of n_layers and
/// every third layer between them (the rule llama.cpp's mixes use).
inline bool use_more_bits(int layer, int n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

/// The layer index of a tensor named "blk.N. ...", or -1.
inline int tensor_layer(std::string_view name) {
  if (!name.starts_with("blk.")) return -1;
  int n = 0;
  size_t i = 4;
  if (i >= name.size() || !std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  for (; i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])); ++i) n = n * 10 + (name[i] - '0');
  return i < name.size() && name[i] == '.' ? n : -1;
}

/// The type `scheme` gives tensor `name` of GGUF shape `shape` (row length
/// first) in a model of n_layers layers; see the file comment for the rules.
inline GgmlType quant_type_for(const QuantScheme& scheme, std::string_view name, std::span<const int64_t> shape,
                               int n_layers) {
  if (shape.size() < 2) return GgmlType::f32;
  GgmlType t = scheme.type;
  if (scheme.k_m_mix) {
    const int layer = tensor_layer(name);
    const bool singled = name == "output.weight" ||
                         (layer >= 0 && (name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight")) &&
                          use_more_bits(layer, n_layers));
    if (singled) t = GgmlType::q6_K;
  }
  const int64_t row = shape[0];
  if (row % type_info(static_cast<uint32_t>(t)).block_size != 0) {
    t = t == GgmlType::q6_K ? GgmlType::q8_0
        : t == GgmlType::q5_K ? GgmlType::q5_1
        : t == GgmlType::q4_K ? GgmlType::q5_0
                              : t;
    if (row % type_info(static_cast<uint32_t>(t)).block_size != 0) t = GgmlType::f16;
  }
  return t;
}

/// How far a tensor's encoding is from its source values, over all elements.
struct QuantError {
  double rmse = 0;     ///< sqrt(mean((decoded - source)^2))
  double max_abs = 0;  ///< max |decoded - source|
  double rms = 0;      ///< sqrt(mean(source^2)): rmse / rms is the relative error
};

namespace detail {
template <class T>
void encode_row(std::span<const float> x, std::span<T> out) {
  if constexpr (std::is_same_v<T, float>)
    std::copy(x.begin(), x.end(), out.begin());
  else if constexpr (std::is_same_v<T, f16> || std::is_same_v<T, bf16>)
    for (size_t i = 0; i < x.size(); ++i) out[i] = T(x[i]);
  else
    quantize_row(x, out);
}
}  // namespace detail

/// Encodes tensor t (of any type nn::visit_type knows) as `type` into out,
/// which must have exactly the encoded size; rows in parallel.  Returns the
/// error against t's decoded values.  Error for an unknown type or a size
/// mismatch.
inline QuantError requantize_tensor(const GgufTensorInfo& t, GgmlType type, std::span<std::byte> out) {
  const int64_t row = t.shape.at(0), rows = t.n_elements() / std::max<int64_t>(1, row);
  const TypeInfo src = type_info(t.type), dst = type_info(static_cast<uint32_t>(type));
  check(src.name != nullptr && dst.name != nullptr, "tensor '", t.name, "': cannot encode type ", t.type, " as ",
        static_cast<uint32_t>(type));
  check(row % dst.block_size == 0, "tensor '", t.name, "': rows of ", row, " are not whole ", dst.name, " blocks");
  const size_t src_row = static_cast<size_t>(row / src.block_size) * src.type_size;
  const size_t dst_row = static_cast<size_t>(row / dst.block_size) * dst.type_size;
  check(out.size() == dst_row * static_cast<size_t>(rows), "tensor '", t.name, "': output of ", out.size(),
        " bytes, the encoding needs ", dst_row * static_cast<size_t>(rows));
  const int threads = num_threads();
  std::vector<double> sq(static_cast<size_t>(threads), 0.0), ref(sq.size(), 0.0), mx(sq.size(), 0.0);
  nn::visit_type(static_cast<GgmlType>(t.type), [&]<class S>() {
    nn::visit_type(type, [&]<class D>() {
      const int64_t n_src = row / quant_traits<S>::block_size, n_dst = row / quant_traits<D>::block_size;
      parallel_for(rows, 1, [&](int64_t r0, int64_t r1) {
        const auto k = static_cast<size_t>(omp_get_thread_num());
        std::vector<float> x(static_cast<size_t>(row)), y(x.size());
        for (int64_t r = r0; r < r1; ++r) {
          const auto* s = reinterpret_cast<const S*>(t.data + static_cast<size_t>(r) * src_row);
          auto* d = reinterpret_cast<D*>(out.data() + static_cast<size_t>(r) * dst_row);
          dequantize_row(std::span<const S>(s, static_cast<size_t>(n_src)), std::span<float>(x));
          detail::encode_row(std::span<const float>(x), std::span<D>(d, static_cast<size_t>(n_dst)));
          dequantize_row(std::span<const D>(d, static_cast<size_t>(n_dst)), std::span<float>(y));
          for (size_t i = 0; i < x.size(); ++i) {
            const double e = static_cast<double>(y[i]) - x[i];
            sq[k] += e * e;
            ref[k] += static_cast<double>(x[i]) * x[i];
            mx[k] = std::max(mx[k], std::abs(e));
          }
        }
      });
    });
  });
  QuantError q;
  double s = 0, r = 0;
  for (size_t k = 0; k < sq.size(); ++k) {
    s += sq[k];
    r += ref[k];
    q.max_abs = std::max(q.max_abs, mx[k]);
  }
  const auto n = static_cast<double>(std::max<int64_t>(1, t.n_elements()));
  q.rmse = std::sqrt(s / n);
  q.rms = std::sqrt(r / n);
  return q;
}

/// What quantize_gguf did to one tensor.
struct TensorReport {
  std::string name;     ///< the tensor
  uint32_t from = 0;    ///< source ggml type id
  GgmlType to{};        ///< written type
  int64_t n_elements = 0;  ///< values
  size_t bytes = 0;     ///< bytes written
  QuantError error;     ///< against the source's values
};

/// Writes `in`'s model to out_path in `scheme`: the metadata copied in order
/// (general.file_type and general.quantization_version set), the tensors in
/// `in`'s order, each encoded when the writer reaches it.  on_tensor, when
/// given, sees each tensor's report as it is written.  Error (and no file
/// left behind) for a tensor of a type that cannot be decoded, or an I/O
/// failure naming out_path.
inline void quantize_gguf(const GgufFile& in, const std::string& out_path, const QuantScheme& scheme,
                          const std::function<void(const TensorReport&)>& on_tensor = {}) {
  GgufWriter w;
  w.set_all(in.meta());
  w.set("general.file_type", scheme.file_type);
  w.set("general.quantization_version", uint32_t{2});
  const std::string arch = in.meta().get_or<std::string>("general.architecture", "");
  const int n_layers = static_cast<int>(in.meta().get_or<uint32_t>(arch + ".block_count", 0));
  for (const GgufTensorInfo& t : in.tensors()) {
    const TypeInfo src = type_info(t.type);
    check(src.name != nullptr, "tensor '", t.name, "': unknown ggml type id ", t.type);
    const GgmlType to = quant_type_for(scheme, t.name, t.shape, n_layers);
    nn::visit_type(static_cast<GgmlType>(t.type), [&]<class S>() {});  // Error for a type without a decoder
    const GgufTensorInfo* tp = &t;
    w.add_tensor_deferred(t.name, static_cast<uint32_t>(to), t.shape, [tp, to, &on_tensor](std::span<std::byte> out) {
      TensorReport r{tp->name, tp->type, to, tp->n_elements(), out.size(), requantize_tensor(*tp, to, out)};
      if (on_tensor) on_tensor(r);
    });
  }
  w.write(out_path);
}

}  // namespace tessera::io
