#include "inject/remote_syscall.h"

#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <cstring>
#include <string>

#include "base/log.h"
#include "seize/ptrace_util.h"

namespace cryo {

namespace {
std::string Tid(pid_t tid) { return "task " + std::to_string(tid); }

Result<uint64_t> ScanForSyscall(pid_t pid, const proc::Vma& v) {
  std::vector<uint8_t> buf(v.end - v.start);
  struct iovec local = {buf.data(), buf.size()};
  struct iovec remote = {reinterpret_cast<void*>(v.start), buf.size()};
  ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n < 2) return Status::FromErrno("reading " + v.name + " of pid " + std::to_string(pid));
  for (ssize_t i = 0; i + 1 < n; ++i)
    if (buf[i] == 0x0f && buf[i + 1] == 0x05) return v.start + static_cast<uint64_t>(i);
  return Status::Error("no syscall instruction");
}
}  // namespace

Result<uint64_t> FindSyscallInsn(pid_t pid, const std::vector<proc::Vma>& vmas) {
  for (const auto& v : vmas)
    if (v.name == "[vdso]") {
      auto r = ScanForSyscall(pid, v);
      if (r.ok()) return r;
    }
  for (const auto& v : vmas)
    if ((v.prot & PROT_EXEC) && (v.prot & PROT_READ) && v.name != "[vsyscall]" && v.end - v.start <= (64u << 20)) {
      auto r = ScanForSyscall(pid, v);
      if (r.ok()) return r;
    }
  return Status::Error("pid " + std::to_string(pid) + " has no syscall instruction in an executable mapping");
}

Result<std::unique_ptr<RemoteSyscaller>> RemoteSyscaller::ForThread(pid_t tid, const user_regs_struct& regs) const {
  auto rs = std::make_unique<RemoteSyscaller>(tid, regs);
  rs->syscall_insn_ = syscall_insn_;
  rs->scratch_ = scratch_;
  rs->scratch_size_ = scratch_size_;
  rs->owns_scratch_ = false;
  CRYO_RETURN_IF_ERROR(SetSigmask(tid, ~0ULL));
  return rs;
}

RemoteSyscaller::~RemoteSyscaller() {
  if (scratch_ && owns_scratch_) {
    Status s = Finish();
    if (!s.ok()) LOG_WARN("%s", s.ToString().c_str());
  }
}

Status RemoteSyscaller::Prepare(const std::vector<proc::Vma>& vmas) {
  CRYO_ASSIGN_OR_RETURN(syscall_insn_, FindSyscallInsn(tid_, vmas));
  // Keep every signal pending while the task runs our system calls.
  return SetSigmask(tid_, ~0ULL);
}

Result<long> RemoteSyscaller::Syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                      uint64_t a6) {
  if (!syscall_insn_) return Status::Error("remote syscall on " + Tid(tid_) + " before Prepare()");
  user_regs_struct r = base_regs_;
  r.rax = static_cast<unsigned long long>(nr);
  r.orig_rax = static_cast<unsigned long long>(-1);  // no syscall-restart rewrite of our registers
  r.rdi = a1;
  r.rsi = a2;
  r.rdx = a3;
  r.r10 = a4;
  r.r8 = a5;
  r.r9 = a6;
  r.rip = syscall_insn_;
  CRYO_RETURN_IF_ERROR(SetRegs(tid_, r));
  // Two stops: syscall entry, then syscall exit.
  for (int stops = 0; stops < 2;) {
    if (ptrace(PTRACE_SYSCALL, tid_, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_SYSCALL " + Tid(tid_));
    CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(tid_));
    if (si.exited) return Status::Error(Tid(tid_) + " died during remote syscall " + std::to_string(nr));
    if (si.syscall_stop()) {
      ++stops;
      continue;
    }
    // SIGKILL/SIGSTOP cannot be blocked; anything else here is unexpected.
    LOG_WARN("%s: unexpected stop (signal %d, event %d) during remote syscall %ld", Tid(tid_).c_str(), si.stopsig,
             si.event, nr);
  }
  user_regs_struct out;
  CRYO_RETURN_IF_ERROR(GetRegs(tid_, &out));
  return static_cast<long>(out.rax);
}

Status RemoteSyscaller::MapScratch(size_t size) {
  CRYO_ASSIGN_OR_RETURN(long addr, Syscall(SYS_mmap, 0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                           static_cast<uint64_t>(-1), 0));
  if (addr < 0 && addr > -4096) return Status::Errno(static_cast<int>(-addr), "remote mmap of scratch memory in " + Tid(tid_));
  scratch_ = static_cast<uint64_t>(addr);
  scratch_size_ = size;
  return Status::Ok();
}

Status RemoteSyscaller::WriteMem(uint64_t addr, const void* data, size_t n) {
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

Status RemoteSyscaller::Finish() {
  if (!scratch_ || !owns_scratch_) return Status::Ok();
  uint64_t addr = scratch_;
  scratch_ = 0;
  CRYO_ASSIGN_OR_RETURN(long r, Syscall(SYS_munmap, addr, scratch_size_));
  if (r != 0) return Status::Errno(static_cast<int>(-r), "remote munmap of scratch memory in " + Tid(tid_));
  return Status::Ok();
}

}  // namespace cryo
