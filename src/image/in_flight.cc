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

std::vector<const Fd*> InFlightFds(const LoadedImage& img) {
  std::vector<const Fd*> out;
  for (const UnixSocket* u : QueueHolders(img))
    for (const UnixInFlight& m : u->in_flight())
      for (const Fd& f : m.fds()) out.push_back(&f);
  return out;
}

}  // namespace cryo::image
