#include "mem/vma_dump.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "image/format.h"
#include "mem/cow_share.h"
#include "mem/pagemap_scan.h"
#include "mem/shm_dump.h"

namespace cryo {

namespace {

std::string VmaName(const proc::Vma& v) {
  char buf[64];
  snprintf(buf, sizeof(buf), "%" PRIx64 "-%" PRIx64, v.start, v.end);
  return std::string("VMA ") + buf + (v.name.empty() ? "" : " (" + v.name + ")");
}

Status FileIdentity(pid_t pid, const proc::Vma& v, image::FileId* id) {
  char buf[64];
  snprintf(buf, sizeof(buf), "/map_files/%" PRIx64 "-%" PRIx64, v.start, v.end);
  const std::string link = "/proc/" + std::to_string(pid) + buf;
  struct stat st;
  if (::stat(link.c_str(), &st) != 0) return Status::FromErrno("stat " + link + " for " + VmaName(v));
  id->set_path(v.name);
  id->set_dev(st.st_dev);
  id->set_ino(st.st_ino);
  id->set_size(static_cast<uint64_t>(st.st_size));
  id->set_mtime_ns(st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec);
  id->set_mode(st.st_mode);
  return Status::Ok();
}

// What cryo does with each VmFlags mnemonic (proc_pid_smaps(5), and
// show_smap_vma_flags() in fs/proc/task_mmu.c for the newer ones). A flag
// that is not in this table is refused: cryo cannot know whether it matters.
enum class VmFlagUse {
  kMapping,   // follows from what the restore maps (kind, protection, sharing) or only informs
  kRestored,  // restored (Vma.flags, madvise, mlock, mseal)
  kRefused,   // refused at dump, naming the VMA (special mappings excepted: found by name)
};
struct VmFlagRule {
  const char* flag;
  VmFlagUse use;
  const char* meaning;  // for refusals
};
constexpr VmFlagRule kVmFlagRules[] = {
    {"rd", VmFlagUse::kMapping, "readable"},
    {"wr", VmFlagUse::kMapping, "writable"},
    {"ex", VmFlagUse::kMapping, "executable"},
    {"sh", VmFlagUse::kMapping, "shared"},
    {"mr", VmFlagUse::kMapping, "may read"},
    {"mw", VmFlagUse::kMapping, "may write"},  // Vma.file_writable
    {"me", VmFlagUse::kMapping, "may execute"},
    {"ms", VmFlagUse::kMapping, "may share"},
    {"ac", VmFlagUse::kMapping, "accountable"},  // private writable memory without "nr"
    {"sd", VmFlagUse::kMapping, "soft-dirty"},   // change tracking only; new mappings are soft-dirty
    {"dw", VmFlagUse::kMapping, "denies writes to the mapped file"},  // gone since Linux 5.15
    {"gd", VmFlagUse::kRestored, "grows down"},  // MAP_GROWSDOWN
    {"lo", VmFlagUse::kRestored, "locked"},      // mlock2
    {"lf", VmFlagUse::kRestored, "locked on fault"},  // MLOCK_ONFAULT
    {"sr", VmFlagUse::kRestored, "sequential read advice"},  // MADV_SEQUENTIAL
    {"rr", VmFlagUse::kRestored, "random read advice"},      // MADV_RANDOM
    {"dc", VmFlagUse::kRestored, "not copied on fork"},      // MADV_DONTFORK
    {"wf", VmFlagUse::kRestored, "wiped on fork"},           // MADV_WIPEONFORK
    {"dd", VmFlagUse::kRestored, "not in core dumps"},       // MADV_DONTDUMP
    {"hg", VmFlagUse::kRestored, "huge page advice"},        // MADV_HUGEPAGE
    {"nh", VmFlagUse::kRestored, "no huge page advice"},     // MADV_NOHUGEPAGE
    {"mg", VmFlagUse::kRestored, "mergeable (KSM)"},         // MADV_MERGEABLE
    {"nr", VmFlagUse::kRestored, "no swap space reserved"},  // MAP_NORESERVE
    {"dp", VmFlagUse::kRestored, "droppable"},               // MAP_DROPPABLE
    {"sl", VmFlagUse::kRestored, "sealed"},                  // mseal, at the end of the restore
    {"ht", VmFlagUse::kRefused, "hugetlbfs memory"},
    {"pf", VmFlagUse::kRefused, "device memory (VM_PFNMAP)"},
    {"io", VmFlagUse::kRefused, "device memory (VM_IO)"},
    {"mm", VmFlagUse::kRefused, "driver memory (VM_MIXEDMAP)"},
    {"de", VmFlagUse::kRefused, "a mapping its driver does not let grow (VM_DONTEXPAND)"},
    {"ar", VmFlagUse::kRefused, "architecture-specific memory (VM_ARCH_1)"},
    {"sf", VmFlagUse::kRefused, "DAX memory with synchronous page faults (MAP_SYNC)"},
    {"um", VmFlagUse::kRefused, "registered with a userfaultfd (missing pages)"},
    {"uw", VmFlagUse::kRefused, "registered with a userfaultfd (write protection)"},
    {"ui", VmFlagUse::kRefused, "registered with a userfaultfd (minor faults)"},
    {"ss", VmFlagUse::kRefused, "a shadow stack"},
    {"gu", VmFlagUse::kRefused, "memory with guard regions (MADV_GUARD_INSTALL)"},
    {"bt", VmFlagUse::kRefused, "BTI-guarded memory"},
    {"mt", VmFlagUse::kRefused, "memory with MTE tags"},
};

// Refuses a VMA with a flag cryo does not restore (not for the special
// mappings, which are recognised by name and left to the kernel or moved).
Status CheckVmFlags(pid_t pid, const proc::Vma& v) {
  for (const std::string& f : v.vm_flags) {
    const VmFlagRule* rule = nullptr;
    for (const VmFlagRule& r : kVmFlagRules)
      if (f == r.flag) rule = &r;
    if (!rule)
      return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " has VmFlags \"" + f +
                           "\", which this cryo does not know, not supported");
    if (rule->use == VmFlagUse::kRefused)
      return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " is " + rule->meaning +
                           " (VmFlags \"" + f + "\"), not supported yet");
  }
  return Status::Ok();
}

