#include "inject/remote_syscall.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "base/interrupt.h"
#include "base/log.h"
#include "inject/injected_code.h"
#include "inject/reclaim.h"
#include "inject/remote_process.h"
#include "seize/ptrace_util.h"

namespace cryo {

namespace {

constexpr size_t kCodePage = 4096;
constexpr int kSiTkill = -6;  // SI_TKILL
constexpr long kErestartRestartblock = -516;

struct BatchEntry {
  uint64_t nr;
  uint64_t args[6];
  int64_t result;
};
static_assert(sizeof(BatchEntry) == RemoteSyscaller::kBatchEntryBytes);

uint64_t Bit(int sig) { return 1ULL << (sig - 1); }

bool IsError(long r) { return r < 0 && r > -4096; }

// Seized in a system call that the kernel would continue with restart_syscall.
bool InRestartBlock(const user_regs_struct& r) {
  return static_cast<long>(r.orig_rax) >= 0 && static_cast<long>(r.rax) == kErestartRestartblock;
}

}  // namespace

int BatchEndSignal(uint64_t sig_ign, uint64_t sig_cgt, uint64_t blocked) {
  auto usable = [&](int sig) { return !(sig_cgt & Bit(sig)) && !(blocked & Bit(sig)); };
  // Ignored by default (sig_kernel_ignore, but SIGCONT), unless caught.
  for (int sig : {SIGWINCH, SIGURG, SIGCHLD})
    if (usable(sig)) return sig;
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCONT || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
      continue;
    if ((sig_ign & Bit(sig)) && usable(sig)) return sig;
  }
  return 0;
}

Result<std::unique_ptr<RemoteSyscaller>> RemoteSyscaller::Attach(SeizedProcess& sp, const std::vector<proc::Vma>& vmas,
                                                                  uint64_t sig_ign, uint64_t sig_cgt) {
  const SeizedTask& leader = sp.leader();
  auto p = std::make_shared<RemoteProcess>();
  p->pid = leader.tid;
  p->vmas = vmas;
  p->sig_ign = sig_ign;
  p->sig_cgt = sig_cgt;
  CRYO_ASSIGN_OR_RETURN(p->code, InjectedCode::Find(leader.tid, vmas));
  CRYO_RETURN_IF_ERROR(ReclaimTasks(sp, p->code));
  std::unique_ptr<RemoteSyscaller> rs(new RemoteSyscaller(leader, p));
  rs->owner_ = true;
  p->owner = rs.get();
  return rs;
}

std::unique_ptr<RemoteSyscaller> RemoteSyscaller::Unguarded(pid_t tid, const user_regs_struct& regs,
                                                            uint64_t syscall_insn) {
  std::unique_ptr<RemoteSyscaller> rs(new RemoteSyscaller());
  rs->tid_ = rs->tgid_ = tid;
  rs->own_ = regs;
  rs->syscall_insn_ = syscall_insn;
  return rs;
}

Result<std::unique_ptr<RemoteSyscaller>> RemoteSyscaller::ForThread(const SeizedTask& task) {
  if (!guarded()) return Status::Error("internal: ForThread on an unguarded remote syscaller");
  std::unique_ptr<RemoteSyscaller> rs(new RemoteSyscaller(task, proc_));
  rs->stop_sink_ = stop_sink_;
  rs->check_ = check_;
  return rs;
}

RemoteSyscaller::RemoteSyscaller(const SeizedTask& task, std::shared_ptr<RemoteProcess> proc)
    : tid_(task.tid),
      tgid_(proc->pid),
      proc_(std::move(proc)),
      own_(task.regs),
      own_mask_(task.sigmask),
      own_xsave_(task.xsave),
      batch_signal_(BatchEndSignal(proc_->sig_ign, proc_->sig_cgt, task.sigmask)) {}

RemoteSyscaller::~RemoteSyscaller() {
  if (!guarded()) return;
  Status s = owner_ ? Finish() : Release();
  if (!s.ok()) LOG_WARN("%s", s.ToString().c_str());
}

uint64_t RemoteSyscaller::scratch() const { return proc_ ? proc_->scratch : 0; }
size_t RemoteSyscaller::scratch_size() const { return proc_ ? proc_->scratch_size : 0; }

