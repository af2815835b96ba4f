// kindling-chunkd: the chunk server. Holds every chunk of every image (content-addressed,
// deduplicated), image manifests and prefetch recordings, and serves them over HTTP to workers'
// chunk caches and to image builders (API: src/chunks/chunk_server.h).
//
// It has no authentication: it listens on loopback unless --allow-remote is given.
// SIGTERM/SIGINT: stop accepting, let open connections finish (at most 2 s), exit 0.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <tuple>
#include "common/asio.h"
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "chunks/chunk_server.h"

using namespace kindling;

namespace {

int Fail(const std::string& message) {
  fprintf(stderr, "kindling-chunkd: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "kindling-chunkd: Kindling's chunk server (chunks, image manifests, prefetch recordings over HTTP).\n"
      "It has no authentication yet: anyone who can connect can read and write every image, so it\n"
      "listens on loopback only unless --allow-remote is given."};
  std::string listen = "127.0.0.1:9300";
  std::string data_dir = "/var/lib/kindling-chunkd";
  int64_t latency_ms = 0, grace_s = 600;
  bool no_compress = false, allow_remote = false;
  app.add_option("--listen", listen, "Address to serve on, HOST:PORT (port 0: any free port)")->capture_default_str();
  app.add_option("--data-dir", data_dir, "Directory for chunks (<dir>/chunks) and images.db")->capture_default_str();
  app.add_option("--simulated-latency-ms", latency_ms,
                 "Milliseconds added before serving each chunk GET (to emulate a remote link)")
      ->check(CLI::Range(int64_t{0}, int64_t{60000}))
      ->capture_default_str();
  app.add_option("--gc-grace-seconds", grace_s,
                 "Garbage collection keeps unreferenced chunks put or checked within this many seconds")
      ->check(CLI::Range(int64_t{0}, int64_t{365} * 86400))
      ->capture_default_str();
  app.add_flag("--no-compress", no_compress, "Store chunks uncompressed (default: zstd when it saves space)");
  app.add_flag("--allow-remote", allow_remote,
               "Allow a non-loopback --listen address (there is no authentication: only on a trusted network)");
  CLI11_PARSE(app, argc, argv);

  auto address = ParseHostPort(listen);
  if (!address.ok()) return Fail("--listen: " + address.status().message());
  chunks::ChunkServerOptions options;
  std::tie(options.host, options.port) = *address;
  if (!IsLoopbackHost(options.host) && !allow_remote)
    return Fail("refusing to listen on non-loopback address " + options.host +
                ": kindling-chunkd has no authentication, so anyone who can connect could read and replace "
                "images. Pass --allow-remote to accept that on a trusted network.");
  options.data_dir = data_dir;
  options.simulated_latency = std::chrono::milliseconds(latency_ms);
  options.gc_grace = std::chrono::seconds(grace_s);
  options.compress = !no_compress;

  boost::asio::io_context io;
  chunks::ChunkServer server(io, options);
  auto port_or = server.Start();
  if (!port_or.ok()) return Fail(port_or.status().message());
  fprintf(stderr, "kindling-chunkd: serving %s on http://%s:%d (data in %s%s)\n",
          options.compress ? "compressed chunks" : "chunks", options.host.c_str(), *port_or, data_dir.c_str(),
          latency_ms ? (", simulated latency " + std::to_string(latency_ms) + " ms").c_str() : "");

  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  boost::asio::steady_timer drain(io);
  auto deadline = std::make_shared<std::chrono::steady_clock::time_point>();
  std::function<void()> wait_drained = [&] {
    if (server.connections() == 0 || std::chrono::steady_clock::now() >= *deadline) {
      io.stop();
      return;
    }
    drain.expires_after(std::chrono::milliseconds(20));
    drain.async_wait([&](boost::system::error_code) { wait_drained(); });
  };
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (ec) return;
    server.Stop();
    *deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    wait_drained();
  });
  io.run();
  fprintf(stderr, "kindling-chunkd: stopped\n");
  return 0;
}
