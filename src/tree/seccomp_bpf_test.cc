#include "tree/seccomp_bpf.h"

#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/syscall.h>

#include <string>
#include <vector>

namespace cryo {
namespace {

std::string Prog(const std::vector<sock_filter>& insns) {
  return std::string(reinterpret_cast<const char*>(insns.data()), insns.size() * sizeof(sock_filter));
}

SeccompCall Call(int nr, uint64_t a0 = 0) {
  SeccompCall c;
  c.nr = nr;
  c.args[0] = a0;
  return c;
}

// On x86_64: `nr` -> `action`, everything else allowed (the workloads' kind).
std::string Deny(int nr, uint32_t action) {
  return Prog({
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, action),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  });
}

TEST(SeccompBpf, DenyList) {
  const std::string p = Deny(SYS_munmap, SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(*RunSeccompProgram(p, Call(SYS_munmap)), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(*RunSeccompProgram(p, Call(SYS_rt_sigreturn)), SECCOMP_RET_ALLOW);
  SeccompCall other = Call(SYS_munmap);
  other.arch = AUDIT_ARCH_I386;
  EXPECT_EQ(*RunSeccompProgram(p, other), SECCOMP_RET_ALLOW);
}

TEST(SeccompBpf, ArgumentsAluAndScratch) {
  // prctl(option): allowed only for option < 16 after (a0 & 0xff) + 1, via
  // the scratch memory and X; else errno 1.
  const std::string p = Prog({
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xff),
      BPF_STMT(BPF_ALU | BPF_ADD | BPF_K, 1),
      BPF_STMT(BPF_ST, 3),
      BPF_STMT(BPF_LDX | BPF_IMM, 16),
      BPF_STMT(BPF_LD | BPF_MEM, 3),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_X, 0, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1),
  });
  EXPECT_EQ(*RunSeccompProgram(p, Call(SYS_prctl, 3)), SECCOMP_RET_ALLOW);
  EXPECT_EQ(*RunSeccompProgram(p, Call(SYS_prctl, 15)), SECCOMP_RET_ERRNO | 1u);
  EXPECT_EQ(*RunSeccompProgram(p, Call(SYS_prctl, 0x1ff)), SECCOMP_RET_ERRNO | 1u);  // 0xff + 1
  // The high half of an argument is its own word.
  const std::string hi = Prog({
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0]) + 4),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 1, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  });
  EXPECT_EQ(*RunSeccompProgram(hi, Call(0, 1ull << 32)), SECCOMP_RET_TRAP);
  EXPECT_EQ(*RunSeccompProgram(hi, Call(0, 1)), SECCOMP_RET_ALLOW);
}

TEST(SeccompBpf, DivisionByZeroKills) {
  const std::string p = Prog({
      BPF_STMT(BPF_LDX | BPF_IMM, 0),
      BPF_STMT(BPF_LD | BPF_IMM, 7),
      BPF_STMT(BPF_ALU | BPF_DIV | BPF_X, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  });
  EXPECT_EQ(*RunSeccompProgram(p, Call(0)), SECCOMP_RET_KILL_THREAD);
}

TEST(SeccompBpf, Malformed) {
  EXPECT_FALSE(RunSeccompProgram("", Call(0)).ok());
  EXPECT_FALSE(RunSeccompProgram(Prog({BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 64), BPF_STMT(BPF_RET | BPF_K, 0)}), Call(0)).ok());
  EXPECT_FALSE(RunSeccompProgram(Prog({BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, 5)}), Call(0)).ok());
  EXPECT_FALSE(RunSeccompProgram(Prog({BPF_STMT(BPF_LD | BPF_IMM, 0)}), Call(0)).ok());  // runs off its end
  EXPECT_FALSE(RunSeccompProgram(Prog({BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0), BPF_STMT(BPF_RET | BPF_K, 0)}), Call(0)).ok());
}

TEST(SeccompBpf, ChainPrecedence) {
  const std::string errno_enoent = Deny(SYS_getsid, SECCOMP_RET_ERRNO | 2);
  const std::string errno_esrch = Deny(SYS_getsid, SECCOMP_RET_ERRNO | 3);
  const std::string kill = Deny(SYS_munmap, SECCOMP_RET_KILL_PROCESS);
  const std::string trap = Deny(SYS_munmap, SECCOMP_RET_TRAP);
  // Equal actions: the newest decides (the workload's getsid -> ESRCH).
  EXPECT_EQ(*RunSeccompChain({&errno_enoent, &errno_esrch}, Call(SYS_getsid)), SECCOMP_RET_ERRNO | 3u);
  EXPECT_EQ(*RunSeccompChain({&errno_esrch, &errno_enoent}, Call(SYS_getsid)), SECCOMP_RET_ERRNO | 2u);
  // KILL_PROCESS over TRAP, whatever the order.
  EXPECT_EQ(*RunSeccompChain({&kill, &trap}, Call(SYS_munmap)), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(*RunSeccompChain({&trap, &kill}, Call(SYS_munmap)), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(*RunSeccompChain({&trap, &errno_enoent}, Call(SYS_rt_sigreturn)), SECCOMP_RET_ALLOW);
}

}  // namespace
}  // namespace cryo
