// tessera-batched-bench: aggregate prefill and decode throughput of
// runtime::Scheduler with B sequences at once, the measurement
// llama.cpp's llama-batched-bench makes, with its flags and its table. For each
// B in -npl: B requests of -npp random prompt tokens each are prefilled (all
// prompts in as few steps as --step-tokens allows), then decoded -ntg steps
// together, every step one batched forward pass over B rows.
//   T_PP: from submission until every sequence has its first token (prefill)
//   T_TG: the decode steps after that; S_TG = tokens they made / T_TG
//         (B * ntg, unless steps smaller than all prompts let early sequences
//         start decoding during the prefill phase)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tessera/core/parallel.hpp"
#include "tessera/io/tokenizer_gguf.hpp"
#include "tessera/runtime/metrics.hpp"
#include "tessera/runtime/scheduler.hpp"

#include <CLI/CLI.hpp>

using namespace tessera;

namespace {

struct Row {
  int npp, ntg, npl;
  double t_pp, t_tg;
  int64_t tg_tokens;  // tokens decoded after the prefill phase (npl * ntg unless steps overlapped the phases)
};

Row run(const std::shared_ptr<const models::LlamaModel>& model, const io::Tokenizer& tok, int npp, int ntg, int npl,
        int step_tokens, KvType kv, uint64_t seed, bool exact) {
  runtime::Metrics metrics(1);  // counts only: first tokens and tokens so far
  runtime::Scheduler sched(model, tok,
                           {.max_seqs = npl,
                            .step_tokens = step_tokens,
                            .n_ctx = npp + ntg + 1,
                            .block_size = 16,
                            .kv_type = kv,
                            .prefix_caching = false,  // every sequence computes its own prompt, as the peer's does
                            .exact = exact},
                           &metrics);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, model->config().n_vocab - 1);
  for (int s = 0; s < npl; ++s) {
    runtime::ServeRequest r;
    r.prompt.resize(static_cast<size_t>(npp));
    for (auto& t : r.prompt) t = id(rng);
    r.sampling.temperature = 0.f;
    r.generation.max_new_tokens = ntg + 1;  // the first comes with the prompt's pass; ntg decode steps follow
    r.generation.stop_at_eog = false;
    sched.submit(std::move(r));
  }
  // The prefill phase ends with the step that gives the last sequence its first
  // token. Steps smaller than all prompts together (--exact) start decoding
  // the early sequences before that: their tokens count in neither phase.
  const auto t0 = std::chrono::steady_clock::now();
  auto t_first = t0;
  int64_t tokens_at_first = -1;
  while (sched.step())
    if (tokens_at_first < 0) {
      const auto snap = metrics.snapshot(sched.now());
      if (snap.ttft.count == npl) {
        t_first = std::chrono::steady_clock::now();
        tokens_at_first = snap.output_tokens;
      }
    }
  const auto t1 = std::chrono::steady_clock::now();
  const int64_t total = metrics.snapshot(sched.now()).output_tokens;
  check(tokens_at_first >= 0 && total == int64_t{npl} * (ntg + 1), "batched bench: ", total, " tokens, expected ",
        int64_t{npl} * (ntg + 1));
  return {npp, ntg, npl, std::chrono::duration<double>(t_first - t0).count(),
          std::chrono::duration<double>(t1 - t_first).count(), total - tokens_at_first};
}

