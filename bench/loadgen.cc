// kindling-loadgen: closed-loop HTTP/1.1 load generator for the Kindling benchmark.
//
// One thread per connection, blocking sockets, keep-alive, TCP_NODELAY. Each connection first
// connects and sends --warmup requests (not measured); then all connections start together and
// send requests back to back until --requests (total, shared) are done or --duration elapsed.
// Latency is measured per request from the first byte sent to the last byte of the response.
// The whole run is bounded by --max-time: when it expires every socket is shut down and the
// partial result is printed with "timed_out": true.
//
// Output: one JSON line on stdout (see PrintJson). Exit status 0 when the run completed (even
// with non-2xx responses, which are counted), 2 on usage errors, 1 when it timed out or no
// request succeeded.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"

using namespace kindling::bench;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string url;
  std::string method;
  std::string body;
  std::vector<std::string> headers;
  int concurrency = 1;
  long requests = -1;      // total measured requests (shared by all connections)
  double duration = -1;    // seconds
  long warmup = 0;         // per connection
  double timeout = 30;     // per request, seconds
  double max_time = -1;    // whole run, seconds
  std::string expect_body; // when set, count responses whose body differs (--expect-body[-file])
  bool has_expect = false;
  std::string label;
};

void Usage() {
  fprintf(stderr,
          "usage: kindling-loadgen --url http://127.0.0.1:PORT/path [--method GET|POST|PUT]\n"
          "         [--body STR | --body-file PATH] [--header 'Name: value']...\n"
          "         [--concurrency N] (--requests M | --duration S) [--warmup K-per-connection]\n"
          "         [--timeout S-per-request] [--max-time S] [--expect-body STR | --expect-body-file F]\n"
          "         [--label L]\n");
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        fprintf(stderr, "missing value for %s\n", what);
        return nullptr;
      }
      return argv[++i];
    };
    const char* v = nullptr;
    if (a == "--help" || a == "-h") return false;
    if (!(v = next(a.c_str()))) return false;
    if (a == "--url") o->url = v;
    else if (a == "--method") o->method = v;
    else if (a == "--body") o->body = v;
    else if (a == "--body-file") {
      std::ifstream f(v, std::ios::binary);
      if (!f) {
        fprintf(stderr, "cannot read %s\n", v);
        return false;
      }
      std::stringstream ss;
      ss << f.rdbuf();
      o->body = ss.str();
    } else if (a == "--header") o->headers.push_back(v);
    else if (a == "--concurrency" || a == "-c") o->concurrency = atoi(v);
    else if (a == "--requests" || a == "-n") o->requests = atol(v);
    else if (a == "--duration" || a == "-d") o->duration = atof(v);
    else if (a == "--warmup") o->warmup = atol(v);
    else if (a == "--timeout") o->timeout = atof(v);
    else if (a == "--max-time") o->max_time = atof(v);
    else if (a == "--expect-body") { o->expect_body = v; o->has_expect = true; }
    else if (a == "--expect-body-file") {
      std::ifstream f(v, std::ios::binary);
      if (!f) {
        fprintf(stderr, "cannot read %s\n", v);
        return false;
      }
      std::stringstream ss;
      ss << f.rdbuf();
      o->expect_body = ss.str();
      o->has_expect = true;
    }
    else if (a == "--label") o->label = v;
    else {
      fprintf(stderr, "unknown option %s\n", a.c_str());
      return false;
    }
  }
  if (o->url.empty()) return false;
  if (o->concurrency < 1 || o->concurrency > 4096) {
    fprintf(stderr, "--concurrency must be 1..4096\n");
    return false;
  }
  if ((o->requests < 0) == (o->duration < 0)) {
    fprintf(stderr, "give exactly one of --requests or --duration\n");
    return false;
  }
  if (o->timeout <= 0) o->timeout = 30;
  if (o->method.empty()) o->method = o->body.empty() ? "GET" : "POST";
  if (o->max_time <= 0) {
    o->max_time = (o->duration > 0 ? o->duration : 60) + o->timeout * 2 + 10;
  }
  return true;
}

