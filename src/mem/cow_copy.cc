#include "mem/cow_copy.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "base/log.h"
#include "image/format.h"
#include "inject/remote_syscall.h"
#include "seize/seize.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr uint64_t kHugeBlock = 2ull << 20;
constexpr uint64_t kPmUffdWp = 1ull << 57;  // PM_UFFD_WP (Documentation/admin-guide/mm/pagemap.rst)
// Pages of other VMAs (private file mappings' written pages) are held in
// cryo's memory from the freeze on: past this, the process is copied during
// the freeze as before.
constexpr uint64_t kMaxFrozenBytes = 64ull << 20;

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

// The range of `ranges` (ascending, disjoint) holding a, or end.
Ranges::const_iterator Containing(const Ranges& ranges, uint64_t a) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), a, [](uint64_t x, const auto& r) { return x < r.first; });
  if (it == ranges.begin()) return ranges.end();
  --it;
  return a < it->second ? it : ranges.end();
}

// Whether the piece holding `a` (pieces ascending by address) is read with
// process_vm_readv (true) or through /proc/PID/mem.
bool ReadableAt(const std::vector<PagePiece>& pieces, uint64_t a) {
  auto it = std::upper_bound(pieces.begin(), pieces.end(), a, [](uint64_t x, const PagePiece& p) { return x < p.vaddr; });
  if (it == pieces.begin()) return true;
  --it;
  return a < it->vaddr + it->len ? it->readable : true;
}

}  // namespace

Result<std::unique_ptr<CowCopy>> CowCopy::Open(SeizedProcess& sp, const std::vector<proc::Vma>& vmas,
                                               uint64_t sig_ign, uint64_t sig_cgt) {
  CRYO_ASSIGN_OR_RETURN(auto rs, RemoteSyscaller::Attach(sp, vmas, sig_ign, sig_cgt));
  // Made in the process: a userfaultfd acts on the mm of its maker. Not
  // UFFD_USER_MODE_ONLY: the kernel's own writes into a protected page (a
  // read(2) into it) must wait like the program's, not fail. Without
  // vm.unprivileged_userfaultfd that needs CAP_SYS_PTRACE in the process:
  // else EPERM, and the caller copies during the freeze.
  CRYO_ASSIGN_OR_RETURN(UniqueFd fd, rs->TakeFdMadeBy(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK, "userfaultfd"));
  uffdio_api api{};
  api.api = UFFD_API;
  if (::ioctl(fd.get(), UFFDIO_API, &api) != 0) return Status::FromErrno("UFFDIO_API");
  if (!(api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP))
    return Status::Error("this kernel's userfaultfd has no write-protect mode");
  std::unique_ptr<CowCopy> c(new CowCopy(sp.pid(), std::move(fd)));
  const std::string pagemap = "/proc/" + std::to_string(sp.pid()) + "/pagemap";
  c->pagemap_.reset(::open(pagemap.c_str(), O_RDONLY | O_CLOEXEC));
  if (!c->pagemap_.valid()) return Status::FromErrno("open " + pagemap);
  c->stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!c->stop_.valid()) return Status::FromErrno("eventfd");
  CRYO_ASSIGN_OR_RETURN(c->reader_, ProcessPageSource::Open(sp.pid()));
  CRYO_ASSIGN_OR_RETURN(c->fault_reader_, ProcessPageSource::Open(sp.pid()));
  return c;
}

CowCopy::~CowCopy() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    if (::write(stop_.get(), &one, sizeof(one)) != sizeof(one))
      LOG_WARN("pid %d: cannot stop the userfaultfd thread (%s)", pid_, strerror(errno));
    thread_.join();
  }
  // uffd_ closes now: the kernel unregisters the VMAs and lifts what is left.
}

