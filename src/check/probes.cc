#include "check/probes.h"

#include <elf.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <utility>

#include "base/file_util.h"
#include "base/log.h"
#include "base/privileges.h"
#include "base/unique_fd.h"

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
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1ULL << 15)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};
struct pm_scan_arg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_PRESENT (1 << 3)
#endif

namespace cryo::check {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kChildTimeoutMs = 1000;  // a probe child must stop or exit within this
constexpr int kReapTimeoutMs = 2000;   // a SIGKILLed child must be reaped within this
// In the NT_X86_XSTATE regset (ptrace, core dumps) the kernel puts XCR0 in the first
// u64 of the fxsave sw_reserved bytes (USER_XSTATE_XCR0_WORD, arch/x86/include/asm/user.h).
// This is not the struct _fpx_sw_bytes (FP_XSTATE_MAGIC1 ...) of signal frames.
constexpr size_t kXcr0Offset = 464;
constexpr size_t kXstateBvOffset = 512;  // xsave header: xfeatures saved in this buffer

// ---------------------------------------------------------------------------
// Children: forked, killed and reaped by the probe that made them.

// waitpid() polled until `deadline_ms` passes. Returns the pid, 0 on timeout, -1 on error.
pid_t WaitPidBounded(pid_t pid, int* status, int options, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  long sleep_ns = 20'000;
  for (;;) {
    pid_t r = ::waitpid(pid, status, options | WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r != 0) return r;
    if (Clock::now() >= deadline) return 0;
    struct timespec ts = {0, sleep_ns};
    ::nanosleep(&ts, nullptr);
    sleep_ns = std::min(sleep_ns * 2, 2'000'000L);
  }
}

void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  pid_t r = WaitPidBounded(pid, &status, __WALL, kReapTimeoutMs);
  if (r == 0) LOG_WARN("check: probe child %d not reaped after SIGKILL", pid);
}

// Runs fn() in a forked child and returns its exit code. fn runs after fork() in a
// possibly multi-threaded parent, so it sticks to system calls (no allocation).
template <typename Fn>
Result<int> RunInChild(const char* what, Fn fn) {
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno(std::string("fork for ") + what);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::_exit(fn());
  }
  int status = 0;
  pid_t r = WaitPidBounded(pid, &status, 0, kChildTimeoutMs);
  if (r != pid) {
    int err = errno;
    KillAndReap(pid);
    return r == 0 ? Status::Error(std::string(what) + ": child did not exit in time")
                  : Status::Errno(err, std::string("waitpid for ") + what);
  }
  if (WIFSIGNALED(status)) return Status::Error(std::string(what) + ": child killed by signal " + std::to_string(WTERMSIG(status)));
  return WEXITSTATUS(status);
}

// A page-aligned buffer the paused child fills with a pid-specific marker, so a
// read of the child's copy is told apart from the parent's (which stays zero).
alignas(4096) char g_child_marker[64];

// Writes "cryo-probe-child:<pid>" into buf (async-signal-safe).
void FormatMarker(char* buf, size_t size, pid_t pid) {
  static const char kPrefix[] = "cryo-probe-child:";
  std::memset(buf, 0, size);
  size_t n = sizeof(kPrefix) - 1;
  std::memcpy(buf, kPrefix, n);
  char digits[16];
  size_t d = 0;
  unsigned long v = static_cast<unsigned long>(pid);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && d < sizeof(digits));
  while (d > 0 && n + 1 < size) buf[n++] = digits[--d];
}

// A forked child that fills g_child_marker, reports ready through a pipe it keeps
// open (child_fd), then sleeps until the destructor kills and reaps it.
class PausedChild {
 public:
  static Result<PausedChild> Start() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno("pipe for probe child");
    UniqueFd rd(fds[0]), wr(fds[1]);
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return Status::FromErrno("fork probe child");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::close(fds[0]);
      FormatMarker(g_child_marker, sizeof(g_child_marker), ::getpid());
      if (::write(fds[1], "R", 1) != 1) ::_exit(126);
      for (;;) ::pause();
    }
    PausedChild child(pid, std::move(rd), fds[1]);
    wr.reset();  // the child's copy stays open
    struct pollfd pfd = {child.ready_.get(), POLLIN, 0};
    int r;
    do {
      r = ::poll(&pfd, 1, kChildTimeoutMs);
    } while (r < 0 && errno == EINTR);
    char c = 0;
    if (r <= 0 || ::read(child.ready_.get(), &c, 1) != 1 || c != 'R') return Status::Error("probe child did not start");
    return child;
  }

  PausedChild(PausedChild&& o) noexcept : pid_(std::exchange(o.pid_, -1)), ready_(std::move(o.ready_)), child_fd_(o.child_fd_) {}
  PausedChild& operator=(PausedChild&&) = delete;
  ~PausedChild() {
    if (pid_ > 0) KillAndReap(pid_);
  }

  pid_t pid() const { return pid_; }
  int ready_fd() const { return ready_.get(); }  // our end of the pipe
  int child_fd() const { return child_fd_; }     // the child's end, as numbered in the child

 private:
  PausedChild(pid_t pid, UniqueFd ready, int child_fd) : pid_(pid), ready_(std::move(ready)), child_fd_(child_fd) {}
  pid_t pid_;
  UniqueFd ready_;
  int child_fd_;
};

