#include "cli/preflight.h"

#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "image/format.h"
#include "proc/proc.h"

namespace cryo::cli {

namespace {
constexpr uint64_t kPfExiting = 0x00000004;  // include/linux/sched.h
}  // namespace

Status CheckImageDirFree(const std::string& dir, bool force) {
  if (force) return Status::Ok();
  const std::string inventory = dir + "/" + image::InventoryName();
  struct stat st;
  if (::lstat(inventory.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Status::Ok();
    return Status::FromErrno("stat " + inventory);
  }
  return Status::Error(dir + " already holds an image (" + image::InventoryName() +
                       "): give --force to replace it, or choose another directory");
}

std::optional<ExitingHolder> HeldByExitingProcess(pid_t pid) {
  auto st = proc::ReadStat(pid);
  if (!st.ok()) return std::nullopt;  // free (or unreadable: the restore will say)
  const bool zombie = st->state == 'Z' || st->state == 'X';
  if (!zombie && !(st->flags & kPfExiting)) return std::nullopt;
  ExitingHolder h;
  h.pid = pid;
  h.zombie = zombie;
  h.parent = st->ppid;
  auto parent = proc::ReadStat(st->ppid);
  if (parent.ok()) h.parent_comm = parent->comm;
  return h;
}

std::string WaitForExitingPids(const std::vector<pid_t>& pids, double timeout,
                               const std::function<void(const std::string&)>& say) {
  const double deadline = Now() + timeout;
  for (pid_t pid : pids) {
    std::optional<ExitingHolder> h = HeldByExitingProcess(pid);
    if (!h) continue;
    say("waiting for pid " + std::to_string(pid) + " (still exiting) ...");
    while (h && Now() < deadline) {
      ::usleep(5000);
      h = HeldByExitingProcess(pid);
    }
    if (!h) continue;
    if (h->zombie)
      return "pid " + std::to_string(pid) + " is still a zombie: its parent, pid " + std::to_string(h->parent) +
             (h->parent_comm.empty() ? "" : " (" + h->parent_comm + ")") + ", has not reaped it";
    return "pid " + std::to_string(pid) + " is still exiting";
  }
  return "";
}

}  // namespace cryo::cli
