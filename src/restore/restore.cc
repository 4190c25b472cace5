#include "restore/restore.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <fstream>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "image/image_dir.h"
#include "inject/remote_syscall.h"
#include "restore/helper.h"
#include "restorer/blob.h"
#include "restorer/restorer_args.h"
#include "seize/ptrace_util.h"

namespace cryo {

namespace {

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// Kills the half-restored process unless released.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ~ChildGuard() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int st;
    while (::waitpid(pid_, &st, __WALL) < 0 && errno == EINTR) {
    }
  }
  void Release() { pid_ = 0; }

 private:
  pid_t pid_;
};

// clone3(2) with set_tid: the child gets exactly `pid`. A PID just freed by a
// killed original can stay busy for a moment (see DESIGN.md), so EEXIST is
// retried for a bounded time.
Result<pid_t> CloneWithPid(pid_t pid) {
  struct clone_args args;
  std::memset(&args, 0, sizeof(args));
  args.exit_signal = SIGCHLD;
  pid_t tid = pid;
  args.set_tid = reinterpret_cast<uint64_t>(&tid);
  args.set_tid_size = 1;
  const double deadline = Now() + 3.0;
  for (;;) {
    long r = syscall(SYS_clone3, &args, sizeof(args));
    if (r >= 0) return static_cast<pid_t>(r);
    if (errno != EEXIST || Now() > deadline) break;
    ::usleep(5000);
  }
  if (errno == EEXIST) {
    auto comm = ReadFileToString("/proc/" + std::to_string(pid) + "/comm");
    return Status::Error("pid " + std::to_string(pid) + " is in use" +
                         (comm.ok() ? " by " + std::string(Trim(*comm)) : std::string()) +
                         "; the original process must be gone before it can be restored with its PID");
  }
  return Status::FromErrno("clone3 with set_tid " + std::to_string(pid));
}

struct HelperReport {
  std::string error;
  uint64_t area = 0, area_len = 0, status_fd = 0;
};

// Reads the helper's status records until EOF.
HelperReport ReadStatus(int fd) {
  HelperReport rep;
  std::string buf;
  char chunk[4096];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
  }
  size_t i = 0;
  while (i < buf.size()) {
    const auto kind = static_cast<HelperRecord>(buf[i++]);
    if (kind == HelperRecord::kWarning || kind == HelperRecord::kError) {
      uint32_t len;
      if (i + 4 > buf.size()) break;
      std::memcpy(&len, buf.data() + i, 4);
      i += 4;
      std::string text = buf.substr(i, len);
      i += len;
      if (kind == HelperRecord::kWarning) LOG_WARN("%s", text.c_str());
      else rep.error = text;
    } else if (kind == HelperRecord::kArea) {
      if (i + 24 > buf.size()) break;
      std::memcpy(&rep.area, buf.data() + i, 8);
      std::memcpy(&rep.area_len, buf.data() + i + 8, 8);
      std::memcpy(&rep.status_fd, buf.data() + i + 16, 8);
      i += 24;
    } else if (kind == HelperRecord::kBlobFailure) {
      restorer::Failure f;
      if (i - 1 + sizeof(f) > buf.size()) break;
      std::memcpy(&f, buf.data() + i - 1, sizeof(f));
      i += sizeof(f) - 1;
      char where[32];
      snprintf(where, sizeof(where), "%#llx", static_cast<unsigned long long>(f.addr));
      rep.error = Status::Errno(f.err, std::string("restorer: ") + f.step + " (" + where + ")").ToString();
    } else {
      rep.error = "garbled status from the restore helper";
      break;
    }
  }
  return rep;
}

void FillRegs(const image::TaskCore& t, user_regs_struct* regs) {
  static_assert(sizeof(user_regs_struct) == 27 * 8);
  uint64_t* words = reinterpret_cast<uint64_t*>(regs);
  for (int i = 0; i < 27; ++i) words[i] = t.regs().gpr(i);
}

Result<uint64_t> BlobSyscallInsn() {
  const uint8_t* b = restorer::BlobData();
  for (size_t i = 0; i + 1 < restorer::BlobSize(); ++i)
    if (b[i] == 0x0f && b[i + 1] == 0x05) return i;
  return Status::Error("the restorer blob has no syscall instruction");
}

