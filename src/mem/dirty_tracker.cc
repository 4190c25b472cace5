#include "mem/dirty_tracker.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <set>

#include "base/clock.h"
#include "base/log.h"
#include "base/pagemap_scan_abi.h"
#include "base/tracked_memory.h"
#include "inject/remote_syscall.h"
#include "seize/seize.h"

namespace cryo {

namespace {

// Debian 12's headers predate these (include/uapi/linux/userfaultfd.h, fs.h).
constexpr uint64_t kFeatureWpUnpopulated = 1 << 13;  // UFFD_FEATURE_WP_UNPOPULATED
constexpr uint64_t kFeatureWpAsync = 1 << 15;        // UFFD_FEATURE_WP_ASYNC
constexpr uint64_t kScanWpMatching = 1 << 0;         // PM_SCAN_WP_MATCHING
constexpr uint64_t kScanCheckWpAsync = 1 << 1;       // PM_SCAN_CHECK_WPASYNC
constexpr uint64_t kPageIsWritten = 1 << 1;          // PAGE_IS_WRITTEN
constexpr uint64_t kPageIsPfnZero = 1 << 5;          // PAGE_IS_PFNZERO
constexpr int kUserModeOnly = 1;                     // UFFD_USER_MODE_ONLY

DirtyTracking* g_session = nullptr;  // answers IsTrackedByCryo

bool CheckOwned(pid_t pid, uint64_t start, uint64_t end) { return g_session && g_session->Owns(pid, start, end); }

bool Eligible(const image::Vma& v) { return v.kind() == image::VMA_ANON_PRIVATE && (v.prot() & PROT_WRITE); }

uint64_t StartTicksOf(pid_t pid) {
  auto st = proc::ReadStat(pid);
  return st.ok() ? st->starttime : 0;
}

sockaddr_un TrackerAddress(const std::string& name, socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const size_t n = std::min(name.size(), sizeof(a.sun_path) - 2);
  std::memcpy(a.sun_path + 1, name.data(), n);  // abstract: sun_path[0] is NUL
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
  return a;
}

Status SendRecord(int sock, char kind, const std::string& payload, int fd) {
  if (!SendSentinelRecord(sock, kind, payload, fd)) return Status::FromErrno("sending to the memory tracker");
  return Status::Ok();
}

// The tracker: holds the userfaultfds and the generation; answers one client
// at a time. Ends once none of its processes is alive (checked each second)
// and no client came for 30 s.
struct HeldFd {
  uint64_t ticks;
  UniqueFd fd;
};

void ServeClient(int c, std::map<pid_t, HeldFd>* held, std::string* gen) {
  ucred cred{};
  socklen_t clen = sizeof(cred);
  if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || cred.uid != ::geteuid()) return;
  const timeval tv = {10, 0};
  ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  SentinelRecord rec;
  while (ReadSentinelRecord(c, &rec)) {
    if (rec.kind == 'L') {  // list: every fd, then the generation
      for (const auto& [pid, h] : *held)
        if (!SendRecord(c, 'E', std::to_string(pid) + " " + std::to_string(h.ticks), h.fd.get()).ok()) return;
      if (!SendRecord(c, 'G', *gen, -1).ok()) return;
    } else if (rec.kind == 'A' && rec.fd.valid()) {  // add (or replace) a process's fd
      pid_t pid = 0;
      unsigned long long ticks = 0;
      if (std::sscanf(rec.payload.c_str(), "%d %llu", &pid, &ticks) != 2) return;
      (*held)[pid] = HeldFd{ticks, std::move(rec.fd)};
      if (!SendRecord(c, 'K', "", -1).ok()) return;
    } else if (rec.kind == 'G') {  // the generation ("" clears it)
      *gen = rec.payload;
      if (!SendRecord(c, 'K', "", -1).ok()) return;
    } else {
      return;
    }
  }
}

void ServeTracker(int channel) {
  SentinelRecord first;
  if (!ReadSentinelRecord(channel, &first) || first.kind != 'S' || !first.fd.valid()) return;
  ::close(channel);
  const int listen_fd = first.fd.get();
  std::map<pid_t, HeldFd> held;
  std::string gen;
  double last_client = Now();
  for (;;) {
    pollfd p = {listen_fd, POLLIN, 0};
    const int r = ::poll(&p, 1, 1000);
    if (r > 0) {
      UniqueFd c(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
      if (c.valid()) ServeClient(c.get(), &held, &gen);
      last_client = Now();
      continue;
    }
    for (auto it = held.begin(); it != held.end();)
      it = StartTicksOf(it->first) == it->second.ticks ? std::next(it) : held.erase(it);
    if (held.empty() && Now() - last_client > 30) return;
  }
}

Status ReadReply(int sock, char want, SentinelRecord* out) {
  if (!ReadSentinelRecord(sock, out)) return Status::FromErrno("reading from the memory tracker");
  if (out->kind != want) return Status::Error("the memory tracker answered '" + std::string(1, out->kind) + "'");
  return Status::Ok();
}

// PAGEMAP_SCAN of [start, end) with WP_MATCHING | CHECK_WPASYNC: the pages
// written (or the zero page), protected again. EPERM: not tracked.
Status ScanWritten(int pagemap, uint64_t start, uint64_t end, std::vector<std::pair<uint64_t, uint64_t>>* written) {
  std::vector<PmPageRegion> vec(512);
  uint64_t at = start;
  while (at < end) {
    PmScanArg arg{};
    arg.size = sizeof(arg);
    arg.flags = kScanWpMatching | kScanCheckWpAsync;
    arg.start = at;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(vec.data());
    arg.vec_len = vec.size();
    arg.category_anyof_mask = kPageIsWritten | kPageIsPfnZero;
    arg.return_mask = kPageIsWritten | kPageIsPfnZero;
    const int n = ::ioctl(pagemap, kPagemapScanIoctl, &arg);
    if (n < 0) return Status::FromErrno("PAGEMAP_SCAN of " + std::to_string(start));
    for (int i = 0; i < n; ++i) {
      if (!written->empty() && written->back().second == vec[i].start)
        written->back().second = vec[i].end;
      else
        written->push_back({vec[i].start, vec[i].end});
    }
    if (arg.walk_end <= at) return Status::Error("PAGEMAP_SCAN made no progress");
    at = arg.walk_end;
  }
  return Status::Ok();
}

Status Protect(int uffd, uint64_t start, uint64_t end) {
  uffdio_register reg{};
  reg.range = {start, end - start};
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (::ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) return Status::FromErrno("UFFDIO_REGISTER");
  uffdio_writeprotect wp{};
  wp.range = {start, end - start};
  wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
  if (::ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0) return Status::FromErrno("UFFDIO_WRITEPROTECT");
  return Status::Ok();
}

}  // namespace

bool DirtyPages::Unchanged(uint64_t start, uint64_t end) const {
  auto t = std::upper_bound(tracked.begin(), tracked.end(), std::make_pair(start, UINT64_MAX));
  if (t == tracked.begin() || std::prev(t)->second < end) return false;
  // The first written range ending after start must begin at or after end.
  auto w = std::lower_bound(written.begin(), written.end(), start,
                            [](const std::pair<uint64_t, uint64_t>& r, uint64_t a) { return r.second <= a; });
  return w == written.end() || w->first >= end;
}

std::string TrackerSocketName(pid_t root, uint64_t root_ticks) {
  return "cryo-memtrack/" + std::to_string(root) + "/" + std::to_string(root_ticks);
}

Result<std::unique_ptr<DirtyTracking>> DirtyTracking::Find(pid_t root, uint64_t root_ticks) {
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s.valid()) return Status::FromErrno("socket for the memory tracker");
  socklen_t len;
  const sockaddr_un a = TrackerAddress(TrackerSocketName(root, root_ticks), &len);
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), len) != 0) {
    if (errno == ECONNREFUSED || errno == ENOENT) return std::unique_ptr<DirtyTracking>();
    return Status::FromErrno("connecting to the memory tracker");
  }
  const timeval tv = {10, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::unique_ptr<DirtyTracking> t(new DirtyTracking(std::move(s)));
  CRYO_RETURN_IF_ERROR(t->Load());
  g_session = t.get();
  SetTrackedRangeCheck(CheckOwned);
  return t;
}

