#include "dump/precopy.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <filesystem>
#include <memory>
#include <vector>

#include "base/clock.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "base/sentinel.h"
#include "base/size_format.h"
#include "image/format.h"
#include "image/parent_chain.h"
#include "mem/dirty_tracker.h"
#include "mem/incremental.h"
#include "proc/proc.h"

namespace cryo {

namespace {

namespace fs = std::filesystem;

constexpr double kMiB = 1024.0 * 1024.0;

struct Round {
  double start = 0, seconds = 0;
  uint64_t pages = 0;    // stored by the round
  uint64_t written = 0;  // written by the tree since the round before (dirty tracking)
  double frozen = 0;
  double copied = 0;  // pages read once the tree ran again (a round's copy)
};

// "pre-copy round 2: 1234 pages (4.8 MiB) in 35.1 ms, 137.0 MiB/s, dirty rate 10.2 MiB/s (1100 pages
// written), frozen 12.0 ms, copied 30.2 ms while the tree ran"
std::string RoundLine(const std::string& what, const Round& r, const Round* before) {
  const double mib = static_cast<double>(r.pages * image::kPageSize) / kMiB;
  char buf[320];
  std::snprintf(buf, sizeof buf, "%s: %" PRIu64 " pages (%s) in %.1f ms, %.1f MiB/s", what.c_str(), r.pages,
                FormatSize(r.pages * image::kPageSize).c_str(), r.seconds * 1e3,
                r.seconds > 0 ? mib / r.seconds : 0.0);
  std::string line = buf;
  if (before) {
    // Pages written between the protection of the round before and this
    // one's scan (the round stores them in whole runs: a little more), per
    // second the tree ran meanwhile (it was frozen for the round before's read).
    const double written_mib = static_cast<double>(r.written * image::kPageSize) / kMiB;
    const double ran = r.start - before->start - before->frozen;
    std::snprintf(buf, sizeof buf, ", dirty rate %.1f MiB/s (%" PRIu64 " pages written)",
                  written_mib / std::max(ran, 1e-3), r.written);
    line += buf;
  }
  std::snprintf(buf, sizeof buf, ", frozen %.1f ms", r.frozen * 1e3);
  line += buf;
  if (r.copied > 0) {
    std::snprintf(buf, sizeof buf, ", copied %.1f ms while the tree ran", r.copied * 1e3);
    line += buf;
  }
  return line;
}

// The rounds' directory, made by this pre-copy: removed whole on failure.
class RoundsDir {
 public:
  ~RoundsDir() {
    if (keep_) return;
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
    if (ec) LOG_WARN("removing the pre-copy rounds %s: %s", dir_.c_str(), ec.message().c_str());
    if (made_images_dir_) ::rmdir(images_dir_.c_str());  // only if nothing else is in it
  }
  Status Make(const std::string& images_dir) {
    images_dir_ = images_dir;
    if (::mkdir(images_dir.c_str(), 0700) == 0)
      made_images_dir_ = true;
    else if (errno != EEXIST)
      return Status::FromErrno("mkdir " + images_dir);
    const std::string dir = images_dir + "/" + kPreCopyDirName;
    if (::mkdir(dir.c_str(), 0700) != 0) {
      if (errno == EEXIST)
        return Status::Error(images_dir + " already holds pre-copy rounds (" + dir +
                             "): give a new or empty directory");
      return Status::FromErrno("mkdir " + dir);
    }
    dir_ = dir;
    return Status::Ok();
  }
  void Keep() { keep_ = true; }
  const std::string& dir() const { return dir_; }

