#include "files/fd_table.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "base/file_util.h"
#include "proc/proc.h"

namespace cryo {

namespace {

// Character devices that hold no state of their own and can be reopened by path.
bool IsStatelessCharDev(const std::string& path) {
  return path == "/dev/null" || path == "/dev/zero" || path == "/dev/full" || path == "/dev/random" ||
         path == "/dev/urandom";
}

void FillFileId(const std::string& path, const struct stat& st, image::FileId* id) {
  id->set_path(path);
  id->set_dev(st.st_dev);
  id->set_ino(st.st_ino);
  id->set_size(static_cast<uint64_t>(st.st_size));
  id->set_mtime_ns(st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec);
  id->set_mode(st.st_mode);
}

}  // namespace

std::string DescribeFdTarget(const std::string& link) {
  if (StartsWith(link, "pipe:")) return "a pipe";
  if (StartsWith(link, "socket:")) return "a socket";
  if (StartsWith(link, "anon_inode:")) {
    std::string k = link.substr(11);
    if (!k.empty() && k.front() == '[') k = k.substr(1, k.size() - 2);
    return "an " + k + " (anon inode)";
  }
  if (StartsWith(link, "/dev/pts/") || link == "/dev/tty" || StartsWith(link, "/dev/tty") || link == "/dev/ptmx")
    return "a terminal (" + link + ")";
  return link;
}

Status DumpFdTable(pid_t pid, image::FdTable* table) {
  CRYO_ASSIGN_OR_RETURN(std::vector<int> fds, proc::ListFds(pid));
  const std::string dir = "/proc/" + std::to_string(pid);
  for (int fd : fds) {
    const std::string what = "pid " + std::to_string(pid) + " fd " + std::to_string(fd);
    CRYO_ASSIGN_OR_RETURN(std::string link, ReadLink(dir + "/fd/" + std::to_string(fd)));
    CRYO_ASSIGN_OR_RETURN(proc::FdInfo info, proc::ReadFdInfo(pid, fd));
    struct stat st;
    if (::stat((dir + "/fd/" + std::to_string(fd)).c_str(), &st) != 0) return Status::FromErrno("stat " + what);
    image::Fd* f = table->add_fds();
    f->set_fd(fd);
    f->set_flags(info.flags & ~static_cast<uint32_t>(O_CLOEXEC));
    f->set_cloexec((info.flags & O_CLOEXEC) != 0);
    f->set_pos(info.pos);
    if (link.empty() || link[0] != '/')
      return Status::Error(what + " is " + DescribeFdTarget(link) + ", which is not supported yet");
    if (StartsWith(link, "/memfd:") || (link.size() > 10 && link.compare(link.size() - 10, 10, " (deleted)") == 0))
      return Status::Error(what + " is an unlinked file or memfd (" + link + "), which is not supported yet");
    if (S_ISREG(st.st_mode)) {
      f->set_kind(image::FD_REGULAR);
    } else if (S_ISDIR(st.st_mode)) {
      f->set_kind(image::FD_DIRECTORY);
    } else if (S_ISCHR(st.st_mode) && IsStatelessCharDev(link)) {
      f->set_kind(image::FD_CHARDEV);
      f->set_rdev(static_cast<uint32_t>(st.st_rdev));
    } else {
      return Status::Error(what + " is " + DescribeFdTarget(link) + ", which is not supported yet");
    }
    FillFileId(link, st, f->mutable_file());
  }
  return Status::Ok();
}

}  // namespace cryo
