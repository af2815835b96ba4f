// kindling-init: PID 1 of every sandbox. It starts the runtime, serves the Lambda Runtime API to it
// over HTTP/1.1 on a loopback address, and relays invocations, results and logs to the worker over
// the control socket (see init/protocol.h for the frames and their order).
//
// One thread, one epoll loop: the control socket, the listening socket, up to kMaxConnections
// Runtime API connections, one pipe carrying the runtime's stdout and stderr, and a signalfd
// (SIGCHLD: reap every child; SIGTERM/SIGINT: kill the runtime and exit).
#pragma once

#include <string>
#include <vector>

namespace kindling::init {

constexpr size_t kMaxConnections = 64;

struct Options {
  std::string listen = "127.0.0.1:9001";  // IPv4 address:port ("localhost" allowed); port 0 = any
  std::vector<std::string> runtime_argv;
  int control_fd = 3;                     // protocol::kControlFd
};

// Parses `kindling-init [--listen ADDR:PORT] [--] RUNTIME_ARGV...`. Returns false and sets *error
// on bad usage.
bool ParseArgs(int argc, char** argv, Options* opts, std::string* error);

// Runs until the runtime exits (after sending kExited), the worker closes the control socket, or
// SIGTERM/SIGINT. Returns the process exit status: 0 on those, 2 on a malformed control frame or
// a setup failure.
int Run(const Options& opts);

}  // namespace kindling::init
