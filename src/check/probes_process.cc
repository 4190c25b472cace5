// Probes of the process's environment: namespaces, capabilities, and the
// per-process state the dump asks about or the restore sets (membarrier(2)
// registrations, POSIX timer ids).
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

#include <optional>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "base/privileges.h"
#include "check/probe_child.h"

namespace cryo::check::probe {

Probe ProbeNamespaces() {
  Probe p{"namespaces", false, false, ""};
  static const struct {
    int flag;
    const char* name;
  } kNs[] = {{CLONE_NEWPID, "pid"}, {CLONE_NEWNS, "mnt"}, {CLONE_NEWNET, "net"}, {CLONE_NEWIPC, "ipc"}, {CLONE_NEWUTS, "uts"}};
  std::string worked, failed;
  for (const auto& ns : kNs) {
    const int flag = ns.flag;
    auto code = RunInChild("unshare child", [flag] { return ::unshare(flag) == 0 ? 0 : errno; });
    if (code.ok() && *code == 0) {
      worked += worked.empty() ? "" : " ";
      worked += ns.name;
    } else {
      failed += failed.empty() ? "" : ", ";
      failed += std::string(ns.name) + ": " + (code.ok() ? std::string(strerror(*code)) : code.status().ToString());
    }
  }
  p.ok = failed.empty();
  p.detail = "unshare works for: " + (worked.empty() ? std::string("none") : worked);
  if (!failed.empty()) p.detail += "; failed: " + failed;
  return p;
}

Probe ProbeCapabilities() {
  Probe p{"capabilities", false, true, ""};
  auto status = ReadFileToString("/proc/self/status");
  if (!status.ok()) return Fail(p, status.status());
  std::optional<uint64_t> eff;
  for (std::string_view line : SplitLines(*status)) {
    if (!StartsWith(line, "CapEff:")) continue;
    eff = std::strtoull(std::string(Trim(line.substr(7))).c_str(), nullptr, 16);
  }
  if (!eff) return Fail(p, Status::Error("no CapEff in /proc/self/status"));
  auto has = [&](int bit) { return (*eff >> bit) & 1; };
  const bool cr = has(40), admin = has(21), ptrace = has(19), resource = has(24);
  // What `cryo dump` and `cryo restore` check first (base/privileges.h).
  p.ok = (cr || admin) && ptrace;
  p.detail = std::string("CAP_CHECKPOINT_RESTORE ") + (cr ? "yes" : "no") + ", CAP_SYS_ADMIN " + (admin ? "yes" : "no") +
             ", CAP_SYS_PTRACE " + (ptrace ? "yes" : "no");
  if (!p.ok) p.detail += "; " + std::string(kNeedPrivileges);
  if (!resource) p.detail += "; no CAP_SYS_RESOURCE: rlimits above the current hard limit cannot be restored";
  return p;
}

Probe ProbeMembarrierRegistrations() {
  Probe p{"membarrier-registrations", false, false, ""};
  constexpr int kGetRegistrations = 1 << 9;  // MEMBARRIER_CMD_GET_REGISTRATIONS, Linux 6.3
  const long r = ::syscall(SYS_membarrier, kGetRegistrations, 0, 0);
  if (r < 0) return Fail(p, Status::FromErrno("membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)"));
  p.ok = true;
  p.detail = "membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS) answered " + Hex(static_cast<uint64_t>(r));
  return p;
}

Probe ProbeTimerRestoreIds() {
  Probe p{"timer-restore-ids", false, false, ""};
  constexpr int kPrTimerCreateRestoreIds = 77, kGet = 2;  // Linux 6.15; GET changes nothing
  const int r = ::prctl(kPrTimerCreateRestoreIds, kGet, 0, 0, 0);
  if (r < 0) return Fail(p, Status::FromErrno("prctl(PR_TIMER_CREATE_RESTORE_IDS, GET)"));
  p.ok = true;
  p.detail = "prctl PR_TIMER_CREATE_RESTORE_IDS is known (mode " + std::to_string(r) + ")";
  return p;
}

Probe ProbeEventfdSemaphore() {
  Probe p{"eventfd-semaphore", false, false, ""};
  UniqueFd fd(::eventfd(0, EFD_SEMAPHORE | EFD_CLOEXEC));
  if (!fd.valid()) return Fail(p, Status::FromErrno("eventfd"));
  auto info = ReadFileToString("/proc/self/fdinfo/" + std::to_string(fd.get()));
  if (!info.ok()) return Fail(p, info.status());
  if (info->find("eventfd-semaphore:\t1") == std::string::npos && info->find("eventfd-semaphore: 1") == std::string::npos)
    return Fail(p, Status::Error("fdinfo of an EFD_SEMAPHORE eventfd has no \"eventfd-semaphore: 1\" line"));
  p.ok = true;
  p.detail = "fdinfo shows an eventfd's semaphore mode";
  return p;
}

}  // namespace cryo::check::probe