 private:
  std::string images_dir_, dir_;
  bool made_images_dir_ = false, keep_ = false;
};

}  // namespace

Status PreCopyDump(const DumpOptions& opts, const PreCopyOptions& pc, DumpStats* stats) {
  if (!opts.parent_dir.empty())
    return Status::Error("--pre-copy makes its own chain of images: it does not take --parent");
  if (opts.track_mem && !opts.leave_running)
    return Status::Error("--track-mem needs --leave-running: the tracking is for later dumps of a tree that runs on");
  if (pc.max_rounds < 1) return Status::Error("--pre-copy-rounds must be at least 1");
  if (pc.max_rounds + 1 > static_cast<int>(image::kMaxParentDepth))
    return Status::Error("--pre-copy-rounds may be at most " + std::to_string(image::kMaxParentDepth - 1));
  auto st = proc::ReadStat(opts.pid);
  if (!st.ok()) return st.status().Prefixed("pid " + std::to_string(opts.pid));
  const bool streamed = static_cast<bool>(pc.begin_round);
  RoundsDir rounds_dir;
  if (!streamed) CRYO_RETURN_IF_ERROR(rounds_dir.Make(opts.images_dir));
  // The tracker: the tree's own if it runs one (--track-mem earlier), a
  // lasting one for -R --track-mem, else one that ends with this pre-copy.
  // (Sessions to it are each round's: the tracker serves one client at a time.)
  std::unique_ptr<Sentinel> owned_tracker;
  {
    CRYO_ASSIGN_OR_RETURN(auto running, DirtyTracking::Find(opts.pid, st->starttime));
    if (!running && opts.track_mem && opts.leave_running) {
      CRYO_ASSIGN_OR_RETURN(running, DirtyTracking::Start(opts.pid, st->starttime));
    } else if (!running) {
      CRYO_ASSIGN_OR_RETURN(owned_tracker, DirtyTracking::StartOwned(opts.pid, st->starttime));
    }
  }
  auto say = [&pc](const std::string& line) {
    if (pc.report) pc.report(line);
  };

  std::vector<Round> rounds;
  // Each round is the next one's parent, kept in memory (ParentForDump);
  // the chain's links are relative: DIR/pre-copy/N names "../N-1", DIR names
  // "pre-copy/N" (the page server lays a streamed pre-copy out the same way).
  std::unique_ptr<ParentForDump> parent;
  for (int k = 0; k < pc.max_rounds; ++k) {
    CRYO_RETURN_IF_ERROR(CheckInterrupt());
    if (streamed) CRYO_RETURN_IF_ERROR(pc.begin_round(k));
    DumpOptions r = opts;
    r.leave_running = true;
    r.track_mem = true;
    r.live_copy = true;  // frozen only to arm the tracking; pages read as it runs (dump/precopy_live.h)
    r.images_dir = (streamed ? opts.images_dir : rounds_dir.dir()) + "/" + std::to_string(k);
    if (parent) parent->link.set_dir("../" + std::to_string(k - 1));
    r.parent = parent.get();
    auto next = std::make_unique<ParentForDump>();
    r.as_parent = next.get();
    Round round;
    round.start = Now();
    DumpStats rs;
    Status s = Dump(r, &rs);
    if (!s.ok()) return s.Prefixed("pre-copy round " + std::to_string(k));
    parent = std::move(next);
    round.seconds = Now() - round.start;
    round.pages = rs.stored_pages;
    round.written = rs.written_pages;
    round.frozen = rs.frozen_seconds;
    round.copied = rs.copy_seconds;
    say(RoundLine("pre-copy round " + std::to_string(k), round, rounds.empty() ? nullptr : &rounds.back()));
    const bool small = round.pages <= pc.small_pages;
    const bool flat = !rounds.empty() && round.pages > pc.shrink * static_cast<double>(rounds.back().pages);
    rounds.push_back(round);
    if (k > 0 && (small || flat)) {
      LOG_INFO("pre-copy: %s after round %d", small ? "the dirty set is small" : "the dirty set stopped shrinking", k);
      break;
    }
  }
  CRYO_RETURN_IF_ERROR(CheckInterrupt());
  DumpOptions f = opts;
  parent->link.set_dir(std::string(kPreCopyDirName) + "/" + std::to_string(rounds.size() - 1));
  f.parent = parent.get();
  Round final_round;
  final_round.start = Now();
  DumpStats fs_stats;
  Status s = Dump(f, &fs_stats);
  if (!s.ok()) return s.Prefixed("pre-copy final dump");
  rounds_dir.Keep();
  final_round.seconds = Now() - final_round.start;
  final_round.pages = fs_stats.stored_pages;
  final_round.written = fs_stats.written_pages;
  final_round.frozen = fs_stats.frozen_seconds;
  final_round.copied = fs_stats.copy_seconds;
  say(RoundLine("pre-copy final round (" + std::to_string(rounds.size()) + " round(s) before it)", final_round,
                &rounds.back()));
  if (stats) *stats = fs_stats;
  return Status::Ok();
}

}  // namespace cryo
