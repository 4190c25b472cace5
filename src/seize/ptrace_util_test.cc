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

TEST(XsaveTest, SizeCoversLegacyArea) { EXPECT_GE(XsaveSize(), 576u); }

}  // namespace
}  // namespace cryo