// Seizes `pid` and waits for the PTRACE_EVENT_STOP that PTRACE_INTERRUPT causes.
Status SeizeAndInterrupt(pid_t pid) {
  if (::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(PTRACE_O_EXITKILL)) != 0) return Status::FromErrno("PTRACE_SEIZE");
  if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_INTERRUPT");
  int status = 0;
  pid_t r = WaitPidBounded(pid, &status, __WALL, kChildTimeoutMs);
  if (r < 0) return Status::FromErrno("waitpid after PTRACE_INTERRUPT");
  if (r == 0) return Status::Error("no stop within 1s of PTRACE_INTERRUPT");
  if (!WIFSTOPPED(status) || (status >> 16) != PTRACE_EVENT_STOP) {
    char buf[64];
    snprintf(buf, sizeof(buf), "unexpected wait status 0x%x after PTRACE_INTERRUPT", status);
    return Status::Error(buf);
  }
  return Status::Ok();
}

Probe Fail(Probe p, const Status& st) {
  p.ok = false;
  p.detail = st.ToString();
  return p;
}

std::string Hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

// ---------------------------------------------------------------------------
// The probes.

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

Result<UniqueFd> OpenUserfaultfd() {
  UniqueFd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (fd.valid()) return fd;
  const int err = errno;
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));  // used when vm.unprivileged_userfaultfd forbids the syscall
  if (dev.valid()) {
    fd.reset(::ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK));
    if (fd.valid()) return fd;
  }
  return Status::Errno(err, "userfaultfd");
}

Probe ProbeUserfaultfdWpAsync() {
  Probe p{"userfaultfd-wp-async", false, false, ""};
  // UFFDIO_API can be done once per fd: the first fd asks what exists, the second enables WP_ASYNC.
  auto query = OpenUserfaultfd();
  if (!query.ok()) return Fail(p, query.status());
  struct uffdio_api api;
  std::memset(&api, 0, sizeof(api));
  api.api = UFFD_API;
  if (::ioctl(query->get(), UFFDIO_API, &api) != 0) return Fail(p, Status::FromErrno("UFFDIO_API"));
  const uint64_t available = api.features;
  auto fd = OpenUserfaultfd();
  if (!fd.ok()) return Fail(p, fd.status());
  std::memset(&api, 0, sizeof(api));
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_WP_ASYNC;
  if (::ioctl(fd->get(), UFFDIO_API, &api) != 0) return Fail(p, Status::FromErrno("UFFDIO_API with UFFD_FEATURE_WP_ASYNC (features " + Hex(available) + ")"));
  p.ok = true;
  p.detail = "UFFDIO_API accepted UFFD_FEATURE_WP_ASYNC (features " + Hex(available) + ")";
  return p;
}

// An anonymous private mapping, unmapped on destruction.
class Mapping {
 public:
  explicit Mapping(size_t size) : size_(size) {
    void* a = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    addr_ = a == MAP_FAILED ? nullptr : static_cast<char*>(a);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr_ != nullptr) ::munmap(addr_, size_);
  }
  char* addr() const { return addr_; }

 private:
  char* addr_ = nullptr;
  size_t size_;
};

