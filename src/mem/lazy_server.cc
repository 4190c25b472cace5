#include "mem/lazy_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <set>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/size_format.h"
#include "image/format.h"
#include "image/parent_chain.h"
#include "mem/lazy_plan.h"
#include "mem/missing_pages.h"

namespace cryo {

using lazy::CopyPiece;
using lazy::CopyResult;
using lazy::Drop;
using lazy::Lookup;
using lazy::Move;
using lazy::Piece;
using lazy::Pieces;

namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr double kChangingSeconds = 30;  // how long an address space may answer EAGAIN

std::string Hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%#" PRIx64, v);
  return buf;
}

// The children of `pid` (every thread's), from /proc.
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    Result<std::string> text = ReadFileToString(dir + "/" + e->d_name + "/children");
    if (!text.ok()) continue;
    for (std::string_view w : SplitWords(*text)) out.push_back(static_cast<pid_t>(std::atol(std::string(w).c_str())));
  }
  ::closedir(d);
  return out;
}

int PidfdSignal(int pidfd, int sig) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0)); }

}  // namespace

void KillTreeOf(const std::vector<std::pair<pid_t, int>>& procs) {
  // Stopped first, so that none forks a child we would not see; a
  // descendant's pid cannot be reused while its stopped parent has not reaped it.
  std::set<pid_t> seen;
  for (const auto& [pid, fd] : procs) {
    PidfdSignal(fd, SIGSTOP);
    seen.insert(pid);
  }
  int quiet = 0;
  for (int round = 0; round < 50 && quiet < 3; ++round) {
    bool grew = false;
    for (pid_t p : std::vector<pid_t>(seen.begin(), seen.end()))
      for (pid_t c : ChildrenOf(p))
        if (c > 0 && seen.insert(c).second) {
          ::kill(c, SIGSTOP);
          grew = true;
        }
    quiet = grew ? 0 : quiet + 1;
    ::usleep(2000);
  }
  for (const auto& [pid, fd] : procs) {
    PidfdSignal(fd, SIGKILL);
    seen.erase(pid);
  }
  for (pid_t c : seen) ::kill(c, SIGKILL);
}

namespace {

// The guardian: holds every userfaultfd (so that none is released into
// zero-fill when cryo dies) and every process's pidfd; kills the tree if cryo
// goes before it said the last page is in ('D').
void Guard(int channel, pid_t cryo) {
  std::vector<UniqueFd> held;
  std::vector<std::pair<pid_t, int>> procs;
  SentinelRecord r;
  while (ReadSentinelRecord(channel, &r)) {
    if (r.kind == 'D') return;
    if (r.kind == 'P' && r.fd.valid()) procs.emplace_back(static_cast<pid_t>(std::atol(r.payload.c_str())), r.fd.get());
    if (r.fd.valid()) held.push_back(std::move(r.fd));
  }
  if (procs.empty()) return;
  KillTreeOf(procs);
  fprintf(stderr, "cryo: the lazy restore's cryo (pid %d) ended with pages still missing: the restored tree (pid %d) "
          "was killed\n", cryo, procs.front().first);
}

}  // namespace

Result<std::unique_ptr<LazyServer>> LazyServer::Create(
    const image::LoadedImage& img, const std::set<pid_t>& avoid,
    const std::function<const std::vector<image::PageRange>&(pid_t)>& inherited_by_children,
    RemotePageSource* remote) {
  std::unique_ptr<LazyServer> s(new LazyServer());
  s->remote_ = remote;
  for (const auto& [pid, p] : img.processes) {
    if (p.core.zombie()) continue;
    const LazyPlan plan = PlanLazy(p.mm, inherited_by_children(pid));
    if (plan.empty()) continue;
    std::vector<image::PageSource>& src = s->sources_[pid];
    CRYO_ASSIGN_OR_RETURN(image::PageSource own, image::OpenPageFile(img, pid));
    src.push_back(std::move(own));
    CRYO_ASSIGN_OR_RETURN(std::vector<image::PageSource> ancestors, image::OpenAncestorPageFiles(img, pid));
    for (image::PageSource& a : ancestors) src.push_back(std::move(a));
    std::vector<Run>& runs = s->runs_[pid];
    for (const image::PageRun* r : plan.runs) {
      if (r->depth() >= src.size() || !src[r->depth()].valid())
        return Status::Error("pid " + std::to_string(pid) + ": no page file for the pages at " + Hex(r->vaddr()));
      if (r->remote() && !remote)
        return Status::Error("pid " + std::to_string(pid) + ": the pages at " + Hex(r->vaddr()) +
                             " are on the migration source (post-copy), not in the image");
      runs.push_back({&src[r->depth()], r->vaddr(), r->npages(), r->offset(), r->checksum(), r->remote()});
      s->stats_.pages += r->npages();
    }
    CRYO_RETURN_IF_ERROR(s->AddUnplannedRuns(pid, p.mm, plan, inherited_by_children(pid), &runs));
  }
  const char* hold = getenv("CRYO_LAZY_HOLD");
  if (hold) s->hold_file_ = hold;
  CRYO_ASSIGN_OR_RETURN(s->guardian_, Sentinel::Start("cryo-lazy-guard", avoid, Guard));
  return s;
}

