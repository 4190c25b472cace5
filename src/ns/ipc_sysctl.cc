// The sysctls of an IPC namespace: each namespace has its own values
// (ipc/ipc_sysctl.c, ipc/mq_sysctl.c), a fresh one starts with the defaults.
#include <algorithm>
#include <string_view>

#include "ns/ipc_objects.h"
#include "ns/ns_thread.h"

namespace cryo::ns {

namespace {

// Restored before any object is made: the limits the objects were made under.
constexpr std::string_view kLimits[] = {
    "kernel/shmmax",          "kernel/shmall",          "kernel/shmmni",         "kernel/msgmax",
    "kernel/msgmnb",          "kernel/msgmni",          "kernel/sem",            "fs/mqueue/queues_max",
    "fs/mqueue/msg_max",      "fs/mqueue/msgsize_max",  "fs/mqueue/msg_default", "fs/mqueue/msgsize_default",
};
// Restored once every object exists: shm_rmid_forced would remove the
// segments cryo makes when it exits; the *_next_id values are used up by
// the restore's own objects (-1, the default, is not written).
constexpr std::string_view kLast[] = {"kernel/shm_rmid_forced", "kernel/sem_next_id", "kernel/msg_next_id"};

bool IsNextId(std::string_view name) { return name.ends_with("_next_id"); }

}  // namespace

Status DumpIpcSysctls(image::IpcNamespace* out) {
  for (auto list : {std::begin(kLimits), std::begin(kLast)}) {
    const auto end = list == std::begin(kLimits) ? std::end(kLimits) : std::end(kLast);
    for (auto it = list; it != end; ++it) {
      image::IpcSysctl* s = out->add_sysctls();
      s->set_name(std::string(*it));
      CRYO_ASSIGN_OR_RETURN(std::string v, ReadSysctl(s->name()));
      s->set_value(v);
    }
  }
  // Set by a checkpointer inside the namespace for its next shmget(2); cryo
  // uses it itself for the segments it restores.
  CRYO_ASSIGN_OR_RETURN(std::string shm_next, ReadSysctl("kernel/shm_next_id"));
  if (shm_next != "-1")
    return Status::Error("the sysctl kernel.shm_next_id of the tree's IPC namespace is set (" + shm_next +
                         "), which is not restored");
  return Status::Ok();
}

Status RestoreIpcSysctls(const image::IpcNamespace& ns, bool last) {
  for (const image::IpcSysctl& s : ns.sysctls()) {
    const bool is_last = std::find(std::begin(kLast), std::end(kLast), s.name()) != std::end(kLast);
    const bool is_limit = std::find(std::begin(kLimits), std::end(kLimits), s.name()) != std::end(kLimits);
    if (!is_last && !is_limit) return Status::Error("the image names an IPC sysctl cryo does not know: " + s.name());
    if (is_last != last) continue;
    if (IsNextId(s.name()) && s.value() == "-1") continue;
    CRYO_RETURN_IF_ERROR(WriteSysctl(s.name(), s.value()).Prefixed("IPC namespace sysctl"));
  }
  return Status::Ok();
}

}  // namespace cryo::ns
