#include "restore/helper.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/file_util.h"
#include "base/log.h"
#include "files/fd_table.h"
#include "mem/vma_restore.h"
#include "proc/proc.h"
#include "restorer/blob.h"
#include "restorer/restorer_args.h"
#include "tree/task_restore.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kStackSize = 64 << 10;
constexpr uint64_t kThreadStackSize = 16 << 10;

uint64_t RoundUp(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void Send(int fd, HelperRecord kind, pid_t pid, const void* payload, uint32_t len) {
  std::string rec(9 + len, '\0');
  rec[0] = static_cast<char>(kind);
  std::memcpy(&rec[1], &pid, 4);
  std::memcpy(&rec[5], &len, 4);
  if (len) std::memcpy(&rec[9], payload, len);
  // One write: records from different helpers must not interleave.
  while (::write(fd, rec.data(), rec.size()) < 0 && errno == EINTR) {
  }
}

void SendText(int fd, HelperRecord kind, pid_t pid, const std::string& text) {
  const std::string t = text.substr(0, 3000);
  Send(fd, kind, pid, t.data(), static_cast<uint32_t>(t.size()));
}

// Closes every fd but `keep` (ascending) with close_range(2) over the gaps: no
// listing of /proc/self/fd, whose entries the kernel instantiates one by one
// (every helper holds the whole tree's pool).
Status CloseAllBut(const std::vector<int>& keep) {
  unsigned int from = 0;
  for (int fd : keep) {
    const unsigned int u = static_cast<unsigned int>(fd);
    if (u > from && ::close_range(from, u - 1, 0) != 0) return Status::FromErrno("close_range");
    from = u + 1;
  }
  if (::close_range(from, ~0U, 0) != 0) return Status::FromErrno("close_range");
  return Status::Ok();
}

// Closes `fds` (ascending), one close_range(2) per run of consecutive numbers.
void CloseRuns(const std::vector<int>& fds) {
  for (size_t i = 0; i < fds.size();) {
    size_t j = i;
    while (j + 1 < fds.size() && fds[j + 1] == fds[j] + 1) ++j;
    (void)::close_range(static_cast<unsigned int>(fds[i]), static_cast<unsigned int>(fds[j]), 0);
    i = j + 1;
  }
}

// Moves the helper's own fds above every fd number of the image and closes
// everything else but the fd pool.
Status MoveOwnFds(int max_target_fd, std::vector<int*> own, const std::vector<int>& pool_fds) {
  const int base = std::max(max_target_fd + 1, 3);
  std::vector<int> keep = pool_fds;
  for (int* fd : own) {
    int moved = ::fcntl(*fd, F_DUPFD_CLOEXEC, base);
    if (moved < 0) return Status::FromErrno("moving cryo's fd " + std::to_string(*fd) + " out of the way");
    ::close(*fd);
    *fd = moved;
    keep.push_back(moved);
  }
  std::sort(keep.begin(), keep.end());
  return CloseAllBut(keep);
}

// Session and process group, first half: leaders set themselves up before
// their children are cloned (children inherit the session).
void SessionPhase1(const image::ProcessCore& core) {
  const pid_t pid = core.pid();
  if (core.sid() == pid) {
    ::setsid();
  } else if (core.pgid() == pid) {
    ::setpgid(0, 0);
  }
}

// Second half, once every process exists: join the group of another process.
void SessionPhase2(const image::ProcessCore& core, int status_fd, bool shell_job) {
  const pid_t pid = core.pid();
  if (core.sid() == pid || core.pgid() == pid) return;
  if (::getpgid(0) == core.pgid()) return;
  if (::getsid(0) == core.sid() && ::setpgid(0, core.pgid()) == 0) return;
  if (shell_job) return;  // a shell job joins the session of the shell cryo runs in
  SendText(status_fd, HelperRecord::kWarning, pid,
           "pid " + std::to_string(pid) + ": session " + std::to_string(core.sid()) + " / process group " +
               std::to_string(core.pgid()) + " cannot be rebuilt (their leader is outside the image); it joins " +
               std::to_string(::getsid(0)) + " / " + std::to_string(::getpgid(0)));
}

// A zombie: exits the way it did, once the whole tree exists.
[[noreturn]] void BecomeZombie(const image::ProcessCore& core) {
  ::prctl(PR_SET_NAME, core.zombie_comm().c_str(), 0, 0, 0);
  const int st = core.exit_status();
  if (WIFSIGNALED(st)) {
    struct rlimit none = {0, 0};
    ::setrlimit(RLIMIT_CORE, &none);
    ::signal(WTERMSIG(st), SIG_DFL);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, nullptr);
    ::kill(::getpid(), WTERMSIG(st));
  }
  ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 0);
}