// The image's register state must fit this CPU: same xsave size, and no state
// component this CPU lacks (PTRACE_SETREGSET would refuse it half-way).
Status CheckCpu(const image::Inventory& inv) {
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const uint64_t xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  if (inv.xsave_features() & ~xcr0) {
    char buf[160];
    snprintf(buf, sizeof(buf), "the image holds CPU state components %#llx this CPU does not have (XCR0 %#llx)",
             static_cast<unsigned long long>(inv.xsave_features()), static_cast<unsigned long long>(xcr0));
    return Status::Error(buf);
  }
  if (inv.xsave_size() != XsaveSize())
    return Status::Error("the image's xsave area is " + std::to_string(inv.xsave_size()) + " bytes, this CPU's is " +
                         std::to_string(XsaveSize()));
  return Status::Ok();
}

}  // namespace

Result<pid_t> Restore(const RestoreOptions& opts) {
  const double t0 = Now();
  CRYO_ASSIGN_OR_RETURN(image::LoadedImage img, image::LoadImage(opts.images_dir));
  if (img.processes.size() != 1) return Status::Error("images with several processes are not supported yet");
  const image::ProcessImage& proc = img.processes.begin()->second;
  const pid_t pid = proc.core.pid();
  CRYO_RETURN_IF_ERROR(CheckCpu(img.inventory));
  CRYO_ASSIGN_OR_RETURN(uint64_t syscall_off, BlobSyscallInsn());
  LOG_DEBUG("image %s loaded and validated in %.3f ms", opts.images_dir.c_str(), (Now() - t0) * 1e3);

  int sync[2], status[2];
  if (::pipe2(sync, O_CLOEXEC) != 0 || ::pipe2(status, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
  UniqueFd sync_r(sync[0]), sync_w(sync[1]), status_r(status[0]), status_w(status[1]);

  HelperContext ctx;
  ctx.proc = &proc;
  ctx.images_dir = opts.images_dir;
  ctx.sync_fd = sync_r.get();
  ctx.status_fd = status_w.get();
  ctx.fill_threads = static_cast<int>(std::min(4u, std::max(1u, std::thread::hardware_concurrency())));
  const pid_t parent = ::getpid();

  CRYO_ASSIGN_OR_RETURN(pid_t child, CloneWithPid(pid));
  if (child == 0) {
    // The helper dies with cryo until the restore is complete.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    RunHelper(ctx);
  }
  ChildGuard guard(child);
  sync_r.reset();
  status_w.reset();

  // Seize the helper and tell it where glibc registered its rseq area.
  // TRACECLONE: the threads the blob creates are ours from their first
  // instruction. EXITKILL: if cryo dies before the release, nothing
  // half-restored survives it.
  if (ptrace(PTRACE_SEIZE, child, nullptr,
             reinterpret_cast<void*>(PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL)) != 0)
    return Status::FromErrno("PTRACE_SEIZE restored pid " + std::to_string(child));
  if (ptrace(PTRACE_INTERRUPT, child, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_INTERRUPT");
  CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(child));
  if (si.exited) return Status::Error("restore helper died at start");
  struct {
    uint64_t addr;
    uint32_t len, sig, flags, pad;
  } rc{};
  if (ptrace(static_cast<__ptrace_request>(0x420f /*PTRACE_GET_RSEQ_CONFIGURATION*/), child, sizeof(rc), &rc) < 0)
    return Status::FromErrno("PTRACE_GET_RSEQ_CONFIGURATION");
  if (ptrace(PTRACE_CONT, child, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_CONT");
  struct {
    uint64_t addr;
    uint32_t len, sig;
  } reg = {rc.addr, rc.len, rc.sig};
  if (::write(sync_w.get(), &reg, sizeof(reg)) != sizeof(reg)) return Status::FromErrno("starting the restore helper");
  sync_w.reset();

  // Wait until every thread of the image stopped itself with SIGSTOP at the end
  // of the blob (or the helper died). Other tasks (the helper's fill threads)
  // are let run and reaped.
  std::set<pid_t> expected, stopped;
  for (const image::TaskCore& t : proc.core.threads()) expected.insert(t.tid());
  const double deadline = Now() + 120;
  while (stopped.size() < expected.size()) {
    int st = 0;
    pid_t tid = ::waitpid(-1, &st, __WALL | WNOHANG);
    if (tid < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("waitpid for the restored threads");
    }
    if (tid == 0) {
      if (Now() > deadline) return Status::Errno(ETIMEDOUT, "waiting for pid " + std::to_string(pid) + " to be rebuilt");
      ::usleep(200);
      continue;
    }
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      if (tid != child) continue;  // a helper thread went away
      HelperReport rep = ReadStatus(status_r.get());
      guard.Release();
      return Status::Error(rep.error.empty() ? "restore helper died (wait status " + std::to_string(st) + ")" : rep.error);
    }
    const int sig = WSTOPSIG(st), event = st >> 16;
    if (event == 0 && sig == SIGSTOP && expected.count(tid)) {
      stopped.insert(tid);
      continue;
    }
    // Clone events, the first stop of a new thread, other signals: go on.
    const long inject = (event == 0 && sig != SIGSTOP && sig != (SIGTRAP | 0x80)) ? sig : 0;
    if (ptrace(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(inject)) != 0 && errno != ESRCH)
      return Status::FromErrno("PTRACE_CONT task " + std::to_string(tid));
  }
  LOG_DEBUG("pid %d: address space and %zu threads rebuilt in %.3f ms", pid, stopped.size(), (Now() - t0) * 1e3);

  // From inside the process: close the status pipe, unmap the blob; then load
  // every thread's registers and signal mask.
  user_regs_struct cur;
  CRYO_RETURN_IF_ERROR(GetRegs(child, &cur));
  RemoteSyscaller rs(child, cur);
  // The status pipe's last writer goes with this close: read what it said.
  uint64_t area = 0, area_len = 0;
  {
    // The area record was written before the blob started; read it without
    // waiting for EOF (the pipe is still open in the process).
    int fl = ::fcntl(status_r.get(), F_GETFL);
    ::fcntl(status_r.get(), F_SETFL, fl | O_NONBLOCK);
    HelperReport rep = ReadStatus(status_r.get());
    if (!rep.error.empty()) return Status::Error(rep.error);
    if (!rep.area) return Status::Error("restore helper did not report its restorer area");
    area = rep.area;
    area_len = rep.area_len;
    rs.SetSyscallInsn(area + syscall_off);
    CRYO_ASSIGN_OR_RETURN(long r, rs.Syscall(SYS_close, rep.status_fd));
    if (r != 0) return Status::Errno(static_cast<int>(-r), "closing the status pipe in pid " + std::to_string(pid));
  }
  CRYO_ASSIGN_OR_RETURN(long r, rs.Syscall(SYS_munmap, area, area_len));
  if (r != 0) return Status::Errno(static_cast<int>(-r), "unmapping the restorer from pid " + std::to_string(pid));
  for (const image::TaskCore& t : proc.core.threads()) {
    user_regs_struct regs;
    FillRegs(t, &regs);
    ApplySyscallRestart(&regs);
    CRYO_RETURN_IF_ERROR(SetRegs(t.tid(), regs));
    CRYO_RETURN_IF_ERROR(SetXstate(t.tid(), t.regs().xsave()));
    CRYO_RETURN_IF_ERROR(SetSigmask(t.tid(), t.blocked()));
    const int policy = static_cast<int>(t.sched_policy());
    if (policy != SCHED_OTHER) {
      struct sched_param sp = {static_cast<int>(t.sched_priority())};
      if (::sched_setscheduler(t.tid(), policy, &sp) != 0)
        return Status::FromErrno("sched_setscheduler of task " + std::to_string(t.tid()));
    }
    if (t.tid() != pid && ::setpriority(PRIO_PROCESS, static_cast<id_t>(t.tid()), t.nice()) != 0)
      return Status::FromErrno("setpriority of task " + std::to_string(t.tid()));
  }
  if (!opts.pidfile.empty()) {
    std::ofstream pf(opts.pidfile, std::ios::trunc);
    pf << pid << "\n";
    if (!pf) return Status::Error("cannot write pidfile " + opts.pidfile);
  }
  // Release every thread together.
  for (const image::TaskCore& t : proc.core.threads())
    if (ptrace(PTRACE_DETACH, t.tid(), nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_DETACH task " + std::to_string(t.tid()));
  guard.Release();
  LOG_INFO("pid %d restored from %s in %.1f ms", pid, opts.images_dir.c_str(), (Now() - t0) * 1e3);
  return pid;
}

}  // namespace cryo
