#include "files/file_facts.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <vector>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "image/format.h"

namespace cryo {

namespace {

int64_t MtimeNs(const struct stat& st) { return st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec; }

bool SameFacts(const struct stat& st, const image::FileId& id) {
  return st.st_dev == id.dev() && st.st_ino == id.ino() && static_cast<uint64_t>(st.st_size) == id.size() &&
         MtimeNs(st) == id.mtime_ns();
}

bool IsDeleted(const std::string& link) {
  return link.size() > 10 && link.compare(link.size() - 10, 10, " (deleted)") == 0;
}

// The FileId of /proc/PID/ENTRY as `path`.
Status StatEntry(pid_t pid, const char* entry, const std::string& path, image::FileId* id) {
  const std::string e = "/proc/" + std::to_string(pid) + "/" + entry;
  struct stat st;
  if (::stat(e.c_str(), &st) != 0) return Status::FromErrno("stat " + e);
  FileIdFromStat(path, st, id);
  return Status::Ok();
}

}  // namespace

void FileIdFromStat(const std::string& path, const struct stat& st, image::FileId* id) {
  id->set_path(path);
  id->set_dev(st.st_dev);
  id->set_ino(st.st_ino);
  id->set_size(static_cast<uint64_t>(st.st_size));
  id->set_mtime_ns(MtimeNs(st));
  id->set_mode(st.st_mode);
}

Result<uint64_t> HashFileContent(int fd, const std::string& what, uint64_t* bytes) {
  // Read, not mapped: a file truncated under a mapping would be a SIGBUS in cryo.
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  constexpr size_t kChunk = 128 << 10;  // (1 MiB was 1 MiB of cryo's peak RSS: bench/README.md, cowsmall)
  std::vector<char> buf(kChunk);
  image::StreamHash h;
  uint64_t off = 0;
  for (;;) {
    const ssize_t n = ::pread(fd, buf.data(), kChunk, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("reading " + what + " to hash it");
    if (n == 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
    off += static_cast<uint64_t>(n);
  }
  if (bytes) *bytes = off;
  return h.Digest();
}

Result<std::optional<uint64_t>> ContentHasher::Hash(const std::string& path, const image::FileId& id) {
  const auto key = std::make_tuple(id.dev(), id.ino(), id.size(), id.mtime_ns());
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;
  const double t = Now();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path + " to hash " + id.path());
  struct stat before, after;
  if (::fstat(fd.get(), &before) != 0) return Status::FromErrno("stat " + path);
  uint64_t n = 0;
  CRYO_ASSIGN_OR_RETURN(uint64_t hash, HashFileContent(fd.get(), id.path(), &n));
  if (::fstat(fd.get(), &after) != 0) return Status::FromErrno("stat " + path);
  std::optional<uint64_t> result;
  if (SameFacts(before, id) && SameFacts(after, id) && n == id.size())
    result = hash;
  else
    LOG_DEBUG("%s changed while it was hashed: its content is not recorded", id.path().c_str());
  cache_[key] = result;
  ++files_;
  bytes_ += n;
  seconds_ += Now() - t;
  return result;
}

Status RecordFileFacts(pid_t pid, image::ProcessCore* core, image::Mm* mm, ContentHasher* hasher) {
  if (core->zombie()) return Status::Ok();
  if (!core->cwd_unlinked() && !IsDeleted(core->cwd()))
    CRYO_RETURN_IF_ERROR(StatEntry(pid, "cwd", core->cwd(), core->mutable_cwd_file()));
  CRYO_RETURN_IF_ERROR(StatEntry(pid, "root", core->root(), core->mutable_root_file()));
  const std::string& exe = core->mm().exe_path();
  if (!core->exe_unlinked() && !IsDeleted(exe)) {
    image::FileId* id = core->mutable_exe_file();
    CRYO_RETURN_IF_ERROR(StatEntry(pid, "exe", exe, id));
    CRYO_ASSIGN_OR_RETURN(std::optional<uint64_t> h, hasher->Hash("/proc/" + std::to_string(pid) + "/exe", *id));
    if (h) id->set_content_xxh3(*h);
  }
  // The files of executable mappings, reopened by path at restore (not memfds,
  // /dev/shm files or deleted files: their content is in the image).
  for (image::Vma& v : *mm->mutable_vmas()) {
    if ((v.kind() != image::VMA_FILE_PRIVATE && v.kind() != image::VMA_FILE_SHARED) || !(v.prot() & PROT_EXEC) ||
        v.shm_object() || v.unlinked_file() || !v.has_file())
      continue;
    char entry[96];
    snprintf(entry, sizeof(entry), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, pid, v.start(), v.end());
    CRYO_ASSIGN_OR_RETURN(std::optional<uint64_t> h, hasher->Hash(entry, v.file()));
    if (h) v.mutable_file()->set_content_xxh3(*h);
  }
  return Status::Ok();
}

}  // namespace cryo
