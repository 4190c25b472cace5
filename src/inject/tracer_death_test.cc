// A tracer that dies at any instant of its remote system calls leaves the
// task as it was: a tracer process runs the dump's sequence of remote calls
// on a target and kills itself (SIGKILL) at its Nth fault point, for every N;
// after each, the target runs on, untraced, with every thread's own mask,
// and finally checks its own registers (general, AVX), alternate stack and
// interrupted system calls.
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <memory>
#include <string>

#include "base/file_util.h"
#include "base/interrupt.h"
#include "inject/injected_code.h"
#include "inject/remote_syscall.h"
#include "inject/test_child.h"
#include "proc/proc.h"
#include "seize/seize.h"

namespace cryo {
namespace {

// ---------------------------------------------------------------- the target

struct alignas(64) Registers {
  uint64_t gpr[13];      // rbx rcx rdx rsi rdi r8..r15
  uint64_t pad[3];
  uint8_t ymm[16][32];   // offset 128
};
Registers g_in, g_out;
volatile int g_go = 0;
volatile int g_sleep_errno = 0;
char g_altstack[65536];
int g_ctl = -1, g_res = -1;

void OnUsr1(int) { g_go = 1; }

// Loads known values into 13 general registers and ymm0..15, spins without a
// system call until SIGUSR1, then stores them.
void SpinWithKnownRegisters() {
  asm volatile(
      "lea %[in], %%rax\n\t"
      "mov 0(%%rax), %%rbx\n\tmov 8(%%rax), %%rcx\n\tmov 16(%%rax), %%rdx\n\tmov 24(%%rax), %%rsi\n\t"
      "mov 32(%%rax), %%rdi\n\tmov 40(%%rax), %%r8\n\tmov 48(%%rax), %%r9\n\tmov 56(%%rax), %%r10\n\t"
      "mov 64(%%rax), %%r11\n\tmov 72(%%rax), %%r12\n\tmov 80(%%rax), %%r13\n\tmov 88(%%rax), %%r14\n\t"
      "mov 96(%%rax), %%r15\n\t"
      "vmovdqu 128(%%rax), %%ymm0\n\tvmovdqu 160(%%rax), %%ymm1\n\tvmovdqu 192(%%rax), %%ymm2\n\t"
      "vmovdqu 224(%%rax), %%ymm3\n\tvmovdqu 256(%%rax), %%ymm4\n\tvmovdqu 288(%%rax), %%ymm5\n\t"
      "vmovdqu 320(%%rax), %%ymm6\n\tvmovdqu 352(%%rax), %%ymm7\n\tvmovdqu 384(%%rax), %%ymm8\n\t"
      "vmovdqu 416(%%rax), %%ymm9\n\tvmovdqu 448(%%rax), %%ymm10\n\tvmovdqu 480(%%rax), %%ymm11\n\t"
      "vmovdqu 512(%%rax), %%ymm12\n\tvmovdqu 544(%%rax), %%ymm13\n\tvmovdqu 576(%%rax), %%ymm14\n\t"
      "vmovdqu 608(%%rax), %%ymm15\n\t"
      "1: pause\n\tcmpl $0, %[go]\n\tje 1b\n\t"
      "lea %[out], %%rax\n\t"
      "mov %%rbx, 0(%%rax)\n\tmov %%rcx, 8(%%rax)\n\tmov %%rdx, 16(%%rax)\n\tmov %%rsi, 24(%%rax)\n\t"
      "mov %%rdi, 32(%%rax)\n\tmov %%r8, 40(%%rax)\n\tmov %%r9, 48(%%rax)\n\tmov %%r10, 56(%%rax)\n\t"
      "mov %%r11, 64(%%rax)\n\tmov %%r12, 72(%%rax)\n\tmov %%r13, 80(%%rax)\n\tmov %%r14, 88(%%rax)\n\t"
      "mov %%r15, 96(%%rax)\n\t"
      "vmovdqu %%ymm0, 128(%%rax)\n\tvmovdqu %%ymm1, 160(%%rax)\n\tvmovdqu %%ymm2, 192(%%rax)\n\t"
      "vmovdqu %%ymm3, 224(%%rax)\n\tvmovdqu %%ymm4, 256(%%rax)\n\tvmovdqu %%ymm5, 288(%%rax)\n\t"
      "vmovdqu %%ymm6, 320(%%rax)\n\tvmovdqu %%ymm7, 352(%%rax)\n\tvmovdqu %%ymm8, 384(%%rax)\n\t"
      "vmovdqu %%ymm9, 416(%%rax)\n\tvmovdqu %%ymm10, 448(%%rax)\n\tvmovdqu %%ymm11, 480(%%rax)\n\t"
      "vmovdqu %%ymm12, 512(%%rax)\n\tvmovdqu %%ymm13, 544(%%rax)\n\tvmovdqu %%ymm14, 576(%%rax)\n\t"
      "vmovdqu %%ymm15, 608(%%rax)\n\t"
      "vzeroupper\n\t"
      : [out] "=m"(g_out)
      : [in] "m"(g_in), [go] "m"(g_go)
      : "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "xmm0",
        "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
        "xmm14", "xmm15", "memory", "cc");
}

void BlockMore(int sig) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Echoes every byte of the control pipe: blocked in read(2) (ERESTARTSYS)
// when seized.
void* Echo(void*) {
  BlockMore(SIGHUP);
  BlockMore(SIGUSR1);  // for the spinning thread
  char c;
  while (read(g_ctl, &c, 1) == 1)
    if (write(g_res, &c, 1) != 1) _exit(3);
  return nullptr;
}

// Sleeps in nanosleep(2) with a remainder (ERESTART_RESTARTBLOCK when
// seized); a sleep that fails is remembered.
void* Sleeper(void*) {
  BlockMore(SIGTERM);
  BlockMore(SIGUSR1);  // for the spinning thread
  for (;;) {
    struct timespec req = {0, 20 * 1000 * 1000}, rem;
    if (nanosleep(&req, &rem) != 0) {
      g_sleep_errno = errno;
      char m[2] = {'S', static_cast<char>(errno)};
      if (write(g_res, m, 2) != 2) _exit(8);
    }
  }
  return nullptr;
}

[[noreturn]] void RunTarget() {
  for (size_t i = 0; i < sizeof(g_in); ++i) reinterpret_cast<uint8_t*>(&g_in)[i] = static_cast<uint8_t>(i * 7 + 3);
  signal(SIGUSR1, OnUsr1);
  stack_t ss = {};
  ss.ss_sp = g_altstack;
  ss.ss_size = sizeof(g_altstack);
  if (sigaltstack(&ss, nullptr) != 0) _exit(4);
  BlockMore(SIGUSR2);
  pthread_t t;
  if (pthread_create(&t, nullptr, Echo, nullptr) != 0 || pthread_create(&t, nullptr, Sleeper, nullptr) != 0) _exit(5);
  usleep(20000);  // let the threads block
  if (write(g_res, "R", 1) != 1) _exit(6);
  SpinWithKnownRegisters();
  stack_t now;
  char verdict = 'O';
  if (sigaltstack(nullptr, &now) != 0 || now.ss_sp != g_altstack || now.ss_size != sizeof(g_altstack)) verdict = 'A';
  if (std::memcmp(g_in.gpr, g_out.gpr, sizeof(g_in.gpr)) != 0) verdict = 'G';
  if (std::memcmp(g_in.ymm, g_out.ymm, sizeof(g_in.ymm)) != 0) verdict = 'Y';
  if (g_sleep_errno) verdict = 'S';
  if (write(g_res, &verdict, 1) != 1) _exit(7);
  _exit(verdict == 'O' ? 0 : 1);
}

// ---------------------------------------------------------------- the tracer

// The dump's sequence of remote calls on `pid`; dies at fault point `n`
// (0: does it all and writes how many points it passed to `out`).
[[noreturn]] void RunTracer(pid_t pid, uint64_t n, int out) {
  setenv("CRYO_FAULT_POINT", std::to_string(n).c_str(), 1);
  setenv("CRYO_FAULT_SIGNAL", "KILL", 1);
  InitFaultPoints();
  auto run = [&]() -> Status {
    CRYO_ASSIGN_OR_RETURN(auto sp, SeizedProcess::Seize(pid));
    CRYO_ASSIGN_OR_RETURN(auto vmas, proc::ReadVmas(pid));
    CRYO_ASSIGN_OR_RETURN(auto st, proc::ReadStatus(pid));
    CRYO_ASSIGN_OR_RETURN(auto rs, RemoteSyscaller::Attach(*sp, vmas, st.sig_ign, st.sig_cgt));
    CRYO_RETURN_IF_ERROR(rs->MapScratch(64 << 10));
    std::vector<RemoteCall> calls(8);
    for (int i = 0; i < 6; ++i) {
      calls[i].nr = SYS_rt_sigaction;
      calls[i].args[0] = static_cast<uint64_t>(SIGHUP + i);
      calls[i].args[2] = rs->scratch() + 32 * i;
      calls[i].args[3] = 8;
    }
    calls[6].nr = SYS_getpid;
    calls[7].nr = SYS_brk;
    CRYO_ASSIGN_OR_RETURN(auto r, rs->Batch(calls));
    if (r[6] != pid) return Status::Error("getpid in the batch");
    {
      std::vector<std::unique_ptr<RemoteSyscaller>> others;
      for (size_t i = 1; i < sp->threads().size(); ++i) {
        CRYO_ASSIGN_OR_RETURN(auto t, rs->ForThread(sp->threads()[i]));
        others.push_back(std::move(t));
      }
      for (size_t i = 0; i < others.size(); ++i) {
        std::vector<RemoteCall> tc(2);
        tc[0].nr = SYS_gettid;
        tc[1].nr = SYS_sigaltstack;
        tc[1].args[1] = rs->scratch() + 4096 + 64 * i;
        CRYO_RETURN_IF_ERROR(others[i]->StartBatch(tc, rs->scratch() + 8192 + RemoteSyscaller::TableBytes(2) * i));
      }
      for (auto& o : others) CRYO_RETURN_IF_ERROR(o->FinishBatch().status());
    }
    CRYO_ASSIGN_OR_RETURN(long pid_again, rs->Syscall(SYS_getpid));
    if (pid_again != pid) return Status::Error("getpid");
    CRYO_RETURN_IF_ERROR(rs->Finish());
    return sp->Detach();
  };
  Status s = run();
  const uint64_t passed = FaultPointsPassed();
  if (!s.ok()) fprintf(stderr, "tracer: %s\n", s.ToString().c_str());
  if (write(out, &passed, sizeof(passed)) != sizeof(passed)) _exit(2);
  _exit(s.ok() ? 0 : 1);
}

// ---------------------------------------------------------------- the test

std::map<pid_t, uint64_t> Masks(pid_t pid) {
  std::map<pid_t, uint64_t> out;
  auto tids = proc::ListThreads(pid);
  EXPECT_TRUE(tids.ok());
  for (pid_t tid : *tids) {
    auto st = proc::ReadStatus(tid);
    EXPECT_TRUE(st.ok());
    out[tid] = st->sig_blk;
  }
  return out;
}

// Every thread untraced and not stopped.
void ExpectFree(pid_t pid, uint64_t point) {
  auto tids = proc::ListThreads(pid);
  ASSERT_TRUE(tids.ok());
  for (pid_t tid : *tids) {
    auto st = proc::ReadStatus(tid);
    auto stat = proc::ReadTaskStat(pid, tid);
    ASSERT_TRUE(st.ok() && stat.ok());
    EXPECT_EQ(st->tracer_pid, 0) << "point " << point << " task " << tid;
    EXPECT_NE(stat->state, 't') << "point " << point << " task " << tid;
    EXPECT_NE(stat->state, 'T') << "point " << point << " task " << tid;
  }
}

bool ReadByte(int fd, char* c) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 5000) == 1 && read(fd, c, 1) == 1;
}

