#include "image/in_flight.h"

#include <map>

namespace cryo::image {

std::vector<const UnixSocket*> QueueHolders(const LoadedImage& img) {
  std::map<uint64_t, const UnixSocket*> recs;
  for (const auto& [pid, p] : img.processes)
    for (const Fd& f : p.fds.fds()) {
      if (f.kind() != FD_UNIX_SOCKET) continue;
      const UnixSocket*& r = recs[f.unix_socket().ino()];
      if (!r || (f.unix_socket().queue_stored() && !r->queue_stored())) r = &f.unix_socket();
    }
  std::vector<const UnixSocket*> out;
  for (const auto& [ino, r] : recs) out.push_back(r);
  return out;
}

bool SendableInFlight(FdKind k) {
  switch (k) {
    case FD_REGULAR:
    case FD_DIRECTORY:
    case FD_CHARDEV:
    case FD_MEMFD:
    case FD_PIPE:
    case FD_EVENTFD:
    case FD_TIMERFD:
    case FD_SIGNALFD:
    case FD_UNIX_SOCKET:
      return true;
    default:
      return false;
  }
}

std::vector<const Fd*> InFlightFds(const LoadedImage& img) {
  std::vector<const Fd*> out;
  for (const UnixSocket* u : QueueHolders(img))
    for (const UnixInFlight& m : u->in_flight())
      for (const Fd& f : m.fds()) out.push_back(&f);
  return out;
}

}  // namespace cryo::image
