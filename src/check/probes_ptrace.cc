// Probes of process control: ptrace, register state, reading another
// process's memory, pidfds, creating a process with a chosen pid, and
// replacing a process's memory layout (PR_SET_MM_MAP).
#include <elf.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <linux/prctl.h>

#include <algorithm>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "check/probe_child.h"

// Kernel interfaces newer than the build host's headers; the kernel decides at run time.
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

namespace cryo::check::probe {
namespace {
// In the NT_X86_XSTATE regset (ptrace, core dumps) the kernel puts XCR0 in the first
// u64 of the fxsave sw_reserved bytes (USER_XSTATE_XCR0_WORD, arch/x86/include/asm/user.h).
// This is not the struct _fpx_sw_bytes (FP_XSTATE_MAGIC1 ...) of signal frames.
constexpr size_t kXcr0Offset = 464;
constexpr size_t kXstateBvOffset = 512;  // xsave header: xfeatures saved in this buffer
}  // namespace

Probe ProbePtraceSeize() {
  Probe p{"ptrace-seize", false, true, ""};
  auto child = PausedChild::Start();
  if (!child.ok()) return Fail(p, child.status());
  const pid_t pid = child->pid();
  if (Status st = SeizeAndInterrupt(pid); !st.ok()) return Fail(p, st);
  struct user_regs_struct regs;
  std::memset(&regs, 0, sizeof(regs));
  if (::ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) return Fail(p, Status::FromErrno("PTRACE_GETREGS"));
  if (regs.rip == 0) return Fail(p, Status::Error("PTRACE_GETREGS returned rip 0"));
  if (::ptrace(PTRACE_DETACH, pid, nullptr, nullptr) != 0) return Fail(p, Status::FromErrno("PTRACE_DETACH"));
  p.ok = true;
  p.detail = "PTRACE_SEIZE + PTRACE_INTERRUPT on a child, PTRACE_GETREGS, detach";
  return p;
}

std::string XfeatureNames(uint64_t mask) {
  static const char* const kNames[] = {"x87", "sse", "avx", "bndregs", "bndcsr", "opmask", "zmm_hi256", "hi16_zmm", "pt", "pkru",
                                       "pasid", "cet_u", "cet_s", "hdc", "uintr", "lbr", "hwp", "xtilecfg", "xtiledata", "apx"};
  std::string out;
  for (size_t i = 0; i < sizeof(kNames) / sizeof(kNames[0]); ++i) {
    if (!(mask & (1ULL << i))) continue;
    if (!out.empty()) out += ' ';
    out += kNames[i];
  }
  return out;
}

Probe ProbeXsave() {
  Probe p{"xsave", false, true, ""};
  auto child = PausedChild::Start();
  if (!child.ok()) return Fail(p, child.status());
  const pid_t pid = child->pid();
  if (Status st = SeizeAndInterrupt(pid); !st.ok()) return Fail(p, st);
  std::vector<uint8_t> buf(64 * 1024);
  struct iovec iov = {buf.data(), buf.size()};
  if (::ptrace(PTRACE_GETREGSET, pid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
    return Fail(p, Status::FromErrno("PTRACE_GETREGSET NT_X86_XSTATE"));
  ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  if (iov.iov_len < 576) return Fail(p, Status::Error("xsave area only " + std::to_string(iov.iov_len) + " bytes"));
  uint64_t xcr0, xstate_bv;
  std::memcpy(&xcr0, &buf[kXcr0Offset], 8);
  std::memcpy(&xstate_bv, &buf[kXstateBvOffset], 8);
  if ((xcr0 & 3) != 3) return Fail(p, Status::Error("no XCR0 (x87|sse) in the xsave sw_reserved bytes: " + Hex(xcr0)));
  if ((xstate_bv & ~xcr0) != 0) return Fail(p, Status::Error("xsave header has features " + Hex(xstate_bv) + " outside XCR0 " + Hex(xcr0)));
  const uint64_t kAvx512 = (1ULL << 5) | (1ULL << 6) | (1ULL << 7);
  p.ok = true;
  p.detail = "xsave area " + std::to_string(iov.iov_len) + " bytes, XCR0 " + Hex(xcr0) + " (" + XfeatureNames(xcr0) + "), AVX-512 " +
             ((xcr0 & kAvx512) == kAvx512 ? "present" : "absent");
  return p;
}

Probe ProbeProcessVmReadv() {
  Probe p{"process-vm-readv", false, true, ""};
  auto child = PausedChild::Start();
  if (!child.ok()) return Fail(p, child.status());
  char expected[sizeof(g_child_marker)], got[sizeof(g_child_marker)] = {};
  FormatMarker(expected, sizeof(expected), child->pid());
  struct iovec local = {got, sizeof(got)};
  struct iovec remote = {g_child_marker, sizeof(g_child_marker)};
  ssize_t n = ::process_vm_readv(child->pid(), &local, 1, &remote, 1, 0);
  if (n < 0) return Fail(p, Status::FromErrno("process_vm_readv"));
  if (n != static_cast<ssize_t>(sizeof(got))) return Fail(p, Status::Error("process_vm_readv: short read of " + std::to_string(n) + " bytes"));
  if (std::memcmp(got, expected, sizeof(got)) != 0) return Fail(p, Status::Error("process_vm_readv returned the wrong bytes"));
  p.ok = true;
  p.detail = "read a " + std::to_string(sizeof(got)) + "-byte marker from a child";
  return p;
}

Probe ProbePidfdGetfd() {
  Probe p{"pidfd-getfd", false, true, ""};  // the page dump pulls its pipe from the target
  auto child = PausedChild::Start();
  if (!child.ok()) return Fail(p, child.status());
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child->pid(), 0)));
  if (!pidfd.valid()) return Fail(p, Status::FromErrno("pidfd_open"));
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), child->child_fd(), 0)));
  if (!fd.valid()) return Fail(p, Status::FromErrno("pidfd_getfd"));
  struct stat got, want;
  if (::fstat(fd.get(), &got) != 0 || ::fstat(child->ready_fd(), &want) != 0) return Fail(p, Status::FromErrno("fstat"));
  if (got.st_ino != want.st_ino || got.st_dev != want.st_dev) return Fail(p, Status::Error("pidfd_getfd returned a different file"));
  p.ok = true;
  p.detail = "pidfd_open + pidfd_getfd took a child's pipe fd";
  return p;
}

