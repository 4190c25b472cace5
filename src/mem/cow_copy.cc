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
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "base/file_util.h"
#include "base/kernel_features.h"
#include "base/log.h"
#include "base/pagemap_scan_abi.h"
#include "image/format.h"
#include "inject/remote_syscall.h"
#include "mem/pagemap_scan.h"
#include "seize/seize.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr uint64_t kHugeBlock = 2ull << 20;
constexpr uint64_t kPmUffdWp = 1ull << 57;  // PM_UFFD_WP (Documentation/admin-guide/mm/pagemap.rst)
// Pages of other VMAs (private file mappings' written pages) are kept from
// the freeze on (in memory up to CowAside's limit, the rest in its spill
// file): past this, the process is copied during the freeze as before.
constexpr uint64_t kMaxFrozenBytes = 64ull << 20;
constexpr uint64_t kFrozenChunk = 64 << 10;  // read at a time, then kept page by page

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
  // The mapping changes the copy must hear of (cow_copy.h); a kernel without
  // them (EINVAL, the uffd left as it was) is used without: the copy finds
  // the same losses when it reaches the pages.
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
  if (::ioctl(fd.get(), UFFDIO_API, &api) != 0) {
    if (errno != EINVAL) return Status::FromErrno("UFFDIO_API");
    api = {};
    api.api = UFFD_API;
    if (::ioctl(fd.get(), UFFDIO_API, &api) != 0) return Status::FromErrno("UFFDIO_API");
  }
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
  c->scan_ = !PretendMissing("pagemap-scan");
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

Status CowCopy::Protect(const image::Mm& mm, const std::vector<PagePiece>& pieces, const std::string& spill_dir) {
  aside_ = std::make_unique<CowAside>(spill_dir);
  // A page in no VMA, at or above vm.mmap_min_addr (SettleMappingChanges).
  probe_ = 64 << 10;
  if (auto v = ReadFileToString("/proc/sys/vm/mmap_min_addr"); v.ok())
    probe_ = std::max<uint64_t>(probe_, (std::strtoull(v->c_str(), nullptr, 10) + kPage - 1) / kPage * kPage);
  for (const image::Vma& v : mm.vmas())
    if (v.start() <= probe_ && probe_ < v.end()) probe_ = v.end();
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
  frozen_ = std::make_unique<CowAside>(spill_dir);
  std::vector<char> buf(kFrozenChunk);
  for (const auto& [s, e] : outside) {
    for (uint64_t at = s; at < e;) {
      const uint64_t n = std::min<uint64_t>(e - at, buf.size());
      const PagePiece part{at, n, 0, ReadableAt(pieces_, at)};
      CRYO_RETURN_IF_ERROR(reader_->Read(&part, 1, buf.data()));
      for (uint64_t i = 0; i < n; i += kPage) CRYO_RETURN_IF_ERROR(frozen_->Put(at + i, buf.data() + i));
      at += n;
    }
  }
  // Register whole VMAs (a range must cover whole VMAs), protect them.
  for (const auto& vma : vmas) {
    // (Named copies: clang before 16 cannot capture structured bindings.)
    const uint64_t s = vma.first, e = vma.second;
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

uint64_t CowCopy::aside_peak_memory() {
  std::lock_guard<std::mutex> lock(mu_);
  return aside_ ? aside_->peak_memory() : 0;
}

uint64_t CowCopy::aside_spilled() {
  std::lock_guard<std::mutex> lock(mu_);
  return aside_ ? aside_->spilled_pages() : 0;
}

void CowCopy::Fail(Status s, bool memory_changed) {
  std::lock_guard<std::mutex> lock(mu_);
  if (memory_changed) memory_changed_.store(true);
  if (fault_error_.ok()) fault_error_ = std::move(s);
}

bool CowCopy::Readable(uint64_t a) const { return ReadableAt(pieces_, a); }

bool CowCopy::Protected(uint64_t page) const {
  return Containing(protected_, page) != protected_.end();
}

std::pair<uint64_t, uint64_t> CowCopy::CopiedRange(uint64_t page) const {
  auto it = copied_.upper_bound(page);
  if (it == copied_.begin()) return {0, 0};
  --it;
  if (page < it->second) return {it->first, it->second};
  return {0, 0};
}

void CowCopy::AddCopied(uint64_t start, uint64_t end) {
  auto it = copied_.upper_bound(start);
  if (it != copied_.begin() && std::prev(it)->second >= start) {
    --it;
    start = it->first;
    end = std::max(end, it->second);
    it = copied_.erase(it);
  }
  while (it != copied_.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = copied_.erase(it);
  }
  copied_.emplace(start, end);
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

// good[i] = page i of [vaddr, ...) is present or swapped and still carries
// its protection bit. One PAGEMAP_SCAN (regions of equal categories: one for
// an unwritten buffer) costs less than the pagemap entries of its pages;
// PAGE_IS_WRITTEN is the bit clear (fs/proc/task_mmu.c).
Status CowCopy::CheckBits(uint64_t vaddr, size_t pages, std::vector<char>* good) {
  good->assign(pages, 0);
  const uint64_t end = vaddr + pages * kPage;
  if (scan_) {
    PmPageRegion vec[64];
    for (uint64_t at = vaddr; at < end;) {
      PmScanArg arg{};
      arg.size = sizeof(arg);
      arg.start = at;
      arg.end = end;
      arg.vec = reinterpret_cast<uint64_t>(vec);
      arg.vec_len = sizeof(vec) / sizeof(vec[0]);
      arg.return_mask = kPageWritten | kPagePresent | kPageSwapped;
      const long n = ::ioctl(pagemap_.get(), kPagemapScanIoctl, &arg);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == ENOTTY || errno == EINVAL) && at == vaddr) {
        scan_ = false;  // an older kernel: pagemap entries below
        break;
      }
      if (n < 0) return Status::FromErrno("PAGEMAP_SCAN of pid " + std::to_string(pid_) + " at " + Hex(at));
      for (long i = 0; i < n; ++i) {
        if ((vec[i].categories & kPageWritten) || !(vec[i].categories & (kPagePresent | kPageSwapped))) continue;
        for (uint64_t a = std::max(vec[i].start, vaddr); a < std::min(vec[i].end, end); a += kPage)
          (*good)[(a - vaddr) / kPage] = 1;
      }
      if (arg.walk_end <= at) break;
      at = arg.walk_end;
    }
    if (scan_) return Status::Ok();
  }
  CRYO_ASSIGN_OR_RETURN(auto entries, PagemapEntries(vaddr, pages));
  for (size_t i = 0; i < pages; ++i) (*good)[i] = (entries[i] & kPmUffdWp) ? 1 : 0;
  return Status::Ok();
}

Status CowCopy::Unprotect(uint64_t vaddr, uint64_t len, bool* whole, bool* again) {
  if (whole) *whole = true;
  if (again) *again = false;
  uffdio_writeprotect wp{};
  wp.range = {vaddr, len};
  wp.mode = 0;  // clear, and wake the writers waiting there
  for (int tries = 0;; ++tries) {
    if (::ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp) == 0) return Status::Ok();
    // EAGAIN: the mappings are changing (retry); ENOENT: part of the range
    // is not registered any more (unmapped: nothing to lift there);
    // ESRCH: the address space is gone.
    // (The fault thread must not wait here: the event the kernel waits
    // for is read by that very thread.)
    if (errno == EAGAIN && again) {
      *again = true;
      return Status::Ok();
    }
    if (errno == EAGAIN && tries < 1000) continue;
    if (errno == ENOENT || errno == ESRCH) {
      if (whole) *whole = false;
      return Status::Ok();
    }
    return Status::FromErrno("UFFDIO_WRITEPROTECT (clear) of " + Hex(vaddr) + "+" + std::to_string(len));
  }
}

