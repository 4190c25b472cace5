#include "inject/injected_code.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <string>

namespace cryo {

namespace {

// See the header; offsets in the comments.
//   00: syscall                 0f 05
//   02: jmp *%r15               41 ff e7
//   05: test %r12, %r12         4d 85 e4
//   08: je 34                   74 2a
//   0a: mov (%rbx), %rax        48 8b 03
//   0d: mov 8(%rbx), %rdi       48 8b 7b 08
//   11: mov 16(%rbx), %rsi      48 8b 73 10
//   15: mov 24(%rbx), %rdx      48 8b 53 18
//   19: mov 32(%rbx), %r10      4c 8b 53 20
//   1d: mov 40(%rbx), %r8       4c 8b 43 28
//   21: mov 48(%rbx), %r9       4c 8b 4b 30
//   25: syscall                 0f 05
//   27: mov %rax, 56(%rbx)      48 89 43 38
//   2b: add $64, %rbx           48 83 c3 40
//   2f: dec %r12                49 ff cc
//   32: jmp 05                  eb d1
//   34: mov (%rbx), %rax        48 8b 03
//   37: mov 8(%rbx), %rdi       48 8b 7b 08
//   3b: mov 16(%rbx), %rsi      48 8b 73 10
//   3f: jmp *%r13               41 ff e5
//   42: mov $14, %eax           b8 0e 00 00 00     rt_sigprocmask
//   47: mov $2, %edi            bf 02 00 00 00     SIG_SETMASK
//   4c: lea 296(%rsp), %rsi     48 8d b4 24 28 01 00 00   uc_sigmask (rsp = frame + 8)
//   54: xor %edx, %edx          31 d2
//   56: mov $8, %r10d           41 ba 08 00 00 00
//   5c: syscall                 0f 05
//   5e: mov $219, %eax          b8 db 00 00 00     restart_syscall
//   63: syscall                 0f 05
//   65: mov %rax, 144(%rsp)     48 89 84 24 90 00 00 00   uc_mcontext.rax
//   6d: push $15                6a 0f              rt_sigreturn
//   6f: pop %rax                58
//   70: syscall                 0f 05
//   72: mov %rax, %rdi          48 89 c7           unmap_result: munmap(what the call
//   75: mov $11, %eax           b8 0b 00 00 00     just mapped, rsi: its length)
//   7a: syscall                 0f 05
//   7c: jmp *%r14               41 ff e6
//   7f: cmpq $0, c0(%rip)       48 83 3d 39 00 00 00 00   gate: the flag after the code
//   87: jne a8                  75 1f
//   89: dec %r12                49 ff cc
//   8c: je a8                   74 1a              rounds used up
//   8e: mov $271, %eax          b8 0f 01 00 00     ppoll(NULL, 0, &1 ms, NULL, 0): a
//   93: xor %edi, %edi          31 ff              sleep that leaves the task's
//   95: xor %esi, %esi          31 f6              restart block alone
//   97: lea b0(%rip), %rdx      48 8d 15 12 00 00 00
//   9e: xor %r10d, %r10d        45 31 d2
//   a1: xor %r8d, %r8d          45 31 c0
//   a4: syscall                 0f 05
//   a6: jmp 7f                  eb d7
//   a8: jmp *%r15               41 ff e7
//   ab: xchg %eax, %edi         97                 close_result: close(the fd the
//   ac: xchg %eax, %ebx         93                 call just made; rbx: SYS_close),
//   ad: jmp 7a                  eb cb              then jmp *%r14
//   af: nop                     90
//   b0: struct timespec {0, 1000000}
constexpr uint8_t kCode[InjectedCode::kSize] = {
    0x0f, 0x05, 0x41, 0xff, 0xe7, 0x4d, 0x85, 0xe4, 0x74, 0x2a, 0x48, 0x8b, 0x03, 0x48, 0x8b, 0x7b, 0x08, 0x48, 0x8b,
    0x73, 0x10, 0x48, 0x8b, 0x53, 0x18, 0x4c, 0x8b, 0x53, 0x20, 0x4c, 0x8b, 0x43, 0x28, 0x4c, 0x8b, 0x4b, 0x30, 0x0f,
    0x05, 0x48, 0x89, 0x43, 0x38, 0x48, 0x83, 0xc3, 0x40, 0x49, 0xff, 0xcc, 0xeb, 0xd1, 0x48, 0x8b, 0x03, 0x48, 0x8b,
    0x7b, 0x08, 0x48, 0x8b, 0x73, 0x10, 0x41, 0xff, 0xe5, 0xb8, 0x0e, 0x00, 0x00, 0x00, 0xbf, 0x02, 0x00, 0x00, 0x00,
    0x48, 0x8d, 0xb4, 0x24, 0x28, 0x01, 0x00, 0x00, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8,
    0xdb, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x89, 0x84, 0x24, 0x90, 0x00, 0x00, 0x00, 0x6a, 0x0f, 0x58, 0x0f, 0x05,
    0x48, 0x89, 0xc7, 0xb8, 0x0b, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x41, 0xff, 0xe6,
    // gate
    0x48, 0x83, 0x3d, 0x39, 0x00, 0x00, 0x00, 0x00, 0x75, 0x1f, 0x49, 0xff, 0xcc, 0x74, 0x1a, 0xb8, 0x0f, 0x01, 0x00,
    0x00, 0x31, 0xff, 0x31, 0xf6, 0x48, 0x8d, 0x15, 0x12, 0x00, 0x00, 0x00, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xc0, 0x0f,
    0x05, 0xeb, 0xd7, 0x41, 0xff, 0xe7, 0x97, 0x93, 0xeb, 0xcb, 0x90,
    // the gate's timespec: 0 s, 1000000 ns
    0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x42, 0x0f, 0, 0, 0, 0, 0};
static_assert(kCode[InjectedCode::kAfterLoopSyscall - 2] == 0x0f && kCode[InjectedCode::kRestart] == 0xb8 &&
              kCode[InjectedCode::kSigreturn] == 0x6a && kCode[InjectedCode::kUnmapResult] == 0x48 &&
              kCode[InjectedCode::kGate] == 0x48 && kCode[InjectedCode::kAfterGateSyscall - 2] == 0x0f &&
              kCode[InjectedCode::kCloseResult] == 0x97 && kCode[0xb8] == 0x40);

std::atomic<bool> g_fallback_for_test{false};

// The code and its gate's flag, closed (0).
std::array<uint8_t, InjectedCode::kRoom> CodeWithClosedGate() {
  std::array<uint8_t, InjectedCode::kRoom> out{};
  std::memcpy(out.data(), kCode, InjectedCode::kSize);
  return out;
}

std::string Pid(pid_t pid) { return "pid " + std::to_string(pid); }

Status ReadAt(int fd, pid_t pid, uint64_t addr, void* out, size_t n) {
  if (::pread(fd, out, n, static_cast<off_t>(addr)) != static_cast<ssize_t>(n))
    return Status::FromErrno("reading the vDSO of " + Pid(pid));
  return Status::Ok();
}

// The end of everything the vDSO's ELF header describes, or 0 if it does not
// look like one.
Result<uint64_t> ElfExtent(int mem, pid_t pid, uint64_t vdso, uint64_t size) {
  Elf64_Ehdr eh;
  CRYO_RETURN_IF_ERROR(ReadAt(mem, pid, vdso, &eh, sizeof(eh)));
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
    return Status::Error("the vDSO of " + Pid(pid) + " does not start with a 64-bit ELF header");
  uint64_t end = sizeof(eh);
  auto within = [&](uint64_t off, uint64_t len) { return off <= size && len <= size - off; };
  const uint64_t ph_len = uint64_t{eh.e_phnum} * eh.e_phentsize, sh_len = uint64_t{eh.e_shnum} * eh.e_shentsize;
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || !within(eh.e_phoff, ph_len) ||
      (eh.e_shnum && (eh.e_shentsize != sizeof(Elf64_Shdr) || !within(eh.e_shoff, sh_len))))
    return uint64_t{0};
  end = std::max({end, eh.e_phoff + ph_len, eh.e_shoff + sh_len});
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  CRYO_RETURN_IF_ERROR(ReadAt(mem, pid, vdso + eh.e_phoff, ph.data(), ph_len));
  for (const Elf64_Phdr& p : ph) {
    if (!within(p.p_offset, p.p_filesz)) return uint64_t{0};
    end = std::max(end, p.p_offset + p.p_filesz);
  }
  std::vector<Elf64_Shdr> sh(eh.e_shnum);
  if (sh_len) CRYO_RETURN_IF_ERROR(ReadAt(mem, pid, vdso + eh.e_shoff, sh.data(), sh_len));
  for (const Elf64_Shdr& s : sh) {
    if (s.sh_type == SHT_NOBITS) continue;
    if (!within(s.sh_offset, s.sh_size)) return uint64_t{0};
    end = std::max(end, s.sh_offset + s.sh_size);
  }
  return end;
}

}  // namespace

