#include "files/changed_files.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <set>

#include "base/clock.h"
#include "base/log.h"
#include "base/size_format.h"
#include "base/unique_fd.h"
#include "files/file_facts.h"

namespace cryo {

namespace {

int64_t MtimeNs(const struct stat& st) { return st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec; }

std::string DevText(uint64_t dev) {
  return std::to_string(major(static_cast<dev_t>(dev))) + ":" + std::to_string(minor(static_cast<dev_t>(dev)));
}

std::string HashText(uint64_t h) {
  char buf[24];
  snprintf(buf, sizeof(buf), "%016" PRIx64, h);
  return buf;
}

// The paths the user allowed to differ, as given and as they resolve (the
// image holds paths as the kernel shows them: absolute, no symlinks).
std::set<std::string> AllowedPaths(const ChangedFilesPolicy& policy) {
  std::set<std::string> out;
  for (const std::string& p : policy.allowed) {
    out.insert(p);
    char resolved[PATH_MAX];
    if (::realpath(p.c_str(), resolved)) out.insert(resolved);
  }
  return out;
}

// The content hash of the file at `path` now, if it is still the file `st`
// describes once read; nullopt if it changed while being read.
Result<std::optional<uint64_t>> HashNow(const std::string& path, const struct stat& st) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path + " to compare its content");
  image::FileId id;
  FileIdFromStat(path, st, &id);
  struct stat opened;
  if (::fstat(fd.get(), &opened) != 0) return Status::FromErrno("stat " + path);
  if (!FileChanges(id, opened, image::FileCheck::kContent).empty()) return std::optional<uint64_t>();
  CRYO_ASSIGN_OR_RETURN(uint64_t h, HashFileContent(fd.get(), path));
  return std::optional<uint64_t>(h);
}

// The mapping restore compares size and mtime once more: an allowed change
// becomes what it expects.
void AcceptCurrent(image::LoadedImage* img, const std::string& path, const struct stat& now) {
  for (auto& [pid, p] : img->processes)
    for (image::Vma& v : *p.mm.mutable_vmas())
      if (v.has_file() && v.file().path() == path) {
        v.mutable_file()->set_size(static_cast<uint64_t>(now.st_size));
        v.mutable_file()->set_mtime_ns(MtimeNs(now));
      }
}

}  // namespace

std::vector<std::string> FileChanges(const image::FileId& was, const struct stat& now, image::FileCheck check) {
  std::vector<std::string> out;
  if (now.st_dev != was.dev() || now.st_ino != was.ino()) {
    std::string s = "replaced: another file (inode " + std::to_string(was.ino()) + " -> " + std::to_string(now.st_ino);
    if (now.st_dev != was.dev()) s += ", device " + DevText(was.dev()) + " -> " + DevText(now.st_dev);
    out.push_back(s + ")");
  }
  if (was.mode() && (was.mode() & S_IFMT) != (now.st_mode & S_IFMT))
    out.push_back(std::string("no longer a ") + (S_ISDIR(was.mode()) ? "directory" : "regular file"));
  if (check == image::FileCheck::kIdentity) return out;
  if (static_cast<uint64_t>(now.st_size) != was.size())
    out.push_back("size " + std::to_string(was.size()) + " -> " + std::to_string(now.st_size) + " bytes");
  if (MtimeNs(now) != was.mtime_ns())
    out.push_back("mtime " + FormatTimeNs(was.mtime_ns()) + " -> " + FormatTimeNs(MtimeNs(now)));
  return out;
}

std::string ContentChange(uint64_t was, uint64_t now) {
  return "content differs (XXH3-64 " + HashText(was) + " -> " + HashText(now) + ") with the same size and mtime";
}

