#include "inject/sigframe.h"

#include <cstddef>
#include <cstring>

namespace cryo {

namespace {

// The kernel's x86_64 struct sigcontext (uapi asm/sigcontext.h).
struct KernelSigcontext {
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
  uint16_t cs, gs, fs, ss;
  uint64_t err, trapno, oldmask, cr2;
  uint64_t fpstate;
  uint64_t reserved1[8];
};
static_assert(sizeof(KernelSigcontext) == 256);

struct KernelStack {
  uint64_t ss_sp;
  int32_t ss_flags;
  int32_t pad;
  uint64_t ss_size;
};

struct KernelUcontext {
  uint64_t uc_flags;
  uint64_t uc_link;
  KernelStack uc_stack;
  KernelSigcontext uc_mcontext;
  uint64_t uc_sigmask;
};
static_assert(sizeof(KernelUcontext) == 304);

struct KernelRtSigframe {
  uint64_t pretcode;
  KernelUcontext uc;
  uint8_t info[128];
};
static_assert(sizeof(KernelRtSigframe) == kSigFrameHead);

// uapi asm/ucontext.h
constexpr uint64_t kUcFpXstate = 0x1, kUcSigcontextSs = 0x2, kUcStrictRestoreSs = 0x4;
// uapi asm/sigcontext.h
constexpr uint32_t kFpXstateMagic1 = 0x46505853, kFpXstateMagic2 = 0x46505845;
constexpr size_t kFxSwBytesOffset = 464;  // struct _fpx_sw_bytes in the legacy area's sw_reserved
constexpr size_t kXsaveMinSize = 512 + 64;  // legacy area + xsave header
// An ss_flags mode that is neither 0, SS_ONSTACK nor SS_DISABLE (see the header).
constexpr int32_t kInvalidSsFlags = 3;
constexpr uint64_t kMark = 0x6f7972632e6d7266, kMarkRestart = 0x6f7972632e727473;  // "frm.cryo", "str.cryo"

struct FpxSwBytes {
  uint32_t magic1;
  uint32_t extended_size;
  uint64_t xfeatures;
  uint32_t xstate_size;
  uint32_t padding[7];
};
static_assert(sizeof(FpxSwBytes) == 48);

uint64_t RoundDown(uint64_t v, uint64_t a) { return v & ~(a - 1); }

}  // namespace

Result<SigFrame> BuildSigFrame(const user_regs_struct& regs, uint64_t blocked, const std::string& xsave,
                               const FrameNote& note) {
  if (xsave.size() < 512) return Status::Error("FPU state of " + std::to_string(xsave.size()) + " bytes: too short");
  const bool xstate = xsave.size() >= kXsaveMinSize;
  // Where the kernel would put them (get_sigframe, fpu__alloc_mathframe).
  const uint64_t fp_size = xsave.size() + (xstate ? sizeof(kFpXstateMagic2) : 0);
  if (regs.rsp < kRedZone + fp_size + sizeof(KernelRtSigframe) + 64 + 16)
    return Status::Error("stack pointer " + std::to_string(regs.rsp) + " leaves no room for a signal frame");
  const uint64_t fp = RoundDown(regs.rsp - kRedZone - fp_size, 64);
  const uint64_t frame = RoundDown(fp - sizeof(KernelRtSigframe), 16) - 8;

  KernelRtSigframe f;
  std::memset(&f, 0, sizeof(f));
  f.uc.uc_flags = kUcSigcontextSs | kUcStrictRestoreSs | (xstate ? kUcFpXstate : 0);
  f.uc.uc_stack.ss_flags = kInvalidSsFlags;
  KernelSigcontext& sc = f.uc.uc_mcontext;
  sc.r8 = regs.r8;
  sc.r9 = regs.r9;
  sc.r10 = regs.r10;
  sc.r11 = regs.r11;
  sc.r12 = regs.r12;
  sc.r13 = regs.r13;
  sc.r14 = regs.r14;
  sc.r15 = regs.r15;
  sc.rdi = regs.rdi;
  sc.rsi = regs.rsi;
  sc.rbp = regs.rbp;
  sc.rbx = regs.rbx;
  sc.rdx = regs.rdx;
  sc.rax = regs.rax;
  sc.rcx = regs.rcx;
  sc.rsp = regs.rsp;
  sc.rip = regs.rip;
  sc.eflags = regs.eflags;
  sc.cs = static_cast<uint16_t>(regs.cs);
  sc.ss = static_cast<uint16_t>(regs.ss);
  sc.oldmask = blocked;
  sc.fpstate = fp;
  sc.err = note.restart ? kMarkRestart : kMark;
  sc.trapno = note.orig_rax;
  f.uc.uc_sigmask = blocked;

  SigFrame out;
  out.addr = frame;
  out.bytes.assign(fp + fp_size - frame, '\0');
  std::memcpy(out.bytes.data(), &f, sizeof(f));
  char* area = out.bytes.data() + (fp - frame);
  std::memcpy(area, xsave.data(), xsave.size());
  if (xstate) {
    // ptrace's layout keeps only XCR0 in the first software-reserved word
    // (USER_XSTATE_XCR0_WORD); a signal frame holds struct _fpx_sw_bytes there.
    uint64_t xcr0;
    std::memcpy(&xcr0, xsave.data() + kFxSwBytesOffset, sizeof(xcr0));
    if (xcr0 == 0) {
      uint32_t lo, hi;
      asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
    }
    FpxSwBytes sw = {};
    sw.magic1 = kFpXstateMagic1;
    sw.extended_size = static_cast<uint32_t>(fp_size);
    sw.xfeatures = xcr0;
    sw.xstate_size = static_cast<uint32_t>(xsave.size());
    std::memcpy(area + kFxSwBytesOffset, &sw, sizeof(sw));
    std::memcpy(area + xsave.size(), &kFpXstateMagic2, sizeof(kFpXstateMagic2));
  }
  return out;
}

Result<ParsedFrame> ParseSigFrame(const void* head, const user_regs_struct& base) {
  KernelRtSigframe f;
  std::memcpy(&f, head, sizeof(f));
  const KernelSigcontext& sc = f.uc.uc_mcontext;
  if (sc.err != kMark && sc.err != kMarkRestart) return Status::Error("not a signal frame cryo wrote");
  ParsedFrame out;
  out.regs = base;
  user_regs_struct& r = out.regs;
  r.r8 = sc.r8;
  r.r9 = sc.r9;
  r.r10 = sc.r10;
  r.r11 = sc.r11;
  r.r12 = sc.r12;
  r.r13 = sc.r13;
  r.r14 = sc.r14;
  r.r15 = sc.r15;
  r.rdi = sc.rdi;
  r.rsi = sc.rsi;
  r.rbp = sc.rbp;
  r.rbx = sc.rbx;
  r.rdx = sc.rdx;
  r.rax = sc.rax;
  r.rcx = sc.rcx;
  r.rsp = sc.rsp;
  r.rip = sc.rip;
  r.eflags = sc.eflags;
  r.cs = sc.cs;
  r.ss = sc.ss;
  out.blocked = f.uc.uc_sigmask;
  out.note.restart = sc.err == kMarkRestart;
  out.note.orig_rax = sc.trapno;
  return out;
}

}  // namespace cryo
