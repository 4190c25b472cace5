#include "ns/user_ns.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "ns/ns_thread.h"
#include "ns/tree_mntns.h"
#include "ns/tree_pidns.h"
#include "proc/proc.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

namespace cryo::ns {

namespace {

// The tree's user namespace at restore (an fd of it) and its maps; inherited
// by the processes cryo forks (the --pidns new init, the helpers).
int g_userns_fd = -1;
bool g_made = false;
image::UserNamespace g_maps;

std::string Pid(pid_t pid) { return "pid " + std::to_string(pid); }

bool HasFeature(const image::Inventory& inv, const char* f) {
  return std::find(inv.features().begin(), inv.features().end(), f) != inv.features().end();
}

Result<uint64_t> InodeOfFd(int fd, const std::string& what) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno("fstat " + what);
  return static_cast<uint64_t>(st.st_ino);
}

// The user namespace owning namespace file `path` (NS_GET_USERNS, ioctl_ns(2)).
Result<uint64_t> OwnerUserNs(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  UniqueFd owner(::ioctl(fd.get(), NS_GET_USERNS));
  if (!owner.valid()) return Status::FromErrno("NS_GET_USERNS on " + path);
  return InodeOfFd(owner.get(), "the owner of " + path);
}

Status ParseIdMap(const std::string& path, google::protobuf::RepeatedPtrField<image::IdMapRange>* out) {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  for (std::string_view line : SplitLines(text)) {
    const std::vector<std::string_view> w = SplitWords(line);
    if (w.empty()) continue;
    uint64_t v[3] = {};
    bool ok = w.size() == 3;
    for (size_t i = 0; ok && i < 3; ++i) {
      ok = !w[i].empty() && w[i].find_first_not_of("0123456789") == std::string_view::npos && w[i].size() <= 10;
      if (ok) v[i] = std::stoull(std::string(w[i]));
      ok = ok && v[i] <= UINT32_MAX;
    }
    if (!ok) return Status::Error(path + ": malformed line \"" + std::string(line) + "\"");
    image::IdMapRange* r = out->Add();
    r->set_inside(static_cast<uint32_t>(v[0]));
    r->set_outside(static_cast<uint32_t>(v[1]));
    r->set_count(static_cast<uint32_t>(v[2]));
  }
  return Status::Ok();
}

// The ids of one "Uid:"/"Gid:"/"Groups:" line of /proc/PID/status.
std::vector<uint32_t> StatusIds(const std::string& status, const char* key) {
  std::vector<uint32_t> ids;
  const std::string k = std::string("\n") + key + ":";
  const size_t at = status.find(k);
  if (at == std::string::npos) return ids;
  const size_t end = status.find('\n', at + 1);
  for (std::string_view w : SplitWords(std::string_view(status).substr(at + k.size(), end - at - k.size())))
    ids.push_back(static_cast<uint32_t>(std::stoul(std::string(w))));
  return ids;
}

// Every uid and gid of the tree's processes is mapped: the restored process
// gets the same ids (a process whose ids were set before the map was written
// shows the overflow id 65534, which a restore cannot give back).
Status CheckIdsMapped(const std::vector<pid_t>& pids, const image::UserNamespace& u) {
  for (pid_t p : pids) {
    CRYO_ASSIGN_OR_RETURN(std::string status, ReadFileToString("/proc/" + std::to_string(p) + "/status"));
    for (const auto& [key, gid] : {std::pair{"Uid", false}, std::pair{"Gid", true}, std::pair{"Groups", true}}) {
      const auto& map = gid ? u.gid_map() : u.uid_map();
      for (uint32_t id : StatusIds(status, key)) {
        uint32_t inside;
        if (!MapIdInside(map, id, &inside))
          return Status::Error(Pid(p) + ": its " + (std::string(key) == "Groups" ? "supplementary group" : key) + " " +
                               std::to_string(id) + " is not mapped in its user namespace (" +
                               (gid ? "gid_map" : "uid_map") + " \"" + std::string(Trim(FormatIdMap(map))) +
                               "\"); a restore could not give it back");
      }
    }
  }
  return Status::Ok();
}

// Sends `fds` over the socket `sock` (SCM_RIGHTS, unix(7)).
bool SendFds(int sock, const std::vector<int>& fds) {
  char byte = 'F';
  struct iovec iov = {&byte, 1};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL) == 1;
}

