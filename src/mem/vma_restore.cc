#include "mem/vma_restore.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <tuple>

#include "base/size_format.h"
#include "base/unique_fd.h"
#include "image/format.h"
#include "mem/thp.h"
#include "mem/guard_regions.h"
#include "mem/hugetlb.h"
#include "mem/vma_dump.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;

std::string Hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%" PRIx64, v);
  return buf;
}

std::string VmaName(const image::Vma& v) {
  return "VMA " + Hex(v.start()) + "-" + Hex(v.end()) + (v.name().empty() ? "" : " (" + v.name() + ")");
}

// Opens the file behind a file mapping and checks it is the one dumped.
Result<UniqueFd> OpenMappedFile(const image::Vma& v) {
  const image::FileId& id = v.file();
  const bool rw = FileOpenedWritable(v);
  UniqueFd fd(::open(id.path().c_str(), (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + id.path() + " for " + VmaName(v));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + id.path());
  // A shared mapping may have changed the file itself since; a private one must
  // see exactly the bytes it was dumped against.
  if (v.kind() == image::VMA_FILE_PRIVATE &&
      (static_cast<uint64_t>(st.st_size) != id.size() ||
       st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec != id.mtime_ns()))
    return Status::Error(id.path() + " (" + VmaName(v) + ") changed during the restore, after cryo checked it: size " +
                         std::to_string(id.size()) + " -> " + std::to_string(st.st_size) +
                         " bytes or its mtime; the mapping cannot be restored faithfully");
  return fd;
}

int Madvice(const std::string& flag) {
  static const std::map<std::string, int> kFlags = {{"dd", MADV_DONTDUMP},   {"dc", MADV_DONTFORK},
                                                    {"hg", MADV_HUGEPAGE},   {"nh", MADV_NOHUGEPAGE},
                                                    {"wf", MADV_WIPEONFORK}, {"mg", MADV_MERGEABLE},
                                                    {"sr", MADV_SEQUENTIAL}, {"rr", MADV_RANDOM}};
  auto it = kFlags.find(flag);
  return it == kFlags.end() ? -1 : it->second;
}

struct FillJob {
  const image::PageRun* run;
  uint64_t dest;
  const image::PageSource* src;  // this image's page file, or an ancestor's (Mm.parent_runs)
};

struct FillShared {
  const std::vector<FillJob>* jobs;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  int err = 0;
  std::string what;
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
};

void* FillWorker(void* p) {
  FillShared* s = static_cast<FillShared*>(p);
  for (;;) {
    const size_t i = s->next.fetch_add(1);
    if (i >= s->jobs->size() || s->failed.load()) return nullptr;
    const FillJob& j = (*s->jobs)[i];
    const uint64_t len = j.run->npages() * kPage;
    const char* failure = nullptr;
    int err = 0;
    std::string detail;
    // A raw file is read with pread(2); a compressed one frame by frame, each
    // frame's checksum checked before it is decompressed (page_source.h).
    if (Status rs = j.src->Read(reinterpret_cast<void*>(j.dest), len, j.run->offset()); !rs.ok()) {
      failure = "reading page data";
      err = rs.err();
      detail = rs.message();
    }
    if (!failure && image::HashBytes(reinterpret_cast<void*>(j.dest), len) != j.run->checksum())
      failure = "checksum mismatch in page data (corrupted image)";
    if (failure) {
      pthread_mutex_lock(&s->mu);
      if (!s->failed.exchange(true)) {
        s->err = err;
        s->what = std::string(failure) + " for pages at " + Hex(j.run->vaddr()) + (detail.empty() ? "" : ": " + detail);
      }
      pthread_mutex_unlock(&s->mu);
      return nullptr;
    }
  }
}

Status Fill(const std::vector<FillJob>& jobs, int threads) {
  FillShared s;
  s.jobs = &jobs;
  std::vector<pthread_t> tids;
  for (int i = 1; i < threads && static_cast<size_t>(i) < jobs.size(); ++i) {
    pthread_t t;
    if (pthread_create(&t, nullptr, FillWorker, &s) == 0) tids.push_back(t);
  }
  FillWorker(&s);
  for (pthread_t t : tids) pthread_join(t, nullptr);
  if (s.failed) return s.err ? Status::Errno(s.err, s.what) : Status::Error(s.what);
  return Status::Ok();
}

}  // namespace

