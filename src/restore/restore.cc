#include "restore/restore.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
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
  uint64_t area = 0, area_len = 0;
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
      if (i + 16 > buf.size()) break;
      std::memcpy(&rep.area, buf.data() + i, 8);
      std::memcpy(&rep.area_len, buf.data() + i + 8, 8);
      i += 16;
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

}  // namespace

Result<pid_t> Restore(const RestoreOptions& opts) {
  const double t0 = Now();
  CRYO_ASSIGN_OR_RETURN(image::LoadedImage img, image::LoadImage(opts.images_dir));
  if (img.processes.size() != 1) return Status::Error("images with several processes are not supported yet");
  const image::ProcessImage& proc = img.processes.begin()->second;
  const pid_t pid = proc.core.pid();
  if (proc.core.threads_size() != 1) return Status::Error("multi-threaded processes are not supported yet");
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
  if (ptrace(PTRACE_SEIZE, child, nullptr, reinterpret_cast<void*>(PTRACE_O_TRACESYSGOOD)) != 0)
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

  // Wait for the blob's SIGSTOP (or the helper's death).
  for (;;) {
    CRYO_ASSIGN_OR_RETURN(si, WaitStop(child, 120000));
    if (si.exited) {
      HelperReport rep = ReadStatus(status_r.get());
      guard.Release();
      return Status::Error(rep.error.empty() ? "restore helper died (wait status " + std::to_string(si.status) + ")"
                                             : rep.error);
    }
    if (si.signal_delivery_stop() && si.stopsig == SIGSTOP) break;
    const int sig = si.signal_delivery_stop() ? si.stopsig : 0;
    if (ptrace(PTRACE_CONT, child, nullptr, reinterpret_cast<void*>(static_cast<long>(sig))) != 0)
      return Status::FromErrno("PTRACE_CONT");
  }
  HelperReport rep = ReadStatus(status_r.get());
  if (!rep.error.empty()) return Status::Error(rep.error);
  if (!rep.area) return Status::Error("restore helper did not report its restorer area");
  LOG_DEBUG("pid %d: address space rebuilt in %.3f ms", pid, (Now() - t0) * 1e3);

  // Unmap the blob from inside the process, then load the saved registers.
  user_regs_struct cur;
  CRYO_RETURN_IF_ERROR(GetRegs(child, &cur));
  RemoteSyscaller rs(child, cur);
  rs.SetSyscallInsn(rep.area + syscall_off);
  CRYO_ASSIGN_OR_RETURN(long r, rs.Syscall(SYS_munmap, rep.area, rep.area_len));
  if (r != 0) return Status::Errno(static_cast<int>(-r), "unmapping the restorer from pid " + std::to_string(pid));
  const image::TaskCore& t = proc.core.threads(0);
  user_regs_struct regs;
  FillRegs(t, &regs);
  ApplySyscallRestart(&regs);
  CRYO_RETURN_IF_ERROR(SetRegs(child, regs));
  CRYO_RETURN_IF_ERROR(SetXstate(child, t.regs().xsave()));
  CRYO_RETURN_IF_ERROR(SetSigmask(child, t.blocked()));
  if (!opts.pidfile.empty()) {
    std::ofstream pf(opts.pidfile, std::ios::trunc);
    pf << pid << "\n";
    if (!pf) return Status::Error("cannot write pidfile " + opts.pidfile);
  }
  if (ptrace(PTRACE_DETACH, child, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_DETACH");
  guard.Release();
  LOG_INFO("pid %d restored from %s in %.1f ms", pid, opts.images_dir.c_str(), (Now() - t0) * 1e3);
  return pid;
}

}  // namespace cryo
