// kindlingd: the Kindling daemon. In embedded mode (the default) one process runs every
// component: Lambda API frontend, counting, assignment, placement, one worker and its sandboxes.
// In cluster mode (--role, with --etcd) it runs some of them and finds the rest through etcd:
// `worker` nodes serve sandboxes over RPC (WorkerServer) and register in the fleet; `frontend`
// nodes (with `assignment`) serve the Lambda API and place sandboxes on the live workers.
//
// Startup order: data directory -> metadata store -> sandbox factory (sweeping what an earlier
// run left behind) -> worker -> placement -> assignment -> frontend -> async queue (events.db, its
// pollers) -> API listener.
// SIGTERM/SIGINT: stop accepting, destroy every sandbox, exit 0.
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include "common/asio.h"
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <tuple>

#include "http/http_server.h"
#include "api/lambda_api.h"
#include "cluster/etcd_client.h"
#include "cluster/assignment_node.h"
#include "cluster/cluster_view.h"
#include "cluster/election.h"
#include "cluster/fleet.h"
#include "cluster/journal.h"
#include "rpc/rpc.h"
#include "worker/remote_worker.h"
#include "worker/worker_server.h"
#include "chunks/chunk_cache.h"
#include "chunks/chunk_client.h"
#include "chunks/chunk_server.h"
#include "images/image_mounter.h"
#include "images/image_publisher.h"
#include "assignment/assignment_service.h"
#include "auth/sigv4.h"
#include "async/async_invoker.h"
#include "code/code_package.h"
#include "common/files.h"
#include "common/ids.h"
#include "common/metrics.h"
#include "frontend/counting.h"
#include "frontend/frontend.h"
#include "sandbox/jail/jail.h"
#include "store/function_registry.h"
#include "store/metadata_store.h"
#include "worker/worker.h"

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace kindling;

namespace {

// Finds a file that ships with kindlingd: next to the binary (build tree), under ../share/kindling
// (installed), or in the source tree it was built from.
std::string FindShipped(const std::string& name) {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec).parent_path();
  for (const fs::path& candidate : {exe / name, exe / "../share/kindling" / name,
                                    fs::path(KINDLING_SOURCE_DIR) / name}) {
    if (fs::exists(candidate, ec)) return fs::weakly_canonical(candidate, ec).string();
  }
  return "";
}

// Copies kindling-init and the runtime clients into dir (replacing what an earlier start left);
// returns the copies' paths.
Result<std::pair<std::string, std::string>> StageRuntimeFiles(const std::string& init_path,
                                                             const std::string& runtimes_dir,
                                                             const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  fs::permissions(dir, fs::perms(0755), ec);
  std::string init_copy = dir + "/init", runtimes_copy = dir + "/runtimes";
  fs::remove(init_copy + ".new", ec);
  fs::copy_file(init_path, init_copy + ".new", ec);
  if (!ec) fs::permissions(init_copy + ".new", fs::perms(0755), ec);
  if (!ec) fs::rename(init_copy + ".new", init_copy, ec);
  if (ec) return Status::Error("copy " + init_path + ": " + ec.message());
  fs::remove_all(runtimes_copy + ".new", ec);
  fs::copy(runtimes_dir, runtimes_copy + ".new", fs::copy_options::recursive, ec);
  if (!ec) fs::remove_all(runtimes_copy, ec);
  if (!ec) fs::rename(runtimes_copy + ".new", runtimes_copy, ec);
  if (ec) return Status::Error("copy " + runtimes_dir + ": " + ec.message());
  for (const auto& entry : fs::recursive_directory_iterator(runtimes_copy, ec))  // readable by sandboxes
    fs::permissions(entry.path(), entry.is_directory() ? fs::perms(0755) : fs::perms::others_read | fs::perms::group_read,
                    fs::perm_options::add, ec);
  return std::make_pair(init_copy, runtimes_copy);
}

int Fail(const std::string& message) {
  fprintf(stderr, "kindlingd: %s\n", message.c_str());
  return 1;
}

