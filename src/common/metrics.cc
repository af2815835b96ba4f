#include "common/metrics.h"

#include <cstdio>

namespace kindling {

void Metrics::RecordInvocation(const std::string& function, bool function_error, bool cold, double ms) {
  FunctionStats& f = functions_[function];
  f.invocations++;
  if (function_error) f.errors++;
  (cold ? f.cold_starts : f.warm_starts)++;
  for (size_t i = 0; i < kBucketsMs.size(); ++i)
    if (ms <= kBucketsMs[i]) f.buckets[i]++;
  f.count++;
  f.sum_ms += ms;
}

void Metrics::ClearGauges(const std::string& prefix) {
  for (auto it = gauges_.begin(); it != gauges_.end();)
    it = it->first.rfind(prefix, 0) == 0 ? gauges_.erase(it) : std::next(it);
}

std::string Metrics::RenderPrometheus() const {
  std::string out;
  char num[64];
  auto counter = [&](const char* name, const char* help, uint64_t FunctionStats::*field) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n";
    for (const auto& [fn, f] : functions_)
      out += std::string(name) + "{function=\"" + fn + "\"} " + std::to_string(f.*field) + "\n";
  };
  counter("kindling_invocations_total", "Invocations that reached a sandbox.", &FunctionStats::invocations);
  counter("kindling_errors_total", "Invocations that ended in a function or service error.", &FunctionStats::errors);
  counter("kindling_throttles_total", "Invocations refused with 429.", &FunctionStats::throttles);
  counter("kindling_cold_starts_total", "Invocations that started a new sandbox.", &FunctionStats::cold_starts);
  counter("kindling_warm_starts_total", "Invocations served by a warm sandbox.", &FunctionStats::warm_starts);
  out += "# HELP kindling_invocation_duration_ms Invocation duration in milliseconds.\n"
         "# TYPE kindling_invocation_duration_ms histogram\n";
  for (const auto& [fn, f] : functions_) {
    for (size_t i = 0; i < kBucketsMs.size(); ++i) {
      snprintf(num, sizeof num, "%g", kBucketsMs[i]);
      out += "kindling_invocation_duration_ms_bucket{function=\"" + fn + "\",le=\"" + num + "\"} " +
             std::to_string(f.buckets[i]) + "\n";
    }
    out += "kindling_invocation_duration_ms_bucket{function=\"" + fn + "\",le=\"+Inf\"} " +
           std::to_string(f.count) + "\n";
    snprintf(num, sizeof num, "%.3f", f.sum_ms);
    out += "kindling_invocation_duration_ms_sum{function=\"" + fn + "\"} " + num + "\n";
    out += "kindling_invocation_duration_ms_count{function=\"" + fn + "\"} " + std::to_string(f.count) + "\n";
  }
  std::string last_name;
  for (const auto& [key, value] : counters_) {
    std::string name = key.substr(0, key.find('{'));
    if (name != last_name) out += "# TYPE " + name + " counter\n";
    last_name = name;
    snprintf(num, sizeof num, "%.15g", value);
    out += key + " " + num + "\n";
  }
  last_name.clear();
  for (const auto& [key, value] : gauges_) {
    std::string name = key.substr(0, key.find('{'));
    if (name != last_name) out += "# TYPE " + name + " gauge\n";
    last_name = name;
    snprintf(num, sizeof num, "%.15g", value);
    out += key + " " + num + "\n";
  }
  return out;
}

}  // namespace kindling
