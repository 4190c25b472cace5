// The dump pipeline: seize -> collect -> write image -> fsync -> kill | resume.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "image/page_frames.h"

namespace cryo {

struct ParentForDump;

struct DumpOptions {
  pid_t pid = 0;
  std::string images_dir;
  bool leave_running = false;
  bool show_progress = false;
  bool shell_job = false;  // terminals belong to the calling shell (not dumped)
  bool ext_unix_sk = false;  // UNIX sockets with a peer outside the tree: datagram reconnected by name, stream closed
  bool ext_tty = false;  // a pty whose master is outside the tree and that controls no process of it: reopened by path
  // UDP receive queues dumped as peeked when the kernel's count (a BPF iterator) is unavailable: an empty
  // datagram the program already peeked at would be lost.
  bool udp_queue_unverified = false;
  // fsync the image (files and directory) before the kill, or in leave-running
  // mode once the tree runs again. Off (--no-sync): a crash or power loss
  // before the kernel writes the image back loses it (in kill mode, with the
  // process).
  bool sync = true;
  // `--parent DIR`: an incremental dump against that earlier --leave-running
  // image of the same tree (mem/incremental.h).
  std::string parent_dir;
  // --snapshot-path (repeatable) and --snapshot-open-files: files whose content
  // the image carries, put back by the restore (files/snapshot_dump.h).
  std::vector<std::string> snapshot_paths;
  bool snapshot_open_files = false;
  // --fs-root DIR: the whole directory tree under DIR (an overlay's upper
  // dir if DIR is an overlay mount), put back by the restore (files/fs_root.h).
  std::string fs_root;
  // `--track-mem` (leave-running): the tree's memory is write-protected after
  // the dump so that a later --parent dump reads only the pages written since
  // (mem/dirty_tracker.h). Once a tracker runs for the tree, every
  // leave-running dump of it keeps it up to date.
  bool track_mem = false;
  // Leave-running: the private anonymous memory of a big process is copied
  // after the tree runs again, copy-on-write (mem/cow_copy.h); false
  // (--no-cow): during the freeze.
  bool cow = true;
  // Pre-copy (dump/precopy.h): the parent image as the dump before left it in
  // memory (instead of parent_dir: nothing is read back, which a streamed
  // round could not be), and where a complete dump leaves itself as the next
  // one's parent (its link's dir is the caller's to set).
  const ParentForDump* parent = nullptr;
  ParentForDump* as_parent = nullptr;
  // A pre-copy round (dump/precopy_live.h): the freeze reads the VMAs and
  // task state and arms the dirty tracking (track_mem), and the pages are
  // read once the tree runs again; runs the tracking does not vouch for are
  // stored, not compared. The image (feature "live-copied-pages") is a
  // parent only: restore refuses it.
  bool live_copy = false;
  // `--compress` with -D: the page files of the processes in compressed
  // frames (image/page_frames.h, feature "compressed-pages"); none by default.
  image::Compression compression;
  Env* env = Env::Default();
  // Post-copy migration (cryo migrate --lazy): the pages of the VMAs a lazy
  // restore fetches are not read (dump/postcopy_pages.h); once the image is
  // complete (acknowledged), `post_copy` serves them from the still-frozen
  // tree (pid -> [(vaddr, bytes)]: what may be asked for) until the target
  // has them all. Before the tree may run there it calls `commit` (which
  // makes the tree die with cryo: PTRACE_O_EXITKILL) and sets *committed.
  // An error with *committed false: the tree is detached as it was (it keeps
  // running); with *committed true (or Ok): it is killed.
  using RemoteRunMap = std::map<pid_t, std::vector<std::pair<uint64_t, uint64_t>>>;
  std::function<Status(const RemoteRunMap&, const std::function<Status()>& commit, bool* committed)> post_copy;
};

// What a dump that succeeded reports.
struct DumpStats {
  double frozen_seconds = 0;  // from the seize to the kill, or to the resume
  double copy_seconds = 0;    // pages copied once the tree ran again (copy-on-write, pre-copy round)
  size_t processes = 0;       // in the image, zombies included
  uint64_t stored_pages = 0;  // pages this image stores itself (not in its parent)
  uint64_t written_pages = 0;  // pages the dirty tracking saw written since the parent image
  std::string net_lock;       // kill mode: the lock table handed to the image ("": none)
  // A failed leave-running dump: its copy-on-write copy stopped because the
  // program unmapped or discarded memory not yet copied (mem/cow_copy.h);
  // the tree runs on, the image is removed, a dump with --no-cow can follow.
  bool cow_memory_changed = false;
};

// Checkpoints a process. On any failure the process is detached exactly as it
// was and keeps running; in kill mode it is killed only after the image is
// complete and fsynced. In leave-running mode the tree runs again as soon as
// everything has been read from it, before the image is synced; a failure (or
// an interrupt) after that leaves the tree alone and removes the image.
Status Dump(const DumpOptions& opts, DumpStats* stats = nullptr);

// `cryo check -t PID`: everything a dump does before it writes anything
// (seize, describe, audit, collect the task state), then the tree is let go.
// Prints the refusals and a summary (every item with `all`) to stdout; fails
// if anything is refused.
Status CheckTree(pid_t pid, bool shell_job, bool all, bool udp_queue_unverified = false);

}  // namespace cryo
