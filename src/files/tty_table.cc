#include "files/tty_table.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <map>

#include "base/file_util.h"
#include "base/interrupt.h"
#include "base/unique_fd.h"
#include "files/file_attrs.h"
#include "files/tty_device.h"
#include "proc/proc.h"

namespace cryo {

namespace {

struct Holder {
  pid_t pid;
  image::Fd* fd;
  std::string what() const { return "pid " + std::to_string(pid) + " fd " + std::to_string(fd->fd()); }
};

Result<UniqueFd> Grab(const Holder& h) {
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, h.pid, 0)));
  if (!pidfd.valid()) return Status::FromErrno("pidfd_open pid " + std::to_string(h.pid));
  UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), h.fd->fd(), 0)));
  if (!fd.valid()) return Status::FromErrno("pidfd_getfd of " + h.what());
  return fd;
}

// The session and foreground group of a pty, asked on its master (which,
// unlike the slave, answers callers it is not the controlling terminal of).
Result<pid_t> AskMaster(int master, unsigned long request, const char* what) {
  pid_t v = 0;
  if (::ioctl(master, request, &v) == 0) return v;
  if (errno == ENOTTY) return 0;  // no session
  return Status::FromErrno(what);
}

// A description of the slave for cryo, opened through the master (a locked
// pty is unlocked for that moment; pty_open refuses it otherwise).
Result<UniqueFd> OpenSlave(int master, bool locked) {
  if (locked) CRYO_RETURN_IF_ERROR(tty::SetInt(master, TIOCSPTLCK, 0, "TIOCSPTLCK (unlocking)"));
  Result<int> peer = tty::OpenPeer(master, O_RDWR | O_NONBLOCK);
  if (locked) CRYO_RETURN_IF_ERROR(tty::SetInt(master, TIOCSPTLCK, 1, "TIOCSPTLCK (locking again)"));
  if (!peer.ok()) return peer.status();
  return UniqueFd(*peer);
}

// Reads the queued bytes and puts them straight back. Packet mode is off
// meanwhile: the termios changes Drain/Refill make would queue status
// changes for the master's reader (pty_set_termios); turning it on again
// clears the status, which was empty (checked with POLLPRI).
Status CopyQueues(int master, int slave, const image::Tty& t, tty::PtyQueues* q) {
  if (t.packet_mode()) {
    struct pollfd p = {master, POLLPRI, 0};
    if (::poll(&p, 1, 0) < 0) return Status::FromErrno("poll on the master");
    if (p.revents & POLLPRI)
      return Status::Error("a packet-mode status change is waiting to be read from the master, which cannot be kept");
    CRYO_RETURN_IF_ERROR(tty::SetInt(master, TIOCPKT, 0, "TIOCPKT off"));
  }
  Status st = q->Drain(master, slave, t.termios());
  FaultPoint();  // the bytes are out of the terminal
  if (st.ok()) {
    st = q->Refill(master, slave, t.termios());
    if (!st.ok()) st.Prefix("putting " + std::to_string(q->master_unread.size()) + "+" +
                            std::to_string(q->slave_unread.size()) + " queued records back (they are lost)");
  }
  if (t.packet_mode()) {
    Status back = tty::SetInt(master, TIOCPKT, 1, "TIOCPKT on again");
    if (st.ok()) st = back;
  }
  return st;
}

