// Test helpers for coroutines: run an io_context until one awaitable has finished, or for a while.
#pragma once

#include <chrono>
#include <optional>

#include "common/asio.h"

namespace kindling {

// Runs `io` (one handler at a time) until `aw` has produced its value, and returns it.
template <typename T>
T RunUntilDone(boost::asio::io_context& io, boost::asio::awaitable<T> aw) {
  std::optional<T> out;
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> { out.emplace(co_await std::move(aw)); },
                        boost::asio::detached);
  while (!out) io.run_one();
  return std::move(*out);
}

inline void RunUntilDone(boost::asio::io_context& io, boost::asio::awaitable<void> aw) {
  bool done = false;
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
    co_await std::move(aw);
    done = true;
  }, boost::asio::detached);
  while (!done) io.run_one();
}

// Runs `io` for `d` of wall time (timers, watches, background coroutines).
inline void RunFor(boost::asio::io_context& io, std::chrono::milliseconds d) {
  auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) io.run_one_for(std::chrono::milliseconds(10));
}

}  // namespace kindling