// Receives up to `n` fds sent by SendFds, or the error text the child sent
// instead (in `error`).
std::vector<UniqueFd> RecvFds(int sock, size_t n, std::string* error) {
  std::vector<UniqueFd> out;
  char buf[512];
  struct iovec iov = {buf, sizeof(buf)};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * n));
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t r;
  do {
    r = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) {
    *error = r < 0 ? std::string("recvmsg: ") + std::strerror(errno) : "the child ended without a word";
    return out;
  }
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      out.emplace_back(fd);
    }
  }
  if (buf[0] != 'F') *error = std::string(buf + 1, static_cast<size_t>(r - 1));
  return out;
}

// In a forked child: says why it failed on `sock`, and exits.
[[noreturn]] void ChildFail(int sock, const std::string& why) {
  const std::string text = "E" + why + ": " + std::strerror(errno);
  (void)!::send(sock, text.data(), std::min<size_t>(text.size(), 500), MSG_NOSIGNAL);
  ::_exit(1);
}

struct NsFile {
  int type;
  const char* name;  // /proc/self/ns/NAME after unshare(type)
};
constexpr NsFile kNsFiles[] = {
    {CLONE_NEWNS, "mnt"},       {CLONE_NEWUTS, "uts"},   {CLONE_NEWIPC, "ipc"},
    {CLONE_NEWNET, "net"},      {CLONE_NEWPID, "pid_for_children"},
    {CLONE_NEWCGROUP, "cgroup"}, {CLONE_NEWTIME, "time_for_children"},
};

Status Reap(pid_t child, const std::string& what) {
  int st;
  while (::waitpid(child, &st, 0) < 0)
    if (errno != EINTR) return Status::FromErrno("waitpid for the child that " + what);
  return Status::Ok();
}

}  // namespace

std::string FormatIdMap(const google::protobuf::RepeatedPtrField<image::IdMapRange>& ranges) {
  std::string out;
  for (const image::IdMapRange& r : ranges)
    out += std::to_string(r.inside()) + " " + std::to_string(r.outside()) + " " + std::to_string(r.count()) + "\n";
  return out;
}

bool MapIdInside(const google::protobuf::RepeatedPtrField<image::IdMapRange>& ranges, uint32_t id, uint32_t* inside) {
  for (const image::IdMapRange& r : ranges)
    if (id >= r.outside() && static_cast<uint64_t>(id) < static_cast<uint64_t>(r.outside()) + r.count()) {
      *inside = r.inside() + (id - r.outside());
      return true;
    }
  return false;
}

