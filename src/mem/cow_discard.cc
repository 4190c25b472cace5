// Copy-on-write dump (cow_copy.h): pages the program discards with
// madvise(2) during the copy, kept as they were at the freeze.
//
// madvise(MADV_DONTNEED / MADV_DONTNEED_LOCKED / MADV_FREE) on a registered
// VMA queues UFFD_EVENT_REMOVE before it zaps anything, and its caller waits
// in the kernel (TASK_KILLABLE, mmap_lock dropped) until the event is read:
// userfaultfd_remove() and userfaultfd_event_wait_completion() in
// fs/userfaultfd.c. Reading the event lets it go on at once, and the event
// says nothing before it is read; but while the caller waits,
// /proc/PID/task/TID/syscall shows its call and arguments (proc(5): a task
// blocked in a system call). So before each read of the userfaultfd, if a
// mapping change is pending (UFFDIO_WRITEPROTECT answers EAGAIN while
// ctx->mmap_changing is set, which userfaultfd_remove does before it queues
// its event), the fault thread looks at the process's threads and copies
// aside the protected pages not copied yet in the range of every madvise
// that discards: those pages are still the freeze's (their bits are checked
// after the read, as for a write fault). A discard begun after that look is
// read uncovered: its pages are lost, found by OnUnmap as before (the dump is
// made again), never stored wrong.
//
// munmap(2) (and mmap MAP_FIXED over memory, mremap shrinking, brk) cannot be
// kept this way: its UFFD_EVENT_UNMAP is queued by
// userfaultfd_unmap_complete() after the pages are gone (mm/vma.c,
// do_vmi_align_munmap), and nothing makes the caller wait before.
#include <dirent.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/file_util.h"
#include "base/log.h"
#include "image/format.h"
#include "mem/cow_copy.h"

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr size_t kChunkPages = 16;  // read at a time (64 KiB: the fault thread's buffer)

// The advice values whose madvise queues UFFD_EVENT_REMOVE on anonymous memory
// (mm/madvise.c, madvise_dontneed_free).
bool Discards(uint64_t advice) {
  return advice == MADV_DONTNEED || advice == MADV_DONTNEED_LOCKED || advice == MADV_FREE;
}

}  // namespace

Result<std::vector<std::pair<uint64_t, uint64_t>>> PendingDiscards(pid_t pid) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Status::FromErrno("opendir " + dir);
  for (;;) {
    errno = 0;
    const dirent* e = ::readdir(d);
    if (e == nullptr) break;
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    // "NR ARG1 .. ARG6 SP PC" (decimal, then hex), "running", or "-1 SP PC"
    // out of a system call; a thread gone meanwhile has nothing pending.
    auto text = ReadFileToString(dir + "/" + e->d_name + "/syscall");
    if (!text.ok()) continue;
    const char* p = text->c_str();
    char* end = nullptr;
    const long nr = std::strtol(p, &end, 10);
    if (end == p || nr != SYS_madvise) continue;
    uint64_t arg[3];
    bool ok = true;
    for (uint64_t& a : arg) {
      p = end;
      a = std::strtoull(p, &end, 16);
      ok = ok && end != p;
    }
    if (!ok || !Discards(arg[2]) || arg[1] == 0) continue;
    const uint64_t start = arg[0] / kPage * kPage;
    out.emplace_back(start, (arg[0] + arg[1] + kPage - 1) / kPage * kPage);
  }
  const int err = errno;
  ::closedir(d);
  if (err) return Status::Errno(err, "readdir " + dir);
  return out;
}

bool CowCopy::MappingsChanging() {
  uffdio_writeprotect wp{};
  wp.range = {probe_, kPage};
  wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
  return ::ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp) != 0 && errno == EAGAIN;
}

void CowCopy::KeepPendingDiscards() {
  auto ranges = PendingDiscards(pid_);
  if (!ranges.ok()) {
    // Nothing kept: a discard then loses its pages (OnUnmap), as before.
    LOG_DEBUG("pid %d: %s", pid_, ranges.status().ToString().c_str());
    return;
  }
  for (const auto& [start, end] : *ranges) {
    Status s = KeepRange(start, end);
    if (!s.ok()) {
      Fail(s.Prefixed("pid " + std::to_string(pid_) + ": madvise"), false);
      return;
    }
  }
}

// The protected pages of [start, end) neither copied, copied aside nor moved
// in, copied aside if they still carry their bit after the read.
Status CowCopy::KeepRange(uint64_t start, uint64_t end) {
  std::vector<char> good;
  std::vector<char> buf(kChunkPages * kPage);
  for (uint64_t page = start; page < end;) {
    uint64_t run = 0;  // pages to read from `page` on
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto wanted = [&](uint64_t a) {
        return Protected(a) && CopiedRange(a).second == 0 && !aside_->Has(a) && !MovedIn(a);
      };
      while (page < end && !wanted(page)) page += kPage;
      while (page + run * kPage < end && run < kChunkPages && wanted(page + run * kPage) &&
             Readable(page + run * kPage) == Readable(page))
        ++run;
    }
    if (run == 0) break;
    CRYO_RETURN_IF_ERROR(ReadChecked(*fault_reader_, page, run * kPage, Readable(page), buf.data(), &good));
    std::lock_guard<std::mutex> lock(mu_);
    for (uint64_t i = 0; i < run; ++i) {
      const uint64_t a = page + i * kPage;
      if (!good[i] || CopiedRange(a).second) continue;
      CRYO_RETURN_IF_ERROR(aside_->Put(a, buf.data() + i * kPage));
      discard_copies_.fetch_add(1);
    }
    page += run * kPage;
  }
  return Status::Ok();
}

}  // namespace cryo
