#include "restore/pidns.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "base/file_util.h"
#include "base/log.h"
#include "base/signal_forward.h"
#include "base/unique_fd.h"
#include "image/image_dir.h"
#include "mem/lazy_server.h"
#include "ns/user_ns.h"
#include "restore/helper.h"
#include "restore/pidns_userns.h"

namespace cryo {

namespace {

// The pid a procfs path names ("/proc/123/status"), or 0.
pid_t ProcPidIn(const std::string& path) {
  if (!StartsWith(path, "/proc/")) return 0;
  const size_t end = path.find('/', 6);
  const std::string c = path.substr(6, end == std::string::npos ? std::string::npos : end - 6);
  if (c.empty() || c.size() > 9 || c.find_first_not_of("0123456789") != std::string::npos) return 0;
  return static_cast<pid_t>(std::stol(c));
}

std::string Pid(pid_t pid) { return "pid " + std::to_string(pid); }

Status NotInNewPidns(const std::string& what, const std::string& why) {
  return Status::Error(what + ": " + why + "; restore it without --pidns new");
}

// ---------------------------------------------------------------- the engine

// What the init reports to cryo on its report pipe.
constexpr char kRestored = 'R';  // then pid_t root, pid_t root_host
constexpr char kFailed = 'E';    // then the error text, up to EOF
constexpr char kLazyDone = 'L';  // (--lazy, after kRestored) every page is in: the report, up to EOF

// The host pid of our child `root`, through the host's /proc (opened before
// the namespace's own was mounted over it): "self" there is our host pid.
pid_t HostPidOfChild(int host_proc, pid_t root) {
  char self[32] = {};
  if (::readlinkat(host_proc, "self", self, sizeof(self) - 1) <= 0) return 0;
  const std::string me(self);
  const int fd = ::openat(host_proc, (me + "/task/" + me + "/children").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  UniqueFd owned(fd);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) text.append(buf, static_cast<size_t>(n));
  for (std::string_view c : SplitWords(text)) {
    const std::string status_path = std::string(c) + "/status";
    const int sfd = ::openat(host_proc, status_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (sfd < 0) continue;
    UniqueFd sowned(sfd);
    std::string st;
    for (ssize_t n; (n = ::read(sfd, buf, sizeof(buf))) > 0;) st.append(buf, static_cast<size_t>(n));
    const size_t at = st.find("\nNSpid:");
    if (at == std::string::npos) continue;
    const std::vector<std::string_view> ids = SplitWords(st.substr(at + 7, st.find('\n', at + 1) - at - 7));
    if (ids.size() == 2 && std::string(ids.back()) == std::to_string(root)) return std::stoi(std::string(c));
  }
  return 0;
}

// Where the restore runs in the new PID namespace.
enum class Engine {
  kInit,      // as its pid 1, which then stays as the init
  kHandOver,  // beside a pid 1 in the tree's user namespace (restore/pidns_userns.h): exits once the tree runs
};

// The forked pid 1 of the new namespace (or the engine beside it): its own
// mount namespace and /proc, then the restore, then the init.
[[noreturn]] void RunEngine(RestoreOptions opts, int report_fd, int alive_fd, int exit_fd, Engine role) {
  // Dies with cryo until the restore is complete. A cryo that died before the
  // prctl sends nothing: its end of the `alive` pipe is then closed.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  struct pollfd p = {alive_fd, POLLIN, 0};
  if (::poll(&p, 1, 0) != 0) ::_exit(1);
  ::close(alive_fd);
  // A session of its own: the terminal's SIGINT or SIGHUP reach the tree
  // through cryo only, as in a plain restore (the root leads its own session).
  ::setsid();
  auto fail = [&](const Status& s) {
    const std::string text = kFailed + s.ToString();
    (void)WriteAll(report_fd, text.data(), text.size());
    ::_exit(1);
  };
  // A mount namespace of its own, receiving the host's mounts but sending
  // none (a slave): the /proc of the new PID namespace is mounted in it only.
  // Owned by the tree's user namespace when the PID namespace is (it was the
  // tree's own, made with it: ns/user_ns.h); by cryo's otherwise, as the
  // mount namespace the tree shared with cryo was.
  if (role == Engine::kHandOver) {
    if (Status s = ns::UnshareOwned(CLONE_NEWNS, "a mount namespace for the new PID namespace"); !s.ok()) fail(s);
  } else if (::unshare(CLONE_NEWNS) != 0) {
    fail(Status::FromErrno("unshare(CLONE_NEWNS) for the new PID namespace"));
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
    fail(Status::FromErrno("making / a slave mount in the new mount namespace"));
  const int host_proc = ::open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (host_proc < 0) fail(Status::FromErrno("open /proc"));
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    fail(Status::FromErrno("mounting /proc of the new PID namespace"));
  opts.pidfile.clear();  // cryo writes it, with the host pid
  opts.root_handed_to_init = role == Engine::kHandOver;
  std::unique_ptr<LazyServer> lazy;
  Result<pid_t> root = Restore(opts, &lazy);
  if (!root.ok()) fail(root.status());
  if (role == Engine::kHandOver) {
    // cryo hands the root to pid 1 once this engine is gone (it is then
    // reparented there) and told no one yet: no signal to forward.
    const pid_t ids[2] = {*root, HostPidOfChild(host_proc, *root)};
    char msg[1 + sizeof(ids)];
    msg[0] = kRestored;
    std::memcpy(msg + 1, ids, sizeof(ids));
    (void)WriteAll(report_fd, msg, sizeof(msg));
    ::_exit(0);
  }
  // Complete: the tree stays, also if cryo goes now.
  ::prctl(PR_SET_PDEATHSIG, 0);
  // Forwarding to the root starts before cryo hears of the success: a signal
  // sent as soon as the pids are known must not meet Restore()'s SIG_IGN.
  ForwardSignalsTo(*root);
  const pid_t ids[2] = {*root, HostPidOfChild(host_proc, *root)};
  ::close(host_proc);
  char msg[1 + sizeof(ids)];
  msg[0] = kRestored;
  std::memcpy(msg + 1, ids, sizeof(ids));
  (void)WriteAll(report_fd, msg, sizeof(msg));
  if (lazy) {
    // --lazy: this init serves the pages (the tree's userfaultfds are its
    // own) until every one is in, then says how it went; a page that cannot
    // come has the tree killed (LazyServer), the root's end follows.
    Status done = lazy->Wait();
    if (done.ok() && opts.remote) done = opts.remote->AllIn().Prefixed("post-copy: telling the source");
    const std::string text = done.ok() ? kLazyDone + lazy->Report() : kFailed + done.ToString();
    lazy.reset();
    (void)WriteAll(report_fd, text.data(), text.size());
  }
  ::close(report_fd);
  RunNamespaceInit(*root, exit_fd);
}

}  // namespace

[[noreturn]] void RunNamespaceInit(pid_t root, int exit_fd) {
  // Holds nothing of cryo's: not its log, its stdio (a detached restore run
  // as $(cryo restore -d ...) must not wait for the init), nor its cwd.
  CloseLogFile();
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0)
    for (int fd = 0; fd < 3; ++fd) ::dup2(null_fd, fd);
  if (exit_fd >= 0) {
    const int kept = ::fcntl(exit_fd, F_DUPFD_CLOEXEC, 3);
    ::close_range(3, kept - 1, 0);
    ::close_range(static_cast<unsigned>(kept) + 1, ~0U, 0);
    exit_fd = kept;
  } else {
    ::close_range(3, ~0U, 0);
  }
  if (::chdir("/") != 0) {
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int status = 0;
  for (;;) {
    int st = 0;
    // __WALL: the root may have an exit signal other than SIGCHLD.
    const pid_t r = ::waitpid(-1, &st, __WALL);
    if (r == root && (WIFEXITED(st) || WIFSIGNALED(st))) {
      status = st;
      break;
    }
    if (r < 0 && errno == ECHILD) ::_exit(1);  // cannot be: the root is a child
  }
  if (exit_fd >= 0) (void)WriteAll(exit_fd, &status, sizeof(status));
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

Status ReadLazyOutcome(int lazy_fd, std::string* report) {
  const std::string text = ReadToEof(lazy_fd);
  ::close(lazy_fd);
  if (!text.empty() && text[0] == kLazyDone) {
    if (report) *report = text.substr(1);
    return Status::Ok();
  }
  if (!text.empty() && text[0] == kFailed) return Status::Error(text.substr(1));
  return Status::Error("the init of the new PID namespace ended before every lazy page was in");
}

Result<PidnsRestored> RestoreInNewPidns(RestoreOptions opts) {
  const bool opts_lazy = opts.lazy;
  int report[2], alive[2], exits[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
  UniqueFd report_r(report[0]), report_w(report[1]);
  if (::pipe2(alive, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
  UniqueFd alive_r(alive[0]), alive_w(alive[1]);
  if (::pipe2(exits, O_CLOEXEC) != 0) return Status::FromErrno("pipe");
  UniqueFd exit_r(exits[0]), exit_w(exits[1]);
  // A user namespace of the tree's own is made first. If the tree's PID
  // namespace was owned by it, so is the fresh one, whose pid 1 is then made
  // in it and the engine beside it (restore/pidns_userns.h); otherwise the
  // PID namespace is cryo's making, as the one the tree shared with cryo.
  Engine role = Engine::kInit;
  std::optional<UserNsInit> userns_init;
  pid_t engine_pid = 0;
  {
    image::Inventory inv;
    image::ImageIdentity identity;
    CRYO_RETURN_IF_ERROR(image::ReadInventory(opts.images_dir, &inv, &identity));
    const auto has = [&](const char* f) { return std::count(inv.features().begin(), inv.features().end(), f) > 0; };
    if (has("user-ns")) {
      if (has("pid-ns")) {
        // The engine exits once the tree runs; a lazy restore's pages are
        // served by it until every one is in.
        if (opts_lazy)
          return Status::Error("--lazy and a tree whose PID namespace was owned by its own user namespace: the "
                               "pages would be served by a process that must be gone once the tree runs (not "
                               "supported)");
        role = Engine::kHandOver;
        engine_pid = EnginePid(inv);
      }
      image::NamespaceTable ns;
      CRYO_RETURN_IF_ERROR(image::ReadRecord(opts.images_dir, image::NamespacesName(), image::FileKind::kNamespaces, &ns));
      CRYO_RETURN_IF_ERROR(ns::MakeTreeUserNs(inv, ns));
    }
  }
  pid_t init = 0;
  if (role == Engine::kHandOver) {
    CRYO_ASSIGN_OR_RETURN(UserNsInit made, ForkInitInTreeUserNs(alive_r.get(), alive_w.get(), exit_w.get()));
    init = made.pid;
    userns_init.emplace(std::move(made));
    // From here a failure takes the namespace down with its init.
    Status joined = JoinPidnsOfInit(init);
    Result<pid_t> engine = joined.ok() ? CloneWithPid(engine_pid, SIGCHLD) : Result<pid_t>(joined);
    if (!engine.ok()) {
      ::kill(init, SIGKILL);
      while (::waitpid(init, nullptr, 0) < 0 && errno == EINTR) {
      }
      return engine.status().Prefixed("the restore engine in the new PID namespace");
    }
    engine_pid = *engine;
    if (engine_pid == 0) {
      report_r.reset();
      alive_w.reset();
      exit_r.reset();
      userns_init.reset();
      RunEngine(std::move(opts), report_w.get(), alive_r.get(), -1, role);
    }
  } else {
    // The next child of cryo is pid 1 of a new PID namespace (unshare(2)).
    if (::unshare(CLONE_NEWPID) != 0) return Status::FromErrno("unshare(CLONE_NEWPID) for the new PID namespace");
    init = ::fork();
    if (init < 0) return Status::FromErrno("fork of the new PID namespace's init");
    if (init == 0) {
      report_r.reset();
      alive_w.reset();
      exit_r.reset();
      RunEngine(std::move(opts), report_w.get(), alive_r.get(), exit_w.get(), role);
    }
  }
  report_w.reset();
  alive_r.reset();
  exit_w.reset();
  // The first message (kRestored and two pids), or a failure up to EOF; with
  // --lazy the pages' outcome follows later (ReadLazyOutcome).
  std::string reply;
  char buf[512];
  constexpr size_t kRestoredSize = 1 + 2 * sizeof(pid_t);
  for (;;) {
    size_t want = sizeof(buf);
    if (!reply.empty() && reply[0] == kRestored) {
      if (reply.size() >= kRestoredSize) break;
      want = kRestoredSize - reply.size();
    }
    const ssize_t n = ::read(report_r.get(), buf, want);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  PidnsRestored out;
  out.init = init;
  if (reply.size() == 1 + 2 * sizeof(pid_t) && reply[0] == kRestored) {
    std::memcpy(&out.root, reply.data() + 1, sizeof(pid_t));
    std::memcpy(&out.root_host, reply.data() + 1 + sizeof(pid_t), sizeof(pid_t));
    Status handed;
    if (out.root_host > 0 && userns_init) {
      // The engine exits once it has reported: its children are then the
      // init's, which takes the root.
      int est = 0;
      while (::waitpid(engine_pid, &est, 0) < 0 && errno == EINTR) {
      }
      handed = HandRootToInit(*userns_init, out.root, out.root_host);
    }
    if (out.root_host > 0 && handed.ok()) {
      out.exit_fd = exit_r.release();
      if (opts_lazy) out.lazy_fd = report_r.release();
      return out;
    }
    // Nothing to name it by: the restore fails, and its namespace goes with its init.
    ::kill(init, SIGKILL);
    reply = std::string(1, kFailed) + (!handed.ok() ? handed.ToString()
                                                     : "cannot find the host pid of restored pid " +
                                                           std::to_string(out.root) +
                                                           " (/proc/PID/task/TID/children of its init)");
  }
  // Failed: the init exits (and the kernel kills what it had made); an init
  // waiting for its root in the tree's user namespace is killed. Its exit
  // waits until every process of the namespace is reaped
  // (zap_pid_ns_processes), the engine, cryo's child, too: reaped first.
  if (userns_init) {
    ::kill(init, SIGKILL);
    while (::waitpid(engine_pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  int st;
  while (::waitpid(init, &st, 0) < 0 && errno == EINTR) {
  }
  if (!reply.empty() && reply[0] == kFailed) return Status::Error(reply.substr(1));
  return Status::Error("the init of the new PID namespace (pid " + std::to_string(init) + ") died (wait status " +
                       std::to_string(st) + ")");
}

Status CheckPidnsFit(const image::LoadedImage& img, const RestorePlan& plan, bool shell_job) {
  if (shell_job)
    return Status::Error("--shell-job and --pidns new: the tree would join cryo's session, which is led from "
                         "outside the new PID namespace");
  for (const auto& [pid, p] : img.processes) {
    const image::ProcessCore& c = p.core;
    for (pid_t id : {c.pid(), c.pgid(), c.sid()})
      if (id == 1)
        return NotInNewPidns(Pid(pid), "the image holds pid 1 (a tree dumped inside its own PID namespace), which is "
                                       "cryo's init in the new namespace");
    if (!plan.tasks.count(c.sid()))
      return NotInNewPidns(Pid(pid), "its session " + std::to_string(c.sid()) + " is led from outside the image" +
                                         (c.sid() == 0 ? " (from an ancestor PID namespace)" : "") +
                                         "; no process of the new PID namespace could have that id");
    if (!plan.tasks.count(c.pgid()))
      return NotInNewPidns(Pid(pid), "its process group " + std::to_string(c.pgid()) +
                                         " is led from outside the image and cannot be rebuilt");
    for (const image::Fd& f : p.fds.fds())
      if (const pid_t other = ProcPidIn(f.file().path()))
        return NotInNewPidns(Pid(pid) + " fd " + std::to_string(f.fd()) + " (" + f.file().path() + ")",
                             "it is open in the /proc directory of pid " + std::to_string(other) +
                                 ", outside the tree: in the new PID namespace that pid is another process or none");
    for (const image::Vma& v : p.mm.vmas())
      if (const pid_t other = ProcPidIn(v.file().path()))
        return NotInNewPidns(Pid(pid) + " mapping of " + v.file().path(),
                             "it maps a file in the /proc directory of pid " + std::to_string(other) + ", outside the tree");
  }
  if (img.files.files_size() > 0)
    return NotInNewPidns("unlinked file " + img.files.files(0).path(),
                         "a restore recreates it under a temporary name made from cryo's pid, which is 1 in every new "
                         "PID namespace (not supported yet)");
  return Status::Ok();
}

Status PidnsJanitorRefusal(const image::LoadedImage& img) {
  std::string what = "it";
  for (const image::ShmObject& o : img.shm.objects()) {
    if (o.kind() == image::SHM_SYSV) what = "SysV shared memory segment " + std::to_string(o.sysv_id());
    if (o.kind() == image::SHM_POSIX) what = (o.huge_page_size() ? "hugetlbfs file " : "POSIX shared memory ") + o.name();
  }
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& f : p.fds.fds()) {
      if (f.kind() == image::FD_FIFO) what = "the FIFO " + f.file().path() + " (pid " + std::to_string(pid) + ")";
      if (f.kind() == image::FD_LISTEN_SOCKET && f.listen_socket().family() == AF_UNIX)
        what = "a UNIX socket file (pid " + std::to_string(pid) + " fd " + std::to_string(f.fd()) + ")";
    }
  // (as NeedsJanitor: a TCP listener is no file; the connections' lock is)
  if (!img.inventory.net_lock().empty())
    what = "the lock of its TCP connections, nftables table inet " + img.inventory.net_lock();
  return NotInNewPidns("the image", "the restore recreates objects that outlive its processes (" + what +
                                        "), which the restore janitor removes if it fails; that janitor would die "
                                        "with the new PID namespace (not supported yet)");
}

}  // namespace cryo
