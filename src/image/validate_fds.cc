// fds-PID.img: FdTable, Fd, FileId of an fd, and the per-kind states
// (EventfdState, TimerfdState, SignalfdState, EpollState, InotifyState,
// PipeEnd, TtyEnd, ListenSocket; UnixSocket in validate_unix.cc).
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>

#include <cstring>
#include <map>
#include <set>

#include <google/protobuf/util/message_differencer.h>

#include "image/validate_internal.h"

namespace cryo::image::validate {

namespace {

// open(2) flags the kernel keeps in f_flags and fdinfo shows (O_CLOEXEC is
// recorded apart; O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC are dropped at open).
// The kernel's O_LARGEFILE: glibc's is 0 on x86_64, where every open gets it.
constexpr uint32_t kLargefile = 0x8000;
constexpr uint32_t kFileFlags = O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_ASYNC | O_DIRECT | kLargefile |
                                O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_SYNC | O_PATH | 0x400000 /*__O_TMPFILE dir*/;
// What F_SETFL changes on a pipe, a terminal: the restore sets these.
constexpr uint32_t kSettable = O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK | kLargefile;
constexpr uint32_t kEpollEvents = 0x3fff | 0x2000 | (1u << 28) | (1u << 29) | (1u << 30) | (1u << 31);
constexpr uint32_t kInotifyMask = 0xfff | 0x01000000 | 0x02000000 | 0x04000000 | 0x10000000 | 0x20000000 | 0x80000000;

// The stateless devices FD_CHARDEV reopens, with their numbers (devices.txt).
const std::map<std::string, dev_t>& CharDevices() {
  static const std::map<std::string, dev_t> kDevs = {{"/dev/null", makedev(1, 3)}, {"/dev/zero", makedev(1, 5)},
                                                     {"/dev/full", makedev(1, 7)}, {"/dev/random", makedev(1, 8)},
                                                     {"/dev/urandom", makedev(1, 9)}};
  return kDevs;
}

// Anonymous-inode files: the access mode the kernel gives them, and only
// O_NONBLOCK of their own (the restore makes them with that and nothing else).
std::string AnonFlagsProblem(const Fd& f, uint32_t access) {
  if ((f.flags() & O_ACCMODE) != access || (f.flags() & ~(O_ACCMODE | O_NONBLOCK)))
    return "flags " + Hex(f.flags()) + " that file of this kind cannot have";
  return "";
}

std::string AddressProblem(const ListenSocket& l) {
  const std::string& a = l.address();
  sa_family_t fam = 0;
  if (a.size() >= sizeof(fam)) std::memcpy(&fam, a.data(), sizeof(fam));
  if (fam != l.family()) return "address of another family";
  if (l.family() == AF_INET) return a.size() == sizeof(sockaddr_in) ? "" : "IPv4 address of the wrong size";
  if (l.family() == AF_INET6) return a.size() == sizeof(sockaddr_in6) ? "" : "IPv6 address of the wrong size";
  return UnixAddressProblem(a);
}

}  // namespace

// Options: plain values (at most 64 bytes, what the dump reads), each once,
// at the socket or (`ipv6`) the IPv6 level (net/socket_options.cc).
std::string SocketOptionsProblem(const google::protobuf::RepeatedPtrField<SocketOption>& opts, bool ipv6) {
  std::set<std::pair<int32_t, int32_t>> options;
  for (const SocketOption& o : opts)
    if ((o.level() != SOL_SOCKET && (!ipv6 || o.level() != IPPROTO_IPV6)) || o.value().empty() ||
        o.value().size() > 64 || !options.insert({o.level(), o.name()}).second)
      return "socket option " + std::to_string(o.level()) + "/" + std::to_string(o.name()) + " invalid or twice";
  return "";
}

namespace {

std::string ListenProblem(const Fd& f) {
  const ListenSocket& l = f.listen_socket();
  if (l.family() != AF_UNIX && l.family() != AF_INET && l.family() != AF_INET6) return "socket family unknown";
  if (l.type() != SOCK_STREAM && l.type() != SOCK_SEQPACKET) return "socket type not a listening one";
  if (l.family() != AF_UNIX && (l.type() != SOCK_STREAM || (l.protocol() != 0 && l.protocol() != IPPROTO_TCP)))
    return "an IP listener that is not TCP";
  if (l.family() == AF_UNIX && l.protocol() != 0) return "UNIX socket with a protocol";
  if (std::string p = AddressProblem(l); !p.empty()) return p;
  if (l.backlog() < 0) return "negative backlog";
  if (l.v6only() && l.family() != AF_INET6) return "IPV6_V6ONLY on a socket that is not IPv6";
  // A socket file (its attributes, or its removal) only for a UNIX path name.
  const bool path = l.family() == AF_UNIX && l.address()[offsetof(sockaddr_un, sun_path)] != '\0';
  if ((l.has_file() || l.file_unlinked()) && !path) return "socket file attributes on a socket without a path";
  if (l.has_file() && l.file_unlinked()) return "attributes of a socket file that was removed";
  if (l.has_file())
    if (std::string p = FileAttrsProblem(l.file()); !p.empty()) return "socket file: " + p;
  if (l.owner_uid() == UINT32_MAX || l.owner_gid() == UINT32_MAX) return "socket owner -1";
  if (std::string p = SocketOptionsProblem(l.options(), true); !p.empty()) return p;
  // Peer credentials of listen(2): a process of the image, real ids.
  if (l.listen_pid() < 0 || l.listen_pid() > kPidMax || l.listen_uid() == UINT32_MAX || l.listen_gid() == UINT32_MAX ||
      l.listen_groups_size() > 65536)
    return "listener credentials invalid";
  if (l.family() != AF_UNIX && (l.listen_pid() || l.listen_uid() || l.listen_gid() || l.listen_groups_size()))
    return "listener credentials on a socket that is not UNIX";
  return AnonFlagsProblem(f, O_RDWR);
}

std::string TimerfdProblem(const TimerfdState& t) {
  const int32_t c = t.clockid();
  if (c != 0 && c != 1 && c != 7 && c != 8 && c != 9) return "timerfd clock " + std::to_string(c) + " invalid";
  if (t.settime_flags() & ~3) return "timerfd settime flags " + Hex(static_cast<uint32_t>(t.settime_flags())) + " unknown";
  // TFD_TIMER_CANCEL_ON_SET: absolute realtime timers only (timerfd_settime(2)).
  if ((t.settime_flags() & 2) && (!(t.settime_flags() & 1) || (c != 0 && c != 8)))
    return "TFD_TIMER_CANCEL_ON_SET without an absolute realtime timer";
  if (t.interval_ns() > kKtimeMaxNs || t.value_ns() > kKtimeMaxNs || t.clock_ns() > kKtimeMaxNs - t.value_ns())
    return "timerfd times beyond KTIME_MAX";
  return "";
}

// Everything but the kind's own state, which the caller checks.
std::string KindProblem(const LoadedImage& img, const Index& index, const FdTable& table, const Fd& f) {
  const FdKind k = f.kind();
  const uint32_t acc = f.flags() & O_ACCMODE;
  const mode_t type = f.file().mode() & S_IFMT;
  // Each state message belongs to one kind.
  if (f.has_eventfd() != (k == FD_EVENTFD) || f.has_timerfd() != (k == FD_TIMERFD) ||
      f.has_signalfd() != (k == FD_SIGNALFD) || (f.has_epoll() && k != FD_EPOLL) ||
      (f.has_inotify() && k != FD_INOTIFY) || f.has_pipe() != (k == FD_PIPE || k == FD_FIFO) ||
      f.has_tty() != (k == FD_TTY || k == FD_EXTERNAL_TTY) || f.has_listen_socket() != (k == FD_LISTEN_SOCKET) ||
      f.has_unix_socket() != (k == FD_UNIX_SOCKET) || f.has_tcp_socket() != (k == FD_TCP_SOCKET) ||
      f.has_udp_socket() != (k == FD_UDP_SOCKET) || f.has_netlink_socket() != (k == FD_NETLINK_SOCKET) ||
      f.has_mqueue() != (k == FD_MQUEUE) || f.has_pidfd() != (k == FD_PIDFD) ||
      (f.shm_object() != 0) != (k == FD_MEMFD || k == FD_POSIX_SHM))
    return "state of another kind of file";
  // An unlinked file (files.img) is a regular file or a directory opened again.
  const bool unlinked = k == FD_UNLINKED_FILE;
  if ((f.flags() & O_PATH) && k != FD_REGULAR && k != FD_DIRECTORY && !unlinked) return "O_PATH on a file of this kind";
  // open(2) gives every file it opens O_LARGEFILE on x86_64, but not with
  // O_PATH; pipe(2) and the anonymous-inode kinds never have it. A pty slave
  // from ioctl(TIOCGPTPEER) is opened by the kernel without it (ptm_open_peer).
  const bool peer = k == FD_TTY && !f.tty().master();
  const bool opened = k == FD_REGULAR || k == FD_DIRECTORY || unlinked || k == FD_CHARDEV || k == FD_FIFO ||
                      (k == FD_TTY && !peer) || k == FD_EXTERNAL_TTY || k == FD_MEMFD || k == FD_POSIX_SHM;
  if (peer && (f.flags() & O_PATH)) return "O_PATH on a pty slave";
  if (opened && ((f.flags() & kLargefile) != 0) == ((f.flags() & O_PATH) != 0))
    return "flags " + Hex(f.flags()) + " without O_LARGEFILE (or with O_PATH and it), which open(2) never gives";
  if (f.flags() & O_PATH && f.flags() & ~(O_PATH | O_DIRECTORY | O_NOFOLLOW))
    return "flags " + Hex(f.flags()) + " that an O_PATH file cannot have";
  if ((f.flags() & O_DIRECTORY) && k != FD_DIRECTORY && !(unlinked && type == S_IFDIR))
    return "O_DIRECTORY on a file that is not a directory";
  const bool seeks = k == FD_REGULAR || k == FD_DIRECTORY || unlinked || k == FD_MEMFD || k == FD_POSIX_SHM;
  if (f.pos() > static_cast<uint64_t>(INT64_MAX) || (!seeks && f.pos()))
    return "offset " + std::to_string(f.pos()) + " a file of this kind cannot have";
  // The identity of the file: whole for files with a path, the path alone for
  // terminals, nothing but device and inode for the rest (fd_table.cc).
  const bool whole = k == FD_REGULAR || k == FD_DIRECTORY || unlinked || k == FD_CHARDEV || k == FD_FIFO || k == FD_MEMFD ||
                     k == FD_POSIX_SHM;
  const bool tty = k == FD_TTY || k == FD_EXTERNAL_TTY;
  if (whole || tty) {
    if (std::string p = PathProblem(f.file().path()); !p.empty()) return "path " + p;
  } else if (!f.file().path().empty()) {
    return "a path on a file of this kind";
  }
  if (!whole && (f.file().size() || f.file().mtime_ns() || f.file().mode()))
    return "size, time or mode on a file of this kind";
  if (f.file().has_content_xxh3()) return "a content hash on an fd (only executables and executable mappings have one)";
  if ((k == FD_MEMFD || k == FD_POSIX_SHM) && type != S_IFREG) return "shared memory whose mode is not a regular file's";
  switch (k) {
    case FD_REGULAR:
      if (type == S_IFLNK)  // the link itself (regular_file.cc)
        return (f.flags() & O_PATH) && (f.flags() & O_NOFOLLOW) ? "" : "a symbolic link not held O_PATH | O_NOFOLLOW";
      return type == S_IFREG ? "" : "a regular file whose mode is not a regular file's";
    case FD_UNLINKED_FILE:
      if (type == S_IFDIR) return acc == O_RDONLY || (f.flags() & O_PATH) ? "" : "a directory open for writing";
      return type == S_IFREG ? "" : "an unlinked file that is neither a regular file nor a directory";
    case FD_DIRECTORY:
      if (type != S_IFDIR) return "a directory whose mode is not a directory's";
      return acc == O_RDONLY || (f.flags() & O_PATH) ? "" : "a directory open for writing";
    case FD_CHARDEV: {
      auto dev = CharDevices().find(f.file().path());
      if (dev == CharDevices().end()) return "character device " + Printable(f.file().path()) + " is not one cryo reopens";
      if (type != S_IFCHR || f.rdev() != dev->second) return "device numbers of another device";
      return "";
    }
    case FD_EVENTFD:
      if (f.eventfd().count() == UINT64_MAX) return "eventfd count 2^64-1 (the kernel's limit is one less)";
      return AnonFlagsProblem(f, O_RDWR);
    case FD_TIMERFD:
      if (std::string p = TimerfdProblem(f.timerfd()); !p.empty()) return p;
      return AnonFlagsProblem(f, O_RDWR);
    case FD_SIGNALFD:
      if (f.signalfd().mask() & kSigKillStopMask) return "signalfd mask with SIGKILL or SIGSTOP";
      return AnonFlagsProblem(f, O_RDWR);
    case FD_EPOLL: {
      std::set<int> targets;
      for (const EpollTarget& t : f.epoll().targets()) {
        const Fd* target = nullptr;
        for (const Fd& o : table.fds())
          if (o.fd() == t.fd()) target = &o;
        if (!target || t.fd() == f.fd() || !targets.insert(t.fd()).second)
          return "epoll target fd " + std::to_string(t.fd()) + " is not another open fd, or is listed twice";
        if (target->kind() == FD_REGULAR || target->kind() == FD_DIRECTORY)
          return "epoll target fd " + std::to_string(t.fd()) + " is a file epoll cannot watch";
        if (t.events() & ~kEpollEvents) return "epoll events " + Hex(t.events()) + " unknown";
      }
      return AnonFlagsProblem(f, O_RDWR);
    }
    case FD_INOTIFY: {
      int prev = 0;
      for (const InotifyWatch& w : f.inotify().watches()) {
        const std::string what = "inotify watch " + std::to_string(w.wd());
        if (w.wd() <= prev || w.wd() > (1 << 20)) return what + ": watch descriptors not ascending in 1..2^20";
        prev = w.wd();
        if (!(w.mask() & 0xfff) || (w.mask() & ~kInotifyMask)) return what + ": mask " + Hex(w.mask()) + " invalid";
        if (std::string p = PathProblem(w.path()); !p.empty()) return what + ": path " + p;
      }
      return AnonFlagsProblem(f, O_RDONLY);
    }
    case FD_PIPE:
    case FD_FIFO: {
      const bool fifo = k == FD_FIFO;
      const uint64_t id = f.pipe().pipe_id();
      if (!index.pipe_ids.count(id)) return "pipe " + std::to_string(id) + " is not in pipes.img";
      if (((id >> 63) != 0) != fifo) return "pipe id " + Hex(id) + " of the other kind (pipe, FIFO)";
      if (fifo ? type != S_IFIFO : acc == O_RDWR) return "access mode or file type no pipe end has";
      if (f.pipe().write_end() != (acc == O_WRONLY)) return "write_end disagrees with the access mode";
      if (f.flags() & ~(O_ACCMODE | kSettable)) return "flags " + Hex(f.flags()) + " the restore cannot set";
      if (fifo)
        for (const Pipe& p : img.pipes.pipes())
          // An unlinked FIFO's fds keep its link, " (deleted)" included.
          if (p.id() == id && (p.fifo_unlinked() ? p.fifo_path() + " (deleted)" : p.fifo_path()) != f.file().path())
            return "FIFO path differs from pipes.img's";
      return "";
    }
    case FD_TTY:
    case FD_EXTERNAL_TTY: {
      auto t = index.ttys.find(f.tty().tty_id());
      if (t == index.ttys.end()) return "terminal " + std::to_string(f.tty().tty_id()) + " is not in ttys.img";
      if ((t->second->kind() == TTY_EXTERNAL) != (k == FD_EXTERNAL_TTY)) return "a terminal of the other kind";
      if (f.tty().master() && (k != FD_TTY || f.tty().via_dev_tty())) return "a master that is not a pty's";
      if (t->second->kind() == TTY_OUTSIDE && (f.tty().master() || f.tty().via_dev_tty()))
        return "a master or /dev/tty of a terminal outside the tree";
      if (k == FD_TTY && f.tty().index() != t->second->index()) return "pts number differs from ttys.img's";
      if (f.tty().via_dev_tty() != (f.file().path() == "/dev/tty")) return "via_dev_tty disagrees with its path";
      if (acc == 3 || (f.flags() & ~(O_ACCMODE | kSettable))) return "flags " + Hex(f.flags()) + " invalid";
      return "";
    }
    case FD_MEMFD:
    case FD_POSIX_SHM:
      return acc == 3 || (f.flags() & ~kFileFlags) ? "flags invalid" : "";
    case FD_LISTEN_SOCKET:
      return ListenProblem(f);
    case FD_UNIX_SOCKET:
      return UnixSocketProblem(f);
    case FD_TCP_SOCKET:
      return TcpSocketProblem(f);
    case FD_UDP_SOCKET:
      return UdpSocketProblem(f);
    case FD_NETLINK_SOCKET:
      return NetlinkSocketProblem(f);
    case FD_MQUEUE: {
      const std::string& n = f.mqueue().name();
      if (n.size() < 2 || n.size() > 256 || n[0] != '/' || n.find('/', 1) != std::string::npos ||
          n.find('\0') != std::string::npos)
        return "POSIX message queue name " + Printable(n) + " invalid";
      if (f.mqueue().maxmsg() <= 0 || f.mqueue().msgsize() <= 0) return "POSIX message queue attributes invalid";
      return acc == 3 || (f.flags() & ~(O_ACCMODE | O_NONBLOCK | kLargefile)) ? "flags " + Hex(f.flags()) + " invalid" : "";
    }
    case FD_PIDFD: {
      // A process of the image (a zombie too; PIDFD_THREAD: O_EXCL, its
      // leader only) or a reaped one (0) with its wait status.
      const PidfdState& pf = f.pidfd();
      if (pf.pid() < 0 || (pf.pid() && !img.processes.count(pf.pid())))
        return "pidfd of pid " + std::to_string(pf.pid()) + ", which is not a process of the image";
      if (pf.pid() && pf.has_exit_status()) return "exit status on a pidfd of a live process";
      if (pf.has_exit_status() && (pf.exit_status() & ~0xff7f)) return "pidfd exit status " + Hex(static_cast<uint32_t>(pf.exit_status())) + " invalid";
      if ((f.flags() & O_ACCMODE) != O_RDWR || (f.flags() & ~(O_ACCMODE | O_NONBLOCK | O_EXCL)))
        return "flags " + Hex(f.flags()) + " that a pidfd cannot have";
      return "";
    }
    default:
      return "kind " + std::to_string(k) + " unknown";
  }
}

// F_SETOWN_EX's owner (fcntl(2)): a thread, process or process group of the
// image (the dump refuses any other), and F_SETSIG's signal (0: SIGIO).
std::string OwnerProblem(const Index& index, const Fd& f) {
  if (f.signal() < 0 || f.signal() > 64) return "F_SETSIG signal " + std::to_string(f.signal()) + " out of range 0..64";
  if (!f.has_owner()) return "";
  const FdOwner& o = f.owner();
  const std::string who = "owner (type " + std::to_string(o.type()) + ", " + std::to_string(o.pid()) + ")";
  switch (o.type()) {
    case F_OWNER_TID:
      return index.tid_owner.count(o.pid()) && index.live.count(index.tid_owner.at(o.pid()))
                 ? ""
                 : who + " is not a thread of a live process of the image";
    case F_OWNER_PID:
      return index.live.count(o.pid()) ? "" : who + " is not a live process of the image";
    case F_OWNER_PGRP:
      return index.pgids.count(o.pid()) ? "" : who + " is not a process group of the image";
    default:
      return who + ": unknown owner type";
  }
}

// One lock as the dump records it (files/file_locks.h): a known kind on a
// regular file or directory; a range (first..last byte, or to the end) for
// POSIX and OFD locks only, below 2^63 as off_t; a lock mode the fd's access
// mode allows (F_WRLCK needs it open for writing, F_RDLCK for reading,
// fcntl(2)); a read lease on a read-only fd only.
std::string LockProblem(const Fd& f, const FileLock& l) {
  const std::string what = "lock (kind " + std::to_string(l.kind()) + ")";
  if (l.kind() < LOCK_POSIX || l.kind() > LOCK_LEASE) return what + ": unknown kind";
  if (f.kind() != FD_REGULAR && f.kind() != FD_DIRECTORY) return what + " on an fd that is not a file or directory";
  const uint32_t acc = f.flags() & O_ACCMODE;
  constexpr uint64_t kOffMax = INT64_MAX;
  switch (l.kind()) {
    case LOCK_POSIX:
    case LOCK_OFD:
      if (l.start() > kOffMax || (l.to_eof() ? l.end() != 0 : (l.end() < l.start() || l.end() >= kOffMax)))
        return what + ": range " + std::to_string(l.start()) + ".." + (l.to_eof() ? "EOF" : std::to_string(l.end())) +
               " invalid";
      if (l.write() ? acc == O_RDONLY : acc == O_WRONLY)
        return what + ": a " + (l.write() ? "write" : "read") + " lock the fd's access mode does not allow";
      return "";
    case LOCK_LEASE:
      if (!l.write() && acc != O_RDONLY) return what + ": a read lease on an fd open for writing";
      [[fallthrough]];
    default:  // flock, lease: the whole file, no range
      if (l.start() || l.end() || l.to_eof()) return what + ": a range on a lock of the whole file";
      return "";
  }
}

// At most one flock and one lease per open file description (the kernel
// converts a second one), and POSIX/OFD ranges of one fd not overlapping
// (the kernel merges or splits them).
std::string LocksTogetherProblem(const Fd& f) {
  int flocks = 0, leases = 0;
  for (const FileLock& l : f.locks()) {
    flocks += l.kind() == LOCK_FLOCK;
    leases += l.kind() == LOCK_LEASE;
  }
  if (flocks > 1 || leases > 1) return "more than one flock or lease on one open file description";
  for (int i = 0; i < f.locks_size(); ++i)
    for (int j = i + 1; j < f.locks_size(); ++j) {
      const FileLock &a = f.locks(i), &b = f.locks(j);
      if (a.kind() != b.kind() || (a.kind() != LOCK_POSIX && a.kind() != LOCK_OFD)) continue;
      const uint64_t a_end = a.to_eof() ? UINT64_MAX : a.end(), b_end = b.to_eof() ? UINT64_MAX : b.end();
      if (a.start() <= b_end && b.start() <= a_end) return "overlapping lock ranges (the kernel would merge them)";
    }
  return "";
}

}  // namespace

Status ValidateFds(const LoadedImage& img, const Index& index, int pid, const ProcessImage& p) {
  const std::string file = FdsName(pid);
  int prev = -1;
  for (const Fd& f : p.fds.fds()) {
    const std::string what = "fd " + std::to_string(f.fd());
    if (f.fd() <= prev || f.fd() > kMaxFd) return Bad(img, file, what + ": fd numbers not ascending and unique, or too large");
    prev = f.fd();
    // PIDFD_THREAD is O_EXCL, kept in a pidfd's flags (KindProblem checks them).
    const uint32_t kind_flags = f.kind() == FD_PIDFD ? O_EXCL : 0;
    if ((f.flags() & O_ACCMODE) == 3 || (f.flags() & ~(kFileFlags | kind_flags)))
      return Bad(img, file, what + ": open flags " + Hex(f.flags()) + " invalid");
    if (std::string pr = KindProblem(img, index, p.fds, f); !pr.empty()) return Bad(img, file, what + ": " + pr);
    if (std::string pr = OwnerProblem(index, f); !pr.empty()) return Bad(img, file, what + ": " + pr);
    for (const FileLock& l : f.locks())
      if (std::string pr = LockProblem(f, l); !pr.empty()) return Bad(img, file, what + ": " + pr);
    if (std::string pr = LocksTogetherProblem(f); !pr.empty()) return Bad(img, file, what + ": " + pr);
  }
  return Status::Ok();
}

// Fds that share an open file description (the same file_id, in any process)
// share everything but their number and close-on-exec bit.
Status ValidateSharedDescriptions(const LoadedImage& img) {
  // file_id -> (pid, the description as the first fd with it has it)
  std::map<uint64_t, std::pair<int, Fd>> first;
  for (const auto& [pid, p] : img.processes)
    for (const Fd& f : p.fds.fds()) {
      if (!f.file_id()) continue;
      Fd d = f;
      d.clear_fd();
      d.clear_cloexec();
      // A lock is recorded on the fd of the process that takes it back.
      d.clear_locks();
      // A UNIX socket's queue is in one of its records (validate_unix.cc).
      if (d.has_unix_socket()) {
        d.mutable_unix_socket()->clear_queue();
        d.mutable_unix_socket()->clear_senders();
        d.mutable_unix_socket()->clear_queue_stored();
      }
      auto [it, fresh] = first.emplace(f.file_id(), std::make_pair(pid, d));
      if (fresh) continue;
      // The differing fields named, so that a report says which state.
      std::string diff;
      google::protobuf::util::MessageDifferencer differ;
      differ.ReportDifferencesToString(&diff);
      if (differ.Compare(it->second.second, d)) continue;
      if (diff.size() > 300) diff = diff.substr(0, 300) + "...";
      while (!diff.empty() && diff.back() == '\n') diff.pop_back();
      for (char& c : diff)
        if (c == '\n') c = ';';
      return Bad(img, FdsName(pid), "fd " + std::to_string(f.fd()) + " shares open file description " +
                                        std::to_string(f.file_id()) + " with pid " + std::to_string(it->second.first) +
                                        " but not its state (" + diff + ")");
    }
  return Status::Ok();
}

}  // namespace cryo::image::validate