Status CowCopy::ReadChecked(PageSource& src, uint64_t vaddr, uint64_t len, bool readable, char* dst,
                            std::vector<char>* good) {
  const PagePiece part{vaddr, len, 0, readable};
  // A failed read (part of the range unmapped since): no page counts as read.
  if (!src.Read(&part, 1, dst).ok()) {
    good->assign(len / kPage, 0);
    return Status::Ok();
  }
  return CheckBits(vaddr, len / kPage, good);
}

Status CowCopy::ReadProtected(uint64_t vaddr, uint64_t len, bool readable, char* dst) {
  std::vector<char> good;
  CRYO_RETURN_IF_ERROR(ReadChecked(*reader_, vaddr, len, readable, dst, &good));
  const size_t pages = len / kPage;
  CRYO_RETURN_IF_ERROR(SettleMappingChanges());
  {
    // A page moved here by mremap carries another address's bit: what is
    // stored for this address is what was copied aside (or nothing: lost).
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [s, e] : moved_in_)
      for (uint64_t a = std::max(s, vaddr); a < std::min(e, vaddr + len); a += kPage) good[(a - vaddr) / kPage] = 0;
  }
  for (size_t i = 0; i < pages; ++i) {
    if (good[i]) continue;  // read before any change: the freeze's
    const uint64_t page = vaddr + i * kPage;
    {
      std::lock_guard<std::mutex> lock(mu_);
      CRYO_ASSIGN_OR_RETURN(bool taken, aside_->Take(page, dst + i * kPage));
      if (taken) continue;
    }
    // Perhaps only the read of the whole range failed: this page alone.
    std::vector<char> one;
    bool moved;
    {
      std::lock_guard<std::mutex> lock(mu_);
      moved = MovedIn(page);
    }
    if (!moved) {
      CRYO_RETURN_IF_ERROR(ReadChecked(*reader_, page, kPage, readable, dst + i * kPage, &one));
      if (one[0]) continue;
    }
    Status lost = Status::Error("page " + Hex(page) + " of pid " + std::to_string(pid_) +
                                " was unmapped, discarded or moved by the program after the freeze, before cryo "
                                "copied it (copy-on-write dump)");
    Fail(lost, true);
    return lost;
  }
  // Copied: the pages stay protected (cow_copy.h); a write there faults and
  // the fault thread lifts the protection. What was copied aside in the
  // range after the bits were checked is not needed.
  std::lock_guard<std::mutex> lock(mu_);
  AddCopied(vaddr, vaddr + len);
  aside_->Drop(vaddr, vaddr + len);
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
        dst += to - at;
        at = to;
        continue;
      }
      // A page read during the freeze.
      bool kept = false;
      if (frozen_) {
        CRYO_ASSIGN_OR_RETURN(kept, frozen_->Take(at, dst));
      }
      if (!kept) return Status::Error("internal: page " + Hex(at) + " neither protected nor read");
      dst += kPage;
      at += kPage;
    }
  }
  return Status::Ok();
}

