#include "files/pipe_table.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <map>

#include "base/file_util.h"
#include "base/unique_fd.h"

namespace cryo {

namespace {

struct Holder {
  pid_t pid;
  int fd;
  bool write_end;
};

// Any process outside the tree (and not cryo) with an fd on one of `ids`.
Status CheckOutsideHolders(const std::map<uint64_t, std::vector<Holder>>& pipes, const std::set<pid_t>& tree) {
  DIR* proc = ::opendir("/proc");
  if (!proc) return Status::FromErrno("opendir /proc");
  Status result;
  while (struct dirent* e = ::readdir(proc)) {
    char* end;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (*end || pid <= 0 || tree.count(static_cast<pid_t>(pid)) || pid == ::getpid()) continue;
    const std::string dir = std::string("/proc/") + e->d_name + "/fd";
    DIR* fds = ::opendir(dir.c_str());
    if (!fds) continue;  // gone, or a kernel thread
    while (struct dirent* f = ::readdir(fds)) {
      if (f->d_name[0] == '.') continue;
      auto link = ReadLink(dir + "/" + f->d_name);
      if (!link.ok() || !StartsWith(*link, "pipe:[")) continue;
      const uint64_t ino = std::strtoull(link->c_str() + 6, nullptr, 10);
      auto it = pipes.find(ino);
      if (it == pipes.end()) continue;
      const Holder& h = it->second.front();
      result = Status::Error("pid " + std::to_string(h.pid) + " fd " + std::to_string(h.fd) + ": the other end of pipe " +
                             std::to_string(ino) + " is held by pid " + std::to_string(pid) + " (fd " + f->d_name +
                             "), outside the dumped tree");
      break;
    }
    ::closedir(fds);
    if (!result.ok()) break;
  }
  ::closedir(proc);
  return result;
}

// The unread bytes of a pipe, duplicated with tee(2) from a read end.
Status PeekPipe(const Holder& reader, image::Pipe* pipe) {
  const std::string what = "pipe " + std::to_string(pipe->id()) + " (pid " + std::to_string(reader.pid) + " fd " +
                           std::to_string(reader.fd) + ")";
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, reader.pid, 0)));
  if (!pidfd.valid()) return Status::FromErrno("pidfd_open for " + what);
  UniqueFd src(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), reader.fd, 0)));
  if (!src.valid()) return Status::FromErrno("pidfd_getfd of " + what);
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

}  // namespace

Status DumpPipes(const std::vector<ProcessFds>& tables, const std::set<pid_t>& tree, image::PipeTable* out) {
  std::map<uint64_t, std::vector<Holder>> pipes;
  for (const ProcessFds& t : tables)
    for (const image::Fd& f : t.table->fds())
      if (f.kind() == image::FD_PIPE) pipes[f.pipe().pipe_id()].push_back({t.pid, f.fd(), f.pipe().write_end()});
  if (pipes.empty()) return Status::Ok();
  CRYO_RETURN_IF_ERROR(CheckOutsideHolders(pipes, tree));
  for (const auto& [id, holders] : pipes) {
    image::Pipe* p = out->add_pipes();
    p->set_id(id);
    const Holder* reader = nullptr;
    for (const Holder& h : holders)
      if (!h.write_end) reader = &h;
    if (reader) {
      CRYO_RETURN_IF_ERROR(PeekPipe(*reader, p));
    } else {
      // Only write ends in the tree and no reader outside: nobody can ever read
      // what is buffered; keep the capacity, not the bytes.
      p->set_capacity(65536);
    }
  }
  return Status::Ok();
}

}  // namespace cryo
