// flamingo-bench's timing helpers: one call's seconds, repeated runs after a warm-up, their
// median and best.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace flamingo::bench {

template <class F>
double seconds(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs f once untimed, then `reps` timed runs; returns their times in seconds.
template <class F>
std::vector<double> timed_runs(int64_t reps, F&& f) {
  f();
  std::vector<double> out;
  for (int64_t r = 0; r < reps; ++r) out.push_back(seconds(f));
  return out;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

inline double best(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

}  // namespace flamingo::bench
