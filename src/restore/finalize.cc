#include "restore/finalize.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/user.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <string>

#include "inject/remote_syscall.h"
#include "mem/aio_ring.h"
#include "restorer/blob.h"
#include "seize/ptrace_util.h"
#include "tree/proc_attrs.h"
#include "tree/task_restore.h"

namespace cryo {

namespace {

void FillRegs(const image::TaskCore& t, user_regs_struct* regs) {
  static_assert(sizeof(user_regs_struct) == 27 * 8);
  uint64_t* words = reinterpret_cast<uint64_t*>(regs);
  for (int i = 0; i < 27; ++i) words[i] = t.regs().gpr(i);
}

// Sealed VMAs (mseal(2), VmFlags "sl") are sealed last, from inside the
// process, once the blob has moved everything into place: a sealed VMA can
// no longer be moved or unmapped.
Status SealVmas(const image::Mm& mm, RemoteSyscaller& rs) {
  constexpr long kSysMseal = 462;
  for (const image::Vma& v : mm.vmas()) {
    if (std::find(v.vm_flags().begin(), v.vm_flags().end(), "sl") == v.vm_flags().end()) continue;
    CRYO_ASSIGN_OR_RETURN(long r, rs.Syscall(kSysMseal, v.start(), v.end() - v.start(), 0));
    if (r != 0) {
      char what[64];
      snprintf(what, sizeof(what), "mseal of VMA %" PRIx64 "-%" PRIx64, v.start(), v.end());
      return Status::Errno(static_cast<int>(-r), what);
    }
  }
  return Status::Ok();
}

}  // namespace

Result<uint64_t> BlobSyscallInsn() {
  const uint8_t* b = restorer::BlobData();
  for (size_t i = 0; i + 1 < restorer::BlobSize(); ++i)
    if (b[i] == 0x0f && b[i + 1] == 0x05) return i;
  return Status::Error("the restorer blob has no syscall instruction");
}

Status CheckCpu(const image::Inventory& inv) {
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const uint64_t xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  if (inv.xsave_features() & ~xcr0) {
    char buf[160];
    snprintf(buf, sizeof(buf), "the image holds CPU state components %#llx this CPU does not have (XCR0 %#llx)",
             static_cast<unsigned long long>(inv.xsave_features()), static_cast<unsigned long long>(xcr0));
    return Status::Error(buf);
  }
  if (inv.xsave_size() != XsaveSize())
    return Status::Error("the image's xsave area is " + std::to_string(inv.xsave_size()) + " bytes, this CPU's is " +
                         std::to_string(XsaveSize()));
  return Status::Ok();
}

Status Finalize(const image::ProcessImage& proc, const ProcessReport& rep, uint64_t syscall_off) {
  const pid_t pid = proc.core.pid();
  if (!rep.area) return Status::Error("pid " + std::to_string(pid) + ": the helper did not report its restorer area");
  user_regs_struct cur;
  CRYO_RETURN_IF_ERROR(GetRegs(pid, &cur));
  auto rs = RemoteSyscaller::Unguarded(pid, cur, rep.area + syscall_off);  // dies with cryo (PTRACE_O_EXITKILL)
  CRYO_ASSIGN_OR_RETURN(long r, rs->Syscall(SYS_close, rep.status_fd));
  if (r != 0) return Status::Errno(static_cast<int>(-r), "closing the status pipe in pid " + std::to_string(pid));
  if (rep.uffd >= 0) {  // --lazy: cryo holds its own copy (LazyServer::Adopt)
    CRYO_ASSIGN_OR_RETURN(r, rs->Syscall(SYS_close, rep.uffd));
    if (r != 0) return Status::Errno(static_cast<int>(-r), "closing the userfaultfd in pid " + std::to_string(pid));
  }
  // While the blob's syscall instruction is still mapped: AIO contexts made
  // again (their rings' addresses were left free), then sealing.
  CRYO_RETURN_IF_ERROR(RestoreAioContexts(pid, proc.mm, *rs));
  CRYO_RETURN_IF_ERROR(SealVmas(proc.mm, *rs).Prefixed("pid " + std::to_string(pid)));
  CRYO_RETURN_IF_ERROR(RestoreDumpableFlag(*rs, proc.core));
  CRYO_ASSIGN_OR_RETURN(r, rs->Syscall(SYS_munmap, rep.area, rep.area_len));
  if (r != 0) return Status::Errno(static_cast<int>(-r), "unmapping the restorer from pid " + std::to_string(pid));
  for (const image::TaskCore& t : proc.core.threads()) {
    user_regs_struct regs;
    FillRegs(t, &regs);
    ApplySyscallRestartAfterRestore(&regs);
    CRYO_RETURN_IF_ERROR(SetRegs(t.tid(), regs));
    CRYO_RETURN_IF_ERROR(SetXstate(t.tid(), t.regs().xsave()));
    CRYO_RETURN_IF_ERROR(SetSigmask(t.tid(), t.blocked()));
    CRYO_RETURN_IF_ERROR(ApplyThreadAttrs(t));
    if (t.has_sched_attr()) continue;  // older images: policy, priority and nice only
    const int policy = static_cast<int>(t.sched_policy());
    if (policy != SCHED_OTHER) {
      struct sched_param sp = {static_cast<int>(t.sched_priority())};
      if (::sched_setscheduler(t.tid(), policy, &sp) != 0)
        return Status::FromErrno("sched_setscheduler of task " + std::to_string(t.tid()));
    }
    if (t.tid() != pid && ::setpriority(PRIO_PROCESS, static_cast<id_t>(t.tid()), t.nice()) != 0)
      return Status::FromErrno("setpriority of task " + std::to_string(t.tid()));
  }
  return Status::Ok();
}

}  // namespace cryo
