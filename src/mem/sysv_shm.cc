#include "mem/sysv_shm.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#include <charconv>
#include <cinttypes>
#include <cstdio>

#include "base/file_util.h"
#include "mem/hugetlb.h"
#include "base/janitor.h"
#include "base/parse_number.h"
#include "ns/ns_thread.h"

namespace cryo {

namespace {

std::string Hex(int32_t key) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%#x", static_cast<uint32_t>(key));
  return buf;
}

std::string Describe(const image::ShmObject& obj) {
  return "SysV shared memory segment id " + std::to_string(obj.sysv_id()) + " (key " + Hex(obj.sysv_key()) + ", " +
         std::to_string(obj.size()) + " bytes)";
}

// shm_next_id (CONFIG_CHECKPOINT_RESTORE) makes the next shmget(2) of this IPC
// namespace use that id; the kernel resets it to -1 once used (sysctl kernel(5),
// ipc/util.c). If the index is busy the kernel silently picks another one, so
// the caller checks the id it got.
Status SetNextShmId(int id) {
  const char* path = "/proc/sys/kernel/shm_next_id";
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(std::string("open ") + path + " (needed to restore a SysV segment's id)");
  const std::string v = std::to_string(id);
  const ssize_t n = ::write(fd, v.data(), v.size());
  Status st = n == static_cast<ssize_t>(v.size()) ? Status::Ok() : Status::FromErrno(std::string("write ") + path);
  ::close(fd);
  return st;
}

bool SameIpcNamespaceAs(pid_t pid) {
  auto theirs = ns::NsInode(pid, "ipc");
  auto mine = ns::NsInode(0, "ipc");
  return !theirs.ok() || !mine.ok() || *theirs == *mine;
}

}  // namespace

Result<std::vector<SysvSegment>> ParseSysvShm(std::string_view text) {
  std::vector<SysvSegment> out;
  for (std::string_view line : SplitLines(text)) {
    auto w = SplitWords(line);
    if (w.empty() || w[0] == "key") continue;  // the header
    SysvSegment s;
    if (w.size() < 11 || !ParseNumber(w[0], &s.key) || !ParseNumber(w[1], &s.id) || !ParseNumber(w[2], &s.mode, 8) ||
        !ParseNumber(w[3], &s.size) || !ParseNumber(w[4], &s.cpid) || !ParseNumber(w[5], &s.lpid) ||
        !ParseNumber(w[6], &s.nattch) || !ParseNumber(w[7], &s.uid) || !ParseNumber(w[8], &s.gid) || !ParseNumber(w[9], &s.cuid) ||
        !ParseNumber(w[10], &s.cgid) || s.id < 0)
      return Status::Error("malformed /proc/sysvipc/shm line \"" + std::string(line) + "\"");
    if (w.size() >= 14 && !ParseNumber(w[13], &s.ctime))
      return Status::Error("malformed ctime in /proc/sysvipc/shm line \"" + std::string(line) + "\"");
    out.push_back(s);
  }
  return out;
}

Result<std::vector<SysvSegment>> ReadSysvShm(pid_t in_ns_of) {
  if (in_ns_of) {
    CRYO_ASSIGN_OR_RETURN(uint64_t theirs, ns::NsInode(in_ns_of, "ipc"));
    CRYO_ASSIGN_OR_RETURN(uint64_t mine, ns::NsInode(0, "ipc"));
    if (theirs != mine) {
      // The tree's own IPC namespace (ns/namespaces.h).
      Result<std::vector<SysvSegment>> out = Status::Error("unread");
      CRYO_RETURN_IF_ERROR(ns::RunInNamespacesOf(in_ns_of, CLONE_NEWIPC, [&out] {
        out = ReadSysvShm(0);
        return Status::Ok();
      }));
      return out;
    }
  }
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/sysvipc/shm"));
  return ParseSysvShm(text);
}

std::optional<int32_t> SysvKeyFromName(std::string_view name) {
  constexpr std::string_view kPrefix = "/SYSV";
  if (!name.starts_with(kPrefix) || name.size() != kPrefix.size() + 8) return std::nullopt;
  uint32_t key = 0;
  if (!ParseNumber(name.substr(kPrefix.size()), &key, 16)) return std::nullopt;
  return static_cast<int32_t>(key);
}

