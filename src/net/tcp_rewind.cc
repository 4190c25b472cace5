#include "net/tcp_rewind.h"

#include <sched.h>

#include <algorithm>
#include <set>
#include <thread>
#include <utility>

#include "base/log.h"
#include "net/net_lock.h"

namespace cryo {

// "TCP 10.0.0.1:4000 <-> 10.0.0.2:80", "TCP6 [::1]:4000 <-> [::1]:80": as
// every message of the dump and the restore names a connection (tcp_socket.cc).
std::string TcpConnectionName(const image::TcpSocket& t);

namespace {

// One end as it goes over the wire (a v4-mapped address is the IPv4 one).
std::string Key(const std::string& addr) {
  const InetEndpoint e = ParseInetEndpoint(addr);
  return (e.ipv4 ? "4 " : "6 ") + e.ip + " " + std::to_string(e.port);
}

}  // namespace

std::vector<std::string> ConnectionsWithPeerOutside(const TreeFdTables& tables) {
  std::set<std::pair<std::string, std::string>> ends;  // (local, peer) of each socket
  for (const auto& [pid, fds] : tables)
    for (const image::Fd& f : fds->fds())
      if (f.kind() == image::FD_TCP_SOCKET) ends.insert({Key(f.tcp_socket().local()), Key(f.tcp_socket().peer())});
  std::vector<std::string> out;
  std::set<uint64_t> named;
  for (const auto& [pid, fds] : tables)
    for (const image::Fd& f : fds->fds()) {
      if (f.kind() != image::FD_TCP_SOCKET) continue;
      const image::TcpSocket& t = f.tcp_socket();
      if (ends.count({Key(t.peer()), Key(t.local())}) || !named.insert(t.ino()).second) continue;
      out.push_back("pid " + std::to_string(pid) + " fd " + std::to_string(f.fd()) + ": " + TcpConnectionName(t));
    }
  return out;
}

std::vector<std::string> ConnectionsWithPeerOutside(const image::LoadedImage& img) {
  TreeFdTables tables;
  for (const auto& [pid, p] : img.processes) tables.push_back({pid, &p.fds});
  return ConnectionsWithPeerOutside(tables);
}

void WarnPeersNotRewound(const TreeFdTables& tables) {
  for (const std::string& c : ConnectionsWithPeerOutside(tables))
    LOG_WARN("%s: its peer is outside the tree and goes on with the running original: this image restores the "
             "connection only with --tcp-close (reset by its peer)", c.c_str());
}

Status CheckOutsidePeersHeld(const image::LoadedImage& img, bool tcp_close, bool held_by_source) {
  if (tcp_close) return Status::Ok();
  const std::vector<std::string> outside = ConnectionsWithPeerOutside(img);
  if (outside.empty()) return Status::Ok();
  const std::string& lock = img.inventory.net_lock();
  std::string why;
  if (lock.empty()) {
    why = "the image was dumped with --leave-running, and the original went on with this connection";
  } else if (held_by_source) {
    return Status::Ok();
  } else {
    CRYO_ASSIGN_OR_RETURN(const bool held, NetLockExists(lock));
    if (held) return Status::Ok();
    why = "the image's network lock (nftables table inet " + lock +
          ") is gone: the image was restored already, a restore of it failed, or `cryo unlock` removed it";
  }
  std::string more;
  if (outside.size() > 1) more = " (and " + std::to_string(outside.size() - 1) + " more such connection(s))";
  return Status::Error(outside[0] + ": its peer is outside the tree and not rewound with it; " + why +
                       ", so the peer has acknowledged bytes the image does not hold, or reset the connection: restored "
                       "from the image's sequence numbers, it would be stuck" + more +
                       "; restore with --tcp-close to get it back reset by its peer (or dump in kill mode and restore "
                       "once)");
}

Status KeepNetnsLockToken(const std::string& lock, const TreeFdTables& tables, int home_netns) {
  if (ConnectionsWithPeerOutside(tables).empty()) return Status::Ok();
  if (!IsNetLockName(lock)) return Status::Error("\"" + lock + "\" is no network lock of cryo's");
  // cryo's main thread visits the tree's namespace (ns/netns.h NetnsVisit),
  // whose processes are dead: nft runs from a thread back in cryo's own
  // (setns(2) changes the calling thread only; a child inherits its
  // namespaces).
  Status s;
  std::thread t([&] {
    if (home_netns >= 0 && ::setns(home_netns, CLONE_NEWNET) != 0) {
      s = Status::FromErrno("setns into cryo's own network namespace");
      return;
    }
    s = RunNft("add table inet " + lock + "\n");
  });
  t.join();
  if (s.ok())
    LOG_DEBUG("network lock %s: its token made in cryo's namespace (the tree's namespace, where the lock was, "
              "is gone)", lock.c_str());
  return s.Prefixed("the token of network lock " + lock);
}

Status TakeNetnsLockToken(const image::LoadedImage& img) {
  const auto& f = img.inventory.features();
  if (img.inventory.net_lock().empty() || std::find(f.begin(), f.end(), "net-ns") == f.end() ||
      ConnectionsWithPeerOutside(img).empty())
    return Status::Ok();
  return RemoveNetLock(img.inventory.net_lock());
}

}  // namespace cryo
