#include "restore/helper_fds.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "files/fd_table.h"
#include "files/file_locks.h"
#include "mem/lazy_plan.h"
#include "ns/user_ns.h"

namespace cryo {

namespace {

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
// their children are cloned (children inherit the session). A leader whose
// terminal was the calling shell's joins cryo's session instead (--shell-job).
void SessionPhase1(const image::ProcessCore& core, bool joins_shell_session) {
  const pid_t pid = core.pid();
  if (core.sid() == pid && !joins_shell_session) {
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
  // pgid 0: led from an ancestor PID namespace; setpgid(0, 0) would make the
  // process a group leader instead.
  if (core.pgid() != 0 && ::getsid(0) == core.sid() && ::setpgid(0, core.pgid()) == 0) return;
  if (shell_job) return;  // a shell job joins the session of the shell cryo runs in
  SendText(status_fd, HelperRecord::kWarning, pid,
           "pid " + std::to_string(pid) + ": session " + std::to_string(core.sid()) + " / process group " +
               std::to_string(core.pgid()) + " cannot be rebuilt (their leader is outside the image); it joins " +
               std::to_string(::getsid(0)) + " / " + std::to_string(::getpgid(0)));
}

// Runs `step(&warnings)` and sends what it warns about to cryo.
template <typename Step>
void SendWarnings(const HelperContext& ctx, Step step) {
  std::vector<std::string> warnings;
  step(&warnings);
  for (const auto& w : warnings) SendText(ctx.status_fd, HelperRecord::kWarning, ctx.pid, w);
}

// A zombie: exits the way it did, once the whole tree exists.
[[noreturn]] void BecomeZombie(const image::ProcessCore& core) {
  ::prctl(PR_SET_NAME, core.zombie_comm().c_str(), 0, 0, 0);
  ExitLike(core.exit_status());
}

// The restorer area of a process: [blob | Args + moves + siginfos + threads |
// stack | thread stacks | vDSO scratch].
struct AreaLayout {
  uint64_t blob_len, args_len, stacks_len, scratch_len;
  uint64_t total() const { return blob_len + args_len + stacks_len + scratch_len; }
};

AreaLayout LayoutArea(const image::ProcessImage& p) {
  const image::ProcessCore& core = p.core;
  uint64_t n_vmas = 0, scratch = 0;
  bool vdso = false;
  for (const image::Vma& v : p.mm.vmas()) {
    n_vmas += IsPremapped(v);
    vdso |= v.kind() == image::VMA_VDSO;
    if (v.kind() == image::VMA_VDSO || v.kind() == image::VMA_VVAR || v.kind() == image::VMA_VVAR_VCLOCK)
      scratch += v.end() - v.start();
  }
  const uint64_t n_threads = static_cast<uint64_t>(std::max(core.threads_size(), 1) - 1);
  AreaLayout l;
  l.blob_len = RoundUp(restorer::BlobSize());
  l.args_len = RoundUp(sizeof(restorer::Args) + n_vmas * (sizeof(restorer::Move) + sizeof(restorer::Range)) +
                       PendingCount(core) * 128 +
                       n_threads * sizeof(restorer::ThreadArg) + SeccompArgBytes(core) + 64);
  l.stacks_len = kStackSize + n_threads * kThreadStackSize;
  l.scratch_len = vdso ? scratch : 0;  // PlanSpecialMoves moves nothing without a vDSO
  return l;
}

// Memory first, before the children are cloned, so that they inherit it (the
// pages they share copy-on-write with us stay shared, restore_plan.h).
Status BuildMemory(HelperContext& ctx, BuiltMemory* out) {
  const image::ProcessImage& p = ctx.img->processes.at(ctx.pid);
  const WindowSlot& slot = ctx.window->slots.at(ctx.pid);
  CRYO_ASSIGN_OR_RETURN(image::PageSource pages, image::OpenPageFile(*ctx.img, ctx.pid));
  CRYO_ASSIGN_OR_RETURN(std::vector<image::PageSource> parent_pages, image::OpenAncestorPageFiles(*ctx.img, ctx.pid));
  std::vector<const image::PageSource*> parents;
  for (const image::PageSource& src : parent_pages) parents.push_back(&src);
  // The vDSO family is where cryo had it when it cloned the tree (a fork keeps it).
  CRYO_RETURN_IF_ERROR(PlanSpecialMoves(p.mm, *ctx.cryo_vmas, &out->specials));
  const FdPool* pool = ctx.pool;
  std::vector<InheritableVma> mine;
  // Fill threads pay off for much memory only: each is a clone cryo traces.
  constexpr uint64_t kThreadedFillBytes = 8 << 20;
  uint64_t fill_pages = p.mm.total_pages();
  for (const image::PageRun& r : p.mm.parent_runs()) fill_pages += r.npages();
  const int fill_threads = fill_pages * kPage >= kThreadedFillBytes ? ctx.fill_threads : 1;
  // What our children inherit from us: the rest need not be copied by fork,
  // nor (--lazy) be filled now.
  const std::vector<image::PageRange>& wanted = ctx.facts->at(ctx.pid).children_inherit;
  if (ctx.lazy) out->lazy = PlanLazy(p.mm, wanted);
  HugeCount huge;
  const double start = Now();
  CRYO_RETURN_IF_ERROR(PremapAndFill(
                           p.mm, ctx.facts->at(ctx.pid).huge_vmas, pages, parents, slot.premap, fill_threads,
                           [pool](uint64_t id) { return pool->ShmemFd(id); }, ctx.inheritable, &out->moves, &mine,
                           [pool](const image::Vma& v, uint64_t at, int prot) {
                             return v.unlinked_file() ? pool->unlinked()->MapVma(v, at, prot) : pool->shm()->MapVma(v, at, prot);
                           },
                           ctx.lazy ? &out->lazy.set : nullptr, &huge)
                           .Prefixed("memory"));
  if (huge.asked) {
    char ms[96];
    snprintf(ms, sizeof(ms), " in %.1f ms (memory built in %.1f ms)", huge.seconds * 1e3, (Now() - start) * 1e3);
    SendText(ctx.status_fd, HelperRecord::kInfo, ctx.pid,
             "pid " + std::to_string(ctx.pid) + ": " + std::to_string(huge.made) + " of " + std::to_string(huge.asked) +
                 " transparent huge pages of the image made huge again" + ms +
                 (huge.made < huge.asked ? " (the rest: small pages, the same contents)" : ""));
  }
  ctx.inheritable = std::move(mine);
  return HideFromChildren(out->moves, wanted).Prefixed("memory");
}

}  // namespace

int SlotOf(const SharingRole& r, pid_t pid) {
  return static_cast<int>(std::find(r.group.begin(), r.group.end(), pid) - r.group.begin());
}

// The helper's own fds (status pipe, executable) moved above every fd number
// of the image, everything else but the pool closed. In an fd table shared
// with other processes (CLONE_FILES) each helper moves its own fds only, and
// the table's leader closes the rest once every user of the table has.
Status ClearFdTable(HelperContext& ctx, int* exe_fd) {
  const SharingRole& r = ctx.role;
  if (!r.shares_files()) {
    std::vector<int*> own = {&ctx.status_fd, exe_fd};
    if (ns::HaveTreeUserNs()) own.push_back(ns::TreeUserNsFd());  // joined last (FinishProcess)
    CRYO_RETURN_IF_ERROR(MoveOwnFds(ctx.max_image_fd, own, *ctx.pool_fds));
    if (r.in_group()) ctx.board.Post(r.index, GroupBoard::kReady);
    return Status::Ok();
  }
  const int base = std::max(ctx.max_image_fd + 1, 3);
  const int status = ::fcntl(ctx.status_fd, F_DUPFD_CLOEXEC, base);
  const int exe = ::fcntl(*exe_fd, F_DUPFD_CLOEXEC, base);
  if (status < 0 || exe < 0) return Status::FromErrno("moving cryo's fds out of the way");
  ::close(*exe_fd);  // ours alone; the status pipe's old number is every user's
  ctx.status_fd = status;
  *exe_fd = exe;
  ctx.board.SetFds(r.index, status, exe);
  ctx.board.Post(r.index, GroupBoard::kReady);
  if (r.files_leader != ctx.pid) return Status::Ok();
  std::vector<int> keep = *ctx.pool_fds;
  for (pid_t u : r.files_users) {
    const int slot = SlotOf(r, u);
    CRYO_RETURN_IF_ERROR(ctx.board.Wait(slot, GroupBoard::kReady));
    int s, e;
    ctx.board.Fds(slot, &s, &e);
    keep.push_back(s);
    keep.push_back(e);
  }
  std::sort(keep.begin(), keep.end());
  return CloseAllBut(keep);
}

// The image's fds at their numbers, the pool closed, the locks taken back
// (after the last close of a pool fd: closing any fd on a file drops the
// POSIX locks of the table on it). A shared table is installed once, by its
// leader; its other users wait for that, then take their own locks.
Status InstallFdTable(HelperContext& ctx) {
  const image::ProcessImage& p = ctx.img->processes.at(ctx.pid);
  const SharingRole& r = ctx.role;
  if (r.files_leader == ctx.pid) {
    CRYO_RETURN_IF_ERROR(RestoreFdTable(ctx.pid, p.fds, *ctx.pool, r.files_users).Prefixed("files"));
    CloseRuns(*ctx.pool_fds);
    if (r.shares_files()) ctx.board.Post(r.index, GroupBoard::kInstalled);
  } else {
    CRYO_RETURN_IF_ERROR(ctx.board.Wait(SlotOf(r, r.files_leader), GroupBoard::kInstalled));
  }
  return TakeFileLocks(p.fds).Prefixed("files");
}

// --lazy: the userfaultfd the blob registers the lazy VMAs with, above every
// fd number of the image; cryo takes it (pidfd_getfd) on the kArea record and
// closes this copy at the end. Made here, as root: a process without
// CAP_SYS_PTRACE could make only a UFFD_USER_MODE_ONLY one (vm.unprivileged_
// userfaultfd is 0), whose faults from the kernel (a read(2) into a page not
// yet in) fail with EFAULT instead of waiting; and only such a process may
// ask for UFFD_FEATURE_EVENT_FORK (userfaultfd_api in fs/userfaultfd.c). The
// events are those cryo follows (mem/lazy_server.h).
Result<int> MakeLazyUffd(int min_fd) {
  UniqueFd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!fd.valid()) return Status::FromErrno("userfaultfd for --lazy");
  struct uffdio_api api = {};
  api.api = UFFD_API;
  api.features = kLazyUffdFeatures;
  if (::ioctl(fd.get(), UFFDIO_API, &api) != 0) return Status::FromErrno("UFFDIO_API (fork, remap, remove and unmap events) for --lazy");
  const int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, min_fd);
  if (moved < 0) return Status::FromErrno("moving the userfaultfd out of the image's fd numbers");
  return moved;
}

}  // namespace cryo
