#include "mem/vma_dump.h"

#include "base/tracked_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "image/format.h"
#include "mem/aio_ring.h"
#include "mem/cow_share.h"
#include "mem/hugetlb.h"
#include "mem/pagemap_scan.h"
#include "mem/shm_dump.h"
#include "proc/path_check.h"
#include "proc/unlinked_path.h"

namespace cryo {

namespace {

// A mapping of an anonymous-inode file (/proc/PID/maps names it
// "anon_inode:[KIND]"): the memory of a kernel object, which its fd alone
// cannot give back (the fd may be closed, the mapping stays). What it is, for
// the refusal.
std::string AnonInodeMemory(const std::string& name) {
  std::string k = name.substr(11);
  if (k.size() >= 2 && k.front() == '[' && k.back() == ']') k = k.substr(1, k.size() - 2);
  if (k == "io_uring") return "the rings of an io_uring instance (io_uring_setup(2))";
  if (k == "perf_event") return "the ring buffer of a perf_event (perf_event_open(2))";
  if (k == "bpf-map") return "a BPF map (BPF_F_MMAPABLE)";
  if (k.rfind("kvm", 0) == 0) return "the memory of a KVM object";
  return "the memory of an anonymous-inode file of kind \"" + k + "\"";
}

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

// Whether the file behind a mapping was opened for writing: its map_files
// entry's own mode has S_IWUSR then (proc_map_files_instantiate, from f_mode).
Result<bool> OpenedForWriting(pid_t pid, const proc::Vma& v) {
  char buf[64];
  snprintf(buf, sizeof(buf), "/map_files/%" PRIx64 "-%" PRIx64, v.start, v.end);
  const std::string link = "/proc/" + std::to_string(pid) + buf;
  struct stat st;
  if (::lstat(link.c_str(), &st) != 0) return Status::FromErrno("lstat " + link + " for " + VmaName(v));
  return (st.st_mode & S_IWUSR) != 0;
}

// The restore maps the file again by its path, in cryo's mount namespace.
Status CheckMappedPath(pid_t pid, const proc::Vma& v, const image::FileId& id) {
  char buf[64];
  snprintf(buf, sizeof(buf), "/map_files/%" PRIx64 "-%" PRIx64, v.start, v.end);
  const std::string link = "/proc/" + std::to_string(pid) + buf;
  paths::Opened o;
  o.link = v.name;
  o.st.st_dev = static_cast<dev_t>(id.dev());
  o.st.st_ino = static_cast<ino_t>(id.ino());
  o.st.st_nlink = 1;  // deleted files are refused before
  struct statfs sf;
  if (::statfs(link.c_str(), &sf) != 0) return Status::FromErrno("statfs " + link + " for " + VmaName(v));
  o.fs_type = static_cast<long>(sf.f_type);
  const std::string why = paths::WhyNotReopenable(o, {});
  if (why.empty()) return Status::Ok();
  return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " maps a file that " + why);
}

// A mapping of a deleted file: one with no name left is recreated at restore
// (listed in `unlinked`), one with another name left (a hard link) is mapped
// again through that name.
Status DescribeDeletedMapping(pid_t pid, const proc::Vma& v, image::Vma* iv, int index, std::vector<int>* unlinked) {
  char buf[64];
  snprintf(buf, sizeof(buf), "/map_files/%" PRIx64 "-%" PRIx64, v.start, v.end);
  paths::Opened o;
  CRYO_RETURN_IF_ERROR(paths::ReadOpened("/proc/" + std::to_string(pid) + buf, &o));
  const std::string what = "pid " + std::to_string(pid) + ": " + VmaName(v) + " maps a deleted file that ";
  if (paths::IsUnlinked(o)) {
    const std::string why = paths::WhyNotRecreatable(o);
    if (!why.empty()) return Status::Error(what + why);
    if (!unlinked) return Status::Error(what + "has no name left, not supported here");
    unlinked->push_back(index);
    return Status::Ok();
  }
  if (!paths::HasOtherName(o))
    return Status::Error(what + (paths::PseudoFileKind(o.fs_type) ? std::string("is ") + paths::PseudoFileKind(o.fs_type)
                                                                   : "cryo cannot restore"));
  auto other = paths::FindOtherName(o);
  if (!other.ok()) return Status::Error(what + other.status().message());
  iv->mutable_file()->set_path(*other);
  o.link = *other;
  const std::string why = paths::WhyNotReopenable(o, {});
  if (!why.empty()) return Status::Error(what + "has another name, " + *other + ", which " + why);
  return Status::Ok();
}

}  // namespace