// The frame (sigframe.h) on the thread's stack, the code in place.
Status RemoteSyscaller::Enter() {
  if (entered_) return Status::Ok();
  if (own_xsave_.empty()) return Status::Error("internal: " + Tid(tid_) + " seized without its FPU state");
  CRYO_RETURN_IF_ERROR(proc_->code.Install());
  // What the task resumes with once the frame is gone through: a call
  // interrupted with ERESTART_RESTARTBLOCK is finished by the code's
  // "restart" before rt_sigreturn (injected_code.h), which leaves the
  // result in the frame; other interrupted calls are issued again. In the
  // fallback the owner enters before the code exists (its first call maps
  // the code's page) and its last call unmaps it: for it such a call is
  // issued again if it is a sleep with its remaining time, else it returns
  // EINTR (ApplySyscallRestartAfterRestore).
  restart_ = InRestartBlock(own_) && (proc_->code.in_vdso() || (!owner_ && proc_->code.base()));
  user_regs_struct resume = own_;
  if (!restart_) ApplySyscallRestartAfterRestore(&resume);
  // The way back, which runs through the task's filters if cryo dies.
  CRYO_RETURN_IF_ERROR(CheckUntraced(SYS_rt_sigreturn, {}, true));
  if (restart_) {
    CRYO_RETURN_IF_ERROR(CheckUntraced(SYS_rt_sigprocmask, {SIG_SETMASK, 0, 0, 8}, true));
    CRYO_RETURN_IF_ERROR(CheckUntraced(SYS_restart_syscall, {}, true));
  }
  FrameNote note;
  note.restart = restart_;
  note.orig_rax = own_.orig_rax;
  CRYO_ASSIGN_OR_RETURN(frame_, BuildSigFrame(resume, own_mask_, own_xsave_, note));
  const uint64_t lo = frame_.addr, hi = frame_.addr + frame_.bytes.size();
  bool room = false;
  for (const proc::Vma& v : proc_->vmas)
    if (v.start <= lo && hi <= v.end && (v.prot & PROT_WRITE)) room = true;
  if (!room) {
    char buf[160];
    snprintf(buf, sizeof(buf), "%s: no room for cryo's %zu-byte signal frame below its stack pointer %#llx", Tid(tid_).c_str(),
             frame_.bytes.size(), static_cast<unsigned long long>(own_.rsp));
    return Status::Error(buf);
  }
  under_frame_.resize(frame_.bytes.size());
  CRYO_RETURN_IF_ERROR(ReadMem(lo, under_frame_.data(), under_frame_.size()).Prefixed("saving the stack under the frame"));
  entered_ = true;
  CRYO_RETURN_IF_ERROR(WriteMem(lo, frame_.bytes.data(), frame_.bytes.size()).Prefixed("writing the signal frame"));
  base_ = own_;
  base_.rsp = frame_.addr + 8;
  base_.orig_rax = static_cast<unsigned long long>(-1);  // no syscall-restart rewrite of our registers
  if (!owner_ && ++proc_->threads_in == 1 && proc_->owner) {
    // The owner must not unmap the scratch memory under this thread's batch.
    CRYO_RETURN_IF_ERROR(proc_->owner->Park());
  }
  return Status::Ok();
}

// Where the task goes back to its own state from: the code's "restart" or
// "sigreturn".
uint64_t RemoteSyscaller::Finisher() const {
  const InjectedCode& c = proc_->code;
  return restart_ ? c.base() + InjectedCode::kRestart : c.sigreturn();
}

// Registers first, then cryo's mask: never the task's own code with cryo's mask.
Status RemoteSyscaller::Inject(const user_regs_struct& regs, int request) {
  CRYO_RETURN_IF_ERROR(SetRegs(tid_, regs));
  injected_ = true;
  if (!masked_) {
    // Everything blocked but the batch's end signal (SIGKILL and SIGSTOP cannot be).
    CRYO_RETURN_IF_ERROR(SetSigmask(tid_, ~0ULL & ~(batch_signal_ ? Bit(batch_signal_) : 0)));
    masked_ = true;
  }
  FaultPoint();
  if (ptrace(static_cast<__ptrace_request>(request), tid_, nullptr, nullptr) != 0)
    return Status::FromErrno((request == PTRACE_CONT ? "PTRACE_CONT " : "PTRACE_SYSCALL ") + Tid(tid_));
  return Status::Ok();
}

