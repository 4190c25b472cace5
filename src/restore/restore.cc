#include "restore/restore.h"
#include "restore/mount_ns.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/fault.h"
#include "base/janitor.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/privileges.h"
#include "base/size_format.h"
#include "base/unique_fd.h"
#include "files/changed_files.h"
#include "files/snapshot_restore.h"
#include "files/fd_owner.h"
#include "files/fd_pool.h"
#include "files/fd_table.h"
#include "files/file_locks.h"
#include "files/shared_tables.h"
#include "image/image_dir.h"
#include "inject/remote_syscall.h"
#include "mem/hugetlb.h"
#include "mem/lazy_plan.h"
#include "mem/lazy_server.h"
#include "image/format.h"
#include "mem/premap_window.h"
#include "mem/vma_restore.h"
#include "proc/proc.h"
#include "restore/finalize.h"
#include "restore/helper.h"
#include "restore/pidns.h"
#include "restore/pidns_userns.h"
#include "restore/resume_hook.h"
#include "restore/tree_watch.h"
#include "restorer/blob.h"
#include "restorer/restorer_args.h"
#include "seize/ptrace_util.h"
#include "net/tcp_migrate.h"
#include "net/tcp_rewind.h"
#include "net/tcp_session.h"
#include "ns/join_ns.h"
#include "ns/namespaces.h"
#include "ns/netns.h"
#include "ns/time_ns.h"
#include "ns/user_ns.h"
#include "tree/job_control.h"
#include "tree/proc_attrs.h"
#include "tree/task_restore.h"

namespace cryo {

namespace {

// One premap window for the whole tree (premap_window.h), reserved here so that
// every helper inherits the reservation.
Result<PremapWindow> ReserveWindow(const image::LoadedImage& img, const std::map<pid_t, ProcessFacts>& facts,
                                   const std::vector<proc::Vma>& own) {
  std::vector<std::pair<uint64_t, uint64_t>> used;
  for (const proc::Vma& v : own) used.emplace_back(v.start, v.end);
  std::map<pid_t, SlotSize> sizes;
  for (const auto& [pid, p] : img.processes) {
    for (const image::Vma& v : p.mm.vmas()) used.emplace_back(v.start(), v.end());
    if (!p.core.zombie()) sizes[pid] = {PremapSize(p.mm, facts.at(pid).huge_vmas), RestorerAreaSize(p)};
  }
  CRYO_ASSIGN_OR_RETURN(PremapWindow w, PlanPremapWindow(used, sizes));
  if (::mmap(reinterpret_cast<void*>(w.start), w.len, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED)
    return Status::FromErrno("reserving " + FormatSize(w.len) + " of address space for the restore");
  return w;
}

// Whether the restore creates something that outlives its processes: SysV
// segments and files of /dev/shm, FIFOs, UNIX socket files, a network lock to
// remove; and, with `cgroups`, the cgroup directories it may create.
bool NeedsJanitor(const image::LoadedImage& img, bool cgroups) {
  for (const auto& [pid, p] : img.processes)
    if (cgroups && p.core.cgroups_size()) return true;
  if (!img.inventory.net_lock().empty()) return true;
  // SysV segments of the tree's own IPC namespace die with the fresh one.
  const bool own_ipc = std::find(img.inventory.features().begin(), img.inventory.features().end(), "ipc-ns") !=
                       img.inventory.features().end();
  for (const image::ShmObject& o : img.shm.objects())
    if ((o.kind() == image::SHM_SYSV && !own_ipc) || o.kind() == image::SHM_POSIX) return true;
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& f : p.fds.fds())
      if (f.kind() == image::FD_FIFO || (f.kind() == image::FD_LISTEN_SOCKET && f.listen_socket().family() == AF_UNIX))
        return true;
  return false;
}

// Every id the restore gives a process: pids, thread ids, and the sessions
// and groups a temporary leader may take.
std::set<pid_t> ImagePids(const image::LoadedImage& img) {
  std::set<pid_t> out;
  for (const auto& [pid, p] : img.processes) {
    out.insert({pid, p.core.pgid(), p.core.sid()});
    for (const image::TaskCore& t : p.core.threads()) out.insert(t.tid());
  }
  return out;
}

}  // namespace

namespace {

// Ignored rather than blocked: a process-directed signal goes to any thread
// that does not block it (signal(7)), and cryo's worker threads do not.
void IgnoreTerminatingSignals() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) ::signal(sig, SIG_IGN);
}

