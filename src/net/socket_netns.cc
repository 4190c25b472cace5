#include "net/socket_netns.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "base/unique_fd.h"
#include "net/socket_names.h"

namespace cryo {

Status CheckSocketNetns(const FdSource& src) {
  UniqueFd sock(src.Grab());
  if (!sock.valid()) return Status::FromErrno("pidfd_getfd of " + src.what());
  // An nsfs fd of the socket's namespace (needs CAP_NET_ADMIN over it).
  UniqueFd ns(::ioctl(sock.get(), SIOCGSKNS));
  if (!ns.valid()) return Status::FromErrno("ioctl SIOCGSKNS (the network namespace) of " + src.what());
  struct stat theirs, lives;
  if (::fstat(ns.get(), &theirs) != 0) return Status::FromErrno("fstat of the network namespace of " + src.what());
  const std::string path = "/proc/" + std::to_string(src.pid) + "/ns/net";
  if (::stat(path.c_str(), &lives) != 0) return Status::FromErrno("stat " + path);
  if (theirs.st_ino == lives.st_ino) return Status::Ok();
  return Status::Error(src.what() + " is " + DescribeSocket(sock.get()) + " of network namespace net:[" +
                       std::to_string(theirs.st_ino) + "], not of the one the process lives in (net:[" +
                       std::to_string(lives.st_ino) + "]): a restore would make it in the process's namespace "
                       "(close it, or make it again after the unshare or setns that changed namespaces)");
}

}  // namespace cryo
