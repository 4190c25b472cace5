#include "mem/aio_context_remote.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "inject/test_child.h"
#include "proc/proc.h"
#include "seize/seize.h"

namespace cryo {
namespace {

long Sys(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0) {
  return ::syscall(nr, a1, a2, a3, a4, a5);
}

struct ChildInfo {
  uint64_t ctx, place, idle;
};

// The child: a context with 3 completions not reaped (reads 102..104) and a
// placeholder mapping for a second ring; then, once told, checks both
// contexts and answers 0 or the number of the check that failed.
[[noreturn]] void Child(int to_parent, int from_parent) {
  aio_context_t ctx = 0;
  if (Sys(SYS_io_setup, 8, reinterpret_cast<uint64_t>(&ctx)) != 0) _exit(10);
  const int f = ::memfd_create("aio_remote_test", 0);
  char bytes[64];
  for (int i = 0; i < 64; ++i) bytes[i] = static_cast<char>(i);
  if (f < 0 || ::write(f, bytes, sizeof(bytes)) != 64) _exit(11);
  static char buf[64];
  auto read1 = [&](aio_context_t c, uint64_t data, int off) {
    iocb cb{};
    cb.aio_data = data;
    cb.aio_lio_opcode = IOCB_CMD_PREAD;
    cb.aio_fildes = static_cast<uint32_t>(f);
    cb.aio_buf = reinterpret_cast<uint64_t>(&buf[off]);
    cb.aio_nbytes = 1;
    cb.aio_offset = off;
    iocb* list[1] = {&cb};
    return Sys(SYS_io_submit, c, 1, reinterpret_cast<uint64_t>(list)) == 1;
  };
  io_event ev[8];
  timespec zero{};
  for (int i = 0; i < 5; ++i)
    if (!read1(ctx, 100 + i, i)) _exit(12);
  if (Sys(SYS_io_getevents, ctx, 2, 2, reinterpret_cast<uint64_t>(ev), reinterpret_cast<uint64_t>(&zero)) != 2) _exit(13);
  aio_context_t idle = 0;  // every completion reaped
  if (Sys(SYS_io_setup, 8, reinterpret_cast<uint64_t>(&idle)) != 0) _exit(18);
  for (int i = 0; i < 3; ++i)
    if (!read1(idle, 300 + i, i)) _exit(19);
  if (Sys(SYS_io_getevents, idle, 3, 3, reinterpret_cast<uint64_t>(ev), reinterpret_cast<uint64_t>(&zero)) != 3) _exit(20);
  void* place = ::mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (place == MAP_FAILED) _exit(14);
  ChildInfo info{ctx, reinterpret_cast<uint64_t>(place), idle};
  if (::write(to_parent, &info, sizeof(info)) != sizeof(info)) _exit(15);
  char go;
  if (::read(from_parent, &go, 1) != 1) _exit(16);
  char verdict = 0;
  for (aio_context_t c : {static_cast<aio_context_t>(info.place), ctx}) {
    long n = Sys(SYS_io_getevents, c, 3, 8, reinterpret_cast<uint64_t>(ev), reinterpret_cast<uint64_t>(&zero));
    if (n != 3) verdict = verdict ? verdict : 1;
    for (int i = 0; i < 3 && n == 3; ++i)
      if (ev[i].data != 102u + i || ev[i].res != 1) verdict = verdict ? verdict : 2;
    if (!read1(c, 200, 9)) verdict = verdict ? verdict : 3;
    if (Sys(SYS_io_getevents, c, 1, 8, reinterpret_cast<uint64_t>(ev), reinterpret_cast<uint64_t>(&zero)) != 1 ||
        ev[0].data != 200 || buf[9] != 9)
      verdict = verdict ? verdict : 4;
    if (Sys(SYS_io_destroy, c) != 0) verdict = verdict ? verdict : 5;
  }
  if (Sys(SYS_io_getevents, idle, 0, 8, reinterpret_cast<uint64_t>(ev), reinterpret_cast<uint64_t>(&zero)) != 0)
    verdict = verdict ? verdict : 6;  // none of the probe's left
  if (!read1(idle, 400, 5) ||
      Sys(SYS_io_getevents, idle, 1, 8, reinterpret_cast<uint64_t>(ev), reinterpret_cast<uint64_t>(&zero)) != 1 ||
      ev[0].data != 400)
    verdict = verdict ? verdict : 7;
  if (::write(to_parent, &verdict, 1) != 1) _exit(17);
  _exit(0);
}

// The probe of an idle context and its ring put back in a fresh one, both
// by remote calls in another process, whose program then finds the same
// completions in both and goes on using both; and the probe in one batch of
// a context with all its completions reaped, which the program finds empty.
TEST(AioContextRemoteTest, ProbeAndReplayInAStoppedProcess) {
  auto cpus = PossibleCpus();
  ASSERT_TRUE(cpus.ok());
  int up[2], down[2];
  ASSERT_EQ(::pipe(up), 0);
  ASSERT_EQ(::pipe(down), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) Child(up[1], down[0]);
  KillOnExit guard{pid};
  ::close(up[1]);
  ::close(down[0]);
  ChildInfo info{};
  ASSERT_EQ(::read(up[0], &info, sizeof(info)), static_cast<ssize_t>(sizeof(info)));
  for (int i = 0; i < 500; ++i) {  // asleep in read(2): seized where it waits
    auto st = proc::ReadStat(pid);
    ASSERT_TRUE(st.ok());
    if (st->state == 'S') break;
    usleep(2000);
  }
  {
    auto seized = SeizedProcess::Seize(pid);
    ASSERT_TRUE(seized.ok()) << seized.status().ToString();
    auto vmas = proc::ReadVmas(pid);
    auto status = proc::ReadStatus(pid);
    ASSERT_TRUE(vmas.ok() && status.ok());
    auto rs = RemoteSyscaller::Attach(**seized, *vmas, status->sig_ign, status->sig_cgt);
    ASSERT_TRUE(rs.ok()) << rs.status().ToString();
    ASSERT_TRUE((*rs)->MapScratch(64 << 10).ok());
    {
      auto t = RemoteAioTarget::Make(**rs);
      ASSERT_TRUE(t.ok()) << t.status().ToString();
      auto p = ProbeAioContext(**t, info.ctx, *cpus);
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      EXPECT_EQ(p->unaccounted, 0u);
      ASSERT_EQ(p->ring.unreaped.size(), 3u);
      auto made = SetupAioContextAt(**t, info.place, p->ring.nr, cpus->size());
      ASSERT_TRUE(made.ok()) << made.status().ToString();
      EXPECT_EQ(*made, info.place);
      Status st = ReplayAioRing(**t, *made, p->ring);
      EXPECT_TRUE(st.ok()) << st.ToString();
      ASSERT_TRUE((*rs)->batch_in_one_stop());
      auto q = ProbeIdleAioContextInOneBatch(**t, info.idle, *cpus);
      ASSERT_TRUE(q.ok()) << q.status().ToString();
      EXPECT_EQ(q->unaccounted, 0u);
      EXPECT_GT(q->drained, 0u);
      EXPECT_TRUE((*t)->Close().ok());
    }
    ASSERT_TRUE((*rs)->Finish().ok());
    rs->reset();
    ASSERT_TRUE((*seized)->Detach().ok());
  }
  ASSERT_EQ(::write(down[1], "g", 1), 1);
  char verdict = -1;
  ASSERT_EQ(::read(up[0], &verdict, 1), 1);
  EXPECT_EQ(verdict, 0) << "check " << int(verdict) << " failed in the child";
  int ws = 0;
  ASSERT_EQ(::waitpid(pid, &ws, 0), pid);
  guard.reaped = true;
  EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0) << ws;
  ::close(up[0]);
  ::close(down[1]);
}

}  // namespace
}  // namespace cryo
