#include "image/validate.h"

#include <fcntl.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "image/validate_internal.h"

namespace cryo::image {

namespace validate {

Status Bad(const LoadedImage& img, const std::string& file, const std::string& what) {
  return Status::Error(img.dir + "/" + file + ": " + what + " (corrupted image)");
}

std::string PathProblem(const std::string& path) {
  if (path.empty()) return "is empty";
  if (path[0] != '/') return "is not absolute";
  if (path.find('\0') != std::string::npos) return "contains a NUL byte";
  if (path.size() >= kPathMax) return "is longer than PATH_MAX";
  return "";
}

std::string Printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return s.size() > 80 ? out + "..." : out;
}

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "%#" PRIx64, v);
  return buf;
}

std::string FileAttrsProblem(const FileAttrs& a) {
  if (a.uid() == UINT32_MAX || a.gid() == UINT32_MAX) return "owner or group -1";
  if (a.mode() & ~07777u) return "mode " + Hex(a.mode()) + " beyond the permission bits";
  return "";
}

}  // namespace validate

using namespace validate;


namespace {

bool ValidPid(int64_t pid) { return pid >= 1 && pid <= kPidMax; }

// Every process descends from the root through live parents of the image,
// sessions and groups are consistent the way the kernel keeps them, and no
// session or group the restore must lead with a temporary process (its id is
// not a process of the image) takes the id of a thread.
Status ValidateTree(const LoadedImage& img, const Index& index) {
  const int root = img.inventory.root_pid();
  const auto root_it = img.processes.find(root);
  if (root_it == img.processes.end() || root_it->second.core.zombie())
    return Bad(img, InventoryName(), "the root process " + std::to_string(root) + " is missing or a zombie");
  std::map<int, int> session_of_group;
  for (const auto& [pid, p] : img.processes) {
    const ProcessCore& c = p.core;
    const std::string file = CoreName(pid);
    if (pid != root) {
      auto parent = img.processes.find(c.ppid());
      if (parent == img.processes.end() || parent->second.core.zombie())
        return Bad(img, file, "its parent " + std::to_string(c.ppid()) + " is not a live process of the image");
      int up = c.ppid();
      for (size_t steps = 0; up != root; ++steps) {
        if (steps > img.processes.size())
          return Bad(img, file, "its parents form a cycle that never reaches the root " + std::to_string(root));
        up = img.processes.at(up).core.ppid();
      }
    } else if (c.ppid() < 0 || c.ppid() > kPidMax) {
      return Bad(img, file, "parent pid " + std::to_string(c.ppid()) + " is out of range");
    }
    // 0: the leader is in an ancestor PID namespace, where getsid(2) and
    // /proc/PID/stat show no id (task_session_vnr); a group inside a session
    // led from this namespace cannot be led from outside it.
    if ((c.pgid() != 0 && !ValidPid(c.pgid())) || (c.sid() != 0 && !ValidPid(c.sid())) ||
        (c.pgid() == 0 && c.sid() != 0))
      return Bad(img, file, "process group " + std::to_string(c.pgid()) + " / session " + std::to_string(c.sid()) +
                                " out of range 1.." + std::to_string(kPidMax) +
                                " (0: led from an ancestor PID namespace, for both)");
    if (c.sid() == pid && c.pgid() != pid)
      return Bad(img, file, "a session leader in another process group (" + std::to_string(c.pgid()) + ")");
    auto [g, fresh] = session_of_group.emplace(c.pgid(), c.sid());
    if (!fresh && g->second != c.sid())
      return Bad(img, file, "process group " + std::to_string(c.pgid()) + " spans sessions " +
                                std::to_string(g->second) + " and " + std::to_string(c.sid()));
    for (int leader : {c.sid(), c.pgid()}) {
      auto l = img.processes.find(leader);
      if (l != img.processes.end() && l->second.core.sid() != c.sid())
        return Bad(img, file, "leader " + std::to_string(leader) + " of its session or group is in another session");
      if (l == img.processes.end() && index.tid_owner.count(leader))
        return Bad(img, file, "session or group " + std::to_string(leader) + " is led from outside the image, but " +
                                  std::to_string(leader) + " is a thread of pid " +
                                  std::to_string(index.tid_owner.at(leader)));
    }
  }
  return Status::Ok();
}

const char* FeatureOf(FdKind k) {
  switch (k) {
    case FD_EVENTFD: return "eventfd";
    case FD_TIMERFD: return "timerfd";
    case FD_SIGNALFD: return "signalfd";
    case FD_EPOLL: return "epoll";
    case FD_INOTIFY: return "inotify";
    case FD_PIPE: return "pipes";
    case FD_FIFO: return "fifos";
    case FD_EXTERNAL_TTY: return "shell-job";
    case FD_TTY: return "tty";
    case FD_MEMFD: return "memfd";
    case FD_POSIX_SHM: return "posix-shm";
    case FD_LISTEN_SOCKET: return "listen-sockets";
    case FD_UNIX_SOCKET: return "unix-sockets";
    case FD_TCP_SOCKET: return "tcp-established";
    case FD_UDP_SOCKET: return "udp-sockets";
    case FD_NETLINK_SOCKET: return "netlink-sockets";
    case FD_MQUEUE: return "mqueue-fds";
    case FD_PIDFD: return "pidfds";
    default: return nullptr;
  }
}

// Whatever the records hold, the inventory announces (an older cryo refuses
// what it cannot restore by those names, section 4 of the format).
Status ValidateFeatures(const LoadedImage& img, const Index& index) {
  std::set<std::string> needed;
  std::map<uint64_t, int> file_ids, shmem_ids;
  std::map<bool, int> sched_attrs;
  if (img.processes.size() > 1) needed.insert("tree");
  for (const auto& [pid, p] : img.processes) {
    const ProcessCore& c = p.core;
    if (c.zombie()) needed.insert("zombies");
    if (c.threads_size() > 1) needed.insert("threads");
    if (c.posix_timers_size()) needed.insert("posix-timers");
    if (p.mm.inherited_size()) needed.insert("cow-shared");
    if (p.mm.guard_regions_size()) needed.insert("guard-regions");
    if (c.stop_signal()) needed.insert("stopped");
    // A dump records the scheduling attributes of every thread or (older cryo)
    // of none: a thread without them would keep its policy's defaults.
    for (const TaskCore& t : c.threads()) ++sched_attrs[t.has_sched_attr()];
    for (const Vma& v : p.mm.vmas()) {
      if (v.shmem_id()) ++shmem_ids[v.shmem_id()];
      for (const std::string& f : v.vm_flags()) {
        // Attributes an older cryo dropped (mem/vma_dump.h HasVmaAttributes).
        if (f == "lo" || f == "lf" || f == "sr" || f == "rr" || f == "dp" || f == "sl") needed.insert("vma-attributes");
        if (f == "nr") needed.insert("map-noreserve");
      }
      if (v.kind() == VMA_FILE_PRIVATE && v.file_opened_rw()) needed.insert("file-open-mode");
      if (v.huge_page_size()) needed.insert("hugetlb");
      if (v.huge_page_size() && v.kind() == VMA_FILE_PRIVATE) needed.insert("hugetlb-private-file");
      if (v.kind() == VMA_AIO_RING) needed.insert("aio-context");
    }
    for (const Fd& f : p.fds.fds()) {
      if (const char* feat = FeatureOf(f.kind())) needed.insert(feat);
      if (f.kind() == FD_EXTERNAL_TTY) needed.insert("tty");
      if (f.kind() == FD_TTY && index.ttys.count(f.tty().tty_id()) && index.ttys.at(f.tty().tty_id())->kind() == TTY_OUTSIDE)
        needed.insert("outside-tty");
      if (f.kind() == FD_LISTEN_SOCKET && f.listen_socket().pending_clients_size())
        needed.insert("unix-pending-connections");
      if (f.kind() == FD_UNIX_SOCKET && f.unix_socket().peer_outside()) needed.insert("unix-external-peers");
      if (f.kind() == FD_UNIX_SOCKET && f.unix_socket().in_flight_size()) needed.insert("unix-scm-rights");
      if (f.kind() == FD_TCP_SOCKET && f.tcp_socket().state() != TCP_ESTABLISHED) needed.insert("tcp-half-closed");
      if (f.has_owner() || f.signal()) needed.insert("fd-owner");
      if (f.locks_size()) needed.insert("file-locks");
      if (f.file_id()) ++file_ids[f.file_id()];
    }
  }
  if (sched_attrs.size() > 1)
    return Bad(img, InventoryName(), std::to_string(sched_attrs[false]) + " threads without scheduling attributes, " +
                                         std::to_string(sched_attrs[true]) + " with");
  for (const auto& [id, n] : file_ids)
    if (n > 1) needed.insert("shared-files");
  for (const auto& [id, n] : shmem_ids)
    if (n > 1) needed.insert("shmem");
  for (const ShmObject& o : img.shm.objects())
    needed.insert(o.kind() == SHM_MEMFD   ? "memfd"
                  : o.kind() == SHM_POSIX ? "posix-shm"
                  : o.kind() == SHM_ANON  ? "anon-shmem"
                                          : "sysv-shm");
  for (const ShmObject& o : img.shm.objects())
    if (o.huge_page_size()) needed.insert(o.kind() == SHM_POSIX ? "hugetlbfs-file" : "hugetlb-shared");
  // A network lock holds TCP connections of the image.
  if (!img.inventory.net_lock().empty()) needed.insert("tcp-established");
  // The tree's time namespace (ns/time_ns.h): made by cryo (0) or by a live
  // process of the image.
  if (img.namespaces.has_time()) {
    needed.insert("time-ns");
    const pid_t entry = img.namespaces.time().entry_pid();
    auto p = img.processes.find(entry);
    if (entry && (p == img.processes.end() || p->second.core.zombie()))
      return Bad(img, NamespacesName(), "the time namespace is made by pid " + std::to_string(entry) +
                                            ", which is no live process of the image");
  } else if (index.features.count("time-ns")) {
    return Bad(img, NamespacesName(), "feature 'time-ns' without the time namespace's record");
  }
  // The tree's user namespace (ns/user_ns.h): maps a fresh one can be given.
  if (img.namespaces.has_user()) {
    needed.insert("user-ns");
    for (const auto* map : {&img.namespaces.user().uid_map(), &img.namespaces.user().gid_map()}) {
      if (map->empty() || map->size() > 340)
        return Bad(img, NamespacesName(), "a user namespace map of " + std::to_string(map->size()) +
                                              " lines (1 to 340 can be written)");
      for (const IdMapRange& r : *map)
        if (r.count() == 0 || uint64_t{r.inside()} + r.count() > UINT32_MAX ||
            uint64_t{r.outside()} + r.count() > UINT32_MAX)
          return Bad(img, NamespacesName(), "a user namespace map range " + std::to_string(r.inside()) + " " +
                                                std::to_string(r.outside()) + " " + std::to_string(r.count()) +
                                                " the kernel would refuse");
    }
  } else if (index.features.count("user-ns")) {
    return Bad(img, NamespacesName(), "feature 'user-ns' without the user namespace's record");
  }
  // The tree's cgroup namespace (ns/cgroup_ns.h): one root per hierarchy.
  if (img.namespaces.has_cgroup()) {
    needed.insert("cgroup-ns");
    std::set<std::string> hierarchies;
    for (const CgroupPath& c : img.namespaces.cgroup().roots())
      if (!hierarchies.insert(c.hierarchy()).second)
        return Bad(img, NamespacesName(), "the cgroup namespace has two roots in hierarchy \"" + c.hierarchy() + "\"");
  } else if (index.features.count("cgroup-ns")) {
    return Bad(img, NamespacesName(), "feature 'cgroup-ns' without the cgroup namespace's record");
  }
  // cgroup controller settings (cgroup/cgroup_settings.h): a cgroup the
  // restore may make once; file names the restore joins to a directory.
  if (img.namespaces.cgroup_settings_size()) {
    needed.insert("cgroup-settings");
    std::set<std::pair<std::string, std::string>> cgroups;
    for (const CgroupSettings& s : img.namespaces.cgroup_settings()) {
      if (const std::string problem = CgroupProblem(s.cgroup()); !problem.empty())
        return Bad(img, NamespacesName(), "cgroup settings: " + problem);
      if (s.cgroup().path().empty() || !cgroups.insert({s.cgroup().hierarchy(), s.cgroup().path()}).second)
        return Bad(img, NamespacesName(), "cgroup settings of \"" + Printable(s.cgroup().path()) +
                                              "\" (cryo's own cgroup, or listed twice)");
      if (s.files_size() > 256) return Bad(img, NamespacesName(), "cgroup settings: more than 256 files");
      for (const CgroupSetting& f : s.files())
        if (f.name().empty() || f.name().size() > 64 ||
            f.name().find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._-ABCDEFGHIJKLMNOPQRSTUVWXYZ") !=
                std::string::npos ||
            f.name().starts_with(".") || f.value().size() > 65536 || f.value().find('\0') != std::string::npos)
          return Bad(img, NamespacesName(), "cgroup setting \"" + Printable(f.name()) + "\" invalid");
    }
  } else if (index.features.count("cgroup-settings")) {
    return Bad(img, NamespacesName(), "feature 'cgroup-settings' without the cgroup settings");
  }
  for (const std::string& f : needed)
    if (!index.features.count(f))
      return Bad(img, InventoryName(), "the records need feature '" + f + "', which the inventory does not list");
  return Status::Ok();
}

}  // namespace