Probe ProbePagemapScan() {
  Probe p{"pagemap-scan", false, true, ""};  // how the dump finds present pages
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  Mapping m(4 * page);
  if (m.addr() == nullptr) return Fail(p, Status::FromErrno("mmap"));
  m.addr()[0] = 1;  // pages 0 and 2 present, 1 and 3 not
  m.addr()[2 * page] = 1;
  UniqueFd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Fail(p, Status::FromErrno("open /proc/self/pagemap"));
  struct page_region vec[8];
  std::memset(vec, 0, sizeof(vec));
  struct pm_scan_arg arg;
  std::memset(&arg, 0, sizeof(arg));
  arg.size = sizeof(arg);
  arg.start = reinterpret_cast<uint64_t>(m.addr());
  arg.end = arg.start + 4 * page;
  arg.vec = reinterpret_cast<uint64_t>(vec);
  arg.vec_len = 8;
  arg.category_mask = PAGE_IS_PRESENT;
  arg.return_mask = PAGE_IS_PRESENT;
  int n = ::ioctl(fd.get(), PAGEMAP_SCAN, &arg);
  if (n < 0) return Fail(p, Status::FromErrno("ioctl PAGEMAP_SCAN"));
  const uint64_t base = arg.start;
  if (n != 2 || vec[0].start != base || vec[0].end != base + page || vec[1].start != base + 2 * page || vec[1].end != base + 3 * page)
    return Fail(p, Status::Error("PAGEMAP_SCAN reported " + std::to_string(n) + " regions, expected pages 0 and 2"));
  p.ok = true;
  p.detail = "PAGEMAP_SCAN found the 2 touched pages of a 4-page mapping";
  return p;
}

Probe ProbeTcpRepair() {
  Probe p{"tcp-repair", false, false, ""};
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) s.reset(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return Fail(p, Status::FromErrno("socket(SOCK_STREAM)"));
  int one = 1;
  if (::setsockopt(s.get(), IPPROTO_TCP, TCP_REPAIR, &one, sizeof(one)) != 0) return Fail(p, Status::FromErrno("setsockopt TCP_REPAIR"));
  int val = 0;
  socklen_t len = sizeof(val);
  if (::getsockopt(s.get(), IPPROTO_TCP, TCP_REPAIR, &val, &len) != 0 || val != 1) return Fail(p, Status::FromErrno("getsockopt TCP_REPAIR"));
  p.ok = true;
  p.detail = "TCP_REPAIR set on a TCP socket";
  return p;
}

Probe ProbeSockDiag() {
  Probe p{"sock-diag", false, false, ""};
  int pair[2];  // guarantees at least one unix socket to report
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return Fail(p, Status::FromErrno("socketpair"));
  UniqueFd a(pair[0]), b(pair[1]);
  struct stat st;
  if (::fstat(a.get(), &st) != 0) return Fail(p, Status::FromErrno("fstat socketpair"));
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl.valid()) return Fail(p, Status::FromErrno("socket(NETLINK_SOCK_DIAG)"));
  struct {
    struct nlmsghdr nlh;
    struct unix_diag_req req;
  } msg;
  std::memset(&msg, 0, sizeof(msg));
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_show = UDIAG_SHOW_NAME;
  struct sockaddr_nl sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != static_cast<ssize_t>(sizeof(msg)))
    return Fail(p, Status::FromErrno("send UNIX_DIAG dump request"));
  size_t count = 0;
  bool own_found = false;
  const auto deadline = Clock::now() + std::chrono::milliseconds(kChildTimeoutMs);
  alignas(struct nlmsghdr) char buf[32768];
  for (;;) {
    const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    struct pollfd pfd = {nl.get(), POLLIN, 0};
    if (left <= 0 || ::poll(&pfd, 1, left) <= 0) return Fail(p, Status::Error("no complete UNIX_DIAG reply within 1s"));
    ssize_t n = ::recv(nl.get(), buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(p, Status::FromErrno("recv UNIX_DIAG reply"));
    for (auto* h = reinterpret_cast<struct nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<struct nlmsgerr*>(NLMSG_DATA(h));
        return Fail(p, Status::Errno(-e->error, "UNIX_DIAG dump"));
      }
      if (h->nlmsg_type == NLMSG_DONE) {
        if (count == 0) return Fail(p, Status::Error("UNIX_DIAG dump returned no sockets"));
        p.ok = true;
        p.detail = "UNIX_DIAG dump listed " + std::to_string(count) + " unix sockets" + (own_found ? ", our socketpair among them" : "");
        return p;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      ++count;
      auto* d = static_cast<struct unix_diag_msg*>(NLMSG_DATA(h));
      if (d->udiag_ino == st.st_ino) own_found = true;
    }
  }
}

