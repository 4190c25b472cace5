// The restore pipeline: read + validate the image -> fork the process with its
// original PID -> rebuild fds, credentials and settings -> the restorer blob
// rebuilds the address space -> cryo sets the registers and releases it.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "mem/remote_pages.h"

namespace cryo {

struct RestoreOptions {
  std::string images_dir;
  bool detach = false;
  std::string pidfile;
  bool shell_job = false;  // the image's terminals become cryo's terminal
  // --cgroup-root: "PATH" or "HIERARCHY:PATH", where to place the tree's
  // cgroups instead of below cryo's own (cgroup_restore.h).
  std::vector<std::string> cgroup_roots;
  // Files changed since the dump (files/changed_files.h): refused unless
  // allowed, each (--allow-changed PATH) or all (--ignore-changed-files).
  bool ignore_changed_files = false;
  std::vector<std::string> allow_changed;
  // --pidns new: Restore() runs as pid 1 of a new PID namespace
  // (restore/pidns.h), which refuses what the tree could not find there.
  bool new_pidns = false;
  // --tcp-close: TCP connections come back reset by their peer instead of
  // established (net/tcp_socket.cc, ResetConnection).
  bool tcp_close = false;
  // --no-restore-files: the files the image carries (--snapshot-path) are not
  // put back; they are checked like every other file the tree refers to.
  bool no_restore_files = false;
  // --join-ns KIND:PATH: existing namespaces the tree is made in (ns/join_ns.h).
  std::vector<std::string> join_ns;
  // --veth-peer-ns PATH: the network namespace the outside ends of the tree's
  // veth pairs are made in ("": where they were at the dump).
  std::string veth_peer_ns;
  // --lazy: private anonymous pages come on first touch, and from a
  // background prefetch, once the tree runs (mem/lazy_server.h).
  bool lazy = false;
  // page-server --restore (a migration, net/tcp_migrate.h): the source holds
  // the image's network lock until this restore is done; the lock is made
  // here too, and connections may be bound to an address not here yet.
  bool lock_held_by_source = false;
  // --before-resume CMD: run (sh -c) once the tree is made, before its
  // connections leave repair mode and it runs (restore/resume_hook.h).
  std::string before_resume;
  // Post-copy migration (cryo page-server --restore, feature "remote-pages"):
  // where the page runs marked remote come from; committed (Commit) just
  // before the tree is released. Not owned.
  RemotePageSource* remote = nullptr;
  // --pidns new with a PID namespace owned by the tree's user namespace:
  // Restore() runs beside the namespace's pid 1, which takes the root when
  // it is done (restore/pidns_userns.h).
  bool root_handed_to_init = false;
};

class LazyServer;

// Restores the image. On success returns the restored root pid, running (cryo
// is its parent). On failure no restored process is left behind.
// With opts.lazy, `lazy` receives the server that still fills the tree's
// memory (the caller waits for it; destroying it early kills the tree).
Result<pid_t> Restore(const RestoreOptions& opts, std::unique_ptr<LazyServer>* lazy = nullptr);

}  // namespace cryo