// CopyQueues in a child of cryo's: between the drain and the refill the bytes
// are out of the terminal, and a cryo killed then (SIGKILL included) would
// lose them. The child, in a process group of its own (a Ctrl-C for cryo's
// group does not reach it) and ignoring SIGINT, SIGTERM, SIGHUP and SIGPIPE,
// puts them back whatever happens to cryo, then hands them over on a pipe:
// its status, then the queues as a Tty record.
Status CopyQueuesOutOfReach(int master, int slave, const image::Tty& t, tty::PtyQueues* q) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno("pipe2");
  UniqueFd r(p[0]), w(p[1]);
  const pid_t child = ::fork();
  if (child < 0) return Status::FromErrno("fork to copy the terminal's queues");
  if (child == 0) {
    DisarmFaultPoints();
    ::setpgid(0, 0);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::signal(sig, SIG_IGN);
    tty::PtyQueues cq;
    const Status st = CopyQueues(master, slave, t, &cq);
    image::Tty out;
    out.set_master_unread(cq.master_unread);
    for (image::TtyInput& in : cq.slave_unread) *out.add_slave_unread() = std::move(in);
    const std::string msg = st.ok() ? std::string() : st.ToString();
    std::string body;
    out.SerializeToString(&body);
    const uint32_t sizes[2] = {static_cast<uint32_t>(msg.size()), static_cast<uint32_t>(body.size())};
    const bool sent = WriteAll(w.get(), sizes, sizeof(sizes)) && WriteAll(w.get(), msg.data(), msg.size()) &&
                      WriteAll(w.get(), body.data(), body.size());
    ::_exit(sent ? 0 : 1);
  }
  w.reset();
  FaultPoint();  // the child is at work
  std::string got;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(r.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  uint32_t sizes[2];
  if (got.size() < sizeof(sizes)) return Status::Error("the child copying the terminal's queues failed (status " + std::to_string(status) + ")");
  std::memcpy(sizes, got.data(), sizeof(sizes));
  if (got.size() != sizeof(sizes) + uint64_t{sizes[0]} + sizes[1])
    return Status::Error("the child copying the terminal's queues sent a truncated answer");
  if (sizes[0]) return Status::Error(got.substr(sizeof(sizes), sizes[0]));
  image::Tty in;
  if (!in.ParseFromArray(got.data() + sizeof(sizes) + sizes[0], static_cast<int>(sizes[1])))
    return Status::Error("cannot parse the terminal's queues from the child that copied them");
  q->master_unread = in.master_unread();
  q->slave_unread.assign(in.slave_unread().begin(), in.slave_unread().end());
  return Status::Ok();
}

Status DumpPty(const Holder& master_holder, image::Tty* t) {
  CRYO_ASSIGN_OR_RETURN(UniqueFd m, Grab(master_holder));
  t->set_kind(image::TTY_PTY);
  t->set_index(master_holder.fd->tty().index());
  t->set_master_path(master_holder.fd->file().path());
  CRYO_ASSIGN_OR_RETURN(int locked, tty::GetInt(m.get(), TIOCGPTLCK, "TIOCGPTLCK"));
  CRYO_ASSIGN_OR_RETURN(int packet, tty::GetInt(m.get(), TIOCGPKT, "TIOCGPKT"));
  t->set_locked(locked != 0);
  t->set_packet_mode(packet != 0);
  CRYO_ASSIGN_OR_RETURN(UniqueFd s, OpenSlave(m.get(), t->locked()));
  for (int fd : {m.get(), s.get()}) {
    CRYO_ASSIGN_OR_RETURN(int ldisc, tty::GetInt(fd, TIOCGETD, "TIOCGETD"));
    if (ldisc != N_TTY)
      return Status::Error("line discipline " + std::to_string(ldisc) + " is not supported (only N_TTY)");
  }
  CRYO_ASSIGN_OR_RETURN(int excl, tty::GetInt(s.get(), TIOCGEXCL, "TIOCGEXCL"));
  t->set_exclusive(excl != 0);
  CRYO_RETURN_IF_ERROR(tty::GetTermios(s.get(), t->mutable_termios()));
  CRYO_RETURN_IF_ERROR(tty::GetWinsize(s.get(), t->mutable_winsize()));
  struct stat st;
  if (::fstat(s.get(), &st) != 0) return Status::FromErrno("fstat of the slave");
  t->set_rdev(static_cast<uint32_t>(st.st_rdev));
  RecordFileAttrs(st, t->mutable_slave_attrs());  // before the queues are read (which touches the times)
  CRYO_ASSIGN_OR_RETURN(pid_t sid, AskMaster(m.get(), TIOCGSID, "TIOCGSID"));
  CRYO_ASSIGN_OR_RETURN(pid_t pgrp, AskMaster(m.get(), TIOCGPGRP, "TIOCGPGRP"));
  t->set_session(sid);
  t->set_foreground_pgrp(sid ? pgrp : 0);
  tty::PtyQueues q;
  CRYO_RETURN_IF_ERROR(CopyQueuesOutOfReach(m.get(), s.get(), *t, &q));
  t->set_master_unread(q.master_unread);
  for (image::TtyInput& in : q.slave_unread) *t->add_slave_unread() = std::move(in);
  return Status::Ok();
}