Probe ProbeNamespaces() {
  Probe p{"namespaces", false, false, ""};
  static const struct {
    int flag;
    const char* name;
  } kNs[] = {{CLONE_NEWPID, "pid"}, {CLONE_NEWNS, "mnt"}, {CLONE_NEWNET, "net"}, {CLONE_NEWIPC, "ipc"}, {CLONE_NEWUTS, "uts"}};
  std::string worked, failed;
  for (const auto& ns : kNs) {
    const int flag = ns.flag;
    auto code = RunInChild("unshare child", [flag] { return ::unshare(flag) == 0 ? 0 : errno; });
    if (code.ok() && *code == 0) {
      worked += worked.empty() ? "" : " ";
      worked += ns.name;
    } else {
      failed += failed.empty() ? "" : ", ";
      failed += std::string(ns.name) + ": " + (code.ok() ? std::string(strerror(*code)) : code.status().ToString());
    }
  }
  p.ok = failed.empty();
  p.detail = "unshare works for: " + (worked.empty() ? std::string("none") : worked);
  if (!failed.empty()) p.detail += "; failed: " + failed;
  return p;
}

Probe ProbeCapabilities() {
  Probe p{"capabilities", false, true, ""};
  auto status = ReadFileToString("/proc/self/status");
  if (!status.ok()) return Fail(p, status.status());
  std::optional<uint64_t> eff;
  for (std::string_view line : SplitLines(*status)) {
    if (!StartsWith(line, "CapEff:")) continue;
    eff = std::strtoull(std::string(Trim(line.substr(7))).c_str(), nullptr, 16);
  }
  if (!eff) return Fail(p, Status::Error("no CapEff in /proc/self/status"));
  auto has = [&](int bit) { return (*eff >> bit) & 1; };
  const bool cr = has(40), admin = has(21), ptrace = has(19), resource = has(24);
  // What `cryo dump` and `cryo restore` check first (base/privileges.h).
  p.ok = (cr || admin) && ptrace;
  p.detail = std::string("CAP_CHECKPOINT_RESTORE ") + (cr ? "yes" : "no") + ", CAP_SYS_ADMIN " + (admin ? "yes" : "no") +
             ", CAP_SYS_PTRACE " + (ptrace ? "yes" : "no");
  if (!p.ok) p.detail += "; " + std::string(kNeedPrivileges);
  if (!resource) p.detail += "; no CAP_SYS_RESOURCE: rlimits above the current hard limit cannot be restored";
  return p;
}

Probe ProbeSoftDirty() {
  Probe p{"soft-dirty", true, false, ""};
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  Mapping m(page);
  UniqueFd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  uint64_t entry = 0;
  if (m.addr() != nullptr) m.addr()[0] = 1;  // a freshly written page is soft-dirty when the kernel tracks it
  if (m.addr() == nullptr || !fd.valid() ||
      ::pread(fd.get(), &entry, sizeof(entry), static_cast<off_t>(reinterpret_cast<uintptr_t>(m.addr()) / page * sizeof(entry))) != sizeof(entry)) {
    p.detail = "could not read /proc/self/pagemap (" + std::string(strerror(errno)) + "); PAGEMAP_SCAN is used instead";
    return p;
  }
  const bool reported = (entry >> 55) & 1;
  p.detail = reported ? "soft-dirty bits reported (CONFIG_MEM_SOFT_DIRTY on); PAGEMAP_SCAN is used instead"
                      : "soft-dirty bits not reported (CONFIG_MEM_SOFT_DIRTY off); PAGEMAP_SCAN is used instead";
  return p;
}

// ---------------------------------------------------------------------------
// Identity of the running kernel: what the cache is keyed on.

Result<std::string> KernelRelease() {
  struct utsname u;
  if (::uname(&u) != 0) return Status::FromErrno("uname");
  return std::string(u.release);
}

Result<std::string> BootId() {
  CRYO_ASSIGN_OR_RETURN(std::string id, ReadFileToString("/proc/sys/kernel/random/boot_id"));
  return std::string(Trim(id));
}

// ---------------------------------------------------------------------------
// Cache file: "cryo-check-cache 1", "kernel K", "boot_id B", "probe OK REQUIRED NAME DETAIL"..., "end".
// Fields are percent-encoded so they never contain spaces or newlines.

constexpr char kCacheMagic[] = "cryo-check-cache 1";
constexpr size_t kMaxCacheSize = 1 << 20;

