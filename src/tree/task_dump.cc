#include "tree/task_dump.h"

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <cstring>
#include <vector>

#include "base/file_util.h"
#include "base/log.h"
#include "seize/ptrace_util.h"
#include "tree/posix_timers.h"
#include "tree/proc_attrs.h"

namespace cryo {

namespace {

constexpr long kPtraceGetRseqConfiguration = 0x420f;
struct RseqConfiguration {
  uint64_t rseq_abi_pointer;
  uint32_t rseq_abi_size;
  uint32_t signature;
  uint32_t flags;
  uint32_t pad;
};

// The kernel's struct sigaction for rt_sigaction(2) on x86_64.
struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

std::string What(pid_t pid, const char* what) { return std::string(what) + " of pid " + std::to_string(pid); }

Status CheckRemote(long r, pid_t pid, const char* what) {
  if (r < 0 && r > -4096) return Status::Errno(static_cast<int>(-r), "remote " + What(pid, what));
  return Status::Ok();
}

void DumpRegisters(const SeizedTask& task, image::TaskCore* t) {
  const uint64_t* words = reinterpret_cast<const uint64_t*>(&task.regs);
  static_assert(sizeof(user_regs_struct) == 27 * 8);
  for (int i = 0; i < 27; ++i) t->mutable_regs()->add_gpr(words[i]);
  t->mutable_regs()->set_xsave(task.xsave);
}

Status DumpPending(pid_t tid, bool shared, google::protobuf::RepeatedPtrField<image::SigInfo>* out) {
  struct {
    uint64_t off;
    uint32_t flags;
    int32_t nr;
  } args = {0, shared ? 1u /*PTRACE_PEEKSIGINFO_SHARED*/ : 0u, 32};
  uint8_t buf[32 * 128];
  for (;;) {
    long n = ptrace(PTRACE_PEEKSIGINFO, tid, &args, buf);
    if (n < 0) return Status::FromErrno("PTRACE_PEEKSIGINFO " + What(tid, shared ? "shared queue" : "queue"));
    for (long i = 0; i < n; ++i) out->Add()->set_raw(std::string(reinterpret_cast<char*>(buf) + i * 128, 128));
    if (n < args.nr) return Status::Ok();
    args.off += static_cast<uint64_t>(n);
  }
}

// A thread's values only a remote system call in that thread shows.
struct ThreadQueries {
  struct Out {
    stack_t ss;
    uint64_t tid_addr;
    char comm[16];  // PR_GET_NAME: the same bytes as /proc/PID/task/TID/stat's comm
  };
  Out out{};
  long timer_slack = 0;
};

// Threads query in waves that run at the same time, each thread with its own
// slot of the scratch memory, above the process's outputs (QueryProcess).
constexpr size_t kThreadWave = 32;
constexpr size_t kThreadCalls = 4;
constexpr uint64_t kThreadOutOff = 4096, kThreadOutBytes = 64;
constexpr uint64_t kThreadTableOff = kThreadOutOff + kThreadWave * kThreadOutBytes;
constexpr uint64_t kThreadTableBytes = RemoteSyscaller::TableBytes(kThreadCalls);
static_assert(sizeof(ThreadQueries::Out) <= kThreadOutBytes);

std::vector<RemoteCall> ThreadCalls(uint64_t out) {
  std::vector<RemoteCall> calls(kThreadCalls);
  calls[0].nr = SYS_sigaltstack;
  calls[0].args[1] = out + offsetof(ThreadQueries::Out, ss);
  calls[1].nr = SYS_prctl;
  calls[1].args[0] = PR_GET_TID_ADDRESS;
  calls[1].args[1] = out + offsetof(ThreadQueries::Out, tid_addr);
  calls[2].nr = SYS_prctl;
  calls[2].args[0] = PR_GET_TIMERSLACK;
  calls[3].nr = SYS_prctl;
  calls[3].args[0] = PR_GET_NAME;
  calls[3].args[1] = out + offsetof(ThreadQueries::Out, comm);
  return calls;
}

Status ThreadResults(pid_t tid, const std::vector<long>& r, ThreadQueries* q) {
  CRYO_RETURN_IF_ERROR(CheckRemote(r[0], tid, "sigaltstack"));
  CRYO_RETURN_IF_ERROR(CheckRemote(r[1], tid, "PR_GET_TID_ADDRESS"));
  CRYO_RETURN_IF_ERROR(CheckRemote(r[2], tid, "PR_GET_TIMERSLACK"));
  CRYO_RETURN_IF_ERROR(CheckRemote(r[3], tid, "PR_GET_NAME"));
  q->timer_slack = r[2];
  return Status::Ok();
}

// The outputs of threads [first, last), slots 0.. of the scratch memory.
Status ReadThreadOuts(RemoteSyscaller& rs, size_t first, size_t last, std::vector<ThreadQueries>* q) {
  std::vector<char> out((last - first) * kThreadOutBytes);
  CRYO_RETURN_IF_ERROR(rs.ReadMem(rs.scratch() + kThreadOutOff, out.data(), out.size()));
  for (size_t i = first; i < last; ++i) std::memcpy(&(*q)[i].out, &out[(i - first) * kThreadOutBytes], sizeof((*q)[i].out));
  return Status::Ok();
}

// Runs the queries of threads [first, last) of `rss` at the same time.
Status QueryThreads(const std::vector<RemoteSyscaller*>& rss, const std::vector<pid_t>& tids, size_t first,
                    size_t last, std::vector<ThreadQueries>* q) {
  for (size_t i = first; i < last; ++i) {
    const uint64_t slot = i - first;
    RemoteSyscaller& rs = *rss[i];
    CRYO_RETURN_IF_ERROR(rs.StartBatch(ThreadCalls(rs.scratch() + kThreadOutOff + slot * kThreadOutBytes),
                                       rs.scratch() + kThreadTableOff + slot * kThreadTableBytes));
  }
  // Every started batch is waited for, even after an error (its thread must
  // be stopped again before anything else happens to it).
  Status first_error;
  for (size_t i = first; i < last; ++i) {
    auto res = rss[i]->FinishBatch();
    if (!res.ok()) {
      if (first_error.ok()) first_error = res.status();
      continue;
    }
    Status s = ThreadResults(tids[i], *res, &(*q)[i]);
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  CRYO_RETURN_IF_ERROR(first_error);
  return ReadThreadOuts(*rss[first], first, last, q);
}

// The process-wide values only a remote system call shows, queried in one
// batch (RemoteSyscaller::Batch); each call writes into its own slot of the
// scratch memory.
struct ProcessQueries {
  struct Out {
    KernelSigaction actions[64];  // by signal - 1
    struct itimerval itimers[3];  // ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF
    int32_t pdeath_sig;
    int32_t child_subreaper;
  };
  Out out{};
  long securebits = 0, brk = 0, dumpable = 0, wait = 0;
};

// With the leader's own thread queries (slot 0) in the same batch, and the
// caller's `extra` calls (results in `extra_results`, unchecked).
Status QueryProcess(pid_t pid, RemoteSyscaller& rs, ProcessQueries* q, std::vector<ThreadQueries>* tq,
                    const std::vector<RemoteCall>& extra, std::vector<long>* extra_results) {
  static_assert(sizeof(ProcessQueries::Out) < 4096);
  const uint64_t base = rs.scratch();
  auto at = [&](const void* field) {
    return base + static_cast<uint64_t>(static_cast<const char*>(field) - reinterpret_cast<const char*>(&q->out));
  };
  std::vector<RemoteCall> calls = ThreadCalls(base + kThreadOutOff);
  std::vector<const char*> names(calls.size(), "");
  auto add = [&](const char* name, long nr, std::initializer_list<uint64_t> args) {
    RemoteCall c;
    c.nr = nr;
    size_t i = 0;
    for (uint64_t a : args) c.args[i++] = a;
    calls.push_back(c);
    names.push_back(name);
  };
  for (int sig = 1; sig <= 64; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) add("rt_sigaction", SYS_rt_sigaction, {static_cast<uint64_t>(sig), 0, at(&q->out.actions[sig - 1]), 8});
  const int whiches[3] = {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF};
  for (int i = 0; i < 3; ++i) add("getitimer", SYS_getitimer, {static_cast<uint64_t>(whiches[i]), at(&q->out.itimers[i])});
  add("PR_GET_SECUREBITS", SYS_prctl, {PR_GET_SECUREBITS});
  add("brk", SYS_brk, {0});
  add("PR_GET_PDEATHSIG", SYS_prctl, {PR_GET_PDEATHSIG, at(&q->out.pdeath_sig)});
  add("PR_GET_DUMPABLE", SYS_prctl, {PR_GET_DUMPABLE});
  add("PR_GET_CHILD_SUBREAPER", SYS_prctl, {PR_GET_CHILD_SUBREAPER, at(&q->out.child_subreaper)});
  // Tracees are waited for whatever their exit signal (eligible_child), real
  // children under __WCLONE only if theirs is not SIGCHLD: ECHILD means no
  // tracee (when every child exits with SIGCHLD). No infop: nothing written.
  add("waitid", SYS_waitid, {P_ALL, 0, 0, WNOHANG | WNOWAIT | WEXITED | WSTOPPED | __WCLONE, 0});
  const size_t n = calls.size();
  calls.insert(calls.end(), extra.begin(), extra.end());
  CRYO_ASSIGN_OR_RETURN(std::vector<long> r, rs.Batch(calls));
  CRYO_RETURN_IF_ERROR(ThreadResults(pid, r, &(*tq)[0]));
  CRYO_RETURN_IF_ERROR(ReadThreadOuts(rs, 0, 1, tq));
  for (size_t i = kThreadCalls; i < n; ++i)
    if (std::strcmp(names[i], "brk") != 0 && std::strcmp(names[i], "waitid") != 0)
      CRYO_RETURN_IF_ERROR(CheckRemote(r[i], pid, names[i]));
  if (extra_results) extra_results->assign(r.begin() + static_cast<long>(n), r.end());
  q->securebits = r[n - 6];
  q->brk = r[n - 5];
  q->dumpable = r[n - 3];
  q->wait = r[n - 1];
  return rs.ReadMem(base, &q->out, sizeof(q->out));
}

Status DumpSignals(pid_t pid, const ProcessQueries& q, image::ProcessCore* core) {
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    const KernelSigaction& ka = q.out.actions[sig - 1];
    if (ka.handler == 0 && ka.flags == 0 && ka.mask == 0) continue;  // SIG_DFL, nothing to restore
    image::SigAction* a = core->add_actions();
    a->set_sig(sig);
    a->set_handler(ka.handler);
    a->set_flags(ka.flags);
    a->set_restorer(ka.restorer);
    a->set_mask(ka.mask);
  }
  CRYO_RETURN_IF_ERROR(DumpPending(pid, true, core->mutable_shared_pending()));
  const int whiches[3] = {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF};
  for (int i = 0; i < 3; ++i) {
    const struct itimerval& it = q.out.itimers[i];
    if (!it.it_value.tv_sec && !it.it_value.tv_usec && !it.it_interval.tv_sec && !it.it_interval.tv_usec) continue;
    image::ITimer* t = core->add_itimers();
    t->set_which(whiches[i]);
    t->set_interval_us(it.it_interval.tv_sec * 1000000ull + it.it_interval.tv_usec);
    t->set_value_us(it.it_value.tv_sec * 1000000ull + it.it_value.tv_usec);
  }
  return Status::Ok();
}

Status DumpTask(SeizedTask& task, const ThreadQueries& q, const proc::Stat& stat, image::TaskCore* t) {
  const pid_t tid = task.tid;
  t->set_tid(tid);
  t->set_comm(stat.comm);
  DumpRegisters(task, t);
  t->set_blocked(task.sigmask);
  CRYO_RETURN_IF_ERROR(DumpPending(tid, false, t->mutable_pending()));
  for (const auto& info : task.intercepted) t->add_pending()->set_raw(std::string(info.begin(), info.end()));

  const stack_t& ss = q.out.ss;
  t->set_altstack_sp(reinterpret_cast<uint64_t>(ss.ss_sp));
  t->set_altstack_size(ss.ss_size);
  t->set_altstack_flags(ss.ss_flags);

  RseqConfiguration rc{};
  if (ptrace(static_cast<__ptrace_request>(kPtraceGetRseqConfiguration), tid, sizeof(rc), &rc) < 0)
    return Status::FromErrno("PTRACE_GET_RSEQ_CONFIGURATION " + What(tid, "rseq"));
  t->set_rseq_addr(rc.rseq_abi_pointer);
  t->set_rseq_len(rc.rseq_abi_size);
  t->set_rseq_sig(rc.signature);

  void* head = nullptr;
  size_t len = 0;
  if (syscall(SYS_get_robust_list, tid, &head, &len) != 0) return Status::FromErrno("get_robust_list " + What(tid, "robust list"));
  t->set_robust_list(reinterpret_cast<uint64_t>(head));
  t->set_robust_list_len(len);

  t->set_clear_child_tid(q.out.tid_addr);

  int policy = sched_getscheduler(tid);
  if (policy < 0) return Status::FromErrno("sched_getscheduler " + What(tid, "policy"));
  struct sched_param sp;
  if (sched_getparam(tid, &sp) != 0) return Status::FromErrno("sched_getparam " + What(tid, "priority"));
  t->set_sched_policy(static_cast<uint32_t>(policy));
  t->set_sched_priority(static_cast<uint32_t>(sp.sched_priority));
  t->set_nice(static_cast<int32_t>(stat.nice));
  t->set_timer_slack_ns(static_cast<uint64_t>(q.timer_slack));
  return DumpThreadAttrs(tid, t);
}

Status DumpCreds(const proc::ProcStatus& st, const ProcessQueries& q, image::Creds* c) {
  for (int i = 0; i < 4; ++i) {
    c->add_uid(st.uid[i]);
    c->add_gid(st.gid[i]);
  }
  for (uint32_t g : st.groups) c->add_groups(g);
  c->set_cap_inh(st.cap_inh);
  c->set_cap_prm(st.cap_prm);
  c->set_cap_eff(st.cap_eff);
  c->set_cap_bnd(st.cap_bnd);
  c->set_cap_amb(st.cap_amb);
  c->set_no_new_privs(st.no_new_privs != 0);
  c->set_securebits(static_cast<uint32_t>(q.securebits));
  return Status::Ok();
}

Status DumpMmFields(pid_t pid, const ProcessQueries& q, const proc::Stat& stat, image::MmFields* mm) {
  mm->set_start_code(stat.startcode);
  mm->set_end_code(stat.endcode);
  mm->set_start_data(stat.start_data);
  mm->set_end_data(stat.end_data);
  mm->set_start_brk(stat.start_brk);
  mm->set_start_stack(stat.startstack);
  mm->set_arg_start(stat.arg_start);
  mm->set_arg_end(stat.arg_end);
  mm->set_env_start(stat.env_start);
  mm->set_env_end(stat.env_end);
  mm->set_brk(static_cast<uint64_t>(q.brk));
  CRYO_ASSIGN_OR_RETURN(auto auxv, proc::ReadAuxv(pid));
  for (uint64_t w : auxv) mm->add_auxv(w);
  CRYO_ASSIGN_OR_RETURN(std::string exe, ReadLink("/proc/" + std::to_string(pid) + "/exe"));
  mm->set_exe_path(exe);
  return Status::Ok();
}

}  // namespace

Status DumpProcessCore(SeizedProcess& sp, RemoteSyscaller& rs, const proc::Stat& stat, const proc::ProcStatus& status,
                       image::ProcessCore* core, bool* may_trace, const std::vector<RemoteCall>& extra,
                       std::vector<long>* extra_results) {
  const pid_t pid = sp.pid();
  const std::string dir = "/proc/" + std::to_string(pid);
  core->set_pid(pid);
  core->set_ppid(stat.ppid);
  core->set_start_ticks(stat.starttime);
  core->set_pgid(stat.pgrp);
  core->set_sid(stat.session);
  core->set_exit_signal(stat.exit_signal);
  core->set_umask(status.umask);
  // Every thread's remote queries: the leader's with the process's, first
  // (that batch sets up how batches run, which the other threads' syscallers
  // inherit), then the others in waves that run at the same time.
  const size_t n = sp.threads().size();
  std::vector<std::unique_ptr<RemoteSyscaller>> others;
  std::vector<RemoteSyscaller*> rss = {&rs};
  std::vector<pid_t> tids = {sp.leader().tid};
  std::vector<ThreadQueries> tq(n);
  ProcessQueries q;
  CRYO_RETURN_IF_ERROR(QueryProcess(pid, rs, &q, &tq, extra, extra_results));
  *may_trace = q.wait != -ECHILD;
  for (size_t i = 1; i < n; ++i) {
    SeizedTask& t = sp.threads()[i];
    CRYO_ASSIGN_OR_RETURN(auto trs, rs.ForThread(t));
    rss.push_back(trs.get());
    others.push_back(std::move(trs));
    tids.push_back(t.tid);
  }
  for (size_t first = 1; first < n; first += kThreadWave)
    CRYO_RETURN_IF_ERROR(QueryThreads(rss, tids, first, std::min(n, first + kThreadWave), &tq));
  // The threads back to their own state at once (see remote_syscall.h).
  rss.resize(1);
  others.clear();
  CRYO_RETURN_IF_ERROR(DumpTask(sp.leader(), tq[0], stat, core->add_threads()));
  for (size_t i = 1; i < n; ++i) {
    // Name (queried above) and nice of this thread: no /proc read per thread.
    SeizedTask& t = sp.threads()[i];
    proc::Stat tstat;
    tstat.comm.assign(tq[i].out.comm, strnlen(tq[i].out.comm, sizeof(tq[i].out.comm)));
    errno = 0;
    const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(t.tid));
    if (nice == -1 && errno != 0) return Status::FromErrno("getpriority " + What(t.tid, "nice value"));
    tstat.nice = nice;
    CRYO_RETURN_IF_ERROR(DumpTask(t, tq[i], tstat, core->add_threads()));
  }
  CRYO_RETURN_IF_ERROR(DumpSignals(pid, q, core));
  CRYO_RETURN_IF_ERROR(DumpPosixTimers(pid, rs, core));
  CRYO_RETURN_IF_ERROR(DumpCreds(status, q, core->mutable_creds()));
  CRYO_RETURN_IF_ERROR(DumpMmFields(pid, q, stat, core->mutable_mm()));

  CRYO_ASSIGN_OR_RETURN(auto limits, proc::ReadLimits(pid));
  for (const auto& l : limits) {
    image::Rlimit* rl = core->add_rlimits();
    rl->set_resource(static_cast<uint32_t>(l.resource));
    rl->set_soft(l.soft);
    rl->set_hard(l.hard);
  }
  CRYO_ASSIGN_OR_RETURN(std::string pers, ReadFileToString(dir + "/personality"));
  core->set_personality(static_cast<uint32_t>(std::stoul(pers, nullptr, 16)));
  CRYO_ASSIGN_OR_RETURN(std::string cwd, ReadLink(dir + "/cwd"));
  core->set_cwd(cwd);
  CRYO_ASSIGN_OR_RETURN(std::string root, ReadLink(dir + "/root"));
  core->set_root(root);

  core->set_pdeath_sig(q.out.pdeath_sig);
  core->set_dumpable(static_cast<int32_t>(q.dumpable));
  core->set_child_subreaper(q.out.child_subreaper != 0);
  return DumpProcessAttrs(pid, core);
}

}  // namespace cryo
