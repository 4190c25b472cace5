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

constexpr uint64_t kPage = image::kPageSize;
constexpr uint64_t kMaxRunBytes = 4ull << 20;  // runs are the unit of parallel restore

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

// Which page categories are worth storing for a VMA kind (none: nothing stored).
bool WantPage(image::VmaKind kind, uint64_t cat) {
  if (cat & kPagePfnZero) return false;
  switch (kind) {
    case image::VMA_ANON_PRIVATE:
    case image::VMA_ANON_SHARED:
      return true;
    case image::VMA_FILE_PRIVATE:
      return (cat & kPageSwapped) || !(cat & kPageFile);  // only pages copied on write
    default:
      return false;
  }
}

}  // namespace

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
    if (v.HasFlag("gd")) flags |= MAP_GROWSDOWN;
    iv->set_file_writable(v.HasFlag("mw"));
    if (v.HasFlag("ht")) return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " is hugetlbfs memory, not supported yet");
    const bool special = !v.name.empty() && v.name[0] == '[' && v.name.compare(0, 6, "[anon:") != 0 &&
                         v.name != "[heap]" && v.name != "[stack]";
    if (!special && (v.HasFlag("io") || v.HasFlag("pf"))) return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " maps device memory (VM_IO/VM_PFNMAP), which cannot be checkpointed");
    if (v.HasFlag("um") || v.HasFlag("uw")) return Status::Error("pid " + std::to_string(pid) + ": " + VmaName(v) + " is registered with a userfaultfd, not supported yet");

    image::VmaKind kind;
    const image::ShmKind shm_kind = shm ? ShmKindOfVma(v) : image::SHM_UNKNOWN;
    if (shm_kind != image::SHM_UNKNOWN) {
      // A memfd, /dev/shm file or SysV segment: the object is recorded once for
      // the tree (shm_dump.h) and restored before this mapping is made again.
      kind = v.shared ? image::VMA_FILE_SHARED : image::VMA_FILE_PRIVATE;
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
    } else if (v.inode == 0 || (v.name == "/dev/zero" && !v.shared)) {
      kind = v.shared ? image::VMA_ANON_SHARED : image::VMA_ANON_PRIVATE;
    } else if (v.shared && v.deleted && v.name == "/dev/zero") {
      kind = image::VMA_ANON_SHARED;  // MAP_SHARED|MAP_ANONYMOUS is shmem behind "/dev/zero (deleted)"
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
    if (kind == image::VMA_ANON_SHARED) {
      flags |= MAP_ANONYMOUS;
      // The shmem object behind it: the same inode in every process sharing it.
      image::FileId shm;
      CRYO_RETURN_IF_ERROR(FileIdentity(pid, v, &shm));
      iv->set_shmem_id(shm.ino());
    }
    if (kind == image::VMA_ANON_PRIVATE) flags |= MAP_ANONYMOUS;
    iv->set_flags(flags);
    iv->set_kind(kind);
  }
  return Status::Ok();
}

