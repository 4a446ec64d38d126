// sample/: the Rng against xoshiro256**'s reference values, each processor on
// a hand-derived case and as a property over random logits (n_vocab 1..5000),
// the categorical draw against its probabilities (chi-square over 100k
// draws), and the Sampler chain against an independent double-precision
// reference, its seeding and its errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "../test_util.hpp"
#include "tessera/sample/candidates.hpp"
#include "tessera/sample/penalty.hpp"
#include "tessera/sample/processors.hpp"
#include "tessera/sample/rng.hpp"
#include "tessera/sample/sampler.hpp"

using namespace tessera;
using namespace tessera::sample;
using Catch::Matchers::Contains;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Vocabulary sizes for the property tests: 1, primes, powers of two and their
// neighbours (256 is the first chunk of top-p's partial sort), and random ones.
std::vector<size_t> property_sizes() {
  std::vector<size_t> sizes = {1, 2, 3, 5, 7, 31, 40, 41, 64, 97, 255, 256, 257, 513, 1000, 4999, 5000};
  std::uniform_int_distribution<size_t> d(1, 5000);
  for (int i = 0; i < 12; ++i) sizes.push_back(d(test::rng()));
  return sizes;
}

// Normal logits of standard deviation `sd`. With `ties`, rounded to 1/4 so
// that many tokens share a logit; with `bans`, about 1 in 10 is -inf.
std::vector<float> random_logits(size_t n, double sd, bool ties = false, bool bans = false) {
  std::normal_distribution<double> d(0.0, sd);
  std::uniform_int_distribution<int> ban(0, 9);
  std::vector<float> l(n);
  for (auto& x : l) {
    x = static_cast<float>(d(test::rng()));
    if (ties) x = std::round(x * 4.f) / 4.f;
    if (bans && ban(test::rng()) == 0) x = -kInf;
  }
  return l;
}

// Reference ranking: finite tokens by logit descending, then id ascending.
std::vector<int32_t> ranked_ids(const std::vector<float>& l) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < l.size(); ++i)
    if (l[i] != -kInf) ids.push_back(static_cast<int32_t>(i));
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  return ids;
}

// Reference softmax in double of logits / temp over `ids`.
std::vector<double> softmax_ref(const std::vector<float>& l, const std::vector<int32_t>& ids, double temp = 1.0) {
  double m = -INFINITY;
  for (int32_t i : ids) m = std::max(m, static_cast<double>(l[i]));
  std::vector<double> p;
  double sum = 0;
  for (int32_t i : ids) sum += p.emplace_back(std::exp((l[i] - m) / temp));
  for (auto& x : p) x /= sum;
  return p;
}

std::vector<int32_t> ids_of(const Candidates& c) {
  std::vector<int32_t> ids;
  for (const auto& cand : c.kept()) ids.push_back(cand.id);
  return ids;
}

std::vector<int32_t> sorted_ids(const Candidates& c) {
  auto ids = ids_of(c);
  std::sort(ids.begin(), ids.end());
  return ids;
}

// Critical values: test::chi2_critical at significance 1e-6. With a fixed seed
// the test is deterministic; 1e-6 is the chance a correct sampler with some
// other seed would fail, while a bias of a few percent on a token of mass 0.1
// over 100k draws gives a statistic in the hundreds.
using test::chi2_critical;

// Pearson's statistic sum (O - E)^2 / E with E = n p.
double chi2_stat(const std::vector<int64_t>& counts, const std::vector<double>& probs, int64_t n) {
  double s = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = static_cast<double>(n) * probs[i];
    s += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
  }
  return s;
}

Candidates filled(const std::vector<float>& l) {
  Candidates c;
  fill_candidates(l, c);
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------
// Rng

TEST_CASE("Rng: reference values of xoshiro256** and splitmix64", "[sample][rng]") {
  // From state {1, 2, 3, 4} the reference xoshiro256** emits these four.
  Rng r;
  r.set_state({1, 2, 3, 4});
  REQUIRE(r.next() == 11520u);
  REQUIRE(r.next() == 0u);
  REQUIRE(r.next() == 1509978240u);
  REQUIRE(r.next() == 1215971899390074240u);
  // splitmix64 from 0 first emits 0xe220a8397b1dcdaf (its published first value),
  // and that is the first state word of seed 0.
  REQUIRE(Rng(0).state()[0] == 0xe220a8397b1dcdafULL);
  // Seed 42's first output, from an arbitrary-precision implementation of the
  // same two algorithms: pins the seeding so a seed names one stream everywhere.
  REQUIRE(Rng(42).next() == 0x15780b2e0c2ec716ULL);
  REQUIRE_THROWS_WITH(r.set_state({0, 0, 0, 0}), Contains("all-zero"));
}

TEST_CASE("Rng: uniform is in the half-open unit interval, built from the top bits, and replays", "[sample][rng]") {
  Rng a(7), b(7), c(8);
  Rng bits = a;  // a copy continues the same stream
  double sum = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const float u = a.uniform();
    REQUIRE(u >= 0.f);
    REQUIRE(u < 1.f);
    REQUIRE(u == static_cast<float>(bits.next() >> 40) * 0x1.0p-24f);
    REQUIRE(b.uniform() == u);
    sum += u;
  }
  // The mean of n U(0,1) has standard deviation sqrt(1/12 / n) = 9.1e-4; 6 sigma.
  REQUIRE(std::abs(sum / n - 0.5) < 6 * 9.1e-4);
  const double d = c.uniform_double();
  REQUIRE((d >= 0.0 && d < 1.0));
  REQUIRE(Rng(7).next() != Rng(8).next());
  a.reseed(7);
  REQUIRE(a == Rng(7));
}

