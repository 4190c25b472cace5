// cryo restore --pidns new of a tree whose PID namespace was owned by its own
// user namespace (`unshare --user --map-root-user --pid --fork --mount-proc`):
// the fresh PID namespace is owned by the fresh user namespace
// (ns/user_ns.h), as the original was.
//
// The kernel makes a PID namespace owned by the user namespace of the process
// that unshares it (unshare(2), user_namespaces(7)), and that namespace has no
// file to join (/proc/PID/ns/pid_for_children: ENOENT) until its pid 1
// exists. So pid 1 is made inside the user namespace: a short-lived child of
// cryo joins it, unshares CLONE_NEWPID and forks pid 1 with CLONE_PARENT (so
// that pid 1 is a child of cryo, as the init of any --pidns new restore).
// That pid 1 has no privilege outside the user namespace and needs none: it
// is only the namespace's init (RunNamespaceInit) once it knows the root.
//
// The restore itself needs cryo's privileges (cgroups, rlimits, ptrace of the
// helpers): cryo joins the namespace (setns(2) with CLONE_NEWPID: for its next
// children) and forks the restore engine in it with a pid the image does not
// hold (clone3 set_tid: CAP_SYS_ADMIN over the namespace's owner, which cryo
// has as root of the owner's parent). The engine restores the tree as in any
// --pidns new restore and exits: the tree's root, its child, is then
// reparented to pid 1, the namespace's child reaper (pid_namespaces(7)), and
// cryo hands it to the init.
#pragma once

#include <sys/types.h>

#include "base/status.h"
#include "base/unique_fd.h"
#include "cryo/image.pb.h"

namespace cryo {

struct UserNsInit {
  pid_t pid = 0;  // host pid of pid 1 (a child of cryo)
  UniqueFd go;    // cryo writes the root's pid (inside) here
  UniqueFd ack;   // the init answers once it forwards signals to the root
};

// Forks pid 1 of a fresh PID namespace owned by the tree's user namespace
// (ns::MakeTreeUserNs made it). Until it has its root it dies with cryo (and
// exits at once if `alive_fd` is readable: cryo, which alone holds its write
// end `alive_w`, is gone already); then it is the namespace's init, writing
// the root's wait status to `exit_fd`.
Result<UserNsInit> ForkInitInTreeUserNs(int alive_fd, int alive_w, int exit_fd);

// Makes the PID namespace of `init` (a host pid) the one of cryo's next
// children (setns(2)).
Status JoinPidnsOfInit(pid_t init);

// A pid in the fresh namespace for the restore engine: none of the image's
// (near pid_max, far from the pids a tree is given).
pid_t EnginePid(const image::Inventory& inv);

// Once the engine that made the tree has exited (the root is then a child
// of the init): tells the init the root's pid inside and its host pid
// `root_host` (the init then joins the root's mount namespace), and waits
// until it forwards signals to it.
Status HandRootToInit(UserNsInit& init, pid_t root, pid_t root_host);

// Restore() in that engine: what the hand-over would change, refused by name
// (the root's parent-death signal would fire when the engine exits).
Status CheckHandOverFit(const image::ProcessCore& root);

}  // namespace cryo