namespace {

// One piece of page data: target address, length, offset in the page file.
struct Piece {
  uint64_t vaddr;
  uint64_t len;
  uint64_t file_off;
};

// Pages of non-readable VMAs: /proc/PID/mem reads them regardless of protection.
Status CopyViaProcMem(pid_t pid, const Piece& p, WritableFile* file) {
  const std::string path = "/proc/" + std::to_string(pid) + "/mem";
  UniqueFd mem(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!mem.valid()) return Status::FromErrno("open " + path);
  std::vector<char> buf(std::min<uint64_t>(p.len, 1 << 20));
  for (uint64_t done = 0; done < p.len;) {
    size_t n = std::min<uint64_t>(buf.size(), p.len - done);
    ssize_t r = ::pread(mem.get(), buf.data(), n, static_cast<off_t>(p.vaddr + done));
    if (r != static_cast<ssize_t>(n)) return Status::FromErrno("read " + path + " at " + std::to_string(p.vaddr + done));
    CRYO_RETURN_IF_ERROR(file->WriteAt(buf.data(), n, static_cast<off_t>(p.file_off + done)));
    done += n;
  }
  return Status::Ok();
}

// The pipe the target vmsplices into: both ends are created in the target, the
// read end is pulled into cryo with pidfd_getfd(2) and closed in the target.
class SplicePipe {
 public:
  ~SplicePipe() { Close(); }
  Status Open(pid_t pid, RemoteSyscaller& rs) {
    rs_ = &rs;
    CRYO_ASSIGN_OR_RETURN(long r, rs.Syscall(SYS_pipe2, rs.scratch(), O_NONBLOCK | O_CLOEXEC));
    if (r != 0) return Status::Errno(static_cast<int>(-r), "remote pipe2 in pid " + std::to_string(pid));
    int fds[2];
    CRYO_RETURN_IF_ERROR(rs.ReadMem(rs.scratch(), fds, sizeof(fds)));
    remote_w_ = fds[1];
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    if (pidfd.valid()) local_r_.reset(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), fds[0], 0)));
    Status grabbed = local_r_.valid() ? Status::Ok() : Status::FromErrno("pidfd_getfd of the page pipe of pid " + std::to_string(pid));
    // The read end leaves the target whatever happened (Close() takes the other).
    CRYO_ASSIGN_OR_RETURN(r, rs.Syscall(SYS_close, static_cast<uint64_t>(fds[0])));
    CRYO_RETURN_IF_ERROR(grabbed);
    int cap = ::fcntl(local_r_.get(), F_SETPIPE_SZ, 1 << 20);
    if (cap < 0) cap = ::fcntl(local_r_.get(), F_GETPIPE_SZ);
    if (cap < 0) return Status::FromErrno("F_GETPIPE_SZ");
    capacity_ = static_cast<uint64_t>(cap);
    return Status::Ok();
  }
  void Close() {
    if (remote_w_ >= 0 && rs_) (void)rs_->Syscall(SYS_close, static_cast<uint64_t>(remote_w_));
    remote_w_ = -1;
  }
  int remote_w() const { return remote_w_; }
  int local_r() const { return local_r_.get(); }
  uint64_t capacity() const { return capacity_; }

 private:
  RemoteSyscaller* rs_ = nullptr;
  int remote_w_ = -1;
  UniqueFd local_r_;
  uint64_t capacity_ = 0;
};

// Moves a batch of pieces (total <= pipe capacity) through the pipe into the file.
Status SpliceBatch(pid_t pid, RemoteSyscaller& rs, SplicePipe& pipe, std::vector<Piece>& batch, WritableFile* file) {
  std::vector<struct iovec> iov;
  for (const Piece& p : batch) iov.push_back({reinterpret_cast<void*>(p.vaddr), p.len});
  size_t first = 0;
  while (first < iov.size()) {
    const size_t count = iov.size() - first;
    CRYO_RETURN_IF_ERROR(rs.WriteMem(rs.scratch(), &iov[first], count * sizeof(iovec)));
    CRYO_ASSIGN_OR_RETURN(long n, rs.Syscall(SYS_vmsplice, static_cast<uint64_t>(pipe.remote_w()), rs.scratch(), count,
                                             SPLICE_F_NONBLOCK));
    if (n <= 0) return Status::Errno(n < 0 ? static_cast<int>(-n) : EIO, "remote vmsplice of pages in pid " + std::to_string(pid));
    // Drain what went in, piece by piece, to its file offset.
    uint64_t left = static_cast<uint64_t>(n);
    while (left > 0) {
      Piece& p = batch[first];
      const uint64_t moved = p.len - iov[first].iov_len;  // already drained from this piece
      const uint64_t take = std::min<uint64_t>(left, iov[first].iov_len);
      CRYO_RETURN_IF_ERROR(file->SpliceFrom(pipe.local_r(), take, static_cast<off_t>(p.file_off + moved)));
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      left -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  return Status::Ok();
}

Status HashRuns(const std::string& path, image::Mm* mm) {
  if (mm->runs().empty()) return Status::Ok();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path + " to checksum it");
  const uint64_t len = image::kPageDataOffset + mm->total_pages() * kPage;
  void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (m == MAP_FAILED) return Status::FromErrno("mmap " + path + " to checksum it");
  for (image::PageRun& r : *mm->mutable_runs())
    r.set_checksum(image::HashBytes(static_cast<char*>(m) + r.offset(), r.npages() * kPage));
  ::munmap(m, len);
  return Status::Ok();
}

}  // namespace

