// The terminals of a dumped tree as shared objects (ttys.img).
//
// A pseudoterminal whose master is held in the tree belongs to the tree (a
// terminal emulator, `script`, tmux, sshd with its shell): its settings,
// window size, lock and packet mode, the session it controls, its foreground
// group and the bytes queued in both directions are recorded once, and every
// fd names it by id. A pty whose master is outside the tree is the terminal
// of whoever started it: refused, or with --shell-job recorded as the calling
// shell's terminal (restored as the terminal of `cryo restore`).
//
// Also fills each process's controlling terminal (ProcessCore.ctty).
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

struct TtyProcess {
  pid_t pid;
  image::ProcessCore* core;
  image::FdTable* fds;
};

// Runs once every fd table is dumped, while the tree is frozen. The queued
// bytes are read out and put back at once, so the tree keeps them whatever
// happens to the dump.
// With `ext_tty` (dump --ext-tty), a pty whose master is outside the tree and
// that is no process's controlling terminal there is recorded as TTY_OUTSIDE:
// opened again by its path at restore, while it is still that pty.
Status DumpTtys(const std::vector<TtyProcess>& procs, bool shell_job, image::TtyTable* out,
                std::set<std::string>* features, bool ext_tty = false);

}  // namespace cryo