Status DumpUserNamespace(const std::vector<pid_t>& pids, const std::set<pid_t>& tree, image::NamespaceTable* out,
                         std::set<std::string>* features) {
  if (pids.empty()) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(const uint64_t mine, NsInode(0, "user"));
  std::map<uint64_t, pid_t> seen;
  for (pid_t p : pids) {
    CRYO_ASSIGN_OR_RETURN(uint64_t ino, NsInode(p, "user"));
    seen.emplace(ino, p);
  }
  if (seen.size() == 1 && seen.begin()->first == mine) return Status::Ok();
  if (seen.size() > 1) {
    auto a = seen.begin(), b = std::next(a);
    return Status::Error(Pid(a->second) + " lives in user namespace user:[" + std::to_string(a->first) + "] and " +
                         Pid(b->second) + " in user:[" + std::to_string(b->first) + "]: a tree is restored only with "
                         "one user namespace (cryo's, or its own shared by all of its processes)");
  }
  const uint64_t owned = seen.begin()->first;
  const pid_t first = pids.front();
  const std::string link = "user:[" + std::to_string(owned) + "]";
  const std::string path = "/proc/" + std::to_string(first) + "/ns/user";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  // NS_GET_PARENT fails with EPERM when the parent is outside the caller's
  // namespace: the tree's must be a child of cryo's (ioctl_ns(2)).
  UniqueFd parent(::ioctl(fd.get(), NS_GET_PARENT));
  const Result<uint64_t> parent_ino = parent.valid() ? InodeOfFd(parent.get(), "the parent of " + path)
                                                     : Result<uint64_t>(Status::FromErrno("NS_GET_PARENT"));
  if (!parent_ino.ok() || *parent_ino != mine)
    return Status::Error("the tree's user namespace " + link + " is nested below another user namespace than "
                         "cryo's (" + (parent_ino.ok() ? "user:[" + std::to_string(*parent_ino) + "]" : "unknown") +
                         "); only a user namespace one level below cryo's is restored (run cryo from its parent)");
  uid_t owner = 0;
  if (::ioctl(fd.get(), NS_GET_OWNER_UID, &owner) != 0) return Status::FromErrno("NS_GET_OWNER_UID on " + path);
  if (owner != ::geteuid())
    return Status::Error("the tree's user namespace " + link + " is owned by uid " + std::to_string(owner) +
                         "; a restore by cryo (euid " + std::to_string(::geteuid()) + ") would make it owned by " +
                         "cryo's uid, giving that uid and not " + std::to_string(owner) + " its capabilities in it");
  CRYO_RETURN_IF_ERROR(proc::ForEachPidOutside(tree, [&](pid_t p) {
    // Pid 1 of the tree's own PID namespace: the restore's init takes its
    // place (it lives in cryo's user namespace).
    if (p == 1 && DumpingInTreePidns()) return Status::Ok();
    auto ino = NsInode(p, "user");
    if (!ino.ok() || *ino != owned) return Status::Ok();
    return Status::Error(Pid(p) + ", outside the tree, lives in the tree's user namespace " + link +
                         ": a restore would not share the namespace with it (dump the tree that holds every process "
                         "of the namespace)");
  }));
  // Every namespace of the tree's own must be owned by it (made after it);
  // the ones it shares with cryo are owned by cryo's.
  for (const auto& [kind, cryos] :
       std::vector<std::pair<const char*, uint64_t>>{{"uts", 0}, {"ipc", 0}, {"net", 0}, {"mnt", 0},
                                                     {"pid", 0}, {"cgroup", 0}, {"time", 0}}) {
    CRYO_ASSIGN_OR_RETURN(uint64_t ns_ino, NsInode(first, kind));
    uint64_t cryo_ino = 0;  // a PID namespace dumped from inside: the tree's own
    if (std::string(kind) == "mnt" && DumpingInTreePidns()) {
      cryo_ino = CryoMountNs();
    } else if (std::string(kind) != "pid" || !DumpingInTreePidns()) {
      CRYO_ASSIGN_OR_RETURN(cryo_ino, NsInode(0, kind));
    }
    if (ns_ino == cryo_ino) continue;
    const std::string ns_path = "/proc/" + std::to_string(first) + "/ns/" + kind;
    CRYO_ASSIGN_OR_RETURN(uint64_t ns_owner, OwnerUserNs(ns_path));
    if (ns_owner != owned)
      return Status::Error("the tree's " + std::string(kind) + " namespace " + kind + ":[" + std::to_string(ns_ino) +
                           "] is owned by user namespace user:[" + std::to_string(ns_owner) + "], not by the tree's " +
                           link + " (it was made before the user namespace); a restore makes every namespace of the "
                           "tree's own in its user namespace");
  }
  // A PID namespace of the tree's own (dumped from inside it) is owned by it
  // (checked above): --pidns new makes it again in the fresh user namespace
  // (restore/pidns_userns.h).
  // Threads are cloned with their ids (clone3 set_tid: CAP_SYS_ADMIN in the
  // user namespace owning the PID namespace, clone3(2)) by a process that has
  // already joined the tree's user namespace (setns(2) into a user namespace
  // takes a single-threaded caller). In a PID namespace the tree's user
  // namespace does not own, that clone fails: refuse before the tree is lost.
  CRYO_ASSIGN_OR_RETURN(uint64_t pid_owner, OwnerUserNs("/proc/" + std::to_string(first) + "/ns/pid"));
  if (pid_owner != owned)
    for (pid_t p : pids) {
      auto st = proc::ReadStat(p);
      if (st.ok() && st->num_threads > 1)
        return Status::Error(Pid(p) + " has " + std::to_string(st->num_threads) + " threads and lives in the tree's "
                             "user namespace " + link + ", whose PID namespace it does not own: a restore cannot give "
                             "its threads their ids from inside that user namespace (start the program with "
                             "`unshare --user --pid --fork`, so that its user namespace owns its PID namespace)");
    }
  image::UserNamespace* u = out->mutable_user();
  CRYO_RETURN_IF_ERROR(ParseIdMap("/proc/" + std::to_string(first) + "/uid_map", u->mutable_uid_map()));
  CRYO_RETURN_IF_ERROR(ParseIdMap("/proc/" + std::to_string(first) + "/gid_map", u->mutable_gid_map()));
  CRYO_ASSIGN_OR_RETURN(std::string setgroups, ReadFileToString("/proc/" + std::to_string(first) + "/setgroups"));
  u->set_setgroups_deny(Trim(setgroups) == "deny");
  CRYO_RETURN_IF_ERROR(CheckIdsMapped(pids, *u));
  features->insert("user-ns");
  return Status::Ok();
}