// ---------------------------------------------------------------------------
// Candidates, greedy, top-k

TEST_CASE("greedy: argmax, lowest id on ties, bad logits rejected", "[sample]") {
  const std::vector<float> l = {1.f, 5.f, -kInf, 5.f, 2.f};
  REQUIRE(greedy(l) == 1);
  REQUIRE(greedy(std::vector<float>{-kInf, -3.f}) == 1);
  REQUIRE_THROWS_WITH(greedy(std::vector<float>{1.f, kNaN}), Contains("token 1") && Contains("nan"));
  REQUIRE_THROWS_WITH(greedy(std::vector<float>{kInf, 1.f}), Contains("token 0") && Contains("inf"));
  REQUIRE_THROWS_WITH(greedy(std::vector<float>{-kInf, -kInf}), Contains("every logit is -inf"));
  REQUIRE_THROWS_WITH(greedy(std::vector<float>{}), Contains("empty"));
  // Property: equals the first id of the reference ranking.
  for (size_t n : property_sizes()) {
    auto r = random_logits(n, 2.0, true, false);
    REQUIRE(greedy(r) == ranked_ids(r)[0]);
  }
}

TEST_CASE("top-k: hand cases, exactly k kept, ties go to lower ids", "[sample][top_k]") {
  // {1, 5, 3, 5, 2}: the two 5s (ids 1, 3) then 3 (id 2).
  const std::vector<float> l = {1.f, 5.f, 3.f, 5.f, 2.f};
  for (bool fused : {false, true}) {
    Candidates c;
    auto keep = [&](size_t k) {
      if (fused) select_top_k(l, k, c);
      else { fill_candidates(l, c); top_k(c, k); }
      return ids_of(c);
    };
    REQUIRE(keep(1) == std::vector<int32_t>{1});
    REQUIRE(keep(2) == std::vector<int32_t>{1, 3});
    REQUIRE(keep(3) == std::vector<int32_t>{1, 3, 2});
    REQUIRE(keep(9).size() == 5);
  }
  // {5, 3, 3, 3, 1}, k = 2: three tokens tie at the boundary; only id 1 stays.
  Candidates c = filled({5.f, 3.f, 3.f, 3.f, 1.f});
  top_k(c, 2);
  REQUIRE(ids_of(c) == std::vector<int32_t>{0, 1});
  c = filled({5.f, 3.f, 3.f, 3.f, 1.f});
  top_k(c, 0);  // 0 = off
  REQUIRE(c.size == 5);
}

TEST_CASE("top-k property: exactly min(k, n) of the best, one-pass selection equals fill + nth_element",
          "[sample][top_k]") {
  std::uniform_int_distribution<size_t> dk(1, 300);
  for (size_t n : property_sizes()) {
    for (bool ties : {false, true}) {
      for (bool bans : {false, true}) {
        const auto l = random_logits(n, 3.0, ties, bans);
        const auto ranked = ranked_ids(l);
        if (ranked.empty()) continue;
        for (size_t k : {size_t{1}, size_t{40}, dk(test::rng()), n, n + 1}) {
          INFO("n=" << n << " k=" << k << " ties=" << ties << " bans=" << bans);
          Candidates ref = filled(l);
          top_k(ref, k);
          const size_t expect = std::min(k, ranked.size());
          REQUIRE(ref.size == expect);
          // The kept set is the reference ranking's first `expect` ids.
          auto ranked_prefix = std::vector<int32_t>(ranked.begin(), ranked.begin() + static_cast<ptrdiff_t>(expect));
          std::sort(ranked_prefix.begin(), ranked_prefix.end());
          REQUIRE(sorted_ids(ref) == ranked_prefix);
          Candidates fast;
          select_top_k(l, k, fast);
          REQUIRE(fast.sorted);
          if (ref.sorted) REQUIRE(ids_of(fast) == ids_of(ref));   // same order too
          else REQUIRE(sorted_ids(fast) == ranked_prefix);         // k >= n: top_k left it unsorted
          for (size_t i = 0; i < fast.size; ++i) REQUIRE(fast.data[i].logit == l[static_cast<size_t>(fast.data[i].id)]);
        }
      }
    }
  }
}

