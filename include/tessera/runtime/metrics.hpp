/// \file
/// Serving metrics: per request time to first token (TTFT), inter-token
/// latency (ITL) and end-to-end latency; per step batch size, rows, KV-pool use
/// and the memory bandwidth the step achieved; across requests p50/p95/p99,
/// tokens/s in and out, requests/s. Read as a Snapshot struct, as JSON, or as
/// Prometheus text. Thread-safe: a serving loop records while an HTTP thread reads.
///
/// Latency quantiles are over the last `window` samples of each kind (memory
/// stays bounded on a server that runs for days); counts and sums are over
/// everything since construction. Times are seconds on any one clock.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::runtime {

/// The q-quantile (q in [0, 1]) of `v` by linear interpolation between the
/// closest ranks (numpy's default): rank h = (n - 1) q, value v[floor h] +
/// (h - floor h) (v[floor h + 1] - v[floor h]) of the sorted samples.  NaN for
/// an empty `v`.  O(n log n).
inline double quantile(std::vector<double> v, double q) {
  check(q >= 0.0 && q <= 1.0, "quantile: q = ", q, " outside [0, 1]");
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const double h = static_cast<double>(v.size() - 1) * q;
  const size_t lo = static_cast<size_t>(std::floor(h));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (h - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

/// A latency distribution: quantiles over the recent window, count / sum / max over all samples.
struct LatencySummary {
  double p50 = std::numeric_limits<double>::quiet_NaN();  ///< median of the window, seconds (NaN: no sample)
  double p95 = std::numeric_limits<double>::quiet_NaN();  ///< 95th percentile of the window, seconds
  double p99 = std::numeric_limits<double>::quiet_NaN();  ///< 99th percentile of the window, seconds
  double mean = std::numeric_limits<double>::quiet_NaN();  ///< sum / count, over all samples
  double max = std::numeric_limits<double>::quiet_NaN();   ///< largest sample ever seen
  double sum = 0.0;   ///< sum of all samples, seconds
  int64_t count = 0;  ///< number of samples since construction
};

/// What one batched forward step did, as the serving loop reports it.
struct StepStats {
  double start = 0.0;        ///< when the step began, seconds
  double seconds = 0.0;      ///< how long it took
  int n_seqs = 0;            ///< sequences in the step (the batch size)
  int64_t n_tokens = 0;      ///< rows evaluated (prompt chunks + decode tokens)
  double bytes_read = 0.0;   ///< bytes the step had to read (weights once + every sequence's KV)
  int64_t kv_used = 0;       ///< KV-pool blocks held after the step
  int64_t kv_total = 0;      ///< KV-pool blocks in all
};

/// Everything at one moment: see Metrics::snapshot.
struct MetricsSnapshot {
  double uptime_s = 0.0;            ///< from the first event to `now`
  int64_t requests_started = 0;     ///< requests accepted
  int64_t requests_finished = 0;    ///< requests ended (finished, stopped, cancelled or failed)
  int64_t requests_running = 0;     ///< accepted and not yet ended
  int64_t prompt_tokens = 0;        ///< prompt tokens of the accepted requests
  int64_t output_tokens = 0;        ///< tokens generated
  double prompt_tokens_per_s = 0.0;  ///< prompt_tokens / uptime_s
  double output_tokens_per_s = 0.0;  ///< output_tokens / uptime_s
  double requests_per_s = 0.0;       ///< requests_finished / uptime_s
  LatencySummary ttft;               ///< arrival to first output token
  LatencySummary itl;                ///< between consecutive output tokens of one request
  LatencySummary e2e;                ///< arrival to end
  int64_t steps = 0;                 ///< batched steps run
  double batch_mean = 0.0;           ///< mean sequences per step
  int batch_max = 0;                 ///< most sequences in one step
  double step_tokens_mean = 0.0;     ///< mean rows per step
  int64_t kv_used = 0;               ///< KV-pool blocks held after the last step
  int64_t kv_total = 0;              ///< KV-pool blocks in all
  int64_t kv_peak = 0;               ///< most blocks ever held after a step
  double bandwidth_bytes_per_s = 0.0;  ///< bytes read by all steps / their time
  double stream_bytes_per_s = 0.0;     ///< the machine's measured bandwidth (0: not given)
  double bandwidth_utilisation = std::numeric_limits<double>::quiet_NaN();  ///< the ratio of the two (NaN: not given)
};

/// Collects serving events and summarises them.  Every method takes the lock;
/// each event is O(1) amortised, snapshot() is O(window log window).
class Metrics {
 public:
  /// `window`: latency samples kept per kind for the quantiles (at least 1).
  /// `stream_bytes_per_s`: measured memory bandwidth the steps are compared with (0: none).
  explicit Metrics(size_t window = 65536, double stream_bytes_per_s = 0.0)
      : ttft_(window), itl_(window), e2e_(window), stream_(stream_bytes_per_s) {
    check(window > 0, "Metrics: window must be at least 1");
    check(stream_bytes_per_s >= 0.0, "Metrics: stream bandwidth ", stream_bytes_per_s, " is negative");
  }

  /// Request `id` accepted at time `t` with `prompt_tokens` tokens.  Error if `id` is running.
  void on_arrival(uint64_t id, double t, int64_t prompt_tokens) {
    std::lock_guard lock(mu_);
    check(prompt_tokens >= 0, "Metrics: request ", id, " with ", prompt_tokens, " prompt tokens");
    check(running_.emplace(id, Running{t, -1.0}).second, "Metrics: request ", id, " arrived twice");
    seen(t);
    ++started_;
    prompt_tokens_ += prompt_tokens;
  }

  /// Request `id` produced `n` output tokens at time `t` (n > 1: a speculative
  /// step's accepted tokens, which arrive together).  Error for an unknown id or
  /// a time before the request's previous event.
  void on_tokens(uint64_t id, double t, int64_t n = 1) {
    std::lock_guard lock(mu_);
    Running& r = find(id);
    check(n > 0, "Metrics: request ", id, " produced ", n, " tokens");
    check(t >= r.arrival && t >= r.last, "Metrics: request ", id, " token at ", t, " before its previous event");
    seen(t);
    if (r.last < 0) {
      // the first token ends the TTFT; the others that came with it waited 0 after it
      ttft_.add(t - r.arrival);
      for (int64_t i = 1; i < n; ++i) itl_.add(0.0);
    } else {
      // n tokens in one event share the gap evenly, so per-token ITL stays comparable
      const double gap = (t - r.last) / static_cast<double>(n);
      for (int64_t i = 0; i < n; ++i) itl_.add(gap);
    }
    r.last = t;
    output_tokens_ += n;
  }

  /// Request `id` ended at time `t` (whatever the reason).  Error for an unknown id.
  void on_finish(uint64_t id, double t) {
    std::lock_guard lock(mu_);
    Running& r = find(id);
    check(t >= r.arrival, "Metrics: request ", id, " finished at ", t, " before it arrived at ", r.arrival);
    seen(t);
    e2e_.add(t - r.arrival);
    running_.erase(id);
    ++finished_;
  }

  /// One batched step.  Error for a negative duration, size or byte count, or kv_used > kv_total.
  void on_step(const StepStats& s) {
    std::lock_guard lock(mu_);
    check(s.seconds >= 0.0 && s.n_seqs >= 0 && s.n_tokens >= 0 && s.bytes_read >= 0.0 && s.kv_used >= 0 &&
              s.kv_used <= s.kv_total,
          "Metrics: step with a negative figure or more KV blocks used (", s.kv_used, ") than the pool has (",
          s.kv_total, ")");
    seen(s.start);
    seen(s.start + s.seconds);
    ++steps_;
    batch_sum_ += s.n_seqs;
    batch_max_ = std::max(batch_max_, s.n_seqs);
    step_tokens_ += s.n_tokens;
    step_seconds_ += s.seconds;
    step_bytes_ += s.bytes_read;
    kv_used_ = s.kv_used;
    kv_total_ = s.kv_total;
    kv_peak_ = std::max(kv_peak_, s.kv_used);
  }

  /// The figures at time `now` (rates are over the time from the first event to `now`).
  MetricsSnapshot snapshot(double now) const {
    std::lock_guard lock(mu_);
    MetricsSnapshot m;
    m.uptime_s = first_ < 0 ? 0.0 : std::max(0.0, now - first_);
    m.requests_started = started_;
    m.requests_finished = finished_;
    m.requests_running = static_cast<int64_t>(running_.size());
    m.prompt_tokens = prompt_tokens_;
    m.output_tokens = output_tokens_;
    if (m.uptime_s > 0) {
      m.prompt_tokens_per_s = static_cast<double>(prompt_tokens_) / m.uptime_s;
      m.output_tokens_per_s = static_cast<double>(output_tokens_) / m.uptime_s;
      m.requests_per_s = static_cast<double>(finished_) / m.uptime_s;
    }
    m.ttft = ttft_.summary();
    m.itl = itl_.summary();
    m.e2e = e2e_.summary();
    m.steps = steps_;
    if (steps_ > 0) {
      m.batch_mean = static_cast<double>(batch_sum_) / static_cast<double>(steps_);
      m.step_tokens_mean = static_cast<double>(step_tokens_) / static_cast<double>(steps_);
    }
    m.batch_max = batch_max_;
    m.kv_used = kv_used_;
    m.kv_total = kv_total_;
    m.kv_peak = kv_peak_;
    if (step_seconds_ > 0) m.bandwidth_bytes_per_s = step_bytes_ / step_seconds_;
    m.stream_bytes_per_s = stream_;
    if (stream_ > 0 && step_seconds_ > 0) m.bandwidth_utilisation = m.bandwidth_bytes_per_s / stream_;
    return m;
  }

 private:
  /// A ring of the last `cap` samples, and running count / sum / max of all of them.
  class Samples {
   public:
    explicit Samples(size_t cap) : cap_(cap) {}
    void add(double x) {
      if (ring_.size() < cap_) {
        ring_.push_back(x);
      } else {
        ring_[next_] = x;
        next_ = (next_ + 1) % cap_;
      }
      ++count_;
      sum_ += x;
      max_ = count_ == 1 ? x : std::max(max_, x);
    }
    LatencySummary summary() const {
      LatencySummary s;
      s.count = count_;
      s.sum = sum_;
      if (count_ == 0) return s;
      s.p50 = quantile(ring_, 0.50);
      s.p95 = quantile(ring_, 0.95);
      s.p99 = quantile(ring_, 0.99);
      s.mean = sum_ / static_cast<double>(count_);
      s.max = max_;
      return s;
    }

   private:
    size_t cap_, next_ = 0;
    std::vector<double> ring_;
    int64_t count_ = 0;
    double sum_ = 0.0, max_ = 0.0;
  };

  struct Running {
    double arrival, last;  // last < 0: no token yet
  };

  Running& find(uint64_t id) {
    auto it = running_.find(id);
    check(it != running_.end(), "Metrics: request ", id, " is not running");
    return it->second;
  }
  void seen(double t) {
    if (first_ < 0 || t < first_) first_ = t;
  }

  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Running> running_;
  Samples ttft_, itl_, e2e_;
  double stream_;
  double first_ = -1.0;
  int64_t started_ = 0, finished_ = 0, prompt_tokens_ = 0, output_tokens_ = 0;
  int64_t steps_ = 0, batch_sum_ = 0, step_tokens_ = 0, kv_used_ = 0, kv_total_ = 0, kv_peak_ = 0;
  int batch_max_ = 0;
  double step_seconds_ = 0.0, step_bytes_ = 0.0;
};

namespace detail {

/// A number as JSON or Prometheus text: shortest round-trip form; NaN as `nan_text`.
inline std::string metric_number(double x, const char* nan_text) {
  if (std::isnan(x)) return nan_text;
  if (std::isinf(x)) return x > 0 ? "1e308" : "-1e308";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

inline void json_summary(std::string& out, const char* key, const LatencySummary& s) {
  out += "\"";
  out += key;
  out += "\":{\"p50\":" + metric_number(s.p50, "null") + ",\"p95\":" + metric_number(s.p95, "null") +
         ",\"p99\":" + metric_number(s.p99, "null") + ",\"mean\":" + metric_number(s.mean, "null") +
         ",\"max\":" + metric_number(s.max, "null") + ",\"sum\":" + metric_number(s.sum, "null") +
         ",\"count\":" + std::to_string(s.count) + "}";
}

}  // namespace detail

/// The snapshot as one JSON object (seconds, tokens, bytes; NaN as null).
/// Keys: the MetricsSnapshot field names; latencies as objects
/// {p50, p95, p99, mean, max, sum, count}.
inline std::string to_json(const MetricsSnapshot& m) {
  using detail::metric_number;
  std::string o = "{";
  // appended piece by piece: g++ 12 misreports `"lit" + std::string(...)` chains under -Wrestrict
  auto key = [&](const char* k) { o.append("\"").append(k).append("\":"); };
  auto num = [&](const char* k, double v) { key(k); o.append(metric_number(v, "null")).append(","); };
  auto cnt = [&](const char* k, int64_t v) { key(k); o.append(std::to_string(v)).append(","); };
  num("uptime_s", m.uptime_s);
  cnt("requests_started", m.requests_started);
  cnt("requests_finished", m.requests_finished);
  cnt("requests_running", m.requests_running);
  cnt("prompt_tokens", m.prompt_tokens);
  cnt("output_tokens", m.output_tokens);
  num("prompt_tokens_per_s", m.prompt_tokens_per_s);
  num("output_tokens_per_s", m.output_tokens_per_s);
  num("requests_per_s", m.requests_per_s);
  detail::json_summary(o, "ttft_s", m.ttft);
  o += ",";
  detail::json_summary(o, "itl_s", m.itl);
  o += ",";
  detail::json_summary(o, "e2e_s", m.e2e);
  o += ",";
  cnt("steps", m.steps);
  num("batch_mean", m.batch_mean);
  cnt("batch_max", m.batch_max);
  num("step_tokens_mean", m.step_tokens_mean);
  cnt("kv_used", m.kv_used);
  cnt("kv_total", m.kv_total);
  cnt("kv_peak", m.kv_peak);
  num("bandwidth_bytes_per_s", m.bandwidth_bytes_per_s);
  num("stream_bytes_per_s", m.stream_bytes_per_s);
  num("bandwidth_utilisation", m.bandwidth_utilisation);
  o.back() = '}';
  return o;
}

/// The snapshot in Prometheus' text exposition format (version 0.0.4): each
/// metric with `# HELP` and `# TYPE`; latencies as summaries (quantile 0.5 / 0.95 /
/// 0.99, `_sum`, `_count`), totals as counters, the rest as gauges; names start
/// with `prefix_`.  NaN is written NaN, as the format allows.
inline std::string to_prometheus(const MetricsSnapshot& m, const std::string& prefix = "tessera") {
  using detail::metric_number;
  std::string o;
  auto head = [&](const std::string& name, const char* type, const char* help) {
    o += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto one = [&](const char* name, const char* type, const char* help, double v) {
    const std::string n = prefix + "_" + name;
    head(n, type, help);
    o += n + " " + metric_number(v, "NaN") + "\n";
  };
  auto summary = [&](const char* name, const char* help, const LatencySummary& s) {
    const std::string n = prefix + "_" + name;
    head(n, "summary", help);
    o += n + "{quantile=\"0.5\"} " + metric_number(s.p50, "NaN") + "\n";
    o += n + "{quantile=\"0.95\"} " + metric_number(s.p95, "NaN") + "\n";
    o += n + "{quantile=\"0.99\"} " + metric_number(s.p99, "NaN") + "\n";
    o += n + "_sum " + metric_number(s.sum, "NaN") + "\n";
    o += n + "_count " + std::to_string(s.count) + "\n";
  };
  auto d = [](int64_t v) { return static_cast<double>(v); };
  one("uptime_seconds", "gauge", "Seconds from the first event to the snapshot.", m.uptime_s);
  one("requests_started_total", "counter", "Requests accepted.", d(m.requests_started));
  one("requests_finished_total", "counter", "Requests ended, for any reason.", d(m.requests_finished));
  one("requests_running", "gauge", "Requests accepted and not yet ended.", d(m.requests_running));
  one("prompt_tokens_total", "counter", "Prompt tokens of the accepted requests.", d(m.prompt_tokens));
  one("generation_tokens_total", "counter", "Tokens generated.", d(m.output_tokens));
  summary("time_to_first_token_seconds", "Arrival to the first output token.", m.ttft);
  summary("inter_token_latency_seconds", "Time between consecutive output tokens of a request.", m.itl);
  summary("request_latency_seconds", "Arrival to the end of a request.", m.e2e);
  one("steps_total", "counter", "Batched forward steps run.", d(m.steps));
  one("batch_size_mean", "gauge", "Mean sequences per step.", m.batch_mean);
  one("batch_size_max", "gauge", "Most sequences in one step.", d(m.batch_max));
  one("kv_blocks_used", "gauge", "KV-pool blocks held after the last step.", d(m.kv_used));
  one("kv_blocks_total", "gauge", "KV-pool blocks in all.", d(m.kv_total));
  one("kv_blocks_peak", "gauge", "Most KV-pool blocks held after a step.", d(m.kv_peak));
  one("memory_bandwidth_bytes_per_second", "gauge", "Bytes the steps read over the time they took.",
      m.bandwidth_bytes_per_s);
  one("memory_bandwidth_utilisation_ratio", "gauge", "Step bandwidth over the measured STREAM bandwidth.",
      m.bandwidth_utilisation);
  return o;
}

}  // namespace tessera::runtime
