// The restore half of tty_table: the image's terminals, rebuilt by cryo in
// the fd pool before the tree is cloned, and the steps the restore helpers
// take so that each session gets its controlling terminal back.
//
// The kernel gives a controlling terminal to a session leader only (TIOCSCTTY
// after setsid, tty_ioctl(4)); every other process inherits its leader's at
// fork (signal->tty). So the leader takes its pty right after setsid and
// before it clones anything; a process whose image had no controlling
// terminal drops an inherited one (TIOCNOTTY); and once the process groups
// exist, one process of the foreground group makes it the foreground
// (TIOCSPGRP, with SIGTTOU blocked so that a background caller is not stopped).
//
// An fd opened as /dev/tty is such a description again when all its holders
// descend from the session leader: that helper opens /dev/tty once it has the
// terminal and puts it in the pool in place of the slave description cryo
// opened (which the others get otherwise: same terminal, other path).
//
// --shell-job: the shell's terminal is not rebuilt. Its fds become new
// descriptions of the terminal `cryo restore` runs on, the processes whose
// controlling terminal it was join cryo's session (a session leader too: it
// becomes a job of the restoring shell), and if the tree's group was in the
// foreground and cryo is, the tree's group takes the foreground, with the
// termios it had.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "image/image_dir.h"

namespace cryo {

class TtySet {
 public:
  // Creates every pty of the image (keeping its pts number when it is free),
  // with its settings and queued bytes. Its fds are numbered from `base` up.
  static Result<TtySet> Build(const image::LoadedImage& img, int base);

  // A new description for `fd` (FD_TTY or FD_EXTERNAL_TTY), any number.
  Result<int> Open(const image::Fd& fd);
  // The pool fd the description of `fd` ended up on.
  void NotePoolFd(const image::Fd& fd, int pool_fd);
  // Once every description is open: locks the ptys that were locked.
  Status Finish() const;
  // fds the pool keeps until the helpers are done with them.
  std::vector<int> fds() const;

  // In the helper of `core`, each returns Ok or a Status for the helper to fail with.
  // Whether `core` joins cryo's session instead of leading its own (--shell-job).
  bool JoinsShellSession(const image::ProcessCore& core) const;
  // Right after SessionPhase1, before any clone: the leader of a session
  // (`leads_session`: it called setsid) takes its pty; /dev/tty descriptions
  // are opened by the process that must.
  Status TakeControllingTty(pid_t pid, bool leads_session) const;
  // After the process cloned its children: drops a terminal it inherited but
  // did not have. Appends to `warnings` what cannot be made as it was.
  void CheckControllingTty(const image::ProcessCore& core, std::vector<std::string>* warnings) const;
  // Once the process is in its group (after SessionPhase2).
  Status SetForeground(const image::ProcessCore& core, std::vector<std::string>* warnings) const;

  // In cryo, just before the tree is released: a shell job whose new
  // terminal has another size than its old one gets SIGWINCH, as if the
  // window had been resized.
  void NotifyWindowChange() const;

 private:
  struct Pty {
    const image::Tty* rec = nullptr;
    int master = -1;
    int slave = -1;  // cryo's own description (O_NONBLOCK), for the ioctls
    uint32_t index = 0;
    bool master_used = false;
  };
  struct Foreground {
    int fd = -1;                           // the terminal to set it on
    const image::TtyTermios* termios = nullptr;  // --shell-job: the settings the job had
    std::string what;
  };
  struct DevTty {
    int flags = 0;
    pid_t opener = 0;  // the helper that opens /dev/tty for it
    int pool_fd = -1;
    int lock_master = -1;  // a locked pty: unlocked for that open (pty_open refuses it)
  };
  Status BuildPty(const image::Tty& t, int base, std::vector<int>* extras);
  void PlanDevTtys(const image::LoadedImage& img);
  Status OpenShellTerminal(int base);
  void PlanForeground(const image::LoadedImage& img);

  std::map<uint64_t, Pty> ptys_;                 // by Tty.id
  std::map<uint64_t, const image::Tty*> external_;
  std::map<uint64_t, const image::Tty*> outside_;  // dump --ext-tty: reopened by path
  std::map<pid_t, Foreground> foreground_;       // by the pid that sets it
  std::map<uint64_t, DevTty> dev_ttys_;          // by file id
  int shell_fd_ = -1;         // cryo's controlling terminal (--shell-job)
  std::string shell_path_;    // what its fds are reopened from
  bool shell_foreground_ = false;  // cryo's group is the foreground of shell_fd_
  pid_t winch_pgrp_ = 0;           // the job's group, if its window size changed
  bool may_inherit_ = true;        // a helper can have a controlling terminal at all
};

}  // namespace cryo