void CowCopy::OnFault(uint64_t page) {
  faults_.fetch_add(1);
  uint64_t lift = page, lift_end = page + kPage;
  bool copy_aside = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto [cs, ce] = CopiedRange(page);
    if (ce) {
      // Copied already: the protection of its 2 MiB block goes (as far as
      // copied), one fault for the block (and a transparent huge page is
      // not split by lifting part of it).
      const uint64_t block = page / kHugeBlock * kHugeBlock;
      lift = std::max(cs, block);
      lift_end = std::min(ce, block + kHugeBlock);
    } else if (Protected(page)) {
      // (Moved here by mremap: not this address's page.)
      copy_aside = !aside_->Has(page) && !MovedIn(page);
    } else {
      // Not a page to store (moved here by mremap, or made since): its
      // 2 MiB block goes too, as far as no page to store is in it.
      const uint64_t block = page / kHugeBlock * kHugeBlock;
      lift = block;
      lift_end = block + kHugeBlock;
      auto next = std::upper_bound(protected_.begin(), protected_.end(), page,
                                   [](uint64_t x, const auto& r) { return x < r.first; });
      if (next != protected_.end()) lift_end = std::min(lift_end, next->first);
      if (next != protected_.begin()) lift = std::max(lift, std::prev(next)->second);
    }
  }
  if (copy_aside) {
    // Its writer waits in the kernel: the page is still the freeze's, unless
    // its protection went meanwhile (the memory changed): then the copy
    // reports it when it gets there.
    char bytes[kPage];
    std::vector<char> good;
    Status s = ReadChecked(*fault_reader_, page, kPage, ReadableAt(pieces_, page), bytes, &good);
    if (s.ok() && good[0]) {
      std::lock_guard<std::mutex> lock(mu_);
      if (CopiedRange(page).second == 0) s = aside_->Put(page, bytes);
      if (s.ok()) fault_copies_.fetch_add(1);
    }
    if (!s.ok()) Fail(s.Prefixed("pid " + std::to_string(pid_) + ": write fault"), false);
  }
  Lift(page, lift, lift_end);
}

// A block reaching past the VMA (ENOENT, perhaps before the faulting page
// was reached): that page alone, so that its writer goes on. The mappings
// changing (EAGAIN: an event not read yet): tried again after the events.
void CowCopy::Lift(uint64_t page, uint64_t lift, uint64_t lift_end) {
  bool whole = true, again = false;
  Status s = Unprotect(lift, lift_end - lift, &whole, &again);
  if (s.ok() && !again && !whole && lift_end - lift > kPage) s = Unprotect(page, kPage, nullptr, &again);
  if (again) {
    deferred_lifts_.push_back({page, lift, lift_end});
    return;
  }
  if (!s.ok()) Fail(s.Prefixed("pid " + std::to_string(pid_) + ": write fault"), false);
}

bool CowCopy::MovedIn(uint64_t page) const {
  return std::any_of(moved_in_.begin(), moved_in_.end(),
                     [page](const auto& r) { return r.first <= page && page < r.second; });
}

// After a buffer's bits are checked: the mapping changes begun before are
// all handled by the fault thread (their events read and done), so that
// moved_in_ holds every mremap that could have put another address's
// protected pages there. A change in flight makes UFFDIO_WRITEPROTECT fail
// with EAGAIN until its event is read (ctx->mmap_changing,
// fs/userfaultfd.c); probe_ is a page in no VMA of the process at the
// freeze (answered ENOENT otherwise, protecting nothing).
Status CowCopy::SettleMappingChanges() {
  for (int i = 0;; ++i) {
    uffdio_writeprotect wp{};
    wp.range = {probe_, kPage};
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    if (::ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp) == 0 || errno != EAGAIN) break;
    if (i >= 20000)  // 2 s and more
      return Status::Error("pid " + std::to_string(pid_) + ": its mappings kept changing during the copy");
    ::usleep(100);
  }
  std::lock_guard<std::mutex> events(events_mu_);  // the batch the fault thread is at, done
  return status();
}

