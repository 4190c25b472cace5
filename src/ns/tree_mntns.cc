#include "ns/tree_mntns.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "ns/mount_table.h"
#include "ns/ns_thread.h"
#include "ns/tree_pidns.h"
#include "proc/proc.h"

namespace cryo::ns {

namespace {

bool g_entered = false;
uint64_t g_tree_mnt = 0;
std::unique_ptr<image::MountNamespace> g_table;  // set when the restore has something to make
std::vector<std::string> g_tmpfs_roots;
std::set<std::string> g_points;

Result<std::pair<dev_t, ino_t>> DirId(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno("stat " + dir);
  return std::make_pair(st.st_dev, st.st_ino);
}

// `dir` or its nearest ancestor that exists (the image directory may not
// exist before the dump).
std::string ExistingAncestor(std::string dir) {
  while (!dir.empty() && ::access(dir.c_str(), F_OK) != 0) {
    const size_t slash = dir.find_last_of('/');
    if (slash == std::string::npos) return ".";
    dir = slash == 0 ? "/" : dir.substr(0, slash);
  }
  return dir.empty() ? "." : dir;
}

}  // namespace

Status EnterTreeMountNs(pid_t pid, const std::string& images_dir) {
  const std::string subject = "pid " + std::to_string(pid) + ": mount namespace: ";
  auto theirs = NsInode(pid, "mnt");
  if (!theirs.ok()) return Status::Ok();  // no such process: the dump says so itself
  CRYO_ASSIGN_OR_RETURN(const uint64_t mine, NsInode(0, "mnt"));
  if (*theirs == mine) return Status::Ok();
  // In cryo's own mount namespace but its own PID namespace: CheckTreePidns
  // refuses it (its /proc shows cryo's pids).
  if (DumpingInTreePidns() && *theirs == CryoMountNs()) return Status::Ok();
  const std::string proc_dir = "/proc/" + std::to_string(pid);
  CRYO_ASSIGN_OR_RETURN(std::string tree_text, ReadFileToString(proc_dir + "/mountinfo"));
  CRYO_ASSIGN_OR_RETURN(std::string mine_text, ReadFileToString("/proc/self/mountinfo"));
  CRYO_ASSIGN_OR_RETURN(std::vector<MountLine> tree, ParseMountLines(tree_text));
  CRYO_ASSIGN_OR_RETURN(std::vector<MountLine> ref, ParseMountLines(mine_text));
  bool changed = false;
  CRYO_ASSIGN_OR_RETURN(image::MountNamespace table, DiffMountTables(tree, ref, subject, &changed));
  // The tree's root must be its namespace's root: paths are read from there.
  auto root = ReadLink(proc_dir + "/root");
  if (!root.ok() || *root != "/")
    return Status::Error(subject + "pid " + std::to_string(pid) + " has a root directory of its own (chroot or "
                         "pivot_root: " + (root.ok() ? *root : root.status().ToString()) + "), which is not restored");
  for (const MountLine& t : tree) g_points.insert(t.point);
  for (const image::MountEntry& e : table.mounts())
    if (e.action() == image::MOUNT_TMPFS) g_tmpfs_roots.push_back(e.mount_point());

  // `cryo check -t` writes no image: it only needs the tree's paths.
  const bool writes_image = !images_dir.empty();
  char cwd[PATH_MAX];
  if (!::getcwd(cwd, sizeof(cwd))) return Status::FromErrno("getcwd");
  const std::string image_anchor = writes_image ? ExistingAncestor(images_dir) : std::string(cwd);
  CRYO_ASSIGN_OR_RETURN(auto cwd_id, DirId(cwd));
  CRYO_ASSIGN_OR_RETURN(auto image_id, DirId(image_anchor));
  const std::string path = proc_dir + "/ns/mnt";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  // setns(2) of a mount namespace also moves cryo's root and working
  // directory to the namespace's root; EINVAL if a thread shares them.
  if (::setns(fd.get(), CLONE_NEWNS) != 0) return Status::FromErrno("setns into the mount namespace of pid " +
                                                                    std::to_string(pid));
  g_entered = true;
  g_tree_mnt = *theirs;
  auto cwd_there = ::chdir(cwd) == 0 ? DirId(".") : Result<std::pair<dev_t, ino_t>>(Status::Error("chdir"));
  if (writes_image && (!cwd_there.ok() || *cwd_there != cwd_id))
    return Status::Error(subject + "cryo's working directory " + std::string(cwd) + " is not the same directory in "
                         "the tree's mount namespace (run cryo from a directory both show)");
  auto there = DirId(image_anchor);
  if (writes_image && (!there.ok() || *there != image_id))
    return Status::Error(subject + "the image directory " + images_dir + " is not the same in the tree's mount "
                         "namespace (" + image_anchor + " differs there): put the image where both show the same "
                         "directory");
  // Pids cryo reads from /proc are the ones the tree's /proc shows.
  auto self = ReadLink("/proc/self");
  if (!self.ok() || *self != std::to_string(::getpid()))
    return Status::Error(subject + "its /proc is not a proc of the tree's PID namespace (/proc/self is " +
                         (self.ok() ? *self : self.status().ToString()) + "), which is not restored");
  // Inside the tree's own PID namespace, a table that is cryo's with the
  // namespace's /proc is what --pidns new makes: nothing to record then.
  if (changed || !DumpingInTreePidns()) g_table = std::make_unique<image::MountNamespace>(std::move(table));
  LOG_DEBUG("dumping from the mount namespace of pid %d: %d mounts made again, %zu tmpfs", pid,
            g_table ? g_table->mounts_size() : 0, g_tmpfs_roots.size());
  return Status::Ok();
}

bool DumpingInTreeMountNs() { return g_entered; }

const image::MountNamespace* TreeMountTable() { return g_table.get(); }

std::vector<std::string> TreeTmpfsRoots() { return g_tmpfs_roots; }

std::set<std::string> TreeMountPoints() { return g_points; }

Status CheckTreeMountNsOwned(const std::set<pid_t>& tree) {
  if (!g_table) return Status::Ok();
  return proc::ForEachPidOutside(tree, [&](pid_t p) {
    // Pid 1 of the tree's own PID namespace: the restore's init takes its place.
    if (p == 1 && DumpingInTreePidns()) return Status::Ok();
    auto ino = NsInode(p, "mnt");
    if (!ino.ok() || *ino != g_tree_mnt) return Status::Ok();
    return Status::Error("pid " + std::to_string(p) + ", outside the tree, lives in the tree's mount namespace "
                         "mnt:[" + std::to_string(g_tree_mnt) + "]: a restore would not share the namespace with it "
                         "(dump the tree that holds every process of the namespace)");
  });
}

}  // namespace cryo::ns
