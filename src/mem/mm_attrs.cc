#include "mem/mm_attrs.h"

#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "base/file_util.h"
#include "base/log.h"

namespace cryo {

namespace {

constexpr long kGetRegistrations = 1 << 9;  // MEMBARRIER_CMD_GET_REGISTRATIONS, Linux 6.3
constexpr int kRegistrations[] = {
    MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ,
};

}  // namespace

std::vector<RemoteCall> MmAttributeCalls() {
  RemoteCall thp;
  thp.nr = SYS_prctl;
  thp.args[0] = PR_GET_THP_DISABLE;
  RemoteCall barriers;
  barriers.nr = SYS_membarrier;
  barriers.args[0] = kGetRegistrations;
  return {thp, barriers};
}

void MmAttributesFromResults(const long* r, image::MmAttributes* out) {
  out->set_thp_disable(r[0] > 0 ? static_cast<uint32_t>(r[0]) : 0);
  // An error (a kernel before 6.3) leaves it 0: there the audit finds the
  // private expedited registrations by issuing those commands, and refuses
  // them (audit/remote_rules.cc, docs/kernels.md).
  out->set_membarrier(r[1] > 0 ? static_cast<uint32_t>(r[1]) : 0);
}

Status ProbeLockFuture(pid_t pid, const std::vector<proc::Vma>& vmas, uint64_t scratch, uint64_t len,
                       image::MmAttributes* out) {
  uint64_t locked = 0;
  for (const proc::Vma& v : vmas)
    if (v.HasFlag("lo")) locked += v.end - v.start;
  const std::string path = "/proc/" + std::to_string(pid) + "/status";
  CRYO_ASSIGN_OR_RETURN(std::string status, ReadFileToString(path));
  const size_t at = status.find("\nVmLck:");
  if (at == std::string::npos) return Status::Error(path + " has no VmLck line");
  char* end = nullptr;
  const uint64_t vm_lck = std::strtoull(status.c_str() + at + 7, &end, 10) << 10;
  if (end == status.c_str() + at + 7) return Status::Error(path + ": cannot read VmLck");
  // Other users of locked_vm (device drivers pinning memory) are refused for
  // their own fds; what is left beyond the VMAs is the scratch mapping.
  if (vm_lck < locked + len) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(std::vector<proc::Vma> now, proc::ReadVmas(pid));
  for (const proc::Vma& v : now)
    if (v.start <= scratch && scratch < v.end) {
      if (!v.HasFlag("lo")) break;
      out->set_mlock_future(MCL_FUTURE | (v.HasFlag("lf") ? MCL_ONFAULT : 0));
      return Status::Ok();
    }
  return Status::Error("pid " + std::to_string(pid) + " has " + std::to_string(vm_lck >> 10) +
                       " KiB of locked memory (VmLck), more than its locked mappings (" + std::to_string(locked >> 10) +
                       " KiB): memory locked by something cryo does not know");
}

bool HasMmAttributes(const image::MmAttributes& a) { return a.thp_disable() || a.mlock_future() || a.membarrier(); }

Status RestoreMmAttributes(const image::MmAttributes& a) {
  const unsigned long thp = a.thp_disable();
  if (::prctl(PR_SET_THP_DISABLE, thp & 1, thp & ~1ul, 0, 0) != 0)
    return Status::FromErrno("PR_SET_THP_DISABLE " + std::to_string(thp));
  uint32_t left = a.membarrier();
  for (int reg : kRegistrations) {
    if (!(left & static_cast<uint32_t>(reg))) continue;
    left &= ~static_cast<uint32_t>(reg);
    if (::syscall(SYS_membarrier, reg, 0, 0) != 0) return Status::FromErrno("membarrier registration " + std::to_string(reg));
  }
  if (left) return Status::Error("membarrier registrations " + std::to_string(left) + " this cryo does not know");
  return Status::Ok();
}

Status LockFutureMappings(const image::MmAttributes& a) {
  if (!a.mlock_future()) return Status::Ok();
  if (a.mlock_future() & ~(MCL_FUTURE | MCL_ONFAULT) || !(a.mlock_future() & MCL_FUTURE))
    return Status::Error("mlockall flags " + std::to_string(a.mlock_future()) + " this cryo does not know");
  if (::mlockall(static_cast<int>(a.mlock_future())) != 0)
    return Status::FromErrno("mlockall " + std::to_string(a.mlock_future()));
  return Status::Ok();
}

}  // namespace cryo
