// The signal frame through which a seized task enters cryo's injected code:
// what rt_sigreturn(2) needs to put the task back into its own state by
// itself, laid out like the frame the kernel builds for a signal handler on
// x86_64 (struct rt_sigframe, arch/x86/kernel/signal.c get_sigframe):
//
//   frame + 0    pretcode (8 bytes; rt_sigreturn finds the frame at rsp - 8)
//   frame + 8    struct ucontext: uc_flags, uc_link, uc_stack, uc_mcontext
//                (struct sigcontext: the general registers, rip, eflags, cs,
//                ss, and a pointer to the FPU state), uc_sigmask
//   frame + 312  siginfo (128 bytes, not read by rt_sigreturn)
//   ...          the xsave area, 64-byte aligned, in the signal-frame layout
//                (see below), then FP_XSTATE_MAGIC2
//   rsp - 128    the task's red zone and stack, untouched
//
// The FPU state must be valid: a NULL fpstate pointer makes the kernel reset
// the task's FPU registers (fpu__restore_sig), and an area without the
// software-reserved bytes (magic1, xstate_size, xfeatures in bytes 464..511
// of the legacy area, magic2 after the area: check_xstate_in_sigframe)
// restores only x87/SSE and resets AVX and AVX-512 state.
//
// uc_stack carries an invalid ss_flags on purpose: rt_sigreturn hands it to
// do_sigaltstack, which then refuses it and leaves the task's alternate stack
// as it is, and restore_altstack ignores that error (kernel/signal.c).
#pragma once

#include <sys/user.h>

#include <cstdint>
#include <string>

#include "base/status.h"

namespace cryo {

struct SigFrame {
  uint64_t addr = 0;  // the frame's lowest byte; rt_sigreturn needs rsp = addr + 8
  std::string bytes;  // what goes at addr (ends below the red zone)
};

// What cryo keeps in the frame for itself, in sigcontext fields rt_sigreturn
// does not read (err, trapno): a mark, and for a task that finishes a call
// interrupted with ERESTART_RESTARTBLOCK by the code's "restart"
// (injected_code.h), that call's number, so that a later dump can take the
// task back out of cryo's code (reclaim.h).
struct FrameNote {
  bool restart = false;
  uint64_t orig_rax = 0;
};

// The frame for a task whose saved state is `regs` (what it must resume
// with: syscall restart already applied), signal mask `blocked` and FPU state
// `xsave` (PTRACE_GETREGSET NT_X86_XSTATE), placed below its red zone.
Result<SigFrame> BuildSigFrame(const user_regs_struct& regs, uint64_t blocked, const std::string& xsave,
                               const FrameNote& note = {});

// The part of a frame cryo wrote that holds registers, mask and note.
inline constexpr size_t kSigFrameHead = 440;
struct ParsedFrame {
  user_regs_struct regs{};  // the general registers, rip, eflags, cs, ss of the frame; the rest from `base`
  uint64_t blocked = 0;
  FrameNote note;
};
// Reads kSigFrameHead bytes of a frame; an error if cryo did not write it.
Result<ParsedFrame> ParseSigFrame(const void* head, const user_regs_struct& base);

inline constexpr uint64_t kRedZone = 128;

}  // namespace cryo
