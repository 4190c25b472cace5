// mm-PID.img: Mm, Vma, FileId of a mapping, PageRun, PageRange (inherited, huge).
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "image/validate_internal.h"

namespace cryo::image::validate {

namespace {

constexpr uint64_t kMaxRunPages = (4u << 20) / kPageSize;
constexpr uint32_t kMapDroppable = 0x08;  // MAP_DROPPABLE (Linux 6.11)

const char* SpecialName(VmaKind k) {
  switch (k) {
    case VMA_VDSO: return "[vdso]";
    case VMA_VVAR: return "[vvar]";
    case VMA_VVAR_VCLOCK: return "[vvar_vclock]";
    case VMA_VSYSCALL: return "[vsyscall]";
    default: return nullptr;
  }
}

bool HasFlag(const Vma& v, const char* f) {
  return std::find(v.vm_flags().begin(), v.vm_flags().end(), f) != v.vm_flags().end();
}

// PR_SET_VMA_ANON_NAME takes printable ASCII but \ ` $ [ ] (mm/madvise.c),
// at most 80 bytes.
bool ValidAnonName(const std::string& n) {
  if (n.size() > 80) return false;
  for (unsigned char c : n)
    if (c < 0x20 || c > 0x7e || c == '\\' || c == '`' || c == '$' || c == '[' || c == ']') return false;
  return true;
}

// Pages a VMA of this kind keeps in the page file.
bool StoresPages(VmaKind k) { return k == VMA_ANON_PRIVATE || k == VMA_ANON_SHARED || k == VMA_FILE_PRIVATE; }

// An AIO context's ring (mem/aio_ring.h): as io_setup maps it, read-write
// and shared, one slot's room per slot and the header's, idle (head == tail).
std::string AioRingProblem(const Vma& v) {
  const AioRing& r = v.aio_ring();
  if (!v.has_aio_ring() || r.nr() == 0 || r.head() >= r.nr() || r.tail() >= r.nr() || r.head() != r.tail())
    return "an AIO ring whose size or position is missing or not that of an idle ring";
  if (v.end() <= v.start() || v.end() > kUserTop || v.start() % kPageSize ||
      v.end() - v.start() != (uint64_t{r.nr()} + 1) * 32)
    return "an AIO ring of " + std::to_string(r.nr()) + " slots in a range not of its size";
  if (v.prot() != (PROT_READ | PROT_WRITE) || v.flags() != MAP_SHARED || v.pgoff() || v.name() != "/[aio]" ||
      v.has_file() || v.shmem_id() || v.shm_object() || v.unlinked_file())
    return "an AIO ring not mapped as io_setup maps it";
  return "";
}

std::string VmaProblem(const Vma& v) {
  const VmaKind k = v.kind();
  if (k == VMA_AIO_RING) return AioRingProblem(v);
  if (k < VMA_ANON_PRIVATE || k > VMA_VSYSCALL) return "kind " + std::to_string(k) + " unknown";
  const uint64_t len = v.end() - v.start();
  if (k == VMA_VSYSCALL) {
    if (v.start() != kVsyscallStart || len != kPageSize) return "[vsyscall] not at its fixed address";
  } else if (v.end() > kUserTop) {
    return "range ends beyond user space";
  }
  if (v.prot() & ~7u) return "protection " + Hex(v.prot()) + " unknown";
  const bool anon = k == VMA_ANON_PRIVATE || k == VMA_ANON_SHARED;
  const bool shared = k == VMA_ANON_SHARED || k == VMA_FILE_SHARED;
  // MAP_DROPPABLE (0x08, "dp"): a mapping type of its own, private anonymous
  // memory only (mm/mmap.c do_mmap).
  const bool droppable = HasFlag(v, "dp");
  if (droppable && k != VMA_ANON_PRIVATE) return "VmFlags dp (MAP_DROPPABLE) on memory that is not private anonymous";
  const uint32_t want = (droppable ? kMapDroppable : shared ? MAP_SHARED : MAP_PRIVATE) | (anon ? MAP_ANONYMOUS : 0);
  if ((v.flags() & ~static_cast<uint32_t>(MAP_GROWSDOWN)) != want && SpecialName(k) == nullptr)
    return "mmap flags " + Hex(v.flags()) + " do not fit its kind (" + Hex(want) + ")";
  // mlock on fault ("lf") is a variant of mlock ("lo"), never alone (VM_LOCKONFAULT).
  if (HasFlag(v, "lf") && !HasFlag(v, "lo")) return "VmFlags lf (lock on fault) without lo";
  if (HasFlag(v, "sr") && HasFlag(v, "rr")) return "VmFlags sr and rr together (MADV_SEQUENTIAL and MADV_RANDOM exclude each other)";
  if (SpecialName(k) && (v.flags() != MAP_PRIVATE || v.pgoff()))
    return "mmap flags " + Hex(v.flags()) + " or a file offset on a kernel mapping";
  // An anonymous mapping has no file offset; a private /dev/zero mapping, made
  // anonymous again, shows the one it had.
  // hugetlb memory: a page size of x86-64 (2 MiB, 1 GiB), private anonymous
  // memory or a shared mapping of a shared memory object (feature
  // hugetlb-shared; its page size is checked against the object's in
  // validate_shared.cc), aligned to it; a part of a split mapping shows its
  // offset in the mapping's hugetlbfs file.
  const uint64_t huge = v.huge_page_size();
  const bool huge_kind = k == VMA_ANON_PRIVATE || ((shared || k == VMA_FILE_PRIVATE) && v.shm_object());
  if (huge && (!huge_kind || (huge != (2ull << 20) && huge != (1ull << 30)) || v.start() % huge ||
               v.end() % huge || v.pgoff() % huge || droppable))
    return "huge page size " + Hex(huge) + " on memory that is not anonymous or shared memory aligned to it";
  if (k == VMA_ANON_PRIVATE && v.pgoff() && v.name() != "/dev/zero" && !huge) return "a file offset on anonymous memory";
  if (((v.flags() & MAP_GROWSDOWN) != 0) != HasFlag(v, "gd")) return "MAP_GROWSDOWN and VmFlags gd disagree";
  if (v.pgoff() % kPageSize || v.pgoff() > (1ull << 62) || len > (1ull << 62) - v.pgoff())
    return "file offset " + Hex(v.pgoff()) + " unaligned or too large";
  std::set<std::string> flags;
  for (const std::string& f : v.vm_flags()) {
    if (f.size() != 2 || !std::all_of(f.begin(), f.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }) ||
        !flags.insert(f).second)
      return "VmFlags entry \"" + Printable(f) + "\" invalid or listed twice";
  }
  if (HasFlag(v, "rd") != ((v.prot() & PROT_READ) != 0) || HasFlag(v, "wr") != ((v.prot() & PROT_WRITE) != 0) ||
      HasFlag(v, "ex") != ((v.prot() & PROT_EXEC) != 0))
    return "VmFlags rd/wr/ex disagree with the protection";
  // VM_MAYSHARE ("ms"): every MAP_SHARED mapping; VM_SHARED ("sh") only
  // those that may write.
  if (!SpecialName(k) && (HasFlag(v, "ms") != shared || (HasFlag(v, "sh") && !shared)))
    return "VmFlags ms/sh disagree with its kind";
  if (v.file_writable() != HasFlag(v, "mw")) return "file_writable disagrees with VmFlags mw";
  if (const char* special = SpecialName(k)) {
    if (v.name() != special) return "a kernel mapping named \"" + Printable(v.name()) + "\"";
    if (v.has_file() || v.shmem_id() || v.shm_object()) return "a kernel mapping with a file or shared object";
  } else if (anon && v.shm_object()) {
    // Shared anonymous memory stored whole (feature anon-shmem): the object's
    // inode as its file, named /dev/zero as maps shows it (without " (deleted)").
    if (k != VMA_ANON_SHARED) return "private anonymous memory naming a shared memory object";
    if (v.name() != (huge ? "/anon_hugepage" : "/dev/zero"))
      return "shared anonymous memory named \"" + Printable(v.name()) + "\", not /dev/zero (/anon_hugepage if hugetlb)";
    if (v.shmem_id() != v.file().ino()) return "shmem id " + Hex(v.shmem_id()) + " is not its object's inode";
  } else if (anon) {
    if (v.has_file() || v.shm_object()) return "anonymous memory with a file";
    if (v.name().rfind("[anon:", 0) == 0 &&
        (v.name().back() != ']' || !ValidAnonName(v.name().substr(6, v.name().size() - 7))))
      return "anonymous memory name \"" + Printable(v.name()) + "\" that cannot be given again";
    if (v.name().size() >= kPathMax || v.name().find('\0') != std::string::npos) return "name too long or with a NUL";
  } else {
    if (std::string p = PathProblem(v.file().path()); !p.empty()) return "file path " + p;
    if (v.file().path() != v.name()) return "file path and maps name differ";
    if (!S_ISREG(v.file().mode())) return "mapped file mode " + Hex(v.file().mode()) + " is not a regular file's";
  }
  if (v.shmem_id() && k != VMA_ANON_SHARED) return "a shmem id on memory that is not shared anonymous";
  // Content hashes are taken of the files of executable mappings that are
  // reopened by path (file_facts.h).
  if (v.file().has_content_xxh3() &&
      ((k != VMA_FILE_PRIVATE && k != VMA_FILE_SHARED) || !(v.prot() & PROT_EXEC) || v.shm_object() || v.unlinked_file()))
    return "a content hash on a mapping that is not an executable mapping of a file reopened by path";
  // The open mode of a private file mapping's file (reopened read-write).
  if (v.file_opened_rw() && k != VMA_FILE_PRIVATE && k != VMA_FILE_SHARED)
    return "file_opened_rw on a mapping without a file";
  return "";
}

}  // namespace