// The slaves of a pty the restore makes again (its master in the tree: the
// master's fds are checked by the fd handler, tty.cc) or opens again by its
// path (--ext-tty) must be of cryo's /dev/pts: a tree may hold two ptys of
// one number from two devpts instances. A /dev/tty fd names its pty by
// number only; the pty's master tells its instance. A --shell-job terminal
// becomes the restoring shell's, whatever instance it was on.
Status CheckSlavesOnCryoDevpts(const std::vector<Holder>& slaves) {
  for (const Holder& h : slaves) {
    if (h.fd->tty().via_dev_tty()) continue;
    CRYO_ASSIGN_OR_RETURN(UniqueFd fd, Grab(h));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat of " + h.what());
    CRYO_RETURN_IF_ERROR(tty::CheckOnCryoDevpts(st.st_dev, h.what() + " (" + h.fd->file().path() + ")"));
  }
  return Status::Ok();
}

// A process outside the tree with an fd on the slave of one of `ptys` (by
// device): it would be left on a terminal that goes away, and could read the
// queued bytes meanwhile (like a pipe end held outside, it is refused).
Status CheckOutsideHolders(const std::map<dev_t, std::string>& slaves, dev_t devpts, const std::set<pid_t>& tree) {
  return proc::ForEachFdOutside(tree, [&](const proc::OutsideFd& o) {
    struct stat st;
    if (!StartsWith(o.link, "/dev/pts/") || ::stat(o.path.c_str(), &st) != 0 || st.st_dev != devpts)
      return Status::Ok();
    auto it = slaves.find(st.st_rdev);
    if (it == slaves.end()) return Status::Ok();
    return Status::Error(it->second + ": its slave " + o.link + " is also held by pid " + std::to_string(o.pid) +
                         " (fd " + o.fd + "), outside the dumped tree");
  });
}

Status DumpExternal(const Holder& h, image::Tty* t) {
  CRYO_ASSIGN_OR_RETURN(UniqueFd fd, Grab(h));
  t->set_kind(image::TTY_EXTERNAL);
  t->set_rdev(h.fd->rdev());
  CRYO_RETURN_IF_ERROR(tty::GetTermios(fd.get(), t->mutable_termios()));
  CRYO_RETURN_IF_ERROR(tty::GetWinsize(fd.get(), t->mutable_winsize()));
  return Status::Ok();
}

// The process of `procs` whose controlling terminal is /dev/pts/`index` (0: none).
Result<pid_t> ControlledBy(const std::vector<TtyProcess>& procs, uint32_t index) {
  for (const TtyProcess& p : procs) {
    CRYO_ASSIGN_OR_RETURN(proc::Stat stat, proc::ReadStat(p.pid));
    if (static_cast<dev_t>(stat.tty_nr) == makedev(136, index)) return p.pid;  // new_encode_dev, as glibc's
  }
  return pid_t{0};
}

