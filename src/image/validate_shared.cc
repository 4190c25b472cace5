// The shared-object tables: pipes.img (Pipe), shm.img (ShmObject, ShmExtent),
// ttys.img (Tty, TtyTermios, TtyWinsize, TtyInput), and every reference of a
// holder to them.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <termios.h>

#include <algorithm>
#include <map>
#include <set>

#include "image/in_flight.h"
#include "image/validate_internal.h"

namespace cryo::image::validate {

namespace {

constexpr uint64_t kDefaultPipeCapacity = 65536;  // PIPE_DEF_BUFFERS pages
constexpr uint64_t kMaxPipeCapacity = 1ull << 31;  // round_pipe_size's limit
constexpr size_t kTtyInputBytes = 4096;            // N_TTY_BUF_SIZE
constexpr size_t kTtyOutputBytes = 1 << 20;        // what a dump reads at most
constexpr int kPtsMax = 1 << 20;                   // NR_UNIX98_PTY_MAX

bool PowerOfTwo(uint64_t v) { return v && !(v & (v - 1)); }

// The speed a CBAUD code stands for (termbits.h), -1 for BOTHER and unknown
// codes.
int64_t BaudRate(uint32_t code) {
  static const int64_t kLow[] = {0, 50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400};
  static const int64_t kHigh[] = {-1, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000,
                                  1500000, 2000000, 2500000, 3000000, 3500000, 4000000};
  return code & 010000 ? kHigh[code & 017] : kLow[code & 017];
}

// TCSETS2 computes c_ispeed and c_ospeed from the CBAUD codes of c_cflag but
// for BOTHER (tty_ioctl.c set_termios): speeds that disagree would come back
// as the codes say.
std::string SpeedProblem(const TtyTermios& t) {
  constexpr uint32_t kCbaud = 010017, kBother = 010000, kIbshift = 16;
  const uint32_t out = t.cflag() & kCbaud, in = (t.cflag() >> kIbshift) & kCbaud;
  const int64_t ospeed = out == kBother ? t.ospeed() : BaudRate(out);
  const int64_t ispeed = in == 0 ? ospeed : in == kBother ? t.ispeed() : BaudRate(in);
  if (ospeed < 0 || ispeed < 0 || ospeed != t.ospeed() || ispeed != t.ispeed())
    return "speeds " + std::to_string(t.ispeed()) + "/" + std::to_string(t.ospeed()) + " disagree with c_cflag " +
           Hex(t.cflag());
  return "";
}

}  // namespace

Status ValidatePipes(const LoadedImage& img, const Index& index) {
  (void)index;
  const std::string file = PipesName();
  std::map<uint64_t, std::pair<bool, bool>> ends;  // pipe id -> (read end, any end) in the image
  std::vector<const Fd*> fds = InFlightFds(img);  // a pipe end may be only in flight
  for (const auto& [pid, p] : img.processes)
    for (const Fd& f : p.fds.fds()) fds.push_back(&f);
  for (const Fd* f : fds)
    if (f->kind() == FD_PIPE || f->kind() == FD_FIFO) {
      auto& e = ends[f->pipe().pipe_id()];
      e.first |= !f->pipe().write_end();
      e.second = true;
    }
  uint64_t prev_id = 0;
  for (const Pipe& p : img.pipes.pipes()) {
    const std::string what = "pipe " + std::to_string(p.id());
    if (p.id() <= prev_id) return Bad(img, file, what + ": pipe ids not ascending and unique");
    prev_id = p.id();
    if (!ends[p.id()].second) return Bad(img, file, what + " is held by no fd of the image");
    if (((p.id() >> 63) != 0) != !p.fifo_path().empty()) return Bad(img, file, what + ": a FIFO path on a pipe id, or none on a FIFO id");
    if (!p.fifo_path().empty())
      if (std::string pr = PathProblem(p.fifo_path()); !pr.empty()) return Bad(img, file, what + ": FIFO path " + pr);
    if (p.fifo_unlinked() && (p.fifo_path().empty() || std::find(img.inventory.features().begin(), img.inventory.features().end(), "unlinked-files") ==
                                              img.inventory.features().end()))
      return Bad(img, file, what + ": an unlinked FIFO without a path or without feature unlinked-files");
    // F_SETPIPE_SZ rounds to a power of two pages; capacity 0: not recorded.
    if (p.capacity() && (!PowerOfTwo(p.capacity()) || p.capacity() < kPageSize || p.capacity() > kMaxPipeCapacity))
      return Bad(img, file, what + ": capacity " + std::to_string(p.capacity()) + " no pipe can have");
    const uint64_t room = p.capacity() ? p.capacity() : kDefaultPipeCapacity;
    if (p.data().size() > room)
      return Bad(img, file, what + ": " + std::to_string(p.data().size()) + " bytes in flight, more than its capacity " +
                                std::to_string(room));
    // A FIFO keeps its bytes for whoever opens it next; a pipe without a read
    // end in the image has no reader at all.
    if (!p.data().empty() && p.fifo_path().empty() && !ends[p.id()].first)
      return Bad(img, file, what + ": bytes in flight but no read end in the image (nobody could have read them)");
  }
  return Status::Ok();
}

Status ValidateShm(const LoadedImage& img, const Index& index) {
  const std::string file = ShmName();
  std::set<uint64_t> held;
  for (const auto& [pid, p] : img.processes) {
    for (const Vma& v : p.mm.vmas())
      if (v.shm_object()) held.insert(v.shm_object());
    for (const Fd& f : p.fds.fds())
      if (f.kind() == FD_MEMFD || f.kind() == FD_POSIX_SHM) held.insert(f.shm_object());
  }
  for (const Fd* f : InFlightFds(img))
    if (f->kind() == FD_MEMFD || f->kind() == FD_POSIX_SHM) held.insert(f->shm_object());
  uint64_t prev_id = 0;
  uint64_t expect_off = kPageDataOffset, pages = 0;
  for (const ShmObject& o : img.shm.objects()) {
    const std::string obj = "object " + std::to_string(o.id());
    if (o.id() <= prev_id) return Bad(img, file, "object ids are not ascending and unique");
    prev_id = o.id();
    if (!held.count(o.id())) return Bad(img, file, obj + " is held by no fd or VMA of the image");
    const bool memfd = o.kind() == SHM_MEMFD, posix = o.kind() == SHM_POSIX, sysv = o.kind() == SHM_SYSV,
               anon = o.kind() == SHM_ANON;
    if (memfd) {
      if (o.name().size() > 249 || o.name().find('\0') != std::string::npos)
        return Bad(img, file, obj + ": memfd name longer than 249 bytes or with a NUL");
    } else if (posix) {
      const std::string& n = o.name();
      // A hugetlbfs file (feature hugetlbfs-file) is on any mount.
      const std::string dir = o.huge_page_size() ? "/" : "/dev/shm/";
      if (n.rfind(dir, 0) != 0 || n.size() == dir.size() || !PathProblem(n).empty() || n.find("/../") != std::string::npos ||
          n.find("/./") != std::string::npos || n.find("//") != std::string::npos || n.back() == '/' ||
          (n.size() >= 3 && n.compare(n.size() - 3, 3, "/..") == 0))
        return Bad(img, file, obj + ": POSIX shared memory path " + Printable(n) + " is not a file under " + dir);
    } else if (sysv) {
      if (!o.name().empty() || o.sysv_id() < 0 || o.size() == 0) return Bad(img, file, obj + ": invalid SysV segment");
    } else if (anon) {
      // Shared anonymous memory: mapped only, no name, no size 0 (mmap would refuse it).
      if (!o.name().empty() || o.size() == 0) return Bad(img, file, obj + ": invalid shared anonymous memory");
    } else {
      return Bad(img, file, obj + ": unknown kind " + std::to_string(o.kind()));
    }
    if (!memfd && o.writers_uncounted()) return Bad(img, file, obj + ": writers_uncounted on an object that is not a memfd");
    if ((!memfd && o.seals()) || o.seals() & ~0x3fu) return Bad(img, file, obj + ": seals " + Hex(o.seals()) + " invalid");
    // hugetlb objects (feature hugetlb-shared): a page size of x86-64, whole
    // pages but for a SysV segment (shm_segsz is the size asked, the segment
    // is made of whole pages).
    if (const uint64_t huge = o.huge_page_size();
        huge && ((huge != (2ull << 20) && huge != (1ull << 30)) || (!sysv && o.size() % huge)))
      return Bad(img, file, obj + ": huge page size " + Hex(huge) + " invalid for its kind or size");
    if (!posix && o.unlinked()) return Bad(img, file, obj + ": only POSIX shared memory can be unlinked");
    if (!sysv && (o.sysv_id() || o.sysv_key() || o.sysv_removed() || o.sysv_locked()))
      return Bad(img, file, obj + ": SysV fields on an object that is not a SysV segment");
    if (o.mode() > (sysv ? 0777u : 07777u)) return Bad(img, file, obj + ": mode " + Hex(o.mode()) + " invalid");
    if (o.uid() == UINT32_MAX || o.gid() == UINT32_MAX) return Bad(img, file, obj + ": owner -1");
    if (o.size() > static_cast<uint64_t>(INT64_MAX) - kPageSize) return Bad(img, file, obj + ": size too large");
    const uint64_t limit = (o.size() + kPageSize - 1) / kPageSize * kPageSize;
    uint64_t prev_end = 0;
    for (const ShmExtent& e : o.extents()) {
      if (e.file_offset() != expect_off || e.npages() == 0 || e.npages() > (4u << 20) / kPageSize ||
          e.offset() % kPageSize || e.offset() < prev_end || e.offset() > limit ||
          e.npages() * kPageSize > limit - e.offset())
        return Bad(img, file, obj + ": content extents are malformed");
      prev_end = e.offset() + e.npages() * kPageSize;
      expect_off += e.npages() * kPageSize;
      pages += e.npages();
    }
  }
  if (pages != img.shm.total_pages()) return Bad(img, file, "page count does not match the extents");
  for (const auto& [pid, p] : img.processes) {
    for (const Vma& v : p.mm.vmas()) {
      if (!v.shm_object()) continue;
      auto it = index.shm.find(v.shm_object());
      const bool anon = it != index.shm.end() && it->second->kind() == SHM_ANON;
      if (it == index.shm.end() ||
          (anon ? v.kind() != VMA_ANON_SHARED : v.kind() != VMA_FILE_SHARED && v.kind() != VMA_FILE_PRIVATE) ||
          (it->second->kind() == SHM_SYSV && v.kind() != VMA_FILE_SHARED) ||
          v.huge_page_size() != it->second->huge_page_size())
        return Bad(img, MmName(pid), "a VMA names shared memory object " + std::to_string(v.shm_object()) +
                                         ", which does not fit it");
    }
    for (const Fd& f : p.fds.fds()) {
      if (f.kind() != FD_MEMFD && f.kind() != FD_POSIX_SHM) continue;
      auto it = index.shm.find(f.shm_object());
      if (it == index.shm.end() || it->second->kind() != (f.kind() == FD_MEMFD ? SHM_MEMFD : SHM_POSIX))
        return Bad(img, FdsName(pid), "fd " + std::to_string(f.fd()) + " names no shared memory object of its kind");
    }
  }
  return Status::Ok();
}

Status ValidateTtys(const LoadedImage& img, const Index& index) {
  const std::string file = TtysName();
  std::set<uint64_t> held;
  for (const auto& [pid, p] : img.processes)
    for (const Fd& f : p.fds.fds())
      if (f.has_tty()) held.insert(f.tty().tty_id());
  uint64_t prev_id = 0;
  std::set<uint32_t> indexes;
  for (const Tty& t : img.ttys.ttys()) {
    const std::string what = "terminal " + std::to_string(t.id());
    if (t.id() <= prev_id) return Bad(img, file, what + ": ids are not ascending and unique");
    prev_id = t.id();
    if (!held.count(t.id())) return Bad(img, file, what + " is held by no fd of the image");
    const TtyTermios& tio = t.termios();
    if (tio.cc().size() != 19) return Bad(img, file, what + ": c_cc of " + std::to_string(tio.cc().size()) + " bytes, not 19");
    if (std::string p = SpeedProblem(tio); !p.empty()) return Bad(img, file, what + ": " + p);
    // c_line: TCSETS2 keeps the line discipline's own (the dump takes N_TTY only).
    if (tio.line() != 0) return Bad(img, file, what + ": line discipline " + std::to_string(tio.line()) + ", not N_TTY");
    const TtyWinsize& w = t.winsize();
    if (w.rows() > 0xffff || w.cols() > 0xffff || w.xpixel() > 0xffff || w.ypixel() > 0xffff)
      return Bad(img, file, what + ": window size beyond 16 bits");
    if (t.kind() == TTY_EXTERNAL) {
      Tty rest = t;
      rest.clear_id();
      rest.clear_kind();
      rest.clear_rdev();
      rest.clear_termios();
      rest.clear_winsize();
      if (rest.ByteSizeLong()) return Bad(img, file, what + ": the calling shell's terminal with pty state");
      continue;
    }
    if (t.kind() == TTY_OUTSIDE) {  // dump --ext-tty: opened again by its path
      if (t.index() >= static_cast<uint32_t>(kPtsMax) || !indexes.insert(t.index()).second)
        return Bad(img, file, what + ": pts number " + std::to_string(t.index()) + " out of range or twice");
      if (t.rdev() != makedev(136, t.index()))
        return Bad(img, file, what + ": device number is not /dev/pts/" + std::to_string(t.index()) + "'s");
      Tty rest = t;
      for (int f : {Tty::kIdFieldNumber, Tty::kKindFieldNumber, Tty::kIndexFieldNumber, Tty::kRdevFieldNumber,
                    Tty::kTermiosFieldNumber, Tty::kWinsizeFieldNumber, Tty::kOutsideCtimeNsFieldNumber})
        rest.GetReflection()->ClearField(&rest, Tty::descriptor()->FindFieldByNumber(f));
      if (rest.ByteSizeLong()) return Bad(img, file, what + ": a terminal outside the tree with pty state");
      continue;
    }
    if (t.kind() != TTY_PTY) return Bad(img, file, what + ": kind " + std::to_string(t.kind()) + " unknown");
    if (t.outside_ctime_ns())
      return Bad(img, file, what + ": a terminal of the tree with the creation time of one outside it");
    if (t.index() >= static_cast<uint32_t>(kPtsMax) || !indexes.insert(t.index()).second)
      return Bad(img, file, what + ": pts number " + std::to_string(t.index()) + " out of range or twice");
    if (t.rdev() != makedev(136, t.index())) return Bad(img, file, what + ": device number is not /dev/pts/" + std::to_string(t.index()) + "'s");
    // The restore opens the multiplexer it names; it knows these two.
    if (t.master_path() != "/dev/ptmx" && t.master_path() != "/dev/pts/ptmx")
      return Bad(img, file, what + ": master opened from " + Printable(t.master_path()) +
                                ", neither /dev/ptmx nor /dev/pts/ptmx");
    if (t.has_slave_attrs())
      if (std::string p = FileAttrsProblem(t.slave_attrs()); !p.empty()) return Bad(img, file, what + ": slave " + p);
    if (t.session()) {
      auto leader = img.processes.find(t.session());
      if (!index.live.count(t.session()) || leader->second.core.sid() != t.session())
        return Bad(img, file, what + ": session " + std::to_string(t.session()) + " has no leader in the image");
      if (t.foreground_pgrp() < 1 || t.foreground_pgrp() > kPidMax)
        return Bad(img, file, what + ": foreground group " + std::to_string(t.foreground_pgrp()) + " out of range");
    } else if (t.foreground_pgrp()) {
      return Bad(img, file, what + ": a foreground group without a session");
    }
    if (t.master_unread().size() > kTtyOutputBytes) return Bad(img, file, what + ": more than 1 MiB queued for the master");
    // The slave's input: lines (canonical mode) or one run of raw bytes, the
    // unfinished piece last, all of it within the line discipline's buffer.
    const bool canon = tio.lflag() & ICANON;
    size_t bytes = 0;
    for (int i = 0; i < t.slave_unread_size(); ++i) {
      const TtyInput& in = t.slave_unread(i);
      bytes += in.data().size() + in.eof();
      const bool last = i + 1 == t.slave_unread_size();
      if ((in.partial() && (!last || in.eof())) || (!canon && (!in.partial() || in.eof())) ||
          (!in.partial() && !in.eof() && in.data().empty()))
        return Bad(img, file, what + ": queued input piece " + std::to_string(i) + " is not one the terminal could hold");
    }
    if (bytes > kTtyInputBytes) return Bad(img, file, what + ": more queued input than the line discipline holds");
  }
  return Status::Ok();
}

}  // namespace cryo::image::validate