void InjectedCode::SetFallbackForTest(bool on) { g_fallback_for_test = on; }

Status PokeMem(int mem_fd, pid_t pid, uint64_t addr, const void* data, size_t n) {
  const ssize_t w = ::pwrite(mem_fd, data, n, static_cast<off_t>(addr));
  if (w != static_cast<ssize_t>(n)) {
    if (w >= 0) errno = EIO;
    char where[32];
    snprintf(where, sizeof(where), "%#llx", static_cast<unsigned long long>(addr));
    return Status::FromErrno("writing " + std::to_string(n) + " bytes at " + where + " of " + Pid(pid) +
                             " through /proc/PID/mem");
  }
  return Status::Ok();
}

Result<InjectedCode> InjectedCode::Find(pid_t pid, const std::vector<proc::Vma>& vmas) {
  InjectedCode c;
  c.pid_ = pid;
  const proc::Vma* vdso = nullptr;
  for (const proc::Vma& v : vmas)
    if (v.name == "[vdso]") vdso = &v;
  if (!vdso)
    return Status::Error(Pid(pid) + " has no vDSO, where cryo puts the code that lets a task return to its own "
                         "state by itself should cryo die during a remote call");
  const std::string path = "/proc/" + std::to_string(pid) + "/mem";
  c.mem_.reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!c.mem_.valid()) return Status::FromErrno("open " + path);
  const uint64_t size = vdso->end - vdso->start;
  CRYO_ASSIGN_OR_RETURN(uint64_t extent, ElfExtent(c.mem_.get(), pid, vdso->start, size));
  const uint64_t at = (extent + 63) & ~uint64_t{63};
  if (extent && !g_fallback_for_test && at + kRoom <= size) {
    uint8_t there[kRoom];
    CRYO_RETURN_IF_ERROR(ReadAt(c.mem_.get(), pid, vdso->start + at, there, sizeof(there)));
    // Zero (never written), or this very code with any flag (left by a cryo
    // that died).
    static constexpr uint8_t kZero[kRoom] = {};
    if (!std::memcmp(there, kZero, kRoom) || !std::memcmp(there, kCode, kSize)) c.tail_ = vdso->start + at;
  }
  c.boot_ = vdso->start + kEiPad;
  if (!c.tail_) CRYO_RETURN_IF_ERROR(ReadAt(c.mem_.get(), pid, c.boot_, c.saved_, sizeof(c.saved_)));
  return c;
}

