#include "files/fd_pool.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "files/fd_kind.h"
#include "files/fd_table.h"
#include "base/fd_limit.h"
#include "base/janitor.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "image/in_flight.h"
#include "net/unix_pending.h"
#include "net/unix_socket.h"

namespace cryo {

namespace {

// File status flags fcntl(F_SETFL) can change on a description.
constexpr int kSettableFlags = O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK;

struct PipeEnds {
  int r = -1, w = -1;
  bool r_used = false, w_used = false;
};

// A FIFO is opened O_RDWR first: that never blocks (fifo(7)) and keeps both a
// reader and a writer, so that every end can then be opened by path at once.
Result<int> OpenFifoKeeper(const image::Pipe& p, mode_t mode) {
  if (p.fifo_unlinked()) return MakeUnlinkedFifo(p.fifo_path(), mode, p.id());
  const std::string& path = p.fifo_path();
  int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    // A FIFO made for the restore goes if the restore does not complete.
    if (Janitor* j = CurrentJanitor()) CRYO_RETURN_IF_ERROR(j->WillCreateFile(path));
    if (::mkfifo(path.c_str(), mode & 07777) != 0) return Status::FromErrno("mkfifo " + path);
    fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  }
  if (fd < 0) return Status::FromErrno("open FIFO " + path);
  UniqueFd keeper(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno("stat FIFO " + path);
  if (!S_ISFIFO(st.st_mode)) return Status::Error(path + " is no longer a FIFO");
  int queued = 0;
  if (::ioctl(fd, FIONREAD, &queued) != 0) return Status::FromErrno("FIONREAD on FIFO " + path);
  if (queued > 0)
    return Status::Error("FIFO " + path + " already holds " + std::to_string(queued) +
                         " unread bytes: a process outside the image has it open");
  return keeper.release();
}

Result<PipeEnds> MakePipe(const image::Pipe& p, mode_t fifo_mode) {
  const std::string what = p.fifo_path().empty() ? "pipe " + std::to_string(p.id()) : "FIFO " + p.fifo_path();
  PipeEnds e;
  if (p.fifo_path().empty()) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno("pipe2 for " + what);
    e = {fds[0], fds[1]};
  } else {
    CRYO_ASSIGN_OR_RETURN(e.r, OpenFifoKeeper(p, fifo_mode));
    e.w = ::dup(e.r);
    if (e.w < 0) return Status::FromErrno("dup of " + what);
  }
  if (p.capacity() && ::fcntl(e.w, F_SETPIPE_SZ, p.capacity()) < 0)
    return Status::FromErrno("F_SETPIPE_SZ " + std::to_string(p.capacity()) + " on " + what);
  // Never blocking: a pipe smaller than its data (the user is over
  // fs.pipe-user-pages-soft, or the image says so) is an error, not a hang.
  // Each fd's own flags are set once the description is in the pool.
  const std::string& d = p.data();
  const int fl = ::fcntl(e.w, F_GETFL);
  if (fl < 0 || ::fcntl(e.w, F_SETFL, fl | O_NONBLOCK) != 0) return Status::FromErrno("F_SETFL on " + what);
  for (size_t off = 0; off < d.size();) {
    ssize_t n = ::write(e.w, d.data() + off, d.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN)
      return Status::Error("refilling " + what + ": it holds " + std::to_string(off) + " of its " +
                           std::to_string(d.size()) + " bytes and takes no more (pipe capacity " +
                           std::to_string(::fcntl(e.w, F_GETPIPE_SZ)) + ")");
    if (n <= 0) return Status::FromErrno("refilling " + what);
    off += static_cast<size_t>(n);
  }
  if (::fcntl(e.w, F_SETFL, fl) != 0) return Status::FromErrno("F_SETFL on " + what);
  return e;
}

// An end of a FIFO, a description of its own: by path, without blocking.
Result<int> OpenFifoEnd(const image::Fd& f) {
  int fd = ::open(f.file().path().c_str(), static_cast<int>(f.flags() & O_ACCMODE) | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open FIFO " + f.file().path());
  return fd;
}

// A second description of an end already in use: reopen it through /proc.
Result<int> Reopen(int fd, int flags) {
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  int r = ::open(path.c_str(), (flags & O_ACCMODE) | O_CLOEXEC);
  if (r < 0) return Status::FromErrno("reopening " + path);
  return r;
}

}  // namespace

uint64_t FdPool::Key(pid_t pid, const image::Fd& fd) {
  // Images from before file ids (0) never share: key by pid and fd.
  if (fd.file_id()) return fd.file_id();
  return (1ull << 63) | (static_cast<uint64_t>(pid) << 20) | static_cast<uint64_t>(fd.fd());
}

Result<FdPool> FdPool::Build(const image::LoadedImage& img) {
  FdPool pool;
  int max_fd = 2;
  for (const auto& [pid, p] : img.processes) max_fd = std::max(max_fd, MaxFd(p.fds));
  const int base = max_fd + 1;
  // Every description at once, above the image's fd numbers, and a
  // duplicate of each TCP socket: refused before anything is opened if
  // that cannot fit (the dump refuses such a tree already, by the same count).
  RaiseFdLimit();
  {
    std::vector<const image::FdTable*> tables;
    size_t fds = 0;
    for (const auto& [pid, p] : img.processes) {
      tables.push_back(&p.fds);
      fds += static_cast<size_t>(p.fds.fds_size());
    }
    const uint64_t in_flight = image::InFlightFds(img).size();
    CRYO_RETURN_IF_ERROR(CheckFdLimit(RestoreFdsNeeded(tables, in_flight),
                                      "restoring the image's " + std::to_string(fds) + " fds"));
  }
  // Shared memory objects first: memfd and /dev/shm fds are opened on them.
  CRYO_ASSIGN_OR_RETURN(pool.shm_, ShmObjects::Create(img, base));
  SetRestoringShmObjects(pool.shm_.get());
  for (int fd : pool.shm_->PoolFds()) pool.pool_fds_.insert(fd);
  // Unlinked files next: fds, mappings and working directories are opened on them.
  std::vector<std::string> warnings;
  CRYO_ASSIGN_OR_RETURN(pool.unlinked_, UnlinkedFiles::Create(img, base, &warnings));
  for (const std::string& w : warnings) LOG_WARN("%s", w.c_str());
  SetRestoringUnlinkedFiles(pool.unlinked_.get());
  for (int fd : pool.unlinked_->PoolFds()) pool.pool_fds_.insert(fd);
  std::map<uint64_t, mode_t> fifo_modes;
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& f : p.fds.fds())
      if (f.kind() == image::FD_FIFO) fifo_modes[f.pipe().pipe_id()] = static_cast<mode_t>(f.file().mode());
  std::map<uint64_t, PipeEnds> pipes;
  for (const image::Pipe& p : img.pipes.pipes()) {
    CRYO_ASSIGN_OR_RETURN(pipes[p.id()], MakePipe(p, fifo_modes.count(p.id()) ? fifo_modes[p.id()] : 0600));
  }
  // UNIX sockets with their peers, before listeners bind (an accepted
  // connection borrows its listener's name).
  CRYO_ASSIGN_OR_RETURN(UnixSocketSet unix_sockets, UnixSocketSet::Build(img));
  CRYO_ASSIGN_OR_RETURN(pool.ttys_, TtySet::Build(img, base));
  for (int fd : pool.ttys_.fds()) pool.pool_fds_.insert(fd);
  Status result;
  std::vector<std::pair<pid_t, const image::Fd*>> all;
  for (const auto& [pid, p] : img.processes)
    for (const image::Fd& f : p.fds.fds()) all.push_back({pid, &f});
  // The fds in flight in UNIX socket queues (pid 0: no process holds them),
  // opened like the others for FillQueues to send.
  for (const image::Fd* f : image::InFlightFds(img)) all.push_back({0, f});
  for (const auto& [pid, fp] : all) {
    const image::Fd& f = *fp;
    const uint64_t key = Key(pid, f);
    if (pool.fds_.count(key)) {
      // A listener listens in the process that did (its peer credentials).
      if (f.kind() == image::FD_LISTEN_SOCKET && f.listen_socket().listen_pid() == pid) pool.finisher_[key] = pid;
      continue;
    }
    // A pidfd needs its process: opened by its holder once the tree exists.
    if (f.kind() == image::FD_PIDFD) continue;
    const std::string what = "pid " + std::to_string(pid) + " fd " + std::to_string(f.fd());
    int fd = -1;
    if (f.kind() == image::FD_PIPE || f.kind() == image::FD_FIFO) {
      auto it = pipes.find(f.pipe().pipe_id());
      if (it == pipes.end()) return Status::Error(what + ": pipe " + std::to_string(f.pipe().pipe_id()) + " is not in the image");
      PipeEnds& e = it->second;
      const int end = f.pipe().write_end() ? e.w : e.r;
      bool& used = f.pipe().write_end() ? e.w_used : e.r_used;
      if (f.kind() == image::FD_FIFO && IsDeletedLink(f.file().path())) {
        // An unlinked FIFO has no path: every end is a reopen of the keeper.
        CRYO_ASSIGN_OR_RETURN(fd, Reopen(e.r, static_cast<int>(f.flags())));
      } else if (f.kind() == image::FD_FIFO) {
        CRYO_ASSIGN_OR_RETURN(fd, OpenFifoEnd(f));
      } else if (!used) {
        fd = ::dup(end);
        if (fd < 0) return Status::FromErrno("dup of a pipe end for " + what);
        used = true;
      } else {
        CRYO_ASSIGN_OR_RETURN(fd, Reopen(end, static_cast<int>(f.flags())));
      }
      if (::fcntl(fd, F_SETFL, static_cast<int>(f.flags()) & kSettableFlags) != 0)
        return Status::FromErrno("F_SETFL on the pipe of " + what);
    } else if (f.kind() == image::FD_UNIX_SOCKET) {
      CRYO_ASSIGN_OR_RETURN(fd, unix_sockets.Open(f));
      if (::fcntl(fd, F_SETFL, static_cast<int>(f.flags()) & kSettableFlags) != 0)
        return Status::FromErrno("F_SETFL on the socket of " + what);
    } else if (f.kind() == image::FD_TTY || f.kind() == image::FD_EXTERNAL_TTY) {
      Result<int> opened = pool.ttys_.Open(f);
      if (!opened.ok()) return opened.status().Prefixed(what);
      fd = *opened;
    } else {
      const FdKindHandler* h = HandlerFor(f.kind());
      if (!h) return Status::Error(what + " is of a kind this cryo cannot restore");
      Result<int> opened = h->Open(f);
      if (!opened.ok()) return opened.status().Prefixed(what + " (" + h->name() + ")");
      fd = *opened;
    }
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, base);
    ::close(fd);
    if (moved < 0) return FdLimitError("moving the description of " + what + " into the fd pool");
    if (f.kind() == image::FD_TTY || f.kind() == image::FD_EXTERNAL_TTY) pool.ttys_.NotePoolFd(f, moved);
    if (f.kind() == image::FD_UNIX_SOCKET && f.unix_socket().accept_pending()) NotePendingClient(f.unix_socket(), moved);
    pool.fds_[key] = moved;
    pool.finisher_[key] = pid;
    pool.pool_fds_.insert(moved);
  }
  for (auto& [id, e] : pipes) {
    ::close(e.r);
    ::close(e.w);
  }
  CRYO_RETURN_IF_ERROR(unix_sockets.FillQueues([&pool](const image::Fd& f) {
    auto it = pool.fds_.find(Key(0, f));
    return it == pool.fds_.end() ? -1 : it->second;
  }));
  CRYO_RETURN_IF_ERROR(pool.ttys_.Finish());
  CRYO_RETURN_IF_ERROR(pool.BuildShmem(img, base));
  return pool;
}

