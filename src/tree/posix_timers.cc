// POSIX timers. What /proc/PID/timers shows (id, signal, sigev_value, notify
// mode and target, clock) plus timer_gettime(2) run in the target is enough to
// recreate a timer. The sigev_value is the pointer after the slash of the
// "signal:" line (the kernel prints si_value.sival_ptr with %px).
//
// What cannot be exact:
//  - the overrun count of the last expiry (timer_getoverrun(2)) is dumped but
//    cannot be set: the restored timer starts with 0 overruns;
//  - the time left is re-armed as a relative time, so the time between dump
//    and restore is not counted, also for timers armed with TIMER_ABSTIME (the
//    flag is not visible);
//  - a signal of an expiry that was pending at the dump is restored with the
//    other pending signals (with its siginfo), but it is no longer tied to the
//    timer: the kernel does not count overruns into it;
//  - timers that notify a thread other than the leader (SIGEV_THREAD_ID, as
//    glibc's SIGEV_THREAD timers do) are refused at dump: the restore helper
//    creates timers before the other threads exist;
//  - the id the next timer_create(2) returns is not preserved.
#include "tree/posix_timers.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "base/file_util.h"
#include "base/kernel_features.h"
#include "base/parse_number.h"

namespace cryo {

namespace {

constexpr int kPrTimerCreateRestoreIds = 77;  // PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15)
constexpr int kRestoreIdsOff = 0, kRestoreIdsOn = 1;
constexpr uint64_t kNsPerSec = 1000000000ull;
#ifndef SIGEV_THREAD_ID
constexpr int SIGEV_THREAD_ID = 4;
#endif

// struct sigevent as the kernel reads it (x86_64: 64 bytes).
struct KernelSigevent {
  uint64_t value;
  int32_t signo;
  int32_t notify;
  int32_t tid;
  int32_t pad[11];
};
static_assert(sizeof(KernelSigevent) == 64);

struct KernelItimerspec {
  int64_t interval_sec, interval_nsec, value_sec, value_nsec;
};

Status CheckRemote(long r, pid_t pid, const std::string& what) {
  if (r < 0 && r > -4096) return Status::Errno(static_cast<int>(-r), "remote " + what + " in pid " + std::to_string(pid));
  return Status::Ok();
}

// "signal/pid.42", "none/pid.42", "signal/tid.43", "thread/pid.42".
bool ParseNotify(std::string_view v, ProcTimer* t) {
  const size_t slash = v.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view mode = v.substr(0, slash), target = v.substr(slash + 1);
  if (mode == "signal") t->sigev_notify = SIGEV_SIGNAL;
  else if (mode == "none") t->sigev_notify = SIGEV_NONE;
  else if (mode == "thread") t->sigev_notify = SIGEV_THREAD;
  else return false;
  if (StartsWith(target, "tid.")) t->sigev_notify |= SIGEV_THREAD_ID;
  else if (!StartsWith(target, "pid.")) return false;
  return ParseNumber(target.substr(4), &t->notify_pid);
}

}  // namespace

Result<std::vector<ProcTimer>> ParseProcTimers(std::string_view text) {
  std::vector<ProcTimer> out;
  // A bitmask of the fields seen for the current entry.
  int seen = 0;
  auto finish = [&]() -> Status {
    if (seen != 0 && seen != 15)
      return Status::Error("/proc timers entry for id " + std::to_string(out.back().id) + " is incomplete");
    return Status::Ok();
  };
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return Status::Error("malformed /proc timers line \"" + std::string(line) + "\"");
    std::string_view key = Trim(line.substr(0, colon)), val = Trim(line.substr(colon + 1));
    bool ok = true;
    if (key == "ID") {
      CRYO_RETURN_IF_ERROR(finish());
      out.emplace_back();
      seen = 1;
      ok = ParseNumber(val, &out.back().id);
    } else if (out.empty()) {
      ok = false;
    } else if (key == "signal") {
      const size_t slash = val.find('/');
      ok = slash != std::string_view::npos && ParseNumber(val.substr(0, slash), &out.back().signo) &&
           ParseNumber(val.substr(slash + 1), &out.back().sigev_value, 16);
      seen |= 2;
    } else if (key == "notify") {
      ok = ParseNotify(val, &out.back());
      seen |= 4;
    } else if (key == "ClockID") {
      ok = ParseNumber(val, &out.back().clockid);
      seen |= 8;
    }
    if (!ok) return Status::Error("malformed /proc timers line \"" + std::string(line) + "\"");
  }
  CRYO_RETURN_IF_ERROR(finish());
  std::sort(out.begin(), out.end(), [](const ProcTimer& a, const ProcTimer& b) { return a.id < b.id; });
  return out;
}

bool TimerIdsCanBeChosen() {
  constexpr int kGet = 2;  // PR_TIMER_CREATE_RESTORE_IDS_GET: changes nothing
  return !PretendMissing("timer-restore-ids") && ::prctl(kPrTimerCreateRestoreIds, kGet, 0, 0, 0) >= 0;
}

Status CheckTimerIdsWithoutChoice(pid_t pid, const std::vector<ProcTimer>& timers) {
  std::string ids;
  bool sequential = true;
  for (size_t i = 0; i < timers.size(); ++i) {
    sequential = sequential && timers[i].id == static_cast<int>(i);
    ids += (i ? ", " : "") + std::to_string(timers[i].id);
  }
  if (sequential) return Status::Ok();
  return Status::Error("pid " + std::to_string(pid) + " has POSIX timers with ids " + ids +
                       ": a restored process gets the ids 0, 1, ... in order, and this kernel lacks "
                       "PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15+) to choose them");
}

