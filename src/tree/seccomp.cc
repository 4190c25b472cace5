#include "tree/seccomp.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ptrace.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "proc/proc.h"
#include "tree/seccomp_bpf.h"

namespace cryo {

namespace {

std::string Who(pid_t pid, pid_t tid) {
  return tid == pid ? "pid " + std::to_string(pid) : "pid " + std::to_string(pid) + " thread " + std::to_string(tid);
}

// Index 0 is the oldest filter: get_nth_filter (kernel/seccomp.c) walks
// back from the newest count - 1 - index times.
Result<image::SeccompFilter> ReadFilter(pid_t pid, pid_t tid, unsigned long index) {
  const long n = ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, nullptr);
  if (n < 0) return Status::FromErrno("PTRACE_SECCOMP_GET_FILTER " + Who(pid, tid) + " filter " + std::to_string(index));
  std::string prog(static_cast<size_t>(n) * sizeof(sock_filter), '\0');
  if (ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, prog.data()) != n)
    return Status::FromErrno("PTRACE_SECCOMP_GET_FILTER " + Who(pid, tid) + " filter " + std::to_string(index));
  __ptrace_seccomp_metadata md{};
  md.filter_off = index;
  if (ptrace(PTRACE_SECCOMP_GET_METADATA, tid, sizeof(md), &md) < 0)
    return Status::FromErrno("PTRACE_SECCOMP_GET_METADATA " + Who(pid, tid) + " filter " + std::to_string(index));
  image::SeccompFilter f;
  f.set_program(std::move(prog));
  f.set_log((md.flags & SECCOMP_FILTER_FLAG_LOG) != 0);
  return f;
}

// Suspends the thread's filters while cryo holds it (ptrace(2)
// PTRACE_O_SUSPEND_SECCOMP): the seize's options plus that one.
Status Suspend(pid_t pid, pid_t tid) {
  const long opts = kSeizeOptions | PTRACE_O_SUSPEND_SECCOMP;
  if (ptrace(PTRACE_SETOPTIONS, tid, nullptr, reinterpret_cast<void*>(opts)) != 0)
    return Status::FromErrno("PTRACE_O_SUSPEND_SECCOMP " + Who(pid, tid) +
                             " (suspending a seccomp filter takes CAP_SYS_ADMIN)");
  return Status::Ok();
}

bool CryoUnderSeccomp() {
  auto st = proc::ReadStatus(getpid());
  return !st.ok() || st->seccomp != 0;
}

}  // namespace

bool SeccompState::any() const {
  for (const SeccompThread& t : threads)
    if (t.mode != 0) return true;
  return false;
}