std::string Encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c <= 0x20 || c == '%' || c == 0x7f) {
      char buf[4];
      snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

Result<std::string> Decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return Status::Error("truncated escape");
    int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return Status::Error("bad escape");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

Result<bool> ParseBool(std::string_view s) {
  if (s == "1") return true;
  if (s == "0") return false;
  return Status::Error("bad flag '" + std::string(s) + "'");
}

Result<Report> ReadCache(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path);
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022) != 0)
    return Status::Error(path + " is not a regular file owned by us and writable only by us");
  if (static_cast<size_t>(st.st_size) > kMaxCacheSize) return Status::Error(path + " is too large");
  std::string text;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("read " + path);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxCacheSize) return Status::Error(path + " is too large");
  }
  auto report = ParseReport(text);
  if (!report.ok()) return report.status().Prefixed("parsing " + path);
  return report;
}

Status WriteCache(const std::string& path, const Report& report) {
  const std::string text = SerializeReport(report);
  std::string tmp = path + ".tmp.XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("create temporary file for " + path);
  auto fail = [&](const char* what) {
    Status st = Status::FromErrno(std::string(what) + " " + tmp);
    fd.reset();
    ::unlink(tmp.c_str());
    return st;
  };
  if (::fchmod(fd.get(), 0600) != 0) return fail("fchmod");
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("write");
    off += static_cast<size_t>(n);
  }
  if (::close(fd.release()) != 0) return fail("close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename to cache");
  return Status::Ok();
}

void AppendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

}  // namespace

// ---------------------------------------------------------------------------

void ComputeVerdict(Report& report) {
  std::vector<std::string> failed;
  for (const Probe& p : report.probes)
    if (p.required && !p.ok) failed.push_back(p.name);
  report.can_checkpoint = failed.empty();
  report.why.clear();
  if (failed.empty()) return;
  report.why = failed.size() == 1 ? "Required probe failed: " : "Required probes failed: ";
  for (size_t i = 0; i < failed.size(); ++i) report.why += (i ? ", " : "") + failed[i];
  report.why += '.';
}

Report RunProbes() {
  const auto start = Clock::now();
  Report r;
  if (auto rel = KernelRelease(); rel.ok()) r.kernel_release = *rel;
  if (auto id = BootId(); id.ok()) r.boot_id = *id;
  using ProbeFn = Probe (*)();
  static const ProbeFn kProbes[] = {ProbePtraceSeize, ProbeXsave,     ProbeProcessVmReadv, ProbePidfdGetfd,   ProbeClone3SetTid,
                                    ProbePrSetMmMap,  ProbeUserfaultfdWpAsync, ProbePagemapScan, ProbeTcpRepair, ProbeSockDiag,
                                    ProbeNamespaces,  ProbeCapabilities, ProbeSoftDirty};
  for (ProbeFn fn : kProbes) {
    const auto t0 = Clock::now();
    Probe p = fn();
    LOG_DEBUG("check: %s %s in %lld us: %s", p.name.c_str(), p.ok ? "ok" : "FAIL",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()), p.detail.c_str());
    r.probes.push_back(std::move(p));
  }
  ComputeVerdict(r);
  LOG_DEBUG("check: all probes in %lld us",
            static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()));
  return r;
}

std::string SerializeReport(const Report& report) {
  std::string out = std::string(kCacheMagic) + "\n";
  out += "kernel " + Encode(report.kernel_release) + "\n";
  out += "boot_id " + Encode(report.boot_id) + "\n";
  for (const Probe& p : report.probes)
    out += std::string("probe ") + (p.ok ? "1 " : "0 ") + (p.required ? "1 " : "0 ") + Encode(p.name) + " " + Encode(p.detail) + "\n";
  out += "end\n";
  return out;
}