// Post-copy, VMAs the dump did not plan (feature "remote-vmas"): the source
// says which of their pages exist (present or swapped out there, not the
// zero page); those become remote runs, the rest is left to the zero page
// (UFFDIO_ZEROPAGE on a fault outside every run), which is what the source
// process would read there too.
Status LazyServer::AddUnplannedRuns(pid_t pid, const image::Mm& mm, const LazyPlan& plan,
                                    const std::vector<image::PageRange>& inherited_by_children, std::vector<Run>* runs) {
  for (const image::Vma& v : mm.vmas()) {
    if (!v.remote_unplanned()) continue;
    bool inherited = false;
    for (const image::PageRange& r : inherited_by_children)
      inherited |= r.vaddr() < v.end() && v.start() < r.vaddr() + r.npages() * lazy::kPage;
    if (!LazyEligibleVma(v) || inherited)
      return Status::Error("pid " + std::to_string(pid) + ": the VMA at " + Hex(v.start()) +
                           " is marked unplanned (post-copy) but its pages cannot be fetched lazily");
  }
  if (plan.unplanned.empty()) return Status::Ok();
  if (!remote_)
    return Status::Error("pid " + std::to_string(pid) + ": the pages of its VMA at " + Hex(plan.unplanned[0].first) +
                         " are on the migration source (post-copy), not in the image");
  std::vector<std::pair<uint64_t, uint64_t>> present;
  const double t0 = Now();
  CRYO_RETURN_IF_ERROR(remote_->Map(pid, plan.unplanned, &present).Prefixed("pid " + std::to_string(pid)));
  uint64_t bytes = 0;
  for (const auto& p : present) bytes += p.second;
  LOG_INFO("pid %d: %zu VMAs unplanned at the dump: %" PRIu64 " pages of them exist on the source (%zu ranges, "
           "asked in %.1f ms)",
           pid, plan.unplanned.size(), bytes / lazy::kPage, present.size(), (Now() - t0) * 1e3);
  const image::PageSource* own = &sources_[pid][0];
  constexpr uint64_t kMaxRun = 4 << 20;  // as the dump's runs (kMaxRunBytes)
  for (const auto& [start, len] : present) {
    bool inside = false;
    for (const auto& [vs, ve] : plan.unplanned) inside |= start >= vs && len <= ve - start;
    if (!inside || len == 0 || start % lazy::kPage || len % lazy::kPage)
      return Status::Error("pid " + std::to_string(pid) + ": the source named pages at " + Hex(start) + " (" +
                           std::to_string(len) + " bytes) outside the VMAs asked about");
    for (uint64_t a = start; a < start + len;) {
      const uint64_t n = std::min(kMaxRun - a % kMaxRun, start + len - a);
      runs->push_back({own, a, n / lazy::kPage, 0, 0, true});
      stats_.pages += n / lazy::kPage;
      a += n;
    }
  }
  std::sort(runs->begin(), runs->end(), [](const Run& x, const Run& y) { return x.vaddr < y.vaddr; });
  for (size_t i = 1; i < runs->size(); ++i)
    if ((*runs)[i - 1].vaddr + (*runs)[i - 1].npages * lazy::kPage > (*runs)[i].vaddr)
      return Status::Error("pid " + std::to_string(pid) + ": the source named pages at " + Hex((*runs)[i].vaddr) +
                           " twice");
  return Status::Ok();
}

LazyServer::~LazyServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  // Before the release the restore's tree guard (and ptrace's EXITKILL) kill
  // the tree: nothing for the guardian to do. After it, a server destroyed
  // before every page is in leaves the guardian to kill the tree.
  if (!released_ && guardian_) (void)guardian_->Send('D', "");
  spaces_.clear();
  incoming_.clear();
  if (buf_) ::munmap(buf_, buf_len_);
}

