// The code cryo runs inside a seized task (remote_syscall.h), 192 bytes and
// an 8-byte flag:
//
//   +0x00 call:      syscall; jmp *%r15          the call in rax, then r15
//   +0x05 loop:      a batch: for each 64-byte entry {nr, a1..a6, result} of
//                    the table at rbx (r12 entries): the call, its result
//                    stored; then rax, rdi, rsi from the entry after the
//                    last, and jmp *%r13
//   +0x42 restart:   rt_sigprocmask(SIG_SETMASK, the frame's uc_sigmask);
//                    restart_syscall(); the result into the frame's rax;
//                    then:
//   +0x6d sigreturn: push $15; pop %rax; syscall (rt_sigreturn)
//   +0x72 unmap_result: munmap(rax, rsi); jmp *%r14: after the mmap of the
//                    scratch memory, its way back unmaps what it mapped
//   +0x7f gate:      until the flag at +0xc0 is set (or r12 rounds of 1 ms
//                    are used up): ppoll(NULL, 0, 1 ms); then jmp *%r15.
//                    cryo holds a task at the entry of that ppoll while the
//                    tree's TCP sockets are in repair mode (net/tcp_hold.h):
//                    if cryo dies, the task waits there, untraced, until
//                    the guardian has ended repair mode and set the flag.
//   +0xab close_result: close(eax), SYS_close from rbx, through
//                    unmap_result's `syscall; jmp *%r14`: the way back of a
//                    call that makes an fd cryo takes out (pidfd_getfd), so
//                    that the task never keeps it, whenever cryo dies.
//
// "restart" is how a task seized in a system call interrupted with
// ERESTART_RESTARTBLOCK (nanosleep, clock_nanosleep, poll, futex waits with
// a timeout) finishes it on its own if cryo dies: rt_sigreturn resets the
// task's restart block (restore_sigcontext: "make any pending restarted
// system calls return -EINTR"), so the restart must run before it, with the
// task's own mask (a handler may run; the call then returns EINTR, as it
// would have).
//
// Where it goes: into the padding at the end of the task's vDSO, after
// everything its ELF header describes (segments, section headers, sections):
// bytes of an executable mapping that are never executed and never read,
// and that exist before cryo has mapped anything in the task.
// /proc/PID/mem writes with FOLL_FORCE, so the write gives the process a
// private copy of that vDSO page (copy-on-write, like a debugger's
// breakpoint there); Remove() puts the zeros back. Were cryo killed in
// between, the code would stay there: never run, never read.
//
// A vDSO without room for it (the fallback): 7 bytes go over the padding of
// the ELF header's e_ident (EI_PAD, bytes 9..15, equally unused):
// `syscall; push $15; pop %rax; syscall`, the call then rt_sigreturn, for
// the calls that run before cryo has mapped a page of its own (InstallAt)
// and for the one that unmaps it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "proc/proc.h"

namespace cryo {

class InjectedCode {
 public:
  static constexpr size_t kSize = 0xc0;
  static constexpr uint64_t kCall = 0x00, kLoop = 0x05, kAfterLoopSyscall = 0x27, kRestart = 0x42, kSigreturn = 0x6d,
                            kUnmapResult = 0x72, kGate = 0x7f, kAfterGateSyscall = 0xa6, kCloseResult = 0xab,
                            kGateTimespec = 0xb0;
  // The gate's flag, right after the code (not part of what identifies it).
  static constexpr uint64_t kGateFlag = kSize;
  static constexpr size_t kRoom = kSize + 8;
  // The trampoline at EI_PAD: the call, then rt_sigreturn at +2.
  static constexpr uint8_t kBootCode[7] = {0x0f, 0x05, 0x6a, 0x0f, 0x58, 0x0f, 0x05};
  static constexpr uint64_t kEiPad = 9;

  // Finds the vDSO of `pid` in `vmas`, checks its ELF header and looks for
  // room at its end; nothing is written.
  static Result<InjectedCode> Find(pid_t pid, const std::vector<proc::Vma>& vmas);
  // Writes the code into the vDSO (all of it, or the fallback's 7 bytes).
  Status Install();
  // The fallback: the whole code at `addr`, a page cryo mapped in the task.
  Status InstallAt(uint64_t addr);
  // Sets the gate's flag: a task waiting at the gate goes on.
  Status OpenGate();
  // Puts the vDSO's bytes back (the page at InstallAt goes with its munmap).
  Status Remove();
  // The fallback: the page at InstallAt is about to be unmapped.
  void LeavePage() {
    if (!in_vdso()) base_ = 0;
  }

  bool in_vdso() const { return tail_ != 0; }
  // Where the whole code is; 0 until it is in place.
  uint64_t base() const { return base_; }
  // rip for a call that then returns by rt_sigreturn: `call` in the vDSO
  // (then jmp *%r15), or the fallback's trampoline (which needs no r15).
  uint64_t call() const { return in_vdso() ? base_ + kCall : boot_; }
  // rip for rt_sigreturn alone (the fallback's trampoline until InstallAt).
  uint64_t sigreturn() const { return base_ ? base_ + kSigreturn : boot_ + 2; }
  // /proc/PID/mem, open read-write.
  int mem() const { return mem_.get(); }

  // Where `rip` of task `tid` is in a copy of this code (a killed cryo's
  // included): in the vDSO's tail, a page of its own, or the trampoline at
  // EI_PAD.
  struct Place {
    bool inside = false;
    bool boot = false;        // the trampoline at EI_PAD
    uint64_t offset = 0;      // from the code's start
    bool after_push = false;  // between `push $15` and `pop %rax`: rsp is the frame
  };
  Result<Place> Locate(pid_t tid, uint64_t rip) const;

  // Tests: as if the vDSO had no room.
  static void SetFallbackForTest(bool on);

 private:
  pid_t pid_ = 0;
  uint64_t tail_ = 0;  // the code's place in the vDSO, 0: the fallback
  uint64_t boot_ = 0;  // the fallback's trampoline (EI_PAD)
  uint64_t base_ = 0;
  UniqueFd mem_;
  uint8_t saved_[sizeof(kBootCode)] = {};
  bool installed_ = false;
};

// Writes `n` bytes at `addr` of a process through its /proc/PID/mem `mem_fd`
// (FOLL_FORCE: also into mappings without write permission).
Status PokeMem(int mem_fd, pid_t pid, uint64_t addr, const void* data, size_t n);

}  // namespace cryo