TEST_CASE("candidate selection rejects NaN and +inf anywhere, skips -inf", "[sample]") {
  for (size_t n : {size_t{1}, size_t{7}, size_t{300}}) {
    for (size_t at : {size_t{0}, n / 2, n - 1}) {
      auto l = random_logits(n, 1.0);
      for (float bad : {kNaN, kInf}) {
        l[at] = bad;
        Candidates c;
        INFO("n=" << n << " at=" << at << " bad=" << bad);
        const auto where = "token " + std::to_string(at);
        REQUIRE_THROWS_WITH(fill_candidates(l, c), Contains(where));
        REQUIRE_THROWS_WITH(select_top_k(l, 1, c), Contains(where));
        REQUIRE_THROWS_WITH(select_top_k(l, 40, c), Contains(where));
      }
    }
  }
  Candidates c;
  const std::vector<float> l = {-kInf, 2.f, -kInf, 1.f};
  fill_candidates(l, c);
  REQUIRE(ids_of(c) == std::vector<int32_t>{1, 3});
  select_top_k(l, 3, c);
  REQUIRE(ids_of(c) == std::vector<int32_t>{1, 3});
  REQUIRE_THROWS_WITH(select_top_k(std::vector<float>{-kInf}, 1, c), Contains("every logit is -inf"));
  REQUIRE_THROWS_WITH(fill_candidates(std::vector<float>{-kInf}, c), Contains("every logit is -inf"));
}

TEST_CASE("processors reject an empty or overfull hand-built candidate list", "[sample]") {
  Candidates empty;
  Rng rng;
  REQUIRE_THROWS_WITH(temperature(empty, 0.f), Contains("temperature") && Contains("at least 1"));
  REQUIRE_THROWS_WITH(temperature(empty, 1.f), Contains("at least 1"));
  REQUIRE_THROWS_WITH(softmax(empty), Contains("at least 1"));
  REQUIRE_THROWS_WITH(top_p(empty, 0.5f), Contains("at least 1"));
  REQUIRE_THROWS_WITH(min_p(empty, 0.5f), Contains("at least 1"));
  REQUIRE_THROWS_WITH(draw(empty, rng), Contains("draw") && Contains("at least 1"));
  Candidates overfull(4);
  overfull.size = 5;
  REQUIRE_THROWS_WITH(top_k(overfull, 2), Contains("top_k") && Contains("5 of 4"));
  REQUIRE_THROWS_WITH(max_logit(overfull), Contains("5 of 4"));
}

// ---------------------------------------------------------------------------
// top-p, min-p, temperature

TEST_CASE("top-p: hand case on logits {1, 2, 3, 4}", "[sample][top_p]") {
  // softmax{1,2,3,4} = e^i / (e + e^2 + e^3 + e^4), the sum being 84.7910:
  // p = {0.03206, 0.08714, 0.23688, 0.64391} for ids 0..3. Cumulative from the
  // top: 0.64391 (id 3), 0.88080 (+id 2), 0.96794 (+id 1), 1.
  const std::vector<float> l = {1.f, 2.f, 3.f, 4.f};
  auto keep = [&](float p, size_t min_keep = 1) {
    Candidates c = filled(l);
    top_p(c, p, min_keep);
    return ids_of(c);
  };
  REQUIRE(keep(0.5f) == std::vector<int32_t>{3});        // 0.644 >= 0.5 alone
  REQUIRE(keep(0.8f) == std::vector<int32_t>{3, 2});     // 0.644 < 0.8 <= 0.881
  REQUIRE(keep(0.9f) == std::vector<int32_t>{3, 2, 1});  // 0.881 < 0.9 <= 0.968
  REQUIRE(keep(0.97f).size() == 4);                      // 0.968 < 0.97
  REQUIRE(keep(1.f).size() == 4);                        // off
  REQUIRE(keep(0.5f, 2) == std::vector<int32_t>{3, 2});  // min_keep wins
  Candidates c = filled(l);
  top_p(c, 0.8f);
  REQUIRE(c.data[0].prob == Approx(0.643914).margin(1e-6));  // float exp/divide: ~1e-7 error
  REQUIRE(c.data[1].prob == Approx(0.236883).margin(1e-6));
  for (float bad : {0.f, -0.1f, 1.5f, kNaN}) {
    Candidates d = filled(l);
    REQUIRE_THROWS_WITH(top_p(d, bad), Contains("top_p"));
  }
}