Result<std::unique_ptr<DirtyTracking>> DirtyTracking::Start(pid_t root, uint64_t root_ticks) {
  UniqueFd l(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!l.valid()) return Status::FromErrno("socket for the memory tracker");
  socklen_t len;
  const sockaddr_un a = TrackerAddress(TrackerSocketName(root, root_ticks), &len);
  if (::bind(l.get(), reinterpret_cast<const sockaddr*>(&a), len) != 0 || ::listen(l.get(), 8) != 0)
    return Status::FromErrno("binding the memory tracker's socket");
  CRYO_ASSIGN_OR_RETURN(auto sentinel,
                        Sentinel::Start("cryo-memtrack", {}, [](int channel, pid_t) { ServeTracker(channel); }));
  CRYO_RETURN_IF_ERROR(sentinel->Send('S', "", l.get()));
  sentinel->Release();  // it outlives cryo: no wait for its exit
  l.reset();
  CRYO_ASSIGN_OR_RETURN(auto t, Find(root, root_ticks));
  if (!t) return Status::Error("the memory tracker did not answer");
  LOG_INFO("memory tracker started (pid %d): later --parent dumps of this tree read only the pages written since",
           sentinel->pid());
  return t;
}

DirtyTracking::~DirtyTracking() {
  if (g_session == this) {
    SetTrackedRangeCheck(nullptr);
    g_session = nullptr;
  }
}

