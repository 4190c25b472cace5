#include "tree/proc_attrs.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

#include "base/file_util.h"

namespace cryo {

namespace {

constexpr int kIoprioWhoProcess = 1;
constexpr uint64_t kSchedFlagsKept = 0x1 /*RESET_ON_FORK*/ | 0x2 /*RECLAIM*/ | 0x4 /*DL_OVERRUN*/;
constexpr uint64_t kSchedFlagUtilClampMin = 0x20, kSchedFlagUtilClampMax = 0x40;
constexpr uint32_t kUtilMinDefault = 0, kUtilMaxDefault = 1024;
constexpr size_t kCpuSetBytes = sizeof(cpu_set_t);

// include/uapi/linux/sched/types.h (SCHED_ATTR_SIZE_VER1).
struct KernelSchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime, sched_deadline, sched_period;
  uint32_t sched_util_min, sched_util_max;
};
static_assert(sizeof(KernelSchedAttr) == 56);

std::string Proc(pid_t pid, const char* file) { return "/proc/" + std::to_string(pid) + "/" + file; }

template <typename T>
Result<T> ReadNumber(const std::string& path, int base = 10) {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const std::string_view v = Trim(text);
  T out{};
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out, base);
  if (ec != std::errc() || end != v.data() + v.size()) return Status::Error(path + ": unexpected content '" + std::string(v) + "'");
  return out;
}

// "/autogroup-123 nice 0": the nice value; nullopt-like -100 when the process
// is in no autogroup (autogroups off, or CONFIG_SCHED_AUTOGROUP missing).
constexpr int kNoAutogroup = -100;
Result<int> ReadAutogroupNice(pid_t pid) {
  auto text = ReadFileToString(Proc(pid, "autogroup"));
  if (!text.ok()) return text.status().err() == ENOENT ? Result<int>(kNoAutogroup) : Result<int>(text.status());
  const size_t at = text->find(" nice ");
  if (at == std::string::npos) return kNoAutogroup;
  const std::string_view v = Trim(std::string_view(*text).substr(at + 6));
  int nice = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), nice);
  if (ec != std::errc() || end != v.data() + v.size()) return Status::Error(Proc(pid, "autogroup") + ": unexpected content");
  return nice;
}

Status CheckAuditSession(pid_t pid, pid_t parent) {
  CRYO_ASSIGN_OR_RETURN(uint32_t ses, ReadNumber<uint32_t>(Proc(pid, "sessionid")));
  if (ses == kAuditUnset || parent <= 0) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(uint32_t parent_ses, ReadNumber<uint32_t>(Proc(parent, "sessionid")));
  if (ses == parent_ses) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(uint32_t login, ReadNumber<uint32_t>(Proc(pid, "loginuid")));
  return Status::Error("pid " + std::to_string(pid) + " is in audit session " + std::to_string(ses) + " (loginuid " +
                       std::to_string(login) + "), its parent pid " + std::to_string(parent) + " in session " +
                       std::to_string(parent_ses) +
                       ": a restore cannot rebuild it (a process inherits its audit session, or gets a new id "
                       "when its loginuid is written)");
}

Status CheckOomScoreAdj(pid_t pid) {
  CRYO_ASSIGN_OR_RETURN(int value, ReadNumber<int>(Proc(pid, "oom_score_adj")));
  CRYO_ASSIGN_OR_RETURN(int mine, ReadNumber<int>("/proc/self/oom_score_adj"));
  if (value >= mine) return Status::Ok();  // raising is always allowed; mine >= my oom_score_adj_min
  CRYO_ASSIGN_OR_RETURN(bool ok, CanSetOomScoreAdj(value));
  if (ok) return Status::Ok();
  return Status::Error("pid " + std::to_string(pid) + " has oom_score_adj " + std::to_string(value) +
                       ", which cryo cannot set (lowering it below " + std::to_string(mine) +
                       ", cryo's own, needs CAP_SYS_RESOURCE); raise it first, or run cryo with CAP_SYS_RESOURCE");
}

}  // namespace

Result<bool> CanSetOomScoreAdj(int value) {
  const std::string text = std::to_string(value);
  const pid_t child = ::fork();
  if (child < 0) return Status::FromErrno("fork to probe oom_score_adj");
  if (child == 0) {
    const int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    ::_exit(fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) ? 0 : 1);
  }
  int st = 0;
  while (::waitpid(child, &st, 0) < 0)
    if (errno != EINTR) return Status::FromErrno("waiting for the oom_score_adj probe");
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

