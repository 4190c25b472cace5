#include "dump/dump.h"
#include "dump/postcopy_pages.h"
#include "dump/classify.h"
#include "dump/process_pages.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <algorithm>
#include <thread>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/interrupt.h"
#include "base/privileges.h"
#include "base/log.h"
#include "base/no_sync_env.h"
#include "base/size_format.h"
#include "cgroup/cgroup_dump.h"
#include "files/fd_table.h"
#include "image/image_dir.h"
#include "inject/remote_syscall.h"
#include "audit/remote_rules.h"
#include "dump/inspect.h"
#include "dump/precopy_live.h"
#include "dump/prefetch.h"
#include "dump/shared_objects_check.h"
#include "dump/tcp_hold.h"
#include "mem/cow_copy.h"
#include "mem/dirty_tracker.h"
#include "mem/incremental.h"
#include "mem/mm_attrs.h"
#include "mem/page_dump.h"
#include "mem/shm_dump.h"
#include "files/file_facts.h"
#include "files/unlinked_dump.h"
#include "files/snapshot_dump.h"
#include "ns/tree_mntns.h"
#include "mem/vma_dump.h"
#include "ns/namespaces.h"
#include "ns/netns.h"
#include "ns/ns_thread.h"
#include "ns/tree_pidns.h"
#include "proc/path_check.h"
#include "proc/path_check.h"
#include "proc/proc.h"
#include "seize/ptrace_util.h"
#include "seize/seize.h"
#include "tree/job_control.h"
#include "tree/proc_attrs.h"
#include "tree/task_dump.h"
#include "tree/tree_seize.h"
#include "files/file_locks.h"
#include "files/file_sharing.h"
#include "files/pipe_table.h"
#include "net/tcp_rewind.h"
#include "net/tcp_session.h"
#include "files/shared_tables.h"
#include "files/tty_table.h"
#include "tree/restore_plan.h"
#include "tree/seccomp.h"

