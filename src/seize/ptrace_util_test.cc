#include "seize/ptrace_util.h"

#include <gtest/gtest.h>
#include <sys/syscall.h>

namespace cryo {
namespace {

user_regs_struct InSyscall(long ret) {
  user_regs_struct r{};
  r.orig_rax = SYS_nanosleep;
  r.rax = static_cast<unsigned long long>(ret);
  r.rip = 0x1000;
  return r;
}

TEST(SyscallRestartTest, RestartsInterruptedCall) {
  for (long code : {-512L, -513L, -514L}) {
    user_regs_struct r = InSyscall(code);
    ApplySyscallRestart(&r);
    EXPECT_EQ(r.rax, static_cast<unsigned long long>(SYS_nanosleep));
    EXPECT_EQ(r.rip, 0x1000u - 2);
    EXPECT_EQ(static_cast<long>(r.orig_rax), -1);
  }
}

TEST(SyscallRestartTest, RestartBlockBecomesRestartSyscall) {
  user_regs_struct r = InSyscall(-516);
  ApplySyscallRestart(&r);
  EXPECT_EQ(r.rax, static_cast<unsigned long long>(SYS_restart_syscall));
  EXPECT_EQ(r.rip, 0x1000u - 2);
}

TEST(SyscallRestartTest, CompletedCallIsLeftAlone) {
  user_regs_struct r = InSyscall(-4 /* EINTR */);
  ApplySyscallRestart(&r);
  EXPECT_EQ(static_cast<long>(r.rax), -4);
  EXPECT_EQ(r.rip, 0x1000u);
}

TEST(SyscallRestartTest, NotInSyscall) {
  user_regs_struct r{};
  r.orig_rax = static_cast<unsigned long long>(-1);
  r.rax = static_cast<unsigned long long>(-512);
  r.rip = 0x2000;
  ApplySyscallRestart(&r);
  EXPECT_EQ(r.rip, 0x2000u);
}

TEST(SyscallRestartAfterRestoreTest, RelativeSleepIsIssuedAgainForWhatWasLeft) {
  user_regs_struct r = InSyscall(-516);
  r.rdi = 0x5000;  // req
  r.rsi = 0x6000;  // rem, where the kernel wrote the time left
  ApplySyscallRestartAfterRestore(&r);
  EXPECT_EQ(r.rax, static_cast<unsigned long long>(SYS_nanosleep));
  EXPECT_EQ(r.rdi, 0x6000u);
  EXPECT_EQ(r.rip, 0x1000u - 2);
  EXPECT_EQ(static_cast<long>(r.orig_rax), -1);

  user_regs_struct c{};
  c.orig_rax = SYS_clock_nanosleep;
  c.rax = static_cast<unsigned long long>(-516);
  c.rip = 0x1000;
  c.rsi = 0;       // relative
  c.rdx = 0x5000;  // req
  c.r10 = 0x6000;  // rem
  ApplySyscallRestartAfterRestore(&c);
  EXPECT_EQ(c.rax, static_cast<unsigned long long>(SYS_clock_nanosleep));
  EXPECT_EQ(c.rdx, 0x6000u);
}

TEST(SyscallRestartAfterRestoreTest, AbsoluteSleepKeepsItsArguments) {
  user_regs_struct c{};
  c.orig_rax = SYS_clock_nanosleep;
  c.rax = static_cast<unsigned long long>(-516);
  c.rip = 0x1000;
  c.rsi = 1;  // TIMER_ABSTIME
  c.rdx = 0x5000;
  c.r10 = 0x6000;
  ApplySyscallRestartAfterRestore(&c);
  EXPECT_EQ(c.rax, static_cast<unsigned long long>(SYS_clock_nanosleep));
  EXPECT_EQ(c.rdx, 0x5000u);
  EXPECT_EQ(c.rip, 0x1000u - 2);
}

TEST(SyscallRestartAfterRestoreTest, OtherRestartBlocksReturnEintr) {
  user_regs_struct r = InSyscall(-516);
  r.orig_rax = SYS_poll;
  ApplySyscallRestartAfterRestore(&r);
  EXPECT_EQ(static_cast<long>(r.rax), -4);
  EXPECT_EQ(r.rip, 0x1000u);
  user_regs_struct s = InSyscall(-512);
  ApplySyscallRestartAfterRestore(&s);  // the others as ApplySyscallRestart
  EXPECT_EQ(s.rax, static_cast<unsigned long long>(SYS_nanosleep));
  EXPECT_EQ(s.rip, 0x1000u - 2);
}

TEST(XsaveTest, SizeCoversLegacyArea) { EXPECT_GE(XsaveSize(), 576u); }

}  // namespace
}  // namespace cryo