// Forks a tracer running `body(its end of a pipe)` (which never returns),
// waits for it and reads its report (`n` bytes, zeros if it wrote none).
template <typename Body>
int ForkTracer(Body body, void* report, size_t n, bool* wrote) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  const pid_t tracer = fork();
  if (tracer == 0) body(out[1]);
  close(out[1]);
  int status = 0;
  EXPECT_EQ(waitpid(tracer, &status, 0), tracer);
  std::memset(report, 0, n);
  *wrote = read(out[0], report, n) == static_cast<ssize_t>(n);
  if (!*wrote) std::memset(report, 0, n);
  close(out[0]);
  return status;
}

class TracerDeathTest : public testing::TestWithParam<bool> {
 protected:
  void SetUp() override { InjectedCode::SetFallbackForTest(GetParam()); }
  void TearDown() override { InjectedCode::SetFallbackForTest(false); }
};

TEST_P(TracerDeathTest, TheTargetRunsOnAsItWasWhereverTheTracerDies) {
  if (!__builtin_cpu_supports("avx")) GTEST_SKIP() << "the target checks ymm registers";
  int ctl[2], res[2];
  ASSERT_EQ(pipe(ctl), 0);
  ASSERT_EQ(pipe(res), 0);
  const pid_t target = fork();
  if (target == 0) {
    g_ctl = ctl[0];
    g_res = res[1];
    RunTarget();
  }
  KillOnExit guard{target};
  char c;
  ASSERT_TRUE(ReadByte(res[0], &c));
  ASSERT_EQ(c, 'R');
  const auto masks = Masks(target);
  ASSERT_EQ(masks.size(), 3u);

  auto trace = [&](uint64_t n, uint64_t* passed) {
    bool wrote = false;
    const int status = ForkTracer([&](int out) { RunTracer(target, n, out); }, passed, sizeof(*passed), &wrote);
    return std::make_pair(status, wrote);
  };
  uint64_t total = 0;
  auto [status, wrote] = trace(0, &total);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0 && wrote) << status;
  ASSERT_GT(total, 50u);
  auto vmas = proc::ReadVmas(target);
  ASSERT_TRUE(vmas.ok());
  size_t nvmas = vmas->size(), leaks = 0;
  for (uint64_t n = 1; n <= total; ++n) {
    uint64_t passed;
    auto [st, w] = trace(n, &passed);
    // The number of stops can vary by one or two (a thread seized in or out
    // of a system call): a tracer that got to the end is the end.
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) break;
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "point " << n << " status " << st;
    ExpectFree(target, n);
    // Each thread puts its own mask back when it next runs (rt_sigreturn).
    auto now = Masks(target);
    for (int i = 0; i < 200 && now != masks; ++i) {
      usleep(10000);
      now = Masks(target);
    }
    EXPECT_EQ(now, masks) << "point " << n;
    // Still running: the thread in read(2) answers.
    ASSERT_EQ(write(ctl[1], "e", 1), 1);
    ASSERT_TRUE(ReadByte(res[0], &c)) << "point " << n;
    EXPECT_EQ(c, 'e') << "point " << n;
    if (c == 'S' && ReadByte(res[0], &c)) ADD_FAILURE() << "nanosleep errno " << int(c);
    vmas = proc::ReadVmas(target);
    ASSERT_TRUE(vmas.ok());
    if (vmas->size() != nvmas) ++leaks;
    nvmas = vmas->size();
    if (HasFatalFailure()) break;
  }
  // The scratch memory stays behind only when the tracer dies between its
  // mmap and the next stop, or while other threads run their batches.
  printf("%" PRIu64 " fault points, scratch memory left behind at %zu\n", total, leaks);
  EXPECT_LT(leaks, total / 4);
  ASSERT_EQ(kill(target, SIGUSR1), 0);
  ASSERT_TRUE(ReadByte(res[0], &c));
  EXPECT_EQ(c, 'O') << "A: altstack changed, G: general registers, Y: ymm registers, S: nanosleep failed";
  int tstatus = 0;
  ASSERT_EQ(waitpid(target, &tstatus, 0), target);
  EXPECT_TRUE(WIFEXITED(tstatus) && WEXITSTATUS(tstatus) == 0) << tstatus;
  for (int fd : {ctl[0], ctl[1], res[0], res[1]}) close(fd);
}

