// The objects of an IPC namespace the tree owns (svipc(7), mq_overview(7)),
// other than SysV shared memory (mem/sysv_shm.h, attached by the tree):
// dumped on a thread of cryo that joined the namespace (ns_thread.h), and
// recreated by cryo's main thread once it entered a fresh namespace, with
// their ids, keys, owners, modes and contents.
#pragma once

#include <set>
#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo::ns {

// The namespace's sysctls (ipc/ipc_sysctl.c, ipc/mq_sysctl.c).
Status DumpIpcSysctls(image::IpcNamespace* out);
// Limits first (before any object is made); the *_next_id values and
// shm_rmid_forced with `last` once every object exists.
Status RestoreIpcSysctls(const image::IpcNamespace& ns, bool last);

// SysV semaphore sets (/proc/sysvipc/sem, semctl GETALL).
Status DumpSemaphores(image::IpcNamespace* out);
Status RestoreSemaphores(const image::IpcNamespace& ns);

// SysV message queues (/proc/sysvipc/msg), their messages copied without
// being taken (msgrcv(2) MSG_COPY, Linux with CONFIG_CHECKPOINT_RESTORE).
Status DumpMsgQueues(image::IpcNamespace* out);
Status RestoreMsgQueues(const image::IpcNamespace& ns);

// POSIX message queues of the namespace's mqueue file system, with their
// messages (see posix_mqueue.cc for how they are read).
Status DumpPosixMqueues(image::IpcNamespace* out);
Status RestorePosixMqueues(const image::IpcNamespace& ns);

// "SysV semaphore set id 3 (key 0x1234)", for messages.
std::string DescribeIpc(const char* what, const image::IpcPerm& p);

// Creates a SysV object with the image's id (the namespace's `next_id_sysctl`
// set first) and creator (the calling thread's effective ids set for the
// call), then gives it its owner and mode: `get(key, flags)` is the
// semget/msgget call, `set_owner(id)` the IPC_SET.
Status CreateSysvObject(const image::IpcPerm& p, const char* what, const char* next_id_sysctl,
                        const std::function<int(key_t, int)>& get, const std::function<int(int)>& set_owner);

}  // namespace cryo::ns
