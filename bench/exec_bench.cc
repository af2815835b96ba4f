// kindling-exec-bench: times "start a process that does nothing and wait for it" in-process.
//
// This is the cold-start baseline of the Kindling benchmark: the same runtime binary a sandbox
// would start (python3 -c pass, node -e 0, the native bootstrap with --exit, /bin/true), launched
// with plain fork+execve+waitpid and no isolation. Each repetition is timed from just before
// fork() to just after waitpid() returns. stdin/stdout/stderr of the child go to /dev/null.
//
// usage: kindling-exec-bench [--reps N] [--warmup K] [--max-time S] [--label L]
//                            [--spawn fork|posix_spawn] -- /abs/path/prog [args...]
// Output: one JSON line. The run stops early (and says so) when --max-time is exceeded.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

int main(int argc, char** argv) {
  long reps = 50, warmup = 3;
  double max_time = 60;
  std::string label, spawn_mode = "fork";
  int i = 1;
  for (; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--") {
      i++;
      break;
    }
    if (i + 1 >= argc) break;
    if (a == "--reps") reps = atol(argv[++i]);
    else if (a == "--warmup") warmup = atol(argv[++i]);
    else if (a == "--max-time") max_time = atof(argv[++i]);
    else if (a == "--label") label = argv[++i];
    else if (a == "--spawn") spawn_mode = argv[++i];
    else {
      fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (i >= argc || argv[i][0] != '/' || reps < 1) {
    fprintf(stderr,
            "usage: kindling-exec-bench [--reps N] [--warmup K] [--max-time S] [--label L]\n"
            "         [--spawn fork|posix_spawn] -- /abs/path/prog [args...]\n");
    return 2;
  }
  char** child_argv = argv + i;
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) {
    perror("/dev/null");
    return 1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  for (int fd = 0; fd < 3; fd++) posix_spawn_file_actions_adddup2(&fa, devnull, fd);

  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::microseconds(static_cast<long>(max_time * 1e6));
  std::vector<double> us;
  long failures = 0;
  bool timed_out = false;
  for (long r = 0; r < warmup + reps; r++) {
    if (Clock::now() > deadline) {
      timed_out = true;
      break;
    }
    auto s = Clock::now();
    pid_t pid = -1;
    if (spawn_mode == "posix_spawn") {
      if (posix_spawn(&pid, child_argv[0], &fa, nullptr, child_argv, environ) != 0) pid = -1;
    } else {
      pid = fork();
      if (pid == 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execve(child_argv[0], child_argv, environ);
        _exit(127);
      }
    }
    if (pid < 0) {
      failures++;
      continue;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    auto f = Clock::now();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failures++;
    if (r >= warmup) us.push_back(std::chrono::duration<double, std::micro>(f - s).count());
  }
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) -> double {
    if (us.empty()) return -1;
    size_t idx = static_cast<size_t>(std::ceil(p * static_cast<double>(us.size())));
    return us[std::clamp<size_t>(idx, 1, us.size()) - 1];
  };
  double mean = 0;
  for (double v : us) mean += v;
  if (!us.empty()) mean /= static_cast<double>(us.size());
  std::string cmd;
  for (char** p = child_argv; *p; p++) {
    if (!cmd.empty()) cmd += ' ';
    for (const char* c = *p; *c; c++) {
      if (*c == '"' || *c == '\\') cmd += '\\';
      cmd += *c;
    }
  }
  printf("{\"label\":\"%s\",\"cmd\":\"%s\",\"spawn\":\"%s\",\"reps\":%zu,\"failures\":%ld,"
         "\"min_us\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
         "\"mean_us\":%.1f,\"timed_out\":%s}\n",
         label.c_str(), cmd.c_str(), spawn_mode.c_str(), us.size(), failures,
         us.empty() ? -1.0 : us.front(), pct(0.5), pct(0.9), pct(0.99),
         us.empty() ? -1.0 : us.back(), mean, timed_out ? "true" : "false");
  return failures == 0 && !us.empty() ? 0 : 1;
}
