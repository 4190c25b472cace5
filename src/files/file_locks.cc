#include "files/file_locks.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <set>
#include <tuple>

#include "base/unique_fd.h"
#include "files/fd_table.h"
#include "files/lock_lines.h"
#include "proc/proc.h"

namespace cryo {

namespace {

image::LockKind KindOf(const LockLine& l) {
  if (l.kind == "POSIX") return image::LOCK_POSIX;
  if (l.kind == "OFDLCK") return image::LOCK_OFD;
  if (l.kind == "FLOCK") return image::LOCK_FLOCK;
  if (l.kind == "LEASE") return image::LOCK_LEASE;
  return image::LOCK_UNKNOWN;
}

constexpr const char* kHeldWhy = " (is the original still running? a restore beside it cannot hold the same locks)";

bool HasRange(image::LockKind k) { return k == image::LOCK_POSIX || k == image::LOCK_OFD; }

// A recorded lock in its /proc text form, for Describe().
LockLine LineOf(const image::FileLock& l) {
  static const char* const kNames[] = {"UNKNOWN", "POSIX", "OFDLCK", "FLOCK", "LEASE"};
  LockLine line;
  line.kind = l.kind() >= 0 && l.kind() <= image::LOCK_LEASE ? kNames[l.kind()] : "UNKNOWN";
  line.type = l.write() ? "WRITE" : "READ";
  line.start = l.start();
  line.end = l.end();
  line.to_eof = l.to_eof();
  return line;
}

std::string Describe(const image::FileLock& l) { return LineOf(l).Describe(); }

std::string FdName(pid_t pid, const image::Fd& f) {
  return "pid " + std::to_string(pid) + " fd " + std::to_string(f.fd()) + " (" + f.file().path() + ")";
}

// Whether `line` (held, from /proc/locks) is `l`, recorded from fdinfo. The
// inode is compared, not the device: /proc/locks shows the inode's super
// block, which stat(2) may not (overlayfs, btrfs subvolumes).
bool SameLock(const LockLine& line, const image::Fd& f, const image::FileLock& l) {
  const image::LockKind k = KindOf(line);
  if (line.waiter || line.ino != f.file().ino() || k != l.kind() || (line.type == "WRITE") != l.write() ||
      line.pid != l.pid())
    return false;
  return !HasRange(k) || (line.start == l.start() && line.to_eof == l.to_eof() && (l.to_eof() || line.end == l.end()));
}

struct flock ToFlock(const image::FileLock& l) {
  struct flock fl = {};
  fl.l_type = l.write() ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(l.start());
  fl.l_len = l.to_eof() ? 0 : static_cast<off_t>(l.end() - l.start() + 1);
  return fl;
}

// A lock record a restore can take: known kind, fd kind, range.
Status ValidateLock(pid_t pid, const image::Fd& f, const image::FileLock& l) {
  const std::string what = FdName(pid, f) + ": a lock record";
  if (l.kind() < image::LOCK_POSIX || l.kind() > image::LOCK_LEASE)
    return Status::Error(what + " has an unknown kind " + std::to_string(l.kind()) + " (corrupted)");
  if (f.kind() != image::FD_REGULAR && f.kind() != image::FD_DIRECTORY)
    return Status::Error(what + " is on an fd that is neither a regular file nor a directory (corrupted)");
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<off_t>::max());
  if (HasRange(l.kind()) && (l.start() > kMax || (!l.to_eof() && (l.end() < l.start() || l.end() >= kMax))))
    return Status::Error(what + " has an invalid range (corrupted)");
  return Status::Ok();
}

// Refuses an OFD, flock or lease description of the tree that a process
// outside the tree holds too: the lock is that description's, and the restore
// can only make the tree a new one. The same description shows the same link
// to cryo in every process (d_path from cryo's root), so only fds with the
// link of a locked one are compared (kcmp KCMP_FILE).
Status CheckDescriptionsInside(pid_t pid, const image::FdTable& table, const DumpScope& scope) {
  for (const image::Fd& f : table.fds()) {
    const image::FileLock* lock = nullptr;
    for (const image::FileLock& l : f.locks())
      if (l.kind() != image::LOCK_POSIX) lock = &l;
    if (!lock) continue;
    std::lock_guard<std::mutex> guard(scope.outside_fds_mu);
    if (!scope.outside_fds_read) {
      CRYO_RETURN_IF_ERROR(proc::ForEachFdOutside(scope.pids, [&](const proc::OutsideFd& o) {
        if (!o.link.empty() && o.link[0] == '/') scope.outside_fds.emplace(o.link, std::make_pair(o.pid, std::atoi(o.fd)));
        return Status::Ok();
      }));
      scope.outside_fds_read = true;
    }
    auto [from, to] = scope.outside_fds.equal_range(f.file().path());
    for (auto it = from; it != to; ++it) {
      const auto [outside_pid, outside_fd] = it->second;
      if (syscall(SYS_kcmp, outside_pid, pid, KCMP_FILE, outside_fd, f.fd()) != 0) continue;
      return Status::Error(FdName(pid, f) + " holds " + Describe(*lock) + " on an open file description that " +
                           NamePid(outside_pid) + " fd " + std::to_string(outside_fd) +
                           ", outside the tree, holds too: the lock belongs to that description, which a restore "
                           "cannot share with a process outside the tree (dump that process with the tree, or "
                           "close its fd)");
    }
  }
  return Status::Ok();
}

}  // namespace