// Post-copy: the remote runs a helper fills before the tree runs (pages a
// child inherits copy-on-write are not lazy, mem/lazy_plan.h) come from the
// source now, into the page file, with their checksum.
Status FetchEagerRemoteRuns(const RestoreOptions& opts, const std::map<pid_t, ProcessFacts>& facts,
                            image::LoadedImage* img) {
  for (auto& [pid, p] : img->processes) {
    const LazyPlan plan = PlanLazy(p.mm, facts.at(pid).children_inherit);
    UniqueFd file;
    std::string buf;
    for (image::PageRun& r : *p.mm.mutable_runs()) {
      if (!r.remote() || plan.set.count(&r)) continue;
      const std::string path = opts.images_dir + "/" + image::PagesName(pid);
      if (!file.valid()) file.reset(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
      if (!file.valid()) return Status::FromErrno("open " + path);
      buf.resize(r.npages() * image::kPageSize);
      CRYO_RETURN_IF_ERROR(opts.remote->Fetch(pid, r.vaddr(), buf.size(), buf.data())
                               .Prefixed("pid " + std::to_string(pid) + ": post-copy pages shared with a child"));
      for (size_t done = 0; done < buf.size();) {
        const ssize_t w = ::pwrite(file.get(), buf.data() + done, buf.size() - done, static_cast<off_t>(r.offset() + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return Status::FromErrno("write " + path);
        done += static_cast<size_t>(w);
      }
      r.set_checksum(image::HashBytes(buf.data(), buf.size()));
      r.set_remote(false);
    }
  }
  return Status::Ok();
}

}  // namespace

Result<pid_t> Restore(const RestoreOptions& opts, std::unique_ptr<LazyServer>* lazy_out) {
  const double t0 = Now();
  CRYO_RETURN_IF_ERROR(CheckPrivileges());
  ArmRestoreFaults();
  CRYO_ASSIGN_OR_RETURN(image::LoadedImage img, image::LoadImage(opts.images_dir));
  RestoreFaultPoint("loaded");
  const pid_t root = img.inventory.root_pid();
  CRYO_RETURN_IF_ERROR(CheckCpu(img.inventory));
  // In a user namespace of the tree's own the capability sets are relative
  // to it, where a process that joins it starts with all (setns(2)).
  const bool own_userns = std::count(img.inventory.features().begin(), img.inventory.features().end(), "user-ns");
  for (const auto& [pid, p] : img.processes)
    if (!own_userns) CRYO_RETURN_IF_ERROR(CheckCapabilitiesFit(p.core));
  CRYO_ASSIGN_OR_RETURN(uint64_t syscall_off, BlobSyscallInsn());
  const auto& features = img.inventory.features();
  if (!opts.remote && (std::find(features.begin(), features.end(), "remote-pages") != features.end() ||
                       std::find(features.begin(), features.end(), "remote-vmas") != features.end()))
    return Status::Error("the image's private memory is still in the source process of a post-copy migration "
                         "(cryo migrate --lazy): only the page server that received it can restore it");
  if (opts.remote && !opts.lazy) return Status::Error("a post-copy restore is lazy (--lazy)");
  // A pre-copy round read its pages while the tree ran (dump/precopy_live.h):
  // they are no one moment's memory; only the final image of the chain is.
  if (std::find(features.begin(), features.end(), "live-copied-pages") != features.end())
    return Status::Error(opts.images_dir + " is a pre-copy round (feature 'live-copied-pages': its pages were read "
                         "while the tree ran, a parent for the next dump only): restore the pre-copy's final image, "
                         "the directory that holds pre-copy/");
  if (!opts.shell_job && std::find(features.begin(), features.end(), "shell-job") != features.end())
    return Status::Error("the image was dumped with --shell-job (its terminal belonged to the calling shell); "
                         "restore it with --shell-job from a terminal");
  std::map<pid_t, const image::ProcessCore*> cores;
  std::map<pid_t, const image::FdTable*> fd_tables;
  for (const auto& [pid, p] : img.processes) {
    cores[pid] = &p.core;
    fd_tables[pid] = &p.fds;
  }
  const RestorePlan plan = PlanRestore(root, cores);
  CRYO_RETURN_IF_ERROR(CheckSharingPlan(plan, cores));
  if (opts.new_pidns) CRYO_RETURN_IF_ERROR(CheckPidnsFit(img, plan, opts.shell_job));
  if (opts.root_handed_to_init && img.processes.count(root))
    CRYO_RETURN_IF_ERROR(CheckHandOverFit(img.processes.at(root).core));
  if (!opts.new_pidns && std::count(img.inventory.features().begin(), img.inventory.features().end(), "pid-ns"))
    return Status::Error("the tree lived in a PID namespace of its own (its pids are that namespace's, not cryo's): "
                         "restore it with --pidns new");
  CRYO_RETURN_IF_ERROR(ns::CheckTreeUserNsFit(img));
  if (opts.new_pidns && std::count(features.begin(), features.end(), "user-ns") &&
      std::count(features.begin(), features.end(), "time-ns"))
    return Status::Error("--pidns new with a user namespace and a time namespace of the tree's own: not restored "
                         "together yet");
  if (ns::HaveTreeUserNs() || std::count(features.begin(), features.end(), "user-ns")) {
    if (!opts.join_ns.empty())
      return Status::Error("--join-ns and a user namespace of the tree's own: the joined namespaces are not owned by "
                           "the fresh user namespace (not supported)");
    // setns(CLONE_NEWUSER) refuses a process sharing its fs_struct or fd
    // table is not handled by the helpers' join (setns(2)).
    for (const auto& [pid, p] : img.processes)
      if (!p.core.zombie() && (SharingCloneFlags(p.core) & (CLONE_FS | CLONE_FILES)))
        return Status::Error("pid " + std::to_string(pid) + " shares its filesystem context or fd table with another "
                             "process (CLONE_FS/CLONE_FILES) in a user namespace of the tree's own, which is not "
                             "restored yet");
  }
  CRYO_RETURN_IF_ERROR(CheckFdOwners(img));
  CRYO_RETURN_IF_ERROR(CheckOwnerGroups(plan, cores, fd_tables));
  // A mount namespace of the tree's own is made before anything looks at a
  // path (restore/mount_ns.h): the files below are its, its tmpfs mounts'
  // content put back with them.
  CRYO_RETURN_IF_ERROR(MakeTreeMountNs(img, opts.images_dir));
  CRYO_RETURN_IF_ERROR(CheckLeasesFree(img));
  CRYO_RETURN_IF_ERROR(CheckLocksFree(img));
  CRYO_RETURN_IF_ERROR(CheckFreeHugePages(img));
  CRYO_RETURN_IF_ERROR(CheckOutsidePeersHeld(img, opts.tcp_close, opts.lock_held_by_source));
  for (const auto& [pid, p] : img.processes) {
    CRYO_RETURN_IF_ERROR(ValidateJobControl(p.core));
    CRYO_RETURN_IF_ERROR(CheckDumpableFlag(p.core));
    CRYO_RETURN_IF_ERROR(CheckRestoreAttrs(p.core, pid == root));
  }
  // The files the image carries go back first (undone if the restore fails):
  // they are then as the tree left them, not "changed".
  std::unique_ptr<SnapshotRestore> snapshot;
  if (!opts.no_restore_files) {
    CRYO_ASSIGN_OR_RETURN(snapshot, SnapshotRestore::Apply(img, [&img](const std::string& path) {
                            return !InTreeTmpfs(img, path);
                          }));
  }
  // Before anything is made: the files the tree reopens by path are the ones
  // it was dumped with.
  std::set<std::string> carried = SnapshotPaths(img);
  if (opts.no_restore_files)
    std::erase_if(carried, [&img](const std::string& path) { return !InTreeTmpfs(img, path); });
  CRYO_RETURN_IF_ERROR(
      CheckChangedFiles(&img, {opts.ignore_changed_files, opts.allow_changed, std::move(carried)}));
  // What outlives a killed cryo (SysV segments, files) is made known to the
  // janitor first; it removes it unless the restore completes.
  std::unique_ptr<Janitor> janitor;
  // With --pidns new the janitor would die with the namespace: images that
  // need one for more than cgroups are refused; cgroup directories the
  // restore creates are removed on failure by the restore itself, though not
  // after a kill -9 of cryo (architecture.md, "Restore into a new PID namespace").
  if (opts.new_pidns && NeedsJanitor(img, /*cgroups=*/false)) return PidnsJanitorRefusal(img);
  if (!opts.new_pidns && NeedsJanitor(img, /*cgroups=*/true)) {
    CRYO_ASSIGN_OR_RETURN(janitor, Janitor::Start(ImagePids(img)));
    SetCurrentJanitor(janitor.get());
  }
  // --lazy: the page files stay open in cryo, which serves the pages once the
  // tree runs; declared before the tree guard, so that on failure the tree
  // is gone before the server stops.
  // What each helper needs of the others (children's exit signals, clone
  // flags, the pages they inherit), gathered once.
  const std::map<pid_t, ProcessFacts> facts = GatherProcessFacts(img);
  std::unique_ptr<LazyServer> lazy;
  if (opts.remote) CRYO_RETURN_IF_ERROR(FetchEagerRemoteRuns(opts, facts, &img));
  if (opts.lazy) {
    CRYO_ASSIGN_OR_RETURN(lazy, LazyServer::Create(
                                    img, ImagePids(img),
                                    [&facts](pid_t pid) -> const auto& { return facts.at(pid).children_inherit; },
                                    opts.remote));
  }
  // The image's TCP connections: the lock goes whatever happens (the
  // janitor removes it if cryo dies).
  const std::string& net_lock = img.inventory.net_lock();
  SetTcpCloseOnRestore(opts.tcp_close);
  TcpRestoreGuard tcp_guard(net_lock);
  if (!net_lock.empty()) CRYO_RETURN_IF_ERROR(janitor->WillRemoveNetLock(net_lock));
  SetTcpNonlocalBindOnRestore(opts.lock_held_by_source);
  if (opts.lock_held_by_source && !opts.tcp_close) CRYO_RETURN_IF_ERROR(HoldLockForMigration(img));
  if (!opts.lock_held_by_source) CRYO_RETURN_IF_ERROR(TakeNetnsLockToken(img));
  CRYO_ASSIGN_OR_RETURN(cgroup::CgroupRoots cgroup_roots, cgroup::ParseCgroupRoots(opts.cgroup_roots));
  // Declared before the tree guard: on failure the processes go first, then
  // the cgroups created for them.
  CRYO_ASSIGN_OR_RETURN(std::unique_ptr<cgroup::CgroupPlacement> cgroups,
                        cgroup::CgroupPlacement::Prepare(img, cgroup_roots));
  // The tree's own UTS and IPC namespaces: cryo enters fresh ones and fills
  // them before it makes anything (SysV segments included), so that every
  // process it forks is in them.
  CRYO_RETURN_IF_ERROR(ns::JoinNamespaces(opts.join_ns, img.inventory, opts.images_dir, opts.new_pidns));
  // The tree's own user namespace first: the namespaces made below are
  // owned by it (ns/user_ns.h); with --pidns new its init made it already.
  CRYO_RETURN_IF_ERROR(ns::MakeTreeUserNs(img.inventory, img.namespaces));
  // Declared before the tree guard: the veth pairs go once the processes have.
  struct VethUndo {
    bool keep = false;
    ~VethUndo() { keep ? ns::KeepRestoredVeths() : ns::DeleteRestoredVeths(); }
  } veth_undo;
  CRYO_RETURN_IF_ERROR(ns::EnterFreshNamespaces(img.inventory, img.namespaces, opts.veth_peer_ns,
                                                FreshNetnsLockScript(img)));
  // The tree's time namespace when the root lives in it (else the helper of
  // the process that made it does it: ns/time_ns.h).
  CRYO_RETURN_IF_ERROR(ns::EnterFreshTimeNamespace(img, 0));
  CRYO_RETURN_IF_ERROR(FinishTreeMountNs(img));
  CRYO_ASSIGN_OR_RETURN(FdPool pool, FdPool::Build(img));
  RestoreFaultPoint("objects");
  LOG_DEBUG("image %s loaded, validated and its files opened in %.3f ms", opts.images_dir.c_str(), (Now() - t0) * 1e3);

  // Our mappings (maps, not smaps: no page counts needed): the window avoids
  // them, and every helper starts with them (its vDSO family is cryo's).
  CRYO_ASSIGN_OR_RETURN(std::string maps_text, ReadFileToString("/proc/self/maps"));
  CRYO_ASSIGN_OR_RETURN(const std::vector<proc::Vma> cryo_vmas, proc::ParseMaps(maps_text));
  CRYO_ASSIGN_OR_RETURN(PremapWindow window, ReserveWindow(img, facts, cryo_vmas));
  for (const std::string& note : plan.notes) LOG_DEBUG("restore plan: %s", note.c_str());
  for (pid_t g : plan.ghosts) LOG_DEBUG("restore plan: a temporary leader rebuilds session/group %d", g);

  int sync[2], status[2], go[2], ghost[2];
  if (::pipe2(sync, O_CLOEXEC) != 0 || ::pipe2(status, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0 ||
      ::pipe2(ghost, O_CLOEXEC) != 0)
    return Status::FromErrno("pipe");
  UniqueFd sync_r(sync[0]), sync_w(sync[1]), status_r(status[0]), status_w(status[1]), go_r(go[0]), go_w(go[1]),
      ghost_r(ghost[0]), ghost_w(ghost[1]);

  HelperContext ctx;
  ctx.img = &img;
  ctx.pool = &pool;
  ctx.pid = root;
  ctx.parent = ::getpid();
  ctx.cryo_ends = {sync_w.get(), status_r.get(), go_w.get(), ghost_w.get()};
  ctx.sync_fd = sync_r.get();
  ctx.status_fd = status_w.get();
  ctx.go_fd = go_r.get();
  ctx.ghost_fd = ghost_r.get();
  ctx.plan = &plan;
  ctx.window = &window;
  ctx.shell_job = opts.shell_job;
  ctx.fill_threads = static_cast<int>(std::min(4u, std::max(1u, std::thread::hardware_concurrency())));
  for (const auto& [pid, p] : img.processes) ctx.max_image_fd = std::max(ctx.max_image_fd, MaxFd(p.fds));
  // The pool's fds, found once here rather than by every helper.
  const std::vector<int> pool_fds = pool.Fds();
  ctx.pool_fds = &pool_fds;
  ctx.cryo_vmas = &cryo_vmas;
  const std::map<pid_t, SharingRole> roles = SharingRoles(cores);
  ctx.roles = &roles;
  ctx.facts = &facts;
  ctx.cgroups = cgroups.get();
  ctx.lazy = opts.lazy;

  // Tracee stops and exits raise SIGCHLD in cryo (do_notify_parent_cldstop):
  // blocked and read from a signalfd, it wakes the wait loop below at once.
  // The helpers unblock it first thing (RunHelper).
  ChildSignals child_signals;
  CRYO_RETURN_IF_ERROR(child_signals.Open());
  const int root_exit_signal = img.processes.at(root).core.exit_signal() ? img.processes.at(root).core.exit_signal() : SIGCHLD;
  std::vector<pid_t> all_pids(plan.ghosts);
  for (const auto& [pid, p] : img.processes) all_pids.push_back(pid);
  if (janitor) {
    std::vector<pid_t> tasks(all_pids);
    for (const auto& [pid, p] : img.processes)
      for (const image::TaskCore& t : p.core.threads()) tasks.push_back(t.tid());
    CRYO_RETURN_IF_ERROR(janitor->WillMakeTasks(tasks));
  }
  CRYO_ASSIGN_OR_RETURN(pid_t child, CloneWithPid(root, root_exit_signal));
  if (child == 0) RunHelper(ctx);
  RestoreFaultAwait("helper-cloned");
  RestoreFaultPoint("root-cloned");
  TreeGuard guard(child, all_pids);
  ::munmap(reinterpret_cast<void*>(window.start), window.len);  // the helpers have it
  pool.CloseAll();
  sync_r.reset();
  status_w.reset();
  go_r.reset();
  ghost_r.reset();

  // Seize the root helper (its descendants follow through TRACEFORK/CLONE) and
  // tell it where glibc registered its rseq area. EXITKILL: if cryo dies
  // before the release, nothing half-restored survives it.
  // SUSPEND_SECCOMP (inherited by every task the helpers create): the
  // filters the blob installs act only from the release on (tree/seccomp.h).
  long options = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_EXITKILL;
  if (std::find(features.begin(), features.end(), "seccomp") != features.end()) options |= PTRACE_O_SUSPEND_SECCOMP;
  if (ptrace(PTRACE_SEIZE, child, nullptr, reinterpret_cast<void*>(options)) != 0)
    return Status::FromErrno("PTRACE_SEIZE restored pid " + std::to_string(child));
  if (ptrace(PTRACE_INTERRUPT, child, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_INTERRUPT");
  CRYO_ASSIGN_OR_RETURN(StopInfo si, WaitStop(child));
  if (si.exited) return Status::Error("restore helper died at start");
  struct {
    uint64_t addr;
    uint32_t len, sig, flags, pad;
  } rc{};
  if (ptrace(static_cast<__ptrace_request>(0x420f /*PTRACE_GET_RSEQ_CONFIGURATION*/), child, sizeof(rc), &rc) < 0)
    return Status::FromErrno("PTRACE_GET_RSEQ_CONFIGURATION");
  if (ptrace(PTRACE_CONT, child, nullptr, nullptr) != 0) return Status::FromErrno("PTRACE_CONT");
  RseqRegistration reg{rc.addr, rc.len, rc.sig};
  if (::write(sync_w.get(), &reg, sizeof(reg)) != sizeof(reg)) return Status::FromErrno("starting the restore helper");
  sync_w.reset();
  RestoreFaultPoint("seized");

  // Every thread of every live process stops itself with SIGSTOP at the end of
  // the blob; zombies exit. Other tasks (the helpers' fill threads) run and are
  // reaped before the release: a traced thread that exits stays a zombie until
  // its tracer waits for it, and its thread group leader cannot be waited for
  // before that (wait(2)), which would hang an attached cryo.
  std::set<pid_t> expected, stopped, zombies, zombies_done, leaders;
  std::set<pid_t> helper_threads;
  for (const auto& [pid, p] : img.processes) {
    if (p.core.zombie()) {
      zombies.insert(pid);
      continue;
    }
    leaders.insert(pid);
    for (const image::TaskCore& t : p.core.threads()) expected.insert(t.tid());
  }
  const int nprocs = static_cast<int>(img.processes.size());
  StatusReader status_reader(status_r.get());
  bool go_sent = false, ghosts_sent = plan.ghosts.empty();
  const double deadline = Now() + 120;
  // --lazy: a blob registers its lazy VMAs and may fault on them at once (its
  // rseq registration makes the kernel write into the TLS): cryo serves them
  // from the moment it knows the process's userfaultfd.
  auto adopt_uffds = [&]() -> Status {
    if (!lazy) return Status::Ok();
    CRYO_RETURN_IF_ERROR(lazy->status());
    for (auto& [pid, rep] : status_reader.reports)
      if (rep.uffd >= 0 && !rep.adopted) {
        CRYO_RETURN_IF_ERROR(lazy->Adopt(pid, rep.uffd));
        rep.adopted = true;
      }
    return Status::Ok();
  };
  while (stopped.size() < expected.size() || zombies_done.size() < zombies.size() || !helper_threads.empty()) {
    status_reader.Poll();
    if (!status_reader.error.empty()) return Status::Error(status_reader.error);
    CRYO_RETURN_IF_ERROR(adopt_uffds());
    if (!go_sent && status_reader.created == nprocs) {
      RestoreFaultPoint("tree-created");
      // The whole tree exists: sessions and groups can be joined now.
      std::string bytes(static_cast<size_t>(nprocs), 'g');
      if (::write(go_w.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
        return Status::FromErrno("releasing the restore helpers");
      go_sent = true;
      LOG_DEBUG("tree of %d processes created in %.3f ms", nprocs, (Now() - t0) * 1e3);
    }
    if (!ghosts_sent && status_reader.joined == nprocs) {
      // Every process is in its session and group: the temporary leaders go.
      std::string bytes(plan.ghosts.size(), 'x');
      if (::write(ghost_w.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
        return Status::FromErrno("releasing the temporary session/group leaders");
      ghosts_sent = true;
    }
    int st = 0;
    const pid_t tid = ::waitpid(-1, &st, __WALL | WNOHANG);
    if (tid < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("waitpid for the restored tasks");
    }
    if (tid == 0) {
      if (Now() > deadline) return Status::Errno(ETIMEDOUT, "waiting for the tree of pid " + std::to_string(root) + " to be rebuilt");
      child_signals.Wait(status_r.get(), 10);
      continue;
    }
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      if (zombies.count(tid)) {
        zombies_done.insert(tid);
        continue;
      }
      if (!leaders.count(tid)) {  // a helper thread went away
        helper_threads.erase(tid);
        continue;
      }
      // A process died before its release: find out why.
      for (int i = 0; i < 100 && status_reader.Poll() && status_reader.error.empty(); ++i) ::usleep(1000);
      return Status::Error(!status_reader.error.empty() ? status_reader.error
                                                        : "restore helper of pid " + std::to_string(tid) +
                                                              " died (wait status " + std::to_string(st) + ")");
    }
    const int sig = WSTOPSIG(st), event = st >> 16;
    if (event == 0 && sig == SIGSTOP && expected.count(tid)) {
      stopped.insert(tid);
      continue;
    }
    if (!expected.count(tid) && !leaders.count(tid) && !zombies.count(tid)) helper_threads.insert(tid);
    // Fork/clone events, the first stop of a new task, other signals: go on.
    const long inject = (event == 0 && sig != SIGSTOP && sig != (SIGTRAP | 0x80)) ? sig : 0;
    if (ptrace(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(inject)) != 0 && errno != ESRCH)
      return Status::FromErrno("PTRACE_CONT task " + std::to_string(tid));
  }
  status_reader.Poll();
  if (!status_reader.error.empty()) return Status::Error(status_reader.error);
  CRYO_RETURN_IF_ERROR(adopt_uffds());
  LOG_DEBUG("pid %d: %zu processes, %zu threads rebuilt in %.3f ms", root, leaders.size(), stopped.size(),
            (Now() - t0) * 1e3);

  for (pid_t pid : leaders) {
    CRYO_RETURN_IF_ERROR(Finalize(img.processes.at(pid), status_reader.reports[pid], syscall_off));
    // Now that every thread exists: who gets SIGIO for each description.
    CRYO_RETURN_IF_ERROR(RestoreFdOwners(pid, img.processes.at(pid).fds));
  }
  RestoreFaultPoint("finalized");
  // Every holder has its shared memory now: seals, SysV removal, POSIX names.
  std::vector<std::string> shm_warnings;
  CRYO_RETURN_IF_ERROR(pool.FinishSharedMemory(&shm_warnings).Prefixed("shared memory"));
  for (const std::string& w : shm_warnings) LOG_WARN("%s", w.c_str());
  CRYO_RETURN_IF_ERROR(ns::FinishFreshNamespaces(img.inventory, img.namespaces));
  RestoreFaultPoint("shm-finished");
  if (!opts.pidfile.empty()) {
    std::ofstream pf(opts.pidfile, std::ios::trunc);
    pf << root << "\n";
    if (!pf) return Status::Error("cannot write pidfile " + opts.pidfile);
  }
  // Queued while they are stopped: handled as soon as they run.
  pool.ttys().NotifyWindowChange();
  // Processes that were stopped stop again as they leave their ptrace stop.
  std::vector<std::string> stop_warnings;
  for (pid_t pid : leaders) CRYO_RETURN_IF_ERROR(StopAtRelease(img.processes.at(pid).core, &stop_warnings));
  for (const std::string& w : stop_warnings) LOG_WARN("%s", w.c_str());
  // TCP connections out of repair mode, unsent bytes sent, the lock removed:
  // the tree is stopped until the release below.
  CRYO_RETURN_IF_ERROR(RunBeforeResume(opts.before_resume, root));
  CRYO_RETURN_IF_ERROR(tcp_guard.Finish());
  // Post-copy migration: the source commits (its original never resumes)
  // before the tree runs here; a failure until then leaves it the original.
  RestoreFaultPoint("post-copy-commit");
  if (opts.remote) CRYO_RETURN_IF_ERROR(opts.remote->Commit().Prefixed("post-copy"));
  // What the restore made stays from here on (a kill between this and the
  // release leaves it, never a running tree without it). The restore is
  // committed: signals that would end cryo are ignored until it has reported
  // success (a Ctrl-C now would release the tree and still exit as if it had
  // failed); without --detach cryo forwards them to the tree once it waits as
  // its parent.
  IgnoreTerminatingSignals();
  if (janitor) janitor->Done(root);
  RestoreFaultPoint("janitor-done");
  // Release every thread of every process together.
  // A thread released first may end its whole process at once (exit_group:
  // a program whose restored connection was reset, --tcp-close), killing
  // the threads not yet detached: ESRCH then is that death, not a failure.
  for (pid_t tid : expected)
    if (ptrace(PTRACE_DETACH, tid, nullptr, nullptr) != 0 && errno != ESRCH)
      return Status::FromErrno("PTRACE_DETACH task " + std::to_string(tid));
  guard.Release();
  veth_undo.keep = true;
  if (lazy) {
    lazy->Released();
    if (lazy_out) *lazy_out = std::move(lazy);
  }
  if (janitor) janitor->Released();
  cgroups->Keep();
  if (snapshot) snapshot->Keep();
  LOG_INFO("pid %d restored from %s in %.1f ms (%zu %s)", root, opts.images_dir.c_str(), (Now() - t0) * 1e3,
           img.processes.size(), img.processes.size() == 1 ? "process" : "processes");
  return root;
}

}  // namespace cryo
