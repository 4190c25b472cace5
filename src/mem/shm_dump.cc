#include "mem/shm_dump.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "image/format.h"
#include "mem/hugetlb.h"
#include "mem/memfd.h"
#include "mem/posix_shm.h"
#include "mem/sysv_shm.h"
#include "proc/proc.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr uint64_t kMaxExtent = 4ull << 20;  // like page runs

uint64_t RoundUp(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

bool AllZero(const std::vector<char>& buf) {
  return buf.empty() || (buf[0] == 0 && std::memcmp(buf.data(), buf.data() + 1, buf.size() - 1) == 0);
}

struct Holder {
  pid_t pid;
  image::Fd* fd = nullptr;    // either an fd
  image::Vma* vma = nullptr;  // or a mapping
  std::string what() const {
    if (fd) return "pid " + std::to_string(pid) + " fd " + std::to_string(fd->fd());
    char buf[64];
    snprintf(buf, sizeof(buf), "VMA %" PRIx64 "-%" PRIx64, vma->start(), vma->end());
    return "pid " + std::to_string(pid) + " " + buf + " (" + vma->name() + ")";
  }
  std::string path() const {
    if (fd) return "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd->fd());
    char buf[64];
    snprintf(buf, sizeof(buf), "/map_files/%" PRIx64 "-%" PRIx64, vma->start(), vma->end());
    return "/proc/" + std::to_string(pid) + buf;
  }
};

struct Object {
  image::ShmKind kind;
  uint64_t dev, ino;
  std::vector<Holder> holders;
};

const char* KindName(image::ShmKind k) {
  switch (k) {
    case image::SHM_MEMFD: return "memfd";
    case image::SHM_POSIX: return "POSIX shared memory or hugetlbfs file";
    case image::SHM_SYSV: return "SysV shared memory";
    case image::SHM_ANON: return "shared anonymous memory";
    default: return "shared memory";
  }
}

// Whether the holder's open file was opened for writing.
bool WritesThrough(const Holder& h) {
  if (h.fd) return (h.fd->flags() & O_ACCMODE) != O_RDONLY;
  return h.vma->file_opened_rw();
}

// Opens the object behind a holder for reading, without touching its atime.
Result<UniqueFd> OpenHolder(const Holder& h) {
  const std::string path = h.path();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + path + " to read " + h.what());
  return UniqueFd(fd);
}

