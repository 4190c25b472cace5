#include "tree/task_restore.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "base/file_util.h"
#include "tree/posix_timers.h"
#include "tree/seccomp.h"

namespace cryo {

Status ApplyProcessSettings(const image::ProcessCore& core, std::vector<std::string>* warnings) {
  (void)warnings;
  ::umask(core.umask());
  // A deleted working directory is entered by the helper (fchdir to the
  // directory cryo created again, files/unlinked_restore.h).
  if (!core.cwd_unlinked() && ::chdir(core.cwd().c_str()) != 0) return Status::FromErrno("chdir to " + core.cwd());
  const image::TaskCore& t = core.threads(0);
  if (::prctl(PR_SET_NAME, t.comm().c_str(), 0, 0, 0) != 0) return Status::FromErrno("PR_SET_NAME");
  const int policy = static_cast<int>(t.sched_policy()) & ~SCHED_RESET_ON_FORK;
  // SCHED_DEADLINE needs sched_setattr, and a deadline task cannot clone its
  // threads: cryo sets it at the final stop (ApplyThreadAttrs).
  if (policy != SCHED_DEADLINE && (policy != SCHED_OTHER || (t.sched_policy() & SCHED_RESET_ON_FORK))) {
    struct sched_param sp = {static_cast<int>(t.sched_priority())};
    if (::sched_setscheduler(0, static_cast<int>(t.sched_policy()), &sp) != 0)
      return Status::FromErrno("sched_setscheduler policy " + std::to_string(policy));
  }
  if (::setpriority(PRIO_PROCESS, 0, t.nice()) != 0) return Status::FromErrno("setpriority " + std::to_string(t.nice()));
  if (t.timer_slack_ns() && ::prctl(PR_SET_TIMERSLACK, t.timer_slack_ns(), 0, 0, 0) != 0)
    return Status::FromErrno("PR_SET_TIMERSLACK");
  // Set either way: rebuilding a session may have made the helper a subreaper.
  if (::prctl(PR_SET_CHILD_SUBREAPER, core.child_subreaper() ? 1 : 0, 0, 0, 0) != 0)
    return Status::FromErrno("PR_SET_CHILD_SUBREAPER");
  CRYO_RETURN_IF_ERROR(RestorePosixTimers(core));
  return Status::Ok();
}

Status ApplyLateSettings(const image::ProcessCore& core, std::vector<std::string>* warnings, bool set_root) {
  // After the premap: a tight RLIMIT_AS or READ_IMPLIES_EXEC must not change how
  // the helper builds the image's memory.
  if (::personality(core.personality()) < 0) return Status::FromErrno("personality");
  for (const image::Rlimit& r : core.rlimits()) {
    struct rlimit rl = {r.soft(), r.hard()};
    if (::setrlimit(static_cast<int>(r.resource()), &rl) == 0) continue;
    if (errno != EPERM) return Status::FromErrno("setrlimit " + std::to_string(r.resource()));
    // Raising a hard limit needs CAP_SYS_RESOURCE: keep the current hard limit.
    struct rlimit cur;
    ::getrlimit(static_cast<int>(r.resource()), &cur);
    rl.rlim_max = cur.rlim_max;
    if (rl.rlim_cur > rl.rlim_max) rl.rlim_cur = rl.rlim_max;
    ::setrlimit(static_cast<int>(r.resource()), &rl);
    warnings->push_back("rlimit " + std::to_string(r.resource()) + " hard limit " + std::to_string(r.hard()) +
                        " cannot be raised without CAP_SYS_RESOURCE; kept " + std::to_string(cur.rlim_max));
  }

  if (set_root && !core.root().empty() && core.root() != "/") {
    if (::chroot(core.root().c_str()) != 0) return Status::FromErrno("chroot to " + core.root());
  }
  return Status::Ok();
}

Status CheckDumpableFlag(const image::ProcessCore& core) {
  const std::string who = "pid " + std::to_string(core.pid());
  if (core.zombie()) return Status::Ok();
  if (core.dumpable() < 0 || core.dumpable() > 2)
    return Status::Error(who + ": dumpable flag " + std::to_string(core.dumpable()) + " is invalid (corrupted)");
  if (core.dumpable() != 2) return Status::Ok();
  // 2 (SUID_DUMP_ROOT) can only come from fs.suid_dumpable (restorer.cc).
  auto sysctl = ReadFileToString("/proc/sys/fs/suid_dumpable");
  const std::string here = sysctl.ok() ? std::string(Trim(*sysctl)) : "unknown";
  if (here != "2")
    return Status::Error(who + " has dumpable flag 2 (fs.suid_dumpable), which this system (fs.suid_dumpable " + here +
                         ") would not give it; set the sysctl fs.suid_dumpable to 2 to restore it");
  return Status::Ok();
}

Status RestoreDumpableFlag(RemoteSyscaller& rs, const image::ProcessCore& core) {
  const std::string who = "pid " + std::to_string(core.pid());
  CRYO_ASSIGN_OR_RETURN(long now, rs.Syscall(SYS_prctl, PR_GET_DUMPABLE));
  if (now < 0) return Status::Errno(static_cast<int>(-now), "PR_GET_DUMPABLE in restored " + who);
  if (now == core.dumpable()) return Status::Ok();
  if (core.dumpable() == 2)
    return Status::Error(who + ": its dumpable flag came out " + std::to_string(now) + ", not 2 (fs.suid_dumpable)");
  CRYO_ASSIGN_OR_RETURN(long r, rs.Syscall(SYS_prctl, PR_SET_DUMPABLE, static_cast<uint64_t>(core.dumpable())));
  if (r != 0) return Status::Errno(static_cast<int>(-r), "PR_SET_DUMPABLE in restored " + who);
  return Status::Ok();
}

size_t PendingCount(const image::ProcessCore& core) {
  size_t n = static_cast<size_t>(core.shared_pending_size());
  for (const image::TaskCore& t : core.threads()) n += static_cast<size_t>(t.pending_size());
  return n;
}

namespace {

Status CopySiginfos(const google::protobuf::RepeatedPtrField<image::SigInfo>& q, uint8_t** out) {
  for (const image::SigInfo& si : q) {
    if (si.raw().size() != 128) return Status::Error("pending siginfo has the wrong size");
    std::memcpy(*out, si.raw().data(), 128);
    *out += 128;
  }
  return Status::Ok();
}

}  // namespace

Status FillTaskArgs(const image::ProcessCore& core, int exe_fd, restorer::Args* a, uint64_t stacks,
                    uint64_t thread_stack) {
  uint8_t* const base = reinterpret_cast<uint8_t*>(a);
  uint8_t* pending = base + a->pending_off;
  const image::TaskCore& t = core.threads(0);
  const image::MmFields& mm = core.mm();
  a->pid = core.pid();
  restorer::PrctlMmMap& m = a->mm_map;
  m.start_code = mm.start_code();
  m.end_code = mm.end_code();
  m.start_data = mm.start_data();
  m.end_data = mm.end_data();
  m.start_brk = mm.start_brk();
  m.brk = mm.brk();
  m.start_stack = mm.start_stack();
  m.arg_start = mm.arg_start();
  m.arg_end = mm.arg_end();
  m.env_start = mm.env_start();
  m.env_end = mm.env_end();
  if (mm.auxv_size() > restorer::kAuxvWords) return Status::Error("auxv of " + std::to_string(mm.auxv_size()) + " words is too long");
  for (int i = 0; i < mm.auxv_size(); ++i) a->auxv[i] = mm.auxv(i);
  m.auxv_size = static_cast<uint32_t>(mm.auxv_size() * sizeof(uint64_t));
  m.exe_fd = static_cast<uint32_t>(exe_fd);

  for (const image::SigAction& sa : core.actions()) {
    if (sa.sig() < 1 || sa.sig() > 64) return Status::Error("signal number " + std::to_string(sa.sig()) + " out of range");
    a->has_action[sa.sig()] = 1;
    a->actions[sa.sig()] = {sa.handler(), sa.flags(), sa.restorer(), sa.mask()};
  }
  a->altstack_sp = t.altstack_sp();
  a->altstack_size = t.altstack_size();
  a->altstack_flags = t.altstack_flags();
  for (const image::ITimer& it : core.itimers()) {
    if (it.which() > 2) return Status::Error("itimer " + std::to_string(it.which()) + " unknown");
    // An ITIMER_REAL that fired while its SIGALRM is still pending reads as
    // "0 left": the kernel re-arms it only when that signal is dequeued
    // (dequeue_signal()). Arm it to fire at once: the second SIGALRM merges
    // with the pending one and the re-arm on dequeue works as before.
    const uint64_t value = it.value_us() == 0 && it.interval_us() != 0 ? 1 : it.value_us();
    a->itimers[it.which()] = {1, it.interval_us(), value};
  }
  a->rseq_addr = t.rseq_addr();
  a->rseq_len = t.rseq_len();
  a->rseq_sig = t.rseq_sig();
  a->robust_list = t.robust_list();
  a->robust_list_len = t.robust_list_len();
  a->clear_child_tid = t.clear_child_tid();
  a->pdeath_sig = core.pdeath_sig();
  a->dumpable = core.dumpable();

  a->n_pending_private = static_cast<uint32_t>(t.pending_size());
  a->n_pending_shared = static_cast<uint32_t>(core.shared_pending_size());
  CRYO_RETURN_IF_ERROR(CopySiginfos(t.pending(), &pending));
  CRYO_RETURN_IF_ERROR(CopySiginfos(core.shared_pending(), &pending));

  a->n_threads = static_cast<uint32_t>(core.threads_size() - 1);
  auto* threads = reinterpret_cast<restorer::ThreadArg*>(base + a->threads_off);
  for (int i = 1; i < core.threads_size(); ++i) {
    const image::TaskCore& tc = core.threads(i);
    restorer::ThreadArg& ta = threads[i - 1];
    ta.tid = tc.tid();
    ta.stack = stacks + static_cast<uint64_t>(i - 1) * thread_stack;
    ta.stack_size = thread_stack;
    ta.robust_list = tc.robust_list();
    ta.robust_list_len = tc.robust_list_len();
    ta.clear_child_tid = tc.clear_child_tid();
    ta.rseq_addr = tc.rseq_addr();
    ta.rseq_len = tc.rseq_len();
    ta.rseq_sig = tc.rseq_sig();
    ta.altstack_sp = tc.altstack_sp();
    ta.altstack_size = tc.altstack_size();
    ta.altstack_flags = tc.altstack_flags();
    ta.timer_slack_ns = tc.timer_slack_ns();
    std::strncpy(ta.comm, tc.comm().c_str(), sizeof(ta.comm) - 1);
    ta.n_pending = static_cast<uint32_t>(tc.pending_size());
    ta.pending_off = static_cast<uint64_t>(pending - base);
    CRYO_RETURN_IF_ERROR(CopySiginfos(tc.pending(), &pending));
  }

  const uint64_t seccomp_off = (a->threads_off + a->n_threads * sizeof(restorer::ThreadArg) + 7) & ~7ull;
  CRYO_RETURN_IF_ERROR(FillSeccompArgs(core, a, seccomp_off));

  const image::Creds& c = core.creds();
  if (c.uid_size() != 4 || c.gid_size() != 4) return Status::Error("credentials record is incomplete");
  if (c.groups_size() > restorer::kMaxGroups) return Status::Error("more than 64 supplementary groups");
  a->restore_creds = 1;
  for (int i = 0; i < 4; ++i) {
    a->creds.uid[i] = c.uid(i);
    a->creds.gid[i] = c.gid(i);
  }
  a->creds.ngroups = static_cast<uint32_t>(c.groups_size());
  for (int i = 0; i < c.groups_size(); ++i) a->creds.groups[i] = c.groups(i);
  a->creds.cap_inh = c.cap_inh();
  a->creds.cap_prm = c.cap_prm();
  a->creds.cap_eff = c.cap_eff();
  a->creds.cap_bnd = c.cap_bnd();
  a->creds.cap_amb = c.cap_amb();
  a->creds.securebits = c.securebits();
  a->creds.no_new_privs = c.no_new_privs();
  auto last = ReadFileToString("/proc/sys/kernel/cap_last_cap");
  a->creds.last_cap = last.ok() ? static_cast<uint32_t>(std::stoul(*last)) : 40;
  return Status::Ok();
}

namespace {

// The highest capability number the kernel knows (40 in Linux 6.x).
uint32_t CapLastCap() {
  auto last = ReadFileToString("/proc/sys/kernel/cap_last_cap");
  if (!last.ok()) return 40;
  const std::string_view v = Trim(*last);
  uint32_t n = 0;
  for (char c : v) n = n * 10 + static_cast<uint32_t>(c - '0');
  return v.empty() || v.find_first_not_of("0123456789") != std::string_view::npos || n > 63 ? 40 : n;
}

}  // namespace

Status CheckCapabilitiesFit(const image::ProcessCore& core) {
  if (core.zombie()) return Status::Ok();
  static const uint32_t last = CapLastCap();
  const uint64_t unknown = last >= 63 ? 0 : ~((2ull << last) - 1);
  const image::Creds& c = core.creds();
  // A bounding set can only lose capabilities: one cryo's own lacks cannot
  // come back (PR_CAPBSET_DROP), and nothing would say so.
  uint64_t own = 0;
  for (uint32_t cap = 0; cap <= last && cap < 64; ++cap)
    if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) own |= 1ull << cap;
  if (c.cap_bnd() & ~own & ~unknown) {
    char buf[200];
    snprintf(buf, sizeof(buf), "pid %d: its bounding set %#llx holds capabilities %#llx that cryo's own lacks",
             core.pid(), static_cast<unsigned long long>(c.cap_bnd()),
             static_cast<unsigned long long>(c.cap_bnd() & ~own & ~unknown));
    return Status::Error(buf);
  }
  const std::pair<const char*, uint64_t> sets[] = {{"inheritable", c.cap_inh()}, {"permitted", c.cap_prm()},
                                                   {"effective", c.cap_eff()}, {"bounding", c.cap_bnd()},
                                                   {"ambient", c.cap_amb()}};
  for (const auto& [name, set] : sets)
    if (set & unknown) {
      char buf[200];
      snprintf(buf, sizeof(buf), "pid %d: its %s capabilities %#llx hold capabilities above %u, the last this kernel knows",
               core.pid(), name, static_cast<unsigned long long>(set), last);
      return Status::Error(buf);
    }
  return Status::Ok();
}

}  // namespace cryo
