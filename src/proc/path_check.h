// Paths the restore reopens (files and directories held open, mapped files,
// FIFOs, the working directory, root and executable) must lead to the same
// object then, in cryo, before the tree exists. What cannot is refused at
// dump, by name, before anything is written:
//   - a file or directory that was deleted (its /proc link ends in
//     " (deleted)" and it has no link left);
//   - a path that no longer leads to the open object from cryo (renamed
//     over, a mount placed on top of it, another mount namespace);
//   - a /proc path of a task of the tree (/proc/self, /proc/thread-self and
//     /dev/fd resolve to one): reopened before that task exists, it would
//     name whatever holds the pid then;
//   - files of special file systems whose open files hold state of their
//     own that a reopen does not bring back (debugfs, tracefs, securityfs,
//     bpffs, ...), /proc/kmsg (each reader has its own position in the kernel
//     log) and pressure files opened for writing (a PSI trigger belongs to
//     the open file, Documentation/accounting/psi.rst).
// procfs files of other processes or of the kernel (/proc/meminfo), sysfs
// attributes and cgroup files are reopened by path like any file.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <set>
#include <string>

#include "base/status.h"

namespace cryo::paths {

// Every pid and tid of the tree (zombies included).
using TaskIds = std::set<pid_t>;

// What is known of one path-based resource at dump.
struct Opened {
  std::string link;       // readlink of its /proc entry (fd/N, cwd, root, exe, map_files/A-B)
  struct stat st{};       // stat through that entry: the open object itself
  long fs_type = 0;       // statfs f_type through that entry
  int access = -1;        // O_RDONLY/O_WRONLY/O_RDWR for an fd, -1 otherwise
};

// Why `o` cannot be reopened by its path at restore ("was deleted", "is
// under /proc/123, ..."), or "" if it can. Also stats the path from cryo.
std::string WhyNotReopenable(const Opened& o, const TaskIds& tree);

// The path to name `o` by in messages (without the " (deleted)" suffix of a
// deleted file).
std::string ShownPath(const Opened& o);

// Reads `o` for a /proc/PID/... entry (follows it for st and fs_type).
Status ReadOpened(const std::string& entry, Opened* o);

// The name of a special file system whose open files cannot be reopened by
// path ("debugfs", ...), or nullptr.
const char* UnreopenableFileSystem(long fs_type);

// The working directory, root and executable of each process of `pids`:
// refused (naming the pid, the resource and the path) if they cannot be
// reopened at restore.
Status CheckProcessPaths(const std::set<pid_t>& pids, const TaskIds& tree);

}  // namespace cryo::paths
