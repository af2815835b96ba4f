// Metrics: process-wide counters and histograms rendered in the Prometheus text format.
//
// Thread safety: not thread-safe; updated and rendered on the control thread.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

namespace kindling {

class Metrics {
 public:
  // Duration histogram bucket bounds, in milliseconds.
  static constexpr std::array<double, 14> kBucketsMs = {0.25, 0.5, 1,   2.5,  5,    10,   25,
                                                        50,   100, 250, 1000, 3000, 10000, 60000};
  struct FunctionStats {
    uint64_t invocations = 0, errors = 0, throttles = 0, cold_starts = 0, warm_starts = 0;
    std::array<uint64_t, kBucketsMs.size()> buckets{};
    uint64_t count = 0;
    double sum_ms = 0;
  };

  void RecordInvocation(const std::string& function, bool function_error, bool cold, double ms);
  void RecordThrottle(const std::string& function) { functions_[function].throttles++; }
  void RecordServiceError(const std::string& function) { functions_[function].errors++; }
  // Gauge values set by their owners just before rendering.
  void SetGauge(const std::string& name_and_labels, double value) { gauges_[name_and_labels] = value; }
  // A counter keyed by its full name and labels ("kindling_async_events_accepted_total{...}").
  void AddCounter(const std::string& name_and_labels, double by = 1) { counters_[name_and_labels] += by; }
  void ClearGauges(const std::string& prefix);

  std::string RenderPrometheus() const;

 private:
  std::map<std::string, FunctionStats> functions_;
  std::map<std::string, double> gauges_;
  std::map<std::string, double> counters_;
};

}  // namespace kindling
