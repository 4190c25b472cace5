// The restore half of unlinked files (files.img): cryo creates each one again
// before the tree is cloned, unlinked, on the file system of its former name,
// so that /proc/PID/fd/N and /proc/PID/maps show "NAME (deleted)" again:
//   - a regular file is made with O_TMPFILE in the directory of its former
//     name (no name at all while its content is written), given its owner,
//     mode and times, then linked under its former name (a temporary name if
//     that one is taken now, with a warning), opened there and unlinked at
//     once; a file system without O_TMPFILE gets a temporary name instead;
//   - a directory is made under a temporary name, renamed to its former name,
//     opened and removed again.
// cryo keeps one open file of each (the anchor); every fd of the tree is a new
// open file description of it (reopened through /proc/self/fd), every mapping
// maps one, a deleted working directory is entered with fchdir. A failed
// restore removes every name it created (the destructor); a restore killed
// meanwhile leaves nothing but an O_TMPFILE file, which has no name, except in
// the microseconds between a link and its unlink.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"

namespace cryo {

class UnlinkedFiles {
 public:
  // Creates every file of `img.files` with its content; anchors are numbered
  // from `fd_base` on. Warnings (a former name taken) go to `warnings`.
  static Result<std::unique_ptr<UnlinkedFiles>> Create(const image::LoadedImage& img, int fd_base,
                                                       std::vector<std::string>* warnings);
  ~UnlinkedFiles();
  UnlinkedFiles(const UnlinkedFiles&) = delete;
  UnlinkedFiles& operator=(const UnlinkedFiles&) = delete;

  // The fds the restore helpers keep until their fds and memory are built.
  std::vector<int> PoolFds() const;
  // A new open file description of file `id` with the open(2) flags `flags`
  // (O_PATH included).
  Result<int> Reopen(uint64_t id, int flags) const;
  // The anchor of `id` (a directory's: to fchdir to), -1 if none.
  int Anchor(uint64_t id) const;
  // In a restore helper: maps VMA `v` of an unlinked file at `at` (MAP_FIXED
  // over the premap reservation) with protection `prot`.
  Status MapVma(const image::Vma& v, uint64_t at, int prot) const;

 private:
  struct Live {
    image::UnlinkedFile file;  // without extents
    int anchor = -1;
    std::string temp_path;     // a name to remove if the restore fails
  };
  UnlinkedFiles() = default;
  Status MakeRegular(const image::UnlinkedFile& f, int data_fd, Live* live, std::vector<std::string>* warnings);
  Status MakeDirectory(const image::UnlinkedFile& f, Live* live, std::vector<std::string>* warnings);
  const Live* Find(uint64_t id) const;
  std::map<uint64_t, Live> files_;
};

// The files of the restore in progress, for the fd kinds (set by the fd pool).
const UnlinkedFiles* RestoringUnlinkedFiles();
void SetRestoringUnlinkedFiles(const UnlinkedFiles* files);

// A FIFO that was deleted (Pipe.fifo_unlinked) made again: created under its
// former name `path` (a temporary name in the nearest existing directory if
// that is taken or its directory is gone), opened O_RDWR (never blocks,
// fifo(7)) and unlinked at once. Returns that fd, which the FIFO's ends are
// reopened from (/proc/self/fd). `id` tells temporary names apart.
Result<int> MakeUnlinkedFifo(const std::string& path, mode_t mode, uint64_t id);

// Writes the content of `f` (its extents, read from `data_fd`, files-data.img,
// each checked against its checksum) into `fd` and gives it its size.
// (Exposed for tests.)
Status FillUnlinkedFile(const image::UnlinkedFile& f, int data_fd, int fd);
// The same for any extents (snapshot files): `fd` gets `size` bytes, the
// extents' data read from `data_fd`; `what` names the file in errors.
Status FillFileExtents(const google::protobuf::RepeatedPtrField<image::FileExtent>& extents, uint64_t size,
                       int data_fd, int fd, const std::string& what);

}  // namespace cryo
