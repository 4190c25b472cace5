// File descriptors in flight in the image's UNIX socket queues (sent with
// SCM_RIGHTS, not yet received: UnixSocket.in_flight). They belong to no
// process but are open files of the image all the same: pipes, memfds and
// shared descriptions count them.
#pragma once

#include <vector>

#include "image/image_dir.h"

namespace cryo::image {

// The UNIX socket record of each socket of the image that holds its queue
// (queue_stored; one record per socket inode).
std::vector<const UnixSocket*> QueueHolders(const LoadedImage& img);

// Whether an fd of kind `k` can be in flight in an image: the kinds the fd
// pool makes without a process (a file, directory or device by its path, a
// memfd, a pipe end, an eventfd, timerfd or signalfd) and UNIX sockets, made
// with their peers (the dump takes only those the tree holds too).
bool SendableInFlight(FdKind k);

// Every fd in flight in the image, each once.
std::vector<const Fd*> InFlightFds(const LoadedImage& img);

}  // namespace cryo::image