INSTANTIATE_TEST_SUITE_P(CodePlaces, TracerDeathTest, testing::Values(false, true),
                         [](const testing::TestParamInfo<bool>& i) { return i.param ? "Fallback" : "InVdso"; });

// ---------------------------------------------------------------- an fd taken out

std::set<std::string> FdNames(pid_t pid) {
  std::set<std::string> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') out.insert(e->d_name);
    closedir(d);
  }
  return out;
}

// The system call `pid` sleeps in (-1: running).
long SyscallOf(pid_t pid) {
  auto text = ReadFileToString("/proc/" + std::to_string(pid) + "/syscall");
  return text.ok() && !text->empty() && (*text)[0] != 'r' ? std::strtol(text->c_str(), nullptr, 10) : -1;
}

// The tracer: makes an eventfd in `pid` and takes it out (TakeFdMadeBy);
// dies at fault point `n` (0: all of it, then writes the points passed and
// whether the duplicate is an eventfd).
[[noreturn]] void RunFdTaker(pid_t pid, uint64_t n, int out) {
  setenv("CRYO_FAULT_POINT", std::to_string(n).c_str(), 1);
  setenv("CRYO_FAULT_SIGNAL", "KILL", 1);
  InitFaultPoints();
  uint64_t report[2] = {0, 0};
  auto run = [&]() -> Status {
    CRYO_ASSIGN_OR_RETURN(auto sp, SeizedProcess::Seize(pid));
    CRYO_ASSIGN_OR_RETURN(auto vmas, proc::ReadVmas(pid));
    CRYO_ASSIGN_OR_RETURN(auto st, proc::ReadStatus(pid));
    CRYO_ASSIGN_OR_RETURN(auto rs, RemoteSyscaller::Attach(*sp, vmas, st.sig_ign, st.sig_cgt));
    CRYO_ASSIGN_OR_RETURN(UniqueFd fd, rs->TakeFdMadeBy(SYS_eventfd2, 0, "eventfd"));
    char link[64] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(fd.get());
    if (readlink(path.c_str(), link, sizeof(link) - 1) > 0 && std::string(link) == "anon_inode:[eventfd]") report[1] = 1;
    CRYO_RETURN_IF_ERROR(rs->Finish());
    return sp->Detach();
  };
  Status s = run();
  report[0] = FaultPointsPassed();
  if (!s.ok()) fprintf(stderr, "tracer: %s\n", s.ToString().c_str());
  if (write(out, report, sizeof(report)) != sizeof(report)) _exit(2);
  _exit(s.ok() ? 0 : 1);
}

