// A JobSink that keeps one job's per-token logprobs (and top logprobs) and lets another thread
// wait for its outcome: for callers that want a job's whole result rather than a stream (the
// engine's warm-up, flamingo-cli). Torch-free. Thread-safety: on_delta/on_finish run on the
// engine thread; wait() may be called from any thread; read the vectors after wait().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "server/engine/job.h"

namespace flamingo {

class CollectingSink : public JobSink {
 public:
  void on_delta(JobDelta d) override {
    std::lock_guard lock(mu_);
    add(d);
  }
  void on_finish(JobDelta last, JobOutcome o) override {
    std::lock_guard lock(mu_);
    add(last);
    outcome_ = std::move(o);
    cv_.notify_all();
  }
  const JobOutcome& wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return outcome_.has_value(); });
    return *outcome_;
  }

  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int32_t, double>>> top_logprobs;

 private:
  void add(const JobDelta& d) {
    logprobs.insert(logprobs.end(), d.logprobs.begin(), d.logprobs.end());
    top_logprobs.insert(top_logprobs.end(), d.top_logprobs.begin(), d.top_logprobs.end());
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<JobOutcome> outcome_;
};

}  // namespace flamingo