Status CheckChangedFiles(image::LoadedImage* img, const ChangedFilesPolicy& policy) {
  const double t0 = Now();
  const std::set<std::string> allowed = AllowedPaths(policy);
  std::set<std::string> allowed_unused = allowed;
  std::vector<std::string> missing, changed;
  std::string first_changed;
  uint64_t hashed = 0;
  const std::vector<image::ReferencedFile> files = image::ReferencedFiles(*img);
  for (const image::ReferencedFile& f : files) {
    if (policy.carried.count(f.path)) continue;  // put back from the image
    const std::string who = f.path + " (" + image::HoldersText(f) + ")";
    const bool allow = policy.ignore_all || allowed.count(f.path);
    allowed_unused.erase(f.path);
    struct stat now;
    // A symbolic link held itself (O_PATH | O_NOFOLLOW) was recorded as the
    // link: compared with the link (lstat), every other path with its file.
    bool link_itself = false;
    for (const image::FileId& r : f.records) link_itself |= S_ISLNK(r.mode());
    if ((link_itself ? ::lstat(f.path.c_str(), &now) : ::stat(f.path.c_str(), &now)) != 0) {
      missing.push_back(who + " is missing (" + std::strerror(errno) + ")");
      continue;
    }
    std::vector<std::string> diffs;
    auto add = [&diffs](const std::string& d) {
      if (std::find(diffs.begin(), diffs.end(), d) == diffs.end()) diffs.push_back(d);
    };
    for (const image::FileId& r : f.records)
      for (const std::string& d : FileChanges(r, now, f.check)) add(d);
    // Hashing costs a read of the file: not for a file already known changed,
    // nor for one the user lets change.
    std::optional<uint64_t> h;
    for (const image::FileId& r : f.records) {
      if (!diffs.empty() || allow || f.check != image::FileCheck::kContent || !r.has_content_xxh3()) continue;
      if (!h) {
        CRYO_ASSIGN_OR_RETURN(h, HashNow(f.path, now));
        ++hashed;
        if (!h) {
          add("changed while cryo read it");
          break;
        }
      }
      if (*h != r.content_xxh3()) add(ContentChange(r.content_xxh3(), *h));
    }
    if (diffs.empty()) continue;
    std::string what;
    for (const std::string& d : diffs) what += (what.empty() ? "" : ", ") + d;
    if (allow) {
      LOG_WARN("%s changed since the dump (%s); restoring with it as it is now, as %s says", who.c_str(), what.c_str(),
               policy.ignore_all ? "--ignore-changed-files" : "--allow-changed");
      AcceptCurrent(img, f.path, now);
      continue;
    }
    if (first_changed.empty()) first_changed = f.path;
    changed.push_back(who + ": " + what);
  }
  for (const std::string& p : policy.allowed)
    if (allowed_unused.count(p)) {
      char resolved[PATH_MAX];
      if (!::realpath(p.c_str(), resolved) || allowed_unused.count(resolved))
        LOG_WARN("--allow-changed %s: the image refers to no such file", p.c_str());
    }
  LOG_DEBUG("%zu referenced files checked (%" PRIu64 " hashed) in %.1f ms", files.size(), hashed,
            (Now() - t0) * 1e3);
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v) s += (s.empty() ? "" : "; ") + x;
    return s;
  };
  std::string msg;
  if (!missing.empty())
    msg = join(missing) + ": cryo reopens " + (missing.size() == 1 ? "it" : "each") +
          " by its path; put it back there to restore (no option goes on without it)";
  if (!changed.empty()) {
    if (!msg.empty()) msg += "; and ";
    msg += (changed.size() == 1 ? std::string() : std::to_string(changed.size()) + " files ") +
           "changed since the dump: " + join(changed) +
           ". The restored tree would find " + (changed.size() == 1 ? "it" : "them") +
           " other than it left " + (changed.size() == 1 ? "it" : "them") +
           "; if that is expected (a file the program itself went on writing after a leave-running dump), restore "
           "with --allow-changed " +
           (changed.size() == 1 ? first_changed : "PATH for each") + ", or --ignore-changed-files for every file";
  }
  return msg.empty() ? Status::Ok() : Status::Error(msg);
}

}  // namespace cryo