class TakeFdTest : public TracerDeathTest {};

// Whenever the tracer dies, the fd it made in the task is closed there by
// the call's way back: the task's fd table is what it was.
TEST_P(TakeFdTest, TheTaskNeverKeepsTheFdWhereverTheTracerDies) {
  int res[2];
  ASSERT_EQ(pipe(res), 0);
  const pid_t target = fork();
  if (target == 0) {
    close(res[0]);
    if (write(res[1], "R", 1) != 1) _exit(3);
    for (;;) pause();
  }
  KillOnExit guard{target};
  close(res[1]);
  char c;
  ASSERT_TRUE(ReadByte(res[0], &c));
  const std::set<std::string> before = FdNames(target);
  const auto masks = Masks(target);
  auto take = [&](uint64_t n, uint64_t report[2]) {
    bool wrote = false;
    return ForkTracer([&](int out) { RunFdTaker(target, n, out); }, report, 2 * sizeof(uint64_t), &wrote);
  };
  uint64_t report[2];
  int st = take(0, report);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  EXPECT_EQ(report[1], 1u) << "the duplicate is not the eventfd made in the task";
  EXPECT_EQ(FdNames(target), before);
  const uint64_t total = report[0];
  ASSERT_GT(total, 5u);
  for (uint64_t n = 1; n <= total; ++n) {
    st = take(n, report);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) break;
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "point " << n << " status " << st;
    ExpectFree(target, n);
    // The task runs the way back once its dead tracer has let it go; its
    // own mask back means it is through (the close comes before), and out
    // of the code before the next tracer seizes it.
    for (int i = 0; i < 200 && (Masks(target) != masks || SyscallOf(target) != SYS_pause); ++i) usleep(10000);
    EXPECT_EQ(Masks(target), masks) << "point " << n;
    EXPECT_EQ(SyscallOf(target), SYS_pause) << "point " << n;
    EXPECT_EQ(FdNames(target), before) << "point " << n << " of " << total;
    if (HasFailure()) break;
  }
  close(res[0]);
}

