// /proc/locks (proc_locks(5)): every file lock and lease the kernel holds,
// with the pid of its owner ("-1" for OFD locks, which fdinfo shows). A lock
// held by a process of the tree that an fd's fdinfo shows is restored
// (files/file_locks.cc); one no fd shows (a flock held through a description
// that only a mapping keeps open) is refused. A process of the tree waiting
// for a lock is fine: its blocked fcntl or flock call is restarted after the
// restore.
#include <string>

#include "audit/classify.h"
#include "base/file_util.h"

namespace cryo::audit {

namespace {

constexpr std::string_view kKnownTypes[] = {"POSIX", "FLOCK", "OFDLCK", "LEASE", "DELEG"};

}  // namespace

std::string LockIdentity(std::string_view line) {
  // "12: POSIX  ADVISORY  WRITE 1234 fe:00:5 0 EOF" -> "POSIX ADVISORY WRITE 1234 fe:00:5 0 EOF"
  std::vector<std::string_view> w = SplitWords(line);
  std::string out;
  for (size_t i = 1; i < w.size(); ++i) out += (out.empty() ? "" : " ") + std::string(w[i]);
  return out;
}

void ClassifyLocks(std::string_view text, const std::set<pid_t>& tree, const std::set<std::string>& shown_by_fdinfo,
                   Report* report) {
  for (std::string_view line : SplitLines(text)) {
    std::vector<std::string_view> w = SplitWords(line);
    if (w.size() < 5) continue;
    const bool waiter = w[1] == "->";
    const size_t t = waiter ? 2 : 1;  // the type's word
    if (w.size() < t + 4) continue;
    const pid_t pid = static_cast<pid_t>(std::atol(std::string(w[t + 3]).c_str()));
    if (!tree.count(pid)) continue;
    const std::string subject = "pid " + std::to_string(pid);
    if (waiter) {
      report->Tally(subject, "locks", "waiting", Verdict::kRestored);
      continue;
    }
    bool known = false;
    for (std::string_view k : kKnownTypes) known |= w[t] == k;
    if (known && shown_by_fdinfo.count(LockIdentity(line))) {
      report->Tally(subject, "locks", "held (see fdinfo)", Verdict::kRestored);
      continue;
    }
    const std::string what = !known                              ? "a lock of a kind cryo does not know"
                             : w[t] == "LEASE" || w[t] == "DELEG" ? std::string("a lease")
                             : w[t] == "OFDLCK"                   ? std::string("an OFD lock")
                                                                  : "a " + std::string(w[t]) + " lock";
    report->Add(subject, "locks", std::string(w[t]), std::string(Trim(line)), Verdict::kRefused,
                "holds " + what + " on inode " + std::string(w.size() > t + 4 ? w[t + 4] : "?") + " (/proc/locks: " +
                    std::string(Trim(line)) + ") that no fd of the tree shows, which cannot be restored");
  }
}

}  // namespace cryo::audit