// --ext-tty: a pty slave whose master is outside the tree. Not part of the
// image: its settings stay whatever the outside leaves them; the restore opens
// /dev/pts/N again while it is the same pty. devpts gives each new pty a new
// inode whose ctime is its creation (chown and chmod change it too); the
// bytes written to a terminal touch its mtime and atime only
// (tty_update_time), so the ctime tells that pty from a later one of the
// same number.
Status DumpOutside(const std::vector<Holder>& holders, uint32_t index, image::Tty* t) {
  for (const Holder& h : holders)
    if (h.fd->tty().via_dev_tty())
      return Status::Error(h.what() + " is /dev/tty, the controlling terminal of the process that opened it");
  CRYO_ASSIGN_OR_RETURN(UniqueFd fd, Grab(holders.front()));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat");
  t->set_kind(image::TTY_OUTSIDE);
  t->set_index(index);
  t->set_rdev(static_cast<uint32_t>(st.st_rdev));
  t->set_outside_ctime_ns(int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec);
  CRYO_RETURN_IF_ERROR(tty::GetTermios(fd.get(), t->mutable_termios()));
  CRYO_RETURN_IF_ERROR(tty::GetWinsize(fd.get(), t->mutable_winsize()));
  return Status::Ok();
}

}  // namespace