TEST_CASE("top-p property: kept mass >= p, and < p without the least likely kept token", "[sample][top_p]") {
  std::uniform_real_distribution<float> dp(0.05f, 0.999f);
  for (size_t n : property_sizes()) {
    // sd 0.05 is near-uniform: the nucleus spans most of the vocabulary and
    // crosses the 256-token chunks of the partial sort.
    for (double sd : {0.05, 1.0, 4.0}) {
      for (bool ties : {false, true}) {
        const auto l = random_logits(n, sd, ties, true);
        const auto ranked = ranked_ids(l);
        if (ranked.empty()) continue;
        const auto probs = softmax_ref(l, ranked);
        // min_keep past the nucleus makes the walk run beyond nucleus_bound's cut.
        const size_t big_keep = std::uniform_int_distribution<size_t>(1, n)(test::rng());
        for (auto [p, min_keep] : {std::pair{0.5f, size_t{1}}, std::pair{0.95f, size_t{1}},
                                   std::pair{dp(test::rng()), size_t{1}}, std::pair{0.3f, big_keep}}) {
          for (bool presorted : {false, true}) {
            INFO("n=" << n << " sd=" << sd << " ties=" << ties << " p=" << p << " min_keep=" << min_keep
                      << " presorted=" << presorted);
            Candidates c = filled(l);
            if (presorted) {  // the sorted-list path (after top-k)
              std::sort(c.data.begin(), c.data.begin() + static_cast<ptrdiff_t>(c.size), ranks_before);
              c.sorted = true;
            }
            top_p(c, p, min_keep);
            REQUIRE(c.sorted);
            const auto kept = ids_of(c);
            REQUIRE(kept == std::vector<int32_t>(ranked.begin(), ranked.begin() + static_cast<ptrdiff_t>(kept.size())));
            REQUIRE(kept.size() >= std::min(min_keep, ranked.size()));
            double mass = 0;
            for (size_t i = 0; i < kept.size(); ++i) mass += probs[i];
            // The kept probabilities are float (exp of a float difference of
            // logits within +-25: relative error <= 25 * 2^-24 + a few ulp per
            // term, ~2e-6 of the mass), the reference is double: 1e-5 margin.
            if (kept.size() < ranked.size()) REQUIRE(mass >= p - 1e-5);
            if (kept.size() > std::max<size_t>(1, min_keep)) REQUIRE(mass - probs[kept.size() - 1] < p + 1e-5);
          }
        }
      }
    }
  }
}

TEST_CASE("min-p: hand case on logits {1, 2, 3, 4}", "[sample][min_p]") {
  // p_i / p_max = e^(i - 3) = {0.0498, 0.1353, 0.3679, 1} for ids 0..3.
  const std::vector<float> l = {1.f, 2.f, 3.f, 4.f};
  auto keep = [&](float p, size_t min_keep = 1, bool sort = false) {
    Candidates c = filled(l);
    if (sort) {  // the sorted-list path: the same tokens, best first
      std::reverse(c.data.begin(), c.data.begin() + 4);
      c.sorted = true;
    }
    min_p(c, p, min_keep);
    return sorted_ids(c);
  };
  for (bool sort : {false, true}) {
    REQUIRE(keep(0.5f, 1, sort) == std::vector<int32_t>{3});
    REQUIRE(keep(0.3f, 1, sort) == std::vector<int32_t>{2, 3});
    REQUIRE(keep(0.1f, 1, sort) == std::vector<int32_t>{1, 2, 3});
    REQUIRE(keep(0.05f, 1, sort) == std::vector<int32_t>{1, 2, 3});  // e^-3 = 0.0498 < 0.05
    REQUIRE(keep(0.04f, 1, sort).size() == 4);
    REQUIRE(keep(0.f, 1, sort).size() == 4);  // off
    REQUIRE(keep(1.f, 1, sort) == std::vector<int32_t>{3});
    REQUIRE(keep(0.5f, 3, sort) == std::vector<int32_t>{1, 2, 3});  // min_keep wins
  }
  Candidates c = filled({2.f, 7.f, 7.f, 1.f});
  min_p(c, 1.f);
  REQUIRE(ids_of(c) == std::vector<int32_t>{1, 2});  // ties with the top all stay, in id order
  for (float bad : {-0.1f, 1.5f, kNaN}) REQUIRE_THROWS_WITH(min_p(c, bad), Contains("min_p"));
}

TEST_CASE("min-p property: kept exactly the tokens with p >= min_p * p_max", "[sample][min_p]") {
  for (size_t n : property_sizes()) {
    const auto l = random_logits(n, 2.0, false, true);
    const auto ranked = ranked_ids(l);
    if (ranked.empty()) continue;
    const auto probs = softmax_ref(l, ranked);
    for (float p : {0.01f, 0.05f, 0.3f, 0.9f}) {
      Candidates c = filled(l);
      min_p(c, p);
      const auto ids = ids_of(c);
      const std::set<int32_t> kept(ids.begin(), ids.end());
      REQUIRE(std::is_sorted(ids.begin(), ids.end()));  // unsorted lists stay in id order
      // The test is logit_i >= max + logf(p) in float: rounding of logf and of
      // the sum (|threshold| < 30) moves the threshold by < 4e-6, i.e. the
      // ratio by that relative amount; 1e-5 relative margin either side.
      for (size_t i = 0; i < ranked.size(); ++i) {
        const double ratio = probs[i] / probs[0];
        INFO("n=" << n << " p=" << p << " id=" << ranked[i] << " ratio=" << ratio);
        if (kept.count(ranked[i])) REQUIRE(ratio >= p * (1 - 1e-5));
        else REQUIRE(ratio < p * (1 + 1e-5));
      }
    }
  }
}

