// runtime::Metrics: quantiles against their definition on random samples,
// request timelines whose TTFT / ITL / end-to-end values are known by
// construction, the bounded window, step figures, and the JSON and Prometheus
// texts read back and compared with the snapshot they came from.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tessera/runtime/metrics.hpp"

using namespace tessera;
using runtime::quantile;

namespace {

// The value after "key": in a flat stretch of JSON (the first occurrence after `from`).
double json_number(const std::string& json, const std::string& key, size_t from = 0) {
  const size_t at = json.find("\"" + key + "\":", from);
  REQUIRE(at != std::string::npos);
  const char* p = json.c_str() + at + key.size() + 3;
  if (std::string(p, 4) == "null") return std::nan("");
  char* end = nullptr;
  const double v = std::strtod(p, &end);
  REQUIRE(end != p);
  return v;
}

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

}  // namespace

TEST_CASE("quantile: ends, order statistics and monotone in q on random samples", "[metrics]") {
  std::mt19937 rng(7);
  for (int n : {1, 2, 3, 10, 101, 1000}) {
    std::vector<double> v(static_cast<size_t>(n));
    std::uniform_real_distribution<double> u(-5.0, 5.0);
    for (double& x : v) x = u(rng);
    std::vector<double> s = v;
    std::sort(s.begin(), s.end());
    CHECK(quantile(v, 0.0) == s.front());
    CHECK(quantile(v, 1.0) == s.back());
    // where (n - 1) q is a whole number the quantile is that order statistic exactly
    for (int k = 0; k < n; k += std::max(1, n / 7))
      CHECK(quantile(v, n == 1 ? 0.0 : static_cast<double>(k) / (n - 1)) == Approx(s[static_cast<size_t>(k)]).margin(1e-12));
    double prev = -1e300;
    for (int i = 0; i <= 200; ++i) {
      const double q = quantile(v, i / 200.0);
      CHECK(q >= prev);
      CHECK(q >= s.front());
      CHECK(q <= s.back());
      prev = q;
    }
  }
  // between ranks: the straight line between the neighbours
  CHECK(quantile({10.0, 20.0}, 0.25) == Approx(12.5));
  CHECK(std::isnan(quantile({}, 0.5)));
  CHECK_THROWS_WITH(quantile({1.0}, 1.5), Catch::Contains("outside [0, 1]"));
}

TEST_CASE("Metrics: TTFT, inter-token and end-to-end latencies of known timelines", "[metrics]") {
  runtime::Metrics m;
  // Request r arrives at a_r, gets its first token d_r later, then tokens every g_r, n_r tokens in all.
  struct Req {
    uint64_t id;
    double arrival, ttft, gap;
    int tokens;
    int64_t prompt;
  };
  const std::vector<Req> reqs = {{1, 0.0, 0.5, 0.1, 5, 10}, {2, 0.2, 0.25, 0.2, 3, 7}, {3, 1.0, 1.0, 0.05, 9, 100}};
  std::vector<double> ttft, itl, e2e;
  for (const Req& r : reqs) {
    m.on_arrival(r.id, r.arrival, r.prompt);
    ttft.push_back(r.ttft);
    for (int i = 1; i < r.tokens; ++i) itl.push_back(r.gap);
    e2e.push_back(r.ttft + r.gap * (r.tokens - 1));
  }
  for (const Req& r : reqs)
    for (int i = 0; i < r.tokens; ++i) m.on_tokens(r.id, r.arrival + r.ttft + r.gap * i);
  for (const Req& r : reqs) m.on_finish(r.id, r.arrival + r.ttft + r.gap * (r.tokens - 1));

  const double now = 10.0;
  const auto s = m.snapshot(now);
  CHECK(s.requests_started == 3);
  CHECK(s.requests_finished == 3);
  CHECK(s.requests_running == 0);
  CHECK(s.prompt_tokens == 117);
  CHECK(s.output_tokens == 17);
  CHECK(s.uptime_s == Approx(now));
  CHECK(s.output_tokens_per_s == Approx(17 / now));
  CHECK(s.prompt_tokens_per_s == Approx(117 / now));
  CHECK(s.requests_per_s == Approx(3 / now));
  const std::pair<const runtime::LatencySummary*, std::vector<double>*> kinds[] = {{&s.ttft, &ttft}, {&s.itl, &itl},
                                                                                  {&s.e2e, &e2e}};
  for (const auto& [sum, want] : kinds) {
    CHECK(sum->count == static_cast<int64_t>(want->size()));
    CHECK(sum->p50 == Approx(quantile(*want, 0.5)));
    CHECK(sum->p95 == Approx(quantile(*want, 0.95)));
    CHECK(sum->p99 == Approx(quantile(*want, 0.99)));
    double total = 0;
    for (double x : *want) total += x;
    CHECK(sum->sum == Approx(total));
    CHECK(sum->mean == Approx(total / static_cast<double>(want->size())));
    CHECK(sum->max == Approx(*std::max_element(want->begin(), want->end())));
  }
}