std::string SeccompProgramProblem(const std::string& program) {
  if (program.empty() || program.size() % sizeof(sock_filter) != 0 || program.size() / sizeof(sock_filter) > BPF_MAXINSNS)
    return "is not a classic BPF program of 1 to 4096 instructions";
  for (size_t i = 0; i < program.size(); i += sizeof(sock_filter)) {
    sock_filter insn;
    std::memcpy(&insn, program.data() + i, sizeof(insn));
    if (insn.code == (BPF_RET | BPF_A))
      return "returns an action it computes (instruction " + std::to_string(i / sizeof(insn)) +
             "), which could be SECCOMP_RET_USER_NOTIF";
    if (insn.code == (BPF_RET | BPF_K) && (insn.k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_USER_NOTIF)
      return "hands system calls to a supervisor (SECCOMP_RET_USER_NOTIF at instruction " +
             std::to_string(i / sizeof(insn)) + "), whose notification fd is not restored";
  }
  return "";
}

Result<SeccompState> DumpSeccomp(SeizedProcess& proc) {
  SeccompState out;
  const pid_t pid = proc.pid();
  std::map<std::pair<std::string, bool>, uint32_t> ids;
  const bool cryo_filtered = CryoUnderSeccomp();
  for (const SeizedTask& t : proc.threads()) {
    SeccompThread st;
    st.tid = t.tid;
    CRYO_ASSIGN_OR_RETURN(proc::ProcStatus status, proc::ReadStatus(t.tid));
    if (!cryo_filtered && status.seccomp != 0) {
      st.mode = static_cast<uint32_t>(status.seccomp);
      CRYO_RETURN_IF_ERROR(Suspend(pid, t.tid));
      for (int i = 0; i < status.seccomp_filters; ++i) {
        CRYO_ASSIGN_OR_RETURN(image::SeccompFilter f, ReadFilter(pid, t.tid, static_cast<unsigned long>(i)));
        const std::string problem = SeccompProgramProblem(f.program());
        if (!problem.empty())
          return Status::Error(Who(pid, t.tid) + " runs under a seccomp filter that " + problem +
                               "; cryo cannot restore it");
        auto [it, fresh] = ids.emplace(std::make_pair(f.program(), f.log()), static_cast<uint32_t>(out.filters.size()));
        if (fresh) out.filters.push_back(std::move(f));
        st.chain.push_back(it->second);
      }
    }
    out.threads.push_back(std::move(st));
  }
  return out;
}

namespace {

// Names of the calls cryo's injected code makes (messages).
std::string CallName(long nr) {
  switch (nr) {
    case 0: return "read";
    case 9: return "mmap";
    case 10: return "mprotect";
    case 11: return "munmap";
    case 13: return "rt_sigaction";
    case 14: return "rt_sigprocmask";
    case 15: return "rt_sigreturn";
    case 36: return "getitimer";
    case 12: return "brk";
    case 131: return "sigaltstack";
    case 157: return "prctl";
    case 200: return "tkill";
    case 219: return "restart_syscall";
    case 247: return "waitid";
    case 271: return "ppoll";
  }
  return "system call " + std::to_string(nr);
}

}  // namespace

Status SeccompCallCheck::Check(pid_t tid, long nr, const uint64_t args[6], bool needed) const {
  for (const SeccompThread& t : state_.threads) {
    if (t.tid != tid || t.mode == 0) continue;
    uint32_t action = SECCOMP_RET_ALLOW;
    if (t.mode == SECCOMP_MODE_STRICT) {
      // mode1_syscalls (kernel/seccomp.c): anything else is SIGKILL.
      if (nr != 0 && nr != 1 && nr != 60 && nr != 15) action = SECCOMP_RET_KILL_THREAD;
    } else {
      std::vector<const std::string*> chain;
      for (uint32_t id : t.chain) chain.push_back(&state_.filters[id].program());
      SeccompCall call;
      call.nr = static_cast<int32_t>(nr);
      for (int i = 0; i < 6; ++i) call.args[i] = args[i];
      auto r = RunSeccompChain(chain, call);
      if (!r.ok()) return r.status().Prefixed(Who(pid_, tid) + ": its seccomp filter");
      action = *r;
    }
    const uint32_t a = action & SECCOMP_RET_ACTION_FULL;
    const bool harms = a == SECCOMP_RET_KILL_PROCESS || a == SECCOMP_RET_KILL_THREAD || a == SECCOMP_RET_TRAP ||
                       a == SECCOMP_RET_USER_NOTIF;
    const bool keeps = needed && a != SECCOMP_RET_ALLOW && a != SECCOMP_RET_LOG;
    if (harms || keeps)
      return Status::Error(Who(pid_, tid) + ": its seccomp " + (t.mode == SECCOMP_MODE_STRICT ? "strict mode" : "filter") +
                           " would " + SeccompVerdict(action, CallName(nr)) +
                           ", which cryo's injected code needs to leave the process intact if cryo is killed; cryo "
                           "does not checkpoint it (allow that call in the filter)");
    return Status::Ok();
  }
  return Status::Ok();
}

Status StoreSeccomp(const SeccompState& state, image::ProcessCore* core) {
  if (!state.any()) return Status::Ok();
  if (static_cast<size_t>(core->threads_size()) != state.threads.size())
    return Status::Error("internal: the threads of pid " + std::to_string(core->pid()) + " changed during the dump");
  for (const image::SeccompFilter& f : state.filters) *core->add_seccomp_filters() = f;
  for (size_t i = 0; i < state.threads.size(); ++i) {
    image::TaskCore* t = core->mutable_threads(static_cast<int>(i));
    if (t->tid() != state.threads[i].tid)
      return Status::Error("internal: thread " + std::to_string(t->tid()) + " out of order for seccomp");
    t->set_seccomp_mode(state.threads[i].mode);
    for (uint32_t id : state.threads[i].chain) t->add_seccomp_chain(id);
  }
  return Status::Ok();
}

namespace {

// The filters every thread has, oldest first (their common prefix), and
// whether every thread is in strict mode.
size_t CommonFilters(const image::ProcessCore& core) {
  size_t n = static_cast<size_t>(core.threads(0).seccomp_chain_size());
  for (const image::TaskCore& t : core.threads()) {
    size_t k = 0;
    while (k < n && k < static_cast<size_t>(t.seccomp_chain_size()) &&
           t.seccomp_chain(static_cast<int>(k)) == core.threads(0).seccomp_chain(static_cast<int>(k)))
      ++k;
    n = k;
  }
  return n;
}

bool AllStrict(const image::ProcessCore& core) {
  for (const image::TaskCore& t : core.threads())
    if (t.seccomp_mode() != SECCOMP_MODE_STRICT) return false;
  return true;
}

uint64_t ProgramBytes(const image::ProcessCore& core) {
  uint64_t n = 0;
  for (const image::SeccompFilter& f : core.seccomp_filters()) n += (f.program().size() + 7) & ~7ull;
  return n;
}

}  // namespace

uint64_t SeccompArgBytes(const image::ProcessCore& core) {
  uint64_t entries = 0;
  for (const image::TaskCore& t : core.threads()) entries += static_cast<uint64_t>(t.seccomp_chain_size());
  return entries * sizeof(restorer::SeccompFilterArg) + ProgramBytes(core);
}

Status FillSeccompArgs(const image::ProcessCore& core, restorer::Args* a, uint64_t off) {
  if (core.threads_size() == 0) return Status::Ok();
  char* base = reinterpret_cast<char*>(a);
  // The programs, each once.
  std::vector<uint64_t> prog_off;
  for (const image::SeccompFilter& f : core.seccomp_filters()) {
    if (f.program().size() % sizeof(sock_filter) != 0 || f.program().empty())
      return Status::Error("a seccomp filter of pid " + std::to_string(core.pid()) + " has a bad size");
    std::memcpy(base + off, f.program().data(), f.program().size());
    prog_off.push_back(off);
    off += (f.program().size() + 7) & ~7ull;
  }
  auto fill = [&](const image::TaskCore& t, size_t from, size_t to, restorer::ThreadSeccomp* out) -> Status {
    out->n_filters = static_cast<uint32_t>(to - from);
    out->filters_off = off;
    for (size_t i = from; i < to; ++i) {
      const uint32_t id = t.seccomp_chain(static_cast<int>(i));
      if (id >= prog_off.size()) return Status::Error("seccomp filter index out of range");
      const image::SeccompFilter& f = core.seccomp_filters(static_cast<int>(id));
      restorer::SeccompFilterArg arg{prog_off[id], static_cast<uint32_t>(f.program().size() / sizeof(sock_filter)),
                                     f.log() ? static_cast<uint32_t>(SECCOMP_FILTER_FLAG_LOG) : 0u};
      std::memcpy(base + off, &arg, sizeof(arg));
      off += sizeof(arg);
    }
    return Status::Ok();
  };
  const image::TaskCore& leader = core.threads(0);
  const size_t common = CommonFilters(core);
  const bool all_strict = AllStrict(core);
  CRYO_RETURN_IF_ERROR(fill(leader, 0, common, &a->seccomp_common));
  a->seccomp_common.strict = all_strict;
  CRYO_RETURN_IF_ERROR(fill(leader, common, static_cast<size_t>(leader.seccomp_chain_size()), &a->seccomp));
  a->seccomp.strict = !all_strict && leader.seccomp_mode() == SECCOMP_MODE_STRICT;
  auto* threads = reinterpret_cast<restorer::ThreadArg*>(base + a->threads_off);
  for (int i = 1; i < core.threads_size(); ++i) {
    const image::TaskCore& t = core.threads(i);
    restorer::ThreadSeccomp& s = threads[i - 1].seccomp;
    CRYO_RETURN_IF_ERROR(fill(t, common, static_cast<size_t>(t.seccomp_chain_size()), &s));
    s.strict = !all_strict && t.seccomp_mode() == SECCOMP_MODE_STRICT;
  }
  return Status::Ok();
}

}  // namespace cryo
