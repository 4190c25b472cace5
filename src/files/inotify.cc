// inotify(7): each watch is an fdinfo line with its wd, mask, inode and a file
// handle. The dump turns the handle back into a path (open_by_handle_at(2) on
// the watched filesystem, then readlink of /proc/self/fd/N); the restore adds
// the watches again by path, in increasing wd order so that the kernel hands
// out the same watch descriptors.
//
// Not preserved: events queued and not read yet at the dump are lost (the
// kernel does not show them), and so is the ignored mask of a watch. A watch
// whose file has been deleted, or whose file system cannot encode file handles,
// fails the dump; a watched path that names another file at restore time fails
// the restore.
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <vector>

#include "base/file_util.h"
#include "base/parse_number.h"
#include "base/unique_fd.h"
#include "files/event_fds.h"
#include "files/fd_kind.h"
#include "proc/proc.h"

namespace cryo {

namespace {

// Gaps in the saved wd numbers (watches removed before the dump) are
// reproduced by adding and removing a watch; this bounds how many.
constexpr int kMaxBurnedWds = 1 << 20;

bool ParseHexBytes(std::string_view s, std::string* out) {
  if (s.size() % 2) return false;
  out->clear();
  for (size_t i = 0; i < s.size(); i += 2) {
    uint8_t b;
    if (!ParseNumber(s.substr(i, 2), &b, 16)) return false;
    out->push_back(static_cast<char>(b));
  }
  return true;
}

std::string DevName(uint64_t dev) { return std::to_string(major(dev)) + ":" + std::to_string(minor(dev)); }

// The mount points (relative to the process's root) of the file system `dev`
// in pid's mountinfo, those that mount the file system's root first.
Result<std::vector<std::string>> MountsOf(pid_t pid, uint64_t dev) {
  const std::string path = "/proc/" + std::to_string(pid) + "/mountinfo";
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const std::string want = DevName(dev);
  std::vector<std::string> whole, part;
  for (std::string_view line : SplitLines(text)) {
    std::vector<std::string_view> w = SplitWords(line);
    if (w.size() < 5 || w[2] != want) continue;
    (w[3] == "/" ? whole : part).push_back(proc::UnescapeMountField(w[4]));
  }
  whole.insert(whole.end(), part.begin(), part.end());
  return whole;
}

// The path of the watched file, from its file handle.
Result<std::string> ResolveMark(pid_t pid, const InotifyMark& m) {
  const std::string what = "watch wd " + std::to_string(m.wd) + " (inode " + std::to_string(m.ino) + " on device " +
                           DevName(m.dev) + ")";
  if (m.handle.empty())
    return Status::Error(what + ": the kernel shows no file handle for it (the file system cannot encode one), so "
                                "its path cannot be found");
  std::vector<uint8_t> buf(sizeof(struct file_handle) + m.handle.size());
  auto* fh = reinterpret_cast<struct file_handle*>(buf.data());
  fh->handle_bytes = static_cast<unsigned>(m.handle.size());
  fh->handle_type = m.handle_type;
  std::memcpy(fh->f_handle, m.handle.data(), m.handle.size());

  CRYO_ASSIGN_OR_RETURN(std::vector<std::string> mounts, MountsOf(pid, m.dev));
  if (mounts.empty()) return Status::Error(what + ": no mount of that device in pid " + std::to_string(pid) + "'s mountinfo");
  const std::string root = "/proc/" + std::to_string(pid) + "/root";
  Status last = Status::Error("no mount resolved the handle");
  for (const std::string& mp : mounts) {
    UniqueFd mount_fd(::open((root + mp).c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!mount_fd.valid()) {
      last = Status::FromErrno("open mount point " + mp);
      continue;
    }
    UniqueFd f(::open_by_handle_at(mount_fd.get(), fh, O_PATH | O_CLOEXEC));
    if (!f.valid()) {
      last = Status::FromErrno("open_by_handle_at via mount point " + mp +
                               (errno == ESTALE ? " (the file is gone, or its file system cannot reopen handles)" : ""));
      continue;
    }
    struct stat st;
    if (::fstat(f.get(), &st) != 0 || st.st_ino != m.ino || st.st_dev != m.dev) {
      last = Status::Error("the handle resolved via " + mp + " to another inode");
      continue;
    }
    CRYO_ASSIGN_OR_RETURN(std::string p, ReadLink("/proc/self/fd/" + std::to_string(f.get())));
    if (p.size() > 10 && p.compare(p.size() - 10, 10, " (deleted)") == 0)
      return Status::Error(what + ": the watched file " + p + " is deleted; watches on deleted files are not supported");
    struct stat pst;
    if (p.empty() || p[0] != '/' || ::lstat(p.c_str(), &pst) != 0 || pst.st_ino != m.ino || pst.st_dev != m.dev) {
      last = Status::Error("the path " + p + " found via " + mp + " does not lead to the watched file");
      continue;
    }
    return p;
  }
  return last.Prefixed(what + ": cannot find the watched file's path");
}

// Reads (and drops) every queued event of a non-blocking inotify fd.
void Drain(int fd) {
  alignas(struct inotify_event) char buf[4096];
  while (::read(fd, buf, sizeof(buf)) > 0) {
  }
}

class Inotify final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_INOTIFY; }
  const char* name() const override { return "inotify"; }
  const char* feature() const override { return "inotify"; }
  bool Handles(const FdSource& s) const override { return s.link == "anon_inode:inotify"; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    CRYO_ASSIGN_OR_RETURN(std::vector<InotifyMark> marks, ParseInotifyInfo(s.info));
    for (const InotifyMark& m : marks) {
      CRYO_ASSIGN_OR_RETURN(std::string path, ResolveMark(s.pid, m));
      image::InotifyWatch* w = out->mutable_inotify()->add_watches();
      w->set_wd(m.wd);
      w->set_mask(m.mask);
      w->set_path(path);
      w->set_ino(m.ino);
      w->set_dev(m.dev);
    }
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override {
    UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno("inotify_init1");
    std::vector<const image::InotifyWatch*> watches;
    for (const image::InotifyWatch& w : f.inotify().watches()) watches.push_back(&w);
    std::sort(watches.begin(), watches.end(), [](auto* a, auto* b) { return a->wd() < b->wd(); });
    int burned = 0;
    for (const image::InotifyWatch* w : watches) {
      const std::string what = "watch wd " + std::to_string(w->wd()) + " on " + w->path();
      struct stat st;
      if (::lstat(w->path().c_str(), &st) != 0) return Status::FromErrno(what);
      if (st.st_ino != w->ino() || st.st_dev != w->dev())
        return Status::Error(what + ": the path now names another file (inode " + std::to_string(st.st_ino) +
                             ", the watched one was " + std::to_string(w->ino()) + ")");
      // The kernel gives each new watch the next wd number (idr_alloc_cyclic);
      // a number below the saved one was freed before the dump: use it up.
      for (;;) {
        const int got = ::inotify_add_watch(fd.get(), w->path().c_str(), w->mask() | IN_DONT_FOLLOW);
        if (got < 0) return Status::FromErrno("inotify_add_watch for " + what);
        if (got == w->wd()) break;
        if (got > w->wd() || ++burned > kMaxBurnedWds)
          return Status::Error(what + ": the kernel gave wd " + std::to_string(got) +
                               " (watch descriptors are handed out in increasing order and cannot be chosen)");
        if (::inotify_rm_watch(fd.get(), got) != 0) return Status::FromErrno("inotify_rm_watch of a spare wd");
        if (burned % 1024 == 0) Drain(fd.get());  // IN_IGNORED events of the spare wds
      }
    }
    if (burned) Drain(fd.get());
    if (!(f.flags() & O_NONBLOCK) && ::fcntl(fd.get(), F_SETFL, 0) != 0) return Status::FromErrno("F_SETFL on inotify");
    return fd.release();
  }
};

}  // namespace

Result<std::vector<InotifyMark>> ParseInotifyInfo(const proc::FdInfo& info) {
  std::vector<InotifyMark> out;
  auto [begin, end] = info.fields.equal_range("inotify wd");
  for (auto it = begin; it != end; ++it) {
    const std::string line = "inotify wd:" + it->second;
    std::string first;
    std::vector<std::pair<std::string, std::string>> pairs;
    InotifyMark m;
    uint64_t kdev = 0;
    const std::string *ino, *sdev, *mask, *ignored;
    auto field = [&pairs](const char* key) { return FindFdinfoPair(pairs, key); };
    if (!SplitFdinfoPairs(it->second, &first, &pairs) || !ParseNumber(first, &m.wd, 16) ||
        !(ino = field("ino")) || !(sdev = field("sdev")) || !(mask = field("mask")) ||
        !(ignored = field("ignored_mask")) || !ParseNumber(*ino, &m.ino, 16) || !ParseNumber(*sdev, &kdev, 16) ||
        !ParseNumber(*mask, &m.mask, 16) || !ParseNumber(*ignored, &m.ignored_mask, 16))
      return Status::Error("malformed inotify fdinfo line \"" + line + "\"");
    m.dev = KernelDevToUser(kdev);
    const std::string* bytes = field("fhandle-bytes");
    const std::string* type = field("fhandle-type");
    const std::string* handle = field("f_handle");
    if (bytes && type && handle) {
      size_t n = 0;
      if (!ParseNumber(*bytes, &n, 16) || !ParseNumber(*type, &m.handle_type, 16) || !ParseHexBytes(*handle, &m.handle) ||
          m.handle.size() != n)
        return Status::Error("malformed file handle in inotify fdinfo line \"" + line + "\"");
    }
    out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(), [](const InotifyMark& a, const InotifyMark& b) { return a.wd < b.wd; });
  return out;
}

const FdKindHandler* InotifyHandler() {
  static const Inotify h;
  return &h;
}

}  // namespace cryo