bool FileOpenedWritable(const image::Vma& v) {
  // A shared mapping of a write-sealed memfd can come from a read-write
  // description without being writable (no VM_MAYWRITE, memfd_file_seals):
  // its may-write flag decides, or sealing it again would fail (EBUSY).
  // Shared anonymous memory (a shmem object of its own) likewise.
  if (v.kind() == image::VMA_FILE_SHARED || v.kind() == image::VMA_ANON_SHARED) return v.file_writable();
  return v.kind() == image::VMA_FILE_PRIVATE && v.file_opened_rw();
}

bool IsPremapped(const image::Vma& v) {
  switch (v.kind()) {
    case image::VMA_ANON_PRIVATE:
    case image::VMA_ANON_SHARED:
    case image::VMA_FILE_PRIVATE:
    case image::VMA_FILE_SHARED:
      return true;
    default:
      return false;
  }
}

uint64_t PremapSize(const image::Mm& mm, const std::vector<bool>& huge_vmas) {
  uint64_t size = kPage;
  for (int i = 0; i < mm.vmas_size(); ++i) {
    const image::Vma& v = mm.vmas(i);
    if (IsPremapped(v))  // + room to align it (THP ranges, hugetlb pages)
      size += v.end() - v.start() + kPage + std::max<uint64_t>(huge_vmas.at(i) ? kHugePageSize : 0, v.huge_page_size());
  }
  return size;
}

Result<uint64_t> FindGap(const std::vector<std::pair<uint64_t, uint64_t>>& used_in, uint64_t len) {
  auto used = used_in;
  std::sort(used.begin(), used.end());
  // The highest gap below the usual mmap area, like the kernel's top-down
  // search, clear of the lowest 4 GiB (where non-PIE programs live).
  constexpr uint64_t kLow = 1ull << 32, kHigh = 0x7f0000000000ull;
  const uint64_t need = len + 2 * kPage;
  std::vector<uint64_t> max_end(used.size());
  for (size_t i = 0; i < used.size(); ++i) max_end[i] = std::max(used[i].second, i ? max_end[i - 1] : 0);
  uint64_t hi = kHigh;
  for (size_t k = used.size() + 1; k-- > 0;) {
    // Candidate gap: [end of everything before k, start of used[k]) capped by hi.
    const uint64_t lo = std::max(kLow, k ? max_end[k - 1] : kLow);
    const uint64_t top = k < used.size() ? std::min(hi, used[k].first) : hi;
    if (top > lo && top - lo >= need) return (top - kPage - len) & ~(kPage - 1);
    if (k < used.size()) hi = std::min(hi, used[k].first);
    if (hi <= kLow) break;
  }
  return Status::Error("no free address range of " + FormatSize(len) + " for the restore");
}

int MapFlags(const image::Vma& v) {
  const uint32_t type = v.flags() & 0x0f;  // MAP_TYPE
  int flags = type == kMapDroppable ? static_cast<int>(kMapDroppable) : (v.flags() & MAP_SHARED) ? MAP_SHARED : MAP_PRIVATE;
  if (v.flags() & MAP_GROWSDOWN) flags |= MAP_GROWSDOWN;
  // VM_NORESERVE (VmFlags nr) comes only from mmap's flags.
  if (std::find(v.vm_flags().begin(), v.vm_flags().end(), "nr") != v.vm_flags().end()) flags |= MAP_NORESERVE;
  return flags;
}

