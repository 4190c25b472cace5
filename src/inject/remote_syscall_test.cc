#include "inject/remote_syscall.h"
#include "inject/test_child.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>

#include "inject/injected_code.h"
#include "proc/proc.h"
#include "seize/seize.h"

namespace cryo {
namespace {

// kDefault: SIGWINCH is free to end batches with; kMdwe: the same under
// PR_SET_MDWE; kIgnoredOnly: every signal ignored by default is caught or
// blocked, SIGPIPE is ignored; kNone: no signal can end a batch.
enum class Trap { kDefault, kMdwe, kIgnoredOnly, kNone };

void OnSignal(int) {}

// A child that sets its dispositions, blocks SIGUSR2, then echoes every byte
// it reads on `in` to `out` (so the test can see it runs after detach).
pid_t StartChild(Trap trap, int* to_child, int* from_child) {
  int a[2], b[2];
  if (pipe(a) != 0 || pipe(b) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(a[1]);
    close(b[0]);
    if (trap == Trap::kIgnoredOnly || trap == Trap::kNone) {
      signal(SIGWINCH, OnSignal);
      signal(SIGURG, OnSignal);
    }
    if (trap == Trap::kIgnoredOnly) signal(SIGPIPE, SIG_IGN);
    // PR_SET_MDWE (65), PR_MDWE_REFUSE_EXEC_GAIN (1): no writable+executable memory.
    if (trap == Trap::kMdwe && prctl(65, 1, 0, 0, 0) != 0) _exit(3);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    if (trap == Trap::kIgnoredOnly || trap == Trap::kNone) sigaddset(&set, SIGCHLD);
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
  uint64_t blocked, ignored, caught, pending;
  size_t vmas;
  std::string vdso;  // the vDSO's bytes
  std::string below_sp;  // the 4 KiB below the red zone
  char state;
  std::string tracer;
};

Observed Observe(pid_t pid, uint64_t sp) {
  uint64_t vdso_at = 0;
  auto st = proc::ReadStatus(pid);
  auto stat = proc::ReadStat(pid);
  auto vmas = proc::ReadVmas(pid);
  EXPECT_TRUE(st.ok() && vmas.ok() && stat.ok());
  Observed o{st->sig_blk, st->sig_ign, st->sig_cgt, st->sig_pnd | st->shd_pnd, vmas->size(), "", "", stat->state,
             std::to_string(st->tracer_pid)};
  for (const proc::Vma& v : *vmas)
    if (v.name == "[vdso]") o.vdso.resize(v.end - v.start), vdso_at = v.start;
  struct iovec l = {o.vdso.data(), o.vdso.size()}, r = {reinterpret_cast<void*>(vdso_at), o.vdso.size()};
  EXPECT_EQ(process_vm_readv(pid, &l, 1, &r, 1, 0), static_cast<ssize_t>(o.vdso.size()));
  if (sp) {
    o.below_sp.resize(4096);
    l = {o.below_sp.data(), 4096};
    r = {reinterpret_cast<void*>(sp - 128 - 4096), 4096};
    EXPECT_EQ(process_vm_readv(pid, &l, 1, &r, 1, 0), 4096);
  }
  return o;
}

void RunBatch(Trap trap, bool expect_one_stop, bool fallback) {
  InjectedCode::SetFallbackForTest(fallback);
  int to_child = -1, from_child = -1;
  const pid_t pid = StartChild(trap, &to_child, &from_child);
  ASSERT_GT(pid, 0);
  KillOnExit guard{pid};
  // Blocked in read(2), so that it does not use its stack after the detach
  // before the test looks at it.
  for (int i = 0; i < 500; ++i) {
    auto st = proc::ReadStat(pid);
    ASSERT_TRUE(st.ok());
    if (st->state == 'S') break;
    usleep(2000);
  }
  uint64_t sp = 0;
  Observed before{};
  {
    auto seized = SeizedProcess::Seize(pid);
    ASSERT_TRUE(seized.ok()) << seized.status().ToString();
    sp = (*seized)->leader().regs.rsp;
    before = Observe(pid, sp);
    auto vmas = proc::ReadVmas(pid);
    ASSERT_TRUE(vmas.ok());
    auto rs = RemoteSyscaller::Attach(**seized, *vmas, before.ignored, before.caught);
    ASSERT_TRUE(rs.ok()) << rs.status().ToString();
    ASSERT_TRUE((*rs)->MapScratch(64 << 10).ok());
    // Scratch and loop in one writable+executable mapping, unless MDWE refuses it.
    auto mapped = proc::ReadVmas(pid);
    ASSERT_TRUE(mapped.ok());
    size_t wx = 0;
    for (const proc::Vma& v : *mapped) wx += (v.prot & PROT_WRITE) && (v.prot & PROT_EXEC);
    EXPECT_EQ(wx, fallback && trap != Trap::kMdwe ? 1u : 0u);
    // cryo's code sits in the vDSO while calls run.
    EXPECT_NE(Observe(pid, 0).vdso, before.vdso);
    RemoteSyscaller& r0 = **rs;
    std::vector<RemoteCall> calls(5);
    calls[0].nr = SYS_getpid;
    calls[1].nr = SYS_getppid;
    calls[2].nr = SYS_rt_sigaction;
    calls[2].args[0] = SIGWINCH;
    calls[2].args[2] = r0.scratch();
    calls[2].args[3] = 8;
    calls[3].nr = 100000;  // no such system call
    calls[4].nr = SYS_prctl;
    calls[4].args[0] = PR_GET_DUMPABLE;
    auto r = r0.Batch(calls);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r0.batch_in_one_stop(), expect_one_stop);
    ASSERT_EQ(r->size(), 5u);
    EXPECT_EQ((*r)[0], pid);
    EXPECT_EQ((*r)[1], getpid());
    EXPECT_EQ((*r)[2], 0);
    EXPECT_EQ((*r)[3], -ENOSYS);
    EXPECT_EQ((*r)[4], 1);
    uint64_t handler = 0;
    ASSERT_TRUE(r0.ReadMem(r0.scratch(), &handler, sizeof(handler)).ok());
    const bool handled = trap == Trap::kIgnoredOnly || trap == Trap::kNone;
    EXPECT_EQ(handler, handled ? reinterpret_cast<uint64_t>(&OnSignal) : 0);
    // A second batch reuses the code page; a plain call still works after one.
    r = r0.Batch({calls[0], calls[0]});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)[1], pid);
    auto one = r0.Syscall(SYS_getpid);
    ASSERT_TRUE(one.ok());
    EXPECT_EQ(*one, pid);
    // While cryo works, the task runs with everything blocked but the batch signal.
    auto st = proc::ReadStatus(pid);
    ASSERT_TRUE(st.ok());
    const int end_sig = BatchEndSignal(before.ignored, before.caught, before.blocked);
    EXPECT_EQ(end_sig != 0, expect_one_stop);
    uint64_t want = ~0ULL & ~(1ULL << (SIGKILL - 1)) & ~(1ULL << (SIGSTOP - 1));
    if (end_sig) want &= ~(1ULL << (end_sig - 1));
    EXPECT_EQ(st->sig_blk, want) << std::hex << st->sig_blk;
    ASSERT_TRUE(r0.Finish().ok());
    ASSERT_TRUE((*seized)->Detach().ok());
  }
  // Untouched: same mask, dispositions, pending set, stack under the frame
  // and vDSO bytes, no mapping left behind, running.
  const Observed after = Observe(pid, sp);
  EXPECT_EQ(after.blocked, before.blocked);
  EXPECT_EQ(after.ignored, before.ignored);
  EXPECT_EQ(after.caught, before.caught);
  EXPECT_EQ(after.pending, before.pending);
  EXPECT_EQ(after.vmas, before.vmas);
  EXPECT_EQ(after.vdso, before.vdso);
  EXPECT_EQ(after.below_sp, before.below_sp);
  EXPECT_EQ(after.tracer, "0");
  char c = 'x';
  ASSERT_EQ(write(to_child, &c, 1), 1);
  ASSERT_EQ(read(from_child, &c, 1), 1);
  EXPECT_EQ(c, 'x');
  close(to_child);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  guard.reaped = true;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(from_child);
  InjectedCode::SetFallbackForTest(false);
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
    // Out of pthread_create (which blocks every signal for a moment).
    const int done[2] = {-1, 0};
    if (write(fds[1], done, sizeof(done)) != sizeof(done)) _exit(1);
    for (;;) pause();
  }
  KillOnExit guard{pid};
  close(fds[1]);
  std::map<pid_t, int> index;  // tid -> i
  for (int k = 0; k <= kThreads; ++k) {
    int rec[2];
    ASSERT_EQ(read(fds[0], rec, sizeof(rec)), static_cast<ssize_t>(sizeof(rec)));
    if (rec[0] >= 0) index[rec[1]] = rec[0];
  }
  ASSERT_EQ(index.size(), static_cast<size_t>(kThreads));
  {
    auto seized = SeizedProcess::Seize(pid);
    ASSERT_TRUE(seized.ok()) << seized.status().ToString();
    auto vmas = proc::ReadVmas(pid);
    ASSERT_TRUE(vmas.ok());
    auto st = proc::ReadStatus(pid);
    ASSERT_TRUE(st.ok());
    auto attached = RemoteSyscaller::Attach(**seized, *vmas, st->sig_ign, st->sig_cgt);
    ASSERT_TRUE(attached.ok()) << attached.status().ToString();
    RemoteSyscaller& rs = **attached;
    ASSERT_TRUE(rs.MapScratch(64 << 10).ok());
    RemoteCall getpid_call;
    getpid_call.nr = SYS_getpid;
    ASSERT_TRUE(rs.Batch({getpid_call}).ok());
    ASSERT_TRUE(rs.batch_in_one_stop());
    std::vector<std::unique_ptr<RemoteSyscaller>> trs;
    for (SeizedTask& t : (*seized)->threads()) {
      if (t.tid == pid) continue;
      auto r = rs.ForThread(t);
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
      ASSERT_TRUE(trs[k]->StartBatch(calls, rs.scratch() + 16384 + k * RemoteSyscaller::TableBytes(2)).ok());
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
    trs.clear();
    ASSERT_TRUE(rs.Finish().ok());
    ASSERT_TRUE((*seized)->Detach().ok());
  }
  close(fds[0]);
}