Result<std::string> CpuListToMask(std::string_view list) {
  std::string mask(kCpuSetBytes, '\0');
  auto* set = reinterpret_cast<cpu_set_t*>(mask.data());
  size_t pos = 0;
  list = Trim(list);
  while (pos < list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string_view range = list.substr(pos, comma - pos);
    const size_t dash = range.find('-');
    unsigned lo = 0, hi = 0;
    const std::string_view a = range.substr(0, dash), b = dash == std::string_view::npos ? a : range.substr(dash + 1);
    if (std::from_chars(a.data(), a.data() + a.size(), lo).ec != std::errc() ||
        std::from_chars(b.data(), b.data() + b.size(), hi).ec != std::errc() || hi < lo || hi >= CPU_SETSIZE)
      return Status::Error("malformed CPU list '" + std::string(list) + "'");
    for (unsigned c = lo; c <= hi; ++c) CPU_SET(c, set);
    pos = comma + 1;
  }
  return mask;
}

Result<std::string> OnlineCpuMask() {
  CRYO_ASSIGN_OR_RETURN(std::string list, ReadFileToString("/sys/devices/system/cpu/online"));
  return CpuListToMask(list);
}

Status CheckProcessAttrs(const std::vector<pid_t>& pids, const std::map<pid_t, pid_t>& parent) {
  for (pid_t pid : pids) {
    const auto it = parent.find(pid);
    const std::string who = "pid " + std::to_string(pid);
    CRYO_RETURN_IF_ERROR(CheckAuditSession(pid, it == parent.end() ? 0 : it->second).Prefixed(who));
    CRYO_RETURN_IF_ERROR(CheckOomScoreAdj(pid));
  }
  return Status::Ok();
}

Status DumpProcessAttrs(pid_t pid, image::ProcessCore* core) {
  CRYO_ASSIGN_OR_RETURN(uint32_t login, ReadNumber<uint32_t>(Proc(pid, "loginuid")));
  CRYO_ASSIGN_OR_RETURN(uint32_t ses, ReadNumber<uint32_t>(Proc(pid, "sessionid")));
  CRYO_ASSIGN_OR_RETURN(int oom, ReadNumber<int>(Proc(pid, "oom_score_adj")));
  CRYO_ASSIGN_OR_RETURN(uint32_t filter, ReadNumber<uint32_t>(Proc(pid, "coredump_filter"), 16));
  CRYO_ASSIGN_OR_RETURN(int nice, ReadAutogroupNice(pid));
  core->set_loginuid(login);
  core->set_sessionid(ses);
  core->set_oom_score_adj(oom);
  core->set_coredump_filter(filter);
  if (nice != kNoAutogroup) core->set_autogroup_nice(nice);
  return Status::Ok();
}

Status DumpThreadAttrs(pid_t tid, image::TaskCore* t) {
  const std::string who = "task " + std::to_string(tid);
  static const Result<std::string> online = OnlineCpuMask();
  if (!online.ok()) return online.status();
  std::string mask(kCpuSetBytes, '\0');
  const long n = syscall(SYS_sched_getaffinity, tid, mask.size(), mask.data());
  if (n < 0) return Status::FromErrno("sched_getaffinity of " + who);
  mask.resize(static_cast<size_t>(n));
  bool every_online = true;
  for (size_t i = 0; i < online->size() && every_online; ++i) {
    const uint8_t want = static_cast<uint8_t>((*online)[i]);
    const uint8_t have = i < mask.size() ? static_cast<uint8_t>(mask[i]) : 0;
    every_online = (want & have) == want;
  }
  if (!every_online) t->set_cpu_affinity(mask);

  const long prio = syscall(SYS_ioprio_get, kIoprioWhoProcess, tid);
  if (prio < 0) return Status::FromErrno("ioprio_get of " + who);
  t->set_ioprio(static_cast<uint32_t>(prio));

  KernelSchedAttr ka{};
  if (syscall(SYS_sched_getattr, tid, &ka, sizeof(ka), 0) != 0) return Status::FromErrno("sched_getattr of " + who);
  image::SchedAttr* sa = t->mutable_sched_attr();
  sa->set_policy(ka.sched_policy);
  sa->set_flags(ka.sched_flags & kSchedFlagsKept);
  sa->set_nice(ka.sched_nice);
  sa->set_priority(ka.sched_priority);
  sa->set_runtime(ka.sched_runtime);
  sa->set_deadline(ka.sched_deadline);
  sa->set_period(ka.sched_period);
  // A kernel without utilization clamping reports a short struct (or zeros).
  if (ka.size >= sizeof(ka) && ka.sched_util_max != 0 &&
      (ka.sched_util_min != kUtilMinDefault || ka.sched_util_max != kUtilMaxDefault)) {
    sa->set_util_min(ka.sched_util_min);
    sa->set_util_max(ka.sched_util_max);
  }
  return Status::Ok();
}