TEST_CASE("Metrics: several tokens in one event share the gap and the first event.s extras wait 0", "[metrics]") {
  runtime::Metrics m;
  m.on_arrival(9, 1.0, 4);
  m.on_tokens(9, 1.5, 3);  // first event: TTFT 0.5, two more tokens at the same instant
  m.on_tokens(9, 2.1, 4);  // 0.6 s for four tokens
  const auto s = m.snapshot(3.0);
  CHECK(s.output_tokens == 7);
  CHECK(s.ttft.count == 1);
  CHECK(s.ttft.p50 == Approx(0.5));
  CHECK(s.itl.count == 6);
  CHECK(s.itl.sum == Approx(0.6));
  CHECK(s.itl.max == Approx(0.15));
  CHECK(s.requests_running == 1);
  CHECK(std::isnan(s.e2e.p50));
}

TEST_CASE("Metrics: quantiles over the last window samples, totals over all", "[metrics]") {
  const size_t window = 16;
  runtime::Metrics m(window);
  std::vector<double> all;
  for (uint64_t id = 0; id < 100; ++id) {
    const double t = static_cast<double>(id);
    const double wait = 0.001 * static_cast<double>((id * 37) % 101);
    m.on_arrival(id, t, 1);
    m.on_tokens(id, t + wait);
    m.on_finish(id, t + wait);
    all.push_back(wait);
  }
  const auto s = m.snapshot(100.0);
  const std::vector<double> recent(all.end() - static_cast<long>(window), all.end());
  CHECK(s.ttft.count == 100);
  CHECK(s.ttft.p50 == Approx(quantile(recent, 0.5)));
  CHECK(s.ttft.p99 == Approx(quantile(recent, 0.99)));
  CHECK(s.ttft.max == Approx(*std::max_element(all.begin(), all.end())));
  double total = 0;
  for (double x : all) total += x;
  CHECK(s.ttft.sum == Approx(total));
}

TEST_CASE("Metrics: steps give batch sizes, KV use and bandwidth against STREAM", "[metrics]") {
  const double stream = 20e9;
  runtime::Metrics m(1024, stream);
  const int sizes[] = {1, 4, 16, 3};
  double bytes = 0, secs = 0;
  int64_t rows = 0;
  for (int i = 0; i < 4; ++i) {
    runtime::StepStats st;
    st.start = i * 0.01;
    st.seconds = 0.004 + 0.001 * i;
    st.n_seqs = sizes[i];
    st.n_tokens = sizes[i] * (i + 1);
    st.bytes_read = 1e8 + 1e6 * sizes[i];
    st.kv_used = 10 * sizes[i];
    st.kv_total = 200;
    m.on_step(st);
    bytes += st.bytes_read;
    secs += st.seconds;
    rows += st.n_tokens;
  }
  const auto s = m.snapshot(1.0);
  CHECK(s.steps == 4);
  CHECK(s.batch_mean == Approx(24.0 / 4));
  CHECK(s.batch_max == 16);
  CHECK(s.step_tokens_mean == Approx(static_cast<double>(rows) / 4));
  CHECK(s.kv_used == 30);
  CHECK(s.kv_peak == 160);
  CHECK(s.kv_total == 200);
  CHECK(s.bandwidth_bytes_per_s == Approx(bytes / secs));
  CHECK(s.bandwidth_utilisation == Approx(bytes / secs / stream));

  runtime::StepStats bad;
  bad.kv_used = 5;
  bad.kv_total = 4;
  CHECK_THROWS_WITH(m.on_step(bad), Catch::Contains("more KV blocks used (5) than the pool has (4)"));
  CHECK(std::isnan(runtime::Metrics().snapshot(0).bandwidth_utilisation));
}