TEST_CASE("temperature: hand case, order kept, t -> 0 is greedy", "[sample][temperature]") {
  // Logits {0, ln 3}: probabilities {1/4, 3/4}. At t = 2 the odds become
  // 3^(1/2) = 1.732: {1/(1+sqrt 3), sqrt 3/(1+sqrt 3)} = {0.36603, 0.63397};
  // at t = 0.5 they become 3^2 = 9: {0.1, 0.9}.
  const std::vector<float> l = {0.f, std::log(3.f)};
  for (auto [t, p0] : {std::pair{1.f, 0.25}, std::pair{2.f, 0.366025}, std::pair{0.5f, 0.1}}) {
    Candidates c = filled(l);
    temperature(c, t);
    softmax(c);
    REQUIRE(c.data[0].prob == Approx(p0).margin(1e-6));  // float logits and exp: ~1e-7
    REQUIRE(c.data[1].prob == Approx(1 - p0).margin(1e-6));
  }
  Candidates c = filled({1.f, 9.f, 9.f, 3.f});
  temperature(c, 0.f);  // greedy: the lowest id of the tied top
  REQUIRE(ids_of(c) == std::vector<int32_t>{1});
  REQUIRE_THROWS_WITH(temperature(c, -1.f), Contains("temperature"));

  // Property: probabilities equal softmax(l / t) in double, and a tiny t
  // (1e-30: the shifted logits go to -inf, not NaN) puts all mass on the argmax.
  for (size_t n : property_sizes()) {
    const auto r = random_logits(n, 3.0);
    for (float t : {0.3f, 1.7f}) {
      Candidates d = filled(r);
      temperature(d, t);
      softmax(d);
      const auto ids = ids_of(d);
      const auto ref = softmax_ref(r, ids, t);
      // (l - max) / t in float: exponent error <= |l - max| / t * 2^-23 ~ 1e-5
      // relative at the tails (|l - max| < 25, t = 0.3), and those tails
      // carry little mass: 2e-6 absolute is ample.
      for (size_t i = 0; i < ids.size(); ++i) REQUIRE(std::abs(d.data[i].prob - ref[i]) < 2e-6);
    }
    Candidates e = filled(r);
    temperature(e, 1e-30f);
    softmax(e);
    for (const auto& cand : e.kept()) REQUIRE(cand.prob == (cand.id == greedy(r) ? 1.f : 0.f));
  }
}

// ---------------------------------------------------------------------------
// repetition penalty

TEST_CASE("repetition penalty: hand case, once per distinct token, window eviction", "[sample][penalty]") {
  // Logits {2, -2, 0.5, 0, 3}, penalty 2, window [0, 1, 0, 3]: id 0 (seen
  // twice) 2 / 2 = 1 once, not 0.5; id 1 -2 * 2 = -4; id 3 0 * 2 = 0;
  // ids 2 and 4 untouched.
  PenaltyWindow w(5, 4);
  for (int32_t t : {0, 1, 0, 3}) w.push(t);
  std::vector<float> l = {2.f, -2.f, 0.5f, 0.f, 3.f};
  repetition_penalty(l, w, 2.f);
  REQUIRE(l == std::vector<float>{1.f, -4.f, 0.5f, 0.f, 3.f});
  // penalty 0.5 encourages instead: 2 -> 4, -2 -> -1.
  l = {2.f, -2.f, 0.5f, 0.f, 3.f};
  repetition_penalty(l, w, 0.5f);
  REQUIRE(l == std::vector<float>{4.f, -1.f, 0.5f, 0.f, 3.f});
  // Push 2: the oldest 0 leaves, one 0 stays. Push 4: the 1 leaves.
  w.push(2);
  REQUIRE(w.count(0) == 1);
  w.push(4);
  REQUIRE(w.count(1) == 0);
  l = {2.f, -2.f, 0.5f, 0.f, 3.f};
  repetition_penalty(l, w, 2.f);
  REQUIRE(l == std::vector<float>{1.f, -2.f, 0.25f, 0.f, 1.5f});
  REQUIRE_THROWS_WITH(w.push(5), Contains("token 5"));
  REQUIRE_THROWS_WITH(repetition_penalty(l, w, 0.f), Contains("penalty"));
  std::vector<float> short_row(4);
  REQUIRE_THROWS_WITH(repetition_penalty(short_row, w, 2.f), Contains("4 entries"));
}

