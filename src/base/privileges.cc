#include "base/privileges.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace cryo {

namespace {
constexpr int kCapSysPtrace = 19;
constexpr int kCapSysAdmin = 21;
constexpr int kCapCheckpointRestore = 40;
}  // namespace

Status CheckPrivileges() {
  __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return Status::FromErrno("capget");
  const uint64_t effective = (static_cast<uint64_t>(data[1].effective) << 32) | data[0].effective;
  auto has = [effective](int cap) { return (effective >> cap) & 1; };
  // The kernel takes CAP_SYS_ADMIN in place of CAP_CHECKPOINT_RESTORE
  // (checkpoint_restore_ns_capable).
  if (!has(kCapSysPtrace) || !(has(kCapCheckpointRestore) || has(kCapSysAdmin))) return Status::Error(kNeedPrivileges);
  return Status::Ok();
}

}  // namespace cryo