bool NeedsProcAttrsFeature(const image::ProcessCore& core) {
  auto mine = [](const char* file) { return ReadNumber<uint32_t>(std::string("/proc/self/") + file, 16); };
  auto same = [](const Result<uint32_t>& mine, uint32_t v) { return mine.ok() && *mine == v; };
  const auto login = ReadNumber<uint32_t>("/proc/self/loginuid"), ses = ReadNumber<uint32_t>("/proc/self/sessionid");
  const auto oom = ReadNumber<int>("/proc/self/oom_score_adj");
  const auto group = ReadAutogroupNice(::getpid());
  if (core.has_loginuid() && !(same(login, core.loginuid()) && same(ses, core.sessionid()))) return true;
  if (core.has_oom_score_adj() && !(oom.ok() && *oom == core.oom_score_adj())) return true;
  if (core.has_coredump_filter() && !same(mine("coredump_filter"), core.coredump_filter())) return true;
  if (core.has_autogroup_nice() && core.sid() == core.pid() && !(group.ok() && *group == core.autogroup_nice())) return true;
  for (const image::TaskCore& t : core.threads()) {
    if (!t.cpu_affinity().empty() || t.ioprio() != 0) return true;
    if (t.sched_attr().policy() == SCHED_DEADLINE || t.sched_attr().has_util_min()) return true;
  }
  return false;
}

Status CheckRestoreAttrs(const image::ProcessCore& core, bool is_root) {
  const std::string who = "pid " + std::to_string(core.pid());
  if (core.has_oom_score_adj() && (core.oom_score_adj() < -1000 || core.oom_score_adj() > 1000))
    return Status::Error(who + ": oom_score_adj " + std::to_string(core.oom_score_adj()) + " out of range (corrupted)");
  if (core.has_autogroup_nice() && (core.autogroup_nice() < -20 || core.autogroup_nice() > 19))
    return Status::Error(who + ": autogroup nice " + std::to_string(core.autogroup_nice()) + " out of range (corrupted)");
  for (const image::TaskCore& t : core.threads()) {
    if (t.has_ioprio() && (t.ioprio() >> 13) > 3)
      return Status::Error("task " + std::to_string(t.tid()) + ": I/O priority class " + std::to_string(t.ioprio() >> 13) +
                           " unknown (corrupted)");
    if (t.cpu_affinity().size() > kCpuSetBytes)
      return Status::Error("task " + std::to_string(t.tid()) + ": CPU affinity mask too long (corrupted)");
  }
  if (!is_root || !core.has_sessionid() || core.sessionid() == kAuditUnset) return Status::Ok();
  // The root inherits cryo's audit session, the only set one it can have.
  CRYO_ASSIGN_OR_RETURN(uint32_t mine, ReadNumber<uint32_t>("/proc/self/sessionid"));
  if (mine == core.sessionid()) return Status::Ok();
  return Status::Error(who + " was in audit session " + std::to_string(core.sessionid()) + " (loginuid " +
                       std::to_string(core.loginuid()) + "), cryo restore runs in session " + std::to_string(mine) +
                       ": a session id cannot be chosen (a loginuid write makes a new one); restore it from a "
                       "process of audit session " + std::to_string(core.sessionid()));
}