// Between calls, the owner waits where dying would also unmap the scratch
// memory: the vDSO code with munmap in rax, unless another thread may be in
// the loop's page.
Status RemoteSyscaller::Park() {
  if (!owner_ || !injected_) return Status::Ok();
  if (loop_running_) return Status::Error("internal: parking " + Tid(tid_) + " during its batch");
  user_regs_struct r = base_;
  r.r15 = Finisher();
  if (proc_->scratch && proc_->threads_in == 0 && !(restart_ && !proc_->code.in_vdso())) {
    CRYO_RETURN_IF_ERROR(CheckUntraced(SYS_munmap, {proc_->scratch, proc_->mapping_len}, false));
    r.rip = proc_->code.call();
    r.rax = SYS_munmap;
    r.rdi = proc_->scratch;
    r.rsi = proc_->mapping_len;
  } else {
    r.rip = Finisher();
  }
  return SetRegs(tid_, r);
}

Status RemoteSyscaller::OnOtherStop(const StopInfo& si, const char* during) {
  // A PTRACE_EVENT_STOP: a group-stop trap (the task was stopped when seized
  // and PTRACE_INTERRUPT asked for one more trap, or a SIGSTOP/SIGCONT
  // arrived meanwhile: ptrace(2) "Group-stop"). Resuming it does not end the
  // group-stop, which the detach re-enters.
  if (si.event_stop()) {
    LOG_DEBUG("%s: group-stop or interrupt trap (signal %d) during %s; resumed", Tid(tid_).c_str(), si.stopsig, during);
    return Status::Ok();
  }
  // Every signal is blocked but SIGKILL, SIGSTOP and the batch signal: a
  // SIGSTOP sent meanwhile is dequeued into a signal-delivery-stop. Resuming
  // with no signal keeps it from stopping the task now; the stop is recorded
  // and takes effect at the detach (SeizedProcess::pending_stop()).
  if (si.signal_delivery_stop() && si.stopsig == SIGSTOP) {
    LOG_DEBUG("%s: SIGSTOP dequeued during %s; kept for after the dump", Tid(tid_).c_str(), during);
    if (stop_sink_) *stop_sink_ = SIGSTOP;
    return Status::Ok();
  }
  // The batch signal is ignored by the process and not blocked by the
  // thread: dropping it is what the kernel would have done. Anything else
  // here is unexpected. Resuming with no signal discards it.
  if (si.stopsig == batch_signal_ && si.event == 0)
    LOG_DEBUG("%s: signal %d sent during %s dropped (the process ignores it)", Tid(tid_).c_str(), si.stopsig, during);
  else
    LOG_WARN("%s: unexpected stop (signal %d, event %d) during %s", Tid(tid_).c_str(), si.stopsig, si.event, during);
  return Status::Ok();
}

