// Memory, per VMA: every /proc/PID/smaps key (proc_pid_smaps(5)), every
// VmFlags mnemonic (fs/proc/task_mmu.c show_smap_vma_flags; "gu", "dp" and
// "sl" checked on this kernel with MADV_GUARD_INSTALL, MAP_DROPPABLE and
// mseal), and each VMA's NUMA policy from /proc/PID/numa_maps. The VMA kinds
// themselves (file, anonymous, shared memory, special) are classified by
// DescribeVmas (mem/vma_dump.cc), which refuses the kinds it does not know.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <string>

#include "audit/classify.h"
#include "base/file_util.h"
#include "base/tracked_memory.h"
#include "mem/pagemap_scan.h"

namespace cryo::audit {

namespace {

constexpr Verdict R = Verdict::kRestored;
constexpr Verdict N = Verdict::kNotState;
constexpr Verdict X = Verdict::kRefused;

bool Special(std::string_view name) {
  return name == "[vdso]" || name == "[vvar]" || name == "[vvar_vclock]" || name == "[vsyscall]";
}

// Flags the kernel sets on its own special mappings ([vdso], [vvar], ...),
// which cryo moves into place; on any other mapping they mean device memory.
// The names of the hugetlbfs files the kernel makes itself (hugetlb_file_setup,
// fs/hugetlbfs/inode.c): anonymous hugetlb memory, a hugetlb memfd, a SysV
// SHM_HUGETLB segment. cryo restores these (mem/hugetlb.h).
constexpr std::string_view kAnonHugepage = "/anon_hugepage";

bool KernelHugetlbFile(std::string_view name) {
  return name == kAnonHugepage || name.starts_with("/memfd:") || name.starts_with("/SYSV");
}

Decision KernelMappingFlag(const Line& l) {
  if (Special(l.vma_name)) return {R, "set by the kernel on its special mapping, which is moved into place"};
  // VM_DONTEXPAND, which hugetlbfs_file_mmap sets on every hugetlb mapping.
  if (l.key == "de" && l.hugetlb)
    return {R, "set by the kernel on hugetlb memory, mapped again so"};
  // VM_DONTEXPAND, which aio_ring_mmap sets on an AIO context's ring.
  if (l.key == "de" && l.vma_name == "/[aio]")
    return {R, "is the ring of a Linux AIO context (io_setup(2); VmFlags de): made again by io_setup and moved into "
               "place, once proven idle at the dump (mem/aio_ring.h)"};
  return {X, "maps device or driver memory (VmFlags " + std::string(l.key) + "), which cannot be checkpointed"};
}

// "uw": the program's own userfaultfd is refused; cryo's dirty tracking
// (mem/dirty_tracker.h) is not state (the restored tree is not tracked).
Decision UffdWriteProtect(const Line& l) {
  if (IsTrackedByCryo(l.pid, l.vma_start, l.vma_end))
    return {N, "registered with cryo's own dirty tracking (cryo dump --track-mem), not the program's"};
  return {X, "is registered with a userfaultfd for write protection (VmFlags uw), not supported yet"};
}

// "ht": anonymous hugetlb memory, hugetlb memfds, SysV segments and files of
// a hugetlbfs mount are restored, shared or private (mem/hugetlb.h).
Decision Hugetlb(const Line& l) {
  if (l.vma_name == kAnonHugepage)
    return {R, "anonymous hugetlb memory: mapped again with its page size (MAP_HUGETLB, mem/hugetlb.cc); shared: a "
               "shared memory object with its content (mem/shm_dump.h)"};
  if (KernelHugetlbFile(l.vma_name))
    return {R, "a hugetlb memfd or SysV segment: a shared memory object with its page size and content "
               "(MFD_HUGETLB, SHM_HUGETLB; mem/hugetlb.h)"};
  return {R, "a file of a hugetlbfs mount: kept like POSIX shared memory, by path, with its page size and content "
             "(mem/hugetlb.h); private mappings with the huge pages they copied on write"};
}

// "gu": guard pages are read from pagemap where the kernel tells them apart
// (mem/guard_regions.h), else refused.
Decision GuardRegions(const Line&) {
  if (GuardRegionsVisible())
    return {R, "may hold guard regions: found in pagemap and installed again (MADV_GUARD_INSTALL, mem/guard_regions.h)"};
  return {X, "may hold guard regions (MADV_GUARD_INSTALL; VmFlags gu), which this kernel's pagemap does not tell apart "
             "(PAGE_IS_GUARD and pagemap bit 58: Linux 6.15)"};
}

constexpr std::string_view kProt = "protection and sharing (mmap and mprotect in the restore helper)";

constexpr Rule kVmFlagRules[] = {
    {"rd", R, kProt},
    {"wr", R, kProt},
    {"ex", R, kProt},
    {"sh", R, kProt},
    {"mr", R, kProt},
    {"mw", R, "may be made writable: the file's open mode (mw) and copy-on-write (mmap)"},
    {"me", R, kProt},
    {"ms", R, kProt},
    {"gd", R, "MAP_GROWSDOWN (mmap)"},
    {"pf", N, "", KernelMappingFlag},
    {"io", N, "", KernelMappingFlag},
    {"de", N, "", KernelMappingFlag},
    {"ar", N, "", KernelMappingFlag},
    {"mm", N, "", KernelMappingFlag},
    {"lo", R, "locked (mlock2 on the filled premap, as root, before the credentials are switched)"},
    {"lf", R, "locked on fault (mlock2 MLOCK_ONFAULT)"},
    {"sr", R, "MADV_SEQUENTIAL (madvise)"},
    {"rr", R, "MADV_RANDOM (madvise)"},
    {"dc", R, "MADV_DONTFORK (madvise after the children are cloned)"},
    {"ac", R, "accounted memory: the kernel accounts the mapping again when it is made"},
    {"nr", R, "MAP_NORESERVE (mmap; also of a shared memory object)"},
    {"ht", X, "", Hugetlb},
    {"sf", X, "is a synchronous DAX mapping (MAP_SYNC; VmFlags sf), not supported"},
    {"wf", R, "MADV_WIPEONFORK (madvise after the children are cloned)"},
    {"dd", R, "MADV_DONTDUMP (madvise)"},
    {"sd", N, "soft-dirty tracking, set on every new mapping"},
    {"hg", R, "MADV_HUGEPAGE (madvise)"},
    {"nh", R, "MADV_NOHUGEPAGE (madvise)"},
    {"mg", R, "MADV_MERGEABLE (madvise)"},
    {"um", X, "is registered with a userfaultfd (VmFlags um), not supported yet"},
    {"uw", X, "", UffdWriteProtect},
    {"ui", X, "is registered with a userfaultfd for minor faults (VmFlags ui), not supported yet"},
    {"ss", X, "is a shadow stack (VmFlags ss), not supported yet"},
    {"dp", R, "MAP_DROPPABLE (mmap)"},
    {"sl", R, "sealed (mseal by cryo, from inside the process, once everything is in place)"},
    {"gu", R, "", GuardRegions},
};

Decision ProtectionKey(const Line& l) {
  if (l.value == "0") return {N, "the default protection key"};
  return {X, "uses memory protection key " + std::string(l.value) + " (pkey_mprotect), which is not restored yet"};
}

constexpr std::string_view kMemStat = "memory accounting";

constexpr Rule kSmapsRules[] = {
    {"Size", N, kMemStat},
    {"KernelPageSize", N, "page size (hugetlb VMAs: classified by their flags, the size restored with them)"},
    {"MMUPageSize", N, "page size (hugetlb VMAs: classified by their flags, the size restored with them)"},
    {"Rss", N, kMemStat},
    {"Pss", N, kMemStat},
    {"Pss_Dirty", N, kMemStat},
    {"Pss_Anon", N, kMemStat},
    {"Pss_File", N, kMemStat},
    {"Pss_Shmem", N, kMemStat},
    {"Shared_Clean", N, kMemStat},
    {"Shared_Dirty", N, kMemStat},
    {"Private_Clean", N, kMemStat},
    {"Private_Dirty", N, kMemStat},
    {"Referenced", N, kMemStat},
    {"Anonymous", N, kMemStat},
    {"KSM", N, "pages merged by KSM (their content is stored)"},
    {"LazyFree", N, "pages freed with MADV_FREE but still there: stored with their content"},
    {"AnonHugePages", R, "transparent huge pages: Mm.huge_ranges, made huge again at restore (mem/thp.h)"},
    {"ShmemPmdMapped", N, kMemStat},
    {"FilePmdMapped", N, kMemStat},
    {"Shared_Hugetlb", N, kMemStat},
    {"Private_Hugetlb", N, kMemStat},
    {"Swap", N, "swapped-out pages (stored like present ones)"},
    {"SwapPss", N, kMemStat},
    {"Locked", N, "locked memory (classified by the lo flag)"},
    {"THPeligible", N, "whether huge pages may back it (derived from the flags)"},
    {"ProtectionKey", N, "", ProtectionKey},
};

std::string VmaSubject(pid_t pid, const proc::Vma& v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%" PRIx64 "-%" PRIx64, v.start, v.end);
  return "pid " + std::to_string(pid) + " VMA " + buf + (v.name.empty() ? "" : " (" + v.name + ")");
}

}  // namespace

std::span<const Rule> VmFlagRules() { return kVmFlagRules; }

Status ClassifySmaps(std::string_view text, pid_t pid, const Baseline& cryo, Report* report) {
  std::string subject;
  std::string name;
  uint64_t vma_start = 0, vma_end = 0;
  bool in_vma = false;
  for (std::string_view raw : SplitLines(text)) {
    if (Trim(raw).empty()) continue;
    const std::string_view first = SplitWords(raw).front();
    if (!first.ends_with(':')) {
      CRYO_ASSIGN_OR_RETURN(std::vector<proc::Vma> header, proc::ParseMaps(raw));
      subject = VmaSubject(pid, header.front());
      name = header.front().name;
      vma_start = header.front().start;
      vma_end = header.front().end;
      in_vma = true;
      continue;
    }
    if (!in_vma) return Status::Error("smaps line before any VMA: \"" + std::string(raw) + "\"");
    const size_t colon = raw.find(':');
    const std::string_view key = Trim(raw.substr(0, colon)), value = Trim(raw.substr(colon + 1));
    if (key != "VmFlags") {
      ClassifyLine(kSmapsRules, "smaps", subject, Line{key, value, &cryo, name}, report);
      continue;
    }
    const std::vector<std::string_view> flags = SplitWords(value);
    const bool hugetlb = std::find(flags.begin(), flags.end(), "ht") != flags.end();
    for (std::string_view flag : flags)
      ClassifyLine(kVmFlagRules, "VmFlags", subject, Line{flag, "", &cryo, name, pid, vma_start, vma_end, hugetlb},
                   report);
  }
  return Status::Ok();
}

Status ClassifyNumaMaps(std::string_view text, pid_t pid, Report* report) {
  for (std::string_view raw : SplitLines(text)) {
    std::vector<std::string_view> w = SplitWords(raw);
    if (w.empty()) continue;
    if (w.size() < 2) return Status::Error("malformed numa_maps line \"" + std::string(raw) + "\"");
    const std::string subject = "pid " + std::to_string(pid) + " VMA at " + std::string(w[0]);
    if (w[1] == "default") {
      report->Tally(subject, "numa_maps", "policy", N);
      continue;
    }
    report->Add(subject, "numa_maps", "policy", std::string(w[1]), X,
                "has the NUMA memory policy \"" + std::string(w[1]) +
                    "\" (mbind, set_mempolicy), which is not restored yet");
  }
  return Status::Ok();
}

}  // namespace cryo::audit
