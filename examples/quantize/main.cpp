// tessera-quantize: writes a GGUF model in another type (io/quantize.hpp):
//   tessera-quantize IN.gguf OUT.gguf TYPE [-t THREADS] [-q]
// TYPE: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K q4_k_m q5_k_m. Prints one
// line per tensor (types, relative RMSE, bytes) on stdout, then the sizes and the time on stderr
// (where errors go, one line each).
// Bad input prints one line and exits 1; the output is never left half-written.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tessera/core/parallel.hpp"
#include "tessera/io/gguf_reader.hpp"
#include "tessera/io/quantize.hpp"

using namespace tessera;

namespace {

const char* usage() {
  return "usage: tessera-quantize IN.gguf OUT.gguf TYPE [-t THREADS] [-q]\n"
         "  TYPE  f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | q4_K | q5_K | q6_K | q4_k_m | q5_k_m\n"
         "        (every matrix; 1-d tensors stay f32; q4_k_m / q5_k_m: q4_K / q5_K with q6_K for output\n"
         "        and for attn_v / ffn_down of the first and last eighth of the layers and every third\n"
         "        between; rows that are not whole blocks fall back to q5_0 / q5_1 / q8_0 / f16)\n"
         "  -t    threads (default: OpenMP's)\n"
         "  -q    no per-tensor lines\n";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> pos;
    int threads = 0;
    bool quiet = false;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "-h" || a == "--help") {
        std::fputs(usage(), stdout);
        return 0;
      } else if (a == "-t" || a == "--threads") {
        check(i + 1 < argc, "missing value for ", a);
        const std::string v = argv[++i];
        size_t used = 0;
        try {
          threads = std::stoi(v, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        check(used == v.size() && threads >= 1, "invalid value '", v, "' for ", a, " (a positive integer)");
      } else if (a == "-q") {
        quiet = true;
      } else if (a.starts_with("-") && a.size() > 1) {
        fail("unknown flag '", a, "' (--help for usage)");
      } else {
        pos.push_back(a);
      }
    }
    check(pos.size() == 3, "expected IN.gguf OUT.gguf TYPE, got ", pos.size(), " arguments (--help for usage)");
    if (threads > 0) set_num_threads(threads);
    const io::QuantScheme& scheme = io::quant_scheme(pos[2]);
    check(std::filesystem::absolute(pos[0]) != std::filesystem::absolute(pos[1]),
          "the output must not be the input ('", pos[1], "')");
    const auto t0 = std::chrono::steady_clock::now();
    const io::GgufFile in = io::GgufFile::open(pos[0]);
    size_t in_bytes = 0, out_bytes = 0;
    int64_t n_values = 0;
    int requantized = 0;
    for (const auto& t : in.tensors()) {
      in_bytes += t.n_bytes;
      const auto ty = static_cast<GgmlType>(t.type);
      requantized += t.shape.size() >= 2 && ty != GgmlType::f32 && ty != GgmlType::f16 && ty != GgmlType::bf16;
    }
    if (requantized > 0)
      std::printf("tessera-quantize: %d matrices of %s are already quantized: requantizing adds the new type's "
                  "error to theirs\n",
                  requantized, pos[0].c_str());
    io::quantize_gguf(in, pos[1], scheme, [&](const io::TensorReport& r) {
      out_bytes += r.bytes;
      n_values += r.n_elements;
      if (!quiet)
        std::printf("%-28s %6s -> %-6s %10lld values  rel. RMSE %.5f  max |err| %.4g  %8.2f KiB\n", r.name.c_str(),
                    type_info(r.from).name, type_info(static_cast<uint32_t>(r.to)).name,
                    static_cast<long long>(r.n_elements), r.error.rms > 0 ? r.error.rmse / r.error.rms : 0.0,
                    r.error.max_abs, static_cast<double>(r.bytes) / 1024);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "%s: %s, %.2f MiB of tensors -> %.2f MiB (%.3f bits per value), %.2f s, %d threads\n",
                pos[1].c_str(), scheme.name, static_cast<double>(in_bytes) / (1 << 20),
                static_cast<double>(out_bytes) / (1 << 20),
                n_values > 0 ? 8.0 * static_cast<double>(out_bytes) / static_cast<double>(n_values) : 0.0, s,
                num_threads());
    return 0;
  } catch (const std::exception& e) {  // tessera::Error included
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
