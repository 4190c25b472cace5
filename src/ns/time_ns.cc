#include "ns/time_ns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "ns/ns_thread.h"
#include "ns/user_ns.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

namespace cryo::ns {

namespace {

constexpr int64_t kNsPerSec = 1000000000;

std::string Link(uint64_t ino) { return "time:[" + std::to_string(ino) + "]"; }
std::string Pid(pid_t p) { return "pid " + std::to_string(p); }

bool HasTimeNs(const image::Inventory& inv) {
  return std::find(inv.features().begin(), inv.features().end(), "time-ns") != inv.features().end();
}

// Offsets as the kernel writes them: whole seconds (signed), then 0..1e9-1 ns.
std::string SecNsec(int64_t ns) {
  int64_t sec = ns / kNsPerSec, nsec = ns % kNsPerSec;
  if (nsec < 0) {
    nsec += kNsPerSec;
    --sec;
  }
  return std::to_string(sec) + " " + std::to_string(nsec);
}

// The user namespace owning namespace file `path` (NS_GET_USERNS, ioctl_ns(2)).
Result<uint64_t> OwnerOf(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  UniqueFd owner(::ioctl(fd.get(), NS_GET_USERNS));
  if (!owner.valid()) return Status::FromErrno("NS_GET_USERNS on " + path);
  struct stat st;
  if (::fstat(owner.get(), &st) != 0) return Status::FromErrno("fstat the owner of " + path);
  return static_cast<uint64_t>(st.st_ino);
}

// The tree's time namespace (reader's time_for_children) must be owned by
// the user namespace of `maker`, the process that made it, not cryo's: the
// restore makes it in the tree's.
Status CheckTimeNsOwner(pid_t reader, pid_t maker, const std::string& link) {
  CRYO_ASSIGN_OR_RETURN(const uint64_t owner, OwnerOf("/proc/" + std::to_string(reader) + "/ns/time_for_children"));
  CRYO_ASSIGN_OR_RETURN(const uint64_t users, NsInode(maker, "user"));
  CRYO_ASSIGN_OR_RETURN(const uint64_t cryos, NsInode(0, "user"));
  if (owner != users || users == cryos)
    return Status::Error("the tree's time namespace " + link + " is owned by user namespace user:[" +
                         std::to_string(owner) + "], not by the tree's user namespace user:[" + std::to_string(users) +
                         "] of " + Pid(maker) + " (it was made before the user namespace); a restore makes it in the "
                         "tree's");
  return Status::Ok();
}

// One write: the kernel applies every line of it at once, and only before a
// process has entered the namespace (EACCES after). /proc/self/timens_offsets
// exists for a thread group leader only and sets its time_for_children's.
Status WriteOffsets(const image::TimeNamespace& t) {
  if (::gettid() != ::getpid())
    return Status::Error("the tree's time namespace must be made by a process's main thread (thread " +
                         std::to_string(::gettid()) + " of pid " + std::to_string(::getpid()) + ") (internal)");
  // A fresh namespace's offsets are 0 already; and a helper that joined it
  // (TimeNsBeforeUserNsJoin, which waits for the offsets) has frozen them.
  if (t.monotonic_ns() == 0 && t.boottime_ns() == 0) return Status::Ok();
  const std::string text = FormatTimensOffsets(t);
  UniqueFd fd(::open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open /proc/self/timens_offsets");
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    std::string what = "setting the fresh time namespace's offsets (monotonic " + SecNsec(t.monotonic_ns()) +
                       ", boottime " + SecNsec(t.boottime_ns()) + " s ns)";
    if (err == ERANGE) what += ": they would put a clock of the namespace below zero or too far ahead on this machine";
    return Status::Errno(err, what);
  }
  return Status::Ok();
}

// The process whose helper makes the tree's time namespace with a user
// namespace of the tree's own: entry_pid, else the root (it lives in it).
pid_t Maker(const image::LoadedImage& img) {
  const pid_t e = img.namespaces.time().entry_pid();
  return e ? e : img.inventory.root_pid();
}

// Whether `self` lives in the tree's time namespace: the maker when it is the
// root, its descendants (the dump refused any other layout).
bool LivesInTreeTimeNs(const image::LoadedImage& img, pid_t self) {
  const pid_t maker = Maker(img);
  if (self == maker) return img.namespaces.time().entry_pid() == 0;
  pid_t p = self;
  for (size_t hops = 0; hops <= img.processes.size(); ++hops) {
    auto it = img.processes.find(p);
    if (it == img.processes.end()) return false;
    p = it->second.core.ppid();
    if (p == maker) return true;
  }
  return false;
}

}  // namespace

Result<TimeNsPlan> PlanTimeNamespace(const std::vector<TimeNsFacts>& procs, pid_t root, uint64_t cryo_ns) {
  TimeNsPlan plan;
  std::map<pid_t, const TimeNsFacts*> by_pid;
  for (const TimeNsFacts& f : procs) by_pid[f.pid] = &f;
  // The one time namespace other than cryo's, if any.
  std::map<uint64_t, pid_t> other;  // namespace -> first pid living in it or creating children in it
  for (const TimeNsFacts& f : procs)
    for (uint64_t ns : {f.time, f.for_children})
      if (ns != cryo_ns) other.emplace(ns, f.pid);
  if (other.empty()) return plan;
  if (other.size() > 1) {
    auto a = other.begin(), b = std::next(a);
    return Status::Error(Pid(a->second) + " uses time namespace " + Link(a->first) + " and " + Pid(b->second) + " " +
                         Link(b->first) + ": a tree is restored only with one time namespace besides cryo's");
  }
  plan.ns = other.begin()->first;
  std::vector<pid_t> entries;
  for (const TimeNsFacts& f : procs) {
    if (f.time == plan.ns && f.for_children != plan.ns)
      return Status::Error(Pid(f.pid) + " lives in time namespace " + Link(plan.ns) +
                           " but creates its children in cryo's (moved with setns(2)), which is not restored");
    if (f.time != plan.ns && f.for_children == plan.ns) entries.push_back(f.pid);
    plan.reader = plan.reader ? plan.reader : f.pid;
    auto parent = by_pid.find(f.parent);
    if (f.pid == root || parent == by_pid.end()) continue;
    // The kernel puts a new process in its parent's time_for_children: a
    // process elsewhere got there otherwise, which a restore cannot repeat.
    if (parent->second->for_children != f.time)
      return Status::Error(Pid(f.pid) + " lives in " + (f.time == plan.ns ? "time namespace " + Link(plan.ns)
                                                                              : std::string("cryo's time namespace")) +
                           " but its parent " + Pid(f.parent) + " creates its children in " +
                           (parent->second->for_children == plan.ns ? "time namespace " + Link(plan.ns)
                                                                    : std::string("cryo's")) +
                           " (it was created before its parent unshared, or moved with setns(2)), which is not "
                           "restored");
  }
  const auto root_facts = by_pid.find(root);
  if (root_facts != by_pid.end() && root_facts->second->time == plan.ns) {
    plan.entry = 0;  // the whole tree lives in it
  } else if (entries.size() == 1) {
    plan.entry = entries.front();
  } else if (entries.size() > 1) {
    return Status::Error(Pid(entries[0]) + " and " + Pid(entries[1]) + " each create their children in time "
                         "namespace " + Link(plan.ns) + ": a restore would make one namespace for each, which is not "
                         "supported");
  } else {
    return Status::Error("time namespace " + Link(plan.ns) + ": no process of the tree lives in it or creates its "
                         "children in it (internal)");
  }
  return plan;
}

Status ParseTimensOffsets(std::string_view text, image::TimeNamespace* out) {
  bool mono = false, boot = false;
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    char name[32];
    long long sec = 0, nsec = 0;
    const std::string l(line);
    if (std::sscanf(l.c_str(), "%31s %lld %lld", name, &sec, &nsec) != 3 || nsec < 0 || nsec >= kNsPerSec ||
        sec > INT64_MAX / kNsPerSec - 1 || sec < INT64_MIN / kNsPerSec + 1)
      return Status::Error("timens_offsets: a line cryo cannot read (\"" + l + "\")");
    const int64_t ns = static_cast<int64_t>(sec) * kNsPerSec + nsec;
    const std::string n(name);
    if (n == "monotonic" || n == "1") {
      out->set_monotonic_ns(ns);
      mono = true;
    } else if (n == "boottime" || n == "7") {
      out->set_boottime_ns(ns);
      boot = true;
    } else {
      return Status::Error("timens_offsets: a clock cryo does not know (\"" + l + "\")");
    }
  }
  if (!mono || !boot) return Status::Error("timens_offsets: no monotonic or no boottime line");
  return Status::Ok();
}