bool HasVmaAttributes(const image::Mm& mm) {
  for (const image::Vma& v : mm.vmas())
    for (const std::string& f : v.vm_flags())
      if (f == "lo" || f == "lf" || f == "sr" || f == "rr" || f == "dp" || f == "sl") return true;
  return false;
}

Status DescribeVmas(pid_t pid, const std::vector<proc::Vma>& vmas, image::Mm* mm, std::vector<ShmMapping>* shm,
                    std::vector<int>* unlinked) {
  for (const proc::Vma& v : vmas) {
    image::Vma* iv = mm->add_vmas();
    iv->set_start(v.start);
    iv->set_end(v.end);
    iv->set_prot(static_cast<uint32_t>(v.prot));
    iv->set_pgoff(v.pgoff);
    iv->set_name(v.name);
    for (const auto& f : v.vm_flags)
      if (f != "uw") iv->add_vm_flags(f);  // "uw" reaches here only as cryo's own tracking: not state
    uint32_t flags = v.shared ? MAP_SHARED : MAP_PRIVATE;
    if (v.HasFlag("dp")) flags = kMapDroppable;  // a mapping type of its own, private anonymous memory only
    if (v.HasFlag("gd")) flags |= MAP_GROWSDOWN;
    iv->set_file_writable(v.HasFlag("mw"));
    iv->set_anon_huge_bytes(v.anon_huge_kb << 10);
    if (v.HasFlag("ht")) CRYO_RETURN_IF_ERROR(DescribeHugetlbVma(pid, v, iv));
    // An AIO context's ring: proven idle once the process's calls run
    // (ProbeAioContexts), made again at restore (mem/aio_ring.h).
    if (IsAioRing(v)) {
      CRYO_RETURN_IF_ERROR(DescribeAioRingVma(pid, v, iv));
      continue;
    }
    if (v.name.rfind("anon_inode:", 0) == 0)
      return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " maps " + AnonInodeMemory(v.name) +
                           ", which cryo cannot restore");
    const bool special = !v.name.empty() && v.name[0] == '[' && v.name.compare(0, 6, "[anon:") != 0 &&
                         v.name != "[heap]" && v.name != "[stack]";
    if (!special && (v.HasFlag("io") || v.HasFlag("pf"))) return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " maps device memory (VM_IO/VM_PFNMAP), which cannot be checkpointed");
    if (v.HasFlag("um") || (v.HasFlag("uw") && !IsTrackedByCryo(pid, v.start, v.end))) return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " is registered with a userfaultfd, not supported yet");

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
    } else if (!v.shared && (v.inode == 0 || v.name == "/dev/zero" || iv->huge_page_size())) {
      kind = image::VMA_ANON_PRIVATE;
    } else if (v.deleted && !v.name.empty() && v.name[0] == '/') {
      kind = v.shared ? image::VMA_FILE_SHARED : image::VMA_FILE_PRIVATE;
      CRYO_RETURN_IF_ERROR(FileIdentity(pid, v, iv->mutable_file()));
      CRYO_RETURN_IF_ERROR(DescribeDeletedMapping(pid, v, iv, mm->vmas_size() - 1, unlinked));
    } else if (v.deleted) {
      return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " maps a deleted file, not supported yet");
    } else if (!v.name.empty() && v.name[0] == '/') {
      kind = v.shared ? image::VMA_FILE_SHARED : image::VMA_FILE_PRIVATE;
      CRYO_RETURN_IF_ERROR(FileIdentity(pid, v, iv->mutable_file()));
      if (S_ISCHR(iv->file().mode()))
        return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " maps a character device, not supported");
      CRYO_RETURN_IF_ERROR(CheckMappedPath(pid, v, iv->file()));
    } else {
      return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " is of a kind cryo does not know");
    }
    if (kind == image::VMA_FILE_SHARED || kind == image::VMA_FILE_PRIVATE) {
      CRYO_ASSIGN_OR_RETURN(bool rw, OpenedForWriting(pid, v));
      iv->set_file_opened_rw(rw);
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
