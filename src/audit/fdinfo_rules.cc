// Fds: every /proc/PID/fdinfo/N line (proc(5), "/proc/pid/fdinfo"), by the
// kind the dump identified the fd as; the common lines for every kind, the
// kind's own lines only for it. Plus what fdinfo does not show: the owner and
// signal of signal-driven I/O (fcntl F_GETOWN_EX, F_GETSIG on a duplicate).
// The fd kinds themselves are classified by the dump's handlers
// (files/fd_kinds.cc), which refuse the kinds they do not know.
#include <fcntl.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "audit/classify.h"
#include "base/file_util.h"

namespace cryo::audit {

namespace {

constexpr Verdict R = Verdict::kRestored;
constexpr Verdict N = Verdict::kNotState;
constexpr Verdict X = Verdict::kRefused;

// The bits an open file's flags may have, and what becomes of them.
struct FlagBit {
  uint32_t bit;
  Verdict verdict;
  const char* what;
};
constexpr FlagBit kFlagBits[] = {
    {O_WRONLY | O_RDWR, R, "access mode"},
    {O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC, N, "open-time flags"},
    {O_APPEND, R, "O_APPEND"},
    {O_NONBLOCK, R, "O_NONBLOCK"},
    {O_DSYNC, R, "O_DSYNC"},
    {O_ASYNC, R, "signal-driven I/O (registered again: files/fd_owner.cc)"},
    {O_DIRECT, R, "O_DIRECT"},
    {0100000, R, "O_LARGEFILE"},  // the kernel's value (glibc defines O_LARGEFILE as 0 on 64-bit)
    {O_DIRECTORY, R, "O_DIRECTORY"},
    {O_NOFOLLOW, R, "O_NOFOLLOW"},
    {O_NOATIME, R, "O_NOATIME"},
    {O_CLOEXEC, R, "close-on-exec (F_SETFD)"},
    {O_SYNC & ~O_DSYNC, R, "O_SYNC"},
    {O_PATH, R, "O_PATH"},
    {O_TMPFILE & ~O_DIRECTORY, R, "O_TMPFILE"},
};

Decision Flags(const Line& l) {
  uint32_t flags = static_cast<uint32_t>(std::strtoul(std::string(l.value).c_str(), nullptr, 8));
  for (const FlagBit& b : kFlagBits) {
    if (!(flags & b.bit)) continue;
    if (b.verdict == X) return {X, b.what};
    flags &= ~b.bit;
  }
  if (flags) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "0%o", flags);
    return {X, std::string("has open-file flags cryo does not know (") + buf + ")"};
  }
  return {R, "open-file flags (reopened or set again by the fd's kind)"};
}

constexpr Rule kCommon[] = {
    {"pos", R, "the file offset (lseek)"},
    {"flags", N, "", Flags},
    {"mnt_id", N, "the mount it was opened on (files are reopened by path)"},
    {"ino", N, "the inode (the identity of the open file)"},
    // Dumped and taken back by files/file_locks.cc, which refuses what it cannot
    // restore (an unknown kind, a description shared outside the tree, ...).
    {"lock", R, "a file lock or lease (file_locks.cc)"},
};

struct KindRules {
  image::FdKind kind;
  std::span<const Rule> rules;
};

constexpr Rule kEventfd[] = {
    {"eventfd-count", R, "the counter (eventfd.cc)"},
    {"eventfd-id", N, "an id the kernel numbers eventfds with"},
    {"eventfd-semaphore", R, "EFD_SEMAPHORE (eventfd.cc)"},
};
constexpr Rule kTimerfd[] = {
    {"clockid", R, "timerfd.cc"},
    {"ticks", R, "expirations not read yet (timerfd.cc)"},
    {"settime flags", R, "timerfd.cc"},
    {"it_value", R, "timerfd.cc"},
    {"it_interval", R, "timerfd.cc"},
};
constexpr Rule kSignalfd[] = {{"sigmask", R, "signalfd.cc"}};
constexpr Rule kEpoll[] = {{"tfd", R, "a registered fd (epoll.cc)"}};
constexpr Rule kInotify[] = {{"inotify wd", R, "a watch (inotify.cc)"}};
constexpr Rule kPidfd[] = {
    {"Pid", R, "the process, opened again once the tree exists (pidfd.cc)"},
    {"NSpid", N, "the same process in nested PID namespaces (the tree's pid is Pid)"},
};
constexpr Rule kTty[] = {{"tty-index", R, "the pty number (tty_restore.cc; another number with a warning if taken)"}};

Decision ScmFds(const Line& l) {
  if (l.value == "0") return {N, "no fd in flight"};
  return {X, "has " + std::string(l.value) + " file descriptors in flight (SCM_RIGHTS), which are not restored"};
}
constexpr Rule kUnixSocket[] = {{"scm_fds", N, "", ScmFds}};

constexpr KindRules kKinds[] = {
    {image::FD_EVENTFD, kEventfd}, {image::FD_TIMERFD, kTimerfd},   {image::FD_SIGNALFD, kSignalfd},
    {image::FD_EPOLL, kEpoll},     {image::FD_INOTIFY, kInotify},   {image::FD_TTY, kTty},
    {image::FD_EXTERNAL_TTY, kTty}, {image::FD_LISTEN_SOCKET, kUnixSocket},
    {image::FD_UNIX_SOCKET, kUnixSocket}, {image::FD_PIDFD, kPidfd},
};

}  // namespace

void ClassifyFdInfo(image::FdKind kind, const proc::FdInfo& info, const std::string& subject, Report* report) {
  std::span<const Rule> own;
  for (const KindRules& k : kKinds)
    if (k.kind == kind) own = k.rules;
  for (const auto& [key, value] : info.fields) {
    Line line{key, value, nullptr, {}};
    if (FindRule(kCommon, key))
      ClassifyLine(kCommon, "fdinfo", subject, line, report);
    else
      ClassifyLine(own, "fdinfo", subject, line, report);
  }
}

void ClassifyFdOwner(const FdOwner& owner, const std::string& subject, Report* report) {
  // Dumped and set again by files/fd_owner.cc, which refuses an owner outside
  // the tree or a group the restore does not rebuild.
  report->Tally(subject, "fcntl", "F_GETOWN_EX", owner.pid == 0 ? N : R);
  report->Tally(subject, "fcntl", "F_GETSIG", owner.sig == 0 ? N : R);
}

}  // namespace cryo::audit