// How to call this daemon. When `created` (the start that generated the credentials file) it prints
// an AWS CLI / SDK profile for the first user, secret included: this once, so the user can copy it;
// later starts print only where the file is (one line), never the secret.
void PrintCredentialsUsage(const std::string& path, const CredentialStore& creds, bool created,
                           const std::string& host, int port, const std::string& region) {
  fprintf(stderr, "kindlingd: authentication on (SigV4): %zu user(s) in %s (an AWS credentials file, owner-only)\n",
          creds.users().size(), path.c_str());
  if (!created) return;
  const Credential& first = creds.users().front();
  std::string endpoint = "http://" + host + ":" + std::to_string(port);
  const char* id = first.access_key_id.c_str();
  const char* secret = first.secret_access_key.c_str();
  fprintf(stderr,
          "kindlingd: created %s with a new key pair (user [%s]). To call this daemon, add to ~/.aws/credentials:\n"
          "[kindling]\n"
          "aws_access_key_id = %s\n"
          "aws_secret_access_key = %s\n"
          "kindlingd: and to ~/.aws/config:\n"
          "[profile kindling]\n"
          "region = %s\n"
          "endpoint_url = %s\n"
          "kindlingd: then: aws --profile kindling --endpoint-url %s lambda list-functions\n"
          "kindlingd: (clients that read endpoint_url from the config, AWS CLI >= 2.13 and current SDKs, "
          "need no --endpoint-url)\n"
          "kindlingd: or in the environment: AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_REGION=%s "
          "AWS_ENDPOINT_URL=%s\n"
          "kindlingd: the secret is printed only now; it stays in %s\n",
          path.c_str(), first.user.c_str(), id, secret, region.c_str(), endpoint.c_str(), endpoint.c_str(), id,
          secret, region.c_str(), endpoint.c_str(), path.c_str());
}

// The embedded chunk server, on its own thread: chunk fetches never wait behind API requests.
struct EmbeddedChunkServer {
  boost::asio::io_context io{1};
  std::unique_ptr<chunks::ChunkServer> server;
  std::thread thread;