Status DirtyTracking::Request(char kind, const std::string& payload, int fd) {
  CRYO_RETURN_IF_ERROR(SendRecord(sock_.get(), kind, payload, fd));
  SentinelRecord r;
  return ReadReply(sock_.get(), 'K', &r);
}

Status DirtyTracking::Load() {
  CRYO_RETURN_IF_ERROR(SendRecord(sock_.get(), 'L', "", -1));
  for (;;) {
    SentinelRecord r;
    if (!ReadSentinelRecord(sock_.get(), &r)) return Status::FromErrno("reading from the memory tracker");
    if (r.kind == 'G') {
      generation_ = r.payload;
      return Status::Ok();
    }
    pid_t pid = 0;
    unsigned long long ticks = 0;
    if (r.kind != 'E' || !r.fd.valid() || std::sscanf(r.payload.c_str(), "%d %llu", &pid, &ticks) != 2)
      return Status::Error("the memory tracker sent a malformed record");
    held_[pid] = Held{ticks, std::move(r.fd)};
  }
}

bool DirtyTracking::Owns(pid_t pid, uint64_t start, uint64_t end) {
  auto it = held_.find(pid);
  if (it == held_.end() || it->second.start_ticks != StartTicksOf(pid)) return false;
  // Registering again with the same userfaultfd succeeds (and changes
  // nothing); a range registered with another one fails with EBUSY
  // (fs/userfaultfd.c, userfaultfd_register).
  uffdio_register reg{};
  reg.range = {start, end - start};
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  return ::ioctl(it->second.uffd.get(), UFFDIO_REGISTER, &reg) == 0;
}

Result<UniqueFd> DirtyTracking::MakeUserfaultfd(const TrackedProcess& p) {
  CRYO_ASSIGN_OR_RETURN(auto rs, RemoteSyscaller::Attach(*p.sp, *p.vmas, p.sig_ign, p.sig_cgt));
  // Made in the process (it is bound to the mm of its maker) and closed
  // there on the call's way back, which runs also if cryo dies meanwhile.
  CRYO_ASSIGN_OR_RETURN(UniqueFd fd, rs->TakeFdMadeBy(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | kUserModeOnly, "userfaultfd"));
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = kFeatureWpAsync | kFeatureWpUnpopulated;
  if (::ioctl(fd.get(), UFFDIO_API, &api) != 0) return Status::FromErrno("UFFDIO_API with UFFD_FEATURE_WP_ASYNC");
  return fd;
}

