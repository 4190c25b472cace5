#include "check/probes.h"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "base/file_util.h"
#include "base/kernel_features.h"
#include "base/log.h"
#include "check/cache.h"
#include "check/features.h"
#include "check/probe_child.h"

namespace cryo::check {
namespace {

using probe::Clock;

// ---------------------------------------------------------------------------
// Identity of the running kernel: what the cache is keyed on.

Result<std::string> KernelRelease() {
  struct utsname u;
  if (::uname(&u) != 0) return Status::FromErrno("uname");
  return std::string(u.release);
}

Result<std::string> BootId() {
  CRYO_ASSIGN_OR_RETURN(std::string id, ReadFileToString("/proc/sys/kernel/random/boot_id"));
  return std::string(Trim(id));
}

// A cache written by a cryo with other probes (or other required ones) is stale.
bool SameProbes(const Report& r) {
  const std::vector<Feature>& f = Features();
  if (r.probes.size() != f.size()) return false;
  for (size_t i = 0; i < f.size(); ++i)
    if (r.probes[i].name != f[i].name || r.probes[i].required != f[i].required) return false;
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------

void ComputeVerdict(Report& report) {
  std::vector<std::string> failed;
  for (const Probe& p : report.probes)
    if (p.required && !p.ok) failed.push_back(p.name);
  report.can_checkpoint = failed.empty();
  report.why.clear();
  if (failed.empty()) return;
  report.why = failed.size() == 1 ? "Required probe failed: " : "Required probes failed: ";
  for (size_t i = 0; i < failed.size(); ++i) report.why += (i ? ", " : "") + failed[i];
  report.why += '.';
}

Report RunProbes() {
  const auto start = Clock::now();
  Report r;
  if (auto rel = KernelRelease(); rel.ok()) r.kernel_release = *rel;
  if (auto id = BootId(); id.ok()) r.boot_id = *id;
  using ProbeFn = Probe (*)();
  using namespace probe;
  static const ProbeFn kProbes[] = {ProbePtraceSeize,        ProbeXsave,       ProbeProcessVmReadv,          ProbePidfdGetfd,
                                    ProbeClone3SetTid,       ProbePrSetMmMap,  ProbeUserfaultfdWpAsync,      ProbePagemapScan,
                                    ProbeMembarrierRegistrations, ProbeTimerRestoreIds, ProbeEventfdSemaphore, ProbeTcpRepair, ProbeSockDiag, ProbeBpfIterUdp,
                                    ProbeNamespaces,         ProbeCapabilities, ProbeSoftDirty, ProbeMadvCollapse,
                                    ProbeBpfIterTcp};
  for (ProbeFn fn : kProbes) {
    const auto t0 = Clock::now();
    Probe p = fn();
    LOG_DEBUG("check: %s %s in %lld us: %s", p.name.c_str(), p.ok ? "ok" : "FAIL",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()), p.detail.c_str());
    r.probes.push_back(std::move(p));
  }
  ComputeVerdict(r);
  LOG_DEBUG("check: all probes in %lld us",
            static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()));
  return r;
}

void ApplyPretendedMissing(Report& report) {
  for (Probe& p : report.probes) {
    if (!PretendMissing(p.name)) continue;
    p.ok = false;
    p.detail = "taken as missing (" + std::string(kPretendMissingEnv) + ")";
  }
  ComputeVerdict(report);
}

Result<Report> LoadOrRunProbes(const std::string& cache_path, bool refresh) {
  CRYO_ASSIGN_OR_RETURN(std::string release, KernelRelease());
  CRYO_ASSIGN_OR_RETURN(std::string boot_id, BootId());
  if (!refresh) {
    auto cached = ReadCache(cache_path);
    if (cached.ok() && cached->kernel_release == release && cached->boot_id == boot_id && SameProbes(*cached)) {
      // The capabilities are the caller's, not the kernel's: never cached.
      for (Probe& p : cached->probes)
        if (p.name == "capabilities") p = probe::ProbeCapabilities();
      ApplyPretendedMissing(*cached);
      return cached;
    }
    if (cached.ok())
      LOG_DEBUG("check: cache %s is for another boot, kernel or cryo; probing again", cache_path.c_str());
    else if (cached.status().err() != ENOENT)
      LOG_DEBUG("check: ignoring cache: %s", cached.status().ToString().c_str());
  }
  Report report = RunProbes();
  report.kernel_release = release;
  report.boot_id = boot_id;
  if (Status st = WriteCache(cache_path, report); !st.ok()) LOG_WARN("check: cannot write cache: %s", st.ToString().c_str());
  ApplyPretendedMissing(report);
  return report;
}

std::string DefaultCachePath() {
  if (::mkdir("/run/cryo", 0700) == 0 || errno == EEXIST) {
    struct stat st;
    if (::lstat("/run/cryo", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/run/cryo", W_OK | X_OK) == 0) return "/run/cryo/check.cache";
  }
  return "/tmp/cryo-check.cache";
}

}  // namespace cryo::check
