#include "net/unix_pending.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>

namespace cryo {

namespace {

struct PendingClient {
  int pool_fd = -1;
  uint32_t owner_uid = 0, owner_gid = 0, shutdown = 0;
};

// Client inode -> its socket in the pool. Filled in cryo before the tree is
// cloned; the helpers read their copy.
std::map<uint64_t, PendingClient>& PendingClients() {
  static std::map<uint64_t, PendingClient> m;
  return m;
}

std::string ListenerName(const image::ListenSocket& l) {
  const std::string& a = l.address();
  const size_t off = offsetof(struct sockaddr_un, sun_path);
  if (a.size() <= off) return "";
  if (a[off] == '\0') return "@" + a.substr(off + 1);
  return std::string(a.c_str() + off);
}

}  // namespace

Status DumpPendingConnections(const UnixSocketDiag& diag, image::ListenSocket* l, const std::string& what) {
  if (diag.pending_clients.empty()) return Status::Ok();
  for (uint32_t client : diag.pending_clients)
    if (!client)
      return Status::Error(what + " has a connection waiting to be accepted whose client was closed since (what it "
                                  "sent cannot be read before accept, and nothing can connect again in its place); "
                                  "accept it or let the listener's process drain its queue");
  if (l->file_unlinked())
    return Status::Error(what + " has " + std::to_string(diag.pending_clients.size()) +
                         " connections waiting to be accepted, but its file was removed: they cannot connect to it "
                         "again by name");
  for (uint32_t client : diag.pending_clients) l->add_pending_clients(client);
  return Status::Ok();
}

std::map<uint64_t, std::string> PendingClientsOf(const std::vector<std::pair<pid_t, image::FdTable*>>& tables) {
  std::map<uint64_t, std::string> out;
  for (const auto& [pid, table] : tables)
    for (const image::Fd& f : table->fds())
      if (f.kind() == image::FD_LISTEN_SOCKET)
        for (uint64_t client : f.listen_socket().pending_clients())
          out.emplace(client, "pid " + std::to_string(pid) + " fd " + std::to_string(f.fd()) + " (listening on " +
                                  ListenerName(f.listen_socket()) + ")");
  return out;
}

Status CheckPendingClientSentNothing(int fd, const std::string& what) {
  int outq = 0;
  if (::ioctl(fd, TIOCOUTQ, &outq) != 0) return Status::FromErrno("SIOCOUTQ of " + what);
  if (outq)
    return Status::Error(what + " has sent " + std::to_string(outq) +
                         " bytes (kernel memory, with their overhead) on its connection, which its listener has not "
                         "accepted yet: cryo cannot read them without accepting it; let the server accept it first");
  return Status::Ok();
}

Status WithEffectiveIds(uid_t uid, gid_t gid, const std::function<Status()>& fn, const std::string& what) {
  const gid_t egid = ::getegid();
  const uid_t euid = ::geteuid();
  std::vector<gid_t> mine(static_cast<size_t>(std::max(::getgroups(0, nullptr), 0)));
  if (::getgroups(static_cast<int>(mine.size()), mine.data()) < 0) return Status::FromErrno("getgroups");
  Status st;
  if (uid && syscall(SYS_setgroups, 0, nullptr) != 0) st = Status::FromErrno("setgroups for " + what);
  if (st.ok() && gid != egid && syscall(SYS_setresgid, -1, gid, -1) != 0) st = Status::FromErrno("setresgid for " + what);
  if (st.ok() && uid != euid && syscall(SYS_setresuid, -1, uid, -1) != 0) st = Status::FromErrno("setresuid for " + what);
  if (st.ok()) st = fn();
  if ((uid != euid && syscall(SYS_setresuid, -1, euid, -1) != 0) || (gid != egid && syscall(SYS_setresgid, -1, egid, -1) != 0) ||
      (uid && syscall(SYS_setgroups, mine.size(), mine.data()) != 0))
    return Status::FromErrno("returning to cryo's ids after " + what);
  return st;
}

void NotePendingClient(const image::UnixSocket& u, int pool_fd) {
  PendingClients()[u.ino()] = {pool_fd, u.owner_uid(), u.owner_gid(), u.shutdown()};
}

Status ConnectPendingClients(const image::ListenSocket& l, const std::string& what) {
  const auto* addr = reinterpret_cast<const sockaddr*>(l.address().data());
  const auto len = static_cast<socklen_t>(l.address().size());
  for (uint64_t ino : l.pending_clients()) {
    const std::string client = "the connection of socket:[" + std::to_string(ino) + "] waiting on " + what;
    auto it = PendingClients().find(ino);
    if (it == PendingClients().end()) return Status::Error(client + ": the client is not in the pool");
    const PendingClient& c = it->second;
    // The server's end takes the connecting thread's ids as its SO_PEERCRED
    // (init_peercred in unix_stream_connect); the client's, the listener's.
    CRYO_RETURN_IF_ERROR(WithEffectiveIds(c.owner_uid, c.owner_gid, [&]() -> Status {
      if (::connect(c.pool_fd, addr, len) != 0) return Status::FromErrno("connect of " + client);
      return Status::Ok();
    }, "connecting " + client));
    const uint32_t bits = c.shutdown & 3;
    if (bits && ::shutdown(c.pool_fd, bits == 3 ? SHUT_RDWR : bits == 1 ? SHUT_RD : SHUT_WR) != 0)
      return Status::FromErrno("shutdown of " + client);
  }
  return Status::Ok();
}

}  // namespace cryo
