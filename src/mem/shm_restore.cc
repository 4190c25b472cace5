#include "mem/shm_restore.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/log.h"
#include "base/unique_fd.h"
#include "image/format.h"
#include "mem/anon_shmem.h"
#include "mem/hugetlb.h"
#include "mem/memfd.h"
#include "mem/posix_shm.h"
#include "mem/sysv_shm.h"
#include "mem/vma_restore.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;

const ShmObjects* g_restoring = nullptr;

std::string What(const image::ShmObject& o) {
  switch (o.kind()) {
    case image::SHM_MEMFD: return "memfd \"" + o.name() + "\"";
    case image::SHM_POSIX: return (o.huge_page_size() ? "hugetlbfs file " : "POSIX shared memory ") + o.name();
    case image::SHM_SYSV: return "SysV shared memory segment id " + std::to_string(o.sysv_id());
    case image::SHM_ANON: return "shared anonymous memory object " + std::to_string(o.id());
    default: return "shared memory object " + std::to_string(o.id());
  }
}

std::string VmaName(const image::Vma& v) {
  char buf[64];
  snprintf(buf, sizeof(buf), "VMA %" PRIx64 "-%" PRIx64, v.start(), v.end());
  return std::string(buf) + " (" + v.name() + ")";
}

// Reads one extent from shm-pages.img into `dest` and checks it.
Status ReadExtent(int pages_fd, const image::ShmExtent& e, char* dest, const std::string& what) {
  const uint64_t len = e.npages() * kPage;
  for (uint64_t got = 0; got < len;) {
    const ssize_t n = ::pread(pages_fd, dest + got, len - got, static_cast<off_t>(e.file_offset() + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Errno(n < 0 ? errno : EIO, "reading the content of " + what);
    got += static_cast<uint64_t>(n);
  }
  if (image::HashBytes(dest, len) != e.checksum())
    return Status::Error("checksum mismatch in the content of " + what + " (corrupted image)");
  return Status::Ok();
}

// The page size of the mapping at `base` (`len` bytes) is `huge` (0: not
// hugetlb memory).
Status CheckAttachPageSize(const char* base, uint64_t len, uint64_t huge, int id, const std::string& what) {
  char link[96];
  snprintf(link, sizeof(link), "/proc/self/map_files/%lx-%lx", reinterpret_cast<unsigned long>(base),
           reinterpret_cast<unsigned long>(base) + len);
  UniqueFd fd(::open(link, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + std::string(link) + " for " + what);
  CRYO_ASSIGN_OR_RETURN(const uint64_t got, HugetlbPageSizeOfFd(fd.get(), what));
  if (got != huge)
    return Status::Error(what + " cannot be restored: the segment left with its id and key has pages of " +
                         std::to_string((got ? got : kPage) >> 10) + " KiB, the image's " +
                         std::to_string((huge ? huge : kPage) >> 10) + " KiB (remove it with ipcrm -m " +
                         std::to_string(id) + ")");
  return Status::Ok();
}

// Fills a hugetlb object: hugetlbfs has no write(2) (no write_iter), its
// pages are written through a shared mapping of it.
Status FillHugetlb(const image::ShmObject& o, int fd, int pages_fd, const std::string& what) {
  const uint64_t unit = o.huge_page_size();
  const uint64_t len = (o.size() + unit - 1) / unit * unit;
  if (o.extents().empty() || len == 0) return Status::Ok();
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return Status::FromErrno("mmap of " + what + " to fill it");
  Status st;
  for (const image::ShmExtent& e : o.extents()) {
    st = ReadExtent(pages_fd, e, static_cast<char*>(m) + e.offset(), what);
    if (!st.ok()) break;
  }
  ::munmap(m, len);
  return st;
}

int MoveAbove(int fd, int base) {
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, base);
  ::close(fd);
  return moved;
}

}  // namespace

const ShmObjects* RestoringShmObjects() { return g_restoring; }
void SetRestoringShmObjects(const ShmObjects* objects) { g_restoring = objects; }

Result<std::unique_ptr<ShmObjects>> ShmObjects::Create(const image::LoadedImage& img, int fd_base) {
  std::unique_ptr<ShmObjects> objs(new ShmObjects());
  if (img.shm.objects().empty()) return objs;
  CRYO_ASSIGN_OR_RETURN(UniqueFd pages, image::OpenShmPageFile(img));
  std::vector<std::string> warnings;
  // Removed SysV segments first: once removed again their keys are free for
  // segments of the image that took the same key later.
  for (const image::ShmObject& o : img.shm.objects())
    if (o.kind() == image::SHM_SYSV && o.sysv_removed())
      CRYO_RETURN_IF_ERROR(objs->MakeSysv(o, pages.get(), &objs->objects_[o.id()], &warnings));
  for (const image::ShmObject& o : img.shm.objects()) {
    if (o.kind() == image::SHM_SYSV && o.sysv_removed()) continue;
    Live& live = objs->objects_[o.id()];
    const std::string what = What(o);
    if (o.kind() == image::SHM_SYSV) {
      CRYO_RETURN_IF_ERROR(objs->MakeSysv(o, pages.get(), &live, &warnings));
      continue;
    }
    live.obj = o;
    live.obj.clear_extents();
    int fd;
    if (o.kind() == image::SHM_MEMFD) {
      CRYO_ASSIGN_OR_RETURN(fd, CreateMemfd(o));
    } else if (o.kind() == image::SHM_POSIX) {
      CRYO_ASSIGN_OR_RETURN(fd, CreatePosixShmFile(o, &live.temp_path));
    } else if (o.kind() == image::SHM_ANON) {
      CRYO_ASSIGN_OR_RETURN(fd, CreateAnonShmem(o, AnonShmemNoreserve(img, o.id())));
    } else {
      return Status::Error(what + " is of a kind this cryo cannot restore");
    }
    live.rw_fd = MoveAbove(fd, fd_base);
    if (live.rw_fd < 0) return Status::FromErrno("moving the fd of " + what);
    CRYO_RETURN_IF_ERROR(objs->Fill(o, pages.get(), &live));
    // Read-only mappings (no VM_MAYWRITE) come from a read-only description.
    CRYO_ASSIGN_OR_RETURN(fd, objs->Reopen(o.id(), O_RDONLY));
    live.ro_fd = MoveAbove(fd, fd_base);
    if (live.ro_fd < 0) return Status::FromErrno("moving the fd of " + what);
    if (o.kind() == image::SHM_MEMFD && o.seals()) {
      live.seal_fd = ::fcntl(live.rw_fd, F_DUPFD_CLOEXEC, fd_base);
      if (live.seal_fd < 0) return Status::FromErrno("dup of " + what);
    }
  }
  for (const std::string& w : warnings) LOG_WARN("%s", w.c_str());
  return objs;
}

Status ShmObjects::MakeSysv(const image::ShmObject& o, int pages_fd, Live* live, std::vector<std::string>* warnings) {
  live->obj = o;
  live->obj.clear_extents();
  const std::string what = What(o);
  CRYO_ASSIGN_OR_RETURN(live->created_sysv, MakeSysvSegment(o, warnings));
  void* p = ::shmat(o.sysv_id(), nullptr, 0);
  if (p == reinterpret_cast<void*>(-1)) return Status::FromErrno("shmat of " + what + " to fill it");
  char* base = static_cast<char*>(p);
  const uint64_t unit = o.huge_page_size() ? o.huge_page_size() : kPage;
  const uint64_t len = (o.size() + unit - 1) / unit * unit;
  Status st;
  // A reused segment must have the image's page size (SHM_HUGETLB or not),
  // which only its attach tells (the hugetlbfs file behind it).
  if (!live->created_sysv) st = CheckAttachPageSize(base, len, o.huge_page_size(), o.sysv_id(), what);
  // A reused segment holds what its last user left: zero it first.
  if (st.ok() && !live->created_sysv && ::madvise(base, len, MADV_REMOVE) != 0) st = Status::FromErrno("clearing " + what);
  for (const image::ShmExtent& e : o.extents()) {
    if (!st.ok()) break;
    st = ReadExtent(pages_fd, e, base + e.offset(), what);
  }
  struct shmid_ds ds;
  std::memset(&ds, 0, sizeof(ds));
  ds.shm_perm.uid = o.uid();
  ds.shm_perm.gid = o.gid();
  ds.shm_perm.mode = static_cast<unsigned short>(o.mode() & 0777);
  if (st.ok() && ::shmctl(o.sysv_id(), IPC_SET, &ds) != 0) st = Status::FromErrno("IPC_SET (owner, mode) of " + what);
  if (st.ok() && o.sysv_locked() && ::shmctl(o.sysv_id(), SHM_LOCK, nullptr) != 0)
    st = Status::FromErrno("SHM_LOCK of " + what);
  if (st.ok() && o.sysv_removed()) {
    // Removed now, alive through this attach; if the restore fails it goes
    // with cryo's detach and the tree's.
    if (::shmctl(o.sysv_id(), IPC_RMID, nullptr) != 0) {
      st = Status::FromErrno("IPC_RMID of " + what);
    } else {
      live->created_sysv = false;
      live->keep_attach = p;
      return Status::Ok();
    }
  }
  ::shmdt(p);
  return st;
}

Status ShmObjects::Fill(const image::ShmObject& o, int pages_fd, Live* live) {
  const std::string what = What(o);
  if (o.huge_page_size()) return FillHugetlb(o, live->rw_fd, pages_fd, what);
  std::vector<char> buf;
  for (const image::ShmExtent& e : o.extents()) {
    const uint64_t len = e.npages() * kPage;
    buf.resize(len);
    CRYO_RETURN_IF_ERROR(ReadExtent(pages_fd, e, buf.data(), what));
    // The last page is stored whole; the object ends at its size.
    const uint64_t n = std::min(len, o.size() - e.offset());
    for (uint64_t done = 0; done < n;) {
      const ssize_t w = ::pwrite(live->rw_fd, buf.data() + done, n - done, static_cast<off_t>(e.offset() + done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return Status::Errno(w < 0 ? errno : EIO, "writing the content of " + what);
      done += static_cast<uint64_t>(w);
    }
  }
  return Status::Ok();
}

ShmObjects::~ShmObjects() {
  if (g_restoring == this) g_restoring = nullptr;
  for (auto& [id, live] : objects_) {
    if (!finished_) {
      if (live.created_sysv) ::shmctl(live.obj.sysv_id(), IPC_RMID, nullptr);
      if (!live.temp_path.empty()) ::unlink(live.temp_path.c_str());
    }
    if (live.keep_attach) ::shmdt(live.keep_attach);
    if (live.seal_fd >= 0) ::close(live.seal_fd);
  }
}

const ShmObjects::Live* ShmObjects::Find(uint64_t id) const {
  auto it = objects_.find(id);
  return it == objects_.end() ? nullptr : &it->second;
}

std::vector<int> ShmObjects::PoolFds() const {
  std::vector<int> out;
  for (const auto& [id, live] : objects_) {
    if (live.rw_fd >= 0) out.push_back(live.rw_fd);
    if (live.ro_fd >= 0) out.push_back(live.ro_fd);
  }
  return out;
}

Result<int> ShmObjects::Reopen(uint64_t id, int flags) const {
  const Live* live = Find(id);
  if (!live || live->rw_fd < 0) return Status::Error("shared memory object " + std::to_string(id) + " is not in the image");
  // A new open file description of the same inode (proc(5), /proc/PID/fd).
  const std::string path = "/proc/self/fd/" + std::to_string(live->rw_fd);
  // Open-time flags are not the description's (O_NOFOLLOW, which shm_open(3)
  // uses, would refuse the /proc link itself).
  constexpr int kCreationFlags = O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW | O_DIRECTORY;
  const int fd = ::open(path.c_str(), (flags & ~kCreationFlags) | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("reopening " + What(live->obj));
  return fd;
}

Result<int> ShmObjects::OpenDescription(uint64_t id, int flags) const {
  const Live* live = Find(id);
  if (!live || live->rw_fd < 0) return Status::Error("shared memory object " + std::to_string(id) + " is not in the image");
  if (live->obj.kind() != image::SHM_MEMFD || !live->obj.writers_uncounted() || (flags & O_ACCMODE) != O_RDWR ||
      live->own_rw_given)
    return Reopen(id, flags);
  // memfd_create's file counts as no writer (exec of the memfd works while it
  // is open); a reopen for writing would (get_write_access, ETXTBSY).
  live->own_rw_given = true;
  const int fd = ::fcntl(live->rw_fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("dup of " + What(live->obj));
  constexpr int kSettable = O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK;
  if (::fcntl(fd, F_SETFL, flags & kSettable) != 0) {
    Status st = Status::FromErrno("F_SETFL on " + What(live->obj));
    ::close(fd);
    return st;
  }
  return fd;
}

Status ShmObjects::MapVma(const image::Vma& v, uint64_t at, int prot) const {
  const Live* live = Find(v.shm_object());
  if (!live) return Status::Error(VmaName(v) + " maps shared memory object " + std::to_string(v.shm_object()) + ", which is not in the image");
  if (live->obj.kind() == image::SHM_SYSV) return AttachSysvSegment(live->obj, v, at, prot).Prefixed(VmaName(v));
  // The mapping keeps the open file it is made from, with its mode: a
  // writable one of a memfd whose writers were counted is a reopen of its own.
  UniqueFd counted;
  int fd = live->ro_fd;
  if (FileOpenedWritable(v)) {
    fd = live->rw_fd;
    if (live->obj.kind() == image::SHM_MEMFD && !live->obj.writers_uncounted()) {
      CRYO_ASSIGN_OR_RETURN(int c, Reopen(live->obj.id(), O_RDWR));
      counted.reset(c);
      fd = c;
    }
  }
  void* p = ::mmap(reinterpret_cast<void*>(at), v.end() - v.start(), prot, MAP_FIXED | MapFlags(v), fd,
                   static_cast<off_t>(v.pgoff()));
  if (p == MAP_FAILED) return Status::FromErrno("mmap of " + What(live->obj) + " for " + VmaName(v));
  return Status::Ok();
}

Status ShmObjects::Finish(std::vector<std::string>* warnings) {
  for (auto& [id, live] : objects_) {
    if (live.seal_fd >= 0) {
      CRYO_RETURN_IF_ERROR(MemfdAddSeals(live.seal_fd, live.obj));
      ::close(live.seal_fd);
      live.seal_fd = -1;
    }
    // Every holder is attached now; the segment goes when the last detaches.
    if (live.keep_attach && ::shmdt(live.keep_attach) != 0) return Status::FromErrno("shmdt of " + What(live.obj));
    live.keep_attach = nullptr;
  }
  // Names last: nothing visible under /dev/shm changes before the tree exists.
  for (auto& [id, live] : objects_) {
    if (live.temp_path.empty()) continue;
    CRYO_RETURN_IF_ERROR(PublishPosixShmFile(live.obj, live.temp_path, warnings));
    live.temp_path.clear();
  }
  finished_ = true;
  return Status::Ok();
}

}  // namespace cryo
