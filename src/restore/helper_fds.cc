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