struct CloneArgs {  // struct clone_args (CLONE_ARGS_SIZE_VER2), defined here to avoid <linux/sched.h> clashes
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

// A PID that no process or thread uses now, a little above the last one allocated.
Result<pid_t> PickFreePid(int attempt) {
  CRYO_ASSIGN_OR_RETURN(std::string last_s, ReadFileToString("/proc/sys/kernel/ns_last_pid"));
  CRYO_ASSIGN_OR_RETURN(std::string max_s, ReadFileToString("/proc/sys/kernel/pid_max"));
  long last = std::atol(std::string(Trim(last_s)).c_str()), max = std::atol(std::string(Trim(max_s)).c_str());
  if (max <= 1000) return Status::Error("pid_max too small");
  for (long k = 0; k < 64; ++k) {
    long cand = last + 200 + attempt * 1009 + k * 7;
    cand = 300 + cand % (max - 300);  // RESERVED_PIDS
    struct stat st;
    if (::stat(("/proc/" + std::to_string(cand)).c_str(), &st) != 0 && errno == ENOENT) return static_cast<pid_t>(cand);
  }
  return Status::Error("no free pid found");
}

Probe ProbeClone3SetTid() {
  Probe p{"clone3-set-tid", false, true, ""};
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto want = PickFreePid(attempt);
    if (!want.ok()) return Fail(p, want.status());
    pid_t tid = *want;
    CloneArgs args;
    std::memset(&args, 0, sizeof(args));
    args.exit_signal = SIGCHLD;
    args.set_tid = reinterpret_cast<uintptr_t>(&tid);
    args.set_tid_size = 1;
    long r = ::syscall(SYS_clone3, &args, sizeof(args));
    if (r == 0) ::syscall(SYS_exit_group, 0);  // the child
    if (r < 0 && errno == EEXIST) continue;    // taken meanwhile; pick another
    if (r < 0) return Fail(p, Status::FromErrno("clone3 with set_tid " + std::to_string(tid)));
    const pid_t pid = static_cast<pid_t>(r);
    int status = 0;
    if (WaitPidBounded(pid, &status, 0, kChildTimeoutMs) != pid) {
      KillAndReap(pid);
      return Fail(p, Status::Error("clone3 child did not exit"));
    }
    if (pid != tid) return Fail(p, Status::Error("clone3 asked for pid " + std::to_string(tid) + ", got " + std::to_string(pid)));
    p.ok = true;
    p.detail = "clone3 created a child with the chosen pid " + std::to_string(tid);
    return p;
  }
  return Fail(p, Status::Error("clone3 set_tid: every chosen pid was taken (EEXIST)"));
}

