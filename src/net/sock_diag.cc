#include "net/sock_diag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>

#include "base/unique_fd.h"

namespace cryo {

Result<size_t> SockDiagQuery(const void* request, size_t len, std::vector<char>* answer, const std::string& what) {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl.valid()) return Status::FromErrno("socket(NETLINK_SOCK_DIAG)");
  struct sockaddr_nl sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), request, len, 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != static_cast<ssize_t>(len))
    return Status::FromErrno("sending " + what);
  struct pollfd p = {nl.get(), POLLIN, 0};
  const int ready = ::poll(&p, 1, 1000);
  if (ready < 0) return Status::FromErrno("waiting for " + what);
  if (ready == 0) return Status::Error(what + ": no answer within 1 s");
  const ssize_t n = ::recv(nl.get(), answer->data(), answer->size(), 0);
  if (n < 0) return Status::FromErrno("receiving " + what);
  return static_cast<size_t>(n);
}

}  // namespace cryo
