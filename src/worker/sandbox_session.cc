#include "worker/sandbox_session.h"

#include <sys/wait.h>

#include "common/asio.h"
#include <boost/asio/write.hpp>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/clock.h"

namespace kindling {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using std::chrono::steady_clock;

namespace {

std::string ErrorDocument(const std::string& type, const std::string& message) {
  return nlohmann::json{{"errorType", type}, {"errorMessage", message}}.dump();
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    if (sig == SIGKILL) return "signal: killed";
    if (sig == SIGSEGV) return "signal: segmentation fault";
    if (sig == SIGABRT) return "signal: aborted";
    return "signal: " + std::to_string(sig);
  }
  return "unknown status";
}

std::string FormatMs(double ms) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.2f", ms);
  return buf;
}

}  // namespace

SandboxSession::SandboxSession(asio::io_context& io, std::unique_ptr<Sandbox> sandbox,
                               FunctionConfig fn, std::shared_ptr<FunctionLog> log,
                               std::chrono::microseconds freeze_delay)
    : io_(io),
      sandbox_(std::move(sandbox)),
      fn_(std::move(fn)),
      log_(std::move(log)),
      freeze_delay_(freeze_delay),
      control_(io, dup(sandbox_->control_fd())),
      wake_(io),
      freeze_timer_(io) {}

SandboxSession::~SandboxSession() { Destroy(); }

void SandboxSession::Start() {
  asio::co_spawn(io_, [self = shared_from_this()]() { return self->ReadLoop(); }, asio::detached);
}

awaitable<void> SandboxSession::ReadLoop() {
  auto self = shared_from_this();  // keeps the session alive while frames can arrive
  protocol::FrameDecoder decoder;
  protocol::Frame frame;
  std::vector<char> buf(256 * 1024);
  for (;;) {
    boost::system::error_code ec;
    size_t n = co_await control_.async_read_some(asio::buffer(buf),
                                                 asio::redirect_error(use_awaitable, ec));
    if (ec) {
      MarkDead(ec == asio::error::eof ? "kindling-init closed its control socket" : ec.message());
      co_return;
    }
    decoder.Feed(buf.data(), n);
    int rc;
    while ((rc = decoder.Next(&frame)) == 1) OnFrame(frame);
    if (rc < 0) {
      MarkDead("malformed control frame from kindling-init");
      co_return;
    }
    if (dead_) co_return;
  }
}

void SandboxSession::OnFrame(const protocol::Frame& frame) {
  using protocol::FrameType;
  switch (frame.type) {
    case FrameType::kLog:
      AppendLog(frame.field(0));
      return;
    case FrameType::kReady:
      ready_ = true;
      waiting_ = true;
      init_duration_ms_ = std::atof(frame.field(0).c_str()) / 1000.0;
      wake_.cancel();
      return;
    case FrameType::kWaiting:
      waiting_ = true;
      if (freeze_when_waiting_) DoFreeze();
      return;
    case FrameType::kResponse:
    case FrameType::kError:
    case FrameType::kInitError:
      result_ = frame;
      wake_.cancel();
      return;
    case FrameType::kExited: {
      int status = std::atoi(frame.field(0).c_str());
      exit_delivered_ = frame.field(1) == "1";
      runtime_exited_ = !dead_;  // the exit is why the sandbox ended
      MarkDead("Runtime exited with error: " + DescribeWaitStatus(status));
      return;
    }
    default:
      MarkDead("unexpected control frame from kindling-init");
  }
}

void SandboxSession::AppendLog(std::string_view text) {
  if (log_) log_->Append(text);
  tail_.append(text.data(), text.size());
  if (tail_.size() > 2 * kLogTailBytes) tail_.erase(0, tail_.size() - kLogTailBytes);
}

void SandboxSession::MarkDead(std::string reason) {
  if (dead_) return;
  dead_ = true;
  dead_reason_ = std::move(reason);
  wake_.cancel();
  if (on_dead_) {
    auto on_dead = std::move(on_dead_);
    on_dead_ = nullptr;
    asio::post(io_, std::move(on_dead));
  }
}

awaitable<bool> SandboxSession::WaitUntil(steady_clock::time_point deadline) {
  wake_.expires_at(deadline);
  boost::system::error_code ec;
  co_await wake_.async_wait(asio::redirect_error(use_awaitable, ec));
  co_return ec == asio::error::operation_aborted;
}

std::string SandboxSession::ExitErrorType() {
  return sandbox_->OomKills() > 0 ? "Runtime.OutOfMemory" : "Runtime.ExitError";
}