Status DumpPosixTimers(pid_t pid, RemoteSyscaller& rs, image::ProcessCore* core) {
  const std::string path = "/proc/" + std::to_string(pid) + "/timers";
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto parsed = ParseProcTimers(text);
  if (!parsed.ok()) return parsed.status().Prefixed(path);
  if (!parsed->empty() && !TimerIdsCanBeChosen()) CRYO_RETURN_IF_ERROR(CheckTimerIdsWithoutChoice(pid, *parsed));
  for (const ProcTimer& t : *parsed) {
    const std::string what = "POSIX timer " + std::to_string(t.id);
    if ((t.sigev_notify & SIGEV_THREAD_ID) && t.notify_pid != pid)
      return Status::Error(what + " of pid " + std::to_string(pid) + " signals thread " + std::to_string(t.notify_pid) +
                           " (SIGEV_THREAD_ID, as glibc's SIGEV_THREAD timers do); timers that notify a thread other "
                           "than the main one are not supported yet");
    CRYO_ASSIGN_OR_RETURN(long r, rs.Syscall(SYS_timer_gettime, static_cast<uint64_t>(t.id), rs.scratch()));
    CRYO_RETURN_IF_ERROR(CheckRemote(r, pid, "timer_gettime of " + what));
    KernelItimerspec its;
    CRYO_RETURN_IF_ERROR(rs.ReadMem(rs.scratch(), &its, sizeof(its)));
    CRYO_ASSIGN_OR_RETURN(long overrun, rs.Syscall(SYS_timer_getoverrun, static_cast<uint64_t>(t.id)));
    CRYO_RETURN_IF_ERROR(CheckRemote(overrun, pid, "timer_getoverrun of " + what));
    image::PosixTimer* p = core->add_posix_timers();
    p->set_id(t.id);
    p->set_clockid(t.clockid);
    p->set_sigev_notify(t.sigev_notify);
    p->set_sigev_signo(t.signo);
    p->set_sigev_value(t.sigev_value);
    if (t.sigev_notify & SIGEV_THREAD_ID) p->set_notify_tid(t.notify_pid);
    p->set_interval_ns(static_cast<uint64_t>(its.interval_sec) * kNsPerSec + static_cast<uint64_t>(its.interval_nsec));
    p->set_value_ns(static_cast<uint64_t>(its.value_sec) * kNsPerSec + static_cast<uint64_t>(its.value_nsec));
    p->set_overrun(static_cast<int32_t>(overrun));
  }
  return Status::Ok();
}

Status RestorePosixTimers(const image::ProcessCore& core) {
  if (core.posix_timers_size() == 0) return Status::Ok();
  std::vector<const image::PosixTimer*> timers;
  sigset_t block;
  sigemptyset(&block);
  for (const image::PosixTimer& t : core.posix_timers()) {
    timers.push_back(&t);
    if (t.sigev_notify() != SIGEV_NONE && t.sigev_signo() >= 1 && t.sigev_signo() <= 64) sigaddset(&block, t.sigev_signo());
  }
  std::sort(timers.begin(), timers.end(), [](auto* a, auto* b) { return a->id() < b->id(); });
  if (::sigprocmask(SIG_BLOCK, &block, nullptr) != 0) return Status::FromErrno("blocking the POSIX timers' signals");

  // With the mode on, timer_create(2) takes the id to use from *timerid. A
  // kernel without it allocates ids from 0 up in this new process: enough when
  // the ids are 0..n-1.
  const bool choose_ids =
      !PretendMissing("timer-restore-ids") && ::prctl(kPrTimerCreateRestoreIds, kRestoreIdsOn, 0, 0, 0) == 0;
  if (!choose_ids)
    for (size_t i = 0; i < timers.size(); ++i)
      if (timers[i]->id() != static_cast<int>(i))
        return Status::Error("POSIX timer " + std::to_string(timers[i]->id()) +
                             " cannot get its id back: this kernel lacks PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15+)");
  Status st;
  for (const image::PosixTimer* t : timers) {
    const std::string what = "POSIX timer " + std::to_string(t->id());
    KernelSigevent ev{};
    ev.value = t->sigev_value();
    ev.signo = t->sigev_signo();
    ev.notify = t->sigev_notify();
    if (t->sigev_notify() & SIGEV_THREAD_ID) ev.tid = t->notify_tid();
    int id = t->id();
    if (::syscall(SYS_timer_create, t->clockid(), &ev, &id) != 0) {
      st = Status::FromErrno("timer_create of " + what + " (clock " + std::to_string(t->clockid()) + ")");
      break;
    }
    if (id != t->id()) {
      st = Status::Error(what + " was created with id " + std::to_string(id));
      break;
    }
  }
  if (choose_ids && ::prctl(kPrTimerCreateRestoreIds, kRestoreIdsOff, 0, 0, 0) != 0 && st.ok())
    st = Status::FromErrno("PR_TIMER_CREATE_RESTORE_IDS off");
  CRYO_RETURN_IF_ERROR(st);

  for (const image::PosixTimer* t : timers) {
    if (t->value_ns() == 0 && t->interval_ns() == 0) continue;  // disarmed
    // A periodic timer always has time left; 0 would disarm it: expire at once.
    const uint64_t value = t->value_ns() ? t->value_ns() : 1;
    KernelItimerspec its = {static_cast<int64_t>(t->interval_ns() / kNsPerSec),
                            static_cast<int64_t>(t->interval_ns() % kNsPerSec), static_cast<int64_t>(value / kNsPerSec),
                            static_cast<int64_t>(value % kNsPerSec)};
    if (::syscall(SYS_timer_settime, t->id(), 0, &its, nullptr) != 0)
      return Status::FromErrno("timer_settime of POSIX timer " + std::to_string(t->id()));
  }
  return Status::Ok();
}

}  // namespace cryo
