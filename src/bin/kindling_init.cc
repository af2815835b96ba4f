// kindling-init: PID 1 of a Kindling sandbox. See src/init/init.h.
//   kindling-init [--listen 127.0.0.1:9001] -- RUNTIME_ARGV...
#include <cstdio>
#include <string>

#include "init/init.h"

int main(int argc, char** argv) {
  kindling::init::Options opts;
  std::string error;
  if (!kindling::init::ParseArgs(argc, argv, &opts, &error)) {
    fprintf(stderr, "kindling-init: %s\nusage: kindling-init [--listen ADDR:PORT] -- RUNTIME_ARGV...\n",
            error.c_str());
    return 2;
  }
  return kindling::init::Run(opts);
}