// Stores the pages of `fd` that hold data (SEEK_DATA/SEEK_HOLE: tmpfs knows
// which pages were never written) as extents of at most 4 MiB.
Status DumpContent(int fd, const std::string& what, image::ShmObject* o, WritableFile* file, uint64_t* off,
                   std::vector<char>* buf) {
  const uint64_t size = o->size(), end = RoundUp(size);
  uint64_t pos = 0;
  while (pos < size) {
    const off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only holes from here on
    if (data < 0) return Status::FromErrno("SEEK_DATA on " + what);
    const off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return Status::FromErrno("SEEK_HOLE on " + what);
    uint64_t a = static_cast<uint64_t>(data) & ~(kPage - 1);
    const uint64_t b = std::min(RoundUp(static_cast<uint64_t>(hole)), end);
    while (a < b) {
      const uint64_t len = std::min(b - a, kMaxExtent);
      buf->assign(len, 0);  // bytes past the end of the object read as zeros
      for (uint64_t got = 0; got < len;) {
        const ssize_t n = ::pread(fd, buf->data() + got, len - got, static_cast<off_t>(a + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Status::FromErrno("reading " + what + " at " + std::to_string(a + got));
        if (n == 0) break;
        got += static_cast<uint64_t>(n);
      }
      // hugetlbfs answers SEEK_DATA for the whole file (default_llseek) and
      // reads a page never faulted in as zeros: zeros are not stored.
      if (o->huge_page_size() && AllZero(*buf)) {
        a += len;
        continue;
      }
      CRYO_RETURN_IF_ERROR(file->WriteAt(buf->data(), len, static_cast<off_t>(*off)));
      image::ShmExtent* e = o->add_extents();
      e->set_offset(a);
      e->set_npages(len / kPage);
      e->set_file_offset(*off);
      e->set_checksum(image::HashBytes(buf->data(), len));
      *off += len;
      a += len;
    }
    pos = static_cast<uint64_t>(hole);
  }
  return Status::Ok();
}

Status DescribeSysv(const Object& obj, const std::vector<SysvSegment>& segments, image::ShmObject* o) {
  const Holder& first = obj.holders.front();
  const int id = static_cast<int>(obj.ino);  // a segment's inode number is its shmid (ipc/shm.c newseg)
  auto seg = std::find_if(segments.begin(), segments.end(), [id](const SysvSegment& s) { return s.id == id; });
  if (seg == segments.end())
    return Status::Error(first.what() + ": SysV segment id " + std::to_string(id) + " is not in /proc/sysvipc/shm");
  auto key = SysvKeyFromName(first.vma->name());
  if (!key) return Status::Error(first.what() + ": cannot read the SysV key from the name");
  o->set_sysv_id(id);
  o->set_sysv_key(*key);
  o->set_size(seg->size);
  o->set_mode(seg->mode & 0777);
  o->set_uid(seg->uid);
  o->set_gid(seg->gid);
  o->set_sysv_removed(seg->mode & SHM_DEST);
  o->set_sysv_locked(seg->mode & SHM_LOCKED);
  // Attaches outside the tree are looked for by pid first (CheckHeldOutside);
  // this catches the ones no /proc/PID/maps shows.
  if (seg->nattch > obj.holders.size())
    return Status::Error(first.what() + ": SysV segment id " + std::to_string(id) + " is attached " +
                         std::to_string(seg->nattch) + " times, " + std::to_string(obj.holders.size()) +
                         " of them by the tree: the others are outside it, and a restored tree would no longer share "
                         "it");
  return Status::Ok();
}

}  // namespace

Status CheckShmMapping(pid_t /*pid*/, const proc::Vma& v, image::ShmKind kind, const image::FileId& file,
                       const std::string& what) {
  if (kind != image::SHM_SYSV) return Status::Ok();
  // A segment of the tree's own IPC namespace is restored into a fresh one
  // (ns/namespaces.cc refuses a tree in several).
  // shmat(2) maps a whole segment; the inode size is the segment size.
  if (v.pgoff != 0 || v.end - v.start != RoundUp(file.size()))
    return Status::Error(what + " is part of an attach of SysV segment id " + std::to_string(file.ino()) +
                         " (split by mprotect or partly unmapped), not supported yet");
  return Status::Ok();
}

image::ShmKind ShmKindOfVma(const proc::Vma& v) {
  // MAP_SHARED|MAP_ANONYMOUS (or a shared mapping of /dev/zero) is an unlinked
  // shmem file named "dev/zero" (shmem_zero_setup, mm/shmem.c).
  if (v.shared && v.deleted && v.name == "/dev/zero" && v.inode != 0) return image::SHM_ANON;
  // MAP_SHARED|MAP_HUGETLB: an unlinked hugetlbfs file named "anon_hugepage"
  // (hugetlb_file_setup, fs/hugetlbfs/inode.c).
  if (v.shared && v.deleted && v.name == "/anon_hugepage" && v.HasFlag("ht") && v.inode != 0) return image::SHM_ANON;
  if (v.deleted && MemfdName(v.name, false)) return image::SHM_MEMFD;
  if (v.deleted && v.shared && SysvKeyFromName(v.name)) return image::SHM_SYSV;
  if (IsPosixShm(v.name, makedev(v.dev_major, v.dev_minor))) return image::SHM_POSIX;
  // A file of a hugetlbfs mount: kept the same way (mem/hugetlb.h).
  if (IsHugetlbfsFileVma(v)) return image::SHM_POSIX;
  return image::SHM_UNKNOWN;
}

namespace {

// Every object the tree holds, each with its holders (fds and mappings), in
// the order first met.
Result<std::vector<Object>> CollectObjects(const std::vector<ShmHolders>& procs) {
  std::vector<Object> objects;
  std::map<std::pair<uint64_t, uint64_t>, size_t> index;
  auto add = [&](image::ShmKind kind, const image::FileId& id, Holder h) -> Status {
    auto [it, fresh] = index.try_emplace({id.dev(), id.ino()}, objects.size());
    if (fresh) objects.push_back({kind, id.dev(), id.ino(), {}});
    Object& o = objects[it->second];
    if (o.kind != kind)
      return Status::Error(h.what() + " is " + KindName(kind) + " but " + o.holders.front().what() +
                           " holds the same inode as " + KindName(o.kind));
    o.holders.push_back(h);
    return Status::Ok();
  };
  for (const ShmHolders& p : procs) {
    for (const ShmMapping& m : *p.maps) CRYO_RETURN_IF_ERROR(add(m.kind, p.mm->vmas(m.vma).file(), {p.pid, nullptr, p.mm->mutable_vmas(m.vma)}));
    for (image::Fd& f : *p.fds->mutable_fds()) {
      if (f.kind() == image::FD_MEMFD) CRYO_RETURN_IF_ERROR(add(image::SHM_MEMFD, f.file(), {p.pid, &f, nullptr}));
      if (f.kind() == image::FD_POSIX_SHM) CRYO_RETURN_IF_ERROR(add(image::SHM_POSIX, f.file(), {p.pid, &f, nullptr}));
    }
  }
  return objects;
}

// The object's metadata (size, mode, owner, and what its kind records),
// read through `fd`, its first holder opened. Refuses what cannot be
// restored (a hugetlb memfd, unknown seals, a SysV segment not in
// /proc/sysvipc/shm, shared anonymous memory that is not shmem).
Status DescribeObject(const Object& obj, int fd, const Result<std::vector<SysvSegment>>& segments,
                      image::ShmObject* o, std::set<std::string>* features) {
  const Holder& first = obj.holders.front();
  o->set_kind(obj.kind);
  o->set_dev(obj.dev);
  o->set_ino(obj.ino);
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno("stat of " + first.what());
  o->set_size(static_cast<uint64_t>(st.st_size));
  o->set_mode(st.st_mode & 07777);
  o->set_uid(st.st_uid);
  o->set_gid(st.st_gid);
  // hugetlb memory (mem/hugetlb.h): the object is a hugetlbfs file.
  CRYO_ASSIGN_OR_RETURN(const uint64_t huge, HugetlbPageSizeOfFd(fd, first.what()));
  if (huge) {
    o->set_huge_page_size(huge);
    features->insert("hugetlb-shared");
    // A file of a hugetlbfs mount, by path (mem/hugetlb.h).
    if (obj.kind == image::SHM_POSIX) features->insert("hugetlbfs-file");
  }
  switch (obj.kind) {
    case image::SHM_MEMFD: {
      auto name = first.fd ? MemfdName(first.fd->file().path(), true) : MemfdName(first.vma->name(), false);
      if (!name) return Status::Error(first.what() + ": cannot read the memfd name");
      o->set_name(*name);
      CRYO_RETURN_IF_ERROR(ReadMemfdState(fd, first.what(), o));
      features->insert("memfd");
      if (o->writers_uncounted() && std::any_of(obj.holders.begin(), obj.holders.end(), WritesThrough))
        features->insert("memfd-writers");
      return Status::Ok();
    }
    case image::SHM_POSIX: {
      std::string name = first.fd ? first.fd->file().path() : first.vma->name();
      constexpr std::string_view kDeleted = " (deleted)";
      if (first.fd && st.st_nlink == 0 && std::string_view(name).ends_with(kDeleted))
        name.resize(name.size() - kDeleted.size());
      o->set_name(name);
      o->set_unlinked(st.st_nlink == 0);
      features->insert("posix-shm");
      return Status::Ok();
    }
    case image::SHM_SYSV: {
      if (!segments.ok()) return segments.status().Prefixed(first.what());
      CRYO_RETURN_IF_ERROR(DescribeSysv(obj, *segments, o));
      features->insert("sysv-shm");
      return Status::Ok();
    }
    case image::SHM_ANON: {
      // Its pages are found on the object (SEEK_DATA), which only tmpfs
      // (shmem) answers page by page; hugetlbfs is read whole (DumpContent).
      struct statfs sfs;
      if (::fstatfs(fd, &sfs) != 0) return Status::FromErrno("statfs of " + first.what());
      if (sfs.f_type != TMPFS_MAGIC && !huge)
        return Status::Error(first.what() + ": shared anonymous memory that is not a shmem object, not supported");
      features->insert("anon-shmem");
      return Status::Ok();
    }
    default:
      return Status::Error(first.what() + ": unknown kind of shared memory");
  }
}

// A process outside the tree that holds one of the objects, by an fd or a
// mapping (by device and inode): a restored tree would get an object of its
// own, no longer shared with it. (A SysV segment attached outside would also
// keep its id busy, so that the restore could not make it again.)
Status CheckHeldOutside(const std::vector<Object>& objects, const std::set<pid_t>& tree) {
  std::map<std::pair<uint64_t, uint64_t>, const Object*> by_inode;
  for (const Object& o : objects) by_inode[{o.dev, o.ino}] = &o;
  auto refuse = [](const Object& o, pid_t pid, const std::string& how) {
    return Status::Error(o.holders.front().what() + ": this " + KindName(o.kind) + " is also " + how + " pid " +
                         std::to_string(pid) + ", outside the dumped tree; a restored tree would no longer share "
                         "it (dump the tree that holds it all, or end that process first)");
  };
  CRYO_RETURN_IF_ERROR(proc::ForEachFdOutside(tree, [&](const proc::OutsideFd& fd) {
    struct stat st;
    if (!StartsWith(fd.link, "/") || ::stat(fd.path.c_str(), &st) != 0) return Status::Ok();
    auto it = by_inode.find({static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
    if (it == by_inode.end()) return Status::Ok();
    return refuse(*it->second, fd.pid, "held (fd " + std::string(fd.fd) + ") by");
  }));
  return proc::ForEachPidOutside(tree, [&](pid_t pid) {
    auto maps = ReadFileToString("/proc/" + std::to_string(pid) + "/maps");
    if (!maps.ok()) return Status::Ok();  // gone meanwhile, or a kernel thread
    auto vmas = proc::ParseMaps(*maps);
    if (!vmas.ok()) return Status::Ok();
    for (const proc::Vma& v : *vmas) {
      if (v.inode == 0) continue;
      auto it = by_inode.find({static_cast<uint64_t>(makedev(v.dev_major, v.dev_minor)), v.inode});
      if (it == by_inode.end()) continue;
      char range[64];
      snprintf(range, sizeof(range), "%" PRIx64 "-%" PRIx64, v.start, v.end);
      return refuse(*it->second, pid, std::string("mapped (VMA ") + range + ") by");
    }
    return Status::Ok();
  });
}

// A segment outlives its creator, and the creator's pid can be reused: a
// segment made before the process with that pid started is someone else's.
// /proc/sysvipc/shm's ctime (creation or last IPC_SET) and StartedAtEpoch are
// both rounded down to the second, so a segment the process made has
// ctime >= its start; an older one may still pass when made within the second
// before (then it is named, as before).
bool MadeByThatProcess(const SysvSegment& s) {
  if (s.ctime < 0) return true;
  auto started = proc::StartedAtEpoch(s.cpid);
  return !started.ok() || s.ctime >= *started;
}

}  // namespace

Status CheckShmObjects(const std::vector<ShmHolders>& procs, const std::set<pid_t>& tree) {
  CRYO_ASSIGN_OR_RETURN(std::vector<Object> objects, CollectObjects(procs));
  if (objects.empty()) return Status::Ok();
  CRYO_RETURN_IF_ERROR(CheckHeldOutside(objects, tree));
  const auto segments = ReadSysvShm(procs.front().pid);  // the tree's IPC namespace
  std::set<std::string> features;
  for (const Object& obj : objects) {
    CRYO_ASSIGN_OR_RETURN(UniqueFd fd, OpenHolder(obj.holders.front()));
    image::ShmObject o;
    CRYO_RETURN_IF_ERROR(DescribeObject(obj, fd.get(), segments, &o, &features));
  }
  return Status::Ok();
}

Status DumpShmObjects(const std::vector<ShmHolders>& procs, const std::set<pid_t>& tree, image::ImageWriter* writer,
                      image::ShmTable* table, std::set<std::string>* features) {
  CRYO_ASSIGN_OR_RETURN(std::vector<Object> objects, CollectObjects(procs));
  auto segments = procs.empty() ? ReadSysvShm() : ReadSysvShm(procs.front().pid);
  if (segments.ok())
    for (const SysvSegment& s : *segments)
      if (tree.count(s.cpid) && MadeByThatProcess(s) &&
          std::none_of(objects.begin(), objects.end(), [&](const Object& o) {
            return o.kind == image::SHM_SYSV && static_cast<int>(o.ino) == s.id;
          }))
        LOG_WARN("SysV segment id %d (key %#x) was created by pid %d of the tree but nothing in the tree attaches it: "
                 "it is not in the image (the kernel keeps it regardless of the processes)",
                 s.id, static_cast<uint32_t>(s.key), s.cpid);
  if (objects.empty()) return Status::Ok();

  CRYO_ASSIGN_OR_RETURN(auto file, writer->CreatePageFile(image::ShmPagesName()));
  uint64_t off = image::kPageDataOffset;
  std::vector<char> buf;
  for (size_t i = 0; i < objects.size(); ++i) {
    const Object& obj = objects[i];
    const Holder& first = obj.holders.front();
    image::ShmObject* o = table->add_objects();
    o->set_id(i + 1);
    CRYO_ASSIGN_OR_RETURN(UniqueFd fd, OpenHolder(first));
    CRYO_RETURN_IF_ERROR(DescribeObject(obj, fd.get(), segments, o, features));
    CRYO_RETURN_IF_ERROR(DumpContent(fd.get(), first.what(), o, file.get(), &off, &buf));
    for (const Holder& h : obj.holders) (h.fd ? h.fd->set_shm_object(o->id()) : h.vma->set_shm_object(o->id()));
    LOG_DEBUG("%s \"%s\" (id %" PRIu64 "): %" PRIu64 " bytes, %d extents, %zu holders", KindName(obj.kind),
              o->name().c_str(), o->id(), o->size(), o->extents_size(), obj.holders.size());
  }
  const uint64_t pages = (off - image::kPageDataOffset) / kPage;
  table->set_total_pages(pages);
  return writer->FinishPageFile(std::move(file), pages * kPage);
}

}  // namespace cryo
