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

// The expedited barrier each registration allows, and the registration.
struct Barrier {
  int command;
  int registration;
};
constexpr Barrier kBarriers[] = {
    {MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED},
    {MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE},
    {MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ},
};
constexpr uint32_t kRegistrations = MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED |
                                    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE |
                                    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ;

long Membarrier(int cmd) { return ::syscall(SYS_membarrier, cmd, 0, 0); }

}  // namespace

std::vector<RemoteCall> MmAttributeCalls() {
  std::vector<RemoteCall> calls;
  RemoteCall thp;
  thp.nr = SYS_prctl;
  thp.args[0] = PR_GET_THP_DISABLE;
  calls.push_back(thp);
  for (const Barrier& b : kBarriers) {
    RemoteCall c;
    c.nr = SYS_membarrier;
    c.args[0] = static_cast<uint64_t>(b.command);
    calls.push_back(c);
  }
  return calls;
}

void MmAttributesFromResults(const long* r, image::MmAttributes* out) {
  out->set_thp_disable(r[0] > 0 ? static_cast<uint32_t>(r[0]) : 0);
  uint32_t reg = 0;
  for (size_t i = 0; i < std::size(kBarriers); ++i)
    if (r[1 + i] == 0) reg |= static_cast<uint32_t>(kBarriers[i].registration);  // else EPERM, or EINVAL (no such command)
  out->set_membarrier(reg);
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

bool KsmMergeAny(std::string_view text) {
  constexpr std::string_view kKey = "ksm_merge_any: ";
  const size_t at = text.find(kKey);
  return at != std::string_view::npos && (at == 0 || text[at - 1] == '\n') &&
         text.substr(at + kKey.size()).starts_with("yes");
}

Status CheckKsmMergeAny(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/ksm_stat";
  auto text = ReadFileToString(path);
  if (!text.ok()) return Status::Ok();  // a kernel without KSM: nothing to merge
  if (KsmMergeAny(*text))
    return Status::Error("pid " + std::to_string(pid) +
                         " has all its memory mergeable by KSM (prctl PR_SET_MEMORY_MERGE, ksm_merge_any in " + path +
                         "), which a restore cannot set without CAP_SYS_RESOURCE; not supported");
  return Status::Ok();
}

bool HasMmAttributes(const image::MmAttributes& a) { return a.thp_disable() || a.mlock_future() || a.membarrier(); }

Status RestoreMmAttributes(const image::MmAttributes& a) {
  const unsigned long thp = a.thp_disable();
  if (::prctl(PR_SET_THP_DISABLE, thp & 1, thp & ~1ul, 0, 0) != 0)
    return Status::FromErrno("PR_SET_THP_DISABLE " + std::to_string(thp));
  if (a.membarrier() & ~kRegistrations)
    return Status::Error("membarrier registrations " + std::to_string(a.membarrier()) + " this cryo does not know");
  for (const Barrier& b : kBarriers)
    if ((a.membarrier() & static_cast<uint32_t>(b.registration)) && Membarrier(b.registration) != 0)
      return Status::FromErrno("membarrier registration " + std::to_string(b.registration));
  const long supported = Membarrier(MEMBARRIER_CMD_QUERY);
  if (supported > 0 && (supported & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) &&
      Membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0)
    return Status::FromErrno("membarrier MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED");
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