Status DumpFdLocks(const FdSource& src, image::Fd* out) {
  auto [from, to] = src.info.fields.equal_range("lock");
  for (auto it = from; it != to; ++it) {
    CRYO_ASSIGN_OR_RETURN(LockLine l, ParseLockLine(it->second));
    if (l.waiter) continue;  // fdinfo shows held locks only
    const std::string what = src.what() + " (" + src.link + ") holds " + l.Describe();
    const image::LockKind kind = KindOf(l);
    if (kind == image::LOCK_LEASE && l.state != "ACTIVE")
      return Status::Error(what + " that is being broken (another process opened the file, fcntl(2) "
                           "F_SETLEASE); a lease break in progress is not restored: dump once it is over");
    if (kind == image::LOCK_UNKNOWN || (l.type != "READ" && l.type != "WRITE"))
      return Status::Error(what + ", a kind of lock cryo does not restore");
    if (out->kind() != image::FD_REGULAR && out->kind() != image::FD_DIRECTORY)
      return Status::Error(what + " on " + DescribeFdTarget(src.link) +
                           ": cryo restores locks on regular files and directories only");
    image::FileLock* fl = out->add_locks();
    fl->set_kind(kind);
    fl->set_write(l.type == "WRITE");
    if (HasRange(kind)) {
      fl->set_start(l.start);
      fl->set_end(l.to_eof ? 0 : l.end);
      fl->set_to_eof(l.to_eof);
    }
    fl->set_pid(l.pid);
  }
  return Status::Ok();
}

