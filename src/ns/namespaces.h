// The namespaces a tree owns: a UTS namespace (host and domain name), a
// network namespace (ns/netns.h) and an IPC namespace (SysV semaphores, message queues and shared memory, POSIX
// message queues, the namespace's sysctls), each shared by every process of
// the tree and by no process outside it (`unshare --fork --ipc --uts CMD`,
// a container). The dump reads them (ns.img); the restore recreates each as a
// fresh namespace that cryo enters before it makes anything, so that every
// process it forks lives in it, and that dies with the restored tree if the
// restore fails (nothing is left in the host's namespaces).
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo::ns {

// Before anything is written: the namespaces of the live processes `pids`
// that are not cryo's, read into `out` (features "uts-ns", "ipc-ns", "net-ns"), or a
// refusal naming what is not restored (processes in different namespaces, a
// process outside `tree` in the tree's namespace, objects that cannot be
// read). Leaves everything as it was.
Status DumpNamespaces(const std::vector<pid_t>& pids, const std::set<pid_t>& tree, image::NamespaceTable* out,
                      std::set<std::string>* features);

// Restore, first thing: cryo's main thread enters fresh namespaces for the
// ones in the image and fills them (names, sysctls, semaphores, message
// queues); processes forked from it inherit them. `veth_peer_ns`
// (--veth-peer-ns, "" for where they were): the namespace the outside ends
// of the tree's veth pairs are made in.
// `lock_script`: nft commands run in the fresh network namespace first (the
// image's network lock, net/tcp_session.h).
Status EnterFreshNamespaces(const image::Inventory& inv, const image::NamespaceTable& ns,
                            const std::string& veth_peer_ns, const std::string& lock_script);
// Once every object of the image exists (SysV segments included): the
// namespace's last sysctls (next ids, shm_rmid_forced).
Status FinishFreshNamespaces(const image::Inventory& inv, const image::NamespaceTable& ns);

}  // namespace cryo::ns
