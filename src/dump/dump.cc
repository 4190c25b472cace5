#include "dump/dump.h"

#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>

#include "base/log.h"
#include "files/fd_table.h"
#include "image/image_dir.h"
#include "inject/remote_syscall.h"
#include "mem/vma_dump.h"
#include "proc/proc.h"
#include "seize/ptrace_util.h"
#include "seize/seize.h"
#include "tree/task_dump.h"

namespace cryo {

namespace {

constexpr size_t kScratchSize = 64 << 10;

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

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

}  // namespace

Status Dump(const DumpOptions& opts) {
  const double t0 = Now();
  const pid_t pid = opts.pid;
  CRYO_RETURN_IF_ERROR(CheckDumpable(pid));
  CRYO_ASSIGN_OR_RETURN(auto writer, image::ImageWriter::Create(opts.env, opts.images_dir));
  // An inventory left by an earlier dump must not vouch for this one's files.
  if (::unlink((opts.images_dir + "/" + image::InventoryName()).c_str()) != 0 && errno != ENOENT)
    return Status::FromErrno("cannot remove old " + opts.images_dir + "/" + image::InventoryName());

  CRYO_ASSIGN_OR_RETURN(auto seized, SeizedProcess::Seize(pid));
  LOG_DEBUG("pid %d seized in %.3f ms", pid, (Now() - t0) * 1e3);

  image::ProcessCore core;
  image::Mm mm;
  image::FdTable fds;
  std::set<std::string> features;
  {
    CRYO_ASSIGN_OR_RETURN(proc::Stat stat, proc::ReadStat(pid));
    CRYO_ASSIGN_OR_RETURN(proc::ProcStatus status, proc::ReadStatus(pid));
    CRYO_ASSIGN_OR_RETURN(std::vector<proc::Vma> vmas, proc::ReadVmas(pid));
    CRYO_RETURN_IF_ERROR(DescribeVmas(pid, vmas, &mm).Prefixed("memory"));
    CRYO_RETURN_IF_ERROR(DumpFdTable(pid, &fds, &features).Prefixed("files"));

    RemoteSyscaller rs(pid, seized->leader().regs);
    CRYO_RETURN_IF_ERROR(rs.Prepare(vmas).Prefixed("preparing remote system calls"));
    CRYO_RETURN_IF_ERROR(rs.MapScratch(kScratchSize));
    CRYO_RETURN_IF_ERROR(DumpProcessCore(*seized, rs, stat, status, &core).Prefixed("task state"));

    CRYO_ASSIGN_OR_RETURN(auto pages, writer->CreatePageFile(image::PagesName(pid)));
    const double tp = Now();
    ProgressFn progress;
    if (opts.show_progress)
      progress = [](uint64_t done, uint64_t total) {
        fprintf(stderr, "\rcryo: writing pages %" PRIu64 "/%" PRIu64 " MiB", done >> 20, total >> 20);
        if (done == total) fprintf(stderr, "\n");
      };
    CRYO_RETURN_IF_ERROR(DumpPages(pid, rs, &mm, pages.get(), progress).Prefixed("memory"));
    CRYO_RETURN_IF_ERROR(writer->FinishPageFile(pages.get(), mm.total_pages() * image::kPageSize));
    LOG_DEBUG("pid %d: %" PRIu64 " pages written and synced in %.3f ms", pid, mm.total_pages(), (Now() - tp) * 1e3);
    CRYO_RETURN_IF_ERROR(rs.Finish());
  }

  CRYO_RETURN_IF_ERROR(writer->WriteRecord(image::CoreName(pid), image::FileKind::kProcessCore, core));
  CRYO_RETURN_IF_ERROR(writer->WriteRecord(image::MmName(pid), image::FileKind::kMm, mm));
  CRYO_RETURN_IF_ERROR(writer->WriteRecord(image::FdsName(pid), image::FileKind::kFdTable, fds));
  // The inventory goes last: an image without one is incomplete.
  CRYO_RETURN_IF_ERROR(writer->WriteRecord(image::InventoryName(), image::FileKind::kInventory, MakeInventory(opts, core, features)));
  CRYO_RETURN_IF_ERROR(writer->SyncDir());

  if (opts.leave_running) {
    CRYO_RETURN_IF_ERROR(seized->Detach());
  } else {
    CRYO_RETURN_IF_ERROR(seized->Kill());
  }
  LOG_INFO("pid %d dumped to %s in %.1f ms (%s)", pid, opts.images_dir.c_str(), (Now() - t0) * 1e3,
           opts.leave_running ? "left running" : "killed");
  return Status::Ok();
}

}  // namespace cryo
