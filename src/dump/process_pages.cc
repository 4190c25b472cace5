#include "dump/process_pages.h"

#include "dump/postcopy_pages.h"
#include "dump/classify.h"
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <cinttypes>
#include <cstdio>
#include <algorithm>
#include <system_error>
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

Status FinishDeferred(image::ImageWriter* writer, DeferredPages* d, PageSource& src) {
  const double t = Now();
  CRYO_RETURN_IF_ERROR(CopyPages(src, d->pieces, d->mm, d->file.get(), ProgressFn()).Prefixed("memory"));
  CRYO_RETURN_IF_ERROR(writer->FinishPageFile(std::move(d->file), d->bytes));
  d->seconds = Now() - t;
  return Status::Ok();
}

}  // namespace


// The second half: its page file (written on the image writer's thread, but
// for the pages of a big process, streamed here), from its facts with the
// pages read ahead. Its records are
// written once the whole tree is collected (shared objects and terminals add
// to them).
Status DumpProcessPages(SeizedProcess& seized, ProcessFacts& facts, image::ImageWriter& writer,
                        const DumpOptions& opts, DumpedProcess* out, std::set<std::string>* features,
                        PhaseTimes* times, std::unique_ptr<CowCopy> cow, std::vector<DeferredPages>* deferred) {
  const pid_t pid = seized.pid();
  times->pages += facts.pages_s;
  out->mm = std::move(facts.mm);
  out->fds = std::move(facts.fds);
  out->shm_maps = std::move(facts.shm_maps);
  out->unlinked_maps = std::move(facts.unlinked_maps);
  features->insert(facts.features.begin(), facts.features.end());
  for (const image::Vma& v : out->mm.vmas())
    if (std::find(v.vm_flags().begin(), v.vm_flags().end(), "nr") != v.vm_flags().end()) features->insert("map-noreserve");
  double t = Now();
  auto lap = [&t](double* phase) {
    const double now = Now();
    *phase += now - t;
    t = now;
  };

  const uint64_t bytes = out->mm.total_pages() * image::kPageSize;
  ProgressFn progress;
  if (opts.show_progress)
    progress = [pid](uint64_t done, uint64_t total) {
      fprintf(stderr, "\rcryo: pid %d: writing pages %s of %s ", pid, FormatSize(done).c_str(), FormatSize(total).c_str());
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
    if ((cow || opts.live_copy) && !opts.post_copy) {
      deferred->push_back({pid, std::move(facts.pieces), std::move(pages), &out->mm, bytes, std::move(cow), 0,
                           opts.live_copy, {}, {}});
      lap(&times->pages);
      return Status::Ok();
    }
    if (opts.post_copy) {
      std::vector<std::pair<uint64_t, uint64_t>> remote;
      CRYO_RETURN_IF_ERROR(DumpPagesPostCopy(pid, facts.pieces, &out->mm, pages.get(), &remote).Prefixed("memory"));
      if (!remote.empty()) features->insert("remote-pages");
    } else {
      // A kill-mode dump made durable writes its big page files past the page
      // cache (mem/direct_write.h); other modes leave the bytes there.
      const bool direct = opts.sync && !opts.leave_running;
      CRYO_RETURN_IF_ERROR(DumpPages(pid, facts.pieces, &out->mm, pages.get(), progress, direct).Prefixed("memory"));
    }
    CRYO_RETURN_IF_ERROR(writer.FinishPageFile(std::move(pages), bytes));
    LOG_DEBUG("pid %d: %" PRIu64 " pages written in %.3f ms", pid, out->mm.total_pages(), (Now() - tp) * 1e3);
  }
  lap(&times->pages);
  return Status::Ok();
}

bool CowWanted(const DumpOptions& opts, const Classified& c) {
  if (!opts.leave_running || !opts.cow || opts.post_copy || opts.live_copy) return false;
  // A VMA takes one userfaultfd: the tracker's (WP_ASYNC) owns them already.
  if (c.tracking) {
    LOG_INFO("memory copied during the freeze: the tree's memory is tracked (--track-mem)");
    return false;
  }
  // An incremental dump compares pages with the parent's as it reads them.
  if (c.parent) return false;
  return true;
}

