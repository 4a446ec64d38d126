// tessera-server: an OpenAI-compatible HTTP server over runtime::Scheduler
// (continuous batching, paged KV with prefix caching) for one llama-family
// GGUF model. POST /v1/completions and /v1/chat/completions (whole or
// streamed as server-sent events), GET /v1/models, /health and /metrics
// (Prometheus text). Bad requests get a 4xx with an OpenAI-style JSON error;
// a full queue gets 503 with Retry-After; SIGINT/SIGTERM stop accepting, let
// running requests finish (up to --shutdown-grace seconds, then cancel them)
// and exit 0.
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include "api.hpp"
#include "engine.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/io/tokenizer_gguf.hpp"
#include "tessera/runtime/metrics.hpp"

// After tessera's headers: httplib.h brings <resolv.h>, whose `_res` macro
// would rewrite a parameter name inside Eigen's templates.
#include <CLI/CLI.hpp>
#include <httplib.h>

using namespace tessera;
using namespace tessera_server;

namespace {

struct Options {
  std::string model;
  std::string alias;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 16;
  int64_t ctx_size = 2048;
  int step_tokens = 256;
  int64_t block_size = 16;
  int64_t kv_blocks = 0;
  std::string kv_type = "f32";
  int queue = 64;
  int threads = 0;
  int http_threads = 0;
  size_t max_body = 1 << 20;
  double shutdown_grace = 10.0;
  double stream_gbps = 0.0;
  bool no_prefix_cache = false;
  bool exact = false;
  std::string api_key;
};

std::string default_model() {
  for (const char* p : {TESSERA_DEFAULT_MODEL, "models/SmolLM2-135M-Instruct.Q4_1.gguf"})
    if (std::filesystem::exists(p)) return p;
  fail("no model given and the default model is missing: run scripts/fetch-model, or pass -m MODEL.gguf");
}

KvType parse_kv_type(const std::string& s) {
  if (s == "f32") return KvType::f32;
  if (s == "f16") return KvType::f16;
  if (s == "q8_0") return KvType::q8_0;
  fail("--kv-type must be f32, f16 or q8_0, got '", s, "'");
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  if (e.status == 503) res.set_header("Retry-After", "1");
  send_json(res, e.status, error_body(e));
}

// "data: {...}\n\n", false when the client has gone.
bool sse(httplib::DataSink& sink, const json& j) {
  const std::string s = "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
  return sink.write(s.data(), s.size());
}

// Resident set size from /proc (0 where there is none).
int64_t resident_bytes() {
  long long pages_total = 0, pages_resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%lld %lld", &pages_total, &pages_resident) != 2) pages_resident = 0;
    std::fclose(f);
  }
  return static_cast<int64_t>(pages_resident) * sysconf(_SC_PAGESIZE);
}