Status LazyServer::Adopt(pid_t pid, int fd) {
  auto it = runs_.find(pid);
  if (it == runs_.end()) return Status::Error("pid " + std::to_string(pid) + " made a userfaultfd but has no lazy pages");
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) return Status::FromErrno("pidfd_open of pid " + std::to_string(pid));
  auto sp = std::make_unique<Space>();
  sp->name = "pid " + std::to_string(pid);
  sp->pid = pid;
  sp->runs = &it->second;
  sp->uffd.reset(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!sp->uffd.valid()) return Status::FromErrno("pidfd_getfd of the userfaultfd of pid " + std::to_string(pid));
  for (uint32_t i = 0; i < it->second.size(); ++i) sp->pending[it->second[i].vaddr] = {it->second[i].npages, i, 0};
  std::lock_guard<std::mutex> lock(mu_);
  CRYO_RETURN_IF_ERROR(guardian_->Send('P', std::to_string(pid), pidfd.get()));
  CRYO_RETURN_IF_ERROR(guardian_->Send('U', "", sp->uffd.get()));
  pidfds_.emplace_back(pid, std::move(pidfd));
  incoming_.push_back(std::move(sp));
  if (!thread_.joinable()) {
    t0_ = Now();
    thread_ = std::thread([this] { Serve(); });
  }
  return Status::Ok();
}

void LazyServer::Released() { released_ = true; }

Status LazyServer::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

LazyStats LazyServer::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

Status LazyServer::Wait() {
  if (thread_.joinable()) thread_.join();
  return status();
}

std::string LazyServer::Report() const {
  const LazyStats s = stats();
  char buf[256];
  snprintf(buf, sizeof(buf),
           "lazy restore: %" PRIu64 " pages (%s) in %.3f s: %" PRIu64 " on first touch, %" PRIu64
           " prefetched, %" PRIu64 " dropped by the program%s",
           s.pages, FormatSize(s.pages * kPage).c_str(), s.seconds, s.faulted, s.prefetched, s.dropped,
           s.forks ? (", " + std::to_string(s.forks) + " forked address space(s) served").c_str() : "");
  return buf;
}

void LazyServer::Fail(const Status& s) {
  std::vector<std::pair<pid_t, int>> procs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.ok()) status_ = s;
    for (const auto& [pid, fd] : pidfds_) procs.emplace_back(pid, fd.get());
  }
  LOG_ERROR("%s; the restored tree is killed (a page cannot come: never a page of zeros instead)",
            s.ToString().c_str());
  KillTreeOf(procs);
  std::lock_guard<std::mutex> lock(mu_);
  (void)guardian_->Send('D', "");  // nothing left to guard
}

Status LazyServer::FetchRun(const Space& sp, uint32_t i) {
  const Run& r = (*sp.runs)[i];
  if (buf_run_ == &r) return Status::Ok();
  const uint64_t len = r.npages * kPage;
  if (len > buf_len_) {
    if (buf_) ::munmap(buf_, buf_len_);
    buf_ = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf_ == MAP_FAILED) {
      buf_ = nullptr;
      buf_len_ = 0;
      return Status::FromErrno("mmap of a buffer for lazy pages");
    }
    buf_len_ = len;
  }
  buf_run_ = nullptr;
  if (r.remote) return Status::Error("internal: " + sp.name + ": the post-copy run at " + Hex(r.vaddr) + " read whole");
  const std::string what = sp.name + ": the pages at " + Hex(r.vaddr) + " (" + FormatSize(len) + ", " + r.src->path() +
                           " at offset " + std::to_string(r.offset) + ")";
  if (Status s = r.src->Read(buf_, len, r.offset); !s.ok()) return s.Prefixed(what + ": reading page data");
  if (image::HashBytes(buf_, len) != r.checksum) return Status::Error(what + ": checksum mismatch in page data");
  buf_run_ = &r;
  return Status::Ok();
}

