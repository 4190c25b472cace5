#include "files/unlinked_dump.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <map>

#include "base/file_util.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "image/format.h"
#include "proc/proc.h"
#include "proc/unlinked_path.h"

namespace cryo {

namespace {

constexpr std::string_view kDeleted = " (deleted)";

std::string WithoutDeleted(const std::string& link) {
  if (link.size() > kDeleted.size() && link.compare(link.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0)
    return link.substr(0, link.size() - kDeleted.size());
  return link;
}

int64_t Ns(const struct timespec& t) { return t.tv_sec * 1000000000ll + t.tv_nsec; }

struct Holder {
  pid_t pid;
  image::Fd* fd = nullptr;           // an fd,
  image::Vma* vma = nullptr;         // a mapping,
  image::ProcessCore* core = nullptr;  // or the working directory (or executable, `exe`)
  bool exe = false;
  std::string entry;                 // /proc/PID/... to open the object through
  std::string what;                  // for messages
};

struct Object {
  uint64_t dev, ino;
  std::string path;  // its former name
  std::vector<Holder> holders;
};

// Opens the object behind a holder for reading, without touching its atime.
Result<UniqueFd> OpenHolder(const Holder& h, bool dir) {
  const int flags = O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0);
  int fd = ::open(h.entry.c_str(), flags | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = ::open(h.entry.c_str(), flags);
  if (fd < 0) return Status::FromErrno("open " + h.entry + " to read " + h.what);
  return UniqueFd(fd);
}

// A process outside the tree with an fd on one of the objects (by link, then
// device and inode): after a restore the tree would have a copy of its own.
Status CheckOutsideHolders(const std::vector<Object>& objects, const std::set<pid_t>& tree) {
  std::multimap<std::string, const Object*> by_link;
  for (const Object& o : objects) by_link.emplace(o.path + std::string(kDeleted), &o);
  return proc::ForEachFdOutside(tree, [&](const proc::OutsideFd& fd) {
    auto [lo, hi] = by_link.equal_range(fd.link);
    if (lo == hi) return Status::Ok();
    struct stat st;
    if (::stat(fd.path.c_str(), &st) != 0) return Status::Ok();
    for (auto it = lo; it != hi; ++it) {
      const Object& o = *it->second;
      if (st.st_dev != o.dev || st.st_ino != o.ino) continue;
      return Status::Error(o.holders.front().what + ": the unlinked file " + o.path + " is also held by pid " +
                           std::to_string(fd.pid) + " (fd " + fd.fd +
                           "), outside the dumped tree; a restored tree would no longer share it");
    }
    return Status::Ok();
  });
}

Status ReadFull(int fd, char* buf, uint64_t len, uint64_t at, const std::string& what) {
  for (uint64_t got = 0; got < len;) {
    const ssize_t n = ::pread(fd, buf + got, len - got, static_cast<off_t>(at + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("reading " + what + " at " + std::to_string(at + got));
    if (n == 0) return Status::Error(what + " ended at " + std::to_string(at + got) + " while it was read (truncated meanwhile?)");
    got += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

// The working directory and executable of a process, when deleted.
using AddFn = std::function<Status(Holder, const struct stat&, const std::string&)>;
Status AddProcessEntries(pid_t pid, image::ProcessCore* core, const AddFn& add) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/";
  paths::Opened cwd;
  CRYO_RETURN_IF_ERROR(paths::ReadOpened(dir + "cwd", &cwd));
  if (paths::IsUnlinked(cwd)) {
    Holder h{pid, nullptr, nullptr, core, false, dir + "cwd", "pid " + std::to_string(pid) + "'s working directory"};
    CRYO_RETURN_IF_ERROR(add(std::move(h), cwd.st, paths::ShownPath(cwd)));
  }
  paths::Opened exe;
  CRYO_RETURN_IF_ERROR(paths::ReadOpened(dir + "exe", &exe));
  if (paths::IsUnlinked(exe)) {
    Holder h{pid, nullptr, nullptr, core, true, dir + "exe", "pid " + std::to_string(pid) + "'s executable"};
    CRYO_RETURN_IF_ERROR(add(std::move(h), exe.st, paths::ShownPath(exe)));
  } else if (paths::HasOtherName(exe)) {
    CRYO_ASSIGN_OR_RETURN(std::string other, paths::FindOtherName(exe));
    LOG_DEBUG("pid %d's executable %s was deleted; reopened as %s, another name of it", pid, exe.link.c_str(), other.c_str());
    core->mutable_mm()->set_exe_path(other);
  }
  return Status::Ok();
}

}  // namespace

Status StreamFileData(int fd, uint64_t size, const std::string& what, WritableFile* out, uint64_t* offset,
                      google::protobuf::RepeatedPtrField<image::FileExtent>* extents, uint64_t max_extent) {
  std::vector<char> buf(static_cast<size_t>(std::min<uint64_t>(max_extent, std::max<uint64_t>(size, 1))));
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only holes from here on
    if (data < 0) return Status::FromErrno("SEEK_DATA on " + what);
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return Status::FromErrno("SEEK_HOLE on " + what);
    uint64_t a = static_cast<uint64_t>(data);
    const uint64_t b = std::min(static_cast<uint64_t>(hole), size);
    while (a < b) {
      CRYO_RETURN_IF_ERROR(CheckInterrupt());  // a big file takes a while: SIGINT is noticed per extent
      const uint64_t len = std::min(b - a, max_extent);
      CRYO_RETURN_IF_ERROR(ReadFull(fd, buf.data(), len, a, what));
      CRYO_RETURN_IF_ERROR(out->WriteAt(buf.data(), len, static_cast<off_t>(*offset)));
      CRYO_RETURN_IF_ERROR(out->StartWriteback(static_cast<off_t>(*offset), len));
      image::FileExtent* e = extents->Add();
      e->set_offset(a);
      e->set_length(len);
      e->set_data_offset(*offset);
      e->set_checksum(image::HashBytes(buf.data(), len));
      *offset += len;
      a += len;
    }
    pos = std::max(b, pos + 1);
  }
  return Status::Ok();
}

namespace {

// Every unlinked file the tree holds, once per inode, with its holders.
Result<std::vector<Object>> CollectObjects(const std::vector<UnlinkedHolders>& procs) {
  std::vector<Object> objects;
  std::map<std::pair<uint64_t, uint64_t>, size_t> index;
  auto add = [&](Holder h, const struct stat& st, const std::string& path) -> Status {
    auto [it, fresh] = index.try_emplace({st.st_dev, st.st_ino}, objects.size());
    if (fresh) objects.push_back({st.st_dev, st.st_ino, path, {}});
    objects[it->second].holders.push_back(std::move(h));
    return Status::Ok();
  };
  for (const UnlinkedHolders& p : procs) {
    const std::string proc = "/proc/" + std::to_string(p.pid);
    for (image::Fd& f : *p.fds->mutable_fds()) {
      if (f.kind() != image::FD_UNLINKED_FILE) continue;
      struct stat st{};
      st.st_dev = static_cast<dev_t>(f.file().dev());
      st.st_ino = static_cast<ino_t>(f.file().ino());
      Holder h{p.pid, &f, nullptr, nullptr, false, proc + "/fd/" + std::to_string(f.fd()),
               "pid " + std::to_string(p.pid) + " fd " + std::to_string(f.fd())};
      CRYO_RETURN_IF_ERROR(add(std::move(h), st, WithoutDeleted(f.file().path())));
    }
    for (int i : *p.maps) {
      image::Vma* v = p.mm->mutable_vmas(i);
      struct stat st{};
      st.st_dev = static_cast<dev_t>(v->file().dev());
      st.st_ino = static_cast<ino_t>(v->file().ino());
      char range[64];
      snprintf(range, sizeof(range), "%" PRIx64 "-%" PRIx64, v->start(), v->end());
      Holder h{p.pid, nullptr, v, nullptr, false, proc + "/map_files/" + range,
               "pid " + std::to_string(p.pid) + " VMA " + range + " (" + v->name() + ")"};
      CRYO_RETURN_IF_ERROR(add(std::move(h), st, v->name()));
    }
    CRYO_RETURN_IF_ERROR(AddProcessEntries(p.pid, p.core, add));
  }
  return objects;
}

// Whether the object is a directory (else it must be a regular file), by
// its first holder.
Result<bool> IsDirectory(const Object& obj) {
  const Holder& first = obj.holders.front();
  struct stat st;
  if (::stat(first.entry.c_str(), &st) != 0) return Status::FromErrno("stat " + first.entry + " for " + first.what);
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
    return Status::Error(first.what + ": the unlinked " + obj.path + " is not a regular file or a directory");
  return S_ISDIR(st.st_mode);
}

}  // namespace

Status CheckUnlinkedFiles(const std::vector<UnlinkedHolders>& procs, const std::set<pid_t>& tree) {
  CRYO_ASSIGN_OR_RETURN(std::vector<Object> objects, CollectObjects(procs));
  if (objects.empty()) return Status::Ok();
  for (const Object& obj : objects) CRYO_RETURN_IF_ERROR(IsDirectory(obj).status());
  return CheckOutsideHolders(objects, tree);
}

Status DumpUnlinkedFiles(const std::vector<UnlinkedHolders>& procs, const std::set<pid_t>& tree,
                         image::ImageWriter* writer, image::UnlinkedFileTable* table, std::set<std::string>* features) {
  CRYO_ASSIGN_OR_RETURN(std::vector<Object> objects, CollectObjects(procs));
  if (objects.empty()) return Status::Ok();
  features->insert("unlinked-files");
  CRYO_RETURN_IF_ERROR(CheckOutsideHolders(objects, tree));

  CRYO_ASSIGN_OR_RETURN(auto data, writer->CreatePageFile(image::FilesDataName()));
  uint64_t off = image::kPageDataOffset;
  for (size_t i = 0; i < objects.size(); ++i) {
    const Object& obj = objects[i];
    const Holder& first = obj.holders.front();
    image::UnlinkedFile* f = table->add_files();
    f->set_id(i + 1);
    f->set_path(obj.path);
    f->set_dev(obj.dev);
    f->set_ino(obj.ino);
    // The holder's kind says whether it is a directory; open it as such.
    CRYO_ASSIGN_OR_RETURN(const bool dir, IsDirectory(obj));
    CRYO_ASSIGN_OR_RETURN(UniqueFd fd, OpenHolder(first, dir));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat of " + first.what);
    if (st.st_dev != obj.dev || st.st_ino != obj.ino)
      return Status::Error(first.what + ": " + first.entry + " is no longer the unlinked file " + obj.path);
    f->set_kind(dir ? image::UNLINKED_DIRECTORY : image::UNLINKED_REGULAR);
    f->set_mode(st.st_mode & 07777);
    f->set_uid(st.st_uid);
    f->set_gid(st.st_gid);
    f->set_atime_ns(Ns(st.st_atim));
    f->set_mtime_ns(Ns(st.st_mtim));
    if (!dir) {
      if (!S_ISREG(st.st_mode)) return Status::Error(first.what + ": the unlinked " + obj.path + " is not a regular file");
      f->set_size(static_cast<uint64_t>(st.st_size));
      CRYO_RETURN_IF_ERROR(StreamFileData(fd.get(), f->size(), "the unlinked file " + obj.path + " (" + first.what + ")",
                                          data.get(), &off, f->mutable_extents()));
    }
    for (const Holder& h : obj.holders) {
      if (h.fd) h.fd->set_unlinked_file(f->id());
      if (h.vma) h.vma->set_unlinked_file(f->id());
      if (h.core) (h.exe ? h.core->set_exe_unlinked(f->id()) : h.core->set_cwd_unlinked(f->id()));
    }
    LOG_DEBUG("unlinked %s %s (id %" PRIu64 "): %" PRIu64 " bytes, %d extents, %zu holders", dir ? "directory" : "file",
              obj.path.c_str(), f->id(), f->size(), f->extents_size(), obj.holders.size());
  }
  table->set_data_size(off - image::kPageDataOffset);
  return writer->FinishPageFile(std::move(data), off - image::kPageDataOffset);
}

}  // namespace cryo
