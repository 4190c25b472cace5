#include "inject/remote_syscall.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <unistd.h>

#include <cstring>
#include <string>

#include "base/log.h"
#include "base/unique_fd.h"
#include "seize/ptrace_util.h"

namespace cryo {

namespace {
std::string Tid(pid_t tid) { return "task " + std::to_string(tid); }

// The batch loop. rbx: table of 64-byte entries {nr, a1..a6, result}; r12:
// number of entries. The kernel preserves every register but rax, rcx, r11.
//   0: test r12, r12       ; 4d 85 e4
//   3: jz 2f               ; 74 2a
//   5: mov rax, [rbx]      ; 48 8b 03
//   8: mov rdi, [rbx+8]    ; 48 8b 7b 08
//   c: mov rsi, [rbx+16]   ; 48 8b 73 10
//  10: mov rdx, [rbx+24]   ; 48 8b 53 18
//  14: mov r10, [rbx+32]   ; 4c 8b 53 20
//  18: mov r8, [rbx+40]    ; 4c 8b 43 28
//  1c: mov r9, [rbx+48]    ; 4c 8b 4b 30
//  20: syscall             ; 0f 05
//  22: mov [rbx+56], rax   ; 48 89 43 38
//  26: add rbx, 64         ; 48 83 c3 40
//  2a: dec r12             ; 49 ff cc
//  2d: jmp 0               ; eb d1
//  2f: int3                ; cc
constexpr uint8_t kBatchLoop[] = {0x4d, 0x85, 0xe4, 0x74, 0x2a, 0x48, 0x8b, 0x03, 0x48, 0x8b, 0x7b, 0x08,
                                  0x48, 0x8b, 0x73, 0x10, 0x48, 0x8b, 0x53, 0x18, 0x4c, 0x8b, 0x53, 0x20,
                                  0x4c, 0x8b, 0x43, 0x28, 0x4c, 0x8b, 0x4b, 0x30, 0x0f, 0x05, 0x48, 0x89,
                                  0x43, 0x38, 0x48, 0x83, 0xc3, 0x40, 0x49, 0xff, 0xcc, 0xeb, 0xd1, 0xcc};
constexpr uint64_t kBatchLoopEnd = sizeof(kBatchLoop);  // rip after the int3
constexpr size_t kCodePage = 4096;
constexpr int kSigtrapBit = SIGTRAP - 1;

struct BatchEntry {
  uint64_t nr;
  uint64_t args[6];
  int64_t result;
};
static_assert(sizeof(BatchEntry) == 64);

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
  rs->stop_sink_ = stop_sink_;
  rs->batch_mode_ = batch_mode_;
  rs->code_ = code_;
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
    if (ExpectedDetour(si)) continue;
    LOG_WARN("%s: unexpected stop (signal %d, event %d) during remote syscall %ld", Tid(tid_).c_str(), si.stopsig,
             si.event, nr);
  }
  user_regs_struct out;
  CRYO_RETURN_IF_ERROR(GetRegs(tid_, &out));
  return static_cast<long>(out.rax);
}

bool RemoteSyscaller::ExpectedDetour(const StopInfo& si) {
  // A PTRACE_EVENT_STOP before our code runs: a group-stop trap (the task was
  // stopped when seized and PTRACE_INTERRUPT asked for one more trap, or a
  // SIGSTOP/SIGCONT arrived meanwhile: ptrace(2) "Group-stop"). Resuming it
  // does not end the group-stop, which the detach re-enters.
  if (si.event_stop()) {
    LOG_DEBUG("%s: group-stop or interrupt trap (signal %d) before a remote call; resumed", Tid(tid_).c_str(),
              si.stopsig);
    return true;
  }
  // Every signal is blocked but SIGKILL and SIGSTOP: a SIGSTOP sent meanwhile
  // is dequeued into a signal-delivery-stop. Resuming with no signal keeps it
  // from stopping the task now; the stop is recorded and takes effect later.
  if (si.signal_delivery_stop() && si.stopsig == SIGSTOP) {
    LOG_DEBUG("%s: SIGSTOP dequeued during remote calls; kept for after the dump", Tid(tid_).c_str());
    if (stop_sink_) *stop_sink_ = SIGSTOP;
    return true;
  }
  return false;
}

