#include "restore/mount_ns.h"
#include "ns/user_ns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "base/file_util.h"
#include "base/log.h"
#include "files/snapshot_restore.h"
#include "ns/mount_table.h"

namespace cryo {

namespace {

bool Has(const image::Inventory& inv, const char* f) {
  return std::find(inv.features().begin(), inv.features().end(), f) != inv.features().end();
}

// Mounts of the fresh network or IPC namespace: made once it is entered.
bool Deferred(const image::LoadedImage& img, const image::MountEntry& e) {
  return (e.action() == image::MOUNT_SYSFS && Has(img.inventory, "net-ns")) ||
         (e.action() == image::MOUNT_MQUEUE && Has(img.inventory, "ipc-ns"));
}

std::string What(const image::MountEntry& e) {
  return "the tree's mount " + e.mount_point() + " (" + e.fstype() + " " + e.source() + ")";
}

Status Propagate(const image::MountEntry& e) {
  if (e.joins_source_group()) return Status::Ok();  // a peer of its source already
  const char* p = e.mount_point().c_str();
  unsigned first = 0, then = 0;
  switch (e.propagation()) {
    case image::PROPAGATION_PRIVATE: first = MS_PRIVATE; break;
    case image::PROPAGATION_SLAVE: first = MS_SLAVE; break;
    case image::PROPAGATION_SHARED: first = MS_PRIVATE, then = MS_SHARED; break;
    case image::PROPAGATION_SLAVE_SHARED: first = MS_SLAVE, then = MS_SHARED; break;
    default: return Status::Error(What(e) + ": unknown propagation " + std::to_string(e.propagation()));
  }
  if (::mount(nullptr, p, nullptr, first, nullptr) != 0) return Status::FromErrno(What(e) + ": its propagation");
  if (then && ::mount(nullptr, p, nullptr, then, nullptr) != 0) return Status::FromErrno(What(e) + ": MS_SHARED");
  return Status::Ok();
}

// The per-mount flags of a bind or a fresh mount (MS_REMOUNT|MS_BIND changes
// only those, mount(2)).
Status Remount(const image::MountEntry& e) {
  if (::mount(nullptr, e.mount_point().c_str(), nullptr, MS_REMOUNT | MS_BIND | e.flags(), nullptr) != 0)
    return Status::FromErrno(What(e) + ": remount with its flags");
  return Status::Ok();
}

// A mount point missing in a tmpfs the restore made (the dump does not walk
// into mount points) is made; anywhere else it must exist.
Status MakeMountPoint(const image::LoadedImage& img, const image::MountEntry& e, bool file) {
  const std::string& p = e.mount_point();
  if (::access(p.c_str(), F_OK) == 0) return Status::Ok();
  if (!InTreeTmpfs(img, p))
    return Status::Error(What(e) + ": its mount point is missing (make " + p + " again)");
  for (size_t at = 1; at != std::string::npos;) {
    at = p.find('/', at + 1);
    const std::string part = p.substr(0, at);
    if (at == std::string::npos && file) {
      const int fd = ::open(part.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) return Status::FromErrno(What(e) + ": making its mount point");
      ::close(fd);
    } else if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::FromErrno(What(e) + ": making its mount point " + part);
    }
  }
  return Status::Ok();
}

Status Make(const image::LoadedImage& img, const image::MountEntry& e) {
  const char* p = e.mount_point().c_str();
  const unsigned fresh_flags = e.flags() & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
  switch (e.action()) {
    case image::MOUNT_INHERITED:
      if (e.remount()) CRYO_RETURN_IF_ERROR(Remount(e));
      break;
    case image::MOUNT_TMPFS: {
      CRYO_RETURN_IF_ERROR(MakeMountPoint(img, e, false));
      if (::mount("tmpfs", p, "tmpfs", fresh_flags, e.data().c_str()) != 0)
        return Status::FromErrno(What(e) + ": mount tmpfs -o " + e.data());
      // Its content, before anything is mounted over it and before it may
      // become read-only.
      const std::string root = e.mount_point();
      CRYO_ASSIGN_OR_RETURN(std::unique_ptr<SnapshotRestore> content,
                            SnapshotRestore::Apply(img, [&](const std::string& path) {
                              if (!ns::PathUnder(path, root)) return false;
                              // Not the content of a tmpfs mounted below this one.
                              for (const image::MountEntry& o : img.namespaces.mounts().mounts())
                                if (o.action() == image::MOUNT_TMPFS && o.mount_point() != root &&
                                    ns::PathUnder(o.mount_point(), root) && ns::PathUnder(path, o.mount_point()))
                                  return false;
                              return true;
                            }));
      content->Keep();
      CRYO_RETURN_IF_ERROR(Remount(e));
      break;
    }
    case image::MOUNT_BIND: {
      struct stat st;
      if (::stat(e.source().c_str(), &st) != 0)
        return Status::FromErrno(What(e) + ": its source " + e.source() + " (it must exist at restore)");
      CRYO_RETURN_IF_ERROR(MakeMountPoint(img, e, !S_ISDIR(st.st_mode)));
      if (::mount(e.source().c_str(), p, nullptr, MS_BIND | (e.recursive() ? MS_REC : 0), nullptr) != 0)
        return Status::FromErrno(What(e) + ": bind mount of " + e.source());
      CRYO_RETURN_IF_ERROR(Remount(e));
      break;
    }
    case image::MOUNT_DEVPTS: {
      // A fresh instance (each devpts mount is one, devpts.rst): the tty
      // restore, inside this namespace, makes the tree's ptys in it through
      // /dev/ptmx (ptmx_open uses the "pts" beside it) or its own ptmx.
      CRYO_RETURN_IF_ERROR(MakeMountPoint(img, e, false));
      if (::mount("devpts", p, "devpts", fresh_flags, e.data().empty() ? nullptr : e.data().c_str()) != 0)
        return Status::FromErrno(What(e) + ": mount devpts -o " + e.data());
      CRYO_RETURN_IF_ERROR(Remount(e));
      break;
    }
    case image::MOUNT_PROC:
    case image::MOUNT_SYSFS:
    case image::MOUNT_MQUEUE: {
      CRYO_RETURN_IF_ERROR(MakeMountPoint(img, e, false));
      const char* type = e.action() == image::MOUNT_PROC ? "proc" : e.action() == image::MOUNT_SYSFS ? "sysfs" : "mqueue";
      if (::mount(type, p, type, e.flags() & ~MS_STRICTATIME, e.data().empty() ? nullptr : e.data().c_str()) != 0)
        return Status::FromErrno(What(e) + ": mount " + type);
      break;
    }
    default:
      return Status::Error(What(e) + ": unknown kind " + std::to_string(e.action()));
  }
  return Propagate(e);
}

// The reference's mounts the tree's table lacks, unmounted from the copy the
// restore starts from: deepest first. One already gone (never mounted on this
// host, or unmounted since the dump) is left as it is; one covered by another
// mount since the dump cannot be reached and fails the restore.
Status UnmountAbsent(const image::MountNamespace& table) {
  std::vector<const image::MountEntry*> order;
  for (const image::MountEntry& e : table.absent()) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const image::MountEntry* a, const image::MountEntry* b) {
    return std::count(a->mount_point().begin(), a->mount_point().end(), '/') >
           std::count(b->mount_point().begin(), b->mount_point().end(), '/');
  });
  for (const image::MountEntry* e : order) {
    CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/self/mountinfo"));
    CRYO_ASSIGN_OR_RETURN(std::vector<ns::MountLine> lines, ns::ParseMountLines(text));
    const ns::MountLine* top = nullptr;
    bool present = false;
    for (const ns::MountLine& l : lines) {
      if (l.point != e->mount_point()) continue;
      top = &l;  // a later line on the same point is mounted over the earlier
      present = present || (l.fstype == e->fstype() && l.source == e->source() && l.root == e->root());
    }
    if (!present) continue;
    if (top->fstype != e->fstype() || top->source != e->source() || top->root != e->root())
      return Status::Error("the mount " + e->mount_point() + " (" + e->fstype() + " " + e->source() + "), which the "
                           "tree's namespace did not have, is covered by " + ns::DescribeMount(*top) + " here: "
                           "the restore cannot unmount it");
    // MNT_DETACH: nothing of the fresh namespace uses it; a slave's unmount
    // does not propagate to cryo's namespace (mount_namespaces(7)).
    if (::umount2(e->mount_point().c_str(), MNT_DETACH) != 0)
      return Status::FromErrno("unmounting " + e->mount_point() + " (" + e->fstype() + "), which the tree's mount "
                               "namespace did not have");
  }
  return Status::Ok();
}

