#include "files/unlinked_restore.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "base/unique_fd.h"
#include "image/format.h"
#include "mem/vma_restore.h"
#include "proc/unlinked_path.h"

namespace cryo {

namespace {

const UnlinkedFiles* g_restoring = nullptr;

std::string What(const image::UnlinkedFile& f) {
  return std::string(f.kind() == image::UNLINKED_DIRECTORY ? "unlinked directory " : "unlinked file ") + f.path();
}

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos || slash == 0 ? "/" : path.substr(0, slash);
}

std::string Join(const std::string& dir, const std::string& name) { return (dir == "/" ? "" : dir) + "/" + name; }

// A name of cryo's own in `dir` for file `id` while it is being made.
std::string TempName(const std::string& dir, uint64_t id) {
  return Join(dir, ".cryo-unlinked-" + std::to_string(::getpid()) + "-" + std::to_string(id));
}

struct timespec Ts(int64_t ns) { return {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)}; }

// Owner, mode and times, once the content is in (writing it changes the mtime).
Status Shape(int fd, const image::UnlinkedFile& f) {
  const std::string what = What(f);
  if (::fchown(fd, f.uid(), f.gid()) != 0) return Status::FromErrno("fchown of " + what);
  if (::fchmod(fd, f.mode() & 07777) != 0) return Status::FromErrno("fchmod of " + what);
  const struct timespec times[2] = {Ts(f.atime_ns()), Ts(f.mtime_ns())};
  if (::futimens(fd, times) != 0) return Status::FromErrno("futimens of " + what);
  return Status::Ok();
}

// The name the object is published under: its former name if that is in its
// directory and free, else a temporary one (with a warning).
std::string PublishName(const image::UnlinkedFile& f, const std::string& dir) {
  if (Parent(f.path()) == dir) return f.path();
  return TempName(dir, f.id());
}

// Opens the object now at `name` with `flags`, checks it is `ino`, and removes
// the name again.
Result<int> OpenAndUnlink(const std::string& name, int flags, ino_t ino, bool dir, const std::string& what) {
  UniqueFd fd(::open(name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC));
  const int err = errno;
  if ((dir ? ::rmdir(name.c_str()) : ::unlink(name.c_str())) != 0 && fd.valid())
    return Status::FromErrno("removing " + name + " (" + what + ") again");
  if (!fd.valid()) return Status::Errno(err, "opening " + name + " (" + what + ")");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || st.st_ino != ino)
    return Status::Error(name + " is not the " + what + " cryo made (replaced meanwhile)");
  return fd.release();
}

int MoveAbove(int fd, int base) {
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, base);
  ::close(fd);
  return moved;
}

}  // namespace

const UnlinkedFiles* RestoringUnlinkedFiles() { return g_restoring; }
void SetRestoringUnlinkedFiles(const UnlinkedFiles* files) { g_restoring = files; }

Status FillUnlinkedFile(const image::UnlinkedFile& f, int data_fd, int fd) {
  return FillFileExtents(f.extents(), f.size(), data_fd, fd, What(f));
}

