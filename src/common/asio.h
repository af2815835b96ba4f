// The Boost.Asio pieces Kindling's coroutines use. Boost 1.74's awaitable.hpp uses std::exchange
// without including <utility>; including it first keeps GCC 12 happy.
#pragma once

#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <optional>
#include <type_traits>

#include <boost/asio/async_result.hpp>
#include <boost/asio/associated_executor.hpp>

namespace kindling {

// Runs f() on `executor` (e.g. a thread pool for blocking work) and resumes the calling coroutine
// on its own executor with f's result. f must not touch state owned by the caller's thread.
template <typename Executor, typename F>
boost::asio::awaitable<std::invoke_result_t<F&>> RunOn(Executor executor, F f) {
  using R = std::invoke_result_t<F&>;
  auto out = std::make_shared<std::optional<R>>();
  auto fn = std::make_shared<F>(std::move(f));
  auto initiation = [executor, out, fn](auto handler) {
    boost::asio::post(executor, [out, fn, handler = std::move(handler)]() mutable {
      out->emplace((*fn)());
      auto home = boost::asio::get_associated_executor(handler);
      boost::asio::post(home, std::move(handler));
    });
  };
  co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void()>(
      std::move(initiation), boost::asio::use_awaitable);
  co_return std::move(**out);
}

}  // namespace kindling