std::string JsonEscape(const std::string& s) {
  std::string r;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      r += '\\';
      r += static_cast<char>(c);
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      r += b;
    } else {
      r += static_cast<char>(c);
    }
  }
  return r;
}

struct Worker {
  HttpConn conn;
  std::vector<uint32_t> lat_us;  // per completed measured request
  std::map<int, long> status;
  long errors = 0, warmup_errors = 0, function_errors = 0, body_mismatch = 0;
  std::string first_error;
  Clock::time_point last_done{};
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) {
    Usage();
    return 2;
  }
  Url url;
  std::string err;
  if (!ParseUrl(o.url, &url, &err)) {
    fprintf(stderr, "%s\n", err.c_str());
    return 2;
  }
  const std::string request =
      BuildRequest(o.method, url, o.body, o.headers.data(), o.headers.size());
  const bool head = o.method == "HEAD";
  const int timeout_ms = static_cast<int>(o.timeout * 1000);

  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < o.concurrency; i++) workers.push_back(std::make_unique<Worker>());

  std::atomic<bool> stop{false};
  std::atomic<long> tickets{o.requests};
  std::mutex mu;
  std::condition_variable cv;
  int ready = 0, finished = 0;
  bool go = false;
  Clock::time_point t0{}, end_at{};

  const auto run_start = Clock::now();
  const auto hard_deadline =
      run_start + std::chrono::microseconds(static_cast<long>(o.max_time * 1e6));

  auto body = [&](Worker* w) {
    Response resp;
    std::string e;
    if (!w->conn.Connect(url, timeout_ms, &e)) {
      w->warmup_errors++;
      w->first_error = e;
    }
    for (long i = 0; i < o.warmup && !stop.load(std::memory_order_relaxed); i++) {
      if (!w->conn.RoundTrip(request, head, &resp, &e)) {
        w->warmup_errors++;
        if (w->first_error.empty()) w->first_error = "warmup: " + e;
      }
    }
    {
      std::unique_lock<std::mutex> l(mu);
      ready++;
      cv.notify_all();
      cv.wait(l, [&] { return go; });
    }
    const bool by_time = o.duration > 0;
    if (by_time) w->lat_us.reserve(1 << 16);
    else w->lat_us.reserve(static_cast<size_t>(o.requests / o.concurrency + 1));
    while (!stop.load(std::memory_order_relaxed)) {
      if (by_time) {
        if (Clock::now() >= end_at) break;
      } else if (tickets.fetch_sub(1, std::memory_order_relaxed) <= 0) {
        break;
      }
      auto s = Clock::now();
      bool ok = w->conn.RoundTrip(request, head, &resp, &e);
      auto f = Clock::now();
      if (!ok) {
        if (stop.load()) break;
        w->errors++;
        if (w->first_error.empty()) w->first_error = e;
        // Avoid a hot loop against a dead server; the deadline still bounds us.
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      w->last_done = f;
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(f - s).count();
      w->lat_us.push_back(static_cast<uint32_t>(std::min<long>(us, UINT32_MAX)));
      w->status[resp.status]++;
      if (!FindHeader(resp.headers, "X-Amz-Function-Error").empty()) w->function_errors++;
      if (o.has_expect && resp.body != o.expect_body) {
        if (w->body_mismatch++ == 0 && w->first_error.empty()) {
          w->first_error = "unexpected body: " + resp.body.substr(0, 200);
        }
      }
      if ((resp.status < 200 || resp.status >= 300) && w->first_error.empty()) {
        w->first_error = "HTTP " + std::to_string(resp.status) + ": " + resp.body.substr(0, 300);
      }
    }
    std::lock_guard<std::mutex> l(mu);
    finished++;
    cv.notify_all();
  };

  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back(body, w.get());

  bool timed_out = false;
  {
    std::unique_lock<std::mutex> l(mu);
    if (!cv.wait_until(l, hard_deadline, [&] { return ready == o.concurrency; })) {
      timed_out = true;
    }
    t0 = Clock::now();
    end_at = t0 + std::chrono::microseconds(static_cast<long>(std::max(o.duration, 0.0) * 1e6));
    go = true;
    cv.notify_all();
    if (!timed_out &&
        !cv.wait_until(l, hard_deadline, [&] { return finished == o.concurrency; })) {
      timed_out = true;
    }
  }
  if (timed_out) {
    stop = true;
    for (auto& w : workers) w->conn.Shutdown();
  }
  for (auto& t : threads) t.join();
  Clock::time_point t_end = t0;
  for (auto& w : workers) t_end = std::max(t_end, w->last_done);
  if (timed_out) t_end = Clock::now();

  std::vector<uint32_t> all;
  std::map<int, long> status;
  long errors = 0, warmup_errors = 0, function_errors = 0, body_mismatch = 0;
  std::string first_error;
  for (auto& w : workers) {
    all.insert(all.end(), w->lat_us.begin(), w->lat_us.end());
    for (auto& [k, v] : w->status) status[k] += v;
    errors += w->errors;
    warmup_errors += w->warmup_errors;
    function_errors += w->function_errors;
    body_mismatch += w->body_mismatch;
    if (first_error.empty()) first_error = w->first_error;
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) -> long {
    if (all.empty()) return -1;
    size_t idx = static_cast<size_t>(std::ceil(p * static_cast<double>(all.size())));
    idx = std::clamp<size_t>(idx, 1, all.size()) - 1;
    return all[idx];
  };
  double mean = 0;
  for (auto v : all) mean += v;
  if (!all.empty()) mean /= static_cast<double>(all.size());
  long ok2xx = 0, non2xx = 0;
  for (auto& [k, v] : status) (k >= 200 && k < 300 ? ok2xx : non2xx) += v;
  double elapsed = std::chrono::duration<double>(t_end - t0).count();
  double rps = elapsed > 0 ? static_cast<double>(all.size()) / elapsed : 0;

  std::string st = "{";
  for (auto& [k, v] : status) {
    if (st.size() > 1) st += ",";
    st += "\"" + std::to_string(k) + "\":" + std::to_string(v);
  }
  st += "}";
  printf(
      "{\"label\":\"%s\",\"url\":\"%s\",\"method\":\"%s\",\"concurrency\":%d,\"warmup\":%ld,"
      "\"requests\":%zu,\"ok\":%ld,\"non2xx\":%ld,\"errors\":%ld,\"warmup_errors\":%ld,"
      "\"function_errors\":%ld,\"body_mismatch\":%ld,\"elapsed_s\":%.6f,\"rps\":%.1f,"
      "\"min_us\":%ld,\"p50_us\":%ld,\"p90_us\":%ld,\"p99_us\":%ld,\"p999_us\":%ld,"
      "\"max_us\":%ld,\"mean_us\":%.1f,\"status\":%s,\"timed_out\":%s,\"first_error\":\"%s\"}\n",
      JsonEscape(o.label).c_str(), JsonEscape(o.url).c_str(), JsonEscape(o.method).c_str(),
      o.concurrency, o.warmup, all.size(), ok2xx, non2xx, errors, warmup_errors, function_errors,
      body_mismatch, elapsed, rps, all.empty() ? -1L : static_cast<long>(all.front()), pct(0.5),
      pct(0.9), pct(0.99), pct(0.999), all.empty() ? -1L : static_cast<long>(all.back()), mean,
      st.c_str(), timed_out ? "true" : "false", JsonEscape(first_error).c_str());
  fflush(stdout);
  if (timed_out || ok2xx + non2xx == 0) return 1;
  return 0;
}
