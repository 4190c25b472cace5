#include "inject/sigframe.h"

#include <gtest/gtest.h>

#include <cstring>

namespace cryo {
namespace {

uint32_t U32(const std::string& b, size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, sizeof(v));
  return v;
}
uint64_t U64(const std::string& b, size_t off) {
  uint64_t v;
  std::memcpy(&v, b.data() + off, sizeof(v));
  return v;
}

user_regs_struct SomeRegs() {
  user_regs_struct r{};
  r.rsp = 0x7ffd00001238;
  r.rip = 0x401000;
  r.rax = 7;
  r.r15 = 15;
  r.cs = 0x33;
  r.ss = 0x2b;
  r.eflags = 0x246;
  return r;
}

std::string SomeXsave(size_t n = 2696) {
  std::string x(n, '\0');
  for (size_t i = 0; i < 464; ++i) x[i] = static_cast<char>(i);
  const uint64_t xcr0 = 0xe7;
  std::memcpy(x.data() + 464, &xcr0, sizeof(xcr0));  // ptrace's layout: XCR0 in the first sw_reserved word
  return x;
}

TEST(SigFrameTest, LaidOutLikeTheKernels) {
  const user_regs_struct r = SomeRegs();
  const std::string xs = SomeXsave();
  auto f = BuildSigFrame(r, 0x1234, xs);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const std::string& b = f->bytes;
  // Below the red zone, rsp for rt_sigreturn 16-byte aligned, and nothing above.
  EXPECT_EQ(f->addr + b.size() <= r.rsp - kRedZone, true);
  EXPECT_EQ((f->addr + 8) % 16, 0u);
  const uint64_t fp = U64(b, 48 + 8 * 23);  // uc_mcontext.fpstate
  EXPECT_EQ(fp % 64, 0u);
  const size_t at = fp - f->addr;
  EXPECT_EQ(U64(b, 8) & 7, 7u);                  // uc_flags: FP_XSTATE | SIGCONTEXT_SS | STRICT_RESTORE_SS
  EXPECT_EQ(static_cast<int32_t>(U32(b, 32)), 3);  // uc_stack.ss_flags: invalid, the altstack stays
  EXPECT_EQ(U64(b, 48 + 8 * 13), 7u);            // rax
  EXPECT_EQ(U64(b, 48 + 8 * 15), r.rsp);         // rsp
  EXPECT_EQ(U64(b, 48 + 8 * 16), r.rip);         // rip
  EXPECT_EQ(U64(b, 304), 0x1234u);               // uc_sigmask
  // The FPU area in the signal-frame layout.
  EXPECT_EQ(b.compare(at, 464, xs, 0, 464), 0);
  EXPECT_EQ(U32(b, at + 464), 0x46505853u);      // FP_XSTATE_MAGIC1
  EXPECT_EQ(U32(b, at + 468), xs.size() + 4);    // extended_size
  EXPECT_EQ(U64(b, at + 472), 0xe7u);            // xfeatures
  EXPECT_EQ(U32(b, at + 480), xs.size());        // xstate_size
  EXPECT_EQ(U32(b, at + xs.size()), 0x46505845u);  // FP_XSTATE_MAGIC2
  EXPECT_EQ(at + xs.size() + 4, b.size());
}

TEST(SigFrameTest, ParsesBackWhatItWroteAndNothingElse) {
  user_regs_struct r = SomeRegs();
  FrameNote note;
  note.restart = true;
  note.orig_rax = 230;
  auto f = BuildSigFrame(r, 0x8000, SomeXsave(), note);
  ASSERT_TRUE(f.ok());
  user_regs_struct base{};
  base.fs_base = 0x1111;
  auto p = ParseSigFrame(f->bytes.data(), base);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->regs.rip, r.rip);
  EXPECT_EQ(p->regs.r15, 15u);
  EXPECT_EQ(p->regs.fs_base, 0x1111u);
  EXPECT_EQ(p->blocked, 0x8000u);
  EXPECT_TRUE(p->note.restart);
  EXPECT_EQ(p->note.orig_rax, 230u);
  std::string junk(kSigFrameHead, 'x');
  EXPECT_FALSE(ParseSigFrame(junk.data(), base).ok());
}

TEST(SigFrameTest, RefusesAStackPointerWithNoRoomBelow) {
  user_regs_struct r = SomeRegs();
  r.rsp = 1024;
  EXPECT_FALSE(BuildSigFrame(r, 0, SomeXsave()).ok());
}

}  // namespace
}  // namespace cryo
