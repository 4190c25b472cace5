// Files changed since the dump, the dump's half: what a restore checks about
// every file the tree refers to by path (changed_files.h is the other half).
// Fds and mappings already carry their file's FileId (path, device, inode,
// size, mtime); this adds the working directory, root and executable of each
// process, and the content hash (XXH3-64 of the whole file) of the files of
// executable mappings and of the executable, where a same-size, same-mtime
// change (a library rebuilt and its mtime put back, cp --preserve) would run
// other code than the dumped one.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

// XXH3-64 of whole files. A file (device, inode, size, mtime) is read once
// per dump however many processes map it.
class ContentHasher {
 public:
  // The hash of the file opened through `path` (a /proc/PID/map_files or exe
  // entry: the mapped object itself, whatever its name leads to now). Unset
  // (nullopt) if the file changed while it was read (size or mtime): a hash
  // of bytes that were never the file's would refuse a good restore.
  Result<std::optional<uint64_t>> Hash(const std::string& path, const image::FileId& id);

  uint64_t files() const { return files_; }
  uint64_t bytes() const { return bytes_; }
  double seconds() const { return seconds_; }

 private:
  std::map<std::tuple<uint64_t, uint64_t, uint64_t, int64_t>, std::optional<uint64_t>> cache_;
  uint64_t files_ = 0, bytes_ = 0;
  double seconds_ = 0;
};

// XXH3-64 of everything `fd` reads from offset 0 to its end, with the number
// of bytes read; errors name `what`.
Result<uint64_t> HashFileContent(int fd, const std::string& what, uint64_t* bytes = nullptr);

// The FileId of `st` named `path`.
void FileIdFromStat(const std::string& path, const struct stat& st, image::FileId* id);

// Fills ProcessCore.cwd_file, root_file and exe_file of a stopped process
// (not for a working directory or executable that was deleted: those are in
// the image), and the content hash of the executable and of every file with
// an executable mapping in `mm`.
Status RecordFileFacts(pid_t pid, image::ProcessCore* core, image::Mm* mm, ContentHasher* hasher);

}  // namespace cryo