TEST_CASE("PenaltyWindow property: counts and distinct set match a recount of the last n", "[sample][penalty]") {
  std::uniform_int_distribution<int32_t> dt(0, 19);
  for (size_t last_n : {size_t{0}, size_t{1}, size_t{3}, size_t{16}, size_t{64}}) {
    PenaltyWindow w(20, last_n);
    std::deque<int32_t> ref;
    for (int step = 0; step < 500; ++step) {
      if (step == 250) { w.clear(); ref.clear(); }
      const int32_t t = dt(test::rng());
      w.push(t);
      if (last_n > 0) ref.push_back(t);
      if (ref.size() > last_n) ref.pop_front();
      REQUIRE(w.size() == ref.size());
      std::set<int32_t> distinct(w.distinct().begin(), w.distinct().end());
      REQUIRE(distinct.size() == w.distinct().size());  // no duplicates
      for (int32_t v = 0; v < 20; ++v) {
        const auto n = std::count(ref.begin(), ref.end(), v);
        REQUIRE(w.count(v) == n);
        REQUIRE(distinct.count(v) == (n > 0 ? 1u : 0u));
      }
    }
  }
}

// ---------------------------------------------------------------------------
// the categorical draw

TEST_CASE("draw: 100k draws match the probabilities (chi-square)", "[sample][draw]") {
  // Eight tokens, probabilities from 0.004 to 0.46, plus one of probability 0.
  const std::vector<float> l = {0.f, 0.5f, 1.f, 1.5f, 2.f, -1.f, 3.f, 2.5f, -200.f};
  Candidates c = filled(l);
  softmax(c);
  REQUIRE(c.data[8].prob == 0.f);  // exp(-203) underflows in float
  std::vector<int32_t> ids(l.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  auto probs = softmax_ref(l, ids);
  probs.pop_back();
  for (uint64_t seed : {1u, 2u, 3u}) {
    Rng rng(seed);
    std::vector<int64_t> counts(l.size(), 0);
    const int64_t n = 100000;
    for (int64_t i = 0; i < n; ++i) ++counts[static_cast<size_t>(draw(c, rng))];
    REQUIRE(counts[8] == 0);
    counts.pop_back();
    const double stat = chi2_stat(counts, probs, n), crit = chi2_critical(probs.size() - 1);
    INFO("seed=" << seed << " chi2=" << stat << " critical(df=7, 1e-6)=" << crit);
    REQUIRE(stat < crit);
  }
  // A fixed u walks to a fixed token: the draw is a pure function of the Rng state.
  Rng a(9), b(9);
  for (int i = 0; i < 100; ++i) REQUIRE(draw(c, a) == draw(c, b));
}

// ---------------------------------------------------------------------------
// the Sampler chain

namespace {

// Independent reference of the chain, in double: penalty, ranking, top-k,
// softmax of l / t, top-p prefix, min-p ratio, renormalised.
std::vector<std::pair<int32_t, double>> reference_chain(std::vector<float> l, const SamplerParams& p,
                                                        const std::vector<int32_t>& history) {
  const size_t from = history.size() > static_cast<size_t>(p.repeat_last_n)
                          ? history.size() - static_cast<size_t>(p.repeat_last_n) : 0;
  const std::set<int32_t> recent(history.begin() + static_cast<ptrdiff_t>(from), history.end());
  for (int32_t t : recent) l[t] = l[t] > 0 ? l[t] / p.repeat_penalty : l[t] * p.repeat_penalty;
  auto ids = ranked_ids(l);
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < ids.size()) ids.resize(static_cast<size_t>(p.top_k));
  auto probs = softmax_ref(l, ids, p.temperature);
  size_t keep = ids.size();
  double mass = 0;
  for (size_t i = 0; i < ids.size() && p.top_p < 1.f; ++i) {
    mass += probs[i];
    if (mass >= p.top_p) { keep = i + 1; break; }
  }
  std::vector<std::pair<int32_t, double>> out;
  double total = 0;
  for (size_t i = 0; i < keep; ++i)
    if (probs[i] >= p.min_p * probs[0]) total += out.emplace_back(ids[i], probs[i]).second;
  for (auto& [id, q] : out) q /= total;
  return out;
}

}  // namespace

