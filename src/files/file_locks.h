// File locks: POSIX record locks (fcntl F_SETLK, owned by a process's fd
// table), OFD locks (F_OFD_SETLK), flock(2) locks and leases (F_SETLEASE),
// the last three owned by an open file description. Dumped from the "lock:"
// lines of /proc/PID/fdinfo/N, checked against /proc/locks, and taken again
// by each restore helper before the tree is released: a lock that cannot be
// taken fails the restore, it is never dropped.
#pragma once

#include <sys/types.h>

#include <map>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "files/fd_kind.h"
#include "files/pipe_table.h"
#include "image/image_dir.h"

namespace cryo {

// Dump, per fd (DumpFdTable): records the locks its fdinfo shows. Refuses, by
// name, a lease being broken, a kind cryo does not know, and locks on fds
// other than regular files and directories.
Status DumpFdLocks(const FdSource& src, image::Fd* out);

// Dump, per process once its fds are dumped: refuses what a restore could not
// give back: a POSIX lock on the process's own executable (the restore closes
// an fd on it, which drops such locks, fcntl(2)), an OFD/flock/lease
// description also held by a process outside the tree, and (in kill mode) a
// process outside the tree waiting for one of its locks (it would take the
// lock as soon as the tree dies, before the restore).
Status CheckProcessLocks(pid_t pid, const image::FdTable& table, const DumpScope& scope);

// Dump, once file ids are assigned: keeps each lock once, on the fd through
// which the restore takes it back. POSIX locks are kept per fd table
// (`table_of`: the process whose fd table a process uses; itself unless
// shared), the others per open file description; preferably on the process
// /proc/locks names as the lock's taker. Returns whether any lock is left.
bool AssignFileLocks(const std::vector<ProcessFds>& tables, const std::map<pid_t, pid_t>& table_of);

// Restore, in cryo before anything is created, first: no file that holds a
// lease in the image is leased now (opening it would start breaking that
// lease, fcntl(2), and wait for it).
Status CheckLeasesFree(const image::LoadedImage& img);
// Then: every lock record is valid, and every lock is free to take (not held
// by a running original, nor by someone who took it since the dump), probed
// on a description of cryo's own.
Status CheckLocksFree(const image::LoadedImage& img);
// Restore, in the helper once its fds are in place and no fd on a locked file
// will be closed any more (closing any fd on a file drops the POSIX locks of
// its fd table on it): takes the locks recorded on its fds.
Status TakeFileLocks(const image::FdTable& table);

}  // namespace cryo
