#include "files/pipe_table.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <map>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "proc/proc.h"

namespace cryo {

namespace {

struct Holder {
  pid_t pid;
  int fd;
  bool write_end;
};

struct Fifo {
  uint64_t id, dev, ino;
};

// Any process outside the tree (and not cryo) with an fd on one of the pipes,
// or on one of the FIFOs (by path, then device and inode).
Status CheckOutsideHolders(const std::map<uint64_t, std::vector<Holder>>& pipes,
                           const std::map<std::string, Fifo>& fifos, const std::set<pid_t>& tree) {
  return proc::ForEachFdOutside(tree, [&](const proc::OutsideFd& o) {
    const bool is_pipe = StartsWith(o.link, "pipe:[");
    uint64_t id;
    if (is_pipe) {
      id = std::strtoull(o.link.c_str() + 6, nullptr, 10);
    } else {
      auto fifo = fifos.find(o.link);
      struct stat st;
      if (fifo == fifos.end() || ::stat(o.path.c_str(), &st) != 0 || st.st_dev != fifo->second.dev ||
          st.st_ino != fifo->second.ino)
        return Status::Ok();
      id = fifo->second.id;
    }
    auto it = pipes.find(id);
    if (it == pipes.end()) return Status::Ok();
    const Holder& h = it->second.front();
    return Status::Error("pid " + std::to_string(h.pid) + " fd " + std::to_string(h.fd) + ": " +
                         (is_pipe ? "pipe " + std::to_string(id) : "FIFO " + o.link) + " is also held by pid " +
                         std::to_string(o.pid) + " (fd " + o.fd + "), outside the dumped tree");
  });
}

// The unread bytes of a pipe, duplicated with tee(2) from a read end: the
// reader's own (pidfd_getfd), or for a FIFO without one in the tree, cryo's
// own read end opened by path (opening for reading never blocks with
// O_NONBLOCK, fifo(7)).
Status PeekPipe(const Holder& holder, bool has_reader, image::Pipe* pipe) {
  const std::string what = (pipe->fifo_path().empty() ? "pipe " + std::to_string(pipe->id()) : "FIFO " + pipe->fifo_path()) +
                           " (pid " + std::to_string(holder.pid) + " fd " + std::to_string(holder.fd) + ")";
  UniqueFd src;
  if (has_reader) {
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, holder.pid, 0)));
    if (!pidfd.valid()) return Status::FromErrno("pidfd_open for " + what);
    src.reset(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), holder.fd, 0)));
    if (!src.valid()) return Status::FromErrno("pidfd_getfd of " + what);
  } else {
    // An unlinked FIFO has no path left: opened through the holder's fd.
    const std::string path = pipe->fifo_unlinked()
                                 ? "/proc/" + std::to_string(holder.pid) + "/fd/" + std::to_string(holder.fd)
                                 : pipe->fifo_path();
    src.reset(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!src.valid()) return Status::FromErrno("opening " + what + " to read what it holds");
  }
  const int cap = ::fcntl(src.get(), F_GETPIPE_SZ);
  if (cap < 0) return Status::FromErrno("F_GETPIPE_SZ of " + what);
  pipe->set_capacity(static_cast<uint32_t>(cap));
  int p[2];
  if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return Status::FromErrno("pipe2");
  UniqueFd r(p[0]), w(p[1]);
  if (::fcntl(w.get(), F_SETPIPE_SZ, cap) < cap) return Status::FromErrno("sizing a pipe to copy " + what);
  const ssize_t n = ::tee(src.get(), w.get(), static_cast<size_t>(cap), SPLICE_F_NONBLOCK);
  if (n < 0 && errno != EAGAIN) return Status::FromErrno("tee from " + what);
  std::string data;
  if (n > 0) {
    data.resize(static_cast<size_t>(n));
    if (::read(r.get(), data.data(), data.size()) != n) return Status::FromErrno("reading the copy of " + what);
  }
  pipe->set_data(std::move(data));
  return Status::Ok();
}

// The tree's pipes with their holders, its FIFOs by path, their paths by id.
struct PipeHolders {
  std::map<uint64_t, std::vector<Holder>> pipes;
  std::map<std::string, Fifo> fifos;  // by path
  std::map<uint64_t, std::string> fifo_paths;
};

PipeHolders CollectPipeHolders(const std::vector<ProcessFds>& tables) {
  PipeHolders h;
  for (const ProcessFds& t : tables)
    for (const image::Fd& f : t.table->fds()) {
      if (f.kind() != image::FD_PIPE && f.kind() != image::FD_FIFO) continue;
      h.pipes[f.pipe().pipe_id()].push_back({t.pid, f.fd(), f.pipe().write_end()});
      if (f.kind() == image::FD_FIFO) {
        h.fifos[f.file().path()] = {f.pipe().pipe_id(), f.file().dev(), f.file().ino()};
        h.fifo_paths[f.pipe().pipe_id()] = f.file().path();
      }
    }
  return h;
}

}  // namespace

Status CheckPipesHeldOutside(const std::vector<ProcessFds>& tables, const std::set<pid_t>& tree) {
  const PipeHolders h = CollectPipeHolders(tables);
  if (h.pipes.empty()) return Status::Ok();
  return CheckOutsideHolders(h.pipes, h.fifos, tree);
}

Status DumpPipes(const std::vector<ProcessFds>& tables, const std::set<pid_t>& tree, image::PipeTable* out) {
  PipeHolders held = CollectPipeHolders(tables);
  auto& pipes = held.pipes;
  auto& fifo_paths = held.fifo_paths;
  if (pipes.empty()) return Status::Ok();
  CRYO_RETURN_IF_ERROR(CheckOutsideHolders(pipes, held.fifos, tree));
  for (const auto& [id, holders] : pipes) {
    image::Pipe* p = out->add_pipes();
    p->set_id(id);
    auto fifo = fifo_paths.find(id);
    if (fifo != fifo_paths.end()) {
      // An unlinked FIFO's fds keep its link, " (deleted)" included.
      constexpr std::string_view kDeleted = " (deleted)";
      const std::string& path = fifo->second;
      const bool unlinked = path.size() > kDeleted.size() && path.compare(path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0;
      p->set_fifo_path(unlinked ? path.substr(0, path.size() - kDeleted.size()) : path);
      p->set_fifo_unlinked(unlinked);
    }
    const Holder* reader = nullptr;
    for (const Holder& h : holders)
      if (!h.write_end) reader = &h;
    if (reader || fifo != fifo_paths.end()) {
      CRYO_RETURN_IF_ERROR(PeekPipe(reader ? *reader : holders.front(), reader != nullptr, p));
    } else {
      // Only write ends in the tree and no reader outside: nobody can ever read
      // what is buffered; keep the capacity, not the bytes.
      p->set_capacity(65536);
    }
  }
  return Status::Ok();
}

}  // namespace cryo
