#include "files/tty_restore.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "files/file_attrs.h"
#include "files/tty_device.h"
#include "proc/proc.h"

namespace cryo {

namespace {

// devpts hands out the lowest free pts number (devpts_new_index), so a pty
// gets its old number back by holding the free numbers below it for a moment.
// Beyond this many such ptys, the number is given up.
constexpr int kMaxHeldPtys = 256;

// File status flags fcntl(F_SETFL) can change on a description.
constexpr int kSettableFlags = O_APPEND | O_ASYNC | O_NONBLOCK;

Result<int> MoveAbove(int fd, int base, const std::string& what) {
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, base);
  ::close(fd);
  if (moved < 0) return Status::FromErrno("moving " + what + " into the fd pool");
  return moved;
}

std::string PtsPath(uint32_t index) { return "/dev/pts/" + std::to_string(index); }

bool HasFeature(const image::Inventory& inv, const char* name) {
  return std::find(inv.features().begin(), inv.features().end(), name) != inv.features().end();
}

int64_t CtimeNs(const struct stat& st) { return int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec; }

// dump --ext-tty: /dev/pts/N must still be the pty of the dump (tty_table.cc
// DumpOutside: its ctime is its creation), else its number went to another
// terminal, which the restored process must not write to.
Status CheckOutside(const image::Tty& t, const struct stat& st) {
  if (st.st_rdev != static_cast<dev_t>(t.rdev()) || CtimeNs(st) != t.outside_ctime_ns())
    return Status::Error("the terminal " + PtsPath(t.index()) + " outside the tree (dump --ext-tty) was closed since "
                         "the dump: " + PtsPath(t.index()) + " is another terminal now");
  return Status::Ok();
}

}  // namespace

