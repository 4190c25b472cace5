// The restore half of shared memory objects (memfds, POSIX shared memory, SysV
// segments, shared anonymous memory). cryo creates every object of shm.img once, with its content,
// before the tree is cloned; the restore helpers inherit the objects' fds (the
// fd pool) and map them (SysV: attach by id) at their VMAs, fds are new open
// file descriptions of them. Seals and POSIX names are applied last, when
// every holder has its object (Finish). A SysV segment that was removed
// (IPC_RMID) while attached is removed again at once, kept alive by an attach
// of cryo's own until every holder is attached (Linux lets a removed segment be
// attached by id, shmctl(2)), which also frees its key for the others.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "image/image_dir.h"

namespace cryo {

class ShmObjects {
 public:
  // Creates (or, for a SysV segment left by the original, reuses) every object
  // of `img.shm` and puts the image's content in it. Fds handed to the helpers
  // are numbered from `fd_base` on.
  static Result<std::unique_ptr<ShmObjects>> Create(const image::LoadedImage& img, int fd_base);
  // A restore that did not reach Finish: removes the SysV segments and
  // temporary files it created.
  ~ShmObjects();
  ShmObjects(const ShmObjects&) = delete;
  ShmObjects& operator=(const ShmObjects&) = delete;

  // The fds the restore helpers must keep until their memory is built.
  std::vector<int> PoolFds() const;
  // A new open file description of object `id` with the open(2) flags `flags`.
  Result<int> Reopen(uint64_t id, int flags) const;
  // The open file description of an FD_MEMFD or FD_POSIX_SHM fd: a reopen,
  // but for the read-write description of a memfd whose writers were not
  // counted (ShmObject.writers_uncounted), which is the new memfd's own, so
  // that exec(2) of the memfd works as it did.
  Result<int> OpenDescription(uint64_t id, int flags) const;
  // In a restore helper: maps VMA `v` at `at` (MAP_FIXED over the premap
  // reservation) with protection `prot`.
  Status MapVma(const image::Vma& v, uint64_t at, int prot) const;
  // In cryo, once every process of the tree has its fds and memory: adds the
  // memfds' seals, lets go of removed SysV segments, renames POSIX files into
  // place. After it the destructor leaves everything as it is.
  Status Finish(std::vector<std::string>* warnings);

 private:
  struct Live {
    image::ShmObject obj;  // without extents
    int rw_fd = -1;        // pool fds (memfd, POSIX); a memfd's is memfd_create's own
    mutable bool own_rw_given = false;  // rw_fd's description went to an fd (OpenDescription)
    int ro_fd = -1;
    int seal_fd = -1;      // cryo's own, for the seals at Finish
    std::string temp_path; // POSIX: where the file waits for its name
    bool created_sysv = false;
    void* keep_attach = nullptr;  // removed SysV segment: cryo's attach until Finish
  };
  ShmObjects() = default;
  Status Fill(const image::ShmObject& o, int pages_fd, Live* live);
  Status MakeSysv(const image::ShmObject& o, int pages_fd, Live* live, std::vector<std::string>* warnings);
  const Live* Find(uint64_t id) const;
  std::map<uint64_t, Live> objects_;
  bool finished_ = false;
};

// The objects of the restore in progress, for the fd kinds (set by the fd pool).
const ShmObjects* RestoringShmObjects();
void SetRestoringShmObjects(const ShmObjects* objects);

}  // namespace cryo
