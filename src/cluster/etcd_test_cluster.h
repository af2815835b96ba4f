// EtcdTestCluster: real etcd members (Debian's etcd-server) on loopback ports in a temp dir, for
// tests. Started in the constructor (waits until every member answers), stopped by pid in the
// destructor; members can be killed and restarted to test failover.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace kindling::cluster {

class EtcdTestCluster {
 public:
  explicit EtcdTestCluster(int members = 1) {
    char tmpl[] = "/tmp/kindling-etcd-XXXXXX";
    dir_ = mkdtemp(tmpl) ? tmpl : "";
    std::string initial;
    for (int i = 0; i < members; ++i) {
      Member m;
      m.name = "m" + std::to_string(i);
      m.client = FreePort();
      m.peer = FreePort();
      members_.push_back(m);
      initial += (i ? "," : "") + m.name + "=http://127.0.0.1:" + std::to_string(m.peer);
    }
    initial_ = initial;
    for (size_t i = 0; i < members_.size(); ++i) Start(i);
    WaitHealthy();
  }
  ~EtcdTestCluster() {
    for (size_t i = 0; i < members_.size(); ++i) Kill(i);
    if (!dir_.empty()) std::system(("rm -rf " + dir_).c_str());
  }
  bool ok() const { return healthy_; }
  std::vector<std::string> endpoints() const {
    std::vector<std::string> out;
    for (const auto& m : members_) out.push_back(Url(m));
    return out;
  }
  void Kill(size_t i) {
    if (members_[i].pid <= 0) return;
    kill(members_[i].pid, SIGKILL);
    waitpid(members_[i].pid, nullptr, 0);
    members_[i].pid = -1;
  }
  void Start(size_t i) {
    Member& m = members_[i];
    std::string data = dir_ + "/" + m.name, log = dir_ + "/" + m.name + ".log";
    std::string client = "http://127.0.0.1:" + std::to_string(m.client);
    std::string peer = "http://127.0.0.1:" + std::to_string(m.peer);
    pid_t pid = fork();
    if (pid == 0) {
      freopen(log.c_str(), "a", stdout);
      freopen(log.c_str(), "a", stderr);
      execlp("etcd", "etcd", "--name", m.name.c_str(), "--data-dir", data.c_str(), "--listen-client-urls",
             client.c_str(), "--advertise-client-urls", client.c_str(), "--listen-peer-urls", peer.c_str(),
             "--initial-advertise-peer-urls", peer.c_str(), "--initial-cluster", initial_.c_str(),
             "--initial-cluster-state", "new", "--heartbeat-interval", "50", "--election-timeout", "500",
             static_cast<char*>(nullptr));
      _exit(127);
    }
    m.pid = pid;
  }
  // Waits (up to 20 s) until every running member answers /health with a leader.
  bool WaitHealthy() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      bool all = true;
      for (const auto& m : members_)
        if (m.pid > 0 && std::system(("curl -sf -m 1 " + Url(m) + "/health | grep -q '\"true\"'").c_str()) != 0)
          all = false;
      if (all) return healthy_ = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return healthy_ = false;
  }

 private:
  struct Member {
    std::string name;
    int client = 0, peer = 0;
    pid_t pid = -1;
  };
  static std::string Url(const Member& m) { return "http://127.0.0.1:" + std::to_string(m.client); }
  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
  }
  std::string dir_, initial_;
  std::vector<Member> members_;
  bool healthy_ = false;
};

}  // namespace kindling::cluster