// The pages moved from [from, from + len) to `to`, their protection bits
// with them (cow_copy.h): those not copied yet are read at their new place,
// kept under their old address. The mremap caller is running again; a write
// of it to a moved page waits for this thread.
void CowCopy::OnRemap(uint64_t from, uint64_t to, uint64_t len) {
  remaps_.fetch_add(1);
  std::vector<char> good;
  char bytes[kPage];
  for (uint64_t page = from; page < from + len; page += kPage) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!Protected(page) || CopiedRange(page).second || aside_->Has(page) || MovedIn(page)) continue;
    }
    const uint64_t now = to + (page - from);
    Status s = ReadChecked(*fault_reader_, now, kPage, ReadableAt(pieces_, page), bytes, &good);
    if (s.ok() && good[0]) {
      std::lock_guard<std::mutex> lock(mu_);
      s = aside_->Put(page, bytes);
      if (s.ok()) continue;
    }
    if (!s.ok()) {
      Fail(s.Prefixed("pid " + std::to_string(pid_) + ": mremap"), false);
      return;
    }
    // Written (or gone) at the new place before this thread got there: the
    // copy reports the page lost when it reaches it.
  }
  // Protected pages of other addresses are there now: their bits say
  // nothing of the pages of these addresses.
  std::lock_guard<std::mutex> lock(mu_);
  moved_in_.emplace_back(to, to + len);
}

// [start, end) unmapped or discarded: any page of it neither copied nor
// copied aside is lost; the copy stops now rather than when it gets there.
void CowCopy::OnUnmap(uint64_t start, uint64_t end, const char* how) {
  unmaps_.fetch_add(1);
  std::lock_guard<std::mutex> lock(mu_);
  auto r = std::upper_bound(protected_.begin(), protected_.end(), start,
                            [](uint64_t x, const auto& v) { return x < v.first; });
  if (r != protected_.begin()) --r;
  for (; r != protected_.end() && r->first < end; ++r) {
    for (uint64_t page = std::max(r->first, start); page < std::min(r->second, end); page += kPage) {
      const auto [cs, ce] = CopiedRange(page);
      if (ce) {
        page = ce - kPage;  // the rest of the copied range
        continue;
      }
      if (aside_->Has(page)) continue;
      memory_changed_.store(true);
      if (fault_error_.ok())
        fault_error_ = Status::Error("pid " + std::to_string(pid_) + ": the program " + how + " " + Hex(start) +
                                     "-" + Hex(end) + " after the freeze, page " + Hex(page) +
                                     " not copied yet (copy-on-write dump)");
      return;
    }
  }
}

void CowCopy::FaultLoop() {
  uffd_msg msgs[1];
  for (;;) {
    pollfd p[2] = {{uffd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    const int r = ::poll(p, 2, deferred_lifts_.empty() ? -1 : 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || p[1].revents) return;
    std::vector<DeferredLift> lifts;
    lifts.swap(deferred_lifts_);
    for (const DeferredLift& l : lifts) Lift(l.page, l.start, l.end);
    if (r == 0) continue;
    std::lock_guard<std::mutex> events(events_mu_);  // SettleMappingChanges
    // A discard's caller goes on the moment its event is read: its pages are
    // copied aside first (cow_discard.cc), and one message is read at a time
    // so that the look stays just before the read.
    if (MappingsChanging()) KeepPendingDiscards();
    const ssize_t got = ::read(uffd_.get(), msgs, sizeof(msgs[0]));
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      Fail(Status::FromErrno("reading the userfaultfd of pid " + std::to_string(pid_)), false);
      return;
    }
    for (size_t i = 0; i < static_cast<size_t>(got) / sizeof(uffd_msg); ++i) {
      const uffd_msg& m = msgs[i];
      switch (m.event) {
        case UFFD_EVENT_PAGEFAULT:
          OnFault(m.arg.pagefault.address & ~(kPage - 1));
          break;
        case UFFD_EVENT_REMAP:
          OnRemap(m.arg.remap.from, m.arg.remap.to, m.arg.remap.len);
          break;
        case UFFD_EVENT_UNMAP:
          OnUnmap(m.arg.remove.start, m.arg.remove.end, "unmapped");
          break;
        case UFFD_EVENT_REMOVE:
          OnUnmap(m.arg.remove.start, m.arg.remove.end, "discarded (madvise)");
          break;
        default:
          break;
      }
    }
  }
}

}  // namespace cryo