namespace {

bool HasVmFlag(const image::Vma& v, const char* flag) {
  return std::find(v.vm_flags().begin(), v.vm_flags().end(), flag) != v.vm_flags().end();
}

// Advice that changes what a fork copies: applied only once the children are
// cloned (ApplyForkAdvice), since they must inherit the premap.
bool IsForkAdvice(const std::string& flag) { return flag == "dc" || flag == "wf"; }

// THP advice: applied once the VMA is filled when its huge ranges are made
// huge (thp.h), so that the fill's faults do not decide which others are.
bool IsThpAdvice(const std::string& flag) { return flag == "hg" || flag == "nh"; }

// The inherited page ranges inside [start, end), clipped.
std::vector<std::pair<uint64_t, uint64_t>> InheritedIn(const image::Mm& mm, uint64_t start, uint64_t end) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const image::PageRange& r : mm.inherited()) {
    const uint64_t s = std::max(start, r.vaddr()), e = std::min(end, r.vaddr() + r.npages() * kPage);
    if (s < e) out.emplace_back(s, e);
  }
  return out;
}

// Takes over the premapped place of the parent's VMA for `v`: drops the pages
// `v` does not inherit (MADV_DONTNEED reads back zero, madvise(2)) and returns
// where `v` now lies.
Result<uint64_t> TakeOver(const image::Vma& v, const std::vector<std::pair<uint64_t, uint64_t>>& inherited,
                          const std::vector<InheritableVma>& from_parent) {
  const InheritableVma* r = nullptr;
  for (const InheritableVma& c : from_parent)
    if (c.start <= v.start() && v.end() <= c.end) r = &c;
  if (!r) return Status::Error(VmaName(v) + " inherits pages from its parent, whose restored memory has no such VMA");
  const uint64_t at = r->premap + (v.start() - r->start), len = v.end() - v.start();
  // msync(2) fails with ENOMEM where nothing is mapped: the fork did not copy it.
  if (::msync(reinterpret_cast<void*>(at), len, MS_ASYNC) != 0)
    return Status::FromErrno(VmaName(v) + ": the parent's premapped pages were not inherited");
  uint64_t from = v.start();
  auto drop = [&](uint64_t to) -> Status {
    if (to > from && ::madvise(reinterpret_cast<void*>(at + (from - v.start())), to - from, MADV_DONTNEED) != 0)
      return Status::FromErrno("MADV_DONTNEED in " + VmaName(v));
    return Status::Ok();
  };
  for (const auto& [s, e] : inherited) {
    CRYO_RETURN_IF_ERROR(drop(s));
    from = e;
  }
  CRYO_RETURN_IF_ERROR(drop(v.end()));
  return at;
}

}  // namespace