Status DumpTtys(const std::vector<TtyProcess>& procs, bool shell_job, image::TtyTable* out,
                std::set<std::string>* features, bool ext_tty) {
  struct PtyUse {
    std::vector<Holder> masters, slaves;
  };
  std::map<uint32_t, PtyUse> ptys;  // by pts index
  std::map<uint32_t, std::vector<Holder>> externals;  // by device number
  for (const TtyProcess& p : procs)
    for (image::Fd& f : *p.fds->mutable_fds()) {
      if (f.kind() == image::FD_TTY) {
        PtyUse& use = ptys[f.tty().index()];
        (f.tty().master() ? use.masters : use.slaves).push_back({p.pid, &f});
      }
      if (f.kind() == image::FD_EXTERNAL_TTY) externals[f.rdev()].push_back({p.pid, &f});
    }

  // A pty whose master is elsewhere is the terminal the tree was started on,
  // or (--ext-tty) one that no process of the tree has as its controlling
  // terminal: a terminal a client outside handed to a server (tmux).
  std::map<uint32_t, std::vector<Holder>> outside;  // --ext-tty, by pts index
  for (auto it = ptys.begin(); it != ptys.end();) {
    if (!it->second.masters.empty()) {
      ++it;
      continue;
    }
    const Holder& h = it->second.slaves.front();
    if (ext_tty) {
      CRYO_ASSIGN_OR_RETURN(pid_t ctty_of, ControlledBy(procs, it->first));
      if (!ctty_of) {
        outside[it->first] = std::move(it->second.slaves);
        it = ptys.erase(it);
        continue;
      }
    }
    if (!shell_job)
      return Status::Error(h.what() + " is the terminal " + h.fd->file().path() +
                           ", whose master side is not in the dumped tree (it belongs to a terminal emulator, sshd or "
                           "the shell the tree was started from); dump with --shell-job to restore the tree on the "
                           "terminal of the restoring shell" +
                           (ext_tty ? std::string() : ", or with --ext-tty if it is the controlling terminal of no "
                                                      "process of the tree (a client's terminal a server holds)"));
    for (const Holder& s : it->second.slaves) {
      s.fd->set_kind(image::FD_EXTERNAL_TTY);
      s.fd->set_rdev(static_cast<uint32_t>(makedev(136, s.fd->tty().index())));
      externals[s.fd->rdev()].push_back(s);
    }
    it = ptys.erase(it);
  }

  for (const auto& [index, use] : ptys) CRYO_RETURN_IF_ERROR(CheckSlavesOnCryoDevpts(use.slaves));
  for (const auto& [index, holders] : outside) CRYO_RETURN_IF_ERROR(CheckSlavesOnCryoDevpts(holders));

  std::map<pid_t, const image::ProcessCore*> live;
  for (const TtyProcess& p : procs) live[p.pid] = p.core;
  if (!ptys.empty()) {
    std::set<pid_t> tree;
    for (const TtyProcess& p : procs) tree.insert(p.pid);
    std::map<dev_t, std::string> slaves;
    for (const auto& [index, use] : ptys)
      slaves[makedev(136, index)] =
          "pseudoterminal /dev/pts/" + std::to_string(index) + " (master: " + use.masters.front().what() + ")";
    struct stat devpts;
    if (::stat("/dev/pts", &devpts) != 0) return Status::FromErrno("stat /dev/pts");
    CRYO_RETURN_IF_ERROR(CheckOutsideHolders(slaves, devpts.st_dev, tree));
  }
  uint64_t next_id = 1;
  std::map<uint32_t, const image::Tty*> pty_of_index;
  std::map<uint32_t, uint64_t> id_of_external;
  for (auto& [index, use] : ptys) {
    const Holder& m = use.masters.front();
    image::Tty* t = out->add_ttys();
    t->set_id(next_id++);
    const std::string what = "pseudoterminal /dev/pts/" + std::to_string(index) + " (master: " + m.what() + ")";
    CRYO_RETURN_IF_ERROR(DumpPty(m, t).Prefixed(what));
    if (t->session()) {
      auto leader = live.find(t->session());
      if (leader == live.end() || leader->second->sid() != t->session())
        return Status::Error(what + " is the controlling terminal of session " + std::to_string(t->session()) +
                             ", whose leader is not in the dumped tree");
    }
    pty_of_index[index] = t;
    for (const Holder& h : use.masters) h.fd->mutable_tty()->set_tty_id(t->id());
    for (const Holder& h : use.slaves) h.fd->mutable_tty()->set_tty_id(t->id());
  }
  for (auto& [index, holders] : outside) {
    image::Tty* t = out->add_ttys();
    t->set_id(next_id++);
    CRYO_RETURN_IF_ERROR(DumpOutside(holders, index, t)
                             .Prefixed("the terminal /dev/pts/" + std::to_string(index) + " outside the tree (" +
                                       holders.front().what() + ")"));
    for (const Holder& h : holders) h.fd->mutable_tty()->set_tty_id(t->id());
    features->insert("outside-tty");
  }
  for (auto& [rdev, holders] : externals) {
    image::Tty* t = out->add_ttys();
    t->set_id(next_id++);
    CRYO_RETURN_IF_ERROR(
        DumpExternal(holders.front(), t).Prefixed("the calling shell's terminal (" + holders.front().what() + ")"));
    id_of_external[rdev] = t->id();
    for (const Holder& h : holders) h.fd->mutable_tty()->set_tty_id(t->id());
  }

  bool outside_ctty = false;
  for (const TtyProcess& p : procs) {
    CRYO_ASSIGN_OR_RETURN(proc::Stat stat, proc::ReadStat(p.pid));
    if (!stat.tty_nr) continue;
    image::TtyControl* c = p.core->mutable_ctty();
    c->set_rdev(static_cast<uint32_t>(stat.tty_nr));
    c->set_foreground_pgrp(stat.tpgid);
    const dev_t dev = static_cast<dev_t>(stat.tty_nr);  // new_encode_dev, as glibc's dev_t
    auto pty = major(dev) == 136 ? pty_of_index.find(tty::SlaveIndex(dev)) : pty_of_index.end();
    if (pty != pty_of_index.end()) {
      const image::Tty& t = *pty->second;
      if (t.session() != p.core->sid())
        return Status::Error("pid " + std::to_string(p.pid) + ": its controlling terminal /dev/pts/" +
                             std::to_string(t.index()) + " controls session " + std::to_string(t.session()) +
                             ", not the process's session " + std::to_string(p.core->sid()));
      c->set_tty_id(t.id());
      continue;
    }
    auto ext = id_of_external.find(static_cast<uint32_t>(stat.tty_nr));
    if (ext != id_of_external.end()) c->set_tty_id(ext->second);
    outside_ctty = true;
  }
  if (out->ttys_size()) features->insert("tty");
  if (!ptys.empty()) features->insert("pty-owner");
  if (!externals.empty() || (shell_job && outside_ctty)) features->insert("shell-job");
  return Status::Ok();
}

}  // namespace cryo