  Result<int> Start(const chunks::ChunkServerOptions& opts) {
    server = std::make_unique<chunks::ChunkServer>(io, opts);
    auto port = server->Start();
    if (port.ok()) thread = std::thread([this] { io.run(); });
    return port;
  }
  ~EmbeddedChunkServer() {
    if (!thread.joinable()) return;
    boost::asio::post(io, [this] {
      server->Stop();
      io.stop();
    });
    thread.join();
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kindlingd: a self-hosted, Lambda-compatible serverless platform"};
  std::string listen = "127.0.0.1:9000";
  std::string data_dir = "kindling-data";
  ArnContext arn;
  double idle_timeout_s = 600;
  uint32_t account_concurrency = 1000;
  uint64_t memory_capacity_mb = 0;
  double freeze_delay_ms = 10;
  uint32_t scaling_limit = 1000;
  double scaling_window_s = 10;
  std::string runtimes_dir, init_path;
  HttpLimits http_limits;  // API server limits against slow or abusive clients
  double http_header_timeout_s = 10, http_idle_timeout_s = 60;
  std::string auth_mode = "on";
  bool allow_unauthenticated = false;
  app.add_option("--listen", listen, "API address, HOST:PORT")->capture_default_str();
  app.add_option("--data-dir", data_dir, "Directory for metadata, code packages and logs")->capture_default_str();
  app.add_option("--region", arn.region, "Region used in ARNs")->capture_default_str();
  app.add_option("--account-id", arn.account_id, "Account id used in ARNs (12 digits)")->capture_default_str();
  app.add_option("--idle-timeout", idle_timeout_s, "Seconds an idle sandbox is kept warm")->capture_default_str();
  app.add_option("--account-concurrency", account_concurrency, "Concurrent invocations allowed in total")->capture_default_str();
  app.add_option("--memory-capacity-mb", memory_capacity_mb, "Memory sandboxes may reserve in total (default: twice the host's RAM)");
  app.add_option("--freeze-delay-ms", freeze_delay_ms,
                 "Milliseconds an idle sandbox runs on before it is frozen (0: at once)")->capture_default_str();
  app.add_option("--scaling-limit", scaling_limit,
                 "New sandboxes each function may start per scaling window")->capture_default_str();
  app.add_option("--scaling-window", scaling_window_s, "Seconds of the scaling window")->capture_default_str();
  AsyncOptions async_opts;
  app.add_option("--async-delay-scale", async_opts.delay_scale,
                 "Multiplier for asynchronous retry delays and backoffs (tests: 0.01)")->capture_default_str();
  app.add_option("--async-concurrency", async_opts.concurrency,
                 "Asynchronous deliveries in flight at most")->capture_default_str();
  app.add_option("--runtimes-dir", runtimes_dir, "Directory holding the runtime clients");
  app.add_option("--init", init_path, "Path of the kindling-init binary");
  app.add_option("--max-connections", http_limits.max_connections,
                 "Open API connections allowed; more are closed on accept")->capture_default_str();
  app.add_option("--http-header-timeout", http_header_timeout_s,
                 "Seconds a client has to send a request header")->capture_default_str();
  app.add_option("--http-idle-timeout", http_idle_timeout_s,
                 "Seconds an idle keep-alive API connection is kept open")->capture_default_str();
  app.add_option("--auth", auth_mode, "SigV4 authentication of API requests against <data-dir>/credentials (off: loopback only)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_flag("--allow-unauthenticated", allow_unauthenticated,
               "Allow --auth off on a non-loopback --listen address (anyone who can connect may run code)");
  std::string images_mode = "on", image_loading = "prefetch", chunk_server_url, chunk_listen = "127.0.0.1:9300";
  uint64_t chunk_cache_mb = 2048;
  uint32_t chunk_fetch_parallelism = 8;
  int image_readahead_kb = 32;
  app.add_option("--images", images_mode,
                 "Run sandboxes on runtime and code images loaded lazily from the chunk server (off: "
                 "on the host's /usr and plain code directories)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--chunk-server", chunk_server_url,
                 "URL of a kindling-chunkd to use (default: run one inside kindlingd, see --chunk-listen)");
  app.add_option("--chunk-listen", chunk_listen,
                 "Address of the embedded chunk server, HOST:PORT (loopback only; port 0: any)")->capture_default_str();
  app.add_option("--image-loading", image_loading,
                 "How a worker loads an image it lacks: eager (all chunks before the start), lazy "
                 "(chunks on first read) or prefetch (lazy, plus the recorded start order in parallel)")
      ->check(CLI::IsMember({"eager", "lazy", "prefetch"}))
      ->capture_default_str();
  app.add_option("--chunk-cache-mb", chunk_cache_mb, "Size of the worker's on-disk chunk cache")->capture_default_str();
  app.add_option("--chunk-fetch-parallelism", chunk_fetch_parallelism,
                 "Chunk fetches in flight at most")->capture_default_str();
  app.add_option("--image-readahead-kb", image_readahead_kb,
                 "Readahead of image mounts in KiB: what a start reads ahead is recorded and laid out with it (-1: the kernel's 128)")->capture_default_str();
  std::string roles_text, etcd_text, node_id, advertise_url, cluster_key_file;
  int partitions = 16;
  app.add_option("--role", roles_text,
                 "Cluster mode: this node's roles, comma-separated: frontend (the Lambda API), assignment "
                 "(leads and follows assignment partitions), worker (runs sandboxes). Default: embedded, "
                 "every role in this process, no etcd");
  app.add_option("--etcd", etcd_text, "Cluster mode: etcd client URLs, comma-separated");
  app.add_option("--partitions", partitions,
                 "Cluster mode: assignment partitions (the same on every node)")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--node-id", node_id, "Cluster mode: this node's id (default: worker-/frontend-PORT)");
  app.add_option("--advertise-url", advertise_url,
                 "Cluster mode: the URL other nodes reach this node at (default: http://<--listen>)");
  app.add_option("--cluster-key-file", cluster_key_file,
                 "Cluster mode: file with the key every node of the cluster shares (created if absent; "
                 "default <data-dir>/cluster-key)");
  CLI11_PARSE(app, argc, argv);

  auto listen_address = ParseHostPort(listen);
  if (!listen_address.ok()) return Fail("--listen: " + listen_address.status().message());
  auto [host, port] = *listen_address;
  bool loopback = IsLoopbackHost(host);
  // Roles: embedded (none given) runs all of them in this process.
  std::vector<std::string> roles;
  for (size_t start = 0; !roles_text.empty() && start <= roles_text.size();) {
    size_t comma = roles_text.find(',', start);
    std::string role = roles_text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (role != "frontend" && role != "assignment" && role != "worker")
      return Fail("--role: unknown role \"" + role + "\" (frontend, assignment, worker)");
    roles.push_back(role);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  auto has_role = [&](const char* r) { return std::find(roles.begin(), roles.end(), r) != roles.end(); };
  const bool cluster = !roles.empty();
  const bool run_frontend = !cluster || has_role("frontend");
  const bool run_assignment = cluster && has_role("assignment");  // embedded: the frontend's own service
  const bool run_worker = !cluster || has_role("worker");
  std::vector<std::string> etcd_endpoints;
  for (size_t start = 0; !etcd_text.empty() && start <= etcd_text.size();) {
    size_t comma = etcd_text.find(',', start);
    etcd_endpoints.push_back(etcd_text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (auto base = ParseHttpBase(etcd_endpoints.back()); !base.ok()) return Fail("--etcd: " + base.status().message());
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (cluster && etcd_endpoints.empty()) return Fail("--role needs --etcd URL[,URL...]");
  if (!cluster && !etcd_endpoints.empty()) return Fail("--etcd needs --role (embedded mode uses no etcd)");
  if (cluster && run_worker && !run_frontend && images_mode == "on" && chunk_server_url.empty())
    return Fail("a worker node needs --chunk-server URL (the chunk server the frontends publish code to)");
  if (node_id.empty())
    node_id = std::string(run_frontend ? "frontend-" : run_assignment ? "assignment-" : "worker-") + std::to_string(port);
  if (advertise_url.empty()) advertise_url = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  if (auth_mode == "off" && !loopback && !allow_unauthenticated)
    return Fail("refusing to listen on non-loopback address " + host +
                " with --auth off: anyone who can reach it could run code. Use --auth on, or pass "
                "--allow-unauthenticated to accept that (see docs/security.md)");
  if (arn.account_id.size() != 12 || arn.account_id.find_first_not_of("0123456789") != std::string::npos)
    return Fail("--account-id must be 12 digits");
  if (geteuid() != 0) return Fail("must run as root: sandboxes need namespaces and cgroups");
  if (init_path.empty()) init_path = FindShipped("kindling-init");
  if (runtimes_dir.empty()) runtimes_dir = FindShipped("runtimes");
  if (init_path.empty()) return Fail("kindling-init not found; pass --init");
  if (runtimes_dir.empty()) return Fail("runtime clients not found; pass --runtimes-dir");
  if (memory_capacity_mb == 0)
    memory_capacity_mb = 2 * (uint64_t(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE) >> 20);

  Status s = MakeDirs(data_dir, 0711);
  if (!s.ok()) return Fail(s.message());
  char real[PATH_MAX];
  if (!realpath(data_dir.c_str(), real)) return Fail("cannot resolve " + data_dir);
  data_dir = real;
  // Sandboxes mount code packages as their own unprivileged host uid: the data directory must be
  // searchable (not listable) by others, and so must every directory above it. Metadata and logs
  // stay private (0600 / 0640 inside).
  chmod(data_dir.c_str(), 0711);
  for (fs::path p = fs::path(data_dir).parent_path(); !p.empty(); p = p.parent_path()) {
    struct stat st;
    if (stat(p.c_str(), &st) == 0 && !(st.st_mode & S_IXOTH)) {
      char mode[8];
      snprintf(mode, sizeof mode, "%o", st.st_mode & 07777);
      return Fail("the data directory's parent " + p.string() + " (mode " + mode +
                  ") is not searchable by other users, so sandboxes could not mount code from it; "
                  "choose a data directory whose parents have o+x, e.g. /var/lib/kindling");
    }
    if (p == p.root_path()) break;
  }
  MakeDirs(data_dir + "/code", 0711);
  // Sandboxes reach kindling-init and the runtime clients through bind mounts made as their own
  // unprivileged uid, so they get copies under the data directory (whose parents were checked
  // above): kindlingd then runs from any build or install location, e.g. a tree under /root.
  if (auto staged = StageRuntimeFiles(init_path, runtimes_dir, data_dir + "/runtime-files"); !staged.ok())
    return Fail("staging runtime files: " + staged.status().message());
  else
    std::tie(init_path, runtimes_dir) = *staged;
  signal(SIGPIPE, SIG_IGN);

  // Authentication: <data-dir>/credentials (0600; created with a random key pair when absent).
  std::unique_ptr<SigV4Verifier> verifier;
  std::string credentials_path = data_dir + "/credentials";
  bool credentials_created = false;
  if (run_frontend && auth_mode == "on") {
    auto creds = CredentialStore::LoadOrCreate(credentials_path, &credentials_created);
    if (!creds.ok()) return Fail(creds.status().message());
    SigV4Options sopts;
    sopts.region = arn.region;
    verifier = std::make_unique<SigV4Verifier>(std::move(creds).value(), sopts);
  }
  // Cluster mode: the key nodes prove themselves to each other with.
  std::string cluster_key;
  if (cluster) {
    if (cluster_key_file.empty()) cluster_key_file = data_dir + "/cluster-key";
    auto key = rpc::LoadClusterKey(cluster_key_file, true);
    if (!key.ok()) return Fail(key.status().message());
    cluster_key = *key;
  }

  std::unique_ptr<FunctionRegistry> registry;
  if (run_frontend) {
    auto store = MetadataStore::Open(data_dir + "/metadata.db");
    if (!store.ok()) return Fail(store.status().message());
    registry = std::make_unique<FunctionRegistry>(std::move(store).value());
    // No sandbox runs yet: packages no function refers to any more can go.
    auto in_use = registry->store().CodeDigestsInUse();
    if (in_use.ok()) RemoveUnusedPackages(data_dir + "/code", *in_use);
  }

  // One daemon per data directory: its cgroups and uids are named after it.
  std::unique_ptr<SandboxFactory> factory;
  if (run_worker) {
    JailOptions jail;
    jail.instance = "kindling-" + HexEncode(Sha256(data_dir)).substr(0, 10);
    jail.state_dir = data_dir + "/jail";
    factory = NewJailFactory(jail);
    s = factory->SweepLeftovers();
    if (!s.ok()) fprintf(stderr, "kindlingd: sweeping leftovers: %s\n", s.message().c_str());
  }

  // Images: a chunk server (embedded unless --chunk-server names one), the worker's chunk cache and
  // image mounts, and the publisher that turns code packages and runtimes into images.
  EmbeddedChunkServer embedded_chunkd;
  std::shared_ptr<chunks::ChunkCache> chunk_cache;
  std::unique_ptr<images::ImageMounter> mounter;
  std::unique_ptr<images::ImagePublisher> publisher;
  std::jthread runtime_builds;
  if (images_mode == "on" && (run_worker || run_frontend)) {  // assignment-only nodes hold no images
    if (chunk_server_url.empty()) {
      auto chunk_address = ParseHostPort(chunk_listen);
      if (!chunk_address.ok()) return Fail("--chunk-listen: " + chunk_address.status().message());
      chunks::ChunkServerOptions copts;
      copts.data_dir = data_dir + "/chunkd";
      std::tie(copts.host, copts.port) = *chunk_address;
      if (!IsLoopbackHost(copts.host)) return Fail("--chunk-listen must be a loopback address (the chunk server has no authentication)");
      auto chunk_port = embedded_chunkd.Start(copts);
      if (!chunk_port.ok())
        return Fail("embedded chunk server on " + chunk_listen + ": " + chunk_port.status().message() +
                    " (another kindlingd on this host? pass --chunk-listen 127.0.0.1:0, or --chunk-server URL)");
      chunk_server_url = "http://" + copts.host + ":" + std::to_string(*chunk_port);
    }
    chunks::ChunkClientOptions client_opts;
    client_opts.url = chunk_server_url;
    auto chunk_client = std::make_shared<chunks::ChunkClient>(client_opts);
    publisher = std::make_unique<images::ImagePublisher>(data_dir + "/images/build", chunk_client, runtimes_dir);
    if (run_worker) {
      chunks::ChunkCacheOptions cache_opts;
      cache_opts.dir = data_dir + "/cache";
      cache_opts.capacity_bytes = chunk_cache_mb << 20;
      cache_opts.fetch_parallelism = chunk_fetch_parallelism;
      auto cache = chunks::ChunkCache::Open(cache_opts, chunk_client);
      if (!cache.ok()) return Fail("chunk cache: " + cache.status().message());
      chunk_cache = std::move(cache).value();
      images::ImageMounterOptions mopts;
      mopts.dir = data_dir + "/images";
      mopts.loading = images::ParseImageLoading(image_loading).value();
      mopts.readahead_kb = image_readahead_kb;
      // The first recorded start of a runtime image lays it out for starts (see start_layout.h).
      mopts.lay_out = [&publisher](const std::string& name, std::vector<uint32_t> blocks) {
        if (publisher && name.rfind("runtime/", 0) == 0) publisher->LayOutForStartLater(name, std::move(blocks));
      };
      auto started = images::ImageMounter::Start(mopts, chunk_client, chunk_cache);
      if (!started.ok()) return Fail("images: " + started.status().message());
      mounter = std::move(started).value();
      // Runtime images are built (once per set of installed package versions) in the background; a
      // start that needs one before it is ready waits for it.
      runtime_builds = std::jthread([p = publisher.get()] {
        for (const char* family : {"provided", "python", "node"}) {
          auto name = p->RuntimeImage(family);
          if (!name.ok()) fprintf(stderr, "kindlingd: %s\n", name.status().message().c_str());
        }
      });
    }
    fprintf(stderr, "kindlingd: images from chunk server %s (loading: %s)\n", chunk_server_url.c_str(),
            image_loading.c_str());
  }

  boost::asio::io_context io(1);
  WorkerOptions wopts;
  wopts.name = node_id.empty() || !cluster ? "local" : node_id;
  wopts.code_root = data_dir + "/code";
  wopts.logs_root = data_dir + "/logs";
  wopts.init_path = init_path;
  wopts.runtimes_dir = runtimes_dir;
  wopts.arn = arn;
  wopts.memory_capacity_bytes = memory_capacity_mb << 20;
  wopts.freeze_delay = std::chrono::microseconds(static_cast<int64_t>(freeze_delay_ms * 1000));
  if (mounter) {
    wopts.images = mounter.get();
    wopts.runtime_image = [p = publisher.get()](const std::string& family) { return p->RuntimeImage(family); };
    wopts.publish_code = [p = publisher.get(), root = wopts.code_root](const std::string& digest) {
      return p->PublishTree(root + "/" + digest, images::CodeImageName(digest)).status();
    };
  }
  std::unique_ptr<Worker> worker;
  if (run_worker) worker = std::make_unique<Worker>(io, std::move(factory), wopts);
  WorkerDirectory workers;
  if (worker && !cluster) workers.Add(worker.get());  // cluster mode: workers come from the fleet

  Metrics metrics;
  AssignmentOptions aopts;
  aopts.idle_timeout = std::chrono::milliseconds(static_cast<int64_t>(idle_timeout_s * 1000));
  aopts.scaling_limit = scaling_limit;
  aopts.scaling_window = std::chrono::milliseconds(static_cast<int64_t>(scaling_window_s * 1000));

  // Cluster mode: etcd, this node's registration, partition elections (assignment nodes campaign,
  // frontends observe), the journal replica, RPC servers for the roles this node has.
  HttpClient rpc_http(io);
  std::unique_ptr<cluster::EtcdClient> etcd;
  std::unique_ptr<cluster::Registration> registration;
  std::unique_ptr<cluster::PartitionElections> elections;
  std::unique_ptr<cluster::JournalReplica> journal_replica;
  std::unique_ptr<cluster::AssignmentNode> assignment_node;
  std::unique_ptr<cluster::RemoteAssigner> remote_assigner;
  std::unique_ptr<WorkerServer> worker_server;
  std::unique_ptr<cluster::FleetView> fleet;
  std::map<std::string, std::shared_ptr<RemoteWorker>> remote_workers;
  if (cluster) {
    etcd = std::make_unique<cluster::EtcdClient>(io, rpc_http, etcd_endpoints);
    cluster::NodeInfo self{node_id, roles, advertise_url};
    std::function<cluster::WorkerInfo()> worker_stats;
    if (worker)
      worker_stats = [&, w = worker.get()] {
        WorkerStats st = w->Stats();
        double load[1] = {0};
        getloadavg(load, 1);
        return cluster::WorkerInfo{node_id, advertise_url, "active", st.sandboxes, st.memory_reserved_bytes >> 20,
                                   st.memory_capacity_bytes >> 20, load[0]};
      };
    registration = std::make_unique<cluster::Registration>(io, *etcd, self, worker_stats);
    if (worker) worker_server = std::make_unique<WorkerServer>(*worker, cluster_key);
    if (run_frontend || run_assignment) {
      cluster::PartitionElections::Options eo;
      eo.partitions = partitions;
      if (run_assignment) {
        eo.node = node_id;
        eo.url = advertise_url;
        eo.lease_alive = [&] { return registration->LeaseAlive(); };
      }
      elections = std::make_unique<cluster::PartitionElections>(io, *etcd, eo);
    }
    if (run_assignment) {
      journal_replica = std::make_unique<cluster::JournalReplica>(io, *etcd, partitions);
      assignment_node = std::make_unique<cluster::AssignmentNode>(io, workers, *etcd, *elections, *journal_replica,
                                                                  node_id, cluster_key, aopts);
      elections->OnLeadership([&](int p, bool leading) { assignment_node->OnLeadership(p, leading); });
      registration->OnNewLease([&](int64_t lease) {
        asio::co_spawn(io, elections->Recampaign(lease), asio::detached);
      });
    }
    if (run_frontend) remote_assigner = std::make_unique<cluster::RemoteAssigner>(io, rpc_http, *elections, cluster_key);
  }

  std::unique_ptr<AssignmentService> assignment;
  std::unique_ptr<Counting> counting;
  std::unique_ptr<Frontend> frontend;
  std::unique_ptr<LambdaApi> api;
  std::unique_ptr<AsyncInvoker> async;
  if (run_frontend) {
    // Embedded: the frontend's own assignment service. Cluster: partition leaders over RPC; the
    // local service only answers the control plane's drain calls (nothing to drain here).
    assignment = std::make_unique<AssignmentService>(io, workers, aopts);
    if (worker && !cluster)
      worker->OnSandboxGone([&, w = worker.get()](const std::string& id) { assignment->SandboxGone(w->id(), id); });
    if (!cluster) assignment->Start();
    Assigner& assigner = remote_assigner ? static_cast<Assigner&>(*remote_assigner) : *assignment;
    counting = std::make_unique<Counting>(account_concurrency);
    for (std::string after;;) {  // reservations survive restarts
      auto page = registry->store().List("$LATEST", after, 1000);
      if (!page.ok() || page->empty()) break;
      for (const FunctionConfig& fn : *page)
        if (fn.reserved_concurrency >= 0) counting->SetReserved(fn.name, fn.reserved_concurrency);
      after = page->back().name;
    }
    frontend = std::make_unique<Frontend>(*registry, *counting, assigner, workers, metrics, arn);
    // Provisioned concurrency follows what its qualifier resolves to (an alias may move), and
    // survives restarts.
    assignment->SetProvisionResolver([&](const std::string& function, const std::string& qualifier)
                                         -> std::optional<FunctionConfig> {
      auto resolved = frontend->Resolve({function, qualifier, "", ""}, Frontend::AliasRouting::kPrimary);
      if (auto* fn = std::get_if<FunctionConfig>(&resolved)) return *fn;
      return std::nullopt;
    });
    if (!cluster)
      if (auto provisioned = registry->store().ListProvisioned(""); provisioned.ok())
        for (const auto& p : *provisioned) assignment->SetProvisioned(p.function, p.qualifier, p.requested);
    LambdaApiOptions api_opts;
    api_opts.arn = arn;
    api_opts.code_root = wopts.code_root;
    api_opts.auth = verifier.get();
    api_opts.metrics_unauthenticated = loopback;
    api_opts.provisioned_concurrency = !cluster;
    if (publisher)
      api_opts.publish_code = [p = publisher.get()](const CodePackage& pkg) {
        return p->PublishTree(pkg.dir, images::CodeImageName(pkg.digest_hex)).status();
      };
    if (cluster)
      api_opts.cluster_view = [&](const std::string& function) {
        return cluster::ClusterView(*elections, fleet.get(), function);
      };
    api = std::make_unique<LambdaApi>(io, *registry, *frontend, *counting, *assignment, worker.get(), metrics, api_opts);
    // Asynchronous invocation: its own durable queue, <data-dir>/events.db.
    async_opts.arn = arn;
    auto opened = AsyncInvoker::Open(io, data_dir + "/events.db", *frontend, metrics, async_opts);
    if (!opened.ok()) return Fail(opened.status().message());
    async = std::move(opened).value();
    api->SetAsync(async.get());
    async->Start();
  }

  // Cluster mode: the workers of the fleet, as RPC clients (frontends invoke on them; assignment
  // nodes create, destroy and reconcile sandboxes on them).
  if (cluster && (run_frontend || run_assignment)) {
    cluster::FleetView::Callbacks cb;
    cb.worker_up = [&](const cluster::WorkerInfo& info) {
      auto it = remote_workers.find(info.id);
      if (it != remote_workers.end() && it->second->url() == info.url) return;
      if (it != remote_workers.end()) it->second->Stop();
      auto remote = std::make_shared<RemoteWorker>(io, rpc_http, info.id, info.url, cluster_key);
      remote->OnSandboxGone([&, id = info.id](const std::string& sandbox) {
        if (assignment_node) assignment_node->SandboxGone(id, sandbox);
      });
      remote->Start();
      remote_workers[info.id] = remote;
      workers.Add(remote.get());
      fprintf(stderr, "kindlingd: worker %s joined (%s)\n", info.id.c_str(), info.url.c_str());
    };
    cb.worker_down = [&](const std::string& id) {
      auto it = remote_workers.find(id);
      if (it == remote_workers.end()) return;
      workers.Remove(id);
      if (assignment_node) assignment_node->WorkerGone(id);
      it->second->Stop();
      remote_workers.erase(it);
      fprintf(stderr, "kindlingd: worker %s left the fleet; its sandboxes are forgotten\n", id.c_str());
    };
    fleet = std::make_unique<cluster::FleetView>(io, *etcd, cb);
  }

  http_limits.header_timeout = std::chrono::milliseconds(static_cast<int64_t>(http_header_timeout_s * 1000));
  http_limits.idle_timeout = std::chrono::milliseconds(static_cast<int64_t>(http_idle_timeout_s * 1000));
  // One listener per node: the Lambda API (frontends) and the RPC of the node's other roles.
  NotFoundHandler no_api;
  HttpRouter router(api ? static_cast<HttpHandler&>(*api) : no_api);
  if (worker_server) router.Route("/kindling/v1/worker/", *worker_server);
  if (assignment_node) router.Route("/kindling/v1/assignment/", *assignment_node);
  HttpHandler* handler = &router;
  HttpServer server(io, *handler, http_limits);
  auto bound = server.Listen(host, port);
  if (!bound.ok()) return Fail(bound.status().message());

  int exit_code = 0;
  if (cluster) {
    // Join the fleet before serving anything that needs it; a node that cannot reach etcd exits.
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      Status joined = co_await registration->Start(std::chrono::seconds(20));
      if (joined.ok() && fleet) joined = co_await fleet->Start();
      if (joined.ok() && journal_replica) joined = co_await journal_replica->Start();
      if (joined.ok() && elections) joined = co_await elections->Start(registration->lease());
      if (!joined.ok()) {
        fprintf(stderr, "kindlingd: %s\n", joined.message().c_str());
        exit_code = 1;
        io.stop();
        co_return;
      }
      fprintf(stderr, "kindlingd: node %s (%s) joined the cluster at %s\n", node_id.c_str(), roles_text.c_str(),
              etcd_text.c_str());
    }, asio::detached);
  }

  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    fprintf(stderr, "kindlingd: signal %d, shutting down\n", sig);
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      if (async) async->Stop();
      server.Stop();
      if (fleet) fleet->Stop();
      if (elections) elections->Stop();
      if (journal_replica) journal_replica->Stop();
      if (assignment_node) assignment_node->Shutdown();  // the sandboxes stay with the next leaders
      for (auto& [id, remote] : remote_workers) remote->Stop();
      if (registration) co_await registration->Leave();  // leave the fleet at once, not at lease expiry
      if (assignment) assignment->Shutdown();
      io.stop();
    }, asio::detached);
  });
  fprintf(stderr, "kindlingd: listening on http://%s:%d (data dir %s)\n", host.c_str(), *bound, data_dir.c_str());
  if (verifier) PrintCredentialsUsage(credentials_path, verifier->credentials(), credentials_created, host, *bound,
                                        arn.region);
  else if (run_frontend) fprintf(stderr, "kindlingd: authentication off (--auth off): any local client may call the API\n");
  io.run();
  if (assignment) assignment->Shutdown();
  if (worker) {
    worker->DestroyAll();
    worker->StopCreating();
  }
  // Let the sessions' read loops see their closed sockets, and creations that finished meanwhile
  // see the shutdown, so every sandbox is released before the host state is removed.
  io.restart();
  for (int i = 0; i < 100 && io.poll() > 0; ++i) {
  }
  if (worker) {
    s = worker->Shutdown();
    if (!s.ok()) fprintf(stderr, "kindlingd: cleaning up: %s\n", s.message().c_str());
  }
  // Images after the sandboxes that mounted them (then, by declaration order, the cache and the
  // chunk server).
  if (runtime_builds.joinable()) runtime_builds.join();
  mounter.reset();
  fprintf(stderr, "kindlingd: stopped\n");
  return exit_code;
}