Status PremapAndFill(const image::Mm& mm, const std::vector<bool>& huge_vmas, const image::PageSource& pages,
                     const std::vector<const image::PageSource*>& parents, uint64_t base, int threads,
                     const std::function<int(uint64_t)>& shmem_fd, const std::vector<InheritableVma>& from_parent,
                     std::vector<restorer::Move>* moves, std::vector<InheritableVma>* inheritable,
                     const MapShmFn& map_shm, const std::unordered_set<const image::PageRun*>* lazy,
                     HugeCount* huge) {
  auto eager = [lazy](const image::PageRun& r) { return !lazy || !lazy->count(&r); };
  std::vector<FillJob> jobs;
  struct Advice {
    uint64_t addr, len;
    int advice;
    const std::string* flag;
  };
  std::vector<Advice> thp_advice;
  const bool thp_allowed = mm.huge_ranges_size() > 0 && ThpAllowed();
  const size_t first_move = moves->size();
  int ri = 0, pi = 0;
  uint64_t slot = base + kPage;
  struct Final {
    uint64_t addr, len;
    int prot;
  };
  std::vector<Final> finals;
  struct Lock {
    uint64_t addr, len;
    int prot;
    bool on_fault;
  };
  std::vector<Lock> locks;
  // A file is mapped by several VMAs (text, data, ...): opened and checked once
  // per identity (path, dev, inode, size, mtime), kind and access.
  std::map<std::tuple<std::string, uint64_t, uint64_t, uint64_t, int64_t, int, bool>, UniqueFd> files;
  for (int vi = 0; vi < mm.vmas_size(); ++vi) {
    const image::Vma& v = mm.vmas(vi);
    if (!IsPremapped(v)) continue;
    const uint64_t len = v.end() - v.start();
    const bool has_huge = huge_vmas.at(vi);
    // hugetlb memory is mapped at a multiple of its page size (EINVAL else).
    const uint64_t hps = v.huge_page_size();
    uint64_t at = hps ? (slot + hps - 1) / hps * hps : PremapAddress(slot, v, has_huge);
    slot = at + len + kPage;
    // Page runs of this VMA (runs are in address order and never cross VMAs).
    const int first_run = ri;
    int eager_runs = 0, lazy_runs = 0;
    for (; ri < mm.runs_size() && mm.runs(ri).vaddr() < v.end(); ++ri) eager(mm.runs(ri)) ? ++eager_runs : ++lazy_runs;
    const int first_parent_run = pi;
    for (; pi < mm.parent_runs_size() && mm.parent_runs(pi).vaddr() < v.end(); ++pi)
      eager(mm.parent_runs(pi)) ? ++eager_runs : ++lazy_runs;
    const int shm = v.kind() == image::VMA_ANON_SHARED && v.shmem_id() && shmem_fd ? shmem_fd(v.shmem_id()) : -1;
    const bool has_pages = eager_runs > 0 && shm < 0;  // a shmem object comes filled
    const int prot = static_cast<int>(v.prot());
    const auto inherited = v.kind() == image::VMA_ANON_PRIVATE ? InheritedIn(mm, v.start(), v.end())
                                                                 : std::vector<std::pair<uint64_t, uint64_t>>{};
    if (!inherited.empty()) {
      CRYO_ASSIGN_OR_RETURN(at, TakeOver(v, inherited, from_parent));
      CRYO_RETURN_IF_ERROR(ClearGuardRegions(v, at, len));  // the parent's, copied by fork
      if (has_pages && ::mprotect(reinterpret_cast<void*>(at), len, PROT_READ | PROT_WRITE) != 0)
        return Status::FromErrno("mprotect of the inherited " + VmaName(v));
    } else {
      const int map_prot = has_pages ? PROT_READ | PROT_WRITE : prot;
      const int flags = MAP_FIXED | MapFlags(v);
      void* p;
      if (v.shm_object() || v.unlinked_file()) {
        if (!map_shm) return Status::Error(VmaName(v) + " maps a shared memory object, which this restore cannot map");
        CRYO_RETURN_IF_ERROR(map_shm(v, at, map_prot));
        p = reinterpret_cast<void*>(at);
      } else if (v.kind() == image::VMA_FILE_PRIVATE || v.kind() == image::VMA_FILE_SHARED) {
        // Each mapped file is opened once, whatever the number of its VMAs.
        const image::FileId& id = v.file();
        auto key = std::make_tuple(id.path(), id.dev(), id.ino(), id.size(), id.mtime_ns(), static_cast<int>(v.kind()),
                                   FileOpenedWritable(v));
        auto it = files.find(key);
        if (it == files.end()) {
          CRYO_ASSIGN_OR_RETURN(UniqueFd fd, OpenMappedFile(v));
          it = files.emplace(std::move(key), std::move(fd)).first;
        }
        p = ::mmap(reinterpret_cast<void*>(at), len, map_prot, flags, it->second.get(), static_cast<off_t>(v.pgoff()));
      } else if (shm >= 0) {
        p = ::mmap(reinterpret_cast<void*>(at), len, map_prot, flags, shm, static_cast<off_t>(v.pgoff()));
      } else {
        p = ::mmap(reinterpret_cast<void*>(at), len, map_prot, flags | MAP_ANONYMOUS | HugetlbMapFlags(v.huge_page_size()), -1, 0);
      }
      if (p == MAP_FAILED)
        return Status::FromErrno("mmap of " + VmaName(v) +
                                 (v.huge_page_size() ? " (hugetlb memory: " + std::to_string(v.huge_page_size() >> 10) +
                                                           " KiB pages from the pool of /sys/kernel/mm/hugepages)"
                                                     : std::string()));
    }
    // Not with pages left to --lazy: the collapse's write fault would make
    // them present (zero), and the fault that fetches them would never come.
    const bool make_huge = has_huge && thp_allowed && has_pages && inherited.empty() && lazy_runs == 0;
    for (const std::string& f : v.vm_flags()) {
      int adv = Madvice(f);
      const bool later = make_huge && IsThpAdvice(f);
      if (adv >= 0 && later) thp_advice.push_back({at, len, adv, &f});
      if (adv >= 0 && !IsForkAdvice(f) && !later && ::madvise(reinterpret_cast<void*>(at), len, adv) != 0)
        return Status::FromErrno("madvise " + f + " on " + VmaName(v));
    }
    const bool named = v.name().rfind("[anon:", 0) == 0 && v.name().back() == ']';
    if (named) {
      std::string name = v.name().substr(6, v.name().size() - 7);
      if (::prctl(0x53564d41 /*PR_SET_VMA*/, 0 /*PR_SET_VMA_ANON_NAME*/, at, len, name.c_str()) != 0)
        return Status::FromErrno("naming " + VmaName(v) +
                                 " (prctl PR_SET_VMA_ANON_NAME: Linux 5.17+ with CONFIG_ANON_VMA_NAME)");
    } else if (!inherited.empty()) {
      // An inherited VMA may carry its parent's name. (Without
      // CONFIG_ANON_VMA_NAME nothing has a name and this fails: fine.)
      (void)::prctl(0x53564d41 /*PR_SET_VMA*/, 0 /*PR_SET_VMA_ANON_NAME*/, at, len, nullptr);
    }
    if (make_huge) {
      const HugeCount n = MakeHuge(mm, v, at);
      if (huge) {
        huge->asked += n.asked;
        huge->made += n.made;
        huge->seconds += n.seconds;
      }
    }
    if (has_pages) {
      for (int r = first_run; r < ri; ++r)
        if (eager(mm.runs(r))) jobs.push_back({&mm.runs(r), at + (mm.runs(r).vaddr() - v.start()), &pages});
      for (int r = first_parent_run; r < pi; ++r) {
        const image::PageRun& run = mm.parent_runs(r);
        if (!eager(run)) continue;
        const image::PageSource* src =
            run.depth() >= 1 && run.depth() <= parents.size() ? parents[run.depth() - 1] : nullptr;
        if (src == nullptr || !src->valid()) return Status::Error("internal: no page file of parent image " + std::to_string(run.depth()) +
                                         " for the pages at " + Hex(run.vaddr()));
        jobs.push_back({&run, at + (run.vaddr() - v.start()), src});
      }
    }
    if (has_pages || !inherited.empty()) finals.push_back({at, len, prot});
    if (HasVmFlag(v, "lo")) locks.push_back({at, len, prot, HasVmFlag(v, "lf")});
    moves->push_back({at, v.start(), len});
    if (v.kind() == image::VMA_ANON_PRIVATE) inheritable->push_back({v.start(), v.end(), at});
  }
  CRYO_RETURN_IF_ERROR(Fill(jobs, threads));
  for (const Advice& a : thp_advice)
    if (::madvise(reinterpret_cast<void*>(a.addr), a.len, a.advice) != 0)
      return Status::FromErrno("madvise " + *a.flag + " on the premapped VMA at " + Hex(a.addr));
  // Once the content is in, before mlock: MADV_GUARD_INSTALL refuses a locked
  // VMA (EINVAL, madvise(2)).
  for (size_t i = 0, m = 0; mm.guard_regions_size() && i < static_cast<size_t>(mm.vmas_size()); ++i) {
    const image::Vma& v = mm.vmas(static_cast<int>(i));
    if (!IsPremapped(v)) continue;
    CRYO_RETURN_IF_ERROR(InstallGuardRegions(mm, v, (*moves)[first_move + m++].from));
  }
  for (const Final& f : finals)
    if (::mprotect(reinterpret_cast<void*>(f.addr), f.len, f.prot) != 0) return Status::FromErrno("mprotect of a premapped VMA");
  // Locked once filled, with its final protection; mremap keeps a VMA locked.
  // The helper still runs as root (CAP_IPC_LOCK), so RLIMIT_MEMLOCK, which
  // mlock alone checks, does not stop it (mlock(2)).
  // A PROT_NONE VMA is locked but cannot be populated: ENOMEM, as for the
  // original (__mm_populate in mm/gup.c).
  for (const Lock& l : locks)
    if (::syscall(SYS_mlock2, l.addr, l.len, l.on_fault ? MLOCK_ONFAULT : 0) != 0 &&
        !(errno == ENOMEM && l.prot == PROT_NONE))
      return Status::FromErrno("mlock of the premapped VMA of " + Hex(l.len >> 10) + " KiB at " + Hex(l.addr));
  return Status::Ok();
}