Result<Report> ParseReport(const std::string& text) {
  if (text.empty() || text.back() != '\n') return Status::Error("truncated cache");
  std::vector<std::string_view> lines = SplitLines(text);
  if (lines.size() < 4 || lines.front() != kCacheMagic || lines.back() != "end") return Status::Error("not a cryo check cache");
  Report r;
  bool have_kernel = false, have_boot = false;
  for (size_t i = 1; i + 1 < lines.size(); ++i) {
    std::vector<std::string_view> w;
    size_t start = 0;
    std::string_view line = lines[i];
    for (;;) {  // split on single spaces; empty fields are allowed
      size_t sp = line.find(' ', start);
      w.push_back(line.substr(start, sp == std::string_view::npos ? std::string_view::npos : sp - start));
      if (sp == std::string_view::npos) break;
      start = sp + 1;
    }
    if (w[0] == "kernel" && w.size() == 2 && !have_kernel) {
      CRYO_ASSIGN_OR_RETURN(r.kernel_release, Decode(w[1]));
      have_kernel = true;
    } else if (w[0] == "boot_id" && w.size() == 2 && !have_boot) {
      CRYO_ASSIGN_OR_RETURN(r.boot_id, Decode(w[1]));
      have_boot = true;
    } else if (w[0] == "probe" && w.size() == 5) {
      Probe p;
      CRYO_ASSIGN_OR_RETURN(p.ok, ParseBool(w[1]));
      CRYO_ASSIGN_OR_RETURN(p.required, ParseBool(w[2]));
      CRYO_ASSIGN_OR_RETURN(p.name, Decode(w[3]));
      CRYO_ASSIGN_OR_RETURN(p.detail, Decode(w[4]));
      if (p.name.empty()) return Status::Error("probe without a name");
      r.probes.push_back(std::move(p));
    } else {
      return Status::Error("bad cache line " + std::to_string(i + 1));
    }
  }
  if (!have_kernel || !have_boot || r.probes.empty()) return Status::Error("incomplete cache");
  ComputeVerdict(r);
  return r;
}

Result<Report> LoadOrRunProbes(const std::string& cache_path, bool refresh) {
  CRYO_ASSIGN_OR_RETURN(std::string release, KernelRelease());
  CRYO_ASSIGN_OR_RETURN(std::string boot_id, BootId());
  if (!refresh) {
    auto cached = ReadCache(cache_path);
    if (cached.ok() && cached->kernel_release == release && cached->boot_id == boot_id) {
      // The capabilities are the caller's, not the kernel's: never cached.
      for (Probe& p : cached->probes)
        if (p.name == "capabilities") p = ProbeCapabilities();
      ComputeVerdict(*cached);
      return cached;
    }
    if (cached.ok())
      LOG_DEBUG("check: cache %s is for another boot or kernel; probing again", cache_path.c_str());
    else if (cached.status().err() != ENOENT)
      LOG_DEBUG("check: ignoring cache: %s", cached.status().ToString().c_str());
  }
  Report report = RunProbes();
  report.kernel_release = release;
  report.boot_id = boot_id;
  if (Status st = WriteCache(cache_path, report); !st.ok()) LOG_WARN("check: cannot write cache: %s", st.ToString().c_str());
  return report;
}

std::string FormatText(const Report& report) {
  size_t width = 18;
  for (const Probe& p : report.probes) width = std::max(width, p.name.size() + 2);
  std::string out;
  for (const Probe& p : report.probes) {
    std::string line = p.ok ? "ok    " : "FAIL  ";
    line += p.name;
    line.append(width - p.name.size(), ' ');
    line += p.detail;
    if (!p.ok && !p.required) line += " (optional)";
    out += line + "\n";
  }
  if (report.can_checkpoint)
    out += "verdict: can checkpoint (kernel " + report.kernel_release + ")\n";
  else
    out += "verdict: cannot checkpoint. " + report.why + "\n";
  return out;
}

std::string FormatJson(const Report& report) {
  std::string out = "{\"kernel\":";
  AppendJsonString(out, report.kernel_release);
  out += ",\"boot_id\":";
  AppendJsonString(out, report.boot_id);
  out += ",\"can_checkpoint\":";
  out += report.can_checkpoint ? "true" : "false";
  out += ",\"why\":";
  AppendJsonString(out, report.why);
  out += ",\"probes\":[";
  for (size_t i = 0; i < report.probes.size(); ++i) {
    const Probe& p = report.probes[i];
    out += i ? ",{\"name\":" : "{\"name\":";
    AppendJsonString(out, p.name);
    out += ",\"ok\":";
    out += p.ok ? "true" : "false";
    out += ",\"required\":";
    out += p.required ? "true" : "false";
    out += ",\"detail\":";
    AppendJsonString(out, p.detail);
    out += '}';
  }
  out += "]}\n";
  return out;
}

std::string DefaultCachePath() {
  if (::mkdir("/run/cryo", 0700) == 0 || errno == EEXIST) {
    struct stat st;
    if (::lstat("/run/cryo", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/run/cryo", W_OK | X_OK) == 0) return "/run/cryo/check.cache";
  }
  return "/tmp/cryo-check.cache";
}

}  // namespace cryo::check
