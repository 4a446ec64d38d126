/// \file
/// llama.cpp's log-probability file (what `llama-perplexity --kl-divergence-base
/// FILE` writes and `--kl-divergence` reads): the tokens of a perplexity run and,
/// for every scored position, the model's log-softmax compressed to 16 bits.
///
///   "_logits_"                         8 bytes
///   int32 n_ctx, int32 n_vocab, int32 n_chunk
///   int32 tokens[n_chunk * n_ctx]
///   per chunk, for its n_ctx - 1 - n_ctx/2 scored positions, one row of
///   nv = 2 ceil(n_vocab / 2) + 4 uint16:
///     float scale, float min_log_prob  (the first 4 uint16)
///     uint16 q[n_vocab]                log p(i) = scale * q[i] + min_log_prob
///
/// A row keeps the top 16 nats of the logits (lo = max(min logit, max - 16)):
/// q[i] = round((logit_i - lo) / scale), scale = (max - lo) / 65535, q = 0 below lo;
/// min_log_prob is lo's log-probability.  Little-endian, as llama.cpp writes it
/// on every platform it runs on.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/storage.hpp"

namespace tessera::io {

static_assert(std::endian::native == std::endian::little, "the log-probability file is little-endian");

/// Shape facts of a log-probability file.
struct LogProbLayout {
  /// n_ctx: tokens per chunk; n_vocab: log-probs per row; n_chunk: number of chunks.
  ///@{
  int32_t n_ctx = 0, n_vocab = 0, n_chunk = 0;
  ///@}

  /// Scored positions per chunk: the second half, minus the last (it has no successor).
  int64_t rows_per_chunk() const { return n_ctx - 1 - n_ctx / 2; }
  /// uint16 per row: 4 for the two floats, n_vocab rounded up to even.
  int64_t row_width() const { return 2 * ((static_cast<int64_t>(n_vocab) + 1) / 2) + 4; }
  /// Bytes before the first row: magic, the three counts and the tokens.
  size_t header_bytes() const { return 8 + 3 * 4 + static_cast<size_t>(n_chunk) * static_cast<size_t>(n_ctx) * 4; }
  /// Size of the whole file: header, then n_chunk * rows_per_chunk rows of row_width uint16.
  size_t file_bytes() const {
    return header_bytes() + static_cast<size_t>(n_chunk) * static_cast<size_t>(rows_per_chunk()) *
                                static_cast<size_t>(row_width()) * 2;
  }
};

/// One compressed row: log p(i) for token i.
struct LogProbRow {
  /// The row's dequantization: log p(i) = scale * q[i] + min_log_prob.
  ///@{
  float scale = 0, min_log_prob = 0;
  ///@}
  std::span<const uint16_t> q;  ///< [n_vocab]
  /// log p(i) of token i (no range check).
  float log_prob(int32_t i) const { return scale * static_cast<float>(q[static_cast<size_t>(i)]) + min_log_prob; }
};

/// Reads a log-probability file in place (mmap).  Error naming the file when
/// the magic, the sizes or the length do not add up, or a token is out of range.
class LogProbReader {
 public:
  /// Maps path and checks the header, the size and every token.
  static LogProbReader open(const std::string& path) { return LogProbReader(std::make_shared<MappedFile>(path)); }

  const LogProbLayout& layout() const { return layout_; }  ///< The counts from the header.
  /// All n_chunk * n_ctx tokens.
  std::span<const int32_t> tokens() const { return tokens_; }
  /// Row r (0 .. rows_per_chunk) of chunk c: the log-probs at position n_ctx/2 + r.
  LogProbRow row(int64_t chunk, int64_t r) const {
    check(chunk >= 0 && chunk < layout_.n_chunk && r >= 0 && r < layout_.rows_per_chunk(), file_->path(),
          ": row ", r, " of chunk ", chunk, " out of range");
    const size_t at = layout_.header_bytes() +
                      (static_cast<size_t>(chunk) * static_cast<size_t>(layout_.rows_per_chunk()) + static_cast<size_t>(r)) *
                          static_cast<size_t>(layout_.row_width()) * 2;
    const std::byte* p = file_->data() + at;
    LogProbRow out;
    std::memcpy(&out.scale, p, 4);
    std::memcpy(&out.min_log_prob, p + 4, 4);
    out.q = {reinterpret_cast<const uint16_t*>(p + 8), static_cast<size_t>(layout_.n_vocab)};
    return out;
  }