Status BuildProcess(HelperContext& ctx) {
  const image::ProcessImage& p = ctx.img->processes.at(ctx.pid);
  const image::ProcessCore& core = p.core;

  CRYO_ASSIGN_OR_RETURN(UniqueFd pages_fd, image::OpenPageFile(ctx.img->dir, core.pid(), p.mm));
  int pages = pages_fd.release();
  int exe_fd = ::open(core.mm().exe_path().c_str(), O_RDONLY | O_CLOEXEC);
  if (exe_fd < 0) return Status::FromErrno("open executable " + core.mm().exe_path());
  CRYO_RETURN_IF_ERROR(MoveOwnFds(ctx.max_image_fd, {&ctx.status_fd, &pages, &exe_fd}, *ctx.pool_fds));

  std::vector<std::string> warnings;
  CRYO_RETURN_IF_ERROR(ApplyProcessSettings(core, &warnings));
  for (const auto& w : warnings) SendText(ctx.status_fd, HelperRecord::kWarning, ctx.pid, w);
  CRYO_RETURN_IF_ERROR(RestoreFdTable(ctx.pid, p.fds, *ctx.pool).Prefixed("files"));

  // Lay out: [premap reservation][guard][blob | args | stacks | vDSO scratch].
  // It needs our own ranges and the vDSO's place: first those cryo had when it
  // cloned the tree (a fork keeps them), since a range we have mapped since is
  // refused by MAP_FIXED_NOREPLACE; then, if so, /proc/self/maps (not smaps,
  // which walks every page table of the helper to count its pages).
  int n_vmas = 0;
  for (const image::Vma& v : p.mm.vmas()) n_vmas += IsPremapped(v);
  const uint64_t premap_len = PremapSize(p.mm);
  const uint64_t blob_len = RoundUp(restorer::BlobSize());
  const size_t n_pending = PendingCount(core);
  const uint64_t n_threads = static_cast<uint64_t>(core.threads_size() - 1);
  const uint64_t args_len = RoundUp(sizeof(restorer::Args) + n_vmas * sizeof(restorer::Move) + n_pending * 128 +
                                    n_threads * sizeof(restorer::ThreadArg) + 64);
  const uint64_t stacks_len = kStackSize + n_threads * kThreadStackSize;
  std::vector<restorer::Move> specials;
  uint64_t base = 0, area = 0, area_len = 0, scratch_len = 0;
  for (int attempt = 0;; ++attempt) {
    std::vector<proc::Vma> own;
    if (attempt == 0 && ctx.cryo_vmas) {
      own = *ctx.cryo_vmas;
    } else {
      CRYO_ASSIGN_OR_RETURN(std::string maps_text, ReadFileToString("/proc/self/maps"));
      CRYO_ASSIGN_OR_RETURN(own, proc::ParseMaps(maps_text));
    }
    specials.clear();
    CRYO_RETURN_IF_ERROR(PlanSpecialMoves(p.mm, own, &specials));
    scratch_len = 0;
    for (const auto& m : specials) scratch_len += m.len;
    area_len = blob_len + args_len + stacks_len + scratch_len;
    std::vector<std::pair<uint64_t, uint64_t>> used;
    for (const proc::Vma& v : own) used.emplace_back(v.start, v.end);
    for (const image::Vma& v : p.mm.vmas()) used.emplace_back(v.start(), v.end());
    CRYO_ASSIGN_OR_RETURN(base, FindGap(used, premap_len + kPage + area_len));
    const bool last = attempt > 0 || !ctx.cryo_vmas;
    if (::mmap(reinterpret_cast<void*>(base), premap_len, PROT_NONE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED) {
      if (errno == EEXIST && !last) continue;
      return Status::FromErrno("reserving the premap area");
    }
    area = base + premap_len + kPage;
    if (::mmap(reinterpret_cast<void*>(area), area_len, PROT_READ | PROT_WRITE | PROT_EXEC,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED) {
      const int err = errno;
      ::munmap(reinterpret_cast<void*>(base), premap_len);
      if (err == EEXIST && !last) continue;
      return Status::Errno(err, "mapping the restorer area");
    }
    break;
  }

  std::vector<restorer::Move> moves;
  const FdPool* pool = ctx.pool;
  // Fill threads pay off for much memory only: each is a clone cryo traces.
  constexpr uint64_t kThreadedFillBytes = 8 << 20;
  const int fill_threads = p.mm.total_pages() * kPage >= kThreadedFillBytes ? ctx.fill_threads : 1;
  CRYO_RETURN_IF_ERROR(PremapAndFill(p.mm, pages, base, fill_threads,
                                     [pool](uint64_t id) { return pool->ShmemFd(id); }, &moves)
                           .Prefixed("memory"));
  ::close(pages);
  CloseRuns(*ctx.pool_fds);

  std::memcpy(reinterpret_cast<void*>(area), restorer::BlobData(), restorer::BlobSize());
  auto* a = reinterpret_cast<restorer::Args*>(area + blob_len);
  a->status_fd = ctx.status_fd;
  std::vector<restorer::Range> keep = {{base, premap_len}, {area, area_len}};
  for (const auto& m : specials) keep.push_back({m.from, m.len});
  std::sort(keep.begin(), keep.end(), [](auto& x, auto& y) { return x.start < y.start; });
  if (keep.size() > restorer::kMaxKeep || specials.size() > restorer::kMaxSpecial)
    return Status::Error("too many special mappings");
  a->n_keep = static_cast<uint32_t>(keep.size());
  std::copy(keep.begin(), keep.end(), a->keep);
  a->n_special = static_cast<uint32_t>(specials.size());
  std::copy(specials.begin(), specials.end(), a->special);
  a->special_scratch = area + blob_len + args_len + stacks_len;
  a->premap = {base, premap_len};
  a->n_vmas = static_cast<uint32_t>(moves.size());
  a->vmas_off = sizeof(restorer::Args);
  std::copy(moves.begin(), moves.end(), reinterpret_cast<restorer::Move*>(reinterpret_cast<char*>(a) + a->vmas_off));
  a->pending_off = a->vmas_off + moves.size() * sizeof(restorer::Move);
  a->threads_off = (a->pending_off + n_pending * 128 + 63) & ~63ull;
  CRYO_RETURN_IF_ERROR(FillTaskArgs(core, exe_fd, a, area + blob_len + args_len + kStackSize, kThreadStackSize));
  warnings.clear();
  CRYO_RETURN_IF_ERROR(ApplyLateSettings(core, &warnings));
  for (const auto& w : warnings) SendText(ctx.status_fd, HelperRecord::kWarning, ctx.pid, w);

  const uint64_t rec[3] = {area, area_len, static_cast<uint64_t>(ctx.status_fd)};
  Send(ctx.status_fd, HelperRecord::kArea, ctx.pid, rec, sizeof(rec));

  // glibc registered rseq for this thread inside memory the blob unmaps; the
  // kernel would write there on the next preemption (rseq(2)).
  if (ctx.rseq.addr && syscall(SYS_rseq, ctx.rseq.addr, ctx.rseq.len, 1 /*RSEQ_FLAG_UNREGISTER*/, ctx.rseq.sig) != 0)
    return Status::FromErrno("unregistering the helper's rseq area");
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);

  const uint64_t stack_top = ((area + blob_len + args_len + kStackSize) & ~15ull) - 8;
  asm volatile(
      "mov %0, %%rsp\n\t"
      "mov %1, %%rdi\n\t"
      "jmp *%2\n\t" ::"r"(stack_top),
      "r"(a), "r"(area)
      : "memory");
  __builtin_unreachable();
}

// Runs in the helper of ctx.pid: builds its children, waits for the tree, then
// becomes the image's process.
Status Run(HelperContext& ctx) {
  const image::ProcessCore& core = ctx.img->processes.at(ctx.pid).core;
  SessionPhase1(core);
  std::vector<pid_t> zombies;
  for (const auto& [pid, child] : ctx.img->processes) {
    if (pid == ctx.pid || child.core.ppid() != ctx.pid || pid == ctx.img->inventory.root_pid()) continue;
    const int exit_signal = child.core.exit_signal() ? child.core.exit_signal() : SIGCHLD;
    CRYO_ASSIGN_OR_RETURN(pid_t cpid, CloneWithPid(pid, exit_signal));
    if (cpid == 0) {
      ctx.pid = pid;
      RunHelper(ctx);
    }
    if (child.core.zombie()) zombies.push_back(pid);
  }
  Send(ctx.status_fd, HelperRecord::kCreated, ctx.pid, nullptr, 0);
  char go;
  if (::read(ctx.go_fd, &go, 1) != 1) return Status::FromErrno("waiting for the whole tree");
  ::close(ctx.go_fd);
  if (core.zombie()) BecomeZombie(core);
  SessionPhase2(core, ctx.status_fd, ctx.shell_job);
  // Our zombie children must be dead (not reaped) before we go on, so that
  // their SIGCHLD reaches the helper, not the restored process.
  for (pid_t z : zombies) {
    siginfo_t info;
    while (::waitid(P_PID, static_cast<id_t>(z), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
    }
  }
  return BuildProcess(ctx);
}

}  // namespace

Result<pid_t> CloneWithPid(pid_t pid, int exit_signal) {
  struct clone_args args;
  std::memset(&args, 0, sizeof(args));
  args.exit_signal = static_cast<uint64_t>(exit_signal);
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

void RunHelper(HelperContext ctx) {
  // cryo blocks SIGCHLD while it rebuilds the tree; a helper must not (the
  // SIGCHLD of its zombie children would stay pending into the restored process).
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_UNBLOCK, &chld, nullptr);
  // The helper dies with cryo until the restore is complete.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  CloseLogFile();
  if (ctx.sync_fd >= 0) {
    if (::read(ctx.sync_fd, &ctx.rseq, sizeof(ctx.rseq)) != sizeof(ctx.rseq)) ::_exit(1);
    ::close(ctx.sync_fd);
    ctx.sync_fd = -1;
  }
  Status s = Run(ctx);
  SendText(ctx.status_fd, HelperRecord::kError, ctx.pid, s.ok() ? "restore helper returned" : s.ToString());
  ::_exit(1);
}

}  // namespace cryo