Status TtySet::BuildPty(const image::Tty& t, int base, std::vector<int>* held) {
  const std::string mux = t.master_path() == "/dev/pts/ptmx" ? t.master_path() : "/dev/ptmx";
  const std::string what = "pseudoterminal /dev/pts/" + std::to_string(t.index());
  int master = -1;
  uint32_t index = 0;
  for (;;) {
    const int fd = ::open(mux.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("opening " + mux + " for " + what);
    Result<uint32_t> got = tty::MasterIndex(fd);
    if (!got.ok()) {
      ::close(fd);
      return got.status().Prefixed(what);
    }
    index = *got;
    if (index >= t.index() || static_cast<int>(held->size()) >= kMaxHeldPtys) {
      master = fd;
      break;
    }
    held->push_back(fd);
  }
  if (index != t.index())
    LOG_WARN("%s is in use: restored as /dev/pts/%u (the restored fds are on the new one)", what.c_str(), index);
  Status st = tty::SetInt(master, TIOCSPTLCK, 0, "TIOCSPTLCK (unlocking)");
  Result<int> slave = st.ok() ? tty::OpenPeer(master, O_RDWR | O_NONBLOCK) : Result<int>(st);
  if (!slave.ok()) {
    ::close(master);
    return slave.status().Prefixed(what);
  }
  // Settings first: the queued bytes are put back under them.
  st = tty::SetTermios(*slave, t.termios());
  if (st.ok()) st = tty::SetWinsize(master, t.winsize());
  tty::PtyQueues q;
  q.master_unread = t.master_unread();
  q.slave_unread.assign(t.slave_unread().begin(), t.slave_unread().end());
  if (st.ok()) st = q.Refill(master, *slave, t.termios()).Prefixed("putting the queued bytes back");
  // Packet mode last, so that no status change above is reported to the master.
  if (st.ok() && t.packet_mode()) st = tty::SetInt(master, TIOCPKT, 1, "TIOCPKT");
  if (st.ok() && t.exclusive() && ::ioctl(*slave, TIOCEXCL) != 0) st = Status::FromErrno("TIOCEXCL");
  // Owner and mode as the program (grantpt, chown) left them; times last:
  // the bytes written through the slave above change them.
  if (st.ok() && t.has_slave_attrs()) st = ApplyFileAttrs(*slave, t.slave_attrs(), PtsPath(index));
  // Images from before the owner was recorded: said, not silently defaulted.
  if (st.ok() && !t.has_slave_attrs())
    LOG_WARN("%s: the image has no owner, mode or times of its slave (made by an older cryo): %s keeps the "
             "owner and mode of a new pty", what.c_str(), PtsPath(index).c_str());
  if (!st.ok()) {
    ::close(master);
    ::close(*slave);
    return st.Prefixed(what);
  }
  Pty p;
  p.rec = &t;
  p.index = index;
  CRYO_ASSIGN_OR_RETURN(p.master, MoveAbove(master, base, "the master of " + what));
  CRYO_ASSIGN_OR_RETURN(p.slave, MoveAbove(*slave, base, "the slave of " + what));
  ptys_[t.id()] = p;
  return Status::Ok();
}

// The terminal the restored shell job gets: cryo's controlling terminal, or
// failing that the terminal on cryo's stdin, stdout or stderr.
Status TtySet::OpenShellTerminal(int base) {
  const int fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd >= 0) {
    unsigned int dev = 0;
    if (::ioctl(fd, TIOCGDEV, &dev) != 0) {
      Status st = Status::FromErrno("TIOCGDEV on cryo's controlling terminal");
      ::close(fd);
      return st;
    }
    shell_foreground_ = ::tcgetpgrp(fd) == ::getpgrp();
    CRYO_ASSIGN_OR_RETURN(shell_fd_, MoveAbove(fd, base, "cryo's controlling terminal"));
    const dev_t rdev = static_cast<dev_t>(dev);  // new_encode_dev
    if (major(rdev) == 136) {
      shell_path_ = PtsPath(minor(rdev));
      return Status::Ok();
    }
    for (int i = 0; i <= 2; ++i) {
      struct stat st;
      if (::fstat(i, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == rdev) {
        CRYO_ASSIGN_OR_RETURN(shell_path_, ReadLink("/proc/self/fd/" + std::to_string(i)));
        return Status::Ok();
      }
    }
  }
  for (int i = 0; i <= 2; ++i)
    if (::isatty(i)) {
      CRYO_ASSIGN_OR_RETURN(shell_path_, ReadLink("/proc/self/fd/" + std::to_string(i)));
      if (shell_fd_ < 0)
        LOG_WARN("--shell-job: cryo has no controlling terminal; the restored job gets %s, but not as its "
                 "controlling terminal", shell_path_.c_str());
      return Status::Ok();
    }
  if (shell_fd_ >= 0)
    return Status::Error("--shell-job: cryo's controlling terminal is not on its stdin, stdout or stderr");
  return Status::Error("--shell-job: the image's terminal fds need a terminal, and cryo has none (no controlling "
                       "terminal, stdin, stdout and stderr are not terminals)");
}

void TtySet::PlanForeground(const image::LoadedImage& img) {
  // The setter of a group: its leader if the image has it, else its lowest pid.
  auto setter_of = [&img](pid_t pgrp, auto&& member) -> pid_t {
    pid_t best = 0;
    for (const auto& [pid, p] : img.processes) {
      if (p.core.zombie() || p.core.pgid() != pgrp || !member(p.core)) continue;
      if (pid == pgrp) return pid;
      if (!best) best = pid;
    }
    return best;
  };
  for (const auto& [id, p] : ptys_) {
    const image::Tty& t = *p.rec;
    if (!t.session() || !t.foreground_pgrp()) continue;
    const pid_t setter = setter_of(t.foreground_pgrp(), [&t](const image::ProcessCore& c) { return c.sid() == t.session(); });
    if (!setter) {
      LOG_WARN("the foreground process group %d of /dev/pts/%u has no process in the image; the group of its "
               "session leader %d is the foreground instead", t.foreground_pgrp(), p.index, t.session());
      continue;
    }
    foreground_[setter] = {p.slave, nullptr, PtsPath(p.index)};
  }
  if (!HasFeature(img.inventory, "shell-job")) return;
  // --shell-job: the job that was the foreground of the shell's terminal.
  pid_t job = 0;
  const image::TtyControl* ctty = nullptr;
  for (const auto& [pid, p] : img.processes) {
    const image::ProcessCore& c = p.core;
    if (c.zombie() || !JoinsShellSession(c) || c.pgid() != c.ctty().foreground_pgrp()) continue;
    if (!job || pid == c.pgid()) {
      job = pid;
      ctty = &c.ctty();
    }
  }
  if (!job) return;  // the job was in the background of its terminal
  if (shell_fd_ < 0) return;
  if (!shell_foreground_) {
    LOG_WARN("--shell-job: cryo is not in the foreground of its terminal, so the restored job (pid %d) stays in "
             "the background", job);
    return;
  }
  auto ext = external_.find(ctty->tty_id());
  foreground_[job] = {shell_fd_, ext != external_.end() ? &ext->second->termios() : nullptr, "cryo's terminal"};
  image::TtyWinsize now;
  const pid_t pgrp = img.processes.at(job).core.pgid();
  if (ext != external_.end() && pgrp == job && tty::GetWinsize(shell_fd_, &now).ok() &&
      (now.rows() != ext->second->winsize().rows() || now.cols() != ext->second->winsize().cols()))
    winch_pgrp_ = pgrp;
}

void TtySet::NotifyWindowChange() const {
  if (winch_pgrp_ && ::kill(-winch_pgrp_, SIGWINCH) != 0)
    LOG_WARN("SIGWINCH to the restored job (process group %d): %s", winch_pgrp_, strerror(errno));
}

Result<TtySet> TtySet::Build(const image::LoadedImage& img, int base) {
  TtySet set;
  std::vector<const image::Tty*> ptys;
  for (const image::Tty& t : img.ttys.ttys()) {
    if (t.kind() == image::TTY_PTY) ptys.push_back(&t);
    if (t.kind() == image::TTY_EXTERNAL) set.external_[t.id()] = &t;
    if (t.kind() == image::TTY_OUTSIDE) {
      struct stat st;
      if (::stat(PtsPath(t.index()).c_str(), &st) != 0)
        return Status::FromErrno("the terminal " + PtsPath(t.index()) + " outside the tree (dump --ext-tty) is gone");
      CRYO_RETURN_IF_ERROR(CheckOutside(t, st));
      set.outside_[t.id()] = &t;
    }
  }
  // Lowest numbers first: each one holds only free numbers below its own.
  std::sort(ptys.begin(), ptys.end(), [](auto* a, auto* b) { return a->index() < b->index(); });
  std::vector<int> held;
  Status st;
  for (const image::Tty* t : ptys)
    if (st.ok()) st = set.BuildPty(*t, base, &held);
  for (int fd : held) ::close(fd);
  CRYO_RETURN_IF_ERROR(st);
  if (HasFeature(img.inventory, "shell-job")) CRYO_RETURN_IF_ERROR(set.OpenShellTerminal(base));
  set.PlanForeground(img);
  set.PlanDevTtys(img);
  // Without ptys and without a terminal of cryo's own, no helper can have one.
  Result<proc::Stat> own = proc::ReadStat(::getpid());
  set.may_inherit_ = !set.ptys_.empty() || !own.ok() || own->tty_nr != 0;
  return set;
}

// Which /dev/tty descriptions can be opened as /dev/tty again, and by whom:
// the leader of the pty's session (after TIOCSCTTY), or for the shell's
// terminal the root (in cryo's session), if every holder descends from it.
void TtySet::PlanDevTtys(const image::LoadedImage& img) {
  auto descends = [&img](pid_t pid, pid_t ancestor) {
    for (int depth = 0; pid && depth < 4096; ++depth) {
      if (pid == ancestor) return true;
      auto it = img.processes.find(pid);
      if (it == img.processes.end() || pid == img.inventory.root_pid()) return false;
      pid = it->second.core.ppid();
    }
    return false;
  };
  const pid_t root = img.inventory.root_pid();
  std::map<uint64_t, bool> refused;
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& f : p.fds.fds()) {
      if (!f.has_tty() || !f.tty().via_dev_tty() || !f.file_id() || refused[f.file_id()]) continue;
      pid_t opener = 0;
      if (f.kind() == image::FD_EXTERNAL_TTY) {
        if (shell_fd_ >= 0 && JoinsShellSession(img.processes.at(root).core)) opener = root;
      } else if (auto pty = ptys_.find(f.tty().tty_id()); pty != ptys_.end()) {
        opener = pty->second.rec->session();
        if (pty->second.rec->locked()) dev_ttys_[f.file_id()].lock_master = pty->second.master;
      }
      auto& d = dev_ttys_[f.file_id()];
      if (!opener || !descends(pid, opener) || (d.opener && d.opener != opener)) {
        refused[f.file_id()] = true;
        dev_ttys_.erase(f.file_id());
        continue;
      }
      d.opener = opener;
      d.flags = static_cast<int>(f.flags() & ~static_cast<uint32_t>(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC)) |
                O_NOCTTY | O_CLOEXEC;
    }
}

