// The serving loop behind tessera-server: one thread owns the runtime::Scheduler
// and steps it; HTTP threads hand it requests and read their output through a
// Channel. Everything that crosses threads goes through one mutex here or a
// channel's own, so the scheduler itself stays single-threaded.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/runtime/scheduler.hpp"

namespace tessera_server {

using namespace tessera;

// One request's output as the engine produces it: text pieces, then either a
// result or an error. The engine pushes; one HTTP thread pulls.
class Channel {
 public:
  void push(std::string_view piece) {
    std::lock_guard lock(mu_);
    pieces_.emplace_back(piece);
    cv_.notify_all();
  }
  void finish(const runtime::GenerationResult& r) {
    std::lock_guard lock(mu_);
    result_ = r;
    cv_.notify_all();
  }
  // The request could not run: message and the HTTP status to answer with.
  void fail(std::string message, int status = 500) {
    std::lock_guard lock(mu_);
    error_ = std::move(message);
    status_ = status;
    cv_.notify_all();
  }

  // What a reader gets: pieces since the last pull, and whether the request has ended.
  struct Pull {
    std::vector<std::string> pieces;
    bool ended = false;
  };
  // Waits up to `timeout` for a piece or the end.
  Pull pull(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !pieces_.empty() || ended(); });
    Pull p;
    p.pieces.assign(std::make_move_iterator(pieces_.begin()), std::make_move_iterator(pieces_.end()));
    pieces_.clear();
    p.ended = ended();
    return p;
  }
  // Waits for the end; the result, or nullopt with error() set.
  std::optional<runtime::GenerationResult> wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return ended(); });
    return result_;
  }
  std::optional<runtime::GenerationResult> result() const {
    std::lock_guard lock(mu_);
    return result_;
  }
  std::string error() const {
    std::lock_guard lock(mu_);
    return error_.value_or("");
  }
  int error_status() const {
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  bool ended() const { return result_.has_value() || error_.has_value(); }
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> pieces_;
  std::optional<runtime::GenerationResult> result_;
  std::optional<std::string> error_;
  int status_ = 500;
};

// Counters the HTTP threads may read at any time (for /metrics and /health).
struct EngineGauges {
  std::atomic<int64_t> waiting{0}, running{0}, in_flight{0}, prefix_hit_tokens{0}, preemptions{0};
};

// The thread that owns the scheduler. submit() and cancel() are thread-safe.
class Engine {
 public:
  // `max_in_flight`: requests accepted and not yet ended, at most; submit()
  // refuses more (the server answers 503). `threads`: the kernels' thread count
  // (0: OpenMP's default), set on the engine thread, where the kernels run
  // (OpenMP's count is per thread).
  Engine(std::shared_ptr<const models::LlamaModel> model, const io::Tokenizer& tok, runtime::SchedulerConfig cfg,
         runtime::Metrics* metrics, int64_t max_in_flight, int threads = 0)
      : sched_(std::move(model), tok, cfg, metrics), max_in_flight_(max_in_flight) {
    thread_ = std::thread([this, threads] {
      if (threads > 0) set_num_threads(threads);
      loop();
    });
  }
  ~Engine() { stop(0.0); }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const runtime::SchedulerConfig& config() const { return sched_.config(); }
  double now() const { return sched_.now(); }  // the clock of the metrics' events
  const EngineGauges& gauges() const { return gauges_; }
  bool accepting() const { return !stopping_.load(); }

  // Queues req; its on_text / on_done are replaced by the channel's. Null when
  // the server is full or stopping (the caller says 503). Errors the scheduler
  // raises at admission reach the channel's error().
  std::shared_ptr<Channel> submit(runtime::ServeRequest req) {
    auto ch = std::make_shared<Channel>();
    {
      std::lock_guard lock(mu_);
      if (stopping_ || gauges_.in_flight.load() >= max_in_flight_) return nullptr;
      ++gauges_.in_flight;
      req.on_text = [ch](std::string_view s) {
        ch->push(s);
        return true;
      };
      req.on_done = [this, ch](const runtime::GenerationResult& r) {
        --gauges_.in_flight;  // first: whoever sees the answer may send the next request at once
        ch->finish(r);
      };
      inbox_.push_back({std::move(req), ch});
    }
    cv_.notify_all();
    return ch;
  }

  // Ends the request behind ch (a client that went away). Safe after it ended.
  void cancel(const std::shared_ptr<Channel>& ch) {
    {
      std::lock_guard lock(mu_);
      cancels_.push_back(ch);
    }
    cv_.notify_all();
  }

  // Stops accepting; lets what runs finish for up to grace_s seconds, then
  // cancels the rest; joins the thread. Idempotent.
  void stop(double grace_s) {
    {
      std::lock_guard lock(mu_);
      if (!stopping_) deadline_ = std::chrono::steady_clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                                          std::chrono::duration<double>(grace_s));
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Incoming {
    runtime::ServeRequest req;
    std::shared_ptr<Channel> ch;
  };

  void loop() {
    std::vector<std::pair<uint64_t, std::weak_ptr<Channel>>> ids;  // scheduler id of each live channel
    while (true) {
      std::deque<Incoming> in;
      std::vector<std::shared_ptr<Channel>> cancels;
      bool past_deadline = false;
      {
        std::unique_lock lock(mu_);
        if (inbox_.empty() && cancels_.empty() && sched_.n_waiting() == 0 && sched_.n_running() == 0) {
          if (stopping_) break;
          cv_.wait(lock, [&] { return stopping_ || !inbox_.empty() || !cancels_.empty(); });
        }
        in.swap(inbox_);
        cancels.swap(cancels_);
        past_deadline = stopping_ && Clock::now() >= deadline_;
      }
      for (auto& i : in) {
        if (past_deadline) {
          i.ch->fail("the server is shutting down", 503);
          --gauges_.in_flight;
          continue;
        }
        try {
          const uint64_t id = sched_.submit(std::move(i.req));
          ids.emplace_back(id, i.ch);
        } catch (const std::exception& e) {  // the request's own fault (checked again by the scheduler)
          --gauges_.in_flight;
          i.ch->fail(e.what(), 400);
        }
      }
      std::erase_if(ids, [](const auto& p) { return p.second.expired(); });
      for (auto& [id, w] : ids) {
        const auto ch = w.lock();
        const bool cancel =
            past_deadline || std::any_of(cancels.begin(), cancels.end(), [&](const auto& c) { return c == ch; });
        if (cancel && ch && !ch->result()) sched_.cancel(id);
      }
      try {
        sched_.step();
      } catch (const std::exception& e) {  // the model refused a step (or memory ran out): end what ran in it
        for (auto& [id, w] : ids)
          if (auto ch = w.lock(); ch && !ch->result()) sched_.cancel(id);
        std::fprintf(stderr, "tessera-server: step failed: %s\n", e.what());
      }
      gauges_.waiting = static_cast<int64_t>(sched_.n_waiting());
      gauges_.running = static_cast<int64_t>(sched_.n_running());
      gauges_.prefix_hit_tokens = sched_.prefix_hit_tokens();
      gauges_.preemptions = sched_.preemptions();
    }
  }

  runtime::Scheduler sched_;
  int64_t max_in_flight_;
  EngineGauges gauges_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Incoming> inbox_;
  std::vector<std::shared_ptr<Channel>> cancels_;
  std::atomic<bool> stopping_{false};
  Clock::time_point deadline_{};
  std::thread thread_;
};

}  // namespace tessera_server