Result<bool> MakeSysvSegment(const image::ShmObject& obj, std::vector<std::string>* warnings) {
  const std::string what = Describe(obj);
  const int id = obj.sysv_id();
  struct shmid_ds ds;
  if (::shmctl(id, IPC_STAT, &ds) == 0) {
    // Segments outlive their processes: the original of a killed tree is still
    // here. Reuse only what cannot belong to anyone else.
    const bool removed = ds.shm_perm.mode & SHM_DEST;
    if (!obj.sysv_removed() && !removed && ds.shm_perm.__key == obj.sysv_key() && ds.shm_segsz == obj.size() &&
        ds.shm_nattch == 0)
      return false;
    return Status::Error(what + " cannot be restored: id " + std::to_string(id) + " is in use by a segment with key " +
                         Hex(ds.shm_perm.__key) + ", " + std::to_string(ds.shm_segsz) + " bytes, attached " +
                         std::to_string(ds.shm_nattch) + " times" + (removed ? ", marked removed" : "") +
                         " (detach it, e.g. end the processes using it, or remove it with ipcrm -m " +
                         std::to_string(id) + ")");
  }
  if (errno != EINVAL && errno != EIDRM) return Status::FromErrno("IPC_STAT of id " + std::to_string(id) + " for " + what);
  key_t key = obj.sysv_key();
  if (key != IPC_PRIVATE) {
    const int other = ::shmget(key, 0, 0);
    if (other >= 0 && !obj.sysv_removed())
      return Status::Error(what + " cannot be restored: key " + Hex(key) + " belongs to segment id " +
                           std::to_string(other) + " now (remove it with ipcrm -m " + std::to_string(other) + ")");
    if (other >= 0) {
      // Removed segments have no key any more; only the attach name shows it.
      warnings->push_back(what + " (removed) is recreated without its key, which segment id " +
                          std::to_string(other) + " uses now: its attaches show /SYSV00000000");
      key = IPC_PRIVATE;
    }
  }
  // Told first: if cryo dies from here on, the segment still goes.
  // The janitor removes segments of its own IPC namespace; one the restore
  // makes in a fresh namespace (ns/namespaces.h) dies with it.
  Janitor* j = CurrentJanitor();
  if (j && SameIpcNamespaceAs(j->pid()))
    CRYO_RETURN_IF_ERROR(j->WillCreateSysv(id).Prefixed(what));
  CRYO_RETURN_IF_ERROR(SetNextShmId(id).Prefixed(what));
  // SHM_HUGETLB with the page size (SHM_HUGE_2MB, ...): a hugetlb segment.
  const int huge = obj.huge_page_size() ? SHM_HUGETLB | HugetlbSizeBits(obj.huge_page_size()) : 0;
  const int got = ::shmget(key, obj.size(), IPC_CREAT | IPC_EXCL | 0600 | huge);
  if (got < 0) return Status::FromErrno("shmget for " + what);
  if (got != id) {
    ::shmctl(got, IPC_RMID, nullptr);
    return Status::Error(what + " cannot be restored: the kernel gave id " + std::to_string(got) +
                         " (index busy, or another shmget raced with this restore)");
  }
  return true;
}

Status AttachSysvSegment(const image::ShmObject& obj, const image::Vma& v, uint64_t at, int prot) {
  // SHM_RDONLY attaches cannot gain PROT_WRITE (no VM_MAYWRITE), like the original.
  int flags = SHM_REMAP | (v.file_writable() ? 0 : SHM_RDONLY) | ((prot & PROT_EXEC) ? SHM_EXEC : 0);
  void* p = ::shmat(obj.sysv_id(), reinterpret_cast<void*>(at), flags);
  if (p == reinterpret_cast<void*>(-1)) return Status::FromErrno("shmat of " + Describe(obj));
  if (reinterpret_cast<uint64_t>(p) != at) {
    ::shmdt(p);
    return Status::Error("shmat of " + Describe(obj) + " did not attach at the address asked for");
  }
  const int attached = PROT_READ | (v.file_writable() ? PROT_WRITE : 0) | (prot & PROT_EXEC);
  if (attached != prot && ::mprotect(p, v.end() - v.start(), prot) != 0)
    return Status::FromErrno("mprotect of the attach of " + Describe(obj));
  return Status::Ok();
}

}  // namespace cryo