namespace lazy {

Result<CopyResult> CopyPiece(int uffd, Pieces& m, Pieces::iterator it, const char* src, bool* gone, uint64_t* copied) {
  const uint64_t at = it->first, len = it->second.npages * kPage;
  uint64_t done = 0;
  Result<CopyResult> out = CopyResult::kDone;
  while (done < len) {
    struct uffdio_copy c = {};
    c.dst = at + done;
    c.src = reinterpret_cast<uint64_t>(src + done);
    c.len = len - done;
    const int r = ::ioctl(uffd, UFFDIO_COPY, &c);
    const int err = errno;
    if (c.copy > 0) {
      done += static_cast<uint64_t>(c.copy);
      *copied += static_cast<uint64_t>(c.copy) / kPage;
    }
    if (r == 0 || (c.copy > 0 && err == EAGAIN)) continue;
    if (err == EEXIST) {
      done += kPage;  // in already
    } else if (err == EAGAIN) {
      out = CopyResult::kChanging;
      break;
    } else if (err == ENOENT) {
      done = len;  // no registered VMA there any more: nothing to fill
    } else if (err == ESRCH) {
      *gone = true;
      done = len;
    } else {
      return Status::Errno(err, "UFFDIO_COPY at " + Hex(c.dst));
    }
  }
  Piece rest = it->second;
  m.erase(it);
  if (done < len) {
    const uint64_t k = done / kPage;
    m.emplace(at + done, Piece{rest.npages - k, rest.run, rest.first + k});
  }
  return out;
}

}  // namespace lazy

// Serves the page at `addr` (a fault) or the piece there (the prefetch).
Status LazyServer::CopyRunAround(Space& sp, uint64_t addr, bool fault) {
  const double deadline = Now() + kChangingSeconds;
  for (;;) {
    auto it = Lookup(sp.pending, addr);
    bool changing = false;
    // Post-copy: asked of the source already (its answer wakes the fault),
    // or to be asked now.
    if (it == sp.pending.end() && Lookup(sp.inflight, addr) != sp.inflight.end())
      return fault ? ServeRemoteFault(sp, addr) : Status::Ok();
    if (it != sp.pending.end() && (*sp.runs)[it->second.run].remote)
      return fault ? ServeRemoteFault(sp, addr) : Status::Ok();
    if (it == sp.pending.end()) {
      if (!fault) return Status::Ok();
      struct uffdio_zeropage z = {};
      z.range = {addr, kPage};
      if (::ioctl(sp.uffd.get(), UFFDIO_ZEROPAGE, &z) == 0) {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.zero_faults;
      } else if (errno == EAGAIN) {
        changing = true;
      } else if (errno == ESRCH) {
        sp.gone = true;
      } else if (errno != EEXIST && errno != ENOENT) {
        return Status::FromErrno(sp.name + ": UFFDIO_ZEROPAGE at " + Hex(addr));
      }
    } else {
      CRYO_RETURN_IF_ERROR(FetchRun(sp, it->second.run));
      uint64_t copied = 0;
      const char* src = static_cast<const char*>(buf_) + it->second.first * kPage;
      Result<CopyResult> r = CopyPiece(sp.uffd.get(), sp.pending, it, src, &sp.gone, &copied);
      if (!r.ok()) return r.status().Prefixed(sp.name);
      {
        std::lock_guard<std::mutex> lock(mu_);
        (fault ? stats_.faulted : stats_.prefetched) += copied;
      }
      changing = *r == CopyResult::kChanging;
    }
    if (!changing || sp.gone) break;
    // An event is on its way (fork, mremap, madvise, munmap): read it first.
    CRYO_RETURN_IF_ERROR(HandleMessages(sp));
    if (Now() > deadline)
      return Status::Error(sp.name + ": its address space kept changing (UFFDIO_COPY: EAGAIN) for " +
                           std::to_string(static_cast<int>(kChangingSeconds)) + " s");
    ::usleep(100);
  }
  if (fault && !sp.gone) {
    // The faulting thread may wait on a page another copy filled.
    struct uffdio_range w = {addr, kPage};
    (void)::ioctl(sp.uffd.get(), UFFDIO_WAKE, &w);
  }
  return Status::Ok();
}

// Reads every message waiting: events are followed at once, faults queued.
Status LazyServer::HandleMessages(Space& sp) {
  for (;;) {
    struct uffd_msg msgs[16];
    const ssize_t n = ::read(sp.uffd.get(), msgs, sizeof(msgs));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return Status::Ok();
    if (n <= 0) return Status::FromErrno(sp.name + ": reading its userfaultfd");
    for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) {
      const uffd_msg& m = msgs[i];
      switch (m.event) {
        case UFFD_EVENT_PAGEFAULT:
          sp.faults.push_back(m.arg.pagefault.address & ~(kPage - 1));
          break;
        case UFFD_EVENT_FORK: {
          // The child's userfaultfd, now in cryo's fd table; its missing
          // pages are the parent's (the fork copied what was in).
          auto child = std::make_unique<Space>();
          child->name = "a child of " + sp.name;
          child->pid = sp.pid;
          child->runs = sp.runs;
          child->uffd.reset(static_cast<int>(m.arg.fork.ufd));
          child->pending = sp.pending;
          child->inflight = sp.inflight;  // their answers go to every space of the pid
          child->readahead = sp.readahead;
          std::lock_guard<std::mutex> lock(mu_);
          CRYO_RETURN_IF_ERROR(guardian_->Send('U', "", child->uffd.get()));
          ++stats_.forks;
          incoming_.push_back(std::move(child));
          break;
        }
        case UFFD_EVENT_REMAP:
          Move(sp.pending, m.arg.remap.from, m.arg.remap.to, m.arg.remap.len);
          Move(sp.inflight, m.arg.remap.from, m.arg.remap.to, m.arg.remap.len);
          break;
        case UFFD_EVENT_REMOVE:
        case UFFD_EVENT_UNMAP: {
          const uint64_t n_dropped = Drop(sp.pending, m.arg.remove.start, m.arg.remove.end) +
                                     Drop(sp.inflight, m.arg.remove.start, m.arg.remove.end);
          std::lock_guard<std::mutex> lock(mu_);
          stats_.dropped += n_dropped;
          break;
        }
        default:
          return Status::Error(sp.name + ": unexpected userfaultfd event " + std::to_string(m.event));
      }
    }
  }
}