Status ApplyAuditSession(const image::ProcessCore& core) {
  if (!core.has_sessionid()) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(uint32_t login, ReadNumber<uint32_t>("/proc/self/loginuid"));
  CRYO_ASSIGN_OR_RETURN(uint32_t ses, ReadNumber<uint32_t>("/proc/self/sessionid"));
  if (login == core.loginuid() && ses == core.sessionid()) return Status::Ok();
  if (core.sessionid() != kAuditUnset || core.loginuid() != kAuditUnset)
    return Status::Error("audit session " + std::to_string(core.sessionid()) + " (loginuid " +
                         std::to_string(core.loginuid()) + ") cannot be rebuilt: the process inherits session " +
                         std::to_string(ses) + " (loginuid " + std::to_string(login) + ")");
  // Unsetting a set loginuid needs CAP_AUDIT_CONTROL and no loginuid_immutable
  // (audit_set_loginuid_perm); the session id becomes unset with it.
  return WriteToFile("/proc/self/loginuid", std::to_string(kAuditUnset))
      .Prefixed("unsetting the audit loginuid (needs CAP_AUDIT_CONTROL, and loginuid not immutable)");
}

Status ApplyAutogroupNice(int nice) {
  CRYO_ASSIGN_OR_RETURN(int now, ReadAutogroupNice(::getpid()));
  if (now == nice) return Status::Ok();
  if (now == kNoAutogroup) return Status::Error("autogroup nice " + std::to_string(nice) + ": autogroups are off here");
  return WriteToFile("/proc/self/autogroup", std::to_string(nice));
}

Status ApplyProcessAttrs(const image::ProcessCore& core, bool leads_session) {
  if (core.has_oom_score_adj()) {
    CRYO_ASSIGN_OR_RETURN(int now, ReadNumber<int>("/proc/self/oom_score_adj"));
    if (now != core.oom_score_adj()) {
      Status s = WriteToFile("/proc/self/oom_score_adj", std::to_string(core.oom_score_adj()));
      if (!s.ok() && s.err() == EACCES)
        return Status::Error("oom_score_adj " + std::to_string(core.oom_score_adj()) +
                             " is below what cryo may set without CAP_SYS_RESOURCE (" + std::to_string(now) + ")");
      CRYO_RETURN_IF_ERROR(s);
    }
  }
  if (core.has_coredump_filter()) {
    char hex[16];
    snprintf(hex, sizeof(hex), "0x%x", core.coredump_filter());
    CRYO_RETURN_IF_ERROR(WriteToFile("/proc/self/coredump_filter", hex));
  }
  if (leads_session && core.has_autogroup_nice()) CRYO_RETURN_IF_ERROR(ApplyAutogroupNice(core.autogroup_nice()));
  return Status::Ok();
}

Status ApplyThreadAttrs(const image::TaskCore& t) {
  const pid_t tid = t.tid();
  const std::string who = "task " + std::to_string(tid);
  // Empty: every CPU (the kernel keeps those that exist and the cpuset allows).
  std::string mask = t.cpu_affinity().empty() ? std::string(kCpuSetBytes, '\xff') : t.cpu_affinity();
  if (syscall(SYS_sched_setaffinity, tid, mask.size(), mask.data()) != 0)
    return Status::FromErrno("sched_setaffinity of " + who + " (its CPUs are not available here)");
  if (t.has_ioprio() && syscall(SYS_ioprio_set, kIoprioWhoProcess, tid, t.ioprio()) != 0)
    return Status::FromErrno("ioprio_set " + std::to_string(t.ioprio()) + " of " + who);
  if (!t.has_sched_attr()) return Status::Ok();
  const image::SchedAttr& sa = t.sched_attr();
  KernelSchedAttr ka{};
  ka.size = sizeof(ka);
  ka.sched_policy = sa.policy();
  ka.sched_flags = sa.flags() & kSchedFlagsKept;
  ka.sched_nice = sa.nice();
  ka.sched_priority = sa.priority();
  ka.sched_runtime = sa.runtime();
  ka.sched_deadline = sa.deadline();
  ka.sched_period = sa.period();
  if (sa.has_util_min() || sa.has_util_max()) {
    ka.sched_flags |= kSchedFlagUtilClampMin | kSchedFlagUtilClampMax;
    ka.sched_util_min = sa.has_util_min() ? sa.util_min() : kUtilMinDefault;
    ka.sched_util_max = sa.has_util_max() ? sa.util_max() : kUtilMaxDefault;
  }
  if (syscall(SYS_sched_setattr, tid, &ka, 0) != 0)
    return Status::FromErrno("sched_setattr (policy " + std::to_string(sa.policy()) + ") of " + who);
  return Status::Ok();
}

}  // namespace cryo
