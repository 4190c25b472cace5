// The first phase of a dump, everything before the first file is written:
// the tree seized, scoped, described and audited, its task state collected.
// A refusal here leaves the tree untouched (detached as it was) and no image
// directory. Used by Dump (dump.cc) and `cryo check -t` (CheckTree).
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "dump/inspect.h"
#include "files/fd_kind.h"
#include "files/shared_tables.h"
#include "files/snapshot_dump.h"
#include "mem/dirty_tracker.h"
#include "mem/incremental.h"
#include "mem/shm_dump.h"
#include "net/tcp_session.h"
#include "ns/netns.h"
#include "tree/tree_seize.h"

namespace cryo {

// Where the time of a dump goes, summed over the processes (debug log).
struct PhaseTimes {
  double proc = 0, fds = 0, remote = 0, task = 0, pages = 0;
};

struct DumpedProcess {
  image::ProcessCore core;
  image::Mm mm;
  image::FdTable fds;
  std::vector<ShmMapping> shm_maps;  // VMAs of memfds, /dev/shm files, SysV segments
  std::vector<int> unlinked_maps;    // VMAs of deleted files with no name left
};

// Everything before the first file is written: the tree seized, described
// and audited; the task state of every process collected, its remote-only
// attributes audited too. Refuses (detaching the tree untouched) if any
// item is refused.
struct Classified {
  // Destroyed last: cryo's main thread back in its own network namespace.
  ns::NetnsVisit netns_visit;
  SeizedTree tree;
  // After the tree: its connections leave repair mode before the tree runs.
  TcpDumpSession tcp;
  DumpScope scope;       // the tree's pids, threads and rebuilt groups
  TableSharing sharing;  // processes sharing an fd table or fs_struct with their parent
  Inspection inspection;
  std::vector<DumpedProcess> procs;
  image::TtyTable ttys;  // fds name them (tty_id) in inspection.facts
  image::NamespaceTable namespaces;  // the tree's own UTS and IPC namespaces
  std::set<std::string> features;
  PhaseTimes times;
  double seize_start = 0;  // the tree is frozen from here
  double seize_s = 0, audit_s = 0;
  std::string boot_id;
  std::unique_ptr<ParentForDump> parent;  // --parent: loaded before the tree is touched
  SnapshotPlan snapshot;  // --snapshot-path: walked before the tree is touched
  std::unique_ptr<DirtyTracking> tracking;  // the tree's memory tracker, if one runs (or --track-mem)
  std::map<pid_t, DirtyPages> dirty;        // what it knows since the parent image
};
// The image's record of a process that is a zombie (exited, not reaped).
image::ProcessCore ZombieCore(const ZombieInfo& z);

// Seizes the tree of `pid` and classifies all it holds (see Classified);
// `kill_mode` decides what a dump that kills the tree must refuse.
Status SeizeAndClassify(pid_t pid, bool shell_job, bool kill_mode, Classified* c);

}  // namespace cryo