void TtySet::NotePoolFd(const image::Fd& f, int pool_fd) {
  auto it = dev_ttys_.find(f.file_id());
  if (it != dev_ttys_.end()) it->second.pool_fd = pool_fd;
}

Result<int> TtySet::Open(const image::Fd& f) {
  const int flags = static_cast<int>(f.flags() & ~static_cast<uint32_t>(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC)) |
                    O_NOCTTY | O_CLOEXEC;
  if (f.kind() == image::FD_EXTERNAL_TTY) {
    if (shell_path_.empty()) return Status::Error("--shell-job: no terminal to give the restored job");
    const int fd = ::open(shell_path_.c_str(), flags);
    if (fd < 0) return Status::FromErrno("opening cryo's terminal " + shell_path_ + " for " + f.file().path());
    return fd;
  }
  if (auto out = outside_.find(f.tty().tty_id()); out != outside_.end()) {
    const std::string path = PtsPath(out->second->index());
    UniqueFd fd(::open(path.c_str(), flags));
    if (!fd.valid()) return Status::FromErrno("opening " + path + ", outside the tree (dump --ext-tty)");
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat of " + path);
    CRYO_RETURN_IF_ERROR(CheckOutside(*out->second, st));
    return fd.release();
  }
  auto it = ptys_.find(f.tty().tty_id());
  if (it == ptys_.end()) return Status::Error("terminal " + std::to_string(f.tty().tty_id()) + " is not in the image");
  Pty& p = it->second;
  if (!f.tty().master()) {
    const std::string path = PtsPath(p.index);
    const int fd = ::open(path.c_str(), flags);
    if (fd < 0) return Status::FromErrno("opening " + path);
    return fd;
  }
  // A master has one open file description (only /dev/ptmx makes one).
  if (p.master_used) return Status::Error("two descriptions of the master of /dev/pts/" + std::to_string(p.index));
  p.master_used = true;
  const int fd = ::fcntl(p.master, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("dup of the master of /dev/pts/" + std::to_string(p.index));
  if (::fcntl(fd, F_SETFL, static_cast<int>(f.flags()) & kSettableFlags) != 0) {
    Status st = Status::FromErrno("F_SETFL on the master of /dev/pts/" + std::to_string(p.index));
    ::close(fd);
    return st;
  }
  return fd;
}

Status TtySet::Finish() const {
  for (const auto& [id, p] : ptys_)
    if (p.rec->locked()) CRYO_RETURN_IF_ERROR(tty::SetInt(p.master, TIOCSPTLCK, 1, "TIOCSPTLCK (locking)"));
  return Status::Ok();
}

std::vector<int> TtySet::fds() const {
  std::vector<int> out;
  for (const auto& [id, p] : ptys_) {
    out.push_back(p.master);
    out.push_back(p.slave);
  }
  if (shell_fd_ >= 0) out.push_back(shell_fd_);
  return out;
}

bool TtySet::JoinsShellSession(const image::ProcessCore& core) const {
  if (!core.has_ctty() || !core.ctty().rdev()) return false;
  return !ptys_.count(core.ctty().tty_id());
}

Status TtySet::TakeControllingTty(pid_t pid, bool leads_session) const {
  if (leads_session)
    for (const auto& [id, p] : ptys_)
      if (p.rec->session() == pid && ::ioctl(p.slave, TIOCSCTTY, 0) != 0)
        return Status::FromErrno("TIOCSCTTY: making " + PtsPath(p.index) + " the controlling terminal of session " +
                                 std::to_string(pid));
  for (const auto& [file_id, d] : dev_ttys_) {
    if (d.opener != pid || d.pool_fd < 0) continue;
    if (d.lock_master >= 0) CRYO_RETURN_IF_ERROR(tty::SetInt(d.lock_master, TIOCSPTLCK, 0, "TIOCSPTLCK (unlocking)"));
    const int fd = ::open("/dev/tty", d.flags);
    const int err = errno;
    if (d.lock_master >= 0) CRYO_RETURN_IF_ERROR(tty::SetInt(d.lock_master, TIOCSPTLCK, 1, "TIOCSPTLCK (locking)"));
    if (fd < 0) return Status::Errno(err, "opening /dev/tty for pid " + std::to_string(pid));
    const int r = ::dup3(fd, d.pool_fd, O_CLOEXEC);
    ::close(fd);
    if (r < 0) return Status::FromErrno("dup3 of /dev/tty into the fd pool");
  }
  return Status::Ok();
}

void TtySet::CheckControllingTty(const image::ProcessCore& core, std::vector<std::string>* warnings) const {
  const bool had = core.has_ctty() && core.ctty().rdev();
  auto pty = had ? ptys_.find(core.ctty().tty_id()) : ptys_.end();
  if (had && pty == ptys_.end()) return;  // a terminal outside the image: whatever cryo's session has
  if (!may_inherit_) return;
  // /proc rather than /dev/tty, which cannot be opened on a locked pty.
  Result<proc::Stat> stat = proc::ReadStat(::getpid());
  if (!stat.ok()) {
    warnings->push_back("pid " + std::to_string(core.pid()) + ": " + stat.status().ToString());
    return;
  }
  const dev_t now = static_cast<dev_t>(stat->tty_nr);  // new_encode_dev, as glibc's dev_t
  if (had) {
    if (now != makedev(136, pty->second.index))
      warnings->push_back("pid " + std::to_string(core.pid()) + " is restored without its controlling terminal " +
                          PtsPath(pty->second.index) + " (it did not inherit it from its session leader)");
    return;
  }
  if (!now) return;
  // Inherited from a parent that had one when it cloned us: not ours. TIOCNOTTY
  // needs an fd on that very terminal.
  int fd = -1;
  for (const auto& [id, p] : ptys_)
    if (now == makedev(136, p.index)) fd = p.slave;
  const int own = fd < 0 ? ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
  if ((own >= 0 ? own : fd) < 0 || ::ioctl(own >= 0 ? own : fd, TIOCNOTTY) != 0)
    warnings->push_back("pid " + std::to_string(core.pid()) + " keeps a controlling terminal it did not have: " +
                        strerror(errno));
  if (own >= 0) ::close(own);
}

Status TtySet::SetForeground(const image::ProcessCore& core, std::vector<std::string>* warnings) const {
  auto it = foreground_.find(core.pid());
  if (it == foreground_.end()) return Status::Ok();
  const Foreground& f = it->second;
  const bool shell = f.fd == shell_fd_;
  const pid_t pgrp = ::getpgrp();
  if (!shell && pgrp != core.pgid()) {
    warnings->push_back("process group " + std::to_string(core.pgid()) + " could not be rebuilt, so it is not the "
                        "foreground of " + f.what);
    return Status::Ok();
  }
  // A caller outside the foreground is sent SIGTTOU unless it blocks it
  // (tty_check_change).
  sigset_t ttou, old;
  sigemptyset(&ttou);
  sigaddset(&ttou, SIGTTOU);
  pthread_sigmask(SIG_BLOCK, &ttou, &old);
  Status st;
  if (f.termios) st = tty::SetTermios(f.fd, *f.termios).Prefixed("setting the job's termios on " + f.what);
  if (st.ok() && ::tcsetpgrp(f.fd, pgrp) != 0)
    st = Status::FromErrno("TIOCSPGRP: making process group " + std::to_string(pgrp) + " the foreground of " + f.what);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!st.ok() && shell) {
    warnings->push_back("--shell-job: " + st.ToString());
    return Status::Ok();
  }
  return st;
}

}  // namespace cryo
