#include "audit/remote_rules.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/kernel_features.h"


namespace cryo::audit {

namespace {

constexpr long kPrGetSpeculationCtrl = 52;
constexpr long kPrSpecL1dFlush = 2;
constexpr long kPrGetIoFlusher = 58;
constexpr long kPrGetMdwe = 66;                            // Linux 6.3
constexpr long kMembarrierGetRegistrations = 1 << 9;       // Linux 6.3
// Without GET_REGISTRATIONS: a private expedited command answers EPERM unless
// the process registered for it (membarrier(2)), and is only a barrier.
constexpr long kMembarrierPrivateExpedited = 1 << 3;
constexpr long kMembarrierPrivateExpeditedSyncCore = 1 << 5;
constexpr long kMembarrierPrivateExpeditedRseq = 1 << 7;
constexpr std::string_view kGetRegistrationsKey = "membarrier registrations";
constexpr long kArchGetCpuid = 0x1011;

std::string Hex(long v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%#lx", static_cast<unsigned long>(v));
  return buf;
}

// Whether cryo's kernel answers MEMBARRIER_CMD_GET_REGISTRATIONS (and
// CRYO_PRETEND_MISSING does not take it away).
bool HaveGetRegistrations() {
  if (PretendMissing("membarrier-registrations")) return false;
  static const bool kHave = ::syscall(SYS_membarrier, kMembarrierGetRegistrations, 0, 0) >= 0;
  return kHave;
}

}  // namespace

const std::vector<RemoteQuery>& RemoteQueries() {
  static const std::vector<RemoteQuery> kQueries = {
      {kGetRegistrationsKey, SYS_membarrier, {kMembarrierGetRegistrations, 0, 0},
       "is registered for membarrier(2) commands", 0, "",
       "registered again by the restore helper (mem/mm_attrs.h, MmAttributes.membarrier)"},
      // Only where GET_REGISTRATIONS is missing (DecideRemote): see kernels.md.
      {"membarrier PRIVATE_EXPEDITED", SYS_membarrier, {kMembarrierPrivateExpedited, 0, 0},
       "is registered for membarrier(2) MEMBARRIER_CMD_PRIVATE_EXPEDITED, which is not restored on kernels without "
       "MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3)", EPERM, "not registered (the command answers EPERM)", ""},
      {"membarrier PRIVATE_EXPEDITED_SYNC_CORE", SYS_membarrier, {kMembarrierPrivateExpeditedSyncCore, 0, 0},
       "is registered for membarrier(2) MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, which is not restored on kernels "
       "without MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3)", EPERM, "not registered (the command answers EPERM)", ""},
      {"membarrier PRIVATE_EXPEDITED_RSEQ", SYS_membarrier, {kMembarrierPrivateExpeditedRseq, 0, 0},
       "is registered for membarrier(2) MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, which is not restored on kernels "
       "without MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3)", EPERM, "not registered (the command answers EPERM)", ""},
      {"PR_GET_MDWE", SYS_prctl, {kPrGetMdwe, 0, 0},
       "denies writable and executable memory (prctl PR_SET_MDWE), which is not restored yet", 0, "", ""},
      {"ARCH_GET_CPUID", SYS_arch_prctl, {kArchGetCpuid, 0, 0},
       "has CPUID faulting set (arch_prctl ARCH_SET_CPUID), which is not restored yet", 0, "", ""},
      {"PR_GET_IO_FLUSHER", SYS_prctl, {kPrGetIoFlusher, 0, 0},
       "is marked an I/O flusher (prctl PR_SET_IO_FLUSHER), which is not restored yet", EPERM,
       "not visible without CAP_SYS_RESOURCE, which setting it needs too", ""},
      {"PR_SPEC_L1D_FLUSH", SYS_prctl, {kPrGetSpeculationCtrl, kPrSpecL1dFlush, 0},
       "has L1D flushing on context switch set (prctl PR_SET_SPECULATION_CTRL), which is not restored yet", 0, "",
       ""},
  };
  return kQueries;
}

Decision DecideRemote(const RemoteQuery& q, long target, long mine) {
  const bool have_get_registrations = HaveGetRegistrations();
  if (q.key == kGetRegistrationsKey && !have_get_registrations)
    return {Verdict::kNotState,
            "cannot be asked on this kernel (MEMBARRIER_CMD_GET_REGISTRATIONS, Linux 6.3+): the private expedited "
            "registrations are found by issuing those commands; a global expedited registration is not seen"};
  if (q.nr == SYS_membarrier && q.key != kGetRegistrationsKey && have_get_registrations)
    return {Verdict::kNotState, "told by the membarrier registrations (MEMBARRIER_CMD_GET_REGISTRATIONS)"};
  if (!q.restored.empty() && !(target < 0 && target > -4096)) return {Verdict::kRestored, std::string(q.restored)};
  if (target == mine) return {Verdict::kInherited, "the same as cryo's; inherited by the restored process"};
  if (q.tolerated_errno && target == -q.tolerated_errno) return {Verdict::kNotState, std::string(q.tolerated_why)};
  if (target < 0 && target > -4096)
    return {Verdict::kRefused, "cannot be asked about " + std::string(q.key) + " (errno " + std::to_string(-target) +
                                   "; cryo's call gave " + Hex(mine) + "); cryo refuses what it cannot see"};
  return {Verdict::kRefused, std::string(q.what) + " (" + std::string(q.key) + " " + Hex(target) + ", cryo's " +
                                 Hex(mine) + ")"};
}

std::vector<RemoteCall> RemoteQueryCalls() {
  std::vector<RemoteCall> calls;
  for (const RemoteQuery& q : RemoteQueries()) {
    RemoteCall c;
    c.nr = q.nr;
    for (int i = 0; i < 3; ++i) c.args[i] = q.args[i];
    calls.push_back(c);
  }
  return calls;
}

void ClassifyRemoteResults(const std::vector<long>& results, const std::string& subject, Report* report) {
  static const std::vector<long> kMine = [] {
    std::vector<long> mine;
    for (const RemoteQuery& q : RemoteQueries()) {
      const long r = ::syscall(q.nr, q.args[0], q.args[1], q.args[2], 0, 0);
      mine.push_back(r < 0 ? -errno : r);
    }
    return mine;
  }();
  const std::vector<RemoteQuery>& queries = RemoteQueries();
  for (size_t i = 0; i < queries.size(); ++i) {
    const RemoteQuery& q = queries[i];
    if (i >= results.size()) {
      report->Add(subject, "remote", std::string(q.key), "", Verdict::kRefused,
                  "was not asked about " + std::string(q.key) + "; cryo refuses what it cannot see");
      continue;
    }
    Decision d = DecideRemote(q, results[i], kMine[i]);
    report->Add(subject, "remote", std::string(q.key), Hex(results[i]), d.verdict, std::move(d.why));
  }
}

}  // namespace cryo::audit