TEST_CASE("Metrics: misuse is an Error that names the request", "[metrics]") {
  runtime::Metrics m;
  m.on_arrival(5, 1.0, 3);
  CHECK_THROWS_WITH(m.on_arrival(5, 1.0, 3), Catch::Contains("request 5 arrived twice"));
  CHECK_THROWS_WITH(m.on_tokens(6, 2.0), Catch::Contains("request 6 is not running"));
  CHECK_THROWS_WITH(m.on_tokens(5, 0.5), Catch::Contains("before its previous event"));
  CHECK_THROWS_WITH(m.on_finish(5, 0.5), Catch::Contains("before it arrived"));
  CHECK_THROWS_WITH(m.on_arrival(7, 1.0, -1), Catch::Contains("-1 prompt tokens"));
  CHECK_THROWS_WITH(runtime::Metrics(0), Catch::Contains("window"));
  m.on_finish(5, 2.0);
  CHECK_THROWS_WITH(m.on_finish(5, 3.0), Catch::Contains("request 5 is not running"));
}

TEST_CASE("Metrics: the JSON and Prometheus texts carry the snapshot's figures", "[metrics]") {
  runtime::Metrics m(64, 10e9);
  for (uint64_t id = 0; id < 5; ++id) {
    const double t = 0.1 * static_cast<double>(id);
    m.on_arrival(id, t, 8 + static_cast<int64_t>(id));
    for (int k = 0; k < 4; ++k) m.on_tokens(id, t + 0.05 + 0.02 * k + 0.001 * static_cast<double>(id));
    if (id != 4) m.on_finish(id, t + 0.2);
  }
  runtime::StepStats st;
  st.seconds = 0.01;
  st.n_seqs = 5;
  st.n_tokens = 5;
  st.bytes_read = 5e7;
  st.kv_used = 7;
  st.kv_total = 64;
  m.on_step(st);
  const auto s = m.snapshot(2.0);

  const std::string json = runtime::to_json(s);
  CHECK(json.front() == '{');
  CHECK(json.back() == '}');
  CHECK(std::count(json.begin(), json.end(), '{') == std::count(json.begin(), json.end(), '}'));
  CHECK(json.find(",,") == std::string::npos);
  CHECK(json_number(json, "requests_finished") == 4);
  CHECK(json_number(json, "requests_running") == 1);
  CHECK(json_number(json, "output_tokens") == 20);
  CHECK(json_number(json, "output_tokens_per_s") == s.output_tokens_per_s);
  CHECK(json_number(json, "p99", json.find("\"itl_s\"")) == s.itl.p99);
  CHECK(json_number(json, "count", json.find("\"e2e_s\"")) == 4);
  CHECK(json_number(json, "bandwidth_utilisation") == s.bandwidth_utilisation);
  CHECK(std::isnan(json_number(runtime::to_json(runtime::Metrics().snapshot(0)), "p50")));

  // Prometheus: every sample line is `name{labels} value`, every name has HELP and TYPE first.
  const std::string text = runtime::to_prometheus(s);
  const std::regex sample(R"(^([a-z_]+)(\{quantile="[0-9.]+"\})? (\S+)$)");
  std::map<std::string, double> values;
  std::map<std::string, int> typed;
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    std::smatch g;
    if (line.rfind("# TYPE ", 0) == 0) {
      typed[line.substr(7, line.find(' ', 7) - 7)] = 1;
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0) continue;
    INFO(line);
    REQUIRE(std::regex_match(line, g, sample));
    std::string base = g[1];
    for (const char* suffix : {"_sum", "_count"})
      if (!typed.count(base) && base.size() > std::strlen(suffix) &&
          base.compare(base.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        base = base.substr(0, base.size() - std::strlen(suffix));
    CHECK(typed.count(base) == 1);
    values[std::string(g[1]) + std::string(g[2])] = std::strtod(std::string(g[3]).c_str(), nullptr);
    ++samples;
  }
  CHECK(samples > 20);
  CHECK(values["tessera_generation_tokens_total"] == 20);
  CHECK(values["tessera_requests_running"] == 1);
  CHECK(same(values["tessera_time_to_first_token_seconds{quantile=\"0.95\"}"], s.ttft.p95));
  CHECK(values["tessera_inter_token_latency_seconds_count"] == static_cast<double>(s.itl.count));
  CHECK(same(values["tessera_request_latency_seconds_sum"], s.e2e.sum));
  CHECK(values["tessera_kv_blocks_used"] == 7);
  CHECK(same(values["tessera_memory_bandwidth_utilisation_ratio"], s.bandwidth_utilisation));
}
