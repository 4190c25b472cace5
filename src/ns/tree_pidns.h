// A tree in a PID namespace of its own (`cryo run`, `unshare --pid --fork
// --mount-proc`): its pids are that namespace's, and a restore with --pidns new
// gives them back in a fresh one whose pid 1 is cryo's init.
//
// cryo dumps such a tree from inside: it forks a dumper in the tree's PID
// namespace (setns(2) with CLONE_NEWPID moves the caller's children only),
// with a mount namespace of its own showing that namespace's /proc, so every
// pid cryo reads, traces and writes is the tree's own. The tree's mount
// namespace must then be what --pidns new makes at restore: a copy of cryo's
// mounts with the namespace's /proc; any other mount is refused by name. Pid 1
// of the namespace (an init outside the tree: cryo run's, or a shell of
// `unshare --fork`) is not dumped: the restore's init takes its place; any
// other process of the namespace outside the tree is refused.
#pragma once

#include <sys/types.h>

#include <functional>
#include <set>
#include <string>

#include "base/status.h"

namespace cryo::ns {

// The pid of `host_pid` in its PID namespace when that is a child of cryo's;
// 0 when it lives in cryo's. Refused: deeper namespaces, pid 1 (the init of
// its namespace, which a restore provides itself).
Result<pid_t> PidInChildPidns(pid_t host_pid);

// Forks a process in the PID namespace of `host_pid`, in a fresh mount
// namespace (a slave of cryo's) with that namespace's /proc. Returns its pid
// in cryo, 0 in it (as fork(2)); it dies with cryo.
Result<pid_t> ForkInPidnsOf(pid_t host_pid);

// In that process: the image is complete (called before a kill-mode dump
// kills the tree). Killing the tree's root ends its namespace's init, and the
// kernel then kills every process of the namespace, the dumper too
// (pid_namespaces(7)): cryo learns here that the image was complete.
void ReportImageComplete();

// In cryo: waits for the dumper `dumper` of the tree whose root is
// `host_root`, forwarding SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and
// SIGUSR2 to it, and returns the dump's exit status: the dumper's, or 0 when
// it was killed with its namespace after the image was complete and the tree
// is gone.
int WaitForDumper(pid_t dumper, pid_t host_root);

// True in the process ForkInPidnsOf made.
bool DumpingInTreePidns();

// In that process: the mount namespace cryo was started in.
uint64_t CryoMountNs();

// In that process: pid 1 of the namespace is cryo's init (of `cryo run` or
// of a restore with --pidns new: the same executable as this cryo's).
bool IsCryoInit();

// In that process, before anything is written: the tree `tree` (with `first`
// one of its processes) fits a restore with --pidns new (its mount table is
// cryo's with its own /proc; no process of the namespace but pid 1 outside
// it). Adds the inventory feature "pid-ns".
Status CheckTreePidns(pid_t first, const std::set<pid_t>& tree, std::set<std::string>* features);

// Unshares a mount namespace (a slave of the current one: mounts made here
// stay here) and mounts /proc for the caller's PID namespace on /proc.
Status MountOwnProc();

}  // namespace cryo::ns
