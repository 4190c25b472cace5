#include "restore/helper.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "files/fd_table.h"
#include "mem/vma_restore.h"
#include "proc/proc.h"
#include "restorer/blob.h"
#include "restorer/restorer_args.h"
#include "tree/task_restore.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kStackSize = 64 << 10;
constexpr uint64_t kThreadStackSize = 16 << 10;

uint64_t RoundUp(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

void WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void SendText(int fd, HelperRecord kind, const std::string& text) {
  uint8_t k = static_cast<uint8_t>(kind);
  uint32_t len = static_cast<uint32_t>(text.size());
  WriteAll(fd, &k, 1);
  WriteAll(fd, &len, 4);
  WriteAll(fd, text.data(), text.size());
}

[[noreturn]] void Die(int status_fd, const Status& s) {
  SendText(status_fd, HelperRecord::kError, s.ToString());
  ::_exit(1);
}

struct RseqReg {
  uint64_t addr;
  uint32_t len;
  uint32_t sig;
};

// Moves the helper's own fds above the image's highest fd and closes all else.
Status MoveOwnFds(int max_target_fd, std::vector<int*> own) {
  const int base = std::max(max_target_fd + 1, 3);
  for (int* fd : own) {
    int moved = ::fcntl(*fd, F_DUPFD_CLOEXEC, base);
    if (moved < 0) return Status::FromErrno("moving cryo's fd " + std::to_string(*fd) + " out of the way");
    *fd = moved;
  }
  int lowest_own = INT32_MAX, highest_own = 0;
  for (int* fd : own) {
    lowest_own = std::min(lowest_own, *fd);
    highest_own = std::max(highest_own, *fd);
  }
  // Everything below our moved fds, and above them, goes.
  for (int fd = 0; fd < lowest_own; ++fd) ::close(fd);
  for (int fd = lowest_own; fd <= highest_own; ++fd)
    if (std::none_of(own.begin(), own.end(), [fd](int* o) { return *o == fd; })) ::close(fd);
  if (syscall(SYS_close_range, highest_own + 1, ~0U, 0) != 0) return Status::FromErrno("close_range");
  return Status::Ok();
}

Status Run(const HelperContext& ctx_in, int* status_fd) {
  HelperContext ctx = ctx_in;
  const image::ProcessImage& p = *ctx.proc;
  const image::ProcessCore& core = p.core;

  RseqReg rseq{};
  if (::read(ctx.sync_fd, &rseq, sizeof(rseq)) != sizeof(rseq)) return Status::FromErrno("waiting for cryo");
  CloseLogFile();

  CRYO_ASSIGN_OR_RETURN(UniqueFd pages_fd, image::OpenPageFile(ctx.images_dir, core.pid(), p.mm));
  int pages = pages_fd.release();
  int exe_fd = ::open(core.mm().exe_path().c_str(), O_RDONLY | O_CLOEXEC);
  if (exe_fd < 0) return Status::FromErrno("open executable " + core.mm().exe_path());
  CRYO_RETURN_IF_ERROR(MoveOwnFds(MaxFd(p.fds), {&ctx.sync_fd, &ctx.status_fd, &pages, &exe_fd}));
  *status_fd = ctx.status_fd;

  std::vector<std::string> warnings;
  CRYO_RETURN_IF_ERROR(ApplyProcessSettings(core, &warnings));
  for (const auto& w : warnings) SendText(ctx.status_fd, HelperRecord::kWarning, w);
  CRYO_RETURN_IF_ERROR(RestoreFdTable(p.fds).Prefixed("files"));

  // Lay out: [premap reservation][guard][blob | args | stack | vDSO scratch].
  CRYO_ASSIGN_OR_RETURN(std::vector<proc::Vma> own, proc::ReadVmas(::getpid()));
  std::vector<restorer::Move> specials;
  CRYO_RETURN_IF_ERROR(PlanSpecialMoves(p.mm, own, &specials));
  int n_vmas = 0;
  for (const image::Vma& v : p.mm.vmas()) n_vmas += IsPremapped(v);
  const uint64_t premap_len = PremapSize(p.mm);
  const uint64_t blob_len = RoundUp(restorer::BlobSize());
  const size_t n_pending = PendingCount(core);
  const uint64_t n_threads = static_cast<uint64_t>(core.threads_size() - 1);
  const uint64_t args_len = RoundUp(sizeof(restorer::Args) + n_vmas * sizeof(restorer::Move) + n_pending * 128 +
                                    n_threads * sizeof(restorer::ThreadArg) + 64);
  uint64_t scratch_len = 0;
  for (const auto& m : specials) scratch_len += m.len;
  const uint64_t stacks_len = kStackSize + n_threads * kThreadStackSize;
  const uint64_t area_len = blob_len + args_len + stacks_len + scratch_len;

  std::vector<std::pair<uint64_t, uint64_t>> used;
  for (const proc::Vma& v : own) used.emplace_back(v.start, v.end);
  for (const image::Vma& v : p.mm.vmas()) used.emplace_back(v.start(), v.end());
  CRYO_ASSIGN_OR_RETURN(uint64_t base, FindGap(used, premap_len + kPage + area_len));
  if (::mmap(reinterpret_cast<void*>(base), premap_len, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED)
    return Status::FromErrno("reserving the premap area");
  const uint64_t area = base + premap_len + kPage;
  if (::mmap(reinterpret_cast<void*>(area), area_len, PROT_READ | PROT_WRITE | PROT_EXEC,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED)
    return Status::FromErrno("mapping the restorer area");

  std::vector<restorer::Move> moves;
  CRYO_RETURN_IF_ERROR(PremapAndFill(p.mm, pages, base, ctx.fill_threads, &moves).Prefixed("memory"));
  ::close(pages);

  std::memcpy(reinterpret_cast<void*>(area), restorer::BlobData(), restorer::BlobSize());
  auto* a = reinterpret_cast<restorer::Args*>(area + blob_len);
  a->status_fd = ctx.status_fd;
  std::vector<restorer::Range> keep = {{base, premap_len}, {area, area_len}};
  for (const auto& m : specials) keep.push_back({m.from, m.len});
  std::sort(keep.begin(), keep.end(), [](auto& x, auto& y) { return x.start < y.start; });
  if (keep.size() > restorer::kMaxKeep || specials.size() > restorer::kMaxSpecial)
    return Status::Error("too many special mappings");
  a->n_keep = static_cast<uint32_t>(keep.size());
  std::copy(keep.begin(), keep.end(), a->keep);
  a->n_special = static_cast<uint32_t>(specials.size());
  std::copy(specials.begin(), specials.end(), a->special);
  a->special_scratch = area + blob_len + args_len + stacks_len;
  a->premap = {base, premap_len};
  a->n_vmas = static_cast<uint32_t>(moves.size());
  a->vmas_off = sizeof(restorer::Args);
  std::copy(moves.begin(), moves.end(), reinterpret_cast<restorer::Move*>(reinterpret_cast<char*>(a) + a->vmas_off));
  a->pending_off = a->vmas_off + moves.size() * sizeof(restorer::Move);
  a->threads_off = (a->pending_off + n_pending * 128 + 63) & ~63ull;
  CRYO_RETURN_IF_ERROR(FillTaskArgs(core, exe_fd, a, area + blob_len + args_len + kStackSize, kThreadStackSize));
  warnings.clear();
  CRYO_RETURN_IF_ERROR(ApplyLateSettings(core, &warnings));
  for (const auto& w : warnings) SendText(ctx.status_fd, HelperRecord::kWarning, w);

  uint8_t k = static_cast<uint8_t>(HelperRecord::kArea);
  uint64_t rec[3] = {area, area_len, static_cast<uint64_t>(ctx.status_fd)};
  WriteAll(ctx.status_fd, &k, 1);
  WriteAll(ctx.status_fd, rec, sizeof(rec));
  ::close(ctx.sync_fd);

  // glibc registered rseq for this thread inside memory the blob unmaps; the
  // kernel would write there on the next preemption (rseq(2)).
  if (rseq.addr && syscall(SYS_rseq, rseq.addr, rseq.len, 1 /*RSEQ_FLAG_UNREGISTER*/, rseq.sig) != 0)
    return Status::FromErrno("unregistering the helper's rseq area");
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);

  const uint64_t stack_top = ((area + blob_len + args_len + kStackSize) & ~15ull) - 8;
  asm volatile(
      "mov %0, %%rsp\n\t"
      "mov %1, %%rdi\n\t"
      "jmp *%2\n\t" ::"r"(stack_top),
      "r"(a), "r"(area)
      : "memory");
  __builtin_unreachable();
}

}  // namespace

void RunHelper(const HelperContext& ctx) {
  int status_fd = ctx.status_fd;
  Status s = Run(ctx, &status_fd);
  Die(status_fd, s.ok() ? Status::Error("restore helper returned") : s);
}

}  // namespace cryo