bool HaveTreeUserNs() { return g_made; }

int* TreeUserNsFd() { return &g_userns_fd; }

Status MakeTreeUserNs(const image::Inventory& inv, const image::NamespaceTable& ns) {
  if (!HasFeature(inv, "user-ns") || g_made) return Status::Ok();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return Status::FromErrno("socketpair");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  const pid_t child = ::fork();
  if (child < 0) return Status::FromErrno("fork (a child to make the tree's user namespace)");
  if (child == 0) {
    // Holds the namespace until cryo has written its maps (they can be
    // written only while a process is in it: /proc/PID/uid_map).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    mine.reset();
    if (::unshare(CLONE_NEWUSER) != 0) ChildFail(theirs.get(), "unshare(CLONE_NEWUSER)");
    const int fd = ::open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
    if (fd < 0) ChildFail(theirs.get(), "open /proc/self/ns/user");
    if (!SendFds(theirs.get(), {fd})) ::_exit(1);
    char c;
    while (::read(theirs.get(), &c, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  theirs.reset();
  std::string error;
  std::vector<UniqueFd> fds = RecvFds(mine.get(), 1, &error);
  Status st;
  if (fds.size() != 1) st = Status::Error("making the tree's user namespace: " + error);
  const image::UserNamespace& u = ns.user();
  const std::string dir = "/proc/" + std::to_string(child) + "/";
  // setgroups before gid_map (user_namespaces(7): "deny" can be written only
  // while no gid_map is); each map in a single write.
  if (st.ok() && u.setgroups_deny()) st = WriteToFile(dir + "setgroups", "deny");
  if (st.ok()) st = WriteToFile(dir + "uid_map", FormatIdMap(u.uid_map())).Prefixed("the tree's user namespace");
  if (st.ok()) st = WriteToFile(dir + "gid_map", FormatIdMap(u.gid_map())).Prefixed("the tree's user namespace");
  mine.reset();  // the child exits
  CRYO_RETURN_IF_ERROR(Reap(child, "made the tree's user namespace"));
  CRYO_RETURN_IF_ERROR(st);
  g_userns_fd = fds[0].release();
  g_made = true;
  g_maps = u;
  LOG_DEBUG("fresh user namespace: uid_map \"%s\", gid_map \"%s\", setgroups %s", Trim(FormatIdMap(u.uid_map())).data(),
            Trim(FormatIdMap(u.gid_map())).data(), u.setgroups_deny() ? "deny" : "allow");
  return Status::Ok();
}

Status UnshareOwned(int flags, const std::string& what) {
  if (!flags) return Status::Ok();
  if (!g_made) {
    if (::unshare(flags) != 0) return Status::FromErrno("unshare (" + what + ")");
    return Status::Ok();
  }
  std::vector<const NsFile*> kinds;
  for (const NsFile& k : kNsFiles)
    if (flags & k.type) kinds.push_back(&k);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return Status::FromErrno("socketpair");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  const pid_t child = ::fork();
  if (child < 0) return Status::FromErrno("fork (a child to make " + what + " in the tree's user namespace)");
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    mine.reset();
    // A forked child is single-threaded with an fs_struct of its own, as
    // setns(CLONE_NEWUSER) requires (setns(2)).
    if (g_userns_fd < 0 || ::setns(g_userns_fd, CLONE_NEWUSER) != 0)
      ChildFail(theirs.get(), "setns into the tree's user namespace");
    if (::unshare(flags) != 0) ChildFail(theirs.get(), "unshare (" + what + ")");
    std::vector<int> fds;
    for (const NsFile* k : kinds) {
      const int fd = ::open((std::string("/proc/self/ns/") + k->name).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) ChildFail(theirs.get(), std::string("open /proc/self/ns/") + k->name);
      fds.push_back(fd);
    }
    ::_exit(SendFds(theirs.get(), fds) ? 0 : 1);
  }
  theirs.reset();
  std::string error;
  std::vector<UniqueFd> fds = RecvFds(mine.get(), kinds.size(), &error);
  CRYO_RETURN_IF_ERROR(Reap(child, "made " + what));
  if (fds.size() != kinds.size()) return Status::Error("making " + what + " in the tree's user namespace: " + error);
  // setns(CLONE_NEWNS) moves the caller to the namespace's root directory;
  // unshare(CLONE_NEWNS) keeps the working directory (relative image paths).
  char cwd[4096];
  const bool have_cwd = (flags & CLONE_NEWNS) && ::getcwd(cwd, sizeof(cwd)) != nullptr;
  for (size_t i = 0; i < kinds.size(); ++i)
    if (::setns(fds[i].get(), kinds[i]->type) != 0)
      return Status::FromErrno(std::string("setns into the fresh ") + kinds[i]->name + " namespace (" + what + ")");
  if (have_cwd && ::chdir(cwd) != 0) return Status::FromErrno(std::string("chdir back to ") + cwd);
  return Status::Ok();
}

Status CheckTreeUserNsFit(const image::LoadedImage& img) {
  const image::Inventory& inv = img.inventory;
  if (!HasFeature(inv, "user-ns")) return Status::Ok();
  // The time namespace is made in it (ns/time_ns.h), not with a PID
  // namespace made in it too.
  if (HasFeature(inv, "time-ns") && HasFeature(inv, "pid-ns"))
    return Status::Error("the image has a user namespace of the tree's own, feature 'time-ns' and feature 'pid-ns', "
                         "which are not restored together yet");
  if (img.namespaces.user().uid_map().empty() || img.namespaces.user().gid_map().empty())
    return Status::Error("the tree's user namespace has an empty uid or gid map (corrupted image)");
  return Status::Ok();
}

Status JoinTreeUserNs(const image::ProcessCore& core) {
  if (!g_made) return Status::Ok();
  if (g_userns_fd < 0) return Status::Error("the tree's user namespace fd is gone");
  std::vector<gid_t> groups(core.creds().groups().begin(), core.creds().groups().end());
  if (::setgroups(groups.size(), groups.data()) != 0) return Status::FromErrno("setgroups (before the user namespace)");
  int pdeath = 0;
  ::prctl(PR_GET_PDEATHSIG, &pdeath);
  if (::setns(g_userns_fd, CLONE_NEWUSER) != 0) return Status::FromErrno("setns into the tree's user namespace");
  ::close(g_userns_fd);
  g_userns_fd = -1;
  // The credential change clears the parent-death signal (commit_creds).
  if (pdeath && ::prctl(PR_SET_PDEATHSIG, pdeath) != 0) return Status::FromErrno("PR_SET_PDEATHSIG");
  return Status::Ok();
}

Result<uint32_t> IdInTreeUserNs(uint32_t id, bool gid) {
  if (!g_made) return id;
  uint32_t inside;
  if (!MapIdInside(gid ? g_maps.gid_map() : g_maps.uid_map(), id, &inside))
    return Status::Error(std::string(gid ? "gid " : "uid ") + std::to_string(id) +
                         " is not mapped in the tree's user namespace");
  return inside;
}

}  // namespace cryo::ns