class RemoteBatchModes : public testing::TestWithParam<bool> {};

TEST_P(RemoteBatchModes, OneStopEndedBySigwinch) { RunBatch(Trap::kDefault, true, GetParam()); }
TEST_P(RemoteBatchModes, OneStopUnderMdwe) { RunBatch(Trap::kMdwe, true, GetParam()); }
TEST_P(RemoteBatchModes, OneStopEndedByAnIgnoredSignal) { RunBatch(Trap::kIgnoredOnly, true, GetParam()); }
TEST_P(RemoteBatchModes, OneByOneWithoutASignalToEndWith) { RunBatch(Trap::kNone, false, GetParam()); }

// The code in the vDSO's tail, or the fallback: 7 bytes at EI_PAD and a page of cryo's.
INSTANTIATE_TEST_SUITE_P(CodePlaces, RemoteBatchModes, testing::Values(false, true),
                         [](const testing::TestParamInfo<bool>& i) { return i.param ? "Fallback" : "InVdso"; });

TEST(BatchEndSignalTest, PrefersSignalsIgnoredByDefaultThenIgnoredOnes) {
  auto bit = [](int sig) { return 1ULL << (sig - 1); };
  EXPECT_EQ(BatchEndSignal(0, 0, 0), SIGWINCH);
  EXPECT_EQ(BatchEndSignal(0, bit(SIGWINCH), 0), SIGURG);
  EXPECT_EQ(BatchEndSignal(0, bit(SIGWINCH), bit(SIGURG)), SIGCHLD);
  const uint64_t busy = bit(SIGWINCH) | bit(SIGURG) | bit(SIGCHLD);
  EXPECT_EQ(BatchEndSignal(0, busy, 0), 0);
  // Ignored stop signals and SIGCONT are never sent: they discard each other.
  EXPECT_EQ(BatchEndSignal(bit(SIGTSTP) | bit(SIGCONT) | bit(SIGTTOU), busy, 0), 0);
  EXPECT_EQ(BatchEndSignal(bit(SIGPIPE) | bit(SIGHUP), busy, 0), SIGHUP);
  EXPECT_EQ(BatchEndSignal(bit(SIGPIPE) | bit(SIGHUP), busy, bit(SIGHUP)), SIGPIPE);
  EXPECT_EQ(BatchEndSignal(bit(40), busy, 0), 40);
}

}  // namespace
}  // namespace cryo