Status FillFileExtents(const google::protobuf::RepeatedPtrField<image::FileExtent>& extents, uint64_t size,
                       int data_fd, int fd, const std::string& what) {
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0)
    return Status::FromErrno("ftruncate of " + what + " to " + std::to_string(size));
  uint64_t biggest = 0;
  for (const image::FileExtent& e : extents) biggest = std::max(biggest, e.length());
  std::vector<char> buf(static_cast<size_t>(biggest));
  for (const image::FileExtent& e : extents) {
    const uint64_t len = e.length();
    for (uint64_t got = 0; got < len;) {
      const ssize_t n = ::pread(data_fd, buf.data() + got, len - got, static_cast<off_t>(e.data_offset() + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status::Errno(n < 0 ? errno : EIO, "reading the content of " + what);
      got += static_cast<uint64_t>(n);
    }
    if (image::HashBytes(buf.data(), len) != e.checksum())
      return Status::Error("checksum mismatch in the content of " + what + " at " + std::to_string(e.offset()) +
                           " (corrupted image)");
    for (uint64_t done = 0; done < len;) {
      const ssize_t n = ::pwrite(fd, buf.data() + done, len - done, static_cast<off_t>(e.offset() + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status::Errno(n < 0 ? errno : EIO, "writing the content of " + what);
      done += static_cast<uint64_t>(n);
    }
  }
  return Status::Ok();
}

Result<int> MakeUnlinkedFifo(const std::string& path, mode_t mode, uint64_t id) {
  const std::string what = "unlinked FIFO " + path;
  const std::string dir = paths::RecreateDir(path);
  std::string name = Parent(path) == dir ? path : TempName(dir, id);
  if (::mkfifo(name.c_str(), 0600) != 0) {
    if (errno != EEXIST || name != path) return Status::FromErrno("mkfifo " + name + " for " + what);
    name = TempName(dir, id);
    if (::mkfifo(name.c_str(), 0600) != 0) return Status::FromErrno("mkfifo " + name + " for " + what);
  }
  struct stat st;
  if (::lstat(name.c_str(), &st) != 0) {
    Status s = Status::FromErrno("stat " + name);
    ::unlink(name.c_str());
    return s;
  }
  CRYO_ASSIGN_OR_RETURN(int fd, OpenAndUnlink(name, O_RDWR | O_NONBLOCK, st.st_ino, false, what));
  if (::fchmod(fd, mode & 07777) != 0) {
    Status s = Status::FromErrno("fchmod of " + what);
    ::close(fd);
    return s;
  }
  return fd;
}

Result<std::unique_ptr<UnlinkedFiles>> UnlinkedFiles::Create(const image::LoadedImage& img, int fd_base,
                                                             std::vector<std::string>* warnings) {
  std::unique_ptr<UnlinkedFiles> files(new UnlinkedFiles());
  if (img.files.files().empty()) return files;
  CRYO_ASSIGN_OR_RETURN(UniqueFd data, image::OpenFilesDataFile(img));
  for (const image::UnlinkedFile& f : img.files.files()) {
    Live& live = files->files_[f.id()];
    live.file = f;
    live.file.clear_extents();
    if (f.kind() == image::UNLINKED_DIRECTORY) {
      CRYO_RETURN_IF_ERROR(files->MakeDirectory(f, &live, warnings));
    } else if (f.kind() == image::UNLINKED_REGULAR) {
      CRYO_RETURN_IF_ERROR(files->MakeRegular(f, data.get(), &live, warnings));
    } else {
      return Status::Error(What(f) + " is of a kind this cryo cannot restore");
    }
    live.anchor = MoveAbove(live.anchor, fd_base);
    if (live.anchor < 0) return Status::FromErrno("moving the fd of " + What(f));
  }
  return files;
}

Status UnlinkedFiles::MakeRegular(const image::UnlinkedFile& f, int data_fd, Live* live,
                                  std::vector<std::string>* warnings) {
  const std::string what = What(f);
  const std::string dir = paths::RecreateDir(f.path());
  // No name at all while the content is written (open(2) O_TMPFILE).
  UniqueFd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  const bool tmpfile = fd.valid();
  if (!tmpfile) {
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
      return Status::FromErrno("creating " + what + " in " + dir + " (O_TMPFILE)");
    live->temp_path = TempName(dir, f.id());
    fd.reset(::open(live->temp_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return Status::FromErrno("creating " + live->temp_path + " for " + what);
  }
  CRYO_RETURN_IF_ERROR(FillUnlinkedFile(f, data_fd, fd.get()));
  CRYO_RETURN_IF_ERROR(Shape(fd.get(), f));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat of " + what);
  // Linked under its former name just long enough to be opened there: the
  // open file then shows that name, followed by " (deleted)".
  std::string name = PublishName(f, dir);
  auto publish = [&](const std::string& to) -> int {
    if (tmpfile) {
      const std::string self = "/proc/self/fd/" + std::to_string(fd.get());
      return ::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, to.c_str(), AT_SYMLINK_FOLLOW);
    }
    return ::renameat2(AT_FDCWD, live->temp_path.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE);
  };
  const bool in_place = !tmpfile && name == live->temp_path;  // already under that name
  if (!in_place && publish(name) != 0) {
    if (errno != EEXIST || name != f.path()) return Status::FromErrno("linking " + what + " as " + name);
    name = TempName(dir, f.id());
    if (tmpfile && publish(name) != 0) return Status::FromErrno("linking " + what + " as " + name);
    warnings->push_back(what + " is restored as " + name + " (deleted): another file holds its name now");
  }
  live->temp_path.clear();  // `name` is removed below whatever happens
  // The anchor is read-only: a program mapped from the file becomes the
  // process's executable (PR_SET_MM_MAP), which fails while it is open for
  // writing (replace_mm_exe_file denies write access). Fds reopen it writable.
  CRYO_ASSIGN_OR_RETURN(live->anchor, OpenAndUnlink(name, O_RDONLY, st.st_ino, false, what));
  return Status::Ok();
}

Status UnlinkedFiles::MakeDirectory(const image::UnlinkedFile& f, Live* live, std::vector<std::string>* warnings) {
  const std::string what = What(f);
  const std::string dir = paths::RecreateDir(f.path());
  live->temp_path = TempName(dir, f.id());
  if (::mkdir(live->temp_path.c_str(), 0700) != 0) return Status::FromErrno("creating " + live->temp_path + " for " + what);
  struct stat st;
  if (::lstat(live->temp_path.c_str(), &st) != 0) return Status::FromErrno("stat " + live->temp_path);
  std::string name = PublishName(f, dir);
  if (name != live->temp_path) {
    if (::renameat2(AT_FDCWD, live->temp_path.c_str(), AT_FDCWD, name.c_str(), RENAME_NOREPLACE) == 0) {
      live->temp_path = name;
    } else {
      if (errno != EEXIST) return Status::FromErrno("renaming " + live->temp_path + " to " + name);
      warnings->push_back(what + " is restored as " + live->temp_path + " (deleted): another file holds its name now");
      name = live->temp_path;
    }
  }
  live->temp_path.clear();
  CRYO_ASSIGN_OR_RETURN(live->anchor, OpenAndUnlink(name, O_RDONLY | O_DIRECTORY, st.st_ino, true, what));
  // Removing it changed nothing of its own but its link count; now its owner,
  // mode and times.
  return Shape(live->anchor, f);
}

UnlinkedFiles::~UnlinkedFiles() {
  if (g_restoring == this) g_restoring = nullptr;
  for (auto& [id, live] : files_) {
    if (!live.temp_path.empty())
      (live.file.kind() == image::UNLINKED_DIRECTORY ? ::rmdir : ::unlink)(live.temp_path.c_str());
  }
}

const UnlinkedFiles::Live* UnlinkedFiles::Find(uint64_t id) const {
  auto it = files_.find(id);
  return it == files_.end() ? nullptr : &it->second;
}

std::vector<int> UnlinkedFiles::PoolFds() const {
  std::vector<int> out;
  for (const auto& [id, live] : files_)
    if (live.anchor >= 0) out.push_back(live.anchor);
  return out;
}

int UnlinkedFiles::Anchor(uint64_t id) const {
  const Live* live = Find(id);
  return live ? live->anchor : -1;
}

Result<int> UnlinkedFiles::Reopen(uint64_t id, int flags) const {
  const Live* live = Find(id);
  if (!live || live->anchor < 0) return Status::Error("unlinked file " + std::to_string(id) + " is not in the image");
  // A new open file description of the same inode (proc(5), /proc/PID/fd):
  // it shows the anchor's name, deleted.
  const std::string path = "/proc/self/fd/" + std::to_string(live->anchor);
  constexpr int kCreationFlags = O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW;
  const int fd = ::open(path.c_str(), (flags & ~kCreationFlags) | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("reopening " + What(live->file));
  return fd;
}

Status UnlinkedFiles::MapVma(const image::Vma& v, uint64_t at, int prot) const {
  char range[64];
  snprintf(range, sizeof(range), "VMA %" PRIx64 "-%" PRIx64, v.start(), v.end());
  CRYO_ASSIGN_OR_RETURN(int fd, Reopen(v.unlinked_file(), FileOpenedWritable(v) ? O_RDWR : O_RDONLY));
  UniqueFd file(fd);
  const int type = (v.flags() & MAP_SHARED) ? MAP_SHARED : MAP_PRIVATE;
  void* p = ::mmap(reinterpret_cast<void*>(at), v.end() - v.start(), prot, MAP_FIXED | type, fd,
                   static_cast<off_t>(v.pgoff()));
  if (p == MAP_FAILED) return Status::FromErrno("mmap of the unlinked file " + v.name() + " for " + range);
  return Status::Ok();
}

}  // namespace cryo