Result<InjectedCode::Place> InjectedCode::Locate(pid_t tid, uint64_t rip) const {
  Place p;
  uint8_t boot[sizeof(kBootCode)];
  if (rip >= boot_ && rip < boot_ + sizeof(kBootCode)) {
    CRYO_RETURN_IF_ERROR(ReadAt(mem_.get(), tid, boot_, boot, sizeof(boot)));
    if (std::memcmp(boot, kBootCode, sizeof(boot)) == 0) {
      p.inside = p.boot = true;
      p.offset = rip - boot_;
      p.after_push = p.offset == 4;
    }
    return p;
  }
  // The code starts the vDSO's tail, or a page (the fallback).
  const uint64_t start = tail_ && rip >= tail_ && rip < tail_ + kSize ? tail_ : rip & ~uint64_t{4095};
  if (rip - start >= kSize) return p;
  uint8_t there[kSize];
  struct iovec local = {there, kSize}, remote = {reinterpret_cast<void*>(start), kSize};
  if (process_vm_readv(tid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(kSize) ||
      std::memcmp(there, kCode, kSize) != 0)
    return p;
  p.inside = true;
  p.offset = rip - start;
  p.after_push = p.offset == kSigreturn + 2;
  return p;
}

Status InjectedCode::Install() {
  if (installed_) return Status::Ok();
  if (in_vdso()) {
    CRYO_RETURN_IF_ERROR(PokeMem(mem_.get(), pid_, tail_, CodeWithClosedGate().data(), kRoom)
                             .Prefixed("cryo's code in the vDSO"));
    base_ = tail_;
  } else {
    CRYO_RETURN_IF_ERROR(PokeMem(mem_.get(), pid_, boot_, kBootCode, sizeof(kBootCode)).Prefixed("cryo's code in the vDSO"));
  }
  installed_ = true;
  return Status::Ok();
}

Status InjectedCode::InstallAt(uint64_t addr) {
  CRYO_RETURN_IF_ERROR(PokeMem(mem_.get(), pid_, addr, CodeWithClosedGate().data(), kRoom).Prefixed("cryo's code"));
  base_ = addr;
  return Status::Ok();
}

Status InjectedCode::OpenGate() {
  if (!base_) return Status::Ok();
  const uint64_t open = 1;
  return PokeMem(mem_.get(), pid_, base_ + kGateFlag, &open, sizeof(open)).Prefixed("opening cryo's gate");
}

Status InjectedCode::Remove() {
  if (!installed_) return Status::Ok();
  static constexpr uint8_t kZero[kRoom] = {};
  if (in_vdso())
    CRYO_RETURN_IF_ERROR(PokeMem(mem_.get(), pid_, tail_, kZero, kRoom).Prefixed("the vDSO's bytes"));
  else
    CRYO_RETURN_IF_ERROR(PokeMem(mem_.get(), pid_, boot_, saved_, sizeof(saved_)).Prefixed("the vDSO's bytes"));
  installed_ = false;
  base_ = 0;
  return Status::Ok();
}

}  // namespace cryo
