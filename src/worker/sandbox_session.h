// SandboxSession: the worker's live connection to one sandbox (its kindling-init), running one
// invocation at a time. It reads control frames continuously: log text goes to the function's log
// and the current invocation's tail; results complete the waiting Invoke().
//
// Thread safety: every method runs on the worker's io_context thread.
#pragma once

#include "common/asio.h"
#include <boost/asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/function.h"
#include "common/status.h"
#include "init/protocol.h"
#include "sandbox/sandbox.h"
#include "worker/function_log.h"
#include "worker/invoke.h"

namespace kindling {

class SandboxSession : public std::enable_shared_from_this<SandboxSession> {
 public:
  // freeze_delay: how long an idle runtime may stay unfrozen, so that a sandbox serving a steady
  // stream of invocations is not frozen and thawed around each one (0 = at once, as Lambda).
  SandboxSession(boost::asio::io_context& io, std::unique_ptr<Sandbox> sandbox, FunctionConfig fn,
                 std::shared_ptr<FunctionLog> log, std::chrono::microseconds freeze_delay);
  ~SandboxSession();

  // Starts reading control frames. Call once, right after construction.
  void Start();

  // Runs one invocation. A cold sandbox first waits (up to init_timeout) for its runtime to ask for
  // an event. Function errors, timeouts and crashes are results (function_error set); after a
  // timeout, crash or init error the sandbox is dead(). Only one Invoke at a time.
  boost::asio::awaitable<InvokeResult> Invoke(const InvokeRequest& request);  // awaited by the caller

  // Freezes the sandbox once its runtime is idle (blocked asking for the next event) and has stayed
  // so for the freeze delay. Cancelled by the next Invoke.
  void Freeze();
  void Thaw();
  // Waits (up to kInitTimeout) for the runtime's first request for an event: true when it is ready,
  // false when it failed or died first. For sandboxes started ahead of demand.
  boost::asio::awaitable<bool> WaitReady();
  // Kills every process; the session becomes dead(). Idempotent.
  void Destroy();

  // Optional hooks for the sandbox's start (its init phase and first invocation), run on the io
  // thread. why_failed: asked when the start fails; a non-empty answer is added to the error.
  // over: runs once when the start is over, successful or not.
  struct StartHooks {
    std::function<std::string()> why_failed;
    std::function<void()> over;
  };
  void SetStartHooks(StartHooks hooks) { start_hooks_ = std::move(hooks); }
  // Runs once, posted to the io thread, when the session becomes dead() (for its owner's
  // bookkeeping; the session may already be released by then).
  void OnDead(std::function<void()> on_dead) { on_dead_ = std::move(on_dead); }
  // Keeps thing alive as long as the session (e.g. the image mounts its sandbox uses).
  void Hold(std::shared_ptr<void> thing) { held_.push_back(std::move(thing)); }

  bool dead() const { return dead_; }
  bool frozen() const { return frozen_; }
  bool initialized() const { return ready_; }
  const FunctionConfig& function() const { return fn_; }
  const std::string& id() const { return sandbox_->id(); }

  static constexpr std::chrono::seconds kInitTimeout{10};  // Lambda's init phase limit

 private:
  boost::asio::awaitable<void> ReadLoop();
  void OnFrame(const protocol::Frame& frame);
  void AppendLog(std::string_view text);
  void MarkDead(std::string reason);
  void DoFreeze();
  // Waits until woken by a frame or the deadline; true when woken before the deadline.
  boost::asio::awaitable<bool> WaitUntil(std::chrono::steady_clock::time_point deadline);
  std::string ExitErrorType();
  void StartOver();

  std::vector<std::shared_ptr<void>> held_;  // destroyed after the sandbox
  StartHooks start_hooks_;
  std::function<void()> on_dead_;
  boost::asio::io_context& io_;
  std::unique_ptr<Sandbox> sandbox_;
  FunctionConfig fn_;
  std::shared_ptr<FunctionLog> log_;
  std::chrono::microseconds freeze_delay_;
  boost::asio::posix::stream_descriptor control_;
  boost::asio::steady_timer wake_;
  boost::asio::steady_timer freeze_timer_;

  bool ready_ = false;          // the runtime asked for its first event
  double init_duration_ms_ = 0;
  bool dead_ = false;
  std::string dead_reason_;
  bool frozen_ = false;
  bool invoking_ = false;  // Freeze() is a no-op while an invocation runs
  bool waiting_ = false;   // the runtime is blocked in GET /next with nothing held for it
  bool freeze_when_waiting_ = false;
  bool runtime_exited_ = false;  // kindling-init reported the runtime's exit (kExited)
  bool exit_delivered_ = false;  // kExited said the runtime had the outstanding invocation

  // The current invocation.
  std::string current_id_;
  std::optional<protocol::Frame> result_;  // kResponse / kError / kInitError
  std::string tail_;                       // log text since the last invocation ended
};

}  // namespace kindling
