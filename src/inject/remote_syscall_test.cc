#include "inject/remote_syscall.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>

#include "proc/proc.h"
#include "seize/seize.h"

namespace cryo {
namespace {

enum class Trap { kDefault, kHandled, kIgnored, kDefaultMdwe };

void OnTrap(int) {}

// A child that sets SIGTRAP's disposition, blocks SIGUSR2, then echoes every
// byte it reads on `in` to `out` (so the test can see it runs after detach).
pid_t StartChild(Trap trap, int* to_child, int* from_child) {
  int a[2], b[2];
  if (pipe(a) != 0 || pipe(b) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(a[1]);
    close(b[0]);
    if (trap == Trap::kHandled) signal(SIGTRAP, OnTrap);
    if (trap == Trap::kIgnored) signal(SIGTRAP, SIG_IGN);
    // PR_SET_MDWE (65), PR_MDWE_REFUSE_EXEC_GAIN (1): no writable+executable memory.
    if (trap == Trap::kDefaultMdwe && prctl(65, 1, 0, 0, 0) != 0) _exit(3);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    char c = 'r';
    if (write(b[1], &c, 1) != 1) _exit(1);
    while (read(a[0], &c, 1) == 1)
      if (write(b[1], &c, 1) != 1) _exit(1);
    _exit(0);
  }
  close(a[0]);
  close(b[1]);
  *to_child = a[1];
  *from_child = b[0];
  char c;
  if (read(*from_child, &c, 1) != 1) return -1;
  return pid;
}

struct Observed {
  uint64_t blocked, ignored, caught;
  size_t vmas;
};

Observed Observe(pid_t pid) {
  auto st = proc::ReadStatus(pid);
  auto vmas = proc::ReadVmas(pid);
  EXPECT_TRUE(st.ok() && vmas.ok());
  return {st->sig_blk, st->sig_ign, st->sig_cgt, vmas->size()};
}

void RunBatch(Trap trap, bool expect_one_stop) {
  int to_child = -1, from_child = -1;
  const pid_t pid = StartChild(trap, &to_child, &from_child);
  ASSERT_GT(pid, 0);
  const Observed before = Observe(pid);
  {
    auto seized = SeizedProcess::Seize(pid);
    ASSERT_TRUE(seized.ok()) << seized.status().ToString();
    auto vmas = proc::ReadVmas(pid);
    ASSERT_TRUE(vmas.ok());
    RemoteSyscaller rs(pid, (*seized)->leader().regs);
    ASSERT_TRUE(rs.Prepare(*vmas).ok());
    ASSERT_TRUE(rs.MapScratch(64 << 10).ok());
    // Scratch and loop in one writable+executable mapping, unless MDWE refuses it.
    auto mapped = proc::ReadVmas(pid);
    ASSERT_TRUE(mapped.ok());
    size_t wx = 0;
    for (const proc::Vma& v : *mapped) wx += (v.prot & PROT_WRITE) && (v.prot & PROT_EXEC);
    EXPECT_EQ(wx, trap == Trap::kDefaultMdwe ? 0u : 1u);
    std::vector<RemoteCall> calls(5);
    calls[0].nr = SYS_getpid;
    calls[1].nr = SYS_getppid;
    calls[2].nr = SYS_rt_sigaction;
    calls[2].args[0] = SIGTRAP;
    calls[2].args[2] = rs.scratch();
    calls[2].args[3] = 8;
    calls[3].nr = 100000;  // no such system call
    calls[4].nr = SYS_prctl;
    calls[4].args[0] = PR_GET_DUMPABLE;
    auto r = rs.Batch(calls);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(rs.batch_in_one_stop(), expect_one_stop);
    ASSERT_EQ(r->size(), 5u);
    EXPECT_EQ((*r)[0], pid);
    EXPECT_EQ((*r)[1], getpid());
    EXPECT_EQ((*r)[2], 0);
    EXPECT_EQ((*r)[3], -ENOSYS);
    EXPECT_EQ((*r)[4], 1);
    uint64_t handler = 0;
    ASSERT_TRUE(rs.ReadMem(rs.scratch(), &handler, sizeof(handler)).ok());
    const uint64_t want = trap == Trap::kHandled   ? reinterpret_cast<uint64_t>(&OnTrap)
                          : trap == Trap::kIgnored ? 1
                                                   : 0;
    EXPECT_EQ(handler, want);
    // A second batch reuses the code page; a plain call still works after one.
    r = rs.Batch({calls[0], calls[0]});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)[1], pid);
    auto one = rs.Syscall(SYS_getpid);
    ASSERT_TRUE(one.ok());
    EXPECT_EQ(*one, pid);
    ASSERT_TRUE(rs.Finish().ok());
    ASSERT_TRUE((*seized)->Detach().ok());
  }
  // Untouched: same mask, same SIGTRAP disposition, no mapping left behind, running.
  const Observed after = Observe(pid);
  EXPECT_EQ(after.blocked, before.blocked);
  EXPECT_EQ(after.ignored, before.ignored);
  EXPECT_EQ(after.caught, before.caught);
  EXPECT_EQ(after.vmas, before.vmas);
  char c = 'x';
  ASSERT_EQ(write(to_child, &c, 1), 1);
  ASSERT_EQ(read(from_child, &c, 1), 1);
  EXPECT_EQ(c, 'x');
  close(to_child);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(from_child);
}

