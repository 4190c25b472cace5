#include "proc/path_check.h"

#include <fcntl.h>
#include <sys/vfs.h>

#include <string_view>

#include "base/file_util.h"
#include "proc/unlinked_path.h"

namespace cryo::paths {

namespace {

// statfs(2) f_type values (linux/magic.h; not all are in older headers).
constexpr long kProcFs = 0x9fa0;
constexpr long kCgroupFs = 0x27e0eb;
constexpr long kCgroup2Fs = 0x63677270;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A task of the tree named by a component of a procfs path ("/proc/123/fd",
// "/proc/1/task/123/status"), or 0.
pid_t TreeTaskIn(std::string_view path, const TaskIds& tree) {
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = i;
    while (j < path.size() && path[j] != '/') ++j;
    const std::string_view c = path.substr(i, j - i);
    if (!c.empty() && c.size() <= 9 && c.find_first_not_of("0123456789") == std::string_view::npos) {
      const pid_t p = static_cast<pid_t>(std::stol(std::string(c)));
      if (tree.count(p)) return p;
    }
    i = j;
  }
  return 0;
}

bool Writable(int access) { return access == O_WRONLY || access == O_RDWR; }

}  // namespace

const char* UnreopenableFileSystem(long fs_type) {
  switch (static_cast<unsigned long>(fs_type)) {
    case 0x64626720: return "debugfs";
    case 0x74726163: return "tracefs";
    case 0x73636673: return "securityfs";
    case 0xcafe4a11: return "the BPF file system";
    case 0xf97cff8c: return "selinuxfs";
    case 0x43415d53: return "smackfs";
    case 0x67596969: return "rpc_pipefs";
    case 0x19800202: return "mqueue (a POSIX message queue, not supported yet)";
    default: return nullptr;
  }
}

Status ReadOpened(const std::string& entry, Opened* o) {
  CRYO_ASSIGN_OR_RETURN(o->link, ReadLink(entry));
  if (::stat(entry.c_str(), &o->st) != 0) return Status::FromErrno("stat " + entry);
  struct statfs sf;
  if (::statfs(entry.c_str(), &sf) != 0) return Status::FromErrno("statfs " + entry);
  o->fs_type = static_cast<long>(sf.f_type);
  return Status::Ok();
}

std::string WhyNotReopenable(const Opened& o, const TaskIds& tree) {
  const std::string& p = o.link;
  if (StartsWith(p, "/memfd:")) return "is a memfd, which has no path to reopen";
  if (EndsWith(p, " (deleted)") && o.st.st_nlink == 0) return "was deleted";
  if (p.empty() || p[0] != '/') return "has no path cryo can reopen (" + p + ")";
  if (const char* fs = UnreopenableFileSystem(o.fs_type))
    return "is on " + std::string(fs) + ", whose open files hold state a reopen by path does not bring back";
  if (o.fs_type == kProcFs) {
    if (const pid_t t = TreeTaskIn(p, tree))
      return "is in the /proc directory of task " + std::to_string(t) +
             " of the dumped tree (/proc/self, /proc/thread-self and /dev/fd lead there too): a restore would reopen "
             "it before that task exists";
    if (p == "/proc/kmsg") return "is the kernel log, whose readers each have their own position in it";
    if (StartsWith(p, "/proc/pressure/") && Writable(o.access))
      return "is a pressure file open for writing, which may hold a PSI trigger (not restored)";
  }
  if ((o.fs_type == kCgroupFs || o.fs_type == kCgroup2Fs) && EndsWith(p, ".pressure") && Writable(o.access))
    return "is a cgroup pressure file open for writing, which may hold a PSI trigger (not restored)";
  // cgroup v1 notifications (memory thresholds, OOM, memory.pressure_level)
  // are registered by a write to cgroup.event_control and live with the
  // eventfd, where nothing shows them (cgroup-v1/memory.rst): a program
  // holding that file is one that registers them.
  if (o.fs_type == kCgroupFs && EndsWith(p, "/cgroup.event_control"))
    return "is a cgroup v1 event_control file, whose eventfd notifications (memory thresholds, OOM, pressure level) "
           "are not restored";
  // The restore opens the path in cryo: it must lead to this very object.
  struct stat now;
  // (A symbolic link held itself, O_PATH | O_NOFOLLOW: the link, not its target.)
  const int r = S_ISLNK(o.st.st_mode) ? ::lstat(p.c_str(), &now) : ::stat(p.c_str(), &now);
  if (r != 0 || now.st_dev != o.st.st_dev || now.st_ino != o.st.st_ino)
    return "is no longer reachable by that path from cryo (renamed or mounted over, or in another mount namespace)";
  return "";
}

std::string ShownPath(const Opened& o) {
  constexpr std::string_view kDeleted = " (deleted)";
  if (EndsWith(o.link, kDeleted) && o.st.st_nlink == 0 && !StartsWith(o.link, "/memfd:"))
    return o.link.substr(0, o.link.size() - kDeleted.size());
  return o.link;
}

Status CheckProcessPaths(const std::set<pid_t>& pids, const TaskIds& tree) {
  static const std::pair<const char*, const char*> kEntries[] = {
      {"cwd", "working directory"}, {"root", "root directory"}, {"exe", "executable"}};
  for (pid_t pid : pids)
    for (const auto& [entry, what] : kEntries) {
      Opened o;
      CRYO_RETURN_IF_ERROR(ReadOpened("/proc/" + std::to_string(pid) + "/" + entry, &o));
      const std::string_view e = entry;
      std::string why = WhyNotReopenable(o, tree);
      // A deleted working directory or executable is created again, unlinked
      // (files/unlinked_*.h); an executable with another name is reopened
      // through it. A deleted root is refused.
      if (!why.empty() && e != "root" && IsUnlinked(o)) why = WhyNotRecreatable(o);
      if (!why.empty() && e == "exe" && HasOtherName(o)) {
        auto other = FindOtherName(o);
        why = other.ok() ? "" : other.status().message();
      }
      if (why.empty()) continue;
      std::string msg = "pid " + std::to_string(pid) + "'s " + what + " " + ShownPath(o) + " " + why;
      if (e == "exe" && !IsUnlinked(o))
        msg += " (cryo maps the program's executable again by path; restart a program whose executable was replaced)";
      if (e == "root" && why == "was deleted") msg += " (a deleted root directory is not restored)";
      return Status::Error(msg);
    }
  return Status::Ok();
}

}  // namespace cryo::paths