// Signals arrive on one thread that waits for them (blocked everywhere else).
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"tessera-server: an OpenAI-compatible server for a llama-family GGUF model"};
  app.add_option("-m,--model", o.model, "GGUF model (default: the model scripts/fetch-model puts in models/)");
  app.add_option("--alias", o.alias, "model id in the API (default: the file name)");
  app.add_option("--host", o.host, "address to bind")->capture_default_str();
  app.add_option("--port", o.port, "port to bind; 0 picks a free one")->check(CLI::Range(0, 65535))->capture_default_str();
  app.add_option("--parallel", o.parallel, "sequences decoded together at most")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("-c,--ctx-size", o.ctx_size, "positions of one sequence (prompt + answer)")->check(CLI::Range(int64_t{8}, int64_t{1} << 20))->capture_default_str();
  auto* step_opt = app.add_option("--step-tokens", o.step_tokens, "rows in one batched step at most (decode rows + prompt chunks)")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  app.add_flag("--exact", o.exact, "every request gets exactly the tokens a solo tessera-llama run gives it (steps of at most 16 rows on decode's kernels; slower)");
  app.add_option("--block-size", o.block_size, "KV positions per pool block")->check(CLI::Range(int64_t{1}, int64_t{4096}))->capture_default_str();
  app.add_option("--kv-blocks", o.kv_blocks, "KV pool blocks (0: parallel x ctx-size positions)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--kv-type", o.kv_type, "KV storage: f32, f16 or q8_0")->capture_default_str();
  app.add_option("--queue", o.queue, "requests waiting beyond --parallel before 503")->check(CLI::Range(0, 1 << 20))->capture_default_str();
  app.add_option("-t,--threads", o.threads, "compute threads (0: OpenMP's default)")->check(CLI::NonNegativeNumber);
  app.add_option("--http-threads", o.http_threads, "HTTP worker threads (0: parallel + queue + 4)")->check(CLI::NonNegativeNumber);
  app.add_option("--max-body", o.max_body, "largest request body in bytes (larger: 413)")->capture_default_str();
  app.add_option("--shutdown-grace", o.shutdown_grace, "seconds running requests get to finish on SIGINT/SIGTERM")->check(CLI::Range(0.0, 86400.0))->capture_default_str();
  app.add_option("--stream-gbps", o.stream_gbps, "measured memory bandwidth (GB/s) that /metrics compares each step with")->check(CLI::NonNegativeNumber);
  app.add_flag("--no-prefix-cache", o.no_prefix_cache, "do not share KV blocks between equal prompt prefixes");
  app.add_option("--api-key", o.api_key, "require 'Authorization: Bearer KEY' on /v1/* and /metrics");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (o.exact && step_opt->count() == 0) o.step_tokens = static_cast<int>(backend::kDecodeExactRows);

  // Block the stop signals before any thread starts, so only the waiter sees them.
  const sigset_t sigs = stop_signals();
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    const std::string path = o.model.empty() ? default_model() : o.model;
    auto model = models::LlamaModel::load(path);
    const auto tok = io::Tokenizer::from_spec(io::tokenizer_spec_from_gguf(model->file().meta()));
    std::optional<io::ChatTemplate> tmpl;
    try {
      tmpl = io::ChatTemplate::for_model(model->file().meta().get_or<std::string>("tokenizer.chat_template", ""),
                                         model->config().arch, io::chat_template_options(tok));
    } catch (const Error& e) {
      std::fprintf(stderr, "tessera-server: no chat endpoint: %s\n", e.what());
    }
    const std::string model_id = !o.alias.empty() ? o.alias : std::filesystem::path(path).filename().string();
    const auto created = static_cast<int64_t>(std::time(nullptr));

    runtime::SchedulerConfig cfg{.max_seqs = o.parallel,
                                 .step_tokens = o.step_tokens,
                                 .n_ctx = o.ctx_size,
                                 .block_size = o.block_size,
                                 .n_blocks = o.kv_blocks,
                                 .kv_type = parse_kv_type(o.kv_type),
                                 .prefix_caching = !o.no_prefix_cache,
                                 .exact = o.exact};
    runtime::Metrics metrics(65536, o.stream_gbps * 1e9);
    Engine engine(model, tok, cfg, &metrics, o.parallel + o.queue, o.threads);
    const auto& rc = engine.config();
    // A pool smaller than one full context caps every request at what it holds.
    const ApiLimits lim{.n_ctx = std::min<int64_t>(o.ctx_size, rc.n_blocks * rc.block_size)};
    const size_t kv_pool_bytes = static_cast<size_t>(rc.n_blocks) * static_cast<size_t>(rc.block_size) *
                                 models::kv_layout(model->config(), cfg.kv_type).bytes_per_token();
    std::atomic<uint64_t> next_id{1};
    std::random_device rd;
    std::mutex seed_mu;

    httplib::Server svr;
    const size_t http_threads = o.http_threads > 0 ? static_cast<size_t>(o.http_threads)
                                                   : static_cast<size_t>(o.parallel + o.queue + 4);
    svr.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
    svr.set_payload_max_length(o.max_body);
    svr.set_keep_alive_timeout(2);
    svr.set_read_timeout(30);
    svr.set_error_handler([&o](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      ApiError e{res.status, "HTTP status " + std::to_string(res.status)};
      if (res.status == 404) e.message = "no such endpoint";
      if (res.status == 405) e.message = "method not allowed on this endpoint";
      if (res.status == 400) e.message = "malformed HTTP request";
      if (res.status == 413) e.message = "the request body is over the limit of " + std::to_string(o.max_body) + " bytes";
      send_json(res, res.status, error_body(e));
    });
    svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_json(res, 500, error_body({500, what, "", "server_error"}));
    });
    // Runs before the body is read. Bodies whose size is not known up front
    // (chunked, compressed, or a POST without Content-Length) are refused:
    // httplib 0.11 bounds only a declared Content-Length, and reading the others
    // could take unbounded memory or wait for an EOF that never comes. A
    // declared body over the limit is refused unread (httplib would drain it).
    svr.set_pre_routing_handler([&o](const httplib::Request& req, httplib::Response& res) {
      auto refuse = [&res](int status, std::string message) {
        res.set_header("Connection", "close");
        send_json(res, status, error_body({status, std::move(message)}));
        return httplib::Server::HandlerResponse::Handled;
      };
      if (req.has_header("Transfer-Encoding"))
        return refuse(411, "chunked request bodies are not accepted: send Content-Length");
      if (req.has_header("Content-Encoding")) return refuse(415, "compressed request bodies are not accepted");
      if (req.has_header("Content-Length")) {
        const std::string len = req.get_header_value("Content-Length");
        char* end = nullptr;
        errno = 0;
        const unsigned long long n = std::strtoull(len.c_str(), &end, 10);
        if (errno != 0 || end == len.c_str() || *end != '\0' || n > o.max_body)
          return refuse(413, "the request body (Content-Length " + len + ") is over the limit of " +
                                 std::to_string(o.max_body) + " bytes");
        // httplib caps form-encoded bodies (curl -d without a Content-Type) at 8 KiB.
        if (n > 8192 && req.get_header_value("Content-Type").starts_with("application/x-www-form-urlencoded"))
          return refuse(415, "send bodies over 8 KiB as Content-Type: application/json");
      } else if (req.method == "POST") {
        return refuse(411, "a POST needs Content-Length");
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    // The key is checked in the handlers, after the (bounded) body was read, so
    // a refused request leaves nothing unread on a kept-alive connection.
    auto authorized = [&o](const httplib::Request& req, httplib::Response& res) {
      if (o.api_key.empty() || req.get_header_value("Authorization") == "Bearer " + o.api_key) return true;
      send_json(res, 401, error_body({401, "invalid or missing API key (Authorization: Bearer ...)", "",
                                      "authentication_error", "invalid_api_key"}));
      return false;
    };
    std::atomic<int> open_streams{0};  // shutdown waits for them to write their ends

    svr.Get("/health", [&engine](const httplib::Request&, httplib::Response& res) {
      if (engine.accepting())
        send_json(res, 200, {{"status", "ok"}});
      else
        send_json(res, 503, {{"status", "shutting down"}});
    });
    svr.Get("/v1/models", [&](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return;
      const auto& c = model->config();
      send_json(res, 200,
                {{"object", "list"},
                 {"data", json::array({{{"id", model_id},
                                        {"object", "model"},
                                        {"created", created},
                                        {"owned_by", "tessera"},
                                        {"meta", {{"arch", c.arch}, {"n_ctx", o.ctx_size}, {"n_vocab", c.n_vocab},
                                                  {"n_layers", c.n_layers}, {"parallel", o.parallel}}}}})}});
    });
    svr.Get("/metrics", [&](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return;
      const auto& g = engine.gauges();
      std::string text = runtime::to_prometheus(metrics.snapshot(engine.now()));
      auto gauge = [&text](const char* name, const char* help, int64_t v) {
        text.append("# HELP tessera_").append(name).append(" ").append(help).append("\n# TYPE tessera_");
        text.append(name).append(" gauge\ntessera_").append(name).append(" ").append(std::to_string(v)).append("\n");
      };
      gauge("requests_waiting", "requests queued, preempted ones included", g.waiting);
      gauge("requests_in_flight", "requests accepted and not yet answered", g.in_flight);
      gauge("prefix_cache_hit_tokens", "prompt positions adopted from cached KV blocks", g.prefix_hit_tokens);
      gauge("preemptions", "sequences preempted for KV blocks", g.preemptions);
      gauge("kv_pool_bytes", "bytes of the KV pool, allocated at start", static_cast<int64_t>(kv_pool_bytes));
      gauge("resident_memory_bytes", "the server's resident set size", resident_bytes());
      res.set_content(text, "text/plain; version=0.0.4");
    });

    auto complete = [&](bool chat) {
      return [&, chat](const httplib::Request& req, httplib::Response& res) {
        if (!authorized(req, res)) return;
        ApiRequest ar;
        try {
          json body;
          try {
            body = json::parse(req.body);
          } catch (const json::exception& e) {
            throw ApiError{400, std::string("the body is not valid JSON: ") + e.what()};
          }
          uint64_t seed;
          {
            std::lock_guard lock(seed_mu);
            seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
          }
          ar = parse_request(body, chat, tok, tmpl ? &*tmpl : nullptr, lim, seed);
          const int64_t most = std::min<int64_t>(o.ctx_size, static_cast<int64_t>(ar.base.prompt.size()) +
                                                                 ar.base.generation.max_new_tokens);
          if ((most + rc.block_size - 1) / rc.block_size > rc.n_blocks)
            throw ApiError{400, "the request needs " + std::to_string(most) + " KV positions; the pool holds " +
                                    std::to_string(rc.n_blocks * rc.block_size)};
        } catch (const ApiError& e) {
          return send_error(res, e);
        }
        // One scheduler request per choice; the same prompt's blocks are shared.
        auto chans = std::make_shared<std::vector<std::shared_ptr<Channel>>>();
        for (int i = 0; i < ar.n; ++i) {
          runtime::ServeRequest r = ar.base;
          r.sampling.seed = ar.base.sampling.seed + static_cast<uint64_t>(i);
          auto ch = engine.submit(std::move(r));
          if (!ch) {
            for (auto& c : *chans) engine.cancel(c);
            return send_error(res, {503, engine.accepting() ? "the server is busy: try again shortly"
                                                             : "the server is shutting down",
                                    "", "server_busy"});
          }
          chans->push_back(std::move(ch));
        }
        const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++);
        const auto t = static_cast<int64_t>(std::time(nullptr));
        const int64_t n_prompt = static_cast<int64_t>(ar.base.prompt.size());

        if (!ar.stream) {
          json choices = json::array();
          int64_t completion = 0;
          for (int i = 0; i < ar.n; ++i) {
            const auto g = (*chans)[static_cast<size_t>(i)]->wait();
            if (!g) {
              for (auto& c : *chans) engine.cancel(c);
              const auto& ch = *(*chans)[static_cast<size_t>(i)];
              const int st = ch.error_status();
              return send_error(res, {st, ch.error(), "", st == 500 ? "server_error" : "invalid_request_error"});
            }
            choices.push_back(choice(chat, i, *g));
            completion += static_cast<int64_t>(g->tokens.size());
          }
          json out = envelope(chat, false, id, t, ar.model.empty() ? model_id : ar.model);
          out["choices"] = choices;
          out["usage"] = usage(n_prompt, completion);
          return send_json(res, 200, out);
        }

        // Streamed: one chunk per piece of text per choice, then each choice's
        // finish, usage if asked for, and [DONE].
        struct State {
          std::vector<bool> opened, ended;
          int64_t completion = 0;
        };
        auto st = std::make_shared<State>();
        st->opened.assign(static_cast<size_t>(ar.n), false);
        st->ended.assign(static_cast<size_t>(ar.n), false);
        const json env = envelope(chat, true, id, t, ar.model.empty() ? model_id : ar.model);
        res.set_header("Cache-Control", "no-cache");
        ++open_streams;  // the releaser below (called when the response is destroyed) takes it back
        res.set_chunked_content_provider(
            "text/event-stream",
            [chans, st, env, chat, ar_n = ar.n, usage_wanted = ar.include_usage, n_prompt](size_t,
                                                                                         httplib::DataSink& sink) {
             try {
              bool all = true, wrote = false;
              for (int i = 0; i < ar_n; ++i) {
                const auto k = static_cast<size_t>(i);
                if (st->ended[k]) continue;
                auto& ch = *(*chans)[k];
                auto p = ch.pull(std::chrono::milliseconds(wrote ? 0 : 50 / ar_n + 1));
                auto chunk = [&](json c) {
                  json j = env;
                  j["choices"] = json::array({std::move(c)});
                  return j;
                };
                if (chat && !st->opened[k]) {
                  st->opened[k] = true;
                  if (!sse(sink, chunk(chunk_choice(chat, i, nullptr, nullptr, true)))) return false;
                }
                for (const auto& piece : p.pieces) {
                  if (!sse(sink, chunk(chunk_choice(chat, i, &piece, nullptr)))) return false;
                  wrote = true;
                }
                if (p.ended) {
                  st->ended[k] = true;
                  if (const auto g = ch.result()) {
                    st->completion += static_cast<int64_t>(g->tokens.size());
                    if (!sse(sink, chunk(chunk_choice(chat, i, nullptr, finish_reason(g->stop))))) return false;
                  } else {
                    if (!sse(sink, error_body({500, ch.error(), "", "server_error"}))) return false;
                  }
                } else {
                  all = false;
                }
              }
              if (!all) return true;
              if (usage_wanted) {
                json j = env;
                j["choices"] = json::array();
                j["usage"] = usage(n_prompt, st->completion);
                if (!sse(sink, j)) return false;
              }
              static constexpr char done[] = "data: [DONE]\n\n";
              if (!sink.write(done, sizeof(done) - 1)) return false;
              sink.done();
              return true;
             } catch (const std::exception&) {  // outside httplib's handler guard: end this stream only
              return false;
             }
            },
            [chans, &engine, &open_streams](bool success) {
              if (!success)  // the client went away: free its sequences now
                for (auto& c : *chans) engine.cancel(c);
              --open_streams;
            });
      };
    };
    svr.Post("/v1/completions", complete(false));
    svr.Post("/v1/chat/completions", complete(true));
    svr.Post("/completions", complete(false));  // the paths some clients use without the /v1 prefix
    svr.Post("/chat/completions", complete(true));

    int port = o.port;
    if (port == 0) {
      port = svr.bind_to_any_port(o.host);
      check(port > 0, "cannot bind ", o.host, " on any port");
    } else {
      check(svr.bind_to_port(o.host, port), "cannot bind ", o.host, ":", port, " (in use, or not an address here)");
    }
    std::fprintf(stderr,
                 "tessera-server: %s (%s, %d layers), %d parallel x %lld positions, KV pool %lld blocks of %lld (%s, %.1f MiB), "
                 "step %d rows%s\n",
                 model_id.c_str(), model->config().arch.c_str(), model->config().n_layers, o.parallel,
                 static_cast<long long>(o.ctx_size), static_cast<long long>(rc.n_blocks),
                 static_cast<long long>(rc.block_size), o.kv_type.c_str(), static_cast<double>(kv_pool_bytes) / (1 << 20),
                 o.step_tokens, o.exact ? ", exact" : "");
    std::fprintf(stderr, "tessera-server: listening on http://%s:%d\n", o.host.c_str(), port);
    std::fflush(stderr);

    std::atomic<bool> signalled{false}, http_done{false};
    std::thread http([&svr, &http_done] {
      svr.listen_after_bind();
      http_done = true;
    });
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&sigs, &sig);
      if (signalled.exchange(true)) return;  // the HTTP loop ended on its own
      std::fprintf(stderr, "tessera-server: %s: finishing running requests (up to %.0f s), then stopping\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM", o.shutdown_grace);
      // A signal that came during start-up: stop() before listen() has begun would be lost.
      for (int i = 0; i < 1000 && !svr.is_running() && !http_done.load(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      engine.stop(o.shutdown_grace);  // new requests get 503 from here on
      // Let open streams write their last chunks: httplib ends a chunked
      // response without them once the listener is gone.
      for (int i = 0; i < 1000 && open_streams.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      svr.stop();
      // A client that keeps a connection half-open would hold stop() forever.
      std::thread([] {
        std::this_thread::sleep_for(std::chrono::seconds(10));
        std::fprintf(stderr, "tessera-server: connections still open 10 s after stopping; exiting\n");
        std::_Exit(0);
      }).detach();
    });
    http.join();
    if (!signalled.exchange(true)) pthread_kill(waiter.native_handle(), SIGTERM);  // wake the waiter
    waiter.join();
    engine.stop(0.0);
    std::fprintf(stderr, "tessera-server: stopped\n");
    return 0;
  } catch (const std::exception& e) {  // tessera::Error included
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