Status CheckProcessLocks(pid_t pid, const image::FdTable& table, const DumpScope& scope) {
  bool any = false;
  for (const image::Fd& f : table.fds()) any |= f.locks_size() > 0;
  if (!any) return Status::Ok();

  struct stat exe;
  if (::stat(("/proc/" + std::to_string(pid) + "/exe").c_str(), &exe) == 0)
    for (const image::Fd& f : table.fds())
      for (const image::FileLock& l : f.locks())
        if (l.kind() == image::LOCK_POSIX && f.file().dev() == exe.st_dev && f.file().ino() == exe.st_ino)
          return Status::Error(FdName(pid, f) + " holds " + Describe(l) +
                               " on the process's own executable: the restore closes an fd on that file, which "
                               "drops every POSIX lock of the process on it (fcntl(2)); not restored");

  // Requests blocked on our locks follow them in /proc/locks, with their id.
  CRYO_ASSIGN_OR_RETURN(std::vector<LockLine> lines, ReadProcLocks());
  const LockLine* blocker = nullptr;
  for (const LockLine& w : lines) {
    if (!w.waiter) {
      blocker = &w;
      continue;
    }
    if (!blocker || blocker->id != w.id) continue;
    for (const image::Fd& f : table.fds())
      for (const image::FileLock& l : f.locks()) {
        if (!SameLock(*blocker, f, l)) continue;
        const std::string held = FdName(pid, f) + " holds " + Describe(l);
        if (w.pid > 0 && scope.pids.count(w.pid))
          return Status::Error(held + ", and " + NamePid(w.pid) + " of the tree still waits for it after being "
                               "stopped; not restored");
        if (!scope.kill_mode) continue;  // the original keeps the lock; the waiter goes on waiting
        const std::string waiter = w.pid > 0 ? NamePid(w.pid) + ", outside the tree,"
                                             : std::string("a process outside the tree (an OFD lock request, "
                                                           "which /proc/locks shows without its pid)");
        return Status::Error(held + ", which " + waiter + " waits for (" + w.Describe() +
                             "): it would take the lock as soon as the tree is killed, before the restore could; "
                             "dump with --leave-running, or end that wait first");
      }
  }
  return CheckDescriptionsInside(pid, table, scope);
}

bool AssignFileLocks(const std::vector<ProcessFds>& tables, const std::map<pid_t, pid_t>& table_of) {
  // One key per lock: its owner (a description for OFD/flock/lease, an fd
  // table for POSIX) and what it is.
  using Key = std::tuple<uint64_t, uint64_t, int, bool, uint64_t, uint64_t, bool>;
  struct Holder {
    size_t table;
    int fd_index;
  };
  auto key_of = [&](pid_t pid, const image::Fd& f, const image::FileLock& l) {
    auto t = table_of.find(pid);
    const uint64_t owner = l.kind() == image::LOCK_POSIX ? static_cast<uint64_t>(t == table_of.end() ? pid : t->second) : 0;
    return Key{owner, f.file_id(), l.kind(), l.write(), l.start(), l.end(), l.to_eof()};
  };
  std::map<Key, Holder> chosen;
  for (size_t t = 0; t < tables.size(); ++t)
    for (int i = 0; i < tables[t].table->fds_size(); ++i) {
      const image::Fd& f = tables[t].table->fds(i);
      for (const image::FileLock& l : f.locks()) {
        auto [it, fresh] = chosen.emplace(key_of(tables[t].pid, f, l), Holder{t, i});
        // The process that took the lock takes it back (flock's pid shows in /proc/locks).
        if (!fresh && l.pid() == tables[t].pid && tables[it->second.table].pid != tables[t].pid) it->second = {t, i};
      }
    }
  bool any = false;
  for (size_t t = 0; t < tables.size(); ++t)
    for (int i = 0; i < tables[t].table->fds_size(); ++i) {
      image::Fd* f = tables[t].table->mutable_fds(i);
      google::protobuf::RepeatedPtrField<image::FileLock> kept;
      std::set<Key> seen;
      for (const image::FileLock& l : f->locks()) {
        const Key k = key_of(tables[t].pid, *f, l);
        const Holder& h = chosen.at(k);
        if (h.table == t && h.fd_index == i && seen.insert(k).second) *kept.Add() = l;
      }
      any |= !kept.empty();
      f->mutable_locks()->Swap(&kept);
    }
  return any;
}