namespace cryo {

namespace {

image::Inventory MakeInventory(const DumpOptions& opts, const image::ProcessCore& core,
                               const std::set<std::string>& features) {
  image::Inventory inv;
  inv.set_format_version(image::kFormatVersion);
  inv.set_cryo_version(CRYO_VERSION);
  struct utsname u;
  if (uname(&u) == 0) {
    inv.set_kernel_release(u.release);
    inv.set_hostname(u.nodename);
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  inv.set_created_unix_ns(static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec);
  inv.add_features("x86_64");
  inv.add_features("xsave");
  if (core.threads_size() > 1) inv.add_features("threads");
  for (const std::string& f : features) inv.add_features(f);
  const std::string& xs = core.threads(0).regs().xsave();
  inv.set_xsave_size(static_cast<uint32_t>(xs.size()));
  if (xs.size() >= 512) {
    uint64_t xfeatures;
    std::memcpy(&xfeatures, xs.data() + 464, sizeof(xfeatures));  // XCR0 (USER_XSTATE_XCR0_WORD in ptrace's layout)
    inv.set_xsave_features(xfeatures);
  }
  inv.set_root_pid(opts.pid);
  inv.add_pids(opts.pid);
  inv.set_dump_mode(opts.leave_running ? "leave-running" : "kill");
  return inv;
}


bool SharesDescriptions(const std::vector<DumpedProcess>& procs) {
  std::set<uint64_t> seen;
  for (const DumpedProcess& p : procs)
    for (const image::Fd& f : p.fds.fds())
      if (!seen.insert(f.file_id()).second) return true;
  return false;
}

// Where a dump got to: what its failure path must undo, and its phases for
// the log (seconds).
struct DumpProgress {
  bool resumed = false;   // leave-running: the tree runs again (nothing to undo in it)
  bool complete = false;  // the image is complete: kill or detach whatever comes
  double frozen = 0;      // seize to kill or resume
  double pages = 0, records = 0, sync = 0, end = 0;
  double pages_after_resume = 0;  // of `pages`: copied copy-on-write once the tree ran again
  bool cow_memory_changed = false;  // DumpStats::cow_memory_changed
};

std::string FormatMs(double seconds) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.1f ms", seconds * 1e3);
  return buf;
}


// Once the image is committed to (post-copy GO, or a kill under way): the
// tree must never run again, also if cryo dies (SIGKILL included), which
// would detach it and let it run; with PTRACE_O_EXITKILL the kernel kills it
// instead (ptrace(2)).
Status DiesWithCryo(SeizedTree& tree) {
  for (const auto& sp : tree.processes())
    for (const SeizedTask& t : sp->threads())
      if (ptrace(PTRACE_SETOPTIONS, t.tid, nullptr, reinterpret_cast<void*>(kSeizeOptions | PTRACE_O_EXITKILL)) != 0)
        return Status::FromErrno("PTRACE_SETOPTIONS (PTRACE_O_EXITKILL) of task " + std::to_string(t.tid));
  return Status::Ok();
}

}  // namespace

// Everything from the first file on: pages, shared objects, records, then
// kill or detach. An interrupt is noticed between steps (CheckInterrupt)
// until the image is complete.
Status WriteImage(const DumpOptions& opts, Classified& c, image::ImageWriter* writer, DumpProgress* progress) {
  const TableSharing& sharing = c.sharing;
  SeizedTree& tree = c.tree;
  std::vector<DumpedProcess>& procs = c.procs;
  std::set<std::string>& features = c.features;
  PhaseTimes& times = c.times;
  std::vector<ProcessFds> tables;
  std::set<pid_t> pids;
  const double tc = Now();
  auto lap = [](double* phase, double* since) {
    const double now = Now();
    *phase = now - *since;
    *since = now;
  };
  // Parents come before their children (SeizedTree): a child's pages still
  // shared with its parent are found against the parent's VMAs.
  std::vector<pid_t> parents;
  for (const auto& sp : tree.processes()) parents.push_back(tree.ParentOf(sp->pid()));
  for (ProcessFacts& f : c.inspection.facts) {
    // Leave-running images may be parents: their runs are cut as a child's are.
    if (opts.leave_running || c.parent) f.run_block = kIncrementalRunBytes;
    f.leave_unplanned = opts.post_copy && std::find(parents.begin(), parents.end(), f.pid) == parents.end();
    f.compare_unchanged = !opts.live_copy;
    if (c.parent) {
      auto it = c.parent->processes.find(f.pid);
      if (it != c.parent->processes.end()) f.parent_pages = &it->second;
    }
  }
  if (c.tracking) {
    // Before any page is read: what was written since the parent, protected
    // again; in leave-running mode every private anonymous VMA is tracked
    // for the next dump (mem/dirty_tracker.h).
    const double tt = Now();
    std::vector<TrackedProcess> tracked;
    for (size_t i = 0; i < c.inspection.facts.size(); ++i) {
      const ProcessFacts& f = c.inspection.facts[i];
      tracked.push_back({tree.processes()[i].get(), &f.vmas, f.status.sig_ign, f.status.sig_cgt, f.stat.starttime, &f.mm});
    }
    CRYO_RETURN_IF_ERROR(c.tracking->Prepare(tracked, c.parent ? c.parent->link.image_id() : "", opts.leave_running,
                                             &c.dirty)
                             .Prefixed("dirty tracking"));
    for (ProcessFacts& f : c.inspection.facts)
      if (auto it = c.dirty.find(f.pid); it != c.dirty.end()) f.dirty = &it->second;
    LOG_DEBUG("dirty tracking: %zu processes known since the parent image, protected in %.1f ms", c.dirty.size(),
              (Now() - tt) * 1e3);
  }
  // Leave-running: a userfaultfd in each big process, for a copy-on-write
  // end of the freeze (mem/cow_copy.h).
  std::map<pid_t, std::unique_ptr<CowCopy>> cow;
  if (CowWanted(opts, c)) OpenCowCopies(c, &cow);
  std::vector<DeferredPages> deferred;
  // (post-copy: nothing read ahead; what the target fetches stays unread;
  // a pre-copy round: everything is read once the tree runs again)
  Prefetcher prefetch(std::move(c.inspection.facts), parents, opts.post_copy || opts.live_copy ? 0 : kBufferedPages,
                      2);
  IncrementalCounts incremental;
  for (size_t i = 0; i < procs.size(); ++i) {
    SeizedProcess& sp = *tree.processes()[i];
    const std::string who = "pid " + std::to_string(sp.pid());
    CRYO_RETURN_IF_ERROR(CheckInterrupt());
    auto facts = prefetch.Take();
    if (!facts.ok()) return facts.status().Prefixed(who);
    incremental.compared_pages += facts->incremental.compared_pages;
    incremental.parent_pages += facts->incremental.parent_pages;
    incremental.tracked_pages += facts->incremental.tracked_pages;
    std::unique_ptr<CowCopy> cow_copy;
    if (auto it = cow.find(sp.pid()); it != cow.end()) cow_copy = std::move(it->second);
    CRYO_RETURN_IF_ERROR(DumpProcessPages(sp, *facts, *writer, opts, &procs[i], &features, &times,
                                          std::move(cow_copy), &deferred)
                             .Prefixed(who));
    tables.push_back({sp.pid(), &procs[i].fds});
    pids.insert(sp.pid());
  }
  LOG_DEBUG("%zu processes' pages written in %.1f ms; in all: /proc and VMAs %.1f ms, fds %.1f ms, remote setup %.1f ms, "
            "task state %.1f ms, pages %.1f ms (planned and small ones read ahead, written)",
            procs.size(), (Now() - tc) * 1e3, times.proc * 1e3, times.fds * 1e3, times.remote * 1e3,
            times.task * 1e3, times.pages * 1e3);
  double tphase = tc;
  lap(&progress->pages, &tphase);
  for (const ZombieInfo& z : tree.zombies()) pids.insert(z.pid);
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  // Processes sharing an fd table or fs_struct with their parent.
  std::map<pid_t, const image::ProcessCore*> cores;
  std::map<pid_t, pid_t> table_of;  // the process whose fd table each one uses
  for (DumpedProcess& p : procs) {
    const pid_t pp = p.core.pid();
    p.core.set_shares_files_with_parent(sharing.files_with_parent.count(pp) > 0);
    p.core.set_shares_fs_with_parent(sharing.fs_with_parent.count(pp) > 0);
    if (p.core.shares_files_with_parent()) features.insert("shared-fd-table");
    if (p.core.shares_fs_with_parent()) features.insert("shared-fs");
    cores[pp] = &p.core;
  }
  for (const auto& [p, core] : cores) {
    pid_t t = p;
    while (cores.at(t)->shares_files_with_parent()) t = cores.at(t)->ppid();
    table_of[p] = t;
  }
  // The fds in flight in UNIX socket queues, which cryo holds: their open
  // files are shared with the tree's and their pipes and memfds stored with
  // the tree's (net/unix_in_flight.h). Not in `tables` from here on.
  InFlightFiles& in_flight = c.inspection.in_flight;
  std::vector<ProcessFds> with_in_flight = tables;
  image::Mm no_mm;
  const std::vector<ShmMapping> no_maps;
  if (!in_flight.empty()) with_in_flight.push_back({in_flight.pid(), in_flight.table()});
  double ts = Now();
  CRYO_RETURN_IF_ERROR(AssignFileIds(with_in_flight).Prefixed("files"));
  CRYO_RETURN_IF_ERROR(CheckPidfdSharing(tables, table_of).Prefixed("files"));
  if (AssignFileLocks(tables, table_of)) features.insert("file-locks");
  LOG_DEBUG("shared file descriptions found in %.1f ms", (Now() - ts) * 1e3);
  ts = Now();
  image::PipeTable pipes;
  CRYO_RETURN_IF_ERROR(DumpPipes(with_in_flight, pids, &pipes).Prefixed("pipes"));
  LOG_DEBUG("%d pipes dumped in %.1f ms", pipes.pipes_size(), (Now() - ts) * 1e3);
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  ts = Now();
  image::ShmTable shm;
  std::vector<ShmHolders> shm_holders;
  for (DumpedProcess& p : procs) shm_holders.push_back({p.core.pid(), &p.mm, &p.fds, &p.shm_maps});
  if (!in_flight.empty()) shm_holders.push_back({in_flight.pid(), &no_mm, in_flight.table(), &no_maps});
  CRYO_RETURN_IF_ERROR(DumpShmObjects(shm_holders, pids, writer, &shm, &features).Prefixed("shared memory"));
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  image::UnlinkedFileTable unlinked;
  std::vector<UnlinkedHolders> unlinked_holders;
  for (DumpedProcess& p : procs) unlinked_holders.push_back({p.core.pid(), &p.core, &p.mm, &p.fds, &p.unlinked_maps});
  CRYO_RETURN_IF_ERROR(DumpUnlinkedFiles(unlinked_holders, pids, writer, &unlinked, &features).Prefixed("unlinked files"));
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  // File snapshots, read while the tree is still frozen.
  if (opts.snapshot_open_files) {
    std::vector<const image::FdTable*> fd_tables;
    for (const DumpedProcess& p : procs) fd_tables.push_back(&p.fds);
    CRYO_RETURN_IF_ERROR(AddOpenFiles(fd_tables, &c.snapshot));
  }
  image::SnapshotTable snapshot;
  CRYO_RETURN_IF_ERROR(DumpSnapshot(c.snapshot, c.parent ? &c.parent->snapshot : nullptr, writer, &snapshot, &features));
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  // What a restore checks has not changed: cwd, root, executable, and the
  // content of every executable mapping's file (file_facts.h).
  ContentHasher hasher;
  for (DumpedProcess& p : procs)
    CRYO_RETURN_IF_ERROR(RecordFileFacts(p.core.pid(), &p.core, &p.mm, &hasher).Prefixed("pid " + std::to_string(p.core.pid())));
  LOG_DEBUG("%" PRIu64 " executable files (%s) hashed in %.1f ms", hasher.files(), FormatSize(hasher.bytes()).c_str(),
            hasher.seconds() * 1e3);
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  const image::TtyTable& ttys = c.ttys;
  LOG_DEBUG("%d shared memory objects and %d terminals dumped in %.1f ms", shm.objects_size(), ttys.ttys_size(),
            (Now() - ts) * 1e3);
  ts = Now();
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  // Nothing more is read from the tree (what is left to write is in memory):
  // in leave-running mode it runs on from here, and the image is written out
  // and synced after. The last point where an interrupt undoes the dump with
  // the tree still in cryo's hands.
  if (opts.leave_running) {
    // The memory left to copy write-protected (else copied now).
    CRYO_RETURN_IF_ERROR(ProtectDeferred(writer, &deferred));
    const double td = Now();
    // Its connections out of repair mode and unlocked first.
    CRYO_RETURN_IF_ERROR(c.tcp.Release());
    CRYO_RETURN_IF_ERROR(tree.DetachAll());
    progress->resumed = true;
    progress->end = Now() - td;
    progress->frozen = Now() - c.seize_start;
    LOG_DEBUG("tree resumed after %.1f ms frozen; the image is written out and synced now", progress->frozen * 1e3);
    const double tcow = Now();
    CRYO_RETURN_IF_ERROR(CopyDeferred(writer, &deferred, &progress->cow_memory_changed));
    progress->pages_after_resume = Now() - tcow;
    progress->pages += progress->pages_after_resume;
    tphase += progress->pages_after_resume;  // not billed to "other records"
    if (opts.live_copy) {
      // Read while the tree ran: a parent for the next round only.
      features.insert("live-copied-pages");
      LiveCopyTestHold();
    }
  }

  image::Inventory inv = MakeInventory(opts, procs[0].core, features);
  // Kill mode: the connections stay locked until the restore.
  if (!opts.leave_running) {
    inv.set_net_lock(c.tcp.lock_name());
  } else {
    // The peers outside the tree go on with the original.
    TreeFdTables fd_tables;
    for (const DumpedProcess& p : procs) fd_tables.push_back({p.core.pid(), &p.fds});
    WarnPeersNotRewound(fd_tables);
  }
  inv.set_boot_id(c.boot_id);
  if (writer->compression().on()) {  // --compress: an older cryo refuses the image by this name
    inv.add_features("compressed-pages");
    inv.set_compression(writer->compression().ToString());
  }
  if (c.parent) {
    *inv.mutable_parent() = c.parent->link;
    inv.add_features("incremental");
    LOG_INFO("incremental: %" PRIu64 " pages (%s) taken from the parent image %s, %" PRIu64
             " known unchanged by dirty tracking, %" PRIu64 " compared",
             incremental.parent_pages, FormatSize(incremental.parent_pages * image::kPageSize).c_str(),
             opts.parent_dir.empty() ? c.parent->link.dir().c_str() : opts.parent_dir.c_str(),
             incremental.tracked_pages, incremental.compared_pages);
  }
  if (procs.size() + tree.zombies().size() > 1) inv.add_features("tree");
  if (!tree.zombies().empty()) inv.add_features("zombies");
  if (SharesDescriptions(procs)) inv.add_features("shared-files");
  std::map<uint64_t, int> shmem_holders;
  bool private_rw = false;
  for (const DumpedProcess& p : procs)
    for (const image::Vma& v : p.mm.vmas()) {
      if (v.shmem_id()) ++shmem_holders[v.shmem_id()];
      private_rw |= v.kind() == image::VMA_FILE_PRIVATE && v.file_opened_rw();
    }
  if (private_rw) inv.add_features("file-open-mode");
  for (const auto& [id, n] : shmem_holders)
    if (n > 1) {
      inv.add_features("shmem");
      break;
    }
  if (!in_flight.empty()) {
    std::vector<image::FdTable*> fd_tables;
    for (DumpedProcess& p : procs) fd_tables.push_back(&p.fds);
    in_flight.Complete(fd_tables);
  }
  inv.clear_pids();
  for (size_t i = 0; i < procs.size(); ++i) {
    const pid_t p = procs[i].core.pid();
    inv.add_pids(p);
    if (procs[i].core.threads_size() > 1 && std::find(inv.features().begin(), inv.features().end(), "threads") == inv.features().end())
      inv.add_features("threads");
    writer->AsyncWriteRecord(image::CoreName(p), image::FileKind::kProcessCore, procs[i].core);
    writer->AsyncWriteRecord(image::MmName(p), image::FileKind::kMm, procs[i].mm);
    writer->AsyncWriteRecord(image::FdsName(p), image::FileKind::kFdTable, procs[i].fds);
  }
  std::vector<image::ProcessCore> zombie_cores;
  for (const ZombieInfo& z : tree.zombies()) zombie_cores.push_back(ZombieCore(z));
  for (const image::ProcessCore& z : zombie_cores) {
    inv.add_pids(z.pid());
    writer->AsyncWriteRecord(image::CoreName(z.pid()), image::FileKind::kProcessCore, z);
  }
  if (pipes.pipes_size()) writer->AsyncWriteRecord(image::PipesName(), image::FileKind::kPipes, pipes);
  if (shm.objects_size()) writer->AsyncWriteRecord(image::ShmName(), image::FileKind::kShm, shm);
  if (std::find(inv.features().begin(), inv.features().end(), "unlinked-files") != inv.features().end())
    writer->AsyncWriteRecord(image::FilesName(), image::FileKind::kFiles, unlinked);
  if (ttys.ttys_size()) writer->AsyncWriteRecord(image::TtysName(), image::FileKind::kTtys, ttys);
  if (features.count("snapshot-files"))
    writer->AsyncWriteRecord(image::SnapshotName(), image::FileKind::kSnapshot, snapshot);
  if (features.count("uts-ns") || features.count("ipc-ns") || features.count("net-ns") || features.count("time-ns") ||
      features.count("mount-ns") || features.count("user-ns") || features.count("cgroup-ns") ||
      features.count("cgroup-settings"))
    writer->AsyncWriteRecord(image::NamespacesName(), image::FileKind::kNamespaces, c.namespaces);
  CRYO_RETURN_IF_ERROR(writer->Flush());
  lap(&progress->records, &tphase);
  // The inventory goes last, once every other file is durable: an image
  // without one is incomplete. The marker goes once the inventory is durable
  // too (with --no-sync nothing is synced: NoSyncEnv).
  FaultPoint();  // (the tests interrupt the leave-running sync here)
  CRYO_RETURN_IF_ERROR(writer->SyncFiles());
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  CRYO_RETURN_IF_ERROR(writer->WriteInventory(inv));
  CRYO_RETURN_IF_ERROR(writer->SyncFiles());
  CRYO_RETURN_IF_ERROR(writer->MarkComplete());
  if (opts.as_parent) {
    // (pre-copy) This image, as the next dump's parent.
    ParentForDump& next = *opts.as_parent;
    next = ParentForDump();
    next.link.set_image_id(writer->image_id());
    next.same_boot = !c.boot_id.empty();
    next.snapshot = snapshot;
    for (const DumpedProcess& p : procs)
      if (next.same_boot) AddParentProcess(p.core, p.mm, &next);
    for (const DeferredPages& d : deferred)
      if (auto it = next.processes.find(d.pid); it != next.processes.end()) it->second.unread = d.unread;
  }
  if (c.tracking && opts.leave_running) {
    // The protection is this image's now (until then a failure leaves none).
    Status t = c.tracking->Commit(writer->image_id());
    if (!t.ok()) LOG_WARN("dirty tracking: %s (the next --parent dump compares every page)", t.ToString().c_str());
  }
  lap(&progress->sync, &tphase);
  LOG_DEBUG("records written and synced in %.1f ms", (Now() - ts) * 1e3);

  // The last point where an interrupt undoes the dump; from here on the
  // image is complete and the kill is finished whatever comes. (In
  // leave-running mode the tree already runs: an interrupt until here removes
  // the image and leaves the tree alone.)
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  Status post_copy;
  if (opts.post_copy) {
    // The target runs the tree and fetches its pages from here; the tree
    // stays frozen meanwhile. Until the target commits, a failure leaves
    // the original as it was (it resumes); after, it never runs again.
    std::map<pid_t, std::vector<std::pair<uint64_t, uint64_t>>> runs;
    for (const DumpedProcess& p : procs)
      for (const image::PageRun& r : p.mm.runs())
        if (r.remote()) runs[p.core.pid()].emplace_back(r.vaddr(), r.npages() * image::kPageSize);
    for (const DumpedProcess& p : procs)
      for (const image::Vma& v : p.mm.vmas())
        if (v.remote_unplanned()) runs[p.core.pid()].emplace_back(v.start(), v.end() - v.start());
    bool committed = false;
    // Once the tree runs on the target the original must never run again,
    // also if cryo dies (SIGKILL included): the kernel would detach it and
    // let it run; with PTRACE_O_EXITKILL it kills it instead (ptrace(2)).
    auto commit = [&tree]() { return DiesWithCryo(tree); };
    post_copy = opts.post_copy(runs, commit, &committed);
    if (!post_copy.ok() && !committed) return post_copy.Prefixed("post-copy, before the tree ran on the target");
    if (!post_copy.ok()) post_copy = post_copy.Prefixed("post-copy, once the tree ran on the target");
  }
  progress->complete = true;
  ns::ReportImageComplete();
  if (!opts.leave_running) {
    progress->frozen = Now() - c.seize_start;
    // The TCP connections: the guardian told first; then SIGKILL, and only
    // then back in repair mode (cryo's duplicates keep the sockets open): a
    // killed task never runs again, so none meets a socket in repair mode,
    // and closed in repair mode they send nothing.
    CRYO_RETURN_IF_ERROR(c.tcp.PrepareKill(c.scope.pids));
    if (!inv.net_lock().empty() && features.count("net-ns")) {
      // Its namespace dies with it: no peer's packet may reach it meanwhile.
      // From here the tree must die even if cryo is killed now (a tree let
      // go with its links down would be harmed): PTRACE_O_EXITKILL first.
      Status down = DiesWithCryo(tree);
      if (down.ok()) down = ns::TakeTreeLinksDown(tree.processes().front()->pid());
      if (!down.ok()) LOG_WARN("%s", down.ToString().c_str());
    }
    for (const auto& sp : tree.processes()) ::kill(sp->pid(), SIGKILL);
    CRYO_RETURN_IF_ERROR(c.tcp.RepairBeforeClose());
    CRYO_RETURN_IF_ERROR(tree.KillAll());
    // The dead tree's sockets close in repair mode (no reset); the lock is
    // the image's until the restore.
    CRYO_RETURN_IF_ERROR(c.tcp.Keep());
    // A tree of its own network namespace: its lock went with it (tcp_rewind.h).
    if (!inv.net_lock().empty() && features.count("net-ns")) {
      TreeFdTables fd_tables;
      for (const DumpedProcess& p : procs) fd_tables.push_back({p.core.pid(), &p.fds});
      if (Status t = KeepNetnsLockToken(inv.net_lock(), fd_tables, ns::HomeNetFd()); !t.ok())
        LOG_WARN("%s: the image's connections to peers outside the tree will be restored only with --tcp-close",
                 t.ToString().c_str());
    }
    if (!inv.net_lock().empty())
      LOG_INFO("TCP connections stay locked (nftables table inet %s) until the restore, or `cryo unlock %s`",
               inv.net_lock().c_str(), opts.images_dir.c_str());
    lap(&progress->end, &tphase);
    LOG_DEBUG("tree killed in %.1f ms", progress->end * 1e3);
  }
  return post_copy;
}

// The tree's memory tracker, before the tree is seized: its registrations are
// cryo's to the audit ("uw"); --track-mem starts one if none runs.
Status FindMemoryTracker(const DumpOptions& opts, Classified* c) {
  if (opts.track_mem && !opts.leave_running)
    return Status::Error("--track-mem needs --leave-running: the tracking is for later dumps of a tree that runs on");
  auto st = proc::ReadStat(opts.pid);
  if (!st.ok()) return Status::Ok();  // the seize names the problem
  auto found = DirtyTracking::Find(opts.pid, st->starttime);
  if (!found.ok()) {
    LOG_WARN("the memory tracker of pid %d: %s (pages are compared)", opts.pid, found.status().ToString().c_str());
    return opts.track_mem ? found.status() : Status::Ok();
  }
  c->tracking = std::move(*found);
  if (!c->tracking && opts.track_mem) {
    CRYO_ASSIGN_OR_RETURN(c->tracking, DirtyTracking::Start(opts.pid, st->starttime));
  }
  return Status::Ok();
}

Status Dump(const DumpOptions& opts, DumpStats* stats) {
  const double t0 = Now();
  CRYO_RETURN_IF_ERROR(CheckPrivileges());
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  Classified c;
  c.scope.ext_unix_sk = opts.ext_unix_sk;
  c.scope.ext_tty = opts.ext_tty;
  c.scope.udp_queue_unverified = opts.udp_queue_unverified;
  if (auto id = ReadFileToString("/proc/sys/kernel/random/boot_id"); id.ok()) {
    c.boot_id = *id;
    while (!c.boot_id.empty() && c.boot_id.back() == '\n') c.boot_id.pop_back();
  }
  if (opts.parent) {
    c.parent = std::make_unique<ParentForDump>(*opts.parent);
  } else if (!opts.parent_dir.empty()) {
    // A parent that cannot be used is refused before the tree is touched.
    CRYO_ASSIGN_OR_RETURN(ParentForDump parent,
                          LoadParentForDump(opts.parent_dir, opts.images_dir, opts.pid, c.boot_id));
    c.parent = std::make_unique<ParentForDump>(std::move(parent));
  }
  // A tree in a mount namespace of its own: cryo dumps from inside it, its
  // tmpfs mounts' content carried like --snapshot-path (ns/tree_mntns.h).
  CRYO_RETURN_IF_ERROR(ns::EnterTreeMountNs(opts.pid, opts.images_dir));
  std::vector<std::string> snapshot_paths = opts.snapshot_paths;
  for (const std::string& root : ns::TreeTmpfsRoots()) snapshot_paths.push_back(root);
  // What --snapshot-path cannot carry is refused before the tree is touched.
  if (!opts.fs_root.empty() && ns::DumpingInTreeMountNs())
    return Status::Error("--fs-root " + opts.fs_root + ": the tree lives in a mount namespace of its own; --fs-root "
                         "of such a tree is not supported yet (carry its directories with --snapshot-path)");
  if (!snapshot_paths.empty() || !opts.fs_root.empty()) {
    CRYO_ASSIGN_OR_RETURN(c.snapshot, PlanSnapshot(snapshot_paths, ns::TreeMountPoints(), opts.fs_root));
  }
  CRYO_RETURN_IF_ERROR(FindMemoryTracker(opts, &c));
  CRYO_RETURN_IF_ERROR(SeizeAndClassify(opts.pid, opts.shell_job, !opts.leave_running, &c));
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  NoSyncEnv no_sync(opts.env);
  CRYO_ASSIGN_OR_RETURN(auto writer, image::ImageWriter::Create(opts.sync ? opts.env : &no_sync, opts.images_dir));
  writer->set_compression(opts.compression, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  DumpProgress progress;
  Status s = writer->MarkIncomplete("cryo " CRYO_VERSION " is dumping pid " + std::to_string(opts.pid) +
                                    " here; if this file stays, the dump did not finish");
  // An inventory left by an earlier dump must not vouch for this one's files.
  if (s.ok()) s = opts.env->RemoveFile(opts.images_dir + "/" + image::InventoryName());
  if (s.ok()) s = WriteImage(opts, c, writer.get(), &progress);
  if (!s.ok() && !progress.complete) {
    // The tree back first (unless it runs already; its connections out of
    // repair mode, unlocked), then its files go.
    if (!progress.resumed) {
      Status d = c.tcp.Release();
      if (!d.ok()) LOG_WARN("TCP connections: %s", d.ToString().c_str());
      d = c.tree.DetachAll();
      if (!d.ok()) LOG_WARN("detaching the tree: %s", d.ToString().c_str());
    }
    Status d = writer->Discard();
    if (!d.ok()) LOG_WARN("removing the partial image: %s", d.ToString().c_str());
  }
  if (!s.ok()) {
    if (stats) stats->cow_memory_changed = progress.cow_memory_changed;
    return s;
  }
  const size_t others = c.procs.size() + c.tree.zombies().size() - 1;
  LOG_INFO("pid %d%s dumped to %s in %.1f ms (%s), frozen %.1f ms: seize %.1f ms, audit and task state %.1f ms, "
           "memory read and written %.1f ms%s, other records %.1f ms, %s %.1f ms, %s %.1f ms",
           opts.pid,
           others ? (" and " + std::to_string(others) + (others == 1 ? " descendant" : " descendants")).c_str() : "",
           opts.images_dir.c_str(), (Now() - t0) * 1e3, opts.leave_running ? "left running" : "killed",
           progress.frozen * 1e3, c.seize_s * 1e3, c.audit_s * 1e3, progress.pages * 1e3,
           progress.pages_after_resume > 0
               ? (" (" + FormatMs(progress.pages_after_resume) + " of it after the resume, " +
                  (opts.live_copy ? "while the tree ran" : "copy-on-write") + ")")
                     .c_str()
               : "",
           progress.records * 1e3,
           opts.sync ? "fsync" : "closed (no sync)", progress.sync * 1e3,
           opts.leave_running ? "resume (before the sync)" : "kill", progress.end * 1e3);
  if (stats) {
    stats->frozen_seconds = progress.frozen;
    stats->copy_seconds = progress.pages_after_resume;
    stats->processes = others + 1;
    stats->net_lock = opts.leave_running ? "" : c.tcp.lock_name();
    for (const DumpedProcess& p : c.procs)
      for (const image::PageRun& r : p.mm.runs()) stats->stored_pages += r.npages();
    for (const auto& [pid, d] : c.dirty)
      for (const auto& [start, end] : d.written) stats->written_pages += (end - start) / image::kPageSize;
  }
  return Status::Ok();
}

}  // namespace cryo
