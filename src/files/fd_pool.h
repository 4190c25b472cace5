// The fd pool: every open file description of an image, opened once by cryo
// before the tree is cloned. Helpers inherit the pool across fork, so fds that
// shared a description (dups, inherited fds, pipe ends in several processes)
// share it again; each helper dup2()s its own fds out of the pool.
#pragma once

#include <map>
#include <set>
#include <vector>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "files/tty_restore.h"
#include "files/unlinked_restore.h"
#include "image/image_dir.h"
#include "mem/shm_restore.h"

namespace cryo {

class FdPool {
 public:
  // Opens every description (and creates every pipe with its data). Pool fds
  // are numbered above every fd number of the image.
  static Result<FdPool> Build(const image::LoadedImage& img);

  // The pool fd holding the description of `fd` (-1 if none).
  int FdFor(pid_t pid, const image::Fd& fd) const;
  // The process that finishes the description (epoll registrations, O_ASYNC
  // are made once, by its first holder); 0 if unknown.
  pid_t FirstHolder(pid_t pid, const image::Fd& fd) const;
  // Every fd the pool holds, ascending.
  std::vector<int> Fds() const;
  // The shmem object (an fd on it) of a shared anonymous VMA, -1 if none.
  int ShmemFd(uint64_t shmem_id) const;
  // Memfds, POSIX and SysV shared memory of the image (never null after Build).
  const ShmObjects* shm() const { return shm_.get(); }
  // In cryo, once every process is rebuilt: seals, SysV removal, POSIX names.
  Status FinishSharedMemory(std::vector<std::string>* warnings) { return shm_->Finish(warnings); }
  void CloseAll();
  // Unlinked files and directories of the image (never null after Build).
  const UnlinkedFiles* unlinked() const { return unlinked_.get(); }
  // The image's terminals (ctty and foreground steps of the helpers).
  const TtySet& ttys() const { return ttys_; }

 private:
  static uint64_t Key(pid_t pid, const image::Fd& fd);
  Status BuildShmem(const image::LoadedImage& img, int base);
  std::map<uint64_t, int> fds_;         // description key -> pool fd
  std::map<uint64_t, pid_t> finisher_;  // description key -> first holder
  std::set<int> pool_fds_;
  std::map<uint64_t, int> shmem_;       // shmem id -> fd
  std::unique_ptr<ShmObjects> shm_;
  std::unique_ptr<UnlinkedFiles> unlinked_;
  TtySet ttys_;
};

}  // namespace cryo
