// UNIX sockets that do not listen (stream, datagram, seqpacket), across the
// tree: the fd handler (unix_socket.cc) records each socket; then, once every
// process is described, LinkUnixSockets matches them to their peers, refuses
// what cannot be restored (a peer outside the tree, ...) and reads each
// socket's queue once; at restore, UnixSocketSet makes them all again in cryo
// (socketpair(2) for two sockets of the image connected to each other) for
// the fd pool.
#pragma once

#include <sys/types.h>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "base/unique_fd.h"
#include "image/image_dir.h"

namespace cryo {

// "UNIX stream socket @name", "unnamed UNIX datagram socket", ...
std::string DescribeUnixSocket(const image::UnixSocket& u);

// Dump, before anything is written: `tables` are the fd tables of every live
// process of the tree. With `ext_peers` (--ext-unix-sk), a peer outside the
// tree is let go (UnixSocket.peer_outside); `features` gets the features
// that needs.
Status LinkUnixSockets(const std::vector<std::pair<pid_t, image::FdTable*>>& tables, bool ext_peers,
                       std::set<std::string>* features);

class UnixSocketSet {
 public:
  // Creates every UNIX socket of the image (named, filled, shut down as
  // dumped); listeners must be bound after this (a borrowed name).
  static Result<UnixSocketSet> Build(const image::LoadedImage& img);
  // A new fd (close-on-exec) on the socket of `f`.
  Result<int> Open(const image::Fd& f) const;

 private:
  std::map<uint64_t, UniqueFd> fds_;  // inode at the dump -> socket
};

}  // namespace cryo