Status HideFromChildren(const std::vector<restorer::Move>& moves, const std::vector<image::PageRange>& wanted) {
  for (const restorer::Move& m : moves) {
    bool needed = false;
    for (const image::PageRange& r : wanted)
      needed |= r.vaddr() < m.to + m.len && m.to < r.vaddr() + r.npages() * kPage;
    if (!needed && ::madvise(reinterpret_cast<void*>(m.from), m.len, MADV_DONTFORK) != 0)
      return Status::FromErrno("MADV_DONTFORK on the premapped VMA at " + Hex(m.to));
  }
  return Status::Ok();
}

Status ApplyForkAdvice(const image::Mm& mm, const std::vector<restorer::Move>& moves) {
  size_t i = 0;
  for (const image::Vma& v : mm.vmas()) {
    if (!IsPremapped(v)) continue;
    if (i >= moves.size()) return Status::Error("fork advice: more VMAs than premapped places");
    void* at = reinterpret_cast<void*>(moves[i].from);
    const uint64_t len = moves[i++].len;
    bool dontfork = false, wipe = false;
    for (const std::string& f : v.vm_flags()) {
      dontfork |= f == "dc";
      wipe |= f == "wf";
    }
    if (::madvise(at, len, dontfork ? MADV_DONTFORK : MADV_DOFORK) != 0)
      return Status::FromErrno("fork advice on " + VmaName(v));
    if (wipe && ::madvise(at, len, MADV_WIPEONFORK) != 0) return Status::FromErrno("MADV_WIPEONFORK on " + VmaName(v));
  }
  return Status::Ok();
}