Status RemoteSyscaller::PrepareBatch() {
  batch_mode_ = BatchMode::kOneByOne;
  if (scratch_size_ < 2 * kBatchTableBytes) return Status::Ok();
  // Dispositions are per process and cannot change while it is seized.
  if (!dispositions_known_) {
    CRYO_ASSIGN_OR_RETURN(proc::ProcStatus st, proc::ReadStatus(tid_));
    SetDispositions(st.sig_ign, st.sig_cgt);
  }
  if ((sig_ign_ | sig_cgt_) >> kSigtrapBit & 1) {
    LOG_DEBUG("%s handles or ignores SIGTRAP: remote system calls one at a time", Tid(tid_).c_str());
    return Status::Ok();
  }
  if (code_) {  // mapped with the scratch memory, the loop written
    batch_mode_ = BatchMode::kLoop;
    return Status::Ok();
  }
  // Executable, not writable (also allowed under PR_SET_MDWE); written
  // through /proc/PID/mem, which writes with FOLL_FORCE.
  CRYO_ASSIGN_OR_RETURN(long addr, Syscall(SYS_mmap, 0, kCodePage, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
                                           static_cast<uint64_t>(-1), 0));
  if (addr < 0 && addr > -4096) {
    LOG_DEBUG("%s: remote mmap of a code page failed (%s): remote system calls one at a time", Tid(tid_).c_str(),
              strerror(static_cast<int>(-addr)));
    return Status::Ok();
  }
  const std::string mem = "/proc/" + std::to_string(tid_) + "/mem";
  UniqueFd fd(::open(mem.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid() ||
      ::pwrite(fd.get(), kBatchLoop, sizeof(kBatchLoop), static_cast<off_t>(addr)) != static_cast<ssize_t>(sizeof(kBatchLoop))) {
    Status s = Status::FromErrno("writing the batch loop into " + mem);
    CRYO_ASSIGN_OR_RETURN(long r, Syscall(SYS_munmap, static_cast<uint64_t>(addr), kCodePage));
    if (r != 0) return Status::Errno(static_cast<int>(-r), "remote munmap of the code page in " + Tid(tid_));
    return s;
  }
  code_ = static_cast<uint64_t>(addr);
  code_separate_ = true;
  batch_mode_ = BatchMode::kLoop;
  return Status::Ok();
}

Status RemoteSyscaller::StartLoop(const std::vector<RemoteCall>& calls, uint64_t table_addr) {
  std::vector<BatchEntry> table(calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    table[i].nr = static_cast<uint64_t>(calls[i].nr);
    std::memcpy(table[i].args, calls[i].args, sizeof(table[i].args));
    table[i].result = -ENOSYS;
  }
  CRYO_RETURN_IF_ERROR(WriteMem(table_addr, table.data(), table.size() * sizeof(BatchEntry)));
  user_regs_struct r = base_regs_;
  r.orig_rax = static_cast<unsigned long long>(-1);  // no syscall-restart rewrite of our registers
  r.rip = code_;
  r.rbx = table_addr;
  r.r12 = calls.size();
  CRYO_RETURN_IF_ERROR(SetRegs(tid_, r));
  if (ptrace(PTRACE_CONT, tid_, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_CONT " + Tid(tid_));
  return Status::Ok();
}

Result<std::vector<long>> RemoteSyscaller::FinishLoop() {
  for (;;) {
    CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(tid_));
    if (si.exited) return Status::Error(Tid(tid_) + " died during a batch of remote syscalls");
    if (si.stopsig == SIGTRAP && si.event == 0) {
      user_regs_struct out;
      CRYO_RETURN_IF_ERROR(GetRegs(tid_, &out));
      if (out.rip == code_ + kBatchLoopEnd) break;  // our int3; resuming with signal 0 discards it
    }
    if (!ExpectedDetour(si))
      LOG_WARN("%s: unexpected stop (signal %d, event %d) during a batch of remote syscalls", Tid(tid_).c_str(),
               si.stopsig, si.event);
    if (ptrace(PTRACE_CONT, tid_, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_CONT " + Tid(tid_));
  }
  // The trap unblocked SIGTRAP (force_sig_info_to_task): block it again.
  CRYO_RETURN_IF_ERROR(SetSigmask(tid_, ~0ULL));
  std::vector<BatchEntry> table(batch_calls_);
  CRYO_RETURN_IF_ERROR(ReadMem(batch_table_, table.data(), table.size() * sizeof(BatchEntry)));
  std::vector<long> results(table.size());
  for (size_t i = 0; i < table.size(); ++i) results[i] = static_cast<long>(table[i].result);
  return results;
}

Status RemoteSyscaller::StartBatch(const std::vector<RemoteCall>& calls, uint64_t table) {
  if (!syscall_insn_ || !scratch_) return Status::Error("remote syscall batch on " + Tid(tid_) + " before MapScratch()");
  if (batch_started_) return Status::Error("internal: two remote syscall batches at once on " + Tid(tid_));
  if (calls.size() > kMaxBatch || table < scratch_ || table + calls.size() * kBatchEntryBytes > scratch_ + scratch_size_)
    return Status::Error("internal: remote syscall batch of " + std::to_string(calls.size()) + " out of the scratch memory");
  if (batch_mode_ == BatchMode::kUnknown) CRYO_RETURN_IF_ERROR(PrepareBatch());
  batch_results_.clear();
  if (batch_mode_ == BatchMode::kLoop) {
    CRYO_RETURN_IF_ERROR(StartLoop(calls, table));
  } else {
    for (const RemoteCall& c : calls) {
      CRYO_ASSIGN_OR_RETURN(long r, Syscall(c.nr, c.args[0], c.args[1], c.args[2], c.args[3], c.args[4], c.args[5]));
      batch_results_.push_back(r);
    }
  }
  batch_started_ = true;
  batch_table_ = table;
  batch_calls_ = calls.size();
  return Status::Ok();
}

Result<std::vector<long>> RemoteSyscaller::FinishBatch() {
  if (!batch_started_) return Status::Error("internal: no remote syscall batch started on " + Tid(tid_));
  batch_started_ = false;
  if (batch_mode_ != BatchMode::kLoop) return std::move(batch_results_);
  return FinishLoop();
}

Result<std::vector<long>> RemoteSyscaller::Batch(const std::vector<RemoteCall>& calls) {
  CRYO_RETURN_IF_ERROR(StartBatch(calls, scratch_ + scratch_size_ - kBatchTableBytes));
  return FinishBatch();
}

Status RemoteSyscaller::MapScratch(size_t size) {
  CRYO_ASSIGN_OR_RETURN(long addr, Syscall(SYS_mmap, 0, size + kCodePage, PROT_READ | PROT_WRITE | PROT_EXEC,
                                           MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0));
  if (addr < 0 && addr > -4096) {
    // Refused (PR_SET_MDWE denies writable and executable memory): scratch
    // alone; the loop gets a page of its own if a batch needs it.
    CRYO_ASSIGN_OR_RETURN(addr, Syscall(SYS_mmap, 0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                        static_cast<uint64_t>(-1), 0));
    if (addr < 0 && addr > -4096)
      return Status::Errno(static_cast<int>(-addr), "remote mmap of scratch memory in " + Tid(tid_));
    scratch_ = static_cast<uint64_t>(addr);
    scratch_size_ = mapping_len_ = size;
    return Status::Ok();
  }
  scratch_ = static_cast<uint64_t>(addr);
  scratch_size_ = size;
  mapping_len_ = size + kCodePage;
  CRYO_RETURN_IF_ERROR(WriteMem(scratch_ + size, kBatchLoop, sizeof(kBatchLoop)));
  code_ = scratch_ + size;
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
  if (code_ && code_separate_) {
    const uint64_t code = code_;
    code_ = 0;
    CRYO_ASSIGN_OR_RETURN(long r, Syscall(SYS_munmap, code, kCodePage));
    if (r != 0) return Status::Errno(static_cast<int>(-r), "remote munmap of the code page in " + Tid(tid_));
  }
  code_ = 0;
  CRYO_ASSIGN_OR_RETURN(long r, Syscall(SYS_munmap, addr, mapping_len_));
  if (r != 0) return Status::Errno(static_cast<int>(-r), "remote munmap of scratch memory in " + Tid(tid_));
  return Status::Ok();
}

}  // namespace cryo
