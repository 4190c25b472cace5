#include "files/file_sharing.h"

#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <map>
#include <tuple>

namespace cryo {

namespace {

struct Description {
  pid_t pid;
  int fd;
  uint64_t id;
};

}  // namespace

Status AssignFileIds(const std::vector<ProcessFds>& tables) {
  // Only fds on the same file can share a description: compare within groups.
  std::map<std::tuple<int, uint64_t, uint64_t>, std::vector<Description>> groups;
  uint64_t next_id = 1;
  for (const ProcessFds& t : tables) {
    for (image::Fd& f : *t.table->mutable_fds()) {
      auto& reps = groups[{f.kind(), f.file().dev(), f.file().ino()}];
      uint64_t id = 0;
      for (const Description& d : reps) {
        long r = syscall(SYS_kcmp, t.pid, d.pid, KCMP_FILE, f.fd(), d.fd);
        if (r < 0)
          return Status::FromErrno("kcmp of pid " + std::to_string(t.pid) + " fd " + std::to_string(f.fd()) +
                                   " with pid " + std::to_string(d.pid) + " fd " + std::to_string(d.fd));
        if (r == 0) {
          id = d.id;
          break;
        }
      }
      if (!id) {
        id = next_id++;
        reps.push_back({t.pid, f.fd(), id});
      }
      f.set_file_id(id);
    }
  }
  return Status::Ok();
}

}  // namespace cryo