Status CheckLeasesFree(const image::LoadedImage& img) {
  std::vector<std::pair<pid_t, const image::Fd*>> leased;
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& f : p.fds.fds())
      for (const image::FileLock& l : f.locks())
        if (l.kind() == image::LOCK_LEASE) leased.emplace_back(pid, &f);
  if (leased.empty()) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(std::vector<LockLine> lines, ReadProcLocks());
  for (const auto& [pid, f] : leased) {
    struct stat st;
    if (::stat(f->file().path().c_str(), &st) != 0) continue;  // the fd pool names it
    for (const LockLine& l : lines)
      if (!l.waiter && KindOf(l) == image::LOCK_LEASE && l.ino == st.st_ino && l.dev() == st.st_dev)
        return Status::Error(FdName(pid, *f) + ": the file's lease is held by " +
                             (l.pid > 0 ? NamePid(l.pid) : std::string("another process")) + " now (" +
                             l.Describe() + "), and opening the file would break it" + kHeldWhy);
  }
  return Status::Ok();
}

Status CheckLocksFree(const image::LoadedImage& img) {
  const auto& features = img.inventory.features();
  const bool announced = std::find(features.begin(), features.end(), "file-locks") != features.end();
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& f : p.fds.fds())
      for (const image::FileLock& l : f.locks()) {
        if (!announced)
          return Status::Error(FdName(pid, f) + ": a lock record in an image without the feature file-locks (corrupted)");
        CRYO_RETURN_IF_ERROR(ValidateLock(pid, f, l));
        if (l.kind() == image::LOCK_LEASE) continue;  // CheckLeasesFree
        // A description of cryo's own holds no lock: any lock that conflicts
        // with the probe is someone else's. (Regular files and directories
        // only: opening them has no effect but on leases, checked before.)
        UniqueFd fd(::open(f.file().path().c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
        if (!fd.valid()) continue;  // the fd pool names it
        const std::string what = FdName(pid, f) + ": " + Describe(l) + " of the image";
        if (HasRange(l.kind())) {
          struct flock fl = ToFlock(l);
          if (::fcntl(fd.get(), F_OFD_GETLK, &fl) != 0) return Status::FromErrno("F_OFD_GETLK for " + what);
          if (fl.l_type != F_UNLCK)
            return Status::Error(what + " is held by " +
                                 (fl.l_pid > 0 ? NamePid(fl.l_pid) : std::string("an OFD lock of another process")) +
                                 " now" + kHeldWhy);
        } else if (::flock(fd.get(), (l.write() ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
          if (errno != EWOULDBLOCK) return Status::FromErrno("flock probe for " + what);
          const std::string holders = DescribeLockHolders(static_cast<dev_t>(f.file().dev()), f.file().ino());
          return Status::Error(what + " conflicts with a lock held now" + (holders.empty() ? "" : ": " + holders) +
                               kHeldWhy);
        }
      }
  return Status::Ok();
}

Status TakeFileLocks(const image::FdTable& table) {
  for (const image::Fd& f : table.fds())
    for (const image::FileLock& l : f.locks()) {
      int r = 0;
      struct flock fl = ToFlock(l);
      switch (l.kind()) {
        case image::LOCK_POSIX:
          r = ::fcntl(f.fd(), F_SETLK, &fl);
          break;
        case image::LOCK_OFD:
          r = ::fcntl(f.fd(), F_OFD_SETLK, &fl);
          break;
        case image::LOCK_FLOCK:
          r = ::flock(f.fd(), (l.write() ? LOCK_EX : LOCK_SH) | LOCK_NB);
          break;
        case image::LOCK_LEASE:
          // Also makes this process the description's owner (lease_setup()):
          // cryo sets the dumped owner at the end.
          r = ::fcntl(f.fd(), F_SETLEASE, l.write() ? F_WRLCK : F_RDLCK);
          break;
        default:
          return Status::Error("fd " + std::to_string(f.fd()) + ": unknown lock kind (corrupted)");
      }
      if (r == 0) continue;
      const int err = errno;
      struct stat st;
      const std::string holders =
          ::fstat(f.fd(), &st) == 0 ? DescribeLockHolders(st.st_dev, st.st_ino) : std::string();
      return Status::Errno(err, "fd " + std::to_string(f.fd()) + " (" + f.file().path() + "): taking back " +
                                    Describe(l) + (holders.empty() ? "" : " (" + holders + ")"));
    }
  return Status::Ok();
}

}  // namespace cryo