bool IsSpecialName(const std::string& name) {
  return name == "[vdso]" || name == "[vvar]" || name == "[vvar_vclock]" || name == "[vsyscall]";
}

}  // namespace

bool HasVmaAttributes(const image::Mm& mm) {
  for (const image::Vma& v : mm.vmas())
    for (const std::string& f : v.vm_flags())
      if (f == "lo" || f == "lf" || f == "sr" || f == "rr" || f == "nr" || f == "dp" || f == "sl") return true;
  return false;
}

Status DescribeVmas(pid_t pid, const std::vector<proc::Vma>& vmas, image::Mm* mm, std::vector<ShmMapping>* shm) {
  for (const proc::Vma& v : vmas) {
    image::Vma* iv = mm->add_vmas();
    iv->set_start(v.start);
    iv->set_end(v.end);
    iv->set_prot(static_cast<uint32_t>(v.prot));
    iv->set_pgoff(v.pgoff);
    iv->set_name(v.name);
    for (const auto& f : v.vm_flags) iv->add_vm_flags(f);
    uint32_t flags = v.shared ? MAP_SHARED : MAP_PRIVATE;
    if (v.HasFlag("dp")) flags = kMapDroppable;  // a mapping type of its own, private anonymous memory only
    if (v.HasFlag("gd")) flags |= MAP_GROWSDOWN;
    if (v.HasFlag("nr")) flags |= MAP_NORESERVE;
    iv->set_file_writable(v.HasFlag("mw"));
    if (!IsSpecialName(v.name)) CRYO_RETURN_IF_ERROR(CheckVmFlags(pid, v));

    image::VmaKind kind;
    const image::ShmKind shm_kind = shm ? ShmKindOfVma(v) : image::SHM_UNKNOWN;
    if (shm_kind != image::SHM_UNKNOWN) {
      // A memfd, /dev/shm file, SysV segment or shared anonymous memory: the
      // object is recorded once for the tree, with every page it holds
      // (shm_dump.h), and restored before this mapping is made again.
      kind = shm_kind == image::SHM_ANON ? image::VMA_ANON_SHARED
             : v.shared                  ? image::VMA_FILE_SHARED
                                         : image::VMA_FILE_PRIVATE;
      CRYO_RETURN_IF_ERROR(FileIdentity(pid, v, iv->mutable_file()));
      CRYO_RETURN_IF_ERROR(CheckShmMapping(pid, v, shm_kind, iv->file(), "pid " + std::to_string(pid) + ": " + VmaName(v)));
      shm->push_back({mm->vmas_size() - 1, shm_kind});
    } else if (v.name == "[vdso]") {
      kind = image::VMA_VDSO;
    } else if (v.name == "[vvar]") {
      kind = image::VMA_VVAR;
    } else if (v.name == "[vvar_vclock]") {
      kind = image::VMA_VVAR_VCLOCK;
    } else if (v.name == "[vsyscall]") {
      kind = image::VMA_VSYSCALL;
    } else if (!v.shared && (v.inode == 0 || v.name == "/dev/zero")) {
      kind = image::VMA_ANON_PRIVATE;
    } else if (v.deleted) {
      return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) +
                           " maps a deleted file, not supported yet");
    } else if (!v.name.empty() && v.name[0] == '/') {
      kind = v.shared ? image::VMA_FILE_SHARED : image::VMA_FILE_PRIVATE;
      CRYO_RETURN_IF_ERROR(FileIdentity(pid, v, iv->mutable_file()));
      if (S_ISCHR(iv->file().mode()))
        return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " maps a character device, not supported");
    } else {
      return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " is of a kind cryo does not know");
    }
    // The shmem object behind shared anonymous memory: the same inode in every
    // process sharing it.
    if (kind == image::VMA_ANON_SHARED) iv->set_shmem_id(iv->file().ino());
    if (kind == image::VMA_ANON_PRIVATE || kind == image::VMA_ANON_SHARED) flags |= MAP_ANONYMOUS;
    iv->set_flags(flags);
    iv->set_kind(kind);
  }
  return Status::Ok();
}

}  // namespace cryo