Status PlanSpecialMoves(const image::Mm& mm, const std::vector<proc::Vma>& own, std::vector<restorer::Move>* moves) {
  const image::Vma* target_vdso = nullptr;
  const proc::Vma* own_vdso = nullptr;
  for (const image::Vma& v : mm.vmas())
    if (v.kind() == image::VMA_VDSO) target_vdso = &v;
  for (const proc::Vma& v : own)
    if (v.name == "[vdso]") own_vdso = &v;
  if (!target_vdso) return Status::Ok();  // the helper's own vDSO is simply unmapped
  if (!own_vdso) return Status::Error("this process has no vDSO, the image's process had one");
  const int64_t delta = static_cast<int64_t>(target_vdso->start()) - static_cast<int64_t>(own_vdso->start);
  for (const image::Vma& v : mm.vmas()) {
    if (v.kind() != image::VMA_VDSO && v.kind() != image::VMA_VVAR && v.kind() != image::VMA_VVAR_VCLOCK) continue;
    auto it = std::find_if(own.begin(), own.end(), [&](const proc::Vma& o) { return o.name == v.name(); });
    if (it == own.end() || it->end - it->start != v.end() - v.start() ||
        static_cast<int64_t>(v.start()) - static_cast<int64_t>(it->start) != delta)
      return Status::Error("the vDSO layout of this kernel differs from the image's (" + v.name() +
                           "); restoring on a different kernel is not supported yet");
    moves->push_back({it->start, v.start(), v.end() - v.start()});
  }
  return Status::Ok();
}

}  // namespace cryo
