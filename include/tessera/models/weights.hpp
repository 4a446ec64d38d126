/// \file
/// Weights from a GGUF file, checked: the bridge between io::GgufFile (names,
/// GGUF's innermost-first shapes, type ids) and nn::Weight / norm vectors.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/io/gguf_reader.hpp"
#include "tessera/nn/weight.hpp"

namespace tessera::models {

namespace detail {
inline std::string gguf_shape(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace detail

/// The 2-d tensor `name` of file as a weight [n_out, n_in], in place (the file
/// must outlive it).  GGUF lists dims innermost first, so the tensor's GGUF
/// shape is [n_in, n_out].  n_out or n_in < 0 accepts any extent.  Error names
/// the tensor when it is missing, not 2-d, of the wrong shape, of a type without
/// kernels, or with rows that are not a whole number of blocks.
inline nn::Weight gguf_weight(const io::GgufFile& file, std::string_view name, int64_t n_out = -1, int64_t n_in = -1) {
  const io::GgufTensorInfo& t = file.tensor(name);
  check(t.shape.size() == 2 && (n_in < 0 || t.shape[0] == n_in) && (n_out < 0 || t.shape[1] == n_out), "tensor '",
        name, "' has shape ", detail::gguf_shape(t.shape), ", expected [", n_in < 0 ? std::string("any") : std::to_string(n_in),
        ", ", n_out < 0 ? std::string("any") : std::to_string(n_out), "] (GGUF order: row length first)");
  nn::Weight w{static_cast<GgmlType>(t.type), t.data, t.shape[1], t.shape[0]};
  nn::visit_type(w.type, [&]<class T>() {
    check(w.n_in % quant_traits<T>::block_size == 0, "tensor '", name, "': row length ", w.n_in,
          " is not a multiple of the ", quant_traits<T>::name, " block size");
  });
  return w;
}

/// The 3-d tensor `name` of file holding n_expert matrices [n_out, n_in] (GGUF
/// shape [n_in, n_out, n_expert]) as one stacked weight [n_expert * n_out, n_in],
/// in place: expert e's rows start at e * n_out (nn::MoeWeights::expert).
/// Error names the tensor when it is missing or of another shape or type.
inline nn::Weight gguf_experts(const io::GgufFile& file, std::string_view name, int64_t n_expert, int64_t n_out,
                               int64_t n_in) {
  const io::GgufTensorInfo& t = file.tensor(name);
  check(t.shape.size() == 3 && t.shape[0] == n_in && t.shape[1] == n_out && t.shape[2] == n_expert, "tensor '", name,
        "' has shape ", detail::gguf_shape(t.shape), ", expected [", n_in, ", ", n_out, ", ", n_expert,
        "] (GGUF order: row length first)");
  nn::Weight w{static_cast<GgmlType>(t.type), t.data, n_out * n_expert, n_in};
  nn::visit_type(w.type, [&]<class T>() {
    check(w.n_in % quant_traits<T>::block_size == 0, "tensor '", name, "': row length ", w.n_in,
          " is not a multiple of the ", quant_traits<T>::name, " block size");
  });
  return w;
}

/// The f32 vector `name` of file (norm weights, biases), in place; n < 0
/// accepts any length.  Error names the tensor when it is missing, not f32,
/// or of another length.
inline std::span<const float> gguf_vector(const io::GgufFile& file, std::string_view name, int64_t n = -1) {
  const auto v = file.view1d<float>(name);
  check(n < 0 || v.dim(0) == n, "tensor '", name, "' has ", v.dim(0), " elements, expected ", n);
  return {v.data(), static_cast<size_t>(v.dim(0))};
}

}  // namespace tessera::models
