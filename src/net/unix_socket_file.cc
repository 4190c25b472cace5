#include "net/unix_socket_file.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "files/file_attrs.h"

namespace cryo {

namespace {

std::string PathOf(const image::ListenSocket& l) {
  const size_t off = offsetof(struct sockaddr_un, sun_path);
  const std::string& a = l.address();
  return a.size() > off ? std::string(a.c_str() + off) : "";
}

}  // namespace

Status DumpUnixSocketFile(const FdSource& s, const UnixSocketDiag& diag, image::ListenSocket* l,
                          const std::string& what) {
  const std::string path = PathOf(*l);
  // bind(2) resolved the path in the process's root; the restore binds in cryo's.
  CRYO_ASSIGN_OR_RETURN(std::string root, ReadLink("/proc/" + std::to_string(s.pid) + "/root"));
  if (root != "/")
    return Status::Error(what + " was bound inside the chroot " + root + ", which cryo cannot bind again yet");
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!diag.has_file || st.st_dev != diag.file_dev || st.st_ino != diag.file_ino)
      return Status::Error(what + ": its file was removed and " + path +
                           " now leads to another file (another socket bound to the same path?); cryo cannot bind "
                           "a socket to a path that is not its own");
    RecordFileAttrs(st, l->mutable_file());
    return Status::Ok();
  }
  if (errno != ENOENT) return Status::FromErrno("lstat " + path + " for " + what);
  // Removed after bind: bound again at restore and removed again, which
  // needs its directory.
  const std::string dir = path.substr(0, path.rfind('/') + 1);
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Status::Error(what + ": its file and its directory " + dir + " were removed; cryo cannot bind it again");
  l->set_file_unlinked(true);
  return Status::Ok();
}

Status BindUnixSocketFile(int fd, const image::ListenSocket& l, const std::string& what) {
  const std::string path = PathOf(l);
  const auto* addr = reinterpret_cast<const sockaddr*>(l.address().data());
  const auto len = static_cast<socklen_t>(l.address().size());
  if (::bind(fd, addr, len) != 0) {
    struct stat st;
    if (errno != EADDRINUSE || ::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode))
      return Status::FromErrno("bind to " + what);
    // The file had been removed at the dump: what is there now is another's.
    if (l.file_unlinked())
      return Status::Error("bind to " + what + ": " + path + " exists, but the socket's file had been removed at the dump");
    // A socket file outlives its listener: replace it if nobody listens on it
    // any more (connect(2) is refused).
    UniqueFd probe(::socket(AF_UNIX, l.type() | SOCK_CLOEXEC, 0));
    if (probe.valid() && ::connect(probe.get(), addr, len) == 0)
      return Status::Error("bind to " + what + ": another process listens on it");
    if (::unlink(path.c_str()) != 0 || ::bind(fd, addr, len) != 0) return Status::FromErrno("bind to " + what);
  }
  if (l.file_unlinked()) {
    if (::unlink(path.c_str()) != 0) return Status::FromErrno("removing the file of " + what + " again");
    return Status::Ok();
  }
  if (!l.has_file()) return Status::Ok();  // an image from before FileAttrs
  UniqueFd file(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!file.valid() || ::fstat(file.get(), &st) != 0) return Status::FromErrno("open " + path + " (" + what + ")");
  if (!S_ISSOCK(st.st_mode)) return Status::Error(path + " is no longer the socket file of " + what);
  return ApplyFileAttrs(file.get(), l.file(), path);
}

}  // namespace cryo