Status DirtyTracking::Prepare(const std::vector<TrackedProcess>& procs, const std::string& parent_id, bool track,
                              std::map<pid_t, DirtyPages>* dirty) {
  // A dump that fails from here leaves no generation: the next one compares.
  const bool relative = !parent_id.empty() && parent_id == generation_;
  CRYO_RETURN_IF_ERROR(Request('G', ""));
  generation_.clear();
  // Processes sharing one mm (CLONE_VM without CLONE_THREAD): the scan of
  // one would protect again what the other's should report. Neither is
  // tracked (kcmp(2) KCMP_VM).
  std::set<pid_t> shared_mm;
  for (size_t i = 0; i < procs.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      const pid_t a = procs[i].sp->pid(), b = procs[j].sp->pid();
      const long order = ::syscall(SYS_kcmp, a, b, KCMP_VM, 0, 0);  // 0: the same mm; -1: unknown
      if (order != 1 && order != 2) {
        shared_mm.insert(a);
        shared_mm.insert(b);
      }
    }
  for (const TrackedProcess& p : procs) {
    const pid_t pid = p.sp->pid();
    if (shared_mm.count(pid)) {
      LOG_INFO("pid %d shares its memory with another process of the tree: not tracked (compared)", pid);
      continue;
    }
    auto it = held_.find(pid);
    if (it != held_.end() && it->second.start_ticks != p.start_ticks) {
      held_.erase(it);  // another process had that pid
      it = held_.end();
    }
    DirtyPages d;
    if (it != held_.end()) {
      UniqueFd pagemap(::open(("/proc/" + std::to_string(pid) + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC));
      if (!pagemap.valid()) return Status::FromErrno("opening /proc/" + std::to_string(pid) + "/pagemap");
      for (const image::Vma& v : p.mm->vmas()) {
        if (!Eligible(v)) continue;
        std::vector<std::pair<uint64_t, uint64_t>> w;
        Status s = ScanWritten(pagemap.get(), v.start(), v.end(), &w);
        if (!s.ok()) {
          LOG_DEBUG("pid %d: VMA %" PRIx64 "-%" PRIx64 " not tracked (%s): compared", pid, v.start(), v.end(),
                    s.ToString().c_str());
          continue;
        }
        d.tracked.push_back({v.start(), v.end()});
        d.written.insert(d.written.end(), w.begin(), w.end());
      }
    } else if (track) {
      auto fd = MakeUserfaultfd(p);
      if (!fd.ok()) {
        LOG_WARN("pid %d: not tracked: %s", pid, fd.status().ToString().c_str());
        continue;
      }
      CRYO_RETURN_IF_ERROR(
          Request('A', std::to_string(pid) + " " + std::to_string(p.start_ticks), fd->get()));
      it = held_.emplace(pid, Held{p.start_ticks, std::move(*fd)}).first;
    }
    if (track && it != held_.end()) {
      // VMAs not tracked yet: registered and protected now (tracked for the next dump).
      for (const image::Vma& v : p.mm->vmas()) {
        if (!Eligible(v)) continue;
        const bool scanned = std::any_of(d.tracked.begin(), d.tracked.end(), [&](const auto& r) {
          return r.first == v.start() && r.second == v.end();
        });
        if (scanned) continue;  // protected again by the scan
        Status s = Protect(it->second.uffd.get(), v.start(), v.end());
        if (!s.ok())
          LOG_DEBUG("pid %d: VMA %" PRIx64 "-%" PRIx64 " not tracked: %s", pid, v.start(), v.end(), s.ToString().c_str());
      }
    }
    if (relative) (*dirty)[pid] = std::move(d);
  }
  return Status::Ok();
}

Status DirtyTracking::Commit(const std::string& image_id) {
  CRYO_RETURN_IF_ERROR(Request('G', image_id));
  generation_ = image_id;
  return Status::Ok();
}

}  // namespace cryo