Status ValidateInventory(const LoadedImage& img) {
  const Inventory& inv = img.inventory;
  const std::string file = InventoryName();
  if (inv.format_version() == 0)
    return Bad(img, file, "the inventory's format version 0 is invalid");
  if (inv.format_version() > kFormatVersion)
    return Status::Error(img.dir + ": image format version " + std::to_string(inv.format_version()) +
                         " is newer than this cryo supports (" + std::to_string(kFormatVersion) + ")");
  const auto& supported = SupportedFeatures();
  std::set<std::string> seen;
  for (const std::string& f : inv.features()) {
    if (std::find(supported.begin(), supported.end(), f) == supported.end())
      return Status::Error(img.dir + ": the image needs feature '" + Printable(f) + "', which this cryo (" CRYO_VERSION
                           ") does not support; restore it with a newer cryo");
    if (!seen.insert(f).second) return Bad(img, file, "feature '" + f + "' is listed twice");
  }
  if (std::string p = NetLockProblem(inv); !p.empty()) return Bad(img, file, p);
  for (const char* always : {"x86_64", "xsave"})
    if (!seen.count(always)) return Bad(img, file, std::string("the feature '") + always + "' is missing");
  // Sizes of XSAVE areas: the legacy area and header (576 bytes) up to what
  // any CPU has (AMX: about 11 KiB).
  if (inv.xsave_size() < 576 || inv.xsave_size() > (64u << 10))
    return Bad(img, file, "xsave area size " + std::to_string(inv.xsave_size()) + " is out of range 576..65536");
  if (!(inv.xsave_features() & 1)) return Bad(img, file, "the CPU state features " + Hex(inv.xsave_features()) + " lack x87");
  if (inv.pids().empty()) return Status::Error(img.dir + ": the inventory lists no process (corrupted image)");
  std::set<int> pids;
  for (int pid : inv.pids()) {
    if (!ValidPid(pid) || !pids.insert(pid).second)
      return Status::Error(img.dir + ": the inventory lists pid " + std::to_string(pid) + " " +
                           (ValidPid(pid) ? "twice" : "(invalid)") + " (corrupted image)");
  }
  if (!pids.count(inv.root_pid()))
    return Bad(img, file, "the root pid " + std::to_string(inv.root_pid()) + " is not one of its processes");
  if (!inv.dump_mode().empty() && inv.dump_mode() != "kill" && inv.dump_mode() != "leave-running")
    return Bad(img, file, "dump mode \"" + Printable(inv.dump_mode()) + "\" is neither kill nor leave-running");
  for (const std::string* s : {&inv.cryo_version(), &inv.kernel_release(), &inv.hostname()})
    if (s->size() > 256) return Bad(img, file, "a version or host name longer than 256 bytes");
  return Status::Ok();
}