// Two stops: syscall entry, then syscall exit.
Status RemoteSyscaller::WaitSyscallStops(long nr) {
  const std::string during = "remote syscall " + std::to_string(nr);
  for (int stops = 0;;) {
    CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(tid_));
    if (si.exited) return Status::Error(Tid(tid_) + " died during " + during);
    if (si.syscall_stop()) {
      if (++stops == 2) return Status::Ok();
    } else {
      CRYO_RETURN_IF_ERROR(OnOtherStop(si, during.c_str()));
    }
    FaultPoint();
    if (ptrace(PTRACE_SYSCALL, tid_, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_SYSCALL " + Tid(tid_));
  }
}

// `base` with the call's number and arguments loaded, at `rip`.
static user_regs_struct CallRegs(user_regs_struct base, long nr, const uint64_t args[6], uint64_t rip) {
  base.rax = static_cast<unsigned long long>(nr);
  base.orig_rax = static_cast<unsigned long long>(-1);  // no syscall-restart rewrite of our registers
  base.rdi = args[0];
  base.rsi = args[1];
  base.rdx = args[2];
  base.r10 = args[3];
  base.r8 = args[4];
  base.r9 = args[5];
  base.rip = rip;
  return base;
}

Result<long> RemoteSyscaller::UnguardedSyscall(long nr, const uint64_t args[6]) {
  const user_regs_struct r = CallRegs(own_, nr, args, syscall_insn_);
  CRYO_RETURN_IF_ERROR(SetRegs(tid_, r));
  if (ptrace(PTRACE_SYSCALL, tid_, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_SYSCALL " + Tid(tid_));
  CRYO_RETURN_IF_ERROR(WaitSyscallStops(nr));
  user_regs_struct out;
  CRYO_RETURN_IF_ERROR(GetRegs(tid_, &out));
  return static_cast<long>(out.rax);
}

Result<long> RemoteSyscaller::Syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                      uint64_t a6) {
  const uint64_t args[6] = {a1, a2, a3, a4, a5, a6};
  if (!guarded()) return UnguardedSyscall(nr, args);
  return Call(nr, args, false);
}

// With `unmap_result` (an mmap, in the vDSO's code), the way back first
// unmaps what the call mapped: a cryo dying before it has parked the owner
// leaves no mapping.
Result<long> RemoteSyscaller::Call(long nr, const uint64_t args[6], bool unmap_result) {
  if (loop_running_) return Status::Error("internal: remote syscall on " + Tid(tid_) + " during its batch");
  CRYO_RETURN_IF_ERROR(Enter());
  CRYO_RETURN_IF_ERROR(CheckUntraced(nr, {args[0], args[1], args[2], args[3], args[4], args[5]}, false));
  // Its way back unmaps what it mapped (the address is not known yet).
  if (unmap_result) CRYO_RETURN_IF_ERROR(CheckUntraced(SYS_munmap, {0, args[1]}, false));
  user_regs_struct r = CallRegs(base_, nr, args, proc_->code.call());
  r.r15 = Finisher();
  if (unmap_result && proc_->code.in_vdso()) {
    r.r14 = r.r15;
    r.r15 = proc_->code.base() + InjectedCode::kUnmapResult;
  }
  CRYO_RETURN_IF_ERROR(Inject(r, PTRACE_SYSCALL));
  CRYO_RETURN_IF_ERROR(WaitSyscallStops(nr));
  user_regs_struct out;
  CRYO_RETURN_IF_ERROR(GetRegs(tid_, &out));
  if (!unmap_result) CRYO_RETURN_IF_ERROR(Park());  // (else already at rest on a way back that unmaps)
  return static_cast<long>(out.rax);
}

Status RemoteSyscaller::StartBatch(const std::vector<RemoteCall>& calls, uint64_t table) {
  if (!guarded() || !proc_->scratch)
    return Status::Error("remote syscall batch on " + Tid(tid_) + " before MapScratch()");
  if (batch_started_) return Status::Error("internal: two remote syscall batches at once on " + Tid(tid_));
  const uint64_t scratch = proc_->scratch;
  if (calls.size() > kMaxBatch || table < scratch || table + TableBytes(calls.size()) > scratch + proc_->scratch_size)
    return Status::Error("internal: remote syscall batch of " + std::to_string(calls.size()) + " out of the scratch memory");
  batch_results_.clear();
  if (!batch_signal_ || !proc_->code.base()) {
    for (const RemoteCall& c : calls) {
      CRYO_ASSIGN_OR_RETURN(long r, Syscall(c.nr, c.args[0], c.args[1], c.args[2], c.args[3], c.args[4], c.args[5]));
      batch_results_.push_back(r);
    }
    batch_started_ = true;
    return Status::Ok();
  }
  CRYO_RETURN_IF_ERROR(Enter());
  std::vector<BatchEntry> entries(calls.size() + 2);
  for (size_t i = 0; i < calls.size(); ++i) {
    entries[i].nr = static_cast<uint64_t>(calls[i].nr);
    std::memcpy(entries[i].args, calls[i].args, sizeof(entries[i].args));
    entries[i].result = -ENOSYS;
  }
  for (const RemoteCall& c : calls)
    CRYO_RETURN_IF_ERROR(
        CheckUntraced(c.nr, {c.args[0], c.args[1], c.args[2], c.args[3], c.args[4], c.args[5]}, false));
  CRYO_RETURN_IF_ERROR(CheckUntraced(SYS_tkill, {static_cast<uint64_t>(tid_), static_cast<uint64_t>(batch_signal_)}, false));
  BatchEntry& end = entries[calls.size()];
  end.nr = SYS_tkill;
  end.args[0] = static_cast<uint64_t>(tid_);
  end.args[1] = static_cast<uint64_t>(batch_signal_);
  user_regs_struct r = base_;
  r.rip = proc_->code.base() + InjectedCode::kLoop;
  r.rbx = table;
  r.r12 = calls.size() + 1;
  r.r13 = r.r15 = Finisher();
  if (owner_ && proc_->threads_in == 0 && !(restart_ && !proc_->code.in_vdso())) {
    // Alone with the scratch memory: leaving untraced also unmaps it.
    CRYO_RETURN_IF_ERROR(CheckUntraced(SYS_munmap, {scratch, proc_->mapping_len}, false));
    BatchEntry& exit = entries[calls.size() + 1];
    exit.nr = SYS_munmap;
    exit.args[0] = scratch;
    exit.args[1] = proc_->mapping_len;
    r.r13 = proc_->code.call();
  }
  CRYO_RETURN_IF_ERROR(WriteMem(table, entries.data(), entries.size() * sizeof(BatchEntry)));
  loop_running_ = true;
  Status s = Inject(r, PTRACE_CONT);
  if (!s.ok()) {
    loop_running_ = false;  // the task was not resumed (or is gone)
    return s;
  }
  batch_started_ = true;
  batch_table_ = table;
  batch_calls_ = calls.size();
  return Status::Ok();
}

// The batch's end is the signal-delivery-stop of its own tkill; cryo stays
// there (the signal is suppressed when the task is next resumed).
Status RemoteSyscaller::WaitBatchEnd() {
  if (!loop_running_) return Status::Ok();
  loop_running_ = false;
  for (;;) {
    CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(tid_));
    if (si.exited) return Status::Error(Tid(tid_) + " died during a batch of remote syscalls");
    if (si.signal_delivery_stop() && si.stopsig == batch_signal_) {
      siginfo_t info;
      if (ptrace(PTRACE_GETSIGINFO, tid_, nullptr, &info) != 0) return Status::FromErrno("PTRACE_GETSIGINFO " + Tid(tid_));
      user_regs_struct out;
      CRYO_RETURN_IF_ERROR(GetRegs(tid_, &out));
      if (info.si_code == kSiTkill && info.si_pid == tgid_ && out.rip == proc_->code.base() + InjectedCode::kAfterLoopSyscall)
        return Status::Ok();
    }
    CRYO_RETURN_IF_ERROR(OnOtherStop(si, "a batch of remote syscalls"));
    FaultPoint();
    if (ptrace(PTRACE_CONT, tid_, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_CONT " + Tid(tid_));
  }
}

Result<std::vector<long>> RemoteSyscaller::FinishBatch() {
  if (!batch_started_) return Status::Error("internal: no remote syscall batch started on " + Tid(tid_));
  batch_started_ = false;
  if (!loop_running_) return std::move(batch_results_);
  CRYO_RETURN_IF_ERROR(WaitBatchEnd());
  std::vector<BatchEntry> table(batch_calls_);
  CRYO_RETURN_IF_ERROR(ReadMem(batch_table_, table.data(), table.size() * sizeof(BatchEntry)));
  std::vector<long> results(table.size());
  for (size_t i = 0; i < table.size(); ++i) results[i] = static_cast<long>(table[i].result);
  return results;
}

Result<std::vector<long>> RemoteSyscaller::Batch(const std::vector<RemoteCall>& calls) {
  CRYO_RETURN_IF_ERROR(StartBatch(calls, scratch() + scratch_size() - kBatchTableBytes));
  return FinishBatch();
}

Status RemoteSyscaller::MapScratch(size_t size) {
  if (!guarded() || !owner_) return Status::Error("internal: MapScratch on a syscaller that does not own the scratch memory");
  if (proc_->code.in_vdso()) {
    const uint64_t args[6] = {0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0};
    CRYO_ASSIGN_OR_RETURN(long addr, Call(SYS_mmap, args, true));
    if (IsError(addr)) return Status::Errno(static_cast<int>(-addr), "remote mmap of scratch memory in " + Tid(tid_));
    proc_->scratch = static_cast<uint64_t>(addr);
    proc_->scratch_size = proc_->mapping_len = size;
    return Park();
  }
  // The fallback: the code's page after the scratch memory, one range.
  const size_t len = size + kCodePage;
  CRYO_ASSIGN_OR_RETURN(long addr, Syscall(SYS_mmap, 0, len, PROT_READ | PROT_WRITE | PROT_EXEC,
                                           MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0));
  if (IsError(addr)) {
    // Refused (PR_SET_MDWE denies writable and executable memory): the
    // range executable, then its scratch part writable (which gains no
    // execute permission); the code is written through /proc/PID/mem.
    CRYO_ASSIGN_OR_RETURN(addr, Syscall(SYS_mmap, 0, len, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
                                        static_cast<uint64_t>(-1), 0));
    if (IsError(addr)) return Status::Errno(static_cast<int>(-addr), "remote mmap of scratch memory in " + Tid(tid_));
    proc_->scratch = static_cast<uint64_t>(addr);
    proc_->mapping_len = len;
    CRYO_ASSIGN_OR_RETURN(long r, Syscall(SYS_mprotect, static_cast<uint64_t>(addr), size, PROT_READ | PROT_WRITE));
    if (r != 0) return Status::Errno(static_cast<int>(-r), "remote mprotect of scratch memory in " + Tid(tid_));
  }
  proc_->scratch = static_cast<uint64_t>(addr);
  proc_->scratch_size = size;
  proc_->mapping_len = len;
  CRYO_RETURN_IF_ERROR(proc_->code.InstallAt(proc_->scratch + size));
  return Park();
}

Status RemoteSyscaller::WriteMem(uint64_t addr, const void* data, size_t n) {
  FaultPoint();
  struct iovec local = {const_cast<void*>(data), n};
  struct iovec remote = {reinterpret_cast<void*>(addr), n};
  if (process_vm_writev(tid_, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(n))
    return Status::FromErrno("process_vm_writev to " + Tid(tid_));
  return Status::Ok();
}

Status RemoteSyscaller::ReadMem(uint64_t addr, void* data, size_t n) {
  struct iovec local = {data, n};
  struct iovec remote = {reinterpret_cast<void*>(addr), n};
  if (process_vm_readv(tid_, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(n))
    return Status::FromErrno("process_vm_readv from " + Tid(tid_));
  return Status::Ok();
}

Status RemoteSyscaller::CheckUntraced(long nr, std::initializer_list<uint64_t> args, bool needed) const {
  if (!check_) return Status::Ok();
  uint64_t a[6] = {};
  size_t i = 0;
  for (uint64_t v : args)
    if (i < 6) a[i++] = v;
  return check_->Check(tid_, nr, a, needed);
}

Status RemoteSyscaller::WholeCode(const char* what) {
  if (!guarded()) return Status::Error(std::string("internal: ") + what + " on an unguarded remote syscaller");
  if (!proc_->code.in_vdso() && !proc_->code.base()) {
    // The fallback: the code's page comes with the scratch memory.
    if (!owner_)
      return Status::Error(std::string("internal: ") + what + ": the code's page is mapped by the thread that owns the scratch memory");
    CRYO_RETURN_IF_ERROR(MapScratch(kCodePage).Prefixed("the page of cryo's code"));
  }
  CRYO_RETURN_IF_ERROR(proc_->code.Install());
  if (!proc_->code.base()) return Status::Error("internal: cryo's code is not in place in " + Tid(tid_));
  return Status::Ok();
}

Result<UniqueFd> RemoteSyscaller::TakeFdMadeBy(long nr, uint64_t a1, const std::string& what) {
  if (loop_running_) return Status::Error("internal: remote syscall on " + Tid(tid_) + " during its batch");
  CRYO_RETURN_IF_ERROR(WholeCode("taking an fd out"));
  CRYO_RETURN_IF_ERROR(Enter());
  CRYO_RETURN_IF_ERROR(CheckUntraced(nr, {a1}, false));
  CRYO_RETURN_IF_ERROR(CheckUntraced(SYS_close, {}, false));  // its way back
  const uint64_t args[6] = {a1, 0, 0, 0, 0, 0};
  // The whole code's call stub (not the fallback's trampoline, which ends
  // with rt_sigreturn at once): the way back is r15.
  user_regs_struct r = CallRegs(base_, nr, args, proc_->code.base() + InjectedCode::kCall);
  r.r14 = Finisher();
  r.r15 = proc_->code.base() + InjectedCode::kCloseResult;
  r.rbx = SYS_close;  // (the frame holds the task's own rbx)
  CRYO_RETURN_IF_ERROR(Inject(r, PTRACE_SYSCALL));
  CRYO_RETURN_IF_ERROR(WaitSyscallStops(nr));
  user_regs_struct out;
  CRYO_RETURN_IF_ERROR(GetRegs(tid_, &out));
  const long made = static_cast<long>(out.rax);
  UniqueFd dup;
  int err = 0;
  if (made >= 0) {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, tgid_, 0)));
    dup.reset(pidfd.valid() ? static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), static_cast<int>(made), 0)) : -1);
    err = errno;
  }
  FaultPoint();  // (the tests kill cryo here: the task is to close it by itself)
  LOG_DEBUG("fault point %llu: %s made in %s as fd %ld, to be closed there",
            static_cast<unsigned long long>(FaultPointsPassed()), what.c_str(), Tid(tid_).c_str(), made);
  // The way back: close(made), then at rest before its jmp *%r14.
  FaultPoint();
  if (ptrace(PTRACE_SYSCALL, tid_, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_SYSCALL " + Tid(tid_));
  CRYO_RETURN_IF_ERROR(WaitSyscallStops(SYS_close));
  CRYO_RETURN_IF_ERROR(GetRegs(tid_, &out));
  CRYO_RETURN_IF_ERROR(Park());
  if (made < 0) return Status::Errno(static_cast<int>(-made), what + " in " + Tid(tid_));
  if (!dup.valid()) return Status::Errno(err, "pidfd_getfd of the " + what + " of " + Tid(tid_));
  const long closed = static_cast<long>(out.rax);
  if (closed < 0) return Status::Errno(static_cast<int>(-closed), "closing the " + what + " in " + Tid(tid_));
  return dup;
}

// Mask first, then registers: never the task's own code with cryo's mask.
Status RemoteSyscaller::Release() {
  if (!guarded()) return Status::Ok();
  Status first;
  auto keep = [&first](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  if (held_) keep(Unhold());
  // A batch still running (an error came first): its end must be seen
  // before the registers can be changed.
  keep(WaitBatchEnd());
  batch_started_ = false;
  if (masked_) {
    keep(SetSigmask(tid_, own_mask_));
    masked_ = false;
  }
  if (injected_) {
    user_regs_struct r = own_;
    ApplySyscallRestart(&r);  // the kernel's own restart block is intact
    keep(SetRegs(tid_, r));
    injected_ = false;
  }
  if (entered_) {
    if (!owner_ && --proc_->threads_in == 0 && proc_->owner) keep(proc_->owner->Park());
    keep(WriteMem(frame_.addr, under_frame_.data(), under_frame_.size()).Prefixed("putting back the stack under the frame"));
    entered_ = false;
  }
  return first.ok() ? first : first.Prefixed("putting " + Tid(tid_) + " back");
}

Status RemoteSyscaller::Finish() {
  if (!guarded() || !owner_) return Release();
  if (proc_->threads_in) return Status::Error("internal: unmapping the scratch memory while other threads use it");
  Status first = WaitBatchEnd();
  batch_started_ = false;
  if (proc_->scratch) {
    const uint64_t addr = proc_->scratch;
    proc_->scratch = 0;
    proc_->code.LeavePage();
    auto r = Syscall(SYS_munmap, addr, proc_->mapping_len);
    if (!r.ok())
      first = r.status();
    else if (*r != 0)
      first = Status::Errno(static_cast<int>(-*r), "remote munmap of scratch memory in " + Tid(tid_));
  }
  Status s = Release();
  if (first.ok()) first = s;
  s = proc_->code.Remove();
  if (first.ok()) first = s;
  return first;
}

}  // namespace cryo