// A range of guard, inherited or huge pages: whole pages of `align` bytes
// (aligned), not empty, below kUserTop, and after the range before, which
// ended at *prev_end (advanced to this one's end). Else what is wrong (": ...").
static std::string RangeProblem(const PageRange& r, uint64_t align, uint64_t* prev_end) {
  if (r.vaddr() % align || r.npages() == 0 || r.npages() % (align / kPageSize) || r.vaddr() >= kUserTop ||
      r.npages() > (kUserTop - r.vaddr()) / kPageSize)
    return ": malformed range";
  if (r.vaddr() < *prev_end) return ": ranges out of order or overlapping";
  *prev_end = r.vaddr() + r.npages() * kPageSize;
  return "";
}

// Guard pages: in address order, not overlapping, each range inside one VMA
// the restore maps again (not [vdso] and its kin), holding no stored page.
static Status ValidateGuardRegions(const LoadedImage& img, const std::string& file, const Mm& mm) {
  uint64_t prev_end = 0;
  int vi = 0, ri = 0, pi = 0;
  for (const PageRange& r : mm.guard_regions()) {
    const std::string what = "guard region at " + Hex(r.vaddr());
    if (std::string problem = RangeProblem(r, kPageSize, &prev_end); !problem.empty()) return Bad(img, file, what + problem);
    const uint64_t end = prev_end;
    while (vi < mm.vmas_size() && mm.vmas(vi).end() <= r.vaddr()) ++vi;
    if (vi == mm.vmas_size() || r.vaddr() < mm.vmas(vi).start() || end > mm.vmas(vi).end() ||
        SpecialName(mm.vmas(vi).kind()))
      return Bad(img, file, what + ": not inside one VMA the restore maps");
    while (ri < mm.runs_size() && mm.runs(ri).vaddr() + mm.runs(ri).npages() * kPageSize <= r.vaddr()) ++ri;
    if (ri < mm.runs_size() && mm.runs(ri).vaddr() < end) return Bad(img, file, what + ": its pages are also stored");
    while (pi < mm.parent_runs_size() && mm.parent_runs(pi).vaddr() + mm.parent_runs(pi).npages() * kPageSize <= r.vaddr()) ++pi;
    if (pi < mm.parent_runs_size() && mm.parent_runs(pi).vaddr() < end)
      return Bad(img, file, what + ": its pages are also stored in a parent image");
  }
  return Status::Ok();
}

