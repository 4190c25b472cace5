#include "restore/helper.h"

#include <fcntl.h>
#include <poll.h>
#include <linux/sched.h>
#include <signal.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "base/clock.h"
#include "base/exit_like.h"
#include "base/fault.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "files/fd_table.h"
#include "files/file_locks.h"
#include "mem/lazy_plan.h"
#include "mem/mm_attrs.h"
#include "ns/cgroup_ns.h"
#include "ns/time_ns.h"
#include "ns/user_ns.h"
#include "image/parent_chain.h"
#include "mem/vma_restore.h"
#include "proc/proc.h"
#include "restore/helper_fds.h"
#include "restorer/blob.h"
#include "restorer/restorer_args.h"
#include "tree/proc_attrs.h"
#include "tree/seccomp.h"
#include "tree/task_restore.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kStackSize = 64 << 10;
constexpr uint64_t kThreadStackSize = 16 << 10;

struct BuiltMemory {
  std::vector<restorer::Move> moves;     // premapped VMAs -> their addresses
  std::vector<restorer::Move> specials;  // the vDSO family
  LazyPlan lazy;                         // --lazy: what the blob registers with the userfaultfd
};

uint64_t RoundUp(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }


void Send(int fd, HelperRecord kind, pid_t pid, const void* payload, uint32_t len) {
  std::string rec(9 + len, '\0');
  rec[0] = static_cast<char>(kind);
  std::memcpy(&rec[1], &pid, 4);
  std::memcpy(&rec[5], &len, 4);
  if (len) std::memcpy(&rec[9], payload, len);
  // One write: records from different helpers must not interleave.
  while (::write(fd, rec.data(), rec.size()) < 0 && errno == EINTR) {
  }
}