std::vector<int> int_list(const std::string& s, const char* flag) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    check(used == item.size() && !item.empty() && v > 0, flag, ": '", item, "' is not a positive integer");
    out.push_back(v);
  }
  check(!out.empty(), flag, " is empty");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path, npp_s = "128", ntg_s = "128", npl_s = "1,4,16,32", kv_s = "f32";
  int step_tokens = 2048, threads = 0;
  uint64_t seed = 1;
  bool exact = false;
  CLI::App app{"tessera-batched-bench: prefill and decode throughput with B sequences at once"};
  app.add_option("-m,--model", model_path, "GGUF model (default: the model scripts/fetch-model puts in models/)");
  app.add_option("--npp", npp_s, "prompt tokens per sequence, comma-separated")->capture_default_str();
  app.add_option("--ntg", ntg_s, "generated tokens per sequence, comma-separated")->capture_default_str();
  app.add_option("--npl", npl_s, "sequences at once, comma-separated")->capture_default_str();
  app.add_option("--step-tokens", step_tokens, "rows in one step at most")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  app.add_option("--kv-type", kv_s, "KV storage: f32, f16 or q8_0")->capture_default_str();
  app.add_option("-t,--threads", threads, "compute threads (0: OpenMP's default)")->check(CLI::NonNegativeNumber);
  app.add_option("--seed", seed, "seed of the random prompts");
  app.add_flag("--exact", exact, "steps on decode's exact kernels (as tessera-server --exact; sets --step-tokens 16)");
  // llama-batched-bench spells them with one dash; accept that too.
  std::vector<std::string> args(argv, argv + argc);
  for (auto& a : args)
    if (a == "-npp" || a == "-ntg" || a == "-npl") a.insert(0, "-");
  std::vector<char*> ptrs;
  for (auto& a : args) ptrs.push_back(a.data());
  try {
    app.parse(static_cast<int>(ptrs.size()), ptrs.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (threads > 0) set_num_threads(threads);
    if (exact) step_tokens = std::min(step_tokens, static_cast<int>(backend::kDecodeExactRows));
    KvType kv = KvType::f32;
    if (kv_s == "f16")
      kv = KvType::f16;
    else if (kv_s == "q8_0")
      kv = KvType::q8_0;
    else
      check(kv_s == "f32", "--kv-type must be f32, f16 or q8_0, got '", kv_s, "'");
    std::string path = model_path;
    if (path.empty())
      for (const char* p : {TESSERA_DEFAULT_MODEL, "models/SmolLM2-135M-Instruct.Q4_1.gguf"})
        if (path.empty() && std::filesystem::exists(p)) path = p;
    check(!path.empty(), "no model given and the default model is missing: run scripts/fetch-model, or pass -m MODEL.gguf");
    const auto npps = int_list(npp_s, "--npp"), ntgs = int_list(ntg_s, "--ntg"), npls = int_list(npl_s, "--npl");
    auto model = models::LlamaModel::load(path);
    const auto tok = io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(model->file().meta()));
    std::printf("model %s, %d threads, KV %s, steps of up to %d rows%s, prefix caching off\n\n",
                std::filesystem::path(path).filename().c_str(), num_threads(), kv_s.c_str(), step_tokens,
                exact ? " (exact)" : "");
    run(model, tok, 8, 4, 2, step_tokens, kv, seed, exact);  // warm-up: pages the weights in
    std::printf("|%6s |%6s |%4s |%6s |%8s |%9s |%8s |%9s |%8s |%9s |\n", "PP", "TG", "B", "N_KV", "T_PP s",
                "S_PP t/s", "T_TG s", "S_TG t/s", "T s", "S t/s");
    std::printf("|-------|-------|-----|-------|---------|----------|---------|----------|---------|----------|\n");
    for (int npp : npps)
      for (int ntg : ntgs)
        for (int npl : npls) {
          const Row r = run(model, tok, npp, ntg, npl, step_tokens, kv, seed, exact);
          const double t = r.t_pp + r.t_tg;
          std::printf("|%6d |%6d |%4d |%6d |%8.3f |%9.2f |%8.3f |%9.2f |%8.3f |%9.2f |\n", npp, ntg, npl,
                      npl * (npp + ntg), r.t_pp, npl * npp / r.t_pp, r.t_tg, static_cast<double>(r.tg_tokens) / r.t_tg, t,
                      npl * (npp + ntg) / t);
          std::fflush(stdout);
        }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