 private:
  explicit LogProbReader(std::shared_ptr<MappedFile> file) : file_(std::move(file)) {
    const std::string& name = file_->path();
    const size_t size = file_->size();
    check(size >= 20 && std::memcmp(file_->data(), "_logits_", 8) == 0, name,
          ": not a log-probability file (llama-perplexity --kl-divergence-base writes them)");
    std::memcpy(&layout_.n_ctx, file_->data() + 8, 4);
    std::memcpy(&layout_.n_vocab, file_->data() + 12, 4);
    std::memcpy(&layout_.n_chunk, file_->data() + 16, 4);
    check(layout_.n_ctx >= 4 && layout_.n_vocab > 0 && layout_.n_chunk > 0, name, ": bad header (n_ctx ",
          layout_.n_ctx, ", n_vocab ", layout_.n_vocab, ", n_chunk ", layout_.n_chunk, ")");
    check(size == layout_.file_bytes(), name, ": ", size, " bytes, but n_ctx ", layout_.n_ctx, ", n_vocab ",
          layout_.n_vocab, " and ", layout_.n_chunk, " chunks make ", layout_.file_bytes());
    // Rows are 2-byte aligned in the file; the mapping is page aligned.
    tokens_ = {reinterpret_cast<const int32_t*>(file_->data() + 20),
               static_cast<size_t>(layout_.n_chunk) * static_cast<size_t>(layout_.n_ctx)};
    for (size_t i = 0; i < tokens_.size(); ++i)
      check(tokens_[i] >= 0 && tokens_[i] < layout_.n_vocab, name, ": token ", i, " is ", tokens_[i],
            ", outside the vocabulary of ", layout_.n_vocab);
  }

  std::shared_ptr<MappedFile> file_;
  LogProbLayout layout_;
  std::span<const int32_t> tokens_;
};

/// The 16-bit row of one position's logits [n_vocab] into out [row_width]
/// (the format above).  Returns the log-sum-exp shift: log p(i) = logit_i - shift.
inline double compress_log_probs(std::span<const float> logits, std::span<uint16_t> out) {
  float mx = logits[0], mn = logits[0];
  for (float v : logits) {
    mx = std::max(mx, v);
    mn = std::min(mn, v);
  }
  mn = std::max(mn, mx - 16.f);
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v - mx));
  const auto log_sum = static_cast<float>(std::log(sum));
  const float scale = (mx - mn) / 65535.f, min_log_prob = mn - mx - log_sum;
  std::memcpy(out.data(), &scale, 4);
  std::memcpy(out.data() + 2, &min_log_prob, 4);
  std::fill(out.begin() + 4, out.end(), uint16_t{0});
  if (scale > 0) {
    const float inv = 1.f / scale;
    for (size_t i = 0; i < logits.size(); ++i)
      if (logits[i] > mn) out[4 + i] = static_cast<uint16_t>(std::nearbyint(inv * (logits[i] - mn)));  // ties to even
  }
  return static_cast<double>(mx) + log_sum;
}

/// Writes a log-probability file: the header with every token at open, then
/// rows in order (chunk by chunk).  Error naming the file on an I/O failure or
/// when close() finds rows missing.
class LogProbWriter {
 public:
  /// Creates path and writes the header with tokens [n_chunk * n_ctx]; Error when the count differs or the
  /// file cannot be created.
  LogProbWriter(const std::string& path, const LogProbLayout& layout, std::span<const int32_t> tokens)
      : path_(path), layout_(layout), row_(static_cast<size_t>(layout.row_width())) {
    check(static_cast<int64_t>(tokens.size()) == static_cast<int64_t>(layout.n_chunk) * layout.n_ctx, path,
          ": ", tokens.size(), " tokens for ", layout.n_chunk, " chunks of ", layout.n_ctx);
    f_.reset(std::fopen(path.c_str(), "wb"));
    check(f_ != nullptr, "cannot write '", path, "'");
    put("_logits_", 8);
    put(&layout.n_ctx, 4);
    put(&layout.n_vocab, 4);
    put(&layout.n_chunk, 4);
    put(tokens.data(), tokens.size() * 4);
  }
  /// Appends the next scored position's logits [n_vocab].
  void write_row(std::span<const float> logits) {
    check(static_cast<int64_t>(logits.size()) == layout_.n_vocab, path_, ": row of ", logits.size(),
          " logits for a vocabulary of ", layout_.n_vocab);
    compress_log_probs(logits, row_);
    put(row_.data(), row_.size() * 2);
    ++rows_;
  }
  /// Closes the file; Error when fewer or more rows than the layout's were written, or on an I/O failure.
  void close() {
    const int64_t want = static_cast<int64_t>(layout_.n_chunk) * layout_.rows_per_chunk();
    check(rows_ == want, path_, ": ", rows_, " rows written, the header promises ", want);
    check(std::fclose(f_.release()) == 0, "error closing '", path_, "'");
  }

 private:
  void put(const void* p, size_t n) { check(std::fwrite(p, 1, n, f_.get()) == n, "error writing '", path_, "'"); }
  struct Close {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::string path_;
  LogProbLayout layout_;
  std::vector<uint16_t> row_;
  std::unique_ptr<std::FILE, Close> f_;
  int64_t rows_ = 0;
};

}  // namespace tessera::io
