// One fd kind = one FdKind handler: how to recognise it in /proc, dump its
// state, and recreate it in the restore helper. Each kind lives in its own file
// (regular_file.cc, ...) and is listed once in fd_kinds.cc.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "net/sock_diag.h"
#include "proc/path_check.h"
#include "proc/proc.h"

namespace cryo {

// The tree a dump covers, for state that names other processes: lock
// requests waiting on the tree's locks, fd owners (F_SETOWN).
struct DumpScope {
  std::set<pid_t> pids;   // live processes of the tree
  std::set<pid_t> tids;   // their threads (leaders included)
  std::set<pid_t> all_tasks;  // their threads and the zombies (their /proc paths cannot be reopened)
  std::set<pid_t> pgids;  // their process groups that the restore rebuilds
  bool kill_mode = false;  // the tree dies after the dump
  bool ext_unix_sk = false;  // --ext-unix-sk: UNIX peers outside the tree are let go (net/unix_sockets.cc)
  bool ext_tty = false;  // --ext-tty: a pty outside the tree, no one's controlling terminal, reopened by path (files/tty_table.cc)
  bool udp_queue_unverified = false;  // --udp-queue-unverified: UDP queues dumped without the exact count (net/udp_queue.cc)
  // The fds of every process outside the tree by link target, read once, the
  // first time a check needs them (file_locks.cc). Processes are described on
  // several threads at once (dump/inspect.cc): read and filled under the mutex.
  mutable std::mutex outside_fds_mu;
  mutable std::multimap<std::string, std::pair<pid_t, int>> outside_fds;
  mutable bool outside_fds_read = false;
  // Sockets whose state is read once for all their fds (net/udp_socket.cc:
  // a second peek at a queue skips the zero-length datagrams the first one
  // passed), by SO_COOKIE: the serialized record.
  mutable std::mutex sockets_mu;
  mutable std::map<uint64_t, std::string> socket_records;
  // inet_diag's view of the tree's UDP sockets, one dump per family
  // (net/udp_socket.cc; was one per socket).
  mutable InetDiagSnapshot inet_diag;
};

// "pid 12 (comm)", for messages.
std::string NamePid(pid_t pid);

// What the dump knows about one fd of the target.
struct FdSource {
  pid_t pid = 0;
  int fd = -1;
  std::string link;  // readlink /proc/PID/fd/N
  struct stat st{};  // stat of /proc/PID/fd/N (the open file)
  proc::FdInfo info;
  int pidfd = -1;    // pidfd of the target, for pidfd_getfd(2)
  bool shell_job = false;  // --shell-job: terminals belong to the caller's shell
  const DumpScope* scope = nullptr;  // null: checks that need the tree are skipped (tests)
  const paths::TaskIds* tree = nullptr;  // every task of the dumped tree (for /proc paths)
  // The inode of the network namespace the process lives in
  // (/proc/PID/ns/net), read once per fd table (0: read per socket).
  uint64_t process_netns = 0;
  std::string what() const { return "pid " + std::to_string(pid) + " fd " + std::to_string(fd); }
  // The target's fd in cryo (pidfd_getfd(2)), taken the first time a step
  // asks and shared by every later one (the netns check, each handler's
  // Handles and Dump, the owner): borrowed, open while this FdSource or a
  // copy of it lives; -1 with errno on failure.
  int Dup() const;
  // A new duplicate of the target's fd that the caller owns (a dup of
  // Dup()); -1 with errno on failure.
  int Grab() const;
  // A socket's kind, read once on Dup() (each -1 when unreadable: not a
  // socket, or pidfd_getfd failed).
  struct SocketKind {
    int family = -1;     // SO_DOMAIN
    int type = -1;       // SO_TYPE
    int protocol = -1;   // SO_PROTOCOL
    int accepting = -1;  // SO_ACCEPTCONN: 1 for a listener
  };
  const SocketKind& Socket() const;
  // The inode of a socket's network namespace (ioctl SIOCGSKNS), read once;
  // 0 with errno set when it cannot be read.
  uint64_t SocketNetns() const;

