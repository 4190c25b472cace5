// UNIX sockets that do not listen (stream, datagram, seqpacket), across the
// tree: the fd handler (unix_socket.cc) records each socket; then, once every
// process is described, LinkUnixSockets matches them to their peers, refuses
// what cannot be restored (a peer outside the tree, ...) and reads each
// socket's queue once; at restore, UnixSocketSet makes them all again in cryo
// (socketpair(2) for two sockets of the image connected to each other) for
// the fd pool.
#pragma once

#include <sys/types.h>

#include <functional>
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

class InFlightFiles;  // net/unix_in_flight.h
struct DumpScope;     // files/fd_kind.h

// "UNIX stream socket @name", "unnamed UNIX datagram socket", ...
std::string DescribeUnixSocket(const image::UnixSocket& u);

// Dump, before anything is written: `tables` are the fd tables of every live
// process of the tree. With `ext_peers` (--ext-unix-sk), a peer outside the
// tree is let go (UnixSocket.peer_outside); `features` gets the features
// that needs.
// With `in_flight`, the fds in flight in the queues (SCM_RIGHTS) go there,
// described with `scope`; without, they are refused.
Status LinkUnixSockets(const std::vector<std::pair<pid_t, image::FdTable*>>& tables, bool ext_peers,
                       std::set<std::string>* features, InFlightFiles* in_flight = nullptr,
                       const DumpScope* scope = nullptr);

class UnixSocketSet {
 public:
  // Creates every UNIX socket of the image (named, filled, shut down as
  // dumped); listeners must be bound after this (a borrowed name).
  static Result<UnixSocketSet> Build(const image::LoadedImage& img);
  // Once every description of the image is open: the queues, with the fds
  // in flight in them (`pool_fd`: the fd of the pool on the description of
  // one), then the shutdowns.
  Status FillQueues(const std::function<int(const image::Fd&)>& pool_fd);
  // A new fd (close-on-exec) on the socket of `f`.
  Result<int> Open(const image::Fd& f) const;

 private:
  std::map<uint64_t, UniqueFd> fds_;  // inode at the dump -> socket
  std::map<uint64_t, const image::UnixSocket*> recs_;  // inode -> the record with its queue
  std::map<uint64_t, UniqueFd> closed_peers_;          // the other end of a pair whose peer was closed
};

}  // namespace cryo