Status CowCopy::Protect(const image::Mm& mm, const std::vector<PagePiece>& pieces) {
  pieces_ = pieces;
  std::sort(pieces_.begin(), pieces_.end(), [](const PagePiece& a, const PagePiece& b) { return a.vaddr < b.vaddr; });
  // The VMAs to protect, and what of the pieces lies in them.
  std::vector<std::pair<uint64_t, uint64_t>> vmas;
  // (Not hugetlb memory: its protection changes by whole huge pages only.)
  for (const image::Vma& v : mm.vmas())
    if (v.kind() == image::VMA_ANON_PRIVATE &&
        std::find(v.vm_flags().begin(), v.vm_flags().end(), "ht") == v.vm_flags().end())
      vmas.emplace_back(v.start(), v.end());
  std::vector<std::pair<uint64_t, uint64_t>> outside;
  for (const PagePiece& p : pieces_) {
    uint64_t at = p.vaddr;
    const uint64_t end = p.vaddr + p.len;
    while (at < end) {
      auto v = Containing(vmas, at);
      uint64_t to;
      if (v != vmas.end()) {
        to = std::min(end, v->second);
        if (!protected_.empty() && protected_.back().second == at)
          protected_.back().second = to;
        else
          protected_.emplace_back(at, to);
      } else {
        auto next = std::upper_bound(vmas.begin(), vmas.end(), at,
                                     [](uint64_t x, const auto& r) { return x < r.first; });
        to = next == vmas.end() ? end : std::min(end, next->first);
        outside.emplace_back(at, to);
      }
      at = to;
    }
  }
  uint64_t outside_bytes = 0;
  for (const auto& [s, e] : outside) outside_bytes += e - s;
  if (outside_bytes > kMaxFrozenBytes)
    return Status::Error(std::to_string(outside_bytes >> 20) + " MiB of pages outside private anonymous memory");
  for (const auto& [s, e] : outside) {
    std::string bytes(e - s, '\0');
    const PagePiece part{s, e - s, 0, ReadableAt(pieces_, s)};
    CRYO_RETURN_IF_ERROR(reader_->Read(&part, 1, bytes.data()));
    frozen_.emplace(s, std::move(bytes));
  }
  // Register whole VMAs (a range must cover whole VMAs), protect them.
  for (const auto& [s, e] : vmas) {
    const bool holds = std::any_of(protected_.begin(), protected_.end(),
                                   [&](const auto& r) { return r.first < e && s < r.second; });
    if (!holds) continue;
    uffdio_register reg{};
    reg.range = {s, e - s};
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    if (::ioctl(uffd_.get(), UFFDIO_REGISTER, &reg) != 0)
      return Status::FromErrno("UFFDIO_REGISTER (write-protect) of " + Hex(s) + "-" + Hex(e));
    if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT)))
      return Status::Error("VMA " + Hex(s) + "-" + Hex(e) + " cannot be write-protected");
    uffdio_writeprotect wp{};
    wp.range = {s, e - s};
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    if (::ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp) != 0)
      return Status::FromErrno("UFFDIO_WRITEPROTECT of " + Hex(s) + "-" + Hex(e));
  }
  try {
    thread_ = std::thread(&CowCopy::FaultLoop, this);
  } catch (const std::system_error& e) {
    return Status::Errno(e.code().value(), "cannot start the userfaultfd thread");
  }
  return Status::Ok();
}

Status CowCopy::status() {
  std::lock_guard<std::mutex> lock(mu_);
  return fault_error_;
}

bool CowCopy::Protected(uint64_t page) const {
  return Containing(protected_, page) != protected_.end();
}

Result<std::vector<uint64_t>> CowCopy::PagemapEntries(uint64_t vaddr, size_t pages) {
  std::vector<uint64_t> e(pages);
  const size_t want = pages * sizeof(uint64_t);
  size_t done = 0;
  while (done < want) {
    const ssize_t r = ::pread(pagemap_.get(), reinterpret_cast<char*>(e.data()) + done, want - done,
                              static_cast<off_t>(vaddr / kPage * 8 + done));
    if (r < 0 && errno == EINTR) continue;
    // 0: the address space is gone (the process exited or exec'ed).
    if (r <= 0) return Status::Errno(r < 0 ? errno : ESRCH, "reading /proc/" + std::to_string(pid_) + "/pagemap at " + Hex(vaddr));
    done += static_cast<size_t>(r);
  }
  return e;
}

Status CowCopy::Unprotect(uint64_t vaddr, uint64_t len) {
  uffdio_writeprotect wp{};
  wp.range = {vaddr, len};
  wp.mode = 0;  // clear, and wake the writers waiting there
  for (int tries = 0;; ++tries) {
    if (::ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp) == 0) return Status::Ok();
    // EAGAIN: the mappings are changing (retry); ENOENT: part of the range
    // is not registered any more (unmapped: nothing to lift there);
    // ESRCH: the address space is gone.
    if (errno == EAGAIN && tries < 1000) continue;
    if (errno == ENOENT || errno == ESRCH) return Status::Ok();
    return Status::FromErrno("UFFDIO_WRITEPROTECT (clear) of " + Hex(vaddr) + "+" + std::to_string(len));
  }
}