std::string FormatTimensOffsets(const image::TimeNamespace& t) {
  return "monotonic " + SecNsec(t.monotonic_ns()) + "\nboottime " + SecNsec(t.boottime_ns()) + "\n";
}

Status DumpTimeNamespace(const std::vector<pid_t>& live, const std::map<pid_t, pid_t>& parent, pid_t root,
                         image::NamespaceTable* out, std::set<std::string>* features) {
  CRYO_ASSIGN_OR_RETURN(const uint64_t mine, NsInode(0, "time"));
  std::vector<TimeNsFacts> facts;
  for (pid_t p : live) {
    TimeNsFacts f;
    f.pid = p;
    auto it = parent.find(p);
    f.parent = it == parent.end() ? 0 : it->second;
    CRYO_ASSIGN_OR_RETURN(f.time, NsInode(p, "time"));
    CRYO_ASSIGN_OR_RETURN(f.for_children, NsInode(p, "time_for_children"));
    facts.push_back(f);
  }
  CRYO_ASSIGN_OR_RETURN(const TimeNsPlan plan, PlanTimeNamespace(facts, root, mine));
  if (!plan.ns) return Status::Ok();
  // With a user namespace of the tree's own the restore makes the time
  // namespace in it (TimeNsAfterUserNsJoin): it must be owned by it.
  if (features->count("user-ns")) {
    if (features->count("pid-ns"))
      return Status::Error("the tree owns a time namespace (" + Link(plan.ns) + ") besides its user namespace and "
                           "its PID namespace, which are not restored together yet");
    CRYO_RETURN_IF_ERROR(CheckTimeNsOwner(plan.reader, plan.entry ? plan.entry : root, Link(plan.ns)));
  }
  // Shows the offsets of the reader's time_for_children: the tree's.
  const std::string path = "/proc/" + std::to_string(plan.reader) + "/timens_offsets";
  CRYO_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  image::TimeNamespace* t = out->mutable_time();
  CRYO_RETURN_IF_ERROR(ParseTimensOffsets(text, t).Prefixed(path));
  t->set_entry_pid(plan.entry);
  features->insert("time-ns");
  LOG_DEBUG("the tree's time namespace %s: monotonic %+" PRId64 " ns, boottime %+" PRId64 " ns, made by %s",
            Link(plan.ns).c_str(), t->monotonic_ns(), t->boottime_ns(),
            plan.entry ? Pid(plan.entry).c_str() : "cryo before the root");
  return Status::Ok();
}