 private:
  struct Taken;
  mutable std::shared_ptr<Taken> taken_;  // shared by copies: the same fd
  Taken& Take() const;
};

// How many times FdSource took a target's fd with pidfd_getfd(2) in this
// process (for the dump's debug log and the tests: once per fd described).
uint64_t FdsTaken();

// Whether an fd link names a file that was unlinked ("PATH (deleted)").
bool IsDeletedLink(const std::string& link);
// What paths:: knows of the fd's file: link, stat, file system, access mode.
Status FdOpened(const FdSource& src, paths::Opened* o);
// Refuses an fd whose file cannot be reopened by its path at restore
// (path_check.h), naming the fd, the path and why.
Status CheckReopenable(const FdSource& src);
// The identity of the file an fd names: path, device, inode, size, mtime, mode.
void FillFileId(const FdSource& src, image::FileId* id);

class FdKindHandler {
 public:
  virtual ~FdKindHandler() = default;
  virtual image::FdKind kind() const = 0;
  // Name for messages ("regular file", "eventfd", ...).
  virtual const char* name() const = 0;
  // Feature an image with this kind needs to be restored ("" for the base set).
  virtual const char* feature() const { return ""; }
  // Adds the features the image needs for `fd` (by default, feature()).
  virtual void AddFeatures(const image::Fd& /*fd*/, std::set<std::string>* features) const {
    if (*feature()) features->insert(feature());
  }
  // Whether this handler dumps `src`.
  virtual bool Handles(const FdSource& src) const = 0;
  // Fills the kind-specific part of `out` (fd, flags, cloexec and pos are set).
  virtual Status Dump(const FdSource& src, image::Fd* out) const = 0;
  // In the restore helper: creates the open file and returns a descriptor for
  // it (any number; the caller moves it to fd.fd() and sets close-on-exec).
  virtual Result<int> Open(const image::Fd& fd) const = 0;
  // Once every fd of the process is in place (epoll needs its targets).
  virtual Status Finish(const image::Fd& /*fd*/) const { return Status::Ok(); }
};

// Every handler, in the order Handles() is asked.
const std::vector<const FdKindHandler*>& FdKindHandlers();
const FdKindHandler* HandlerFor(image::FdKind kind);

// Handlers, one per file.
const FdKindHandler* RegularFileHandler();
const FdKindHandler* DirectoryHandler();
const FdKindHandler* UnlinkedFileHandler();  // unlinked_fd.cc
const FdKindHandler* CharDeviceHandler();
const FdKindHandler* EventfdHandler();
const FdKindHandler* PidfdHandler();  // pidfd.cc: opened in RestoreFdTable, once the tree exists
const FdKindHandler* TimerfdHandler();
const FdKindHandler* SignalfdHandler();
const FdKindHandler* EpollHandler();
const FdKindHandler* InotifyHandler();
const FdKindHandler* PipeHandler();
const FdKindHandler* FifoHandler();
const FdKindHandler* ListenSocketFdHandler();  // src/net/listen_socket.cc
const FdKindHandler* UnixSocketFdHandler();    // src/net/unix_socket.cc
const FdKindHandler* TcpSocketFdHandler();     // src/net/tcp_socket.cc
const FdKindHandler* UdpSocketFdHandler();     // src/net/udp_socket.cc
const FdKindHandler* NetlinkSocketFdHandler(); // src/net/netlink_socket.cc
const FdKindHandler* OtherSocketFdHandler();   // src/net/other_socket.cc: refuses every other socket by name

// The pipe id of a FIFO (its inode on a file system), distinct from pipe ids.
uint64_t FifoPipeId(uint64_t dev, uint64_t ino);
const FdKindHandler* PtyHandler();
const FdKindHandler* ExternalTtyHandler();
const FdKindHandler* MemfdHandler();
const FdKindHandler* PosixShmHandler();
const FdKindHandler* MqueueFdHandler();  // mqueue_fd.cc

}  // namespace cryo