Status CowCopy::ReadProtected(uint64_t vaddr, uint64_t len, bool readable, char* dst) {
  const PagePiece part{vaddr, len, 0, readable};
  Status read = reader_->Read(&part, 1, dst);
  const size_t pages = len / kPage;
  std::vector<uint64_t> entries;
  if (read.ok()) {
    CRYO_ASSIGN_OR_RETURN(entries, PagemapEntries(vaddr, pages));
  }
  // A failed read (part of the range unmapped since): page by page, from
  // the fault thread's copies where it has them.
  for (size_t i = 0; i < pages; ++i) {
    const uint64_t page = vaddr + i * kPage;
    if (read.ok() && (entries[i] & kPmUffdWp)) continue;  // read before any change: the freeze's
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = copied_.find(page);
      if (it != copied_.end()) {
        std::memcpy(dst + i * kPage, it->second.data(), kPage);
        copied_.erase(it);
        continue;
      }
    }
    if (!read.ok()) {
      const PagePiece one{page, kPage, 0, readable};
      if (reader_->Read(&one, 1, dst + i * kPage).ok()) {
        CRYO_ASSIGN_OR_RETURN(auto e, PagemapEntries(page, 1));
        if (e[0] & kPmUffdWp) continue;
      }
    }
    return Status::Error("page " + Hex(page) + " of pid " + std::to_string(pid_) +
                         " was unmapped, discarded or moved by the program after the freeze, before cryo copied it "
                         "(copy-on-write dump; --no-cow copies during the freeze)");
  }
  // Copied: unprotected up to the last 2 MiB boundary (lifting the
  // protection of part of a transparent huge page splits it); the rest with
  // the next buffer. Until then a write there is only let through.
  if (verified_.second != vaddr) CRYO_RETURN_IF_ERROR(FlushVerified());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (verified_.second != vaddr) verified_.first = vaddr;
    verified_.second = vaddr + len;
  }
  const uint64_t upto = (vaddr + len) / kHugeBlock * kHugeBlock;
  if (upto > verified_.first) {
    CRYO_RETURN_IF_ERROR(Unprotect(verified_.first, upto - verified_.first));
    std::lock_guard<std::mutex> lock(mu_);
    verified_.first = upto;
  }
  return Status::Ok();
}

Status CowCopy::FlushVerified() {
  if (verified_.second > verified_.first) CRYO_RETURN_IF_ERROR(Unprotect(verified_.first, verified_.second - verified_.first));
  std::lock_guard<std::mutex> lock(mu_);
  verified_ = {0, 0};
  return Status::Ok();
}

Status CowCopy::Read(const PagePiece* pieces, size_t n, char* dst) {
  CRYO_RETURN_IF_ERROR(status());
  for (size_t i = 0; i < n; ++i) {
    const PagePiece& p = pieces[i];
    uint64_t at = p.vaddr;
    const uint64_t end = p.vaddr + p.len;
    while (at < end) {
      auto r = Containing(protected_, at);
      if (r != protected_.end()) {
        const uint64_t to = std::min(end, r->second);
        CRYO_RETURN_IF_ERROR(ReadProtected(at, to - at, p.readable, dst));
        if (to == r->second) CRYO_RETURN_IF_ERROR(FlushVerified());
        dst += to - at;
        at = to;
        continue;
      }
      auto f = frozen_.upper_bound(at);
      if (f == frozen_.begin() || (--f)->first + f->second.size() <= at)
        return Status::Error("internal: page " + Hex(at) + " neither protected nor read");
      const uint64_t f_end = f->first + f->second.size();
      const uint64_t to = std::min(end, f_end);
      std::memcpy(dst, f->second.data() + (at - f->first), to - at);
      dst += to - at;
      at = to;
    }
  }
  return Status::Ok();
}

void CowCopy::OnFault(uint64_t page) {
  faults_.fetch_add(1);
  Status s;
  bool verified;
  {
    std::lock_guard<std::mutex> lock(mu_);
    verified = verified_.first <= page && page < verified_.second;
  }
  if (Protected(page) && !verified) {
    const PagePiece one{page, kPage, 0, ReadableAt(pieces_, page)};
    std::string bytes(kPage, '\0');
    // Its writer waits in the kernel: the page is still the freeze's, unless
    // its protection went meanwhile (copied and lifted by the copy, or the
    // memory changed): then the copy has it, or reports the change.
    if (fault_reader_->Read(&one, 1, bytes.data()).ok()) {
      auto e = PagemapEntries(page, 1);
      if (e.ok() && ((*e)[0] & kPmUffdWp)) {
        std::lock_guard<std::mutex> lock(mu_);
        copied_.emplace(page, std::move(bytes));
        fault_copies_.fetch_add(1);
      }
    }
  }
  s = Unprotect(page, kPage);
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (fault_error_.ok()) fault_error_ = s.Prefixed("pid " + std::to_string(pid_) + ": write fault");
  }
}

void CowCopy::FaultLoop() {
  uffd_msg msgs[16];
  for (;;) {
    pollfd p[2] = {{uffd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    const int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || p[1].revents) return;
    const ssize_t got = ::read(uffd_.get(), msgs, sizeof(msgs));
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      std::lock_guard<std::mutex> lock(mu_);
      if (fault_error_.ok()) fault_error_ = Status::FromErrno("reading the userfaultfd of pid " + std::to_string(pid_));
      return;
    }
    for (size_t i = 0; i < static_cast<size_t>(got) / sizeof(uffd_msg); ++i)
      if (msgs[i].event == UFFD_EVENT_PAGEFAULT) OnFault(msgs[i].arg.pagefault.address & ~(kPage - 1));
  }
}

}  // namespace cryo