bool LazyServer::PrefetchHeld() {
  if (hold_file_.empty()) return false;
  struct stat st;
  if (::stat(hold_file_.c_str(), &st) == 0 || Now() - t0_ > 60) {
    hold_file_.clear();
    return false;
  }
  return true;
}

void LazyServer::AbsorbIncoming() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& sp : incoming_) spaces_.push_back(std::move(sp));
  incoming_.clear();
}

// One turn: faults first, then one piece of prefetch (post-copy: the pages
// that came, then requests up to the prefetch window). False once done.
bool LazyServer::ServeOnce() {
  AbsorbIncoming();
  // A space whose pages are all in stays until the end: a fault on a page
  // the image had none for still needs the zero page.
  std::erase_if(spaces_, [](const auto& sp) { return sp->gone; });
  auto fail = [this](const Status& s) {
    Fail(s);
    return false;
  };
  if (remote_) {
    if (Status s = DeliverArrivals(); !s.ok()) return fail(s);
  }
  bool missing = false;
  for (const auto& sp : spaces_) missing |= !sp->pending.empty() || !sp->inflight.empty();
  // (post-copy: every answer read, so that none is left on the connection)
  if (!missing && released_ && (!remote_ || remote_->Outstanding() == 0)) return false;
  // No prefetch before the release: a blob registers its VMAs only once they
  // are in place, and a copy before that finds no registered VMA (ENOENT),
  // which would drop the pages. Faults come only after the registration.
  bool prefetch = missing && released_ && !PrefetchHeld();
  if (prefetch && remote_) {
    if (Status s = PrefetchRemote(); !s.ok()) return fail(s);
    prefetch = false;  // asked: the answers wake the poll
  }
  std::vector<pollfd> fds;
  for (const auto& sp : spaces_) fds.push_back({sp->uffd.get(), POLLIN, 0});
  if (remote_ && remote_->Outstanding() > 0) fds.push_back({remote_->PollFd(), POLLIN, 0});
  if (::poll(fds.data(), fds.size(), prefetch ? 0 : 20) < 0 && errno != EINTR)
    return fail(Status::FromErrno("poll of the userfaultfds"));
  for (size_t i = 0; i < spaces_.size() && i < fds.size(); ++i) {
    Space& sp = *spaces_[i];
    if (fds[i].revents) {
      if (Status s = HandleMessages(sp); !s.ok()) return fail(s);
    }
    while (!sp.faults.empty() && !sp.gone) {
      const uint64_t addr = sp.faults.front();
      sp.faults.pop_front();
      if (Status s = CopyRunAround(sp, addr, true); !s.ok()) return fail(s);
    }
  }
  if (prefetch) {
    for (auto& sp : spaces_) {
      if (sp->gone || sp->pending.empty()) continue;
      if (Status s = CopyRunAround(*sp, sp->pending.begin()->first, false); !s.ok()) return fail(s);
      break;
    }
  }
  return true;
}

void LazyServer::Serve() {
  while (!stop_ && ServeOnce()) {
  }
  bool finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.seconds = Now() - t0_;
    finished = status_.ok() && !stop_;
    // Every page is in: the guardian may go; the userfaultfds close
    // (userfaultfd_release: the VMAs are ordinary again).
    if (finished) (void)guardian_->Send('D', "");
  }
  if (finished) {
    spaces_.clear();
    LOG_DEBUG("every lazy page is in; %s", Report().c_str());
  }
  done_ = true;
}

}  // namespace cryo