TEST_CASE("Sampler: kept set and probabilities equal the reference chain, 100k draws match them",
          "[sample][sampler]") {
  SamplerParams p;  // the defaults: t 0.8, top-k 40, top-p 0.95, min-p 0.05
  p.repeat_penalty = 1.3f;
  p.repeat_last_n = 8;
  p.seed = 11;
  const auto l = random_logits(200, 1.5);
  Sampler s(p, 200);
  std::vector<int32_t> history;
  for (int32_t t : {3, 5, 7, 3, 9, 11, 13, 15, 17, 19, 21}) {  // the first three fall out of the window
    s.accept(t);
    history.push_back(t);
  }
  // The top token of the row is in the window, so the penalty changes the ranking.
  s.accept(greedy(l));
  history.push_back(greedy(l));
  const auto ref = reference_chain(l, p, history);
  s.sample(l);
  const auto& c = s.candidates();
  REQUIRE(c.size == ref.size());
  REQUIRE(ref.size() > 3);  // the case is meant to exercise a real cut
  std::map<int32_t, size_t> index;
  for (size_t i = 0; i < ref.size(); ++i) {
    REQUIRE(c.data[i].id == ref[i].first);
    // t = 0.8, |l - max| < 12: float error ~ 12 / 0.8 * 2^-24 relative, < 1e-6.
    REQUIRE(std::abs(c.data[i].prob - ref[i].second) < 1e-5);
    index[ref[i].first] = i;
  }
  std::vector<int64_t> counts(ref.size(), 0);
  std::vector<double> probs;
  for (const auto& r : ref) probs.push_back(r.second);
  const int64_t n = 100000;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = s.sample(l);
    REQUIRE(index.count(t) == 1);  // never a token outside the kept set
    ++counts[index[t]];
  }
  const double stat = chi2_stat(counts, probs, n), crit = chi2_critical(probs.size() - 1);
  INFO("chi2=" << stat << " critical=" << crit << " df=" << probs.size() - 1);
  REQUIRE(stat < crit);
}

TEST_CASE("Sampler: reference chain on random rows, every path (top-k on/off, penalty on/off)", "[sample][sampler]") {
  std::uniform_int_distribution<int32_t> dk(0, 60);
  std::uniform_real_distribution<float> dp(0.3f, 1.f), dm(0.f, 0.3f), dt(0.3f, 2.f);
  const auto sizes = property_sizes();
  for (size_t idx = 0; idx < sizes.size(); ++idx) {
    const size_t n = sizes[idx];
    SamplerParams p;
    p.top_k = idx % 3 == 0 ? 0 : dk(test::rng());  // 0: the whole-vocabulary path
    p.top_p = dp(test::rng());
    p.min_p = dm(test::rng());
    p.temperature = dt(test::rng());
    p.repeat_penalty = idx % 2 ? 1.f : 1.5f;
    Sampler s(p, static_cast<int>(n));
    std::vector<int32_t> history;
    for (int step = 0; step < 4; ++step) {
      const auto l = random_logits(n, 2.0, step == 1, step == 2);
      if (ranked_ids(l).empty()) continue;
      const auto ref = reference_chain(l, p, history);
      const int32_t t = s.sample(l);
      INFO("n=" << n << " k=" << p.top_k << " p=" << p.top_p << " min_p=" << p.min_p << " t=" << p.temperature);
      std::vector<int32_t> ref_ids;
      for (const auto& r : ref) ref_ids.push_back(r.first);
      REQUIRE(ids_of(s.candidates()) == ref_ids);
      // A prob e^-x / Z (x = (max - l) / t) carries relative error ~ x 2^-24
      // from the float exponent plus a few ulp from exp and the normalising,
      // i.e. absolute error <= max_x x e^-x 2^-24 + 4 ulp < 1e-6; 1e-5 margin.
      for (size_t i = 0; i < ref.size(); ++i) REQUIRE(std::abs(s.candidates().data[i].prob - ref[i].second) < 1e-5);
      REQUIRE(std::any_of(ref.begin(), ref.end(), [&](auto& r) { return r.first == t; }));
      s.accept(t);
      history.push_back(t);
    }
  }
}

TEST_CASE("Sampler: a seed reproduces a run, other seeds differ, reset replays", "[sample][sampler]") {
  const int n_vocab = 1000, steps = 200;
  std::vector<std::vector<float>> rows;
  for (int i = 0; i < steps; ++i) rows.push_back(random_logits(n_vocab, 1.0));
  auto run = [&](Sampler& s) {
    std::vector<int32_t> out;
    for (const auto& r : rows) {
      out.push_back(s.sample(r));
      s.accept(out.back());
    }
    return out;
  };
  SamplerParams p;
  p.temperature = 1.2f;
  p.repeat_penalty = 1.1f;
  p.seed = 1234;
  Sampler a(p, n_vocab), b(p, n_vocab);
  const auto first = run(a);
  REQUIRE(run(b) == first);
  a.reset();
  REQUIRE(run(a) == first);
  // Another seed: each step keeps tens of tokens, so 200 equal draws in a row
  // would have probability < 0.5^200.
  for (uint64_t seed : {0u, 1u, 1235u}) {
    p.seed = seed;
    Sampler c(p, n_vocab);
    REQUIRE(run(c) != first);
  }
}