Status DumpPages(pid_t pid, RemoteSyscaller& rs, image::Mm* mm, WritableFile* file, const ProgressFn& progress) {
  CRYO_ASSIGN_OR_RETURN(PagemapScanner scanner, PagemapScanner::Open(pid));
  std::vector<Piece> readable, unreadable;
  uint64_t off = image::kPageDataOffset;
  for (image::Vma& v : *mm->mutable_vmas()) {
    if (!WantPage(v.kind(), kPagePresent)) continue;
    CRYO_ASSIGN_OR_RETURN(auto scanned, scanner.Scan(v.start(), v.end()));
    const std::vector<PageRegion> regions = WithoutRanges(scanned, {mm->inherited().begin(), mm->inherited().end()});
    uint64_t inherited = 0;
    for (const image::PageRange& r : mm->inherited())
      if (v.start() <= r.vaddr() && r.vaddr() < v.end()) inherited += r.npages();
    v.set_inherited_pages(inherited);
    uint64_t stored = 0;
    for (const PageRegion& r : regions) {
      if (!WantPage(v.kind(), r.categories)) continue;
      for (uint64_t a = r.start; a < r.end;) {
        // Extend the previous run when contiguous, else start a new one.
        image::PageRun* run = mm->runs_size() ? mm->mutable_runs(mm->runs_size() - 1) : nullptr;
        if (run && run->vaddr() + run->npages() * kPage == a && run->npages() * kPage < kMaxRunBytes &&
            a != v.start()) {
          const uint64_t take = std::min(r.end - a, kMaxRunBytes - run->npages() * kPage);
          run->set_npages(run->npages() + take / kPage);
          (v.prot() & PROT_READ ? readable : unreadable).push_back({a, take, off});
          a += take;
          off += take;
          stored += take / kPage;
          continue;
        }
        const uint64_t take = std::min(r.end - a, kMaxRunBytes);
        run = mm->add_runs();
        run->set_vaddr(a);
        run->set_npages(take / kPage);
        run->set_offset(off);
        (v.prot() & PROT_READ ? readable : unreadable).push_back({a, take, off});
        a += take;
        off += take;
        stored += take / kPage;
      }
    }
    v.set_stored_pages(stored);
  }
  const uint64_t total = off - image::kPageDataOffset;
  mm->set_total_pages(total / kPage);
  LOG_INFO("pid %d: storing %" PRIu64 " pages (%" PRIu64 " MiB)", pid, total / kPage, total >> 20);

  uint64_t done = 0;
  for (const Piece& p : unreadable) {
    CRYO_RETURN_IF_ERROR(CopyViaProcMem(pid, p, file));
    done += p.len;
  }
  if (!readable.empty()) {
    SplicePipe pipe;
    CRYO_RETURN_IF_ERROR(pipe.Open(pid, rs));
    const size_t max_iov = std::min<size_t>(rs.scratch_size() / sizeof(iovec), 1024);
    std::vector<Piece> batch;
    uint64_t batch_bytes = 0;
    auto flush = [&]() -> Status {
      if (batch.empty()) return Status::Ok();
      CRYO_RETURN_IF_ERROR(SpliceBatch(pid, rs, pipe, batch, file));
      done += batch_bytes;
      if (progress) progress(done, total);
      batch.clear();
      batch_bytes = 0;
      return Status::Ok();
    };
    for (Piece p : readable) {
      while (p.len > 0) {
        const uint64_t room = pipe.capacity() - batch_bytes;
        const uint64_t take = std::min(room, p.len);
        batch.push_back({p.vaddr, take, p.file_off});
        batch_bytes += take;
        p.vaddr += take;
        p.file_off += take;
        p.len -= take;
        if (batch_bytes == pipe.capacity() || batch.size() == max_iov) CRYO_RETURN_IF_ERROR(flush());
      }
    }
    CRYO_RETURN_IF_ERROR(flush());
    pipe.Close();
  }
  return HashRuns(file->path(), mm);
}

}  // namespace cryo
