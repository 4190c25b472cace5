#include "ns/time_ns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "ns/ns_thread.h"

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
  // A restore does not make a time namespace with a user namespace of the
  // tree's own (ns/user_ns.cc checks the first process only; one entered by
  // a child, as after `unshare --user --time --fork`, is found here):
  // refused before anything is written, not only at restore.
  if (features->count("user-ns"))
    return Status::Error("the tree owns a time namespace besides its user namespace (" + Link(plan.ns) +
                         "), which is not restored yet");
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
  if (::unshare(CLONE_NEWTIME) != 0) return Status::FromErrno("unshare(CLONE_NEWTIME) (a fresh time namespace for the tree)");
  // Written before any process is created in it (the kernel refuses later
  // writes with EACCES). The file exists only for a thread group leader
  // (/proc/PID, not /proc/PID/task/TID) and sets its time_for_children: the
  // caller must be the leader, the thread that creates the processes.
  if (::gettid() != ::getpid())
    return Status::Error("the tree's time namespace must be made by a process's main thread (thread " +
                         std::to_string(::gettid()) + " of pid " + std::to_string(::getpid()) + ") (internal)");
  const std::string text = FormatTimensOffsets(t);
  UniqueFd fd(::open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open /proc/self/timens_offsets");
  // One write: the kernel applies every line of it at once.
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    std::string what = "setting the fresh time namespace's offsets (monotonic " + SecNsec(t.monotonic_ns()) +
                       ", boottime " + SecNsec(t.boottime_ns()) + " s ns)";
    if (err == ERANGE) what += ": they would put a clock of the namespace below zero or too far ahead on this machine";
    return Status::Errno(err, what);
  }
  return Status::Ok();
}

}  // namespace cryo::ns
