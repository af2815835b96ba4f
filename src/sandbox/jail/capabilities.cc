#include "sandbox/jail/capabilities.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>

namespace kindling::jail {

int ProbeLastCap() {
  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return CAP_LAST_CAP;
  char buf[16] = {};
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return CAP_LAST_CAP;
  int v = atoi(buf);
  return v > 0 && v < 64 ? v : CAP_LAST_CAP;
}

namespace {
int CapGet(__user_cap_data_struct data[2]) {
  __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  return syscall(SYS_capget, &hdr, data) == 0 ? 0 : errno;
}
int CapSet(__user_cap_data_struct data[2]) {
  __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  return syscall(SYS_capset, &hdr, data) == 0 ? 0 : errno;
}
}  // namespace

int KeepCapsAcrossSetuid() { return prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0 ? 0 : errno; }

int RaiseEffectiveCaps() {
  __user_cap_data_struct data[2] = {};
  if (int e = CapGet(data)) return e;
  data[0].effective = data[0].permitted;
  data[1].effective = data[1].permitted;
  if (int e = CapSet(data)) return e;
  // Verify: the mount namespace work needs CAP_SYS_ADMIN (in the sandbox's user namespace).
  if (int e = CapGet(data)) return e;
  if (!(data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective & CAP_TO_MASK(CAP_SYS_ADMIN))) return EPERM;
  return 0;
}

int DropAllCapabilities(int last_cap) {
  // The bounding set first: dropping from it needs CAP_SETPCAP, which the capset below removes.
  for (int cap = 0; cap <= last_cap; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return errno;
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return errno;
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return errno;
  __user_cap_data_struct data[2] = {};
  if (int e = CapSet(data)) return e;
  if (int e = CapGet(data)) return e;
  for (const auto& d : data) {
    if (d.effective || d.permitted || d.inheritable) return EPERM;
  }
  return 0;
}

}  // namespace kindling::jail