// A userfaultfd in each process with more than kBufferedPages of private
// anonymous memory mapped (smaller ones are read ahead during the freeze
// anyway); one that cannot have it is copied during the freeze.
void OpenCowCopies(Classified& c, std::map<pid_t, std::unique_ptr<CowCopy>>* cow) {
  for (size_t i = 0; i < c.inspection.facts.size(); ++i) {
    const ProcessFacts& f = c.inspection.facts[i];
    uint64_t anon = 0;
    for (const image::Vma& v : f.mm.vmas())
      if (v.kind() == image::VMA_ANON_PRIVATE) anon += v.end() - v.start();
    if (anon <= kBufferedPages) continue;
    auto made = CowCopy::Open(*c.tree.processes()[i], f.vmas, f.status.sig_ign, f.status.sig_cgt);
    if (!made.ok()) {
      LOG_INFO("pid %d: memory copied during the freeze (no copy-on-write: %s)", f.pid,
               made.status().ToString().c_str());
      continue;
    }
    (*cow)[f.pid] = std::move(*made);
  }
}


// The last step of the freeze: each deferred process's memory protected, or
// (when it cannot be) copied now.
Status ProtectDeferred(image::ImageWriter* writer, std::vector<DeferredPages>* deferred) {
  for (DeferredPages& d : *deferred) {
    if (d.live) continue;  // read from the running tree (CopyDeferred)
    const std::string who = "pid " + std::to_string(d.pid);
    Status s = d.cow->Protect(*d.mm, d.pieces, writer->dir());
    if (s.ok()) continue;
    LOG_INFO("%s: memory copied during the freeze (no copy-on-write: %s)", who.c_str(), s.ToString().c_str());
    d.cow.reset();  // its userfaultfd closed: whatever it protected is lifted
    CRYO_ASSIGN_OR_RETURN(auto src, ProcessPageSource::Open(d.pid));
    CRYO_RETURN_IF_ERROR(FinishDeferred(writer, &d, *src).Prefixed(who));
  }
  return Status::Ok();
}

// Once the tree runs again: the protected memory copied.
Status CopyDeferred(image::ImageWriter* writer, std::vector<DeferredPages>* deferred, bool* memory_changed) {
  *memory_changed = false;
  for (DeferredPages& d : *deferred) {
    if (d.live) {
      // A pre-copy round: what the tree writes meanwhile is named by the
      // next round's scan (its protection was armed during the freeze).
      const std::string who = "pid " + std::to_string(d.pid);
      auto src = LivePageSource::Open(d.pid);
      if (!src.ok()) return src.status().Prefixed(who);
      CRYO_RETURN_IF_ERROR(FinishDeferred(writer, &d, **src).Prefixed(who));
      d.unread = (*src)->unread();
      if (!d.unread.empty())
        LOG_INFO("%s: %zu ranges unmapped during the copy (stored as zeros; the next round reads them again)",
                 who.c_str(), d.unread.size());
      continue;
    }
    if (!d.cow) continue;
    Status s = FinishDeferred(writer, &d, *d.cow).Prefixed("pid " + std::to_string(d.pid));
    if (s.ok()) s = d.cow->status();
    if (!s.ok()) {
      // The fault thread's error says more than the copy's.
      if (Status f = d.cow->status(); !f.ok()) s = f;
      *memory_changed = d.cow->memory_changed();
      return s;
    }
    LOG_INFO("pid %d: %s copied after the resume in %.1f ms (copy-on-write; %" PRIu64 " write faults, %" PRIu64
             " pages copied aside first, %" PRIu64 " of them through the spill file, at most %s in memory; %" PRIu64
             " mremap and %" PRIu64 " munmap/madvise events, %" PRIu64 " pages kept from madvise discards)",
             d.pid, FormatSize(d.bytes).c_str(), d.seconds * 1e3, d.cow->faults(), d.cow->fault_copies(),
             d.cow->aside_spilled(), FormatSize(d.cow->aside_peak_memory()).c_str(), d.cow->remaps(),
             d.cow->unmaps(), d.cow->discard_copies());
    try {
      d.closer.thread = std::thread([cow = std::move(d.cow)]() mutable { cow.reset(); });
    } catch (const std::system_error&) {
      d.cow.reset();  // (not moved when the thread could not start)
    }
  }
  return Status::Ok();
}

}  // namespace cryo