awaitable<InvokeResult> SandboxSession::Invoke(const InvokeRequest& request) {
  auto self = shared_from_this();
  InvokeResult out;
  out.executed_version = fn_.version;
  out.cold_start = !ready_;
  const std::string& id = request.request_id;
  auto fail = [&](const std::string& type, std::string message) {
    if (!ready_ && start_hooks_.why_failed) {
      std::string why = start_hooks_.why_failed();
      if (!why.empty()) message += " (" + why + ")";
    }
    out.function_error = "Unhandled";
    out.payload = ErrorDocument(type, "RequestId: " + id + " Error: " + message);
    AppendLog(IsoTimestamp() + " " + id + " " + message + "\n");
  };
  struct StartEnd {
    SandboxSession& session;
    ~StartEnd() { session.StartOver(); }
  } start_end{*this};

  freeze_timer_.cancel();
  freeze_when_waiting_ = false;
  Thaw();
  invoking_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{invoking_};
  // Cold: wait for the runtime to finish its init phase and ask for an event.
  auto init_deadline = steady_clock::now() + kInitTimeout;
  while (!ready_ && !dead_ && !result_) {
    if (!co_await WaitUntil(init_deadline) && !ready_) {
      fail("Runtime.InitTimeout", "Init phase timed out after 10.00 seconds");
      Destroy();
      break;
    }
  }
  if (result_ && result_->type == protocol::FrameType::kInitError) {
    out.function_error = "Unhandled";
    out.payload = result_->field(1);
    Destroy();
  } else if (dead_ && out.function_error.empty()) {
    fail(ExitErrorType(), dead_reason_);
  }
  if (!out.function_error.empty()) {
    out.log = tail_.size() > kLogTailBytes ? tail_.substr(tail_.size() - kLogTailBytes) : tail_;
    tail_.clear();
    co_return out;
  }

  // Deliver the event and wait for the result or the deadline.
  auto start = steady_clock::now();
  auto deadline = start + std::chrono::seconds(fn_.timeout_s);
  int64_t deadline_ms = NowEpochMs() + int64_t{fn_.timeout_s} * 1000;
  current_id_ = id;
  result_.reset();
  waiting_ = false;
  std::string frame;
  std::string deadline_text = std::to_string(deadline_ms);
  protocol::Encode(protocol::FrameType::kInvoke,
                   {id, deadline_text, request.invoked_arn, request.trace_id,
                    request.client_context, request.cognito_identity, request.payload},
                   &frame);
  boost::system::error_code ec;
  co_await asio::async_write(control_, asio::buffer(frame), asio::redirect_error(use_awaitable, ec));
  if (ec) MarkDead("control socket write failed: " + ec.message());

  bool timed_out = false;
  while (!result_ && !dead_) {
    if (!co_await WaitUntil(deadline) && !result_ && !dead_) {
      timed_out = true;
      break;
    }
  }
  out.duration_ms = std::chrono::duration<double, std::milli>(steady_clock::now() - start).count();

  if (result_ && result_->field(0) == id) {
    if (result_->type == protocol::FrameType::kResponse) {
      out.payload = result_->field(1);
    } else {
      out.function_error = "Unhandled";
      out.payload = result_->field(2);
    }
  } else if (timed_out) {
    std::string secs = FormatMs(fn_.timeout_s);
    fail("Sandbox.Timedout", "Task timed out after " + secs + " seconds");
    AppendLog("END RequestId: " + id + "\nREPORT RequestId: " + id + "\tDuration: " +
              FormatMs(out.duration_ms) + " ms\tBilled Duration: " +
              std::to_string(static_cast<int64_t>(std::ceil(out.duration_ms))) + " ms\tMemory Size: " + std::to_string(fn_.memory_mb) + " MB\tMax Memory Used: " +
              std::to_string((sandbox_->PeakMemoryBytes() + (1 << 20) - 1) >> 20) +
              " MB\tStatus: timeout\n");
    Destroy();
  } else if (runtime_exited_ && !exit_delivered_) {
    // The runtime ended (e.g. exited right after its previous result) before taking this event:
    // the function never saw it, so the caller may run it on another sandbox.
    out.undelivered = true;
    Destroy();
  } else {
    // Died mid-invocation (crash, exit or OOM kill).
    fail(ExitErrorType(), dead_reason_.empty() ? "Runtime exited without providing a reason" : dead_reason_);
    Destroy();
  }
  current_id_.clear();
  result_.reset();
  out.log = tail_.size() > kLogTailBytes ? tail_.substr(tail_.size() - kLogTailBytes) : tail_;
  tail_.clear();
  co_return out;
}

awaitable<bool> SandboxSession::WaitReady() {
  auto self = shared_from_this();
  auto deadline = steady_clock::now() + kInitTimeout;
  while (!ready_ && !dead_ && !result_)
    if (!co_await WaitUntil(deadline)) break;
  StartOver();
  co_return ready_ && !dead_ && !result_;
}

void SandboxSession::StartOver() {
  if (!start_hooks_.over) return;
  auto over = std::move(start_hooks_.over);
  start_hooks_ = {};
  over();
}

void SandboxSession::Freeze() {
  if (frozen_ || dead_ || invoking_) return;
  if (waiting_) {
    DoFreeze();
  } else {
    freeze_when_waiting_ = true;
  }
}

void SandboxSession::DoFreeze() {
  freeze_when_waiting_ = false;
  if (frozen_ || dead_ || invoking_) return;
  if (freeze_delay_.count() == 0) {
    if (sandbox_->Freeze().ok()) frozen_ = true;
    return;
  }
  freeze_timer_.expires_after(freeze_delay_);
  freeze_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->frozen_ || self->dead_ || self->invoking_) return;
    if (self->sandbox_->Freeze().ok()) self->frozen_ = true;
  });
}

void SandboxSession::Thaw() {
  if (!frozen_) return;
  sandbox_->Thaw();
  frozen_ = false;
}

void SandboxSession::Destroy() {
  if (!sandbox_) return;
  MarkDead(dead_reason_.empty() ? "destroyed" : dead_reason_);
  freeze_timer_.cancel();
  sandbox_->Kill();
  boost::system::error_code ec;
  control_.close(ec);
  frozen_ = false;
}

}  // namespace kindling