INSTANTIATE_TEST_SUITE_P(CodePlaces, TakeFdTest, testing::Values(false, true),
                         [](const testing::TestParamInfo<bool>& i) { return i.param ? "Fallback" : "InVdso"; });

// ---------------------------------------------------------------- reclaim

// A thread seized in a sleep, whose tracer dies during one of its remote
// calls, sleeps out the rest in cryo's code ("restart"). A second tracer
// finds it there and takes it back to its own state (reclaim.h): the sleep
// goes on where the thread's own code was, ends at its deadline and
// returns 0; the code is then removed from the vDSO.
TEST(ReclaimTest, ASleepLeftInCryosCodeIsTakenBack) {
  int res[2];
  ASSERT_EQ(pipe(res), 0);
  const pid_t target = fork();
  if (target == 0) {
    static int out;
    out = res[1];
    pthread_t t;
    auto sleeper = [](void*) -> void* {
      struct timespec a, b, req = {1, 500 * 1000 * 1000}, rem;
      clock_gettime(CLOCK_MONOTONIC, &a);
      if (write(out, "R", 1) != 1) _exit(3);
      const int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
      clock_gettime(CLOCK_MONOTONIC, &b);
      const long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
      const long rec[2] = {r, ms};
      if (write(out, rec, sizeof(rec)) != sizeof(rec)) _exit(3);
      return nullptr;
    };
    if (pthread_create(&t, nullptr, sleeper, nullptr) != 0) _exit(2);
    for (;;) pause();
  }
  KillOnExit guard{target};
  char c;
  ASSERT_TRUE(ReadByte(res[0], &c));
  usleep(50000);  // in its sleep
  auto tids = proc::ListThreads(target);
  ASSERT_TRUE(tids.ok() && tids->size() == 2u);
  const pid_t sleeper = (*tids)[1];
  auto vmas = proc::ReadVmas(target);
  ASSERT_TRUE(vmas.ok());
  std::string vdso;
  for (const proc::Vma& v : *vmas)
    if (v.name == "[vdso]") {
      vdso.resize(v.end - v.start);
      struct iovec l = {vdso.data(), vdso.size()}, r = {reinterpret_cast<void*>(v.start), vdso.size()};
      ASSERT_EQ(process_vm_readv(target, &l, 1, &r, 1, 0), static_cast<ssize_t>(vdso.size()));
    }
  // The first tracer: one call in the sleeping thread, then death.
  const pid_t first = fork();
  if (first == 0) {
    auto sp = SeizedProcess::Seize(target);
    if (!sp.ok()) _exit(10);
    auto st = proc::ReadStatus(target);
    auto rs = RemoteSyscaller::Attach(**sp, *vmas, st->sig_ign, st->sig_cgt);
    if (!rs.ok() || !(*rs)->MapScratch(64 << 10).ok()) _exit(11);
    auto t = (*rs)->ForThread((*sp)->threads()[1]);
    if (!t.ok() || !(*t)->Syscall(SYS_getpid).ok()) _exit(12);
    raise(SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(waitpid(first, &status, 0), first);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  // Now in restart_syscall, called from cryo's code in the vDSO.
  usleep(50000);
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", target, sleeper);
  FILE* f = fopen(path, "r");
  ASSERT_NE(f, nullptr);
  long nr = -1;
  ASSERT_EQ(fscanf(f, "%ld", &nr), 1);
  fclose(f);
  EXPECT_EQ(nr, SYS_restart_syscall);
  // The second tracer reclaims it and finishes normally.
  const pid_t second = fork();
  if (second == 0) {
    auto sp = SeizedProcess::Seize(target);
    if (!sp.ok()) _exit(20);
    auto vm = proc::ReadVmas(target);
    auto st = proc::ReadStatus(target);
    auto rs = RemoteSyscaller::Attach(**sp, *vm, st->sig_ign, st->sig_cgt);
    if (!rs.ok()) _exit(21);
    const user_regs_struct& r = (*sp)->threads()[1].regs;
    if (static_cast<long>(r.orig_rax) != SYS_clock_nanosleep || static_cast<long>(r.rax) != -516) _exit(22);
    if (!(*rs)->MapScratch(64 << 10).ok() || !(*rs)->Finish().ok()) _exit(23);
    _exit((*sp)->Detach().ok() ? 0 : 24);
  }
  ASSERT_EQ(waitpid(second, &status, 0), second);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  long rec[2];
  struct pollfd p = {res[0], POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  ASSERT_EQ(read(res[0], rec, sizeof(rec)), static_cast<ssize_t>(sizeof(rec)));
  EXPECT_EQ(rec[0], 0) << "clock_nanosleep's result";
  EXPECT_GE(rec[1], 1500) << "the sleep ended before its deadline";
  // cryo's code is gone from the vDSO.
  std::string now(vdso.size(), '\0');
  for (const proc::Vma& v : *vmas)
    if (v.name == "[vdso]") {
      struct iovec l = {now.data(), now.size()}, r = {reinterpret_cast<void*>(v.start), now.size()};
      ASSERT_EQ(process_vm_readv(target, &l, 1, &r, 1, 0), static_cast<ssize_t>(now.size()));
    }
  EXPECT_EQ(now, vdso);
  close(res[0]);
  close(res[1]);
}

}  // namespace
}  // namespace cryo
