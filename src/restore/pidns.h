// cryo restore --pidns new: the tree is restored into a fresh PID namespace
// (and a fresh mount namespace with its own /proc), with the image's pids
// inside it, so that copies of an image run beside the original and beside
// each other.
//
// cryo forks the namespace's pid 1 (unshare(CLONE_NEWPID) + fork(2)), which
// runs the whole restore from inside, exactly as a plain restore runs in cryo
// (clone3 set_tid with one level sets the pid in the innermost namespace,
// clone3(2)), and then stays as the namespace's init: it reaps orphans,
// forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the
// restored root, and exits with the root's status (128+N for a signal N, since
// an init cannot die by a signal it sends itself: pid_namespaces(7)). When the
// init exits, the kernel kills whatever is left in the namespace; until the
// restore is complete the init dies with cryo (PR_SET_PDEATHSIG), so a failed
// or interrupted restore leaves nothing behind.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/status.h"
#include "image/image_dir.h"
#include "restore/restore.h"
#include "tree/restore_plan.h"

namespace cryo {

struct PidnsRestored {
  pid_t init = 0;       // host pid of the namespace's init (pid 1 inside)
  pid_t root = 0;       // the restored root's pid inside the namespace (the image's)
  pid_t root_host = 0;  // the same process's pid in cryo's namespace
  // Readable once the init has exited: the root's wait status (int), if the
  // root exited before the init did.
  int exit_fd = -1;
  // --lazy: the init serves the pages; readable (ReadLazyOutcome) once
  // every page is in or the serving failed.
  int lazy_fd = -1;
};

// --lazy: waits for the init's word on the pages (closes `lazy_fd`): Ok and
// the server's report, or why the tree was killed.
Status ReadLazyOutcome(int lazy_fd, std::string* report);


// A PID namespace's pid 1 once its tree runs (after ForwardSignalsTo(root)):
// holds nothing of cryo's (stdio on /dev/null, every other fd closed but
// `exit_fd`), reaps every child, and when `root` ends writes its wait status
// to `exit_fd` (if >= 0) and exits with it (the kernel then kills the rest of
// the namespace: pid_namespaces(7)). Used by `cryo run` too.
[[noreturn]] void RunNamespaceInit(pid_t root, int exit_fd);

// Restores opts.images_dir into a new PID namespace (opts.new_pidns is set).
// On success the init and the tree run, the init a child of cryo.
Result<PidnsRestored> RestoreInNewPidns(RestoreOptions opts);

// What a tree restored into a new PID namespace could not find there (pid 1
// is the init; sessions and groups led from outside; /proc/PID of processes
// outside), by name. Called by Restore() once the plan is made.
Status CheckPidnsFit(const image::LoadedImage& img, const RestorePlan& plan, bool shell_job);

// Why an image whose restore needs the janitor (base/janitor.h) is refused
// with --pidns new: the janitor would die with the namespace.
Status PidnsJanitorRefusal(const image::LoadedImage& img);

}  // namespace cryo