// Shared anonymous memory of images made before feature "anon-shmem" (since,
// it is a shared memory object of shm.img, made by ShmObjects): one shmem
// object per id, created here as a real MAP_SHARED|MAP_ANONYMOUS mapping (so it
// still shows as "/dev/zero (deleted)"), filled from the holders' pages, and
// kept as an fd opened through /proc/self/map_files. Every holder maps that fd.
Status FdPool::BuildShmem(const image::LoadedImage& img, int base) {
  struct Object {
    uint64_t size = 0;
    pid_t holder = 0;
  };
  std::map<uint64_t, Object> objects;
  for (const auto& [pid, p] : img.processes)
    for (const image::Vma& v : p.mm.vmas())
      if (v.kind() == image::VMA_ANON_SHARED && v.shmem_id() && !v.shm_object()) {
        Object& o = objects[v.shmem_id()];
        o.size = std::max(o.size, v.pgoff() + (v.end() - v.start()));
        if (!o.holder) o.holder = pid;
      }
  for (auto& [id, o] : objects) {
    const std::string what = "shared memory " + std::to_string(id);
    void* m = ::mmap(nullptr, o.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return Status::FromErrno("mmap of " + what);
    char link[96];
    snprintf(link, sizeof(link), "/proc/self/map_files/%lx-%lx", reinterpret_cast<unsigned long>(m),
             reinterpret_cast<unsigned long>(m) + o.size);
    int fd = ::open(link, O_RDWR | O_CLOEXEC);
    Status st = fd < 0 ? Status::FromErrno("open " + std::string(link) + " for " + what) : Status::Ok();
    // Content: every holder stored the pages it had; all of them agree on
    // shared pages, so fill from each (later ones add pages earlier lacked).
    for (const auto& [pid, p] : img.processes) {
      if (!st.ok()) break;
      if (p.core.zombie()) continue;
      auto pages = image::OpenPageFile(img, pid);
      if (!pages.ok()) {
        st = pages.status();
        break;
      }
      int ri = 0;
      for (const image::Vma& v : p.mm.vmas()) {
        while (ri < p.mm.runs_size() && p.mm.runs(ri).vaddr() < v.start()) ++ri;
        if (v.kind() != image::VMA_ANON_SHARED || v.shmem_id() != id) continue;
        for (int r = ri; r < p.mm.runs_size() && p.mm.runs(r).vaddr() < v.end() && st.ok(); ++r) {
          const image::PageRun& run = p.mm.runs(r);
          char* dest = static_cast<char*>(m) + v.pgoff() + (run.vaddr() - v.start());
          const size_t len = run.npages() * image::kPageSize;
          if (Status rs = pages->Read(dest, len, run.offset()); !rs.ok())
            st = rs.Prefixed("reading the pages of " + what);
          else if (image::HashBytes(dest, len) != run.checksum())
            st = Status::Error("checksum mismatch in the pages of " + what + " (corrupted image)");
        }
      }
    }
    ::munmap(m, o.size);
    if (!st.ok()) {
      if (fd >= 0) ::close(fd);
      return st;
    }
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, base);
    ::close(fd);
    if (moved < 0) return Status::FromErrno("moving " + what + " into the fd pool");
    shmem_[id] = moved;
    pool_fds_.insert(moved);
  }
  return Status::Ok();
}

int FdPool::ShmemFd(uint64_t shmem_id) const {
  auto it = shmem_.find(shmem_id);
  return it == shmem_.end() ? -1 : it->second;
}

int FdPool::FdFor(pid_t pid, const image::Fd& fd) const {
  auto it = fds_.find(Key(pid, fd));
  return it == fds_.end() ? -1 : it->second;
}

pid_t FdPool::FirstHolder(pid_t pid, const image::Fd& fd) const {
  auto it = finisher_.find(Key(pid, fd));
  return it == finisher_.end() ? 0 : it->second;
}

std::vector<int> FdPool::Fds() const { return {pool_fds_.begin(), pool_fds_.end()}; }

void FdPool::CloseAll() {
  for (int fd : pool_fds_) ::close(fd);
}

}  // namespace cryo