// Runs in a forked child: PR_SET_MM_MAP with the child's own current values.
// Exit codes: 0 ok, 1-2 reading /proc, 3 MAP_SIZE failed, 4 size mismatch, 10+errno MAP failed.
int SetMmMapChild() {
  auto read_file = [](const char* path, char* buf, size_t size) -> ssize_t {
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = 0;
    for (;;) {
      ssize_t r = ::read(fd, buf + n, size - n);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      n += static_cast<size_t>(r);
      if (n == size) break;
    }
    ::close(fd);
    return static_cast<ssize_t>(n);
  };
  char stat[4096];
  ssize_t n = read_file("/proc/self/stat", stat, sizeof(stat) - 1);
  if (n <= 0) return 1;
  stat[n] = '\0';
  char* s = std::strrchr(stat, ')');
  if (s == nullptr) return 1;
  uint64_t field[53] = {};  // field[i] = the i-th field of proc(5), numbered from 1
  int idx = 3;
  for (++s; *s != '\0' && idx < 53; ++idx) {
    while (*s == ' ') ++s;
    uint64_t v = 0;
    if (*s == '-') ++s;
    while (*s >= '0' && *s <= '9') v = v * 10 + static_cast<uint64_t>(*s++ - '0');
    while (*s != ' ' && *s != '\0' && *s != '\n') ++s;
    field[idx] = v;
  }
  if (idx < 52) return 1;
  static __u64 auxv[512];
  ssize_t auxv_len = read_file("/proc/self/auxv", reinterpret_cast<char*>(auxv), sizeof(auxv));
  if (auxv_len <= 0) return 2;

  unsigned int size = 0;
  if (::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, reinterpret_cast<unsigned long>(&size), 0, 0) != 0) return 3;
  if (size != sizeof(struct prctl_mm_map)) return 4;
  struct prctl_mm_map map;
  std::memset(&map, 0, sizeof(map));
  map.start_code = field[26];
  map.end_code = field[27];
  map.start_stack = field[28];
  map.start_data = field[45];
  map.end_data = field[46];
  map.start_brk = field[47];
  map.arg_start = field[48];
  map.arg_end = field[49];
  map.env_start = field[50];
  map.env_end = field[51];
  map.brk = reinterpret_cast<uint64_t>(::sbrk(0));
  map.auxv = auxv;
  map.auxv_size = static_cast<uint32_t>(auxv_len);
  map.exe_fd = static_cast<uint32_t>(-1);
  if (::prctl(PR_SET_MM, PR_SET_MM_MAP, reinterpret_cast<unsigned long>(&map), sizeof(map), 0) != 0) return std::min(10 + errno, 255);
  return 0;
}

Probe ProbePrSetMmMap() {
  Probe p{"pr-set-mm-map", false, true, ""};
  auto code = RunInChild("PR_SET_MM_MAP child", SetMmMapChild);
  if (!code.ok()) return Fail(p, code.status());
  switch (*code) {
    case 0:
      p.ok = true;
      p.detail = "PR_SET_MM_MAP with a child's own layout and auxv";
      return p;
    case 1: return Fail(p, Status::Error("child could not parse /proc/self/stat"));
    case 2: return Fail(p, Status::Error("child could not read /proc/self/auxv"));
    case 3: return Fail(p, Status::Error("PR_SET_MM_MAP_SIZE failed (CONFIG_CHECKPOINT_RESTORE off?)"));
    case 4: return Fail(p, Status::Error("PR_SET_MM_MAP_SIZE reports an unknown struct prctl_mm_map size"));
    default:
      if (*code >= 10 && *code < 255) return Fail(p, Status::Errno(*code - 10, "PR_SET_MM_MAP"));
      return Fail(p, Status::Error("PR_SET_MM_MAP child exited with " + std::to_string(*code)));
  }
}

}  // namespace cryo::check::probe
