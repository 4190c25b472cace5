#include "dump/dump.h"

#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "base/clock.h"
#include "base/log.h"
#include "files/fd_table.h"
#include "image/image_dir.h"
#include "inject/remote_syscall.h"
#include "dump/prefetch.h"
#include "mem/page_dump.h"
#include "mem/shm_dump.h"
#include "mem/vma_dump.h"
#include "proc/proc.h"
#include "seize/ptrace_util.h"
#include "seize/seize.h"
#include "tree/task_dump.h"
#include "tree/tree_seize.h"
#include "files/file_sharing.h"
#include "files/pipe_table.h"
#include "files/tty_table.h"

namespace cryo {

namespace {

constexpr size_t kScratchSize = 64 << 10;
// Processes with at most this much page data are read into memory and written
// on the image writer's thread; bigger ones stream through the page ring.
constexpr uint64_t kBufferedPages = 4 << 20;


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


// Where the time of a dump goes, summed over the processes (debug log).
struct PhaseTimes {
  double proc = 0, fds = 0, remote = 0, task = 0, pages = 0;
};

struct DumpedProcess {
  image::ProcessCore core;
  image::Mm mm;
  image::FdTable fds;
  std::vector<ShmMapping> shm_maps;  // VMAs of memfds, /dev/shm files, SysV segments
};

// Collects one seized process from its facts read ahead: task state by
// ptrace and remote system calls, then its page file (written on the image
// writer's thread, but for the pages of a big process, streamed here). Its
// records are written once the whole tree is collected (shared objects and
// terminals add to them).
Status DumpProcess(SeizedProcess& seized, ProcessFacts& facts, image::ImageWriter& writer, const DumpOptions& opts,
                   DumpedProcess* out, std::set<std::string>* features, PhaseTimes* times) {
  const pid_t pid = seized.pid();
  times->proc += facts.proc_s;
  times->fds += facts.fds_s;
  times->pages += facts.pages_s;
  out->mm = std::move(facts.mm);
  out->fds = std::move(facts.fds);
  out->shm_maps = std::move(facts.shm_maps);
  features->insert(facts.features.begin(), facts.features.end());
  double t = Now();
  auto lap = [&t](double* phase) {
    const double now = Now();
    *phase += now - t;
    t = now;
  };

  RemoteSyscaller rs(pid, seized.leader().regs);
  rs.SetDispositions(facts.status.sig_ign, facts.status.sig_cgt);
  CRYO_RETURN_IF_ERROR(rs.Prepare(facts.vmas).Prefixed("preparing remote system calls"));
  CRYO_RETURN_IF_ERROR(rs.MapScratch(kScratchSize));
  lap(&times->remote);
  CRYO_RETURN_IF_ERROR(DumpProcessCore(seized, rs, facts.stat, facts.status, &out->core).Prefixed("task state"));
  if (out->core.posix_timers_size()) features->insert("posix-timers");
  lap(&times->task);

  const uint64_t bytes = out->mm.total_pages() * image::kPageSize;
  ProgressFn progress;
  if (opts.show_progress)
    progress = [pid](uint64_t done, uint64_t total) {
      fprintf(stderr, "\rcryo: pid %d: writing pages %" PRIu64 "/%" PRIu64 " MiB", pid, done >> 20, total >> 20);
      if (done == total) fprintf(stderr, "\n");
    };
  if (facts.pages) {
    // Read ahead; the page file is created and written on the writer thread.
    if (progress && bytes) progress(bytes, bytes);
    image::ImageWriter* w = &writer;
    std::shared_ptr<std::string> data = std::move(facts.pages);
    writer.Async(
        [w, pid, data] {
          CRYO_ASSIGN_OR_RETURN(auto file, w->CreatePageFile(image::PagesName(pid)));
          if (!data->empty()) CRYO_RETURN_IF_ERROR(file->WriteAt(data->data(), data->size(), image::kPageDataOffset));
          return w->FinishPageFile(std::move(file), data->size());
        },
        bytes);
  } else {
    const double tp = Now();
    CRYO_ASSIGN_OR_RETURN(auto pages, writer.CreatePageFile(image::PagesName(pid)));
    CRYO_RETURN_IF_ERROR(DumpPages(pid, facts.pieces, &out->mm, pages.get(), progress).Prefixed("memory"));
    CRYO_RETURN_IF_ERROR(writer.FinishPageFile(std::move(pages), bytes));
    LOG_DEBUG("pid %d: %" PRIu64 " pages written in %.3f ms", pid, out->mm.total_pages(), (Now() - tp) * 1e3);
  }
  lap(&times->pages);
  Status s = rs.Finish();
  lap(&times->remote);
  return s;
}

bool SharesDescriptions(const std::vector<DumpedProcess>& procs) {
  std::set<uint64_t> seen;
  for (const DumpedProcess& p : procs)
    for (const image::Fd& f : p.fds.fds())
      if (!seen.insert(f.file_id()).second) return true;
  return false;
}

}  // namespace

Status Dump(const DumpOptions& opts) {
  const double t0 = Now();
  const pid_t pid = opts.pid;
  CRYO_RETURN_IF_ERROR(CheckDumpable(pid));
  CRYO_ASSIGN_OR_RETURN(auto writer, image::ImageWriter::Create(opts.env, opts.images_dir));
  // An inventory left by an earlier dump must not vouch for this one's files.
  if (::unlink((opts.images_dir + "/" + image::InventoryName()).c_str()) != 0 && errno != ENOENT)
    return Status::FromErrno("cannot remove old " + opts.images_dir + "/" + image::InventoryName());

  CRYO_ASSIGN_OR_RETURN(SeizedTree tree, SeizedTree::Seize(pid));
  LOG_DEBUG("tree of pid %d seized in %.3f ms: %zu processes, %zu zombies", pid, (Now() - t0) * 1e3,
            tree.processes().size(), tree.zombies().size());

  std::set<std::string> features;
  std::vector<DumpedProcess> procs(tree.processes().size());
  std::vector<ProcessFds> tables;
  std::set<pid_t> pids;
  PhaseTimes times;
  const double tc = Now();
  // Parents come before their children (SeizedTree): a child's pages still
  // shared with its parent are found against the parent's VMAs.
  std::vector<pid_t> order, parents;
  for (const auto& sp : tree.processes()) {
    order.push_back(sp->pid());
    parents.push_back(tree.ParentOf(sp->pid()));
  }
  Prefetcher prefetch(order, parents, opts.shell_job, kBufferedPages, 2);
  for (size_t i = 0; i < procs.size(); ++i) {
    SeizedProcess& sp = *tree.processes()[i];
    const std::string who = "pid " + std::to_string(sp.pid());
    auto facts = prefetch.Take();
    if (!facts.ok()) return facts.status().Prefixed(who);
    CRYO_RETURN_IF_ERROR(DumpProcess(sp, *facts, *writer, opts, &procs[i], &features, &times).Prefixed(who));
    tables.push_back({sp.pid(), &procs[i].fds});
    pids.insert(sp.pid());
  }
  LOG_DEBUG("%zu processes collected in %.1f ms: /proc and VMAs %.1f ms, fds %.1f ms (read ahead), remote setup %.1f ms, "
            "task state %.1f ms, pages %.1f ms (planned and small ones read ahead, written)",
            procs.size(), (Now() - tc) * 1e3, times.proc * 1e3, times.fds * 1e3, times.remote * 1e3,
            times.task * 1e3, times.pages * 1e3);
  for (const ZombieInfo& z : tree.zombies()) pids.insert(z.pid);
  double ts = Now();
  CRYO_RETURN_IF_ERROR(AssignFileIds(tables).Prefixed("files"));
  LOG_DEBUG("shared file descriptions found in %.1f ms", (Now() - ts) * 1e3);
  ts = Now();
  image::PipeTable pipes;
  CRYO_RETURN_IF_ERROR(DumpPipes(tables, pids, &pipes).Prefixed("pipes"));
  LOG_DEBUG("%d pipes dumped in %.1f ms", pipes.pipes_size(), (Now() - ts) * 1e3);
  ts = Now();
  image::ShmTable shm;
  std::vector<ShmHolders> shm_holders;
  for (DumpedProcess& p : procs) shm_holders.push_back({p.core.pid(), &p.mm, &p.fds, &p.shm_maps});
  CRYO_RETURN_IF_ERROR(DumpShmObjects(shm_holders, pids, writer.get(), &shm, &features).Prefixed("shared memory"));
  image::TtyTable ttys;
  std::vector<TtyProcess> tty_procs;
  for (size_t i = 0; i < procs.size(); ++i)
    tty_procs.push_back({tree.processes()[i]->pid(), &procs[i].core, &procs[i].fds});
  CRYO_RETURN_IF_ERROR(DumpTtys(tty_procs, opts.shell_job, &ttys, &features).Prefixed("terminals"));
  LOG_DEBUG("%d shared memory objects and %d terminals dumped in %.1f ms", shm.objects_size(), ttys.ttys_size(),
            (Now() - ts) * 1e3);
  ts = Now();

  image::Inventory inv = MakeInventory(opts, procs[0].core, features);
  if (procs.size() + tree.zombies().size() > 1) inv.add_features("tree");
  if (!tree.zombies().empty()) inv.add_features("zombies");
  if (SharesDescriptions(procs)) inv.add_features("shared-files");
  std::map<uint64_t, int> shmem_holders;
  for (const DumpedProcess& p : procs)
    for (const image::Vma& v : p.mm.vmas())
      if (v.shmem_id()) ++shmem_holders[v.shmem_id()];
  for (const auto& [id, n] : shmem_holders)
    if (n > 1) {
      inv.add_features("shmem");
      break;
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
  for (const ZombieInfo& z : tree.zombies()) {
    image::ProcessCore core;
    core.set_pid(z.pid);
    core.set_ppid(z.ppid);
    core.set_pgid(z.pgid);
    core.set_sid(z.sid);
    core.set_zombie(true);
    core.set_exit_status(z.exit_status);
    core.set_exit_signal(z.exit_signal);
    core.set_zombie_comm(z.comm);
    inv.add_pids(z.pid);
    writer->AsyncWriteRecord(image::CoreName(z.pid), image::FileKind::kProcessCore, core);
  }
  if (pipes.pipes_size()) writer->AsyncWriteRecord(image::PipesName(), image::FileKind::kPipes, pipes);
  if (shm.objects_size()) writer->AsyncWriteRecord(image::ShmName(), image::FileKind::kShm, shm);
  if (ttys.ttys_size()) writer->AsyncWriteRecord(image::TtysName(), image::FileKind::kTtys, ttys);
  // The inventory goes last, once every other file is durable: an image
  // without one is incomplete.
  CRYO_RETURN_IF_ERROR(writer->SyncFiles());
  CRYO_RETURN_IF_ERROR(writer->WriteInventory(inv));
  CRYO_RETURN_IF_ERROR(writer->SyncFiles());
  CRYO_RETURN_IF_ERROR(writer->SyncDir());
  LOG_DEBUG("records written and synced in %.1f ms", (Now() - ts) * 1e3);
  ts = Now();

  if (opts.leave_running) {
    CRYO_RETURN_IF_ERROR(tree.DetachAll());
  } else {
    CRYO_RETURN_IF_ERROR(tree.KillAll());
  }
  LOG_DEBUG("tree %s in %.1f ms", opts.leave_running ? "detached" : "killed", (Now() - ts) * 1e3);
  const size_t others = procs.size() + tree.zombies().size() - 1;
  LOG_INFO("pid %d%s dumped to %s in %.1f ms (%s)", pid,
           others ? (" and " + std::to_string(others) + (others == 1 ? " descendant" : " descendants")).c_str() : "",
           opts.images_dir.c_str(), (Now() - t0) * 1e3, opts.leave_running ? "left running" : "killed");
  return Status::Ok();
}

}  // namespace cryo