Status ValidateImage(const LoadedImage& img) {
  Index index;
  index.features.insert(img.inventory.features().begin(), img.inventory.features().end());
  for (const auto& [pid, p] : img.processes) {
    if (!p.core.zombie()) {
      index.live.insert(pid);
      index.pgids.insert(p.core.pgid());
    }
    for (const TaskCore& t : p.core.threads()) {
      auto [it, fresh] = index.tid_owner.emplace(t.tid(), pid);
      if (!fresh)
        return Bad(img, CoreName(pid), "thread id " + std::to_string(t.tid()) + " is also a thread of pid " +
                                           std::to_string(it->second));
    }
  }
  for (const auto& [tid, pid] : index.tid_owner)
    if (tid != pid && img.processes.count(tid))
      return Bad(img, CoreName(pid), "thread id " + std::to_string(tid) + " is also a process of the image");
  for (const Pipe& p : img.pipes.pipes()) index.pipe_ids.insert(p.id());
  for (const Tty& t : img.ttys.ttys()) index.ttys.emplace(t.id(), &t);
  for (const ShmObject& o : img.shm.objects()) index.shm.emplace(o.id(), &o);
  for (const auto& [pid, p] : img.processes) CRYO_RETURN_IF_ERROR(ValidateCore(img, index, pid, p.core));
  CRYO_RETURN_IF_ERROR(ValidateTree(img, index));
  for (const auto& [pid, p] : img.processes) {
    if (p.core.zombie()) continue;
    CRYO_RETURN_IF_ERROR(ValidateMm(img, index, pid, p));
    CRYO_RETURN_IF_ERROR(ValidateFds(img, index, pid, p));
  }
  CRYO_RETURN_IF_ERROR(ValidateSharedDescriptions(img));
  CRYO_RETURN_IF_ERROR(ValidateUnixSockets(img, index));
  CRYO_RETURN_IF_ERROR(ValidatePipes(img, index));
  CRYO_RETURN_IF_ERROR(ValidateShm(img, index));
  CRYO_RETURN_IF_ERROR(ValidateTtys(img, index));
  return ValidateFeatures(img, index);
}

}  // namespace cryo::image