Status EnterFreshTimeNamespace(const image::LoadedImage& img, pid_t self) {
  if (!HasTimeNs(img.inventory)) return Status::Ok();
  const image::TimeNamespace& t = img.namespaces.time();
  // (entry_pid is 0 or a live process of the image: image/validate.cc)
  if (t.entry_pid() != self) return Status::Ok();
  // With a user namespace of the tree's own it is made later, in it.
  if (HaveTreeUserNs()) return Status::Ok();
  if (::unshare(CLONE_NEWTIME) != 0) return Status::FromErrno("unshare(CLONE_NEWTIME) (a fresh time namespace for the tree)");
  // Written before any process is created in it (the kernel refuses later
  // writes with EACCES). The file exists only for a thread group leader
  // (/proc/PID, not /proc/PID/task/TID) and sets its time_for_children: the
  // caller must be the leader, the thread that creates the processes.
  if (::gettid() != ::getpid())
    return Status::Error("the tree's time namespace must be made by a process's main thread (thread " +
                         std::to_string(::gettid()) + " of pid " + std::to_string(::getpid()) + ") (internal)");
  return WriteOffsets(t);
}

Status TimeNsBeforeUserNsJoin(const image::LoadedImage& img, pid_t self) {
  if (!HasTimeNs(img.inventory) || !HaveTreeUserNs() || !LivesInTreeTimeNs(img, self) || self == Maker(img))
    return Status::Ok();
  // The maker (an ancestor, alive until the tree runs) makes it once it has
  // joined the tree's user namespace, concurrently with this helper.
  const pid_t maker = Maker(img);
  const std::string path = "/proc/" + std::to_string(maker) + "/ns/time_for_children";
  CRYO_ASSIGN_OR_RETURN(const uint64_t mine, NsInode(0, "time"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  // Joined only once the maker has set its offsets: the first process in a
  // time namespace freezes them (timens_install -> timens_set_vvar_page);
  // the maker's write after such a join fails with EACCES.
  const image::TimeNamespace& want = img.namespaces.time();
  const std::string offsets = "/proc/" + std::to_string(maker) + "/timens_offsets";
  for (;;) {
    CRYO_ASSIGN_OR_RETURN(const uint64_t theirs, NsInode(maker, "time_for_children"));
    if (theirs != mine) {
      CRYO_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(offsets));
      image::TimeNamespace now;
      CRYO_RETURN_IF_ERROR(ParseTimensOffsets(text, &now).Prefixed(offsets));
      if (now.monotonic_ns() == want.monotonic_ns() && now.boottime_ns() == want.boottime_ns()) break;
    }
    if (std::chrono::steady_clock::now() > deadline)
      return Status::Error(Pid(maker) + " made no time namespace with the image's offsets within 30 s (" + path +
                           ", " + offsets + ")");
    ::usleep(200);
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  // setns(2) of a time namespace moves the caller and its time_for_children,
  // single-threaded only (EUSERS), and switches the vvar page to it (the
  // restored process keeps the helper's).
  if (::setns(fd.get(), CLONE_NEWTIME) != 0)
    return Status::FromErrno("setns into the tree's time namespace (" + path + ")");
  return Status::Ok();
}

Status TimeNsAfterUserNsJoin(const image::LoadedImage& img, pid_t self) {
  if (!HasTimeNs(img.inventory) || !HaveTreeUserNs() || self != Maker(img)) return Status::Ok();
  // Owned by the user namespace of the caller's credentials: the tree's,
  // where it now has every capability (setns(2)), CAP_SYS_TIME included.
  if (::unshare(CLONE_NEWTIME) != 0) return Status::FromErrno("unshare(CLONE_NEWTIME) in the tree's user namespace");
  CRYO_RETURN_IF_ERROR(WriteOffsets(img.namespaces.time()));
  if (img.namespaces.time().entry_pid() != 0) return Status::Ok();
  // The root lives in it: it enters it itself, once the offsets are set.
  UniqueFd fd(::open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open /proc/self/ns/time_for_children");
  if (::setns(fd.get(), CLONE_NEWTIME) != 0) return Status::FromErrno("setns into the tree's fresh time namespace");
  return Status::Ok();
}

}  // namespace cryo::ns