Result<std::pair<dev_t, ino_t>> DirId(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno("stat " + dir);
  return std::make_pair(st.st_dev, st.st_ino);
}

}  // namespace

bool InTreeTmpfs(const image::LoadedImage& img, const std::string& path) {
  for (const image::MountEntry& e : img.namespaces.mounts().mounts())
    if (e.action() == image::MOUNT_TMPFS && ns::PathUnder(path, e.mount_point())) return true;
  return false;
}

Status MakeTreeMountNs(const image::LoadedImage& img, const std::string& images_dir) {
  if (!Has(img.inventory, "mount-ns")) return Status::Ok();
  if (img.namespaces.mounts().absent_size() > 0 && !Has(img.inventory, "mount-ns-absent"))
    return Status::Error(img.dir + "/ns.img: mounts to unmount without the feature mount-ns-absent (corrupted)");
  for (const image::MountEntry& e : img.namespaces.mounts().absent()) {
    if (e.mount_point().size() < 2 || e.mount_point()[0] != '/' || e.mount_point().find('\0') != std::string::npos)
      return Status::Error(img.dir + "/ns.img: the absent mount " + e.mount_point() + ": not an absolute path below / "
                           "(corrupted)");
  }
  for (const image::MountEntry& e : img.namespaces.mounts().mounts()) {
    const bool bad_point = e.mount_point().empty() || e.mount_point()[0] != '/' ||
                           e.mount_point().find('\0') != std::string::npos ||
                           e.mount_point().find("/../") != std::string::npos;
    const bool bad_source = e.action() == image::MOUNT_BIND &&
                            (e.source().empty() || e.source()[0] != '/' || e.source().find('\0') != std::string::npos);
    if (bad_point || bad_source || e.data().find('\0') != std::string::npos)
      return Status::Error(img.dir + "/ns.img: " + What(e) + ": not an absolute path (corrupted)");
  }
  CRYO_ASSIGN_OR_RETURN(auto before, DirId(images_dir));
  // unshare(2) with CLONE_NEWNS: a copy of cryo's mounts; root and cwd move
  // to the copies. EINVAL if another thread shares cryo's fs_struct.
  // (In the tree's user namespace if it has one: ns/user_ns.h.)
  CRYO_RETURN_IF_ERROR(ns::UnshareOwned(CLONE_NEWNS, "the tree's mount namespace"));
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
    return Status::FromErrno("making the mounts of the tree's fresh mount namespace slaves");
  CRYO_RETURN_IF_ERROR(UnmountAbsent(img.namespaces.mounts()));
  auto after = DirId(images_dir);
  if (!after.ok() || *after != before)
    return Status::Error("the image directory " + images_dir + " is not the same in the tree's mount namespace");
  int made = 0;
  for (const image::MountEntry& e : img.namespaces.mounts().mounts()) {
    if (Deferred(img, e)) continue;
    CRYO_RETURN_IF_ERROR(Make(img, e));
    ++made;
  }
  // The image's files are read by path: the mounts must not hide them.
  after = DirId(images_dir);
  if (!after.ok() || *after != before)
    return Status::Error("the image directory " + images_dir + " is hidden by the tree's mounts (put it elsewhere)");
  LOG_DEBUG("fresh mount namespace: %d of %d mounts made", made, img.namespaces.mounts().mounts_size());
  return Status::Ok();
}

Status FinishTreeMountNs(const image::LoadedImage& img) {
  if (!Has(img.inventory, "mount-ns")) return Status::Ok();
  for (const image::MountEntry& e : img.namespaces.mounts().mounts())
    if (Deferred(img, e)) CRYO_RETURN_IF_ERROR(Make(img, e));
  return Status::Ok();
}

}  // namespace cryo