Status ValidateMm(const LoadedImage& img, const Index& index, int pid, const ProcessImage& p) {
  (void)index;
  const Mm& mm = p.mm;
  const std::string file = MmName(pid);
  uint64_t prev_end = 0;
  std::set<VmaKind> specials;
  for (const Vma& v : mm.vmas()) {
    const std::string what = "VMA " + Hex(v.start()) + "-" + Hex(v.end());
    if (v.start() >= v.end() || v.start() % kPageSize || v.end() % kPageSize)
      return Bad(img, file, "invalid VMA range " + Hex(v.start()) + "-" + Hex(v.end()));
    if (v.start() < prev_end) return Bad(img, file, "VMAs overlap or are out of order at " + Hex(v.start()));
    prev_end = v.end();
    if (std::string pr = VmaProblem(v); !pr.empty()) return Bad(img, file, what + ": " + pr);
    if (SpecialName(v.kind()) && !specials.insert(v.kind()).second)
      return Bad(img, file, what + ": a second " + SpecialName(v.kind()));
  }
  // Runs: in address order, each inside one VMA that keeps pages, at most 4
  // MiB, back to back in the page file from 4096 on.
  uint64_t expect_off = kPageDataOffset, pages = 0, prev_run_end = 0;
  std::vector<uint64_t> stored(mm.vmas_size()), inherited(mm.vmas_size());
  int vi = 0;
  for (const PageRun& r : mm.runs()) {
    const std::string what = "page run at " + Hex(r.vaddr());
    if (r.offset() != expect_off || r.npages() == 0 || r.vaddr() % kPageSize || r.npages() > kMaxRunPages)
      return Bad(img, file, what + ": page runs are malformed");
    // Only parent_runs name an ancestor's page file.
    if (r.depth() != 0) return Bad(img, file, what + ": a run of this image's own page file names an ancestor (depth)");
    const uint64_t end = r.vaddr() + r.npages() * kPageSize;
    if (r.vaddr() < prev_run_end || end < r.vaddr()) return Bad(img, file, what + ": page runs out of order");
    prev_run_end = end;
    while (vi < mm.vmas_size() && mm.vmas(vi).end() <= r.vaddr()) ++vi;
    if (vi == mm.vmas_size() || r.vaddr() < mm.vmas(vi).start() || end > mm.vmas(vi).end())
      return Bad(img, file, what + ": a page run lies outside every VMA");
    if (!StoresPages(mm.vmas(vi).kind()) || (mm.vmas(vi).kind() == VMA_ANON_SHARED && mm.vmas(vi).shm_object()))
      return Bad(img, file, what + ": pages stored for a VMA whose content is not in the page file");
    stored[vi] += r.npages();
    expect_off += r.npages() * kPageSize;
    pages += r.npages();
  }
  if (pages != mm.total_pages()) return Bad(img, file, "page count does not match the page runs");
  // Runs in an ancestor's page file: in address order, each inside one VMA
  // that keeps pages, apart from the runs stored here (their place in the
  // ancestor's file is checked when it is opened, parent_chain.h).
  prev_run_end = 0;
  vi = 0;
  int own = 0;
  for (const PageRun& r : mm.parent_runs()) {
    const std::string what = "page run at " + Hex(r.vaddr()) + " in a parent image";
    if (r.npages() == 0 || r.vaddr() % kPageSize || r.npages() > kMaxRunPages || r.depth() == 0)
      return Bad(img, file, what + ": malformed");
    const uint64_t end = r.vaddr() + r.npages() * kPageSize;
    if (r.vaddr() < prev_run_end || end < r.vaddr()) return Bad(img, file, what + ": out of order");
    prev_run_end = end;
    while (vi < mm.vmas_size() && mm.vmas(vi).end() <= r.vaddr()) ++vi;
    if (vi == mm.vmas_size() || r.vaddr() < mm.vmas(vi).start() || end > mm.vmas(vi).end() ||
        !StoresPages(mm.vmas(vi).kind()) || mm.vmas(vi).shm_object())
      return Bad(img, file, what + ": not inside a VMA whose pages are stored");
    while (own < mm.runs_size() && mm.runs(own).vaddr() + mm.runs(own).npages() * kPageSize <= r.vaddr()) ++own;
    if (own < mm.runs_size() && mm.runs(own).vaddr() < end) return Bad(img, file, what + ": also stored here");
  }
  // Inherited pages: in address order, inside private anonymous VMAs, apart
  // from the runs; the parent has each such VMA's range in one of its own.
  prev_end = 0;
  int ri = 0;
  vi = 0;
  for (const PageRange& r : mm.inherited()) {
    const std::string what = "inherited pages at " + Hex(r.vaddr());
    if (pid == img.inventory.root_pid()) return Bad(img, file, what + ": the root has no parent in the image");
    if (std::string problem = RangeProblem(r, kPageSize, &prev_end); !problem.empty()) return Bad(img, file, what + problem);
    const uint64_t end = prev_end;
    while (ri < mm.runs_size() && mm.runs(ri).vaddr() + mm.runs(ri).npages() * kPageSize <= r.vaddr()) ++ri;
    if (ri < mm.runs_size() && mm.runs(ri).vaddr() < end) return Bad(img, file, what + ": they are also stored here");
    // A range may span adjacent private anonymous VMAs (split by mlock or
    // madvise); the parent has each one's range in one of its own.
    while (vi < mm.vmas_size() && mm.vmas(vi).end() <= r.vaddr()) ++vi;
    const Mm& parent = img.processes.at(p.core.ppid()).mm;
    // The dump counts a range's pages on the VMA it starts in (page_dump.cc).
    if (vi < mm.vmas_size()) inherited[vi] += r.npages();
    for (uint64_t at = r.vaddr(); at < end; ++vi) {
      if (vi == mm.vmas_size() || at < mm.vmas(vi).start() || mm.vmas(vi).kind() != VMA_ANON_PRIVATE)
        return Bad(img, file, what + ": not inside private anonymous VMAs");
      const Vma& v = mm.vmas(vi);
      if (std::none_of(parent.vmas().begin(), parent.vmas().end(), [&](const Vma& pv) {
            return pv.kind() == VMA_ANON_PRIVATE && pv.start() <= v.start() && v.end() <= pv.end();
          }))
        return Bad(img, file, what + ": the parent " + std::to_string(p.core.ppid()) +
                                  " has no private anonymous VMA holding " + Hex(v.start()) + "-" + Hex(v.end()));
      at = std::min(end, v.end());
      if (at < end && vi + 1 < mm.vmas_size() && mm.vmas(vi + 1).start() != at)
        return Bad(img, file, what + ": not inside private anonymous VMAs");
    }
    --vi;
  }
  // Huge pages: whole 2 MiB ones, in address order, each range inside one
  // private anonymous VMA.
  constexpr uint64_t kHuge = 2ull << 20;
  prev_end = 0;
  vi = 0;
  for (const PageRange& r : mm.huge_ranges()) {
    const std::string what = "huge pages at " + Hex(r.vaddr());
    if (std::string problem = RangeProblem(r, kHuge, &prev_end); !problem.empty()) return Bad(img, file, what + problem);
    const uint64_t end = prev_end;
    while (vi < mm.vmas_size() && mm.vmas(vi).end() <= r.vaddr()) ++vi;
    if (vi == mm.vmas_size() || r.vaddr() < mm.vmas(vi).start() || end > mm.vmas(vi).end() ||
        mm.vmas(vi).kind() != VMA_ANON_PRIVATE)
      return Bad(img, file, what + ": not inside one private anonymous VMA");
  }
  CRYO_RETURN_IF_ERROR(ValidateGuardRegions(img, file, mm));
  for (int i = 0; i < mm.vmas_size(); ++i)
    if (mm.vmas(i).stored_pages() != stored[i] || mm.vmas(i).inherited_pages() != inherited[i])
      return Bad(img, file, "VMA " + Hex(mm.vmas(i).start()) + ": its page counts disagree with the runs and inherited pages");
  return Status::Ok();
}

}  // namespace cryo::image::validate