TEST_CASE("Sampler: temperature -> 0 equals greedy, temperature 0 is greedy after the penalty", "[sample][sampler]") {
  for (size_t n : property_sizes()) {
    const auto l = random_logits(n, 2.0);
    const auto ranked = ranked_ids(l);
    SamplerParams greedy_p;
    greedy_p.temperature = 0.f;
    Sampler g(greedy_p, static_cast<int>(n));
    REQUIRE(g.sample(l) == ranked[0]);
    if (n < 2) continue;
    // t = gap / 50 puts the runner-up at e^-50 = 2e-22 of the top: below the
    // 2^-53 resolution of the draw even summed over 5000 tokens.
    const double gap = l[ranked[0]] - l[ranked[1]];
    if (gap < 1e-4) continue;  // a near tie: the limit is a coin flip, not greedy
    for (int top_k : {0, 40}) {
      SamplerParams p;
      p.temperature = static_cast<float>(gap / 50);
      p.top_k = top_k;
      Sampler s(p, static_cast<int>(n));
      for (int i = 0; i < 5; ++i) REQUIRE(s.sample(l) == ranked[0]);
    }
  }
  // Penalty then greedy: {2.5, 2.4} with token 0 seen and penalty 1.1:
  // 2.5 / 1.1 = 2.27 < 2.4, so token 1 wins.
  SamplerParams p;
  p.temperature = 0.f;
  p.repeat_penalty = 1.1f;
  Sampler s(p, 2);
  const std::vector<float> l = {2.5f, 2.4f};
  REQUIRE(s.sample(l) == 0);
  s.accept(0);
  REQUIRE(s.sample(l) == 1);
  s.reset();
  REQUIRE(s.sample(l) == 0);
}

TEST_CASE("Sampler: invalid parameters and inputs raise Error naming them", "[sample][sampler]") {
  const std::vector<std::pair<SamplerParams, std::string>> bad = {
      {{.temperature = -0.5f}, "temperature = -0.5 "},  {{.temperature = kNaN}, "temperature = nan "},
      {{.temperature = kInf}, "temperature = inf "},    {{.top_k = -1}, "top_k = -1 "},
      {{.top_p = 0.f}, "top_p = 0 "},                   {{.top_p = 1.5f}, "top_p = 1.5 "},
      {{.top_p = kNaN}, "top_p = nan "},                {{.min_p = -0.25f}, "min_p = -0.25 "},
      {{.min_p = 2.f}, "min_p = 2 "},                   {{.min_p = kNaN}, "min_p = nan "},
      {{.repeat_penalty = 0.f}, "repeat_penalty = 0 "}, {{.repeat_penalty = -1.f}, "repeat_penalty = -1 "},
      {{.repeat_penalty = kNaN}, "repeat_penalty = nan "}, {{.repeat_last_n = -1}, "repeat_last_n = -1 "},
  };
  for (const auto& [params, message] : bad) {
    INFO(message);
    REQUIRE_THROWS_WITH(Sampler(params, 10), Contains(message));
    REQUIRE_THROWS_WITH(validate(params), Contains(message));
  }
  REQUIRE_THROWS_WITH(Sampler(SamplerParams{}, 0), Contains("n_vocab = 0"));
  REQUIRE_NOTHROW(validate(SamplerParams{}));
  // Every "off" value is accepted, and 0 temperature (greedy).
  REQUIRE_NOTHROW(validate({.temperature = 0.f, .top_k = 0, .top_p = 1.f, .min_p = 0.f, .repeat_penalty = 1.f,
                            .repeat_last_n = 0}));

  for (float t : {0.f, 0.8f}) {
    for (int k : {0, 4}) {
      SamplerParams p;
      p.temperature = t;
      p.top_k = k;
      p.repeat_penalty = 1.2f;
      Sampler s(p, 10);
      s.accept(2);
      std::vector<float> l(10, 1.f);
      l[7] = kNaN;
      INFO("t=" << t << " k=" << k);
      REQUIRE_THROWS_WITH(s.sample(l), Contains("token 7") && Contains("nan"));
      l[7] = kInf;
      REQUIRE_THROWS_WITH(s.sample(l), Contains("token 7") && Contains("inf"));
      std::fill(l.begin(), l.end(), -kInf);
      REQUIRE_THROWS_WITH(s.sample(l), Contains("every logit is -inf"));
      REQUIRE_THROWS_WITH(s.sample(std::vector<float>(9, 0.f)), Contains("got 9 logits") && Contains("10"));
      REQUIRE_THROWS_WITH(s.accept(10), Contains("token 10"));
      REQUIRE_THROWS_WITH(s.accept(-1), Contains("token -1"));
      // Banned tokens are never drawn; the rest still are.
      std::fill(l.begin(), l.end(), -kInf);
      l[4] = 0.f;
      l[6] = 0.f;
      for (int i = 0; i < 50; ++i) {
        const int32_t got = s.sample(l);
        REQUIRE((got == 4 || got == 6));
      }
    }
  }
}