// Reads `n` bytes that cryo (which holds the only write end) sends, waiting at
// most kHelperWaitSeconds: false at EOF (cryo is gone) or timeout.
bool ReadFromCryo(int fd, void* buf, size_t n) {
  char* p = static_cast<char*>(buf);
  const double deadline = Now() + kHelperWaitSeconds;
  while (n) {
    struct pollfd pf = {fd, POLLIN, 0};
    const int left = static_cast<int>((deadline - Now()) * 1000);
    if (left <= 0) return false;
    const int r = ::poll(&pf, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t got = ::read(fd, p, n);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

void SendText(int fd, HelperRecord kind, pid_t pid, const std::string& text) {
  const std::string t = text.substr(0, 3000);
  Send(fd, kind, pid, t.data(), static_cast<uint32_t>(t.size()));
}

// Session and process group, first half: leaders set themselves up before
// their children are cloned (children inherit the session). A leader whose
// terminal was the calling shell's joins cryo's session instead (--shell-job).
void SessionPhase1(const image::ProcessCore& core, bool joins_shell_session) {
  const pid_t pid = core.pid();
  if (core.sid() == pid && !joins_shell_session) {
    ::setsid();
  } else if (core.pgid() == pid) {
    ::setpgid(0, 0);
  }
}

// Second half, once every process exists: join the group of another process.
void SessionPhase2(const image::ProcessCore& core, int status_fd, bool shell_job) {
  const pid_t pid = core.pid();
  if (core.sid() == pid || core.pgid() == pid) return;
  if (::getpgid(0) == core.pgid()) return;
  // pgid 0: led from an ancestor PID namespace; setpgid(0, 0) would make the
  // process a group leader instead.
  if (core.pgid() != 0 && ::getsid(0) == core.sid() && ::setpgid(0, core.pgid()) == 0) return;
  if (shell_job) return;  // a shell job joins the session of the shell cryo runs in
  SendText(status_fd, HelperRecord::kWarning, pid,
           "pid " + std::to_string(pid) + ": session " + std::to_string(core.sid()) + " / process group " +
               std::to_string(core.pgid()) + " cannot be rebuilt (their leader is outside the image); it joins " +
               std::to_string(::getsid(0)) + " / " + std::to_string(::getpgid(0)));
}

// Runs `step(&warnings)` and sends what it warns about to cryo.
template <typename Step>
void SendWarnings(const HelperContext& ctx, Step step) {
  std::vector<std::string> warnings;
  step(&warnings);
  for (const auto& w : warnings) SendText(ctx.status_fd, HelperRecord::kWarning, ctx.pid, w);
}

// A zombie: exits the way it did, once the whole tree exists.
[[noreturn]] void BecomeZombie(const image::ProcessCore& core) {
  ::prctl(PR_SET_NAME, core.zombie_comm().c_str(), 0, 0, 0);
  ExitLike(core.exit_status());
}

// The restorer area of a process: [blob | Args + moves + siginfos + threads |
// stack | thread stacks | vDSO scratch].
struct AreaLayout {
  uint64_t blob_len, args_len, stacks_len, scratch_len;
  uint64_t total() const { return blob_len + args_len + stacks_len + scratch_len; }
};

AreaLayout LayoutArea(const image::ProcessImage& p) {
  const image::ProcessCore& core = p.core;
  uint64_t n_vmas = 0, scratch = 0;
  bool vdso = false;
  for (const image::Vma& v : p.mm.vmas()) {
    n_vmas += IsPremapped(v);
    vdso |= v.kind() == image::VMA_VDSO;
    if (v.kind() == image::VMA_VDSO || v.kind() == image::VMA_VVAR || v.kind() == image::VMA_VVAR_VCLOCK)
      scratch += v.end() - v.start();
  }
  const uint64_t n_threads = static_cast<uint64_t>(std::max(core.threads_size(), 1) - 1);
  AreaLayout l;
  l.blob_len = RoundUp(restorer::BlobSize());
  l.args_len = RoundUp(sizeof(restorer::Args) + n_vmas * (sizeof(restorer::Move) + sizeof(restorer::Range)) +
                       PendingCount(core) * 128 +
                       n_threads * sizeof(restorer::ThreadArg) + SeccompArgBytes(core) + 64);
  l.stacks_len = kStackSize + n_threads * kThreadStackSize;
  l.scratch_len = vdso ? scratch : 0;  // PlanSpecialMoves moves nothing without a vDSO
  return l;
}

// Memory first, before the children are cloned, so that they inherit it (the
// pages they share copy-on-write with us stay shared, restore_plan.h).
Status BuildMemory(HelperContext& ctx, BuiltMemory* out) {
  const image::ProcessImage& p = ctx.img->processes.at(ctx.pid);
  const WindowSlot& slot = ctx.window->slots.at(ctx.pid);
  CRYO_ASSIGN_OR_RETURN(image::PageSource pages, image::OpenPageFile(*ctx.img, ctx.pid));
  CRYO_ASSIGN_OR_RETURN(std::vector<image::PageSource> parent_pages, image::OpenAncestorPageFiles(*ctx.img, ctx.pid));
  std::vector<const image::PageSource*> parents;
  for (const image::PageSource& src : parent_pages) parents.push_back(&src);
  // The vDSO family is where cryo had it when it cloned the tree (a fork keeps it).
  CRYO_RETURN_IF_ERROR(PlanSpecialMoves(p.mm, *ctx.cryo_vmas, &out->specials));
  const FdPool* pool = ctx.pool;
  std::vector<InheritableVma> mine;
  // Fill threads pay off for much memory only: each is a clone cryo traces.
  constexpr uint64_t kThreadedFillBytes = 8 << 20;
  uint64_t fill_pages = p.mm.total_pages();
  for (const image::PageRun& r : p.mm.parent_runs()) fill_pages += r.npages();
  const int fill_threads = fill_pages * kPage >= kThreadedFillBytes ? ctx.fill_threads : 1;
  // What our children inherit from us: the rest need not be copied by fork,
  // nor (--lazy) be filled now.
  const std::vector<image::PageRange>& wanted = ctx.facts->at(ctx.pid).children_inherit;
  if (ctx.lazy) out->lazy = PlanLazy(p.mm, wanted);
  HugeCount huge;
  const double start = Now();
  CRYO_RETURN_IF_ERROR(PremapAndFill(
                           p.mm, ctx.facts->at(ctx.pid).huge_vmas, pages, parents, slot.premap, fill_threads,
                           [pool](uint64_t id) { return pool->ShmemFd(id); }, ctx.inheritable, &out->moves, &mine,
                           [pool](const image::Vma& v, uint64_t at, int prot) {
                             return v.unlinked_file() ? pool->unlinked()->MapVma(v, at, prot) : pool->shm()->MapVma(v, at, prot);
                           },
                           ctx.lazy ? &out->lazy.set : nullptr, &huge)
                           .Prefixed("memory"));
  if (huge.asked) {
    char ms[96];
    snprintf(ms, sizeof(ms), " in %.1f ms (memory built in %.1f ms)", huge.seconds * 1e3, (Now() - start) * 1e3);
    SendText(ctx.status_fd, HelperRecord::kInfo, ctx.pid,
             "pid " + std::to_string(ctx.pid) + ": " + std::to_string(huge.made) + " of " + std::to_string(huge.asked) +
                 " transparent huge pages of the image made huge again" + ms +
                 (huge.made < huge.asked ? " (the rest: small pages, the same contents)" : ""));
  }
  ctx.inheritable = std::move(mine);
  return HideFromChildren(out->moves, wanted).Prefixed("memory");
}



// The rest, once the tree exists and this process is in its session and group:
// settings, fds, the restorer's arguments; then into the blob.
Status FinishProcess(HelperContext& ctx, const BuiltMemory& mem) {
  const image::ProcessImage& p = ctx.img->processes.at(ctx.pid);
  const image::ProcessCore& core = p.core;
  CRYO_RETURN_IF_ERROR(ApplyForkAdvice(p.mm, mem.moves).Prefixed("memory"));
  CRYO_RETURN_IF_ERROR(RestoreMmAttributes(core.mm().attrs()).Prefixed("memory"));
  int exe_fd = -1;
  if (core.exe_unlinked()) {
    CRYO_ASSIGN_OR_RETURN(exe_fd, ctx.pool->unlinked()->Reopen(core.exe_unlinked(), O_RDONLY));
  } else {
    exe_fd = ::open(core.mm().exe_path().c_str(), O_RDONLY | O_CLOEXEC);
    if (exe_fd < 0) return Status::FromErrno("open executable " + core.mm().exe_path());
  }
  // Everything that opens a file of its own (/proc/self/...) or uses a pool
  // fd comes before ClearFdTable: in an fd table shared with other helpers
  // (CLONE_FILES), the table's leader closes every other fd, then installs
  // the image's fds and closes the pool, once each user has said it is ready;
  // an fd a user opened meanwhile could be closed under it (EBADF), or be
  // replaced by an image fd it would then read, or close.
  std::vector<std::string> warnings;
  CRYO_RETURN_IF_ERROR(ApplyProcessSettings(core, &warnings));
  if (core.cwd_unlinked() && ::fchdir(ctx.pool->unlinked()->Anchor(core.cwd_unlinked())) != 0)
    return Status::FromErrno("fchdir to the deleted working directory " + core.cwd());
  const bool leads_session = core.sid() == ctx.pid && !(ctx.shell_job && ctx.pool->ttys().JoinsShellSession(core));
  RestoreFaultPoint("helper-opens-files");  // HOLDFD: test_locks.py shared_table_helpers_keep_their_fds
  CRYO_RETURN_IF_ERROR(ApplyProcessAttrs(core, leads_session));
  CRYO_RETURN_IF_ERROR(ClearFdTable(ctx, &exe_fd));
  for (const auto& w : warnings) SendText(ctx.status_fd, HelperRecord::kWarning, ctx.pid, w);
  CRYO_RETURN_IF_ERROR(InstallFdTable(ctx));

  int uffd = -1;
  if (!mem.lazy.empty()) {
    CRYO_ASSIGN_OR_RETURN(uffd, MakeLazyUffd(ctx.max_image_fd + 1));
  }

  const PremapWindow& win = *ctx.window;
  const WindowSlot& slot = win.slots.at(ctx.pid);
  const AreaLayout l = LayoutArea(p);
  const uint64_t area = slot.area;
  if (l.total() != slot.area_len) return Status::Error("the restorer area is not the size cryo planned");
  if (::mmap(reinterpret_cast<void*>(area), slot.area_len, PROT_READ | PROT_WRITE | PROT_EXEC,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
    return Status::FromErrno("mapping the restorer area");

  std::memcpy(reinterpret_cast<void*>(area), restorer::BlobData(), restorer::BlobSize());
  auto* a = reinterpret_cast<restorer::Args*>(area + l.blob_len);
  a->status_fd = ctx.status_fd;
  std::vector<restorer::Range> keep = {{win.start, win.len}};
  for (const auto& m : mem.specials) keep.push_back({m.from, m.len});
  std::sort(keep.begin(), keep.end(), [](auto& x, auto& y) { return x.start < y.start; });
  if (keep.size() > restorer::kMaxKeep || mem.specials.size() > restorer::kMaxSpecial)
    return Status::Error("too many special mappings");
  a->n_keep = static_cast<uint32_t>(keep.size());
  std::copy(keep.begin(), keep.end(), a->keep);
  a->n_special = static_cast<uint32_t>(mem.specials.size());
  std::copy(mem.specials.begin(), mem.specials.end(), a->special);
  a->special_scratch = area + l.blob_len + l.args_len + l.stacks_len;
  a->premap = {win.start, win.areas_start - win.start};
  a->unmap_after[0] = {win.areas_start, area - win.areas_start};
  a->unmap_after[1] = {area + slot.area_len, win.end() - (area + slot.area_len)};
  a->n_vmas = static_cast<uint32_t>(mem.moves.size());
  a->vmas_off = sizeof(restorer::Args);
  std::copy(mem.moves.begin(), mem.moves.end(),
            reinterpret_cast<restorer::Move*>(reinterpret_cast<char*>(a) + a->vmas_off));
  a->uffd = uffd;
  a->n_lazy = static_cast<uint32_t>(mem.lazy.vmas.size());
  a->lazy_off = a->vmas_off + mem.moves.size() * sizeof(restorer::Move);
  auto* lazy_ranges = reinterpret_cast<restorer::Range*>(reinterpret_cast<char*>(a) + a->lazy_off);
  for (size_t i = 0; i < mem.lazy.vmas.size(); ++i)
    lazy_ranges[i] = {mem.lazy.vmas[i].first, mem.lazy.vmas[i].second - mem.lazy.vmas[i].first};
  a->pending_off = a->lazy_off + mem.lazy.vmas.size() * sizeof(restorer::Range);
  a->threads_off = (a->pending_off + PendingCount(core) * 128 + 63) & ~63ull;
  CRYO_RETURN_IF_ERROR(FillTaskArgs(core, exe_fd, a, area + l.blob_len + l.args_len + kStackSize, kThreadStackSize));
  if (ns::HaveTreeUserNs()) {
    // The blob sets the ids inside the tree's user namespace: the image's
    // (cryo's view) through its maps; the groups are set before the join.
    for (int i = 0; i < 4; ++i) {
      CRYO_ASSIGN_OR_RETURN(a->creds.uid[i], ns::IdInTreeUserNs(a->creds.uid[i], false));
      CRYO_ASSIGN_OR_RETURN(a->creds.gid[i], ns::IdInTreeUserNs(a->creds.gid[i], true));
    }
    a->creds.ngroups = restorer::kKeepGroups;
  }
  warnings.clear();
  // A shared fs_struct is chrooted once, by its leader, when no user of it
  // resolves paths any more.
  const SharingRole& r = ctx.role;
  const bool sets_root = r.fs_leader == ctx.pid;
  if (sets_root && r.shares_fs() && core.root() != "/" && !core.root().empty())
    for (pid_t u : r.fs_users)
      if (u != ctx.pid) CRYO_RETURN_IF_ERROR(ctx.board.Wait(SlotOf(r, u), GroupBoard::kPrepared));
  CRYO_RETURN_IF_ERROR(ApplyLateSettings(core, &warnings, sets_root));
  for (const auto& w : warnings) SendText(ctx.status_fd, HelperRecord::kWarning, ctx.pid, w);

  // Last: every mapping made from here on would be locked.
  CRYO_RETURN_IF_ERROR(LockFutureMappings(core.mm().attrs()).Prefixed("memory"));
  // After everything that needs cryo's privileges (rlimits, mlock, the
  // userfaultfd): into the tree's user namespace, if it has one.
  // The tree's time namespace is owned by its user namespace: entered just
  // before the join, made just after it (ns/time_ns.h).
  CRYO_RETURN_IF_ERROR(ns::TimeNsBeforeUserNsJoin(*ctx.img, ctx.pid));
  CRYO_RETURN_IF_ERROR(ns::JoinTreeUserNs(core));
  CRYO_RETURN_IF_ERROR(ns::TimeNsAfterUserNsJoin(*ctx.img, ctx.pid));
  const uint64_t rec[4] = {area, slot.area_len, static_cast<uint64_t>(ctx.status_fd), static_cast<uint64_t>(int64_t{uffd})};
  Send(ctx.status_fd, HelperRecord::kArea, ctx.pid, rec, sizeof(rec));
  if (r.in_group()) ctx.board.Post(r.index, GroupBoard::kPrepared);

  // glibc registered rseq for this thread inside memory the blob unmaps; the
  // kernel would write there on the next preemption (rseq(2)).
  if (ctx.rseq.addr && syscall(SYS_rseq, ctx.rseq.addr, ctx.rseq.len, 1 /*RSEQ_FLAG_UNREGISTER*/, ctx.rseq.sig) != 0)
    return Status::FromErrno("unregistering the helper's rseq area");
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);

  const uint64_t stack_top = ((area + l.blob_len + l.args_len + kStackSize) & ~15ull) - 8;
  asm volatile(
      "mov %0, %%rsp\n\t"
      "mov %1, %%rdi\n\t"
      "jmp *%2\n\t" ::"r"(stack_top),
      "r"(a), "r"(area)
      : "memory");
  __builtin_unreachable();
}

// A ghost (restore_plan.h) whose pid is taken cannot be rebuilt; it is given
// up quickly, with a warning, rather than waited for like an image pid.
constexpr double kGhostPatience = 0.2;

[[noreturn]] void RunGhost(HelperContext ctx);

// Clones one task of the plan. `ghosts` collects the ghosts this process
// clones (it reaps them once every process has joined its group).
Status CloneTask(HelperContext& ctx, pid_t pid, std::vector<pid_t>* ghosts) {
  const PlannedTask& t = ctx.plan->at(pid);
  if (t.ghost()) {
    const char* what = t.kind == PlannedTask::kSessionGhost ? "session " : "process group ";
    // Members of a ghost session reach us, their image parent, when the
    // ghost exits, which needs us to be a child subreaper (prctl(2)).
    if (t.kind == PlannedTask::kSessionGhost && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
      return Status::FromErrno("PR_SET_CHILD_SUBREAPER to rebuild session " + std::to_string(pid));
    Result<pid_t> g = CloneWithPid(pid, SIGCHLD, kGhostPatience);
    if (!g.ok()) {
      SendText(ctx.status_fd, HelperRecord::kWarning, ctx.pid,
               std::string(what) + std::to_string(pid) + ", whose leader has exited, cannot be rebuilt (" +
                   g.status().ToString() + "); its members stay in the session and group of pid " +
                   std::to_string(ctx.pid));
      if (t.kind == PlannedTask::kSessionGhost)
        for (pid_t m : t.clones) CRYO_RETURN_IF_ERROR(CloneTask(ctx, m, ghosts));
      return Status::Ok();
    }
    if (*g == 0) {
      ctx.parent = ctx.pid;
      ctx.pid = pid;
      RunGhost(ctx);
    }
    // The group must exist before its members join it (after "go").
    if (t.kind == PlannedTask::kGroupGhost && ::setpgid(*g, *g) != 0)
      return Status::FromErrno("setpgid of the leader of process group " + std::to_string(pid));
    ghosts->push_back(*g);
    return Status::Ok();
  }
  const ProcessFacts& f = ctx.facts->at(pid);
  CRYO_ASSIGN_OR_RETURN(pid_t cpid, CloneWithPid(pid, f.exit_signal, 3.0, f.clone_flags));
  if (cpid == 0) {
    ctx.parent = ctx.pid;
    ctx.pid = pid;
    RunHelper(ctx);
  }
  return Status::Ok();
}

// A ghost: leads its session or group, clones the members that must descend
// from it, and exits once every process has joined its group.
[[noreturn]] void RunGhost(HelperContext ctx) {
  // Dies with the helper that cloned it, which outlives it (see RunHelper).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != ctx.parent) ::_exit(1);
  const PlannedTask& t = ctx.plan->at(ctx.pid);
  Status s;
  if (t.kind == PlannedTask::kSessionGhost ? ::setsid() < 0 : ::setpgid(0, 0) != 0)
    s = Status::FromErrno("leading the rebuilt session/group " + std::to_string(ctx.pid));
  // The session's autogroup is the ghost's: its members inherit it.
  for (const auto& [pid, p] : ctx.img->processes)
    if (s.ok() && t.kind == PlannedTask::kSessionGhost && p.core.sid() == ctx.pid && p.core.has_autogroup_nice()) {
      s = ApplyAutogroupNice(p.core.autogroup_nice());
      break;
    }
  std::vector<pid_t> none;
  for (pid_t m : t.clones)
    if (s.ok()) s = CloneTask(ctx, m, &none);
  if (!s.ok()) {
    SendText(ctx.status_fd, HelperRecord::kError, ctx.pid, s.ToString());
    ::_exit(1);
  }
  char byte;
  (void)ReadFromCryo(ctx.ghost_fd, &byte, 1);  // or cryo is gone: either way, leave
  ::_exit(0);
}

// Runs in the helper of ctx.pid: clones what the plan says, waits for the
// tree, joins its session and group, then becomes the image's process.
Status Run(HelperContext& ctx) {
  const image::ProcessCore& core = ctx.img->processes.at(ctx.pid).core;
  const TtySet& ttys = ctx.pool->ttys();
  const bool joins_shell_session = ctx.shell_job && ttys.JoinsShellSession(core);
  // Before any clone (the children inherit both) and before memory is mapped
  // (charged to the memory cgroup the helper is in).
  if (!core.zombie()) {
    // The tree's cgroup namespace, made by the root where its root cgroups
    // are; every other process is cloned into it (ns/cgroup_ns.h).
    if (ctx.pid == ctx.img->inventory.root_pid())
      CRYO_RETURN_IF_ERROR(ns::EnterFreshCgroupNamespace(ctx.img->inventory, ctx.cgroups->NsRootProcsFiles()));
    CRYO_RETURN_IF_ERROR(cgroup::JoinCgroups(ctx.cgroups->ProcsFiles(ctx.pid)));
    CRYO_RETURN_IF_ERROR(ApplyAuditSession(core));
  }
  SessionPhase1(core, joins_shell_session);
  // Before any clone: the session's other processes inherit the terminal.
  CRYO_RETURN_IF_ERROR(ttys.TakeControllingTty(ctx.pid, core.sid() == ctx.pid && !joins_shell_session));
  BuiltMemory mem;
  if (!core.zombie()) CRYO_RETURN_IF_ERROR(BuildMemory(ctx, &mem));
  if (ctx.pid == ctx.img->inventory.root_pid()) RestoreFaultPoint("memory-built");
  // Before the clones: the processes that share our fd table or fs_struct
  // meet on the board of their group's topmost process.
  ctx.role = core.zombie() ? SharingRole() : ctx.roles->at(ctx.pid);
  if (!ctx.role.in_group()) {
    ctx.board = GroupBoard();
  } else if (ctx.role.top == ctx.pid) {
    CRYO_ASSIGN_OR_RETURN(ctx.board, GroupBoard::Create(ctx.role.group.size()));
  }
  // Before the clones: a process that made the tree's time namespace
  // creates its children in it (ns/time_ns.h).
  if (!core.zombie()) CRYO_RETURN_IF_ERROR(ns::EnterFreshTimeNamespace(*ctx.img, ctx.pid));
  std::vector<pid_t> ghosts;
  for (pid_t pid : ctx.plan->at(ctx.pid).clones) CRYO_RETURN_IF_ERROR(CloneTask(ctx, pid, &ghosts));
  if (!core.zombie()) SendWarnings(ctx, [&](auto* w) { ttys.CheckControllingTty(core, w); });
  Send(ctx.status_fd, HelperRecord::kCreated, ctx.pid, nullptr, 0);
  char go;
  if (!ReadFromCryo(ctx.go_fd, &go, 1)) return Status::Error("cryo is gone or stuck (waiting for the whole tree)");
  // A shared fd table keeps it for the others; its leader closes it later.
  if (!ctx.role.shares_files()) ::close(ctx.go_fd);
  SessionPhase2(core, ctx.status_fd, ctx.shell_job);
  Send(ctx.status_fd, HelperRecord::kJoined, ctx.pid, nullptr, 0);
  if (!core.zombie()) {
    Status fg;
    SendWarnings(ctx, [&](auto* w) { fg = ttys.SetForeground(core, w); });
    CRYO_RETURN_IF_ERROR(fg);
  }
  for (pid_t g : ghosts) {
    int st;
    while (::waitpid(g, &st, 0) < 0)
      if (errno != EINTR) return Status::FromErrno("reaping the leader of rebuilt session/group " + std::to_string(g));
  }
  if (!ctx.role.shares_files()) ::close(ctx.ghost_fd);
  if (core.zombie()) BecomeZombie(core);
  // Our zombie children must be dead (not reaped) before we go on, so that
  // their SIGCHLD reaches the helper, not the restored process.
  for (pid_t pid : ctx.facts->at(ctx.pid).zombie_children) {
    siginfo_t info;
    while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
    }
  }
  return FinishProcess(ctx, mem);
}

}  // namespace

Result<pid_t> CloneWithPid(pid_t pid, int exit_signal, double patience, uint64_t flags) {
  struct clone_args args;
  std::memset(&args, 0, sizeof(args));
  args.flags = flags;
  args.exit_signal = static_cast<uint64_t>(exit_signal);
  pid_t tid = pid;
  args.set_tid = reinterpret_cast<uint64_t>(&tid);
  args.set_tid_size = 1;
  const double deadline = Now() + patience;
  for (;;) {
    long r = syscall(SYS_clone3, &args, sizeof(args));
    if (r >= 0) return static_cast<pid_t>(r);
    if (errno != EEXIST || Now() > deadline) break;
    ::usleep(5000);
  }
  if (errno == EEXIST) {
    auto comm = ReadFileToString("/proc/" + std::to_string(pid) + "/comm");
    return Status::Error("pid " + std::to_string(pid) + " is in use" +
                         (comm.ok() ? " by " + std::string(Trim(*comm)) : std::string()) +
                         "; the original process must be gone before it can be restored with its PID");
  }
  return Status::FromErrno("clone3 with set_tid " + std::to_string(pid));
}

uint64_t RestorerAreaSize(const image::ProcessImage& p) { return LayoutArea(p).total(); }

std::map<pid_t, ProcessFacts> GatherProcessFacts(const image::LoadedImage& img) {
  std::map<pid_t, ProcessFacts> facts;
  for (const auto& [pid, p] : img.processes) {
    ProcessFacts& f = facts[pid];
    f.exit_signal = p.core.exit_signal() ? p.core.exit_signal() : SIGCHLD;
    f.clone_flags = SharingCloneFlags(p.core);
    f.huge_vmas = VmasWithHugeRanges(p.mm);
  }
  for (const auto& [pid, p] : img.processes) {
    auto parent = facts.find(p.core.ppid());
    if (parent == facts.end() || pid == img.inventory.root_pid()) continue;
    std::vector<image::PageRange>& in = parent->second.children_inherit;
    in.insert(in.end(), p.mm.inherited().begin(), p.mm.inherited().end());
    if (p.core.zombie()) parent->second.zombie_children.push_back(pid);
  }
  return facts;
}

void RunHelper(HelperContext ctx) {
  const bool root = ctx.sync_fd >= 0;
  if (root) RestoreFaultPoint("helper-cloned");
  // The helper dies with its parent until the restore is complete (cryo's
  // ptrace EXITKILL covers it too, once seized). The signal first, then the
  // check that the parent is still the one that cloned it: a parent that died
  // before the prctl sends nothing, and getppid() then names the reaper
  // (prctl(2)). Not under a ghost, which exits early: EXITKILL covers those.
  const auto creator = ctx.plan->tasks.find(ctx.parent);
  if (creator == ctx.plan->tasks.end() || !creator->second.ghost()) ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != ctx.parent) ::_exit(1);
  for (int fd : ctx.cryo_ends) ::close(fd);
  ctx.cryo_ends.clear();
  // cryo blocks SIGCHLD while it rebuilds the tree; a helper must not (the
  // SIGCHLD of its zombie children would stay pending into the restored process).
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_UNBLOCK, &chld, nullptr);
  CloseLogFile();
  if (root) {
    if (!ReadFromCryo(ctx.sync_fd, &ctx.rseq, sizeof(ctx.rseq))) ::_exit(1);
    ::close(ctx.sync_fd);
    ctx.sync_fd = -1;
  }
  Status s = Run(ctx);
  SendText(ctx.status_fd, HelperRecord::kError, ctx.pid, s.ok() ? "restore helper returned" : s.ToString());
  ::_exit(1);
}

}  // namespace cryo
