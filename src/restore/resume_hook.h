// `--before-resume CMD` (cryo page-server --restore): a command of the
// user's, run once the restored tree is complete and still stopped, before
// its TCP connections leave repair mode and it runs. What it is for: moving
// the address a migrated tree's connections use to this host (a floating
// IP, net/tcp_migrate.h), or anything else that must happen between "the
// tree exists here" and "the tree runs". It runs as `/bin/sh -c CMD` with
// stdin /dev/null and cryo's stdout and stderr, with CRYO_RESTORE_PID set to
// the restored root's pid, in cryo's namespaces; bounded (60 s, then
// killed). A non-zero exit fails the restore (the tree is removed, nothing
// of it ran).
#pragma once

#include <sys/types.h>

#include <string>

#include "base/status.h"

namespace cryo {

// Ok at once when `cmd` is empty.
Status RunBeforeResume(const std::string& cmd, pid_t root, double timeout_s = 60);

}  // namespace cryo
