// Reading another IPC or UTS namespace from cryo: what /proc/sysvipc/*,
// /proc/sys/kernel/{shm,msg,sem}*, /proc/sys/fs/mqueue/*, semctl(2),
// msgrcv(2), mq_open(3) and uname(2) show is the namespace of the calling
// thread (task->nsproxy; ipc/util.c sysvipc_proc_open, ipc/ipc_sysctl.c
// set_lookup), so cryo reads it from a thread of its own that joined the
// namespace with setns(2), which changes only that thread (namespaces(7)).
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "base/status.h"

namespace cryo::ns {

// The inode of /proc/PID/ns/NAME (PID 0: cryo's own, /proc/self; its
// network namespace is the one it came from while its main thread visits
// the tree's, netns.h NetnsVisit).
Result<uint64_t> NsInode(pid_t pid, const char* name);
void SetHomeNetInode(uint64_t ino);
uint64_t HomeNetInode();  // 0: not visiting
// While visiting: an fd of cryo's own network namespace (-1 otherwise).
void SetHomeNetFd(int fd);
int HomeNetFd();

// Runs `fn` on a new thread that joined the namespaces `nstypes`
// (CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET) of `pid`, and returns its status.
Status RunInNamespacesOf(pid_t pid, int nstypes, const std::function<Status()>& fn);

// Reads /proc/sys/PATH ("kernel/msgmnb") without its newline.
Result<std::string> ReadSysctl(const std::string& path);
Status WriteSysctl(const std::string& path, const std::string& value);

// The numbers of one line of /proc/sysvipc/{sem,msg}, header skipped.
Result<std::vector<std::vector<long long>>> ReadSysvipcTable(const std::string& name, size_t min_columns);

}  // namespace cryo::ns