// Threads of one process run their batches at the same time, each with its
// own table and outputs; every thread answers for itself.
constexpr int kThreads = 8;
char g_altstacks[kThreads][16384];

struct ThreadArg {
  int i;
  int out;
};

void* SetUpThread(void* p) {
  const ThreadArg* a = static_cast<ThreadArg*>(p);
  stack_t ss = {};
  ss.ss_sp = g_altstacks[a->i];
  ss.ss_size = sizeof(g_altstacks[a->i]);
  sigaltstack(&ss, nullptr);
  prctl(PR_SET_TIMERSLACK, 1000 + a->i);
  const int rec[2] = {a->i, static_cast<int>(syscall(SYS_gettid))};
  if (write(a->out, rec, sizeof(rec)) != sizeof(rec)) _exit(1);
  for (;;) pause();
  return nullptr;
}

TEST(RemoteBatchTest, ThreadsRunTheirBatchesTogether) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    static ThreadArg args[kThreads];
    for (int i = 0; i < kThreads; ++i) {
      args[i] = {i, fds[1]};
      pthread_t t;
      if (pthread_create(&t, nullptr, SetUpThread, &args[i]) != 0) _exit(1);
    }
    for (;;) pause();
  }
  close(fds[1]);
  std::map<pid_t, int> index;  // tid -> i
  for (int k = 0; k < kThreads; ++k) {
    int rec[2];
    ASSERT_EQ(read(fds[0], rec, sizeof(rec)), static_cast<ssize_t>(sizeof(rec)));
    index[rec[1]] = rec[0];
  }
  {
    auto seized = SeizedProcess::Seize(pid);
    ASSERT_TRUE(seized.ok()) << seized.status().ToString();
    auto vmas = proc::ReadVmas(pid);
    ASSERT_TRUE(vmas.ok());
    RemoteSyscaller rs(pid, (*seized)->leader().regs);
    ASSERT_TRUE(rs.Prepare(*vmas).ok());
    ASSERT_TRUE(rs.MapScratch(64 << 10).ok());
    RemoteCall getpid_call;
    getpid_call.nr = SYS_getpid;
    ASSERT_TRUE(rs.Batch({getpid_call}).ok());
    ASSERT_TRUE(rs.batch_in_one_stop());
    std::vector<std::unique_ptr<RemoteSyscaller>> trs;
    for (SeizedTask& t : (*seized)->threads()) {
      if (t.tid == pid) continue;
      auto r = rs.ForThread(t.tid, t.regs);
      ASSERT_TRUE(r.ok());
      trs.push_back(std::move(*r));
    }
    ASSERT_EQ(trs.size(), static_cast<size_t>(kThreads));
    for (size_t k = 0; k < trs.size(); ++k) {
      std::vector<RemoteCall> calls(2);
      calls[0].nr = SYS_sigaltstack;
      calls[0].args[1] = rs.scratch() + 4096 + k * 64;
      calls[1].nr = SYS_prctl;
      calls[1].args[0] = PR_GET_TIMERSLACK;
      ASSERT_TRUE(trs[k]->StartBatch(calls, rs.scratch() + 16384 + k * 2 * 64).ok());
    }
    for (size_t k = 0; k < trs.size(); ++k) {
      SCOPED_TRACE("thread " + std::to_string(k));
      auto r = trs[k]->FinishBatch();
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      const int i = index.at((*seized)->threads()[k + 1].tid);
      EXPECT_EQ((*r)[0], 0);
      EXPECT_EQ((*r)[1], 1000 + i);
      stack_t ss;
      ASSERT_TRUE(rs.ReadMem(rs.scratch() + 4096 + k * 64, &ss, sizeof(ss)).ok());
      EXPECT_EQ(ss.ss_sp, g_altstacks[i]);
    }
    ASSERT_TRUE(rs.Finish().ok());
    ASSERT_TRUE((*seized)->Detach().ok());
  }
  kill(pid, SIGKILL);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(fds[0]);
}

TEST(RemoteBatchTest, OneStopWhenSigtrapIsDefault) { RunBatch(Trap::kDefault, true); }
TEST(RemoteBatchTest, OneStopUnderMdweWithASeparateCodePage) { RunBatch(Trap::kDefaultMdwe, true); }
TEST(RemoteBatchTest, OneByOneWhenSigtrapIsHandled) { RunBatch(Trap::kHandled, false); }
TEST(RemoteBatchTest, OneByOneWhenSigtrapIsIgnored) { RunBatch(Trap::kIgnored, false); }

}  // namespace
}  // namespace cryo
