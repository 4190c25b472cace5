#include "net/socket_netns.h"

#include <sys/stat.h>

#include "net/socket_names.h"

namespace cryo {

Status CheckSocketNetns(const FdSource& src) {
  if (src.Dup() < 0) return Status::FromErrno("pidfd_getfd of " + src.what());
  // An nsfs fd of the socket's namespace (needs CAP_NET_ADMIN over it), read
  // once per fd (FdSource::SocketNetns).
  const uint64_t theirs = src.SocketNetns();
  if (!theirs) return Status::FromErrno("ioctl SIOCGSKNS (the network namespace) of " + src.what());
  struct stat lives{};
  lives.st_ino = src.process_netns;
  const std::string path = "/proc/" + std::to_string(src.pid) + "/ns/net";
  if (!lives.st_ino && ::stat(path.c_str(), &lives) != 0) return Status::FromErrno("stat " + path);
  if (theirs == lives.st_ino) return Status::Ok();
  return Status::Error(src.what() + " is " + DescribeSocket(src.Dup()) + " of network namespace net:[" +
                       std::to_string(theirs) + "], not of the one the process lives in (net:[" +
                       std::to_string(lives.st_ino) + "]): a restore would make it in the process's namespace "
                       "(close it, or make it again after the unshare or setns that changed namespaces)");
}

}  // namespace cryo
